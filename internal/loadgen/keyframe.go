package loadgen

// vp8DescriptorLen returns the length of the VP8 payload descriptor at the
// start of p (RFC 7741 section 4.2), or -1 if p is too short to hold it.
func vp8DescriptorLen(p []byte) int {
	if len(p) < 1 {
		return -1
	}
	n := 1
	if p[0]&0x80 == 0 { // no X byte
		return n
	}
	if len(p) < 2 {
		return -1
	}
	x := p[1]
	n++
	if x&0x80 != 0 { // I: picture ID, 7 or 15 bits
		if len(p) < n+1 {
			return -1
		}
		if p[n]&0x80 != 0 {
			n += 2
		} else {
			n++
		}
	}
	if x&0x40 != 0 { // L: TL0PICIDX
		n++
	}
	if x&0x30 != 0 { // T or K: one byte holds both
		n++
	}
	if n > len(p) {
		return -1
	}
	return n
}

// isVP8KeyframeStart reports whether p is the first packet of a VP8
// keyframe.
func isVP8KeyframeStart(p []byte) bool {
	n := vp8DescriptorLen(p)
	if n < 0 || n >= len(p) {
		return false
	}
	const startOfPartition0 = 0x10
	if p[0]&0x1f != startOfPartition0 { // S set and partition index 0
		return false
	}
	return p[n]&0x01 == 0 // P bit of the frame tag: 0 means keyframe
}

// isH264KeyframeStart reports whether p begins an IDR picture or carries the
// SPS that precedes one.
func isH264KeyframeStart(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	const (
		idr, sps = 5, 7
		stapA    = 24
		fuA      = 28
	)
	switch t := p[0] & 0x1f; t {
	case idr, sps:
		return true
	case stapA:
		for off := 1; off+2 < len(p); {
			size := int(p[off])<<8 | int(p[off+1])
			off += 2
			if size == 0 || off+size > len(p) {
				return false
			}
			if nt := p[off] & 0x1f; nt == idr || nt == sps {
				return true
			}
			off += size
		}
	case fuA:
		return len(p) > 1 && p[1]&0x80 != 0 && p[1]&0x1f == idr
	}
	return false
}
