package loadgen

import (
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"os"
	"strings"
	"time"

	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/h264reader"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"
	"github.com/pion/webrtc/v4/pkg/media/oggreader"
)

// maxPayload is the largest RTP payload the generator cuts: small enough
// that header, extensions, SRTP tag and UDP/IP headers fit a 1280-byte path
// MTU as browsers assume.
const maxPayload = 1160

// vp8DescLen is the length of the VP8 payload descriptor the generator
// writes: X bit, then I bit, then a 15-bit picture ID.
const vp8DescLen = 4

// Frame is one encoded audio or video frame already cut into RTP payloads.
type Frame struct {
	Payloads [][]byte
	// Hashes[i] is the hash of the part of Payloads[i] that the server
	// forwards unchanged, computed once so the send path does not hash.
	Hashes   []uint64
	Keyframe bool
}

// Clip is a short encoded recording that a sender loops.
type Clip struct {
	MimeType   string
	ClockRate  uint32
	FrameTicks uint32        // RTP timestamp increment per frame
	FrameDur   time.Duration // wall time per frame
	Frames     []Frame
	Keyframes  []int // indexes of keyframes in Frames, ascending
	Bytes      int   // payload bytes in one loop
}

// Duration returns the wall time of one loop of the clip.
func (c *Clip) Duration() time.Duration { return time.Duration(len(c.Frames)) * c.FrameDur }

// Bitrate returns the clip's payload bitrate in bit/s.
func (c *Clip) Bitrate() float64 { return float64(c.Bytes) * 8 / c.Duration().Seconds() }

// NextKeyframe returns the index of the first keyframe at or after i,
// wrapping to the start of the clip.
func (c *Clip) NextKeyframe(i int) int {
	for _, k := range c.Keyframes {
		if k >= i {
			return k
		}
	}
	if len(c.Keyframes) == 0 {
		return i
	}
	return c.Keyframes[0]
}

// PayloadHasher hashes the part of an RTP payload that an SFU leaves as it
// is. Both ends of the generator must use the same hasher.
type PayloadHasher struct {
	seed maphash.Seed
	vp8  bool
}

// NewPayloadHasher returns a hasher for payloads of the given MIME type.
// VP8 payload descriptors are skipped because an SFU may rewrite picture IDs
// (it has to when it switches simulcast layers).
func NewPayloadHasher(seed maphash.Seed, mimeType string) PayloadHasher {
	return PayloadHasher{seed: seed, vp8: strings.EqualFold(mimeType, webrtc.MimeTypeVP8)}
}

// Hash returns a non-zero hash of payload, or 0 when there is nothing to
// match (padding, or a descriptor that cannot be parsed).
func (h PayloadHasher) Hash(payload []byte) uint64 {
	if h.vp8 {
		n := vp8DescriptorLen(payload)
		if n <= 0 || n >= len(payload) {
			return 0
		}
		payload = payload[n:]
	}
	if len(payload) == 0 {
		return 0
	}
	return maphash.Bytes(h.seed, payload) | 1
}

// LoadIVF reads a VP8 IVF file and cuts it into RTP payloads.
func LoadIVF(path string, hasher PayloadHasher) (*Clip, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open video clip: %w", err)
	}
	defer f.Close()
	r, hdr, err := ivfreader.NewWith(f)
	if err != nil {
		return nil, fmt.Errorf("read IVF header of %s: %w", path, err)
	}
	if hdr.FourCC != "VP80" {
		return nil, fmt.Errorf("%s: codec %q, want VP80", path, hdr.FourCC)
	}
	frameDur := time.Duration(hdr.TimebaseNumerator) * time.Second / time.Duration(hdr.TimebaseDenominator)
	clip := &Clip{
		MimeType:   webrtc.MimeTypeVP8,
		ClockRate:  90000,
		FrameTicks: uint32(90000 * uint64(hdr.TimebaseNumerator) / uint64(hdr.TimebaseDenominator)),
		FrameDur:   frameDur,
	}
	for {
		data, _, err := r.ParseNextFrame()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read IVF frame %d of %s: %w", len(clip.Frames), path, err)
		}
		clip.add(packetizeVP8(data), len(data) > 0 && data[0]&1 == 0, hasher)
	}
	return clip.check(path)
}

