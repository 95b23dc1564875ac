package sfu

import (
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/avs/avs/sfu/packetcache"
)

// PacketWriter is where a DownTrack sends its rewritten packets: a WebRTC
// sender's write stream, or a recorder or bridge inside the process.
type PacketWriter interface {
	WriteRTP(header *rtp.Header, payload []byte) (int, error)
}

// segment records how one run of forwarded packets maps to its source, so
// that a NACK for a packet sent before a layer or source switch is still
// answered from the right cache.
type segment struct {
	firstSeq  uint16 // first outgoing sequence number of the segment
	seqOffset uint16 // outgoing = incoming + seqOffset
	tsOffset  uint32
	source    *Publication
	quality   int
}

const segmentHistory = 4

// DownTrack is what one subscriber receives of one kind of media. It has its
// own SSRC, sequence number and timestamp space, so that switching its
// source (another publisher, another simulcast layer) is seamless for the
// receiver: numbers continue, and video resumes on a keyframe.
type DownTrack struct {
	id       string
	streamID string
	kind     webrtc.RTPCodecType

	mu           sync.Mutex
	writer       PacketWriter
	ssrc         uint32
	payloadTypes []payloadTypeOf // negotiated payload type per codec
	source       *Publication
	current      int // layer being forwarded, -1 before the first keyframe
	target       int // layer wanted
	maxQuality   int // the subscriber's own cap
	started      bool
	needKeyframe bool
	seqOffset    uint16
	tsOffset     uint32
	lastSeq      uint16
	lastTS       uint32
	lastSentAt   time.Time
	clockRate    uint32
	segments     [segmentHistory]segment
	segmentN     int
	scratch      [packetcache.MaxPacketSize]byte // NACK answers, under mu
	out          rtp.Header                      // header of the packet being written, under mu
	pt           uint8                           // the subscriber's payload type for the source's codec
	ptOK         bool
	transport    *transport // nil for in-process writers
	twccID       uint8      // negotiated transport-wide sequence number extension
	twccBytes    [2]byte
	extensions   [1]rtp.Extension
	stamps       []stamp    // transport-wide numbers sent with, by outgoing seq; under mu
	parsed       rtp.Header // header of a cached packet, under mu

	packets   atomic.Uint64
	bytes     atomic.Uint64
	nacked    atomic.Uint64
	plis      atomic.Uint64
	lastRTT   atomic.Int64 // nanoseconds
	lastLoss  atomic.Uint32
	lastJit   atomic.Uint32
	srNTPMid  atomic.Uint32 // middle bits of our last SR, for RTT
	srSentAt  atomic.Int64
	onUnbound func()
}

type payloadTypeOf struct {
	mimeType string
	pt       uint8
}

var errNoCodec = errors.New("no codec in common with the subscriber")

func newDownTrack(kind webrtc.RTPCodecType, id, streamID string) *DownTrack {
	clockRate := uint32(90000)
	if kind == webrtc.RTPCodecTypeAudio {
		clockRate = 48000
	}
	return &DownTrack{
		clockRate:  clockRate,
		id:         id,
		streamID:   streamID,
		kind:       kind,
		current:    -1,
		target:     maxLayers - 1,
		maxQuality: maxLayers - 1,
		lastSeq:    uint16(rand.Uint32()),
		lastTS:     rand.Uint32(),
	}
}

// ID, RID, StreamID and Kind make a DownTrack a webrtc.TrackLocal.
func (d *DownTrack) ID() string                { return d.id }
func (d *DownTrack) RID() string               { return "" }
func (d *DownTrack) StreamID() string          { return d.streamID }
func (d *DownTrack) Kind() webrtc.RTPCodecType { return d.kind }

// Bind is called by pion once the subscriber's codecs are negotiated. Every
// negotiated codec of the kind is kept, so the track can carry whichever
// codec its source happens to publish without renegotiation.
func (d *DownTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	codecs := ctx.CodecParameters()
	if len(codecs) == 0 {
		return webrtc.RTPCodecParameters{}, errNoCodec
	}
	pts := make([]payloadTypeOf, 0, len(codecs))
	for _, c := range codecs {
		pts = append(pts, payloadTypeOf{mimeType: strings.ToLower(c.MimeType), pt: uint8(c.PayloadType)})
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.payloadTypes = pts
	d.resolvePayloadType()
	d.ssrc = uint32(ctx.SSRC())
	d.twccID = 0
	for _, e := range ctx.HeaderExtensions() {
		if e.URI == sdp.TransportCCURI {
			d.twccID = uint8(e.ID)
		}
	}
	d.writer = ctx.WriteStream()
	chosen := codecs[0]
	if d.source != nil {
		for _, c := range codecs {
			if strings.EqualFold(c.MimeType, d.source.mimeType) {
				chosen = c
				break
			}
		}
	}
	d.needKeyframe = true
	return chosen, nil
}

// Unbind is called by pion when the sender stops.
func (d *DownTrack) Unbind(webrtc.TrackLocalContext) error {
	d.mu.Lock()
	d.writer = nil
	f := d.onUnbound
	d.mu.Unlock()
	if f != nil {
		f()
	}
	return nil
}

// AttachWriter binds the track to an in-process writer instead of a
// WebRTC sender (recorder, bridge). mimeTypes lists the codecs it accepts.
func (d *DownTrack) AttachWriter(w PacketWriter, ssrc uint32, pts map[string]uint8) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.payloadTypes = d.payloadTypes[:0]
	for m, pt := range pts {
		d.payloadTypes = append(d.payloadTypes, payloadTypeOf{mimeType: strings.ToLower(m), pt: pt})
	}
	d.ssrc, d.writer, d.needKeyframe = ssrc, w, true
	d.resolvePayloadType()
}

