package sfu

import "strings"

// isKeyframe reports whether an RTP payload of the given codec begins a
// keyframe. A subscriber may only start, or switch layers, on such a packet.
func isKeyframe(mimeType string, payload []byte) bool {
	switch {
	case strings.EqualFold(mimeType, mimeVP8):
		return vp8Keyframe(payload)
	case strings.EqualFold(mimeType, mimeVP9):
		return vp9Keyframe(payload)
	case strings.EqualFold(mimeType, mimeH264):
		return h264Keyframe(payload)
	}
	return false
}

// vp8Keyframe parses the VP8 payload descriptor (RFC 7741 §4.2) and looks at
// the first byte of the frame header of a partition start.
func vp8Keyframe(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	x, s, pid := p[0]&0x80 != 0, p[0]&0x10 != 0, p[0]&0x07
	if !s || pid != 0 {
		return false
	}
	i := 1
	if x {
		if len(p) <= i {
			return false
		}
		ext := p[i]
		i++
		if ext&0x80 != 0 { // I: picture id
			if len(p) <= i {
				return false
			}
			if p[i]&0x80 != 0 {
				i++
			}
			i++
		}
		if ext&0x40 != 0 { // L: TL0PICIDX
			i++
		}
		if ext&0x30 != 0 { // T or K
			i++
		}
	}
	// P bit of the VP8 frame header: 0 for a keyframe.
	return len(p) > i && p[i]&0x01 == 0
}

// vp9Keyframe reads the VP9 payload descriptor (RFC 9628): a start of frame
// that is not inter-predicted, on the base spatial layer.
func vp9Keyframe(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	interPicture, flexible, begin := p[0]&0x40 != 0, p[0]&0x10 != 0, p[0]&0x08 != 0
	hasPictureID, hasLayers := p[0]&0x80 != 0, p[0]&0x20 != 0
	if interPicture || !begin {
		return false
	}
	if !hasLayers {
		return true
	}
	i := 1
	if hasPictureID {
		if len(p) <= i {
			return false
		}
		if p[i]&0x80 != 0 {
			i++
		}
		i++
	}
	if len(p) <= i {
		return false
	}
	spatialID := (p[i] >> 1) & 0x07
	_ = flexible
	return spatialID == 0
}

// h264Keyframe looks for an IDR slice or a sequence parameter set in a
// single NAL unit, a STAP-A aggregate or the first fragment of an FU-A
// (RFC 6184).
func h264Keyframe(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	switch nal := p[0] & 0x1f; nal {
	case 5, 7:
		return true
	case 24: // STAP-A
		for i := 1; i+2 < len(p); {
			size := int(p[i])<<8 | int(p[i+1])
			i += 2
			if size == 0 || i+size > len(p) {
				return false
			}
			if t := p[i] & 0x1f; t == 5 || t == 7 {
				return true
			}
			i += size
		}
	case 28: // FU-A
		return len(p) > 1 && p[1]&0x80 != 0 && p[1]&0x1f == 5
	}
	return false
}