// packetizeVP8 cuts one VP8 frame into payloads with a 4-byte descriptor
// whose picture ID the sender fills in; a fixed layout lets it do so in
// place.
func packetizeVP8(frame []byte) [][]byte {
	const chunk = maxPayload - vp8DescLen
	var out [][]byte
	for off := 0; off < len(frame); off += chunk {
		end := min(off+chunk, len(frame))
		p := make([]byte, vp8DescLen+end-off)
		p[0] = 0x80 // X: extensions present
		if off == 0 {
			p[0] |= 0x10 // S: start of partition 0
		}
		p[1] = 0x80 // I: picture ID present
		p[2] = 0x80 // M: 15-bit picture ID
		copy(p[vp8DescLen:], frame[off:end])
		out = append(out, p)
	}
	return out
}

// LoadOgg reads an Ogg Opus file with one packet per page.
func LoadOgg(path string, hasher PayloadHasher) (*Clip, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open audio clip: %w", err)
	}
	defer f.Close()
	r, _, err := oggreader.NewWith(f)
	if err != nil {
		return nil, fmt.Errorf("read Ogg header of %s: %w", path, err)
	}
	clip := &Clip{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000}
	var lastGranule uint64
	for {
		data, page, err := r.ParseNextPage()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read Ogg page of %s: %w", path, err)
		}
		if _, isHeader := page.HeaderType(data); isHeader || len(data) == 0 {
			continue
		}
		if clip.FrameTicks == 0 && lastGranule != 0 && page.GranulePosition > lastGranule {
			clip.FrameTicks = uint32(page.GranulePosition - lastGranule)
		}
		lastGranule = page.GranulePosition
		clip.add([][]byte{data}, true, hasher)
	}
	if clip.FrameTicks == 0 {
		clip.FrameTicks = 960 // 20 ms, what WebRTC senders use
	}
	clip.FrameDur = time.Duration(clip.FrameTicks) * time.Second / time.Duration(clip.ClockRate)
	return clip.check(path)
}

// LoadH264 reads an Annex-B H.264 stream with one slice per frame at fps
// frames per second.
func LoadH264(path string, fps int, hasher PayloadHasher) (*Clip, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open video clip: %w", err)
	}
	defer f.Close()
	r, err := h264reader.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	clip := &Clip{
		MimeType:   webrtc.MimeTypeH264,
		ClockRate:  90000,
		FrameTicks: uint32(90000 / fps),
		FrameDur:   time.Second / time.Duration(fps),
	}
	var payloader codecs.H264Payloader
	var unit []byte
	key := false
	for {
		nal, err := r.NextNAL()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read NAL of %s: %w", path, err)
		}
		unit = append(unit, 0, 0, 0, 1)
		unit = append(unit, nal.Data...)
		switch nal.UnitType {
		case h264reader.NalUnitTypeCodedSliceIdr:
			key = true
			fallthrough
		case h264reader.NalUnitTypeCodedSliceNonIdr:
			// A slice ends the access unit: the clip has one slice per frame.
			clip.add(payloader.Payload(maxPayload, unit), key, hasher)
			unit, key = unit[:0], false
		}
	}
	return clip.check(path)
}

func (c *Clip) add(payloads [][]byte, key bool, hasher PayloadHasher) {
	fr := Frame{Payloads: payloads, Keyframe: key, Hashes: make([]uint64, len(payloads))}
	for i, p := range payloads {
		fr.Hashes[i] = hasher.Hash(p)
		c.Bytes += len(p)
	}
	if key {
		c.Keyframes = append(c.Keyframes, len(c.Frames))
	}
	c.Frames = append(c.Frames, fr)
}

func (c *Clip) check(path string) (*Clip, error) {
	if len(c.Frames) == 0 {
		return nil, fmt.Errorf("%s: no frames", path)
	}
	if c.MimeType != webrtc.MimeTypeOpus && (len(c.Keyframes) == 0 || c.Keyframes[0] != 0) {
		return nil, fmt.Errorf("%s: the clip must start with a keyframe so that it loops cleanly", path)
	}
	return c, nil
}