// Source is the publication currently feeding this track, or nil.
func (d *DownTrack) Source() *Publication {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.source
}

// setSource switches the track to another publication (nil to pause). The
// old source stops feeding at once; the new one starts at its next keyframe.
func (d *DownTrack) setSource(p *Publication) {
	d.mu.Lock()
	old := d.source
	if old == p {
		d.mu.Unlock()
		return
	}
	d.source = p
	d.resolvePayloadType()
	d.current = -1
	d.started = false
	if p != nil {
		d.target = min(d.target, d.maxQuality)
	}
	d.mu.Unlock()
	if old != nil {
		old.removeSubscriber(d)
	}
	if p != nil {
		p.addSubscriber(d)
		if p.kind == webrtc.RTPCodecTypeVideo {
			p.RequestKeyframe(d.targetLayer())
		}
	}
}

func (d *DownTrack) targetLayer() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.target
}

// resolvePayloadType caches the payload type of the source's codec, so
// that forwarding does not look it up per packet. Called under mu whenever
// the source or the negotiated codecs change.
func (d *DownTrack) resolvePayloadType() {
	d.pt, d.ptOK = 0, false
	if d.source != nil {
		d.pt, d.ptOK = d.payloadTypeFor(d.source.mimeType)
	}
}

// payloadTypeFor returns the subscriber's payload type for a codec.
func (d *DownTrack) payloadTypeFor(mimeType string) (uint8, bool) {
	for _, p := range d.payloadTypes {
		if strings.EqualFold(p.mimeType, mimeType) {
			return p.pt, true
		}
	}
	return 0, false
}

// forward rewrites and sends one packet from src's layer quality. It runs
// on the publisher's reader goroutine and takes only this track's lock.
func (d *DownTrack) forward(src *Publication, quality int, h *rtp.Header, payload []byte, keyframe bool, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.writer == nil || d.source != src {
		return
	}
	if quality != d.current {
		// Only a keyframe of the wanted layer starts or switches the track;
		// audio and single-layer video have one layer and start at once.
		single := src.kind == webrtc.RTPCodecTypeAudio
		if !single && (quality != d.effectiveTarget(src) || !keyframe) {
			if d.current < 0 || d.needKeyframe {
				d.needKeyframe = true
			}
			return
		}
		d.switchTo(src, quality, h, now)
	} else if d.needKeyframe && src.kind == webrtc.RTPCodecTypeVideo {
		if !keyframe {
			return
		}
		d.needKeyframe = false
	}
	if !d.ptOK {
		return // the subscriber cannot decode this codec
	}
	pt := d.pt
	// The header lives in the track, not on the stack: passed to an
	// interface it would escape, one allocation per packet.
	out := &d.out
	*out = rtp.Header{
		Version:        2,
		Marker:         h.Marker,
		PayloadType:    pt,
		SequenceNumber: h.SequenceNumber + d.seqOffset,
		Timestamp:      h.Timestamp + d.tsOffset,
		SSRC:           d.ssrc,
	}
	// Reordered packets keep their place; only newer ones move the end.
	if diff := out.SequenceNumber - d.lastSeq; diff != 0 && diff < 1<<15 {
		d.lastSeq = out.SequenceNumber
		d.lastTS = out.Timestamp
		d.lastSentAt = now
	}
	tseq, stamped := d.stamp(out)
	if stamped {
		d.remember(out.SequenceNumber, tseq)
	}
	if _, err := d.writer.WriteRTP(out, payload); err == nil {
		size := rtpHeaderSize + len(payload)
		d.packets.Add(1)
		d.bytes.Add(uint64(size))
		d.sent(tseq, stamped, size, now)
	}
}

// rtpHeaderSize is the size of the headers the SFU writes: no CSRCs, and
// extensions only as the subscriber's interceptors add them.
const rtpHeaderSize = 12

// effectiveTarget is the wanted layer, or the best lower one that exists
// when the publisher does not send the wanted one.
func (d *DownTrack) effectiveTarget(src *Publication) int {
	for q := d.target; q > 0; q-- {
		if src.layer(q) != nil {
			return q
		}
	}
	return 0
}

// switchTo starts a new segment so that the first packet of the new source
// or layer follows the last one sent, in sequence and in time.
func (d *DownTrack) switchTo(src *Publication, quality int, h *rtp.Header, now time.Time) {
	nextSeq := d.lastSeq + 1
	// Another layer's reader may have sent a packet stamped a little later
	// than this one's arrival; time never runs backwards for the receiver.
	elapsed := uint32(1)
	if gap := now.Sub(d.lastSentAt); !d.lastSentAt.IsZero() && gap > 0 {
		elapsed = max(uint32(gap.Seconds()*float64(d.clockRate)), 1)
	}
	d.seqOffset = nextSeq - h.SequenceNumber
	d.tsOffset = d.lastTS + elapsed - h.Timestamp
	d.current = quality
	d.started = true
	d.needKeyframe = false
	d.segments[d.segmentN%segmentHistory] = segment{firstSeq: nextSeq, seqOffset: d.seqOffset, tsOffset: d.tsOffset, source: src, quality: quality}
	d.segmentN++
}

// askAgainForKeyframe repeats the keyframe request of a video track that
// is still waiting for one: the first request, or the keyframe it brought,
// may have been lost, and the subscriber would see nothing until the
// publisher's next periodic keyframe.
func (d *DownTrack) askAgainForKeyframe() {
	d.mu.Lock()
	waiting := d.kind == webrtc.RTPCodecTypeVideo && d.writer != nil && (d.current < 0 || d.needKeyframe)
	src, q := d.source, 0
	if src != nil {
		q = d.effectiveTarget(src)
	}
	d.mu.Unlock()
	if waiting && src != nil {
		src.RequestKeyframe(q)
	}
}

// setTarget chooses the simulcast layer to receive; the switch happens at
// the next keyframe of that layer, which is asked for now.
func (d *DownTrack) setTarget(q int) {
	d.mu.Lock()
	q = min(q, d.maxQuality)
	if q == d.target {
		d.mu.Unlock()
		return
	}
	d.target = q
	src, current := d.source, d.current
	d.mu.Unlock()
	if src != nil && q != current {
		src.RequestKeyframe(q)
	}
}

// SetMaxQuality caps the layer this subscriber gets (0 low .. 2 high).
func (d *DownTrack) SetMaxQuality(q int) {
	d.mu.Lock()
	d.maxQuality = min(max(q, 0), maxLayers-1)
	d.mu.Unlock()
	d.setTarget(min(d.targetLayer(), q))
}

// retransmit answers a NACK for an outgoing sequence number from the
// source's cache. It reports false when the packet is no longer there, and
// returns the source and incoming sequence number so the caller can ask
// upstream.
func (d *DownTrack) retransmit(seq uint16) (src *Publication, quality int, srcSeq uint16, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	seg, found := d.segmentOf(seq)
	if !found || d.writer == nil {
		return nil, 0, 0, false
	}
	srcSeq = seq - seg.seqOffset
	l := seg.source.layer(seg.quality)
	if l == nil {
		return nil, 0, 0, false
	}
	n, hit := l.cache.Get(srcSeq, d.scratch[:])
	if !hit {
		return seg.source, seg.quality, srcSeq, false
	}
	h := &d.parsed
	hl, err := h.Unmarshal(d.scratch[:n])
	if err != nil {
		return nil, 0, 0, false
	}
	end := n
	if h.Padding {
		end -= int(d.scratch[n-1])
	}
	pt, ok := d.payloadTypeFor(seg.source.mimeType)
	if !ok || end < hl {
		return nil, 0, 0, false
	}
	d.out = rtp.Header{
		Version: 2, Marker: h.Marker, PayloadType: pt,
		SequenceNumber: seq, Timestamp: h.Timestamp + seg.tsOffset, SSRC: d.ssrc,
	}
	// The packet goes out again exactly as it first did, transport-wide
	// number included. SRTP's nonce is made of the SSRC and the sequence
	// number only: the same nonce with other bytes (a new number in the
	// header) would hand an eavesdropper the XOR of the two and, with
	// AES-GCM, the means to forge packets.
	tseq, stamped, ok := d.firstStamp(seq)
	if !ok {
		return nil, 0, 0, false
	}
	if _, err := d.writer.WriteRTP(&d.out, d.scratch[hl:end]); err != nil {
		return nil, 0, 0, false
	}
	d.sent(tseq, stamped, rtpHeaderSize+end-hl, time.Now())
	d.nacked.Add(1)
	return seg.source, seg.quality, srcSeq, true
}

// segmentOf finds the newest segment that contains an outgoing seq.
func (d *DownTrack) segmentOf(seq uint16) (segment, bool) {
	for i := 1; i <= segmentHistory && i <= d.segmentN; i++ {
		s := d.segments[(d.segmentN-i)%segmentHistory]
		if seq-s.firstSeq < 1<<15 && d.lastSeq-seq < 1<<15 {
			return s, true
		}
	}
	return segment{}, false
}

// senderReportState returns what an RTCP sender report for this track needs.
func (d *DownTrack) senderReportState(now time.Time) (ssrc, rtpTime uint32, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.writer == nil || !d.started || d.lastSentAt.IsZero() {
		return 0, 0, false
	}
	ts := d.lastTS + uint32(now.Sub(d.lastSentAt).Seconds()*float64(d.clockRate))
	return d.ssrc, ts, true
}

// SSRC is the track's own outgoing SSRC, 0 before it is bound.
func (d *DownTrack) SSRC() uint32 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ssrc
}
