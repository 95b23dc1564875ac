package loadgen

import (
	"container/heap"
	"context"
	"encoding/binary"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Counters are the run's packet and feedback totals, shared by all streams.
type Counters struct {
	PacketsSent, BytesSent atomic.Int64
	PacketsRecv, BytesRecv atomic.Int64
	WriteErrors            atomic.Int64
	LateFrames             atomic.Int64 // frames the pacer sent more than maxLag late
	NACKsToPublishers      atomic.Int64 // NACK packets the publishers received
	NACKedSeqs             atomic.Int64 // sequence numbers those NACKs asked for
	PLIsToPublishers       atomic.Int64 // PLI and FIR the publishers received
	NACKsFromPlayers       atomic.Int64
	PLIsFromPlayers        atomic.Int64
	Unmatched              atomic.Int64 // received payloads with no known send time
}

// sender replays a Clip as one outbound RTP stream. It is a
// webrtc.TrackLocal of its own, rather than a TrackLocalStaticRTP, so that a
// packet goes from the pre-cut payload to the interceptor chain with no copy
// of the packet struct and no lock held across bindings.
type sender struct {
	id, streamID, rid string
	kind              webrtc.RTPCodecType
	clip              *Clip
	times             *SendTimes
	counters          *Counters
	epoch             time.Time

	bound  atomic.Pointer[binding]
	mid    atomic.Pointer[string] // set after negotiation; sent in the MID extension
	keyReq atomic.Bool
	closed atomic.Bool
	// twccSeq is the transport-wide sequence number of the sender's peer
	// connection, shared with its other senders; nil without TWCC.
	twccSeq *atomic.Uint32

	// Owned by the pacer goroutine.
	next     time.Time
	pos      int
	seq      uint16
	ts       uint32
	pid      uint16
	hdr      rtp.Header
	hdrFor   *binding
	twccBuf  []byte // the TWCC extension's payload inside hdr, rewritten per packet
	scratch  []byte
	sentOnce bool
}

type binding struct {
	w      webrtc.TrackLocalWriter
	ssrc   uint32
	pt     uint8
	midID  uint8
	ridID  uint8
	twccID uint8
}

// newSender returns a stream that replays clip. seed starts its sequence
// numbers and timestamps; it need only differ between streams.
func newSender(id, streamID, rid string, kind webrtc.RTPCodecType, clip *Clip, times *SendTimes,
	c *Counters, epoch time.Time, seed uint32) *sender {
	return &sender{
		id: id, streamID: streamID, rid: rid, kind: kind, clip: clip, times: times,
		counters: c, epoch: epoch,
		seq:     uint16(seed),
		ts:      seed * 2654435761,
		scratch: make([]byte, maxPayload),
	}
}

func (s *sender) ID() string                            { return s.id }
func (s *sender) RID() string                           { return s.rid }
func (s *sender) StreamID() string                      { return s.streamID }
func (s *sender) Kind() webrtc.RTPCodecType             { return s.kind }
func (s *sender) Unbind(webrtc.TrackLocalContext) error { s.bound.Store(nil); return nil }

func (s *sender) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	for _, c := range ctx.CodecParameters() {
		if !strings.EqualFold(c.MimeType, s.clip.MimeType) {
			continue
		}
		b := &binding{w: ctx.WriteStream(), ssrc: uint32(ctx.SSRC()), pt: uint8(c.PayloadType)}
		for _, e := range ctx.HeaderExtensions() {
			switch e.URI {
			case sdp.SDESMidURI:
				b.midID = uint8(e.ID)
			case sdp.SDESRTPStreamIDURI:
				b.ridID = uint8(e.ID)
			case sdp.TransportCCURI:
				b.twccID = uint8(e.ID)
			}
		}
		s.bound.Store(b)
		return c, nil
	}
	return webrtc.RTPCodecParameters{}, webrtc.ErrUnsupportedCodec
}

// requestKeyframe makes the next frame sent a keyframe, as an encoder does
// on PLI.
func (s *sender) requestKeyframe() { s.keyReq.Store(true) }

// prepareHeader rebuilds the reusable RTP header for a new binding, so that
// extensions are allocated once per stream and not per packet.
func (s *sender) prepareHeader(b *binding) {
	s.hdr = rtp.Header{Version: 2, SSRC: b.ssrc, PayloadType: b.pt}
	if mid := s.mid.Load(); mid != nil && b.midID != 0 {
		_ = s.hdr.SetExtension(b.midID, []byte(*mid))
	}
	if s.rid != "" && b.ridID != 0 {
		_ = s.hdr.SetExtension(b.ridID, []byte(s.rid))
	}
	s.twccBuf = nil
	if s.twccSeq != nil && b.twccID != 0 {
		// Written here rather than by pion's TWCC interceptor, which
		// allocates a new extension for every packet.
		s.twccBuf = make([]byte, 2)
		_ = s.hdr.SetExtension(b.twccID, s.twccBuf)
	}
	s.hdrFor = b
}

// sendFrame writes the clip's current frame and advances the clip. When the
// stream is not bound (yet, or any more) the frame is skipped so that media
// time keeps pace with wall time.
func (s *sender) sendFrame() {
	clip := s.clip
	// Every request is honoured, as a browser's encoder does: the server,
	// not the sender, is the place to throttle them.
	if s.keyReq.Swap(false) && !clip.Frames[s.pos].Keyframe {
		s.pos = clip.NextKeyframe(s.pos)
	}
	fr := &clip.Frames[s.pos]
	if b := s.bound.Load(); b != nil {
		if b != s.hdrFor {
			s.prepareHeader(b)
		}
		s.writeFrame(b, fr)
	}
	s.ts += clip.FrameTicks
	s.pid = (s.pid + 1) & 0x7fff
	if s.pos++; s.pos == len(clip.Frames) {
		s.pos = 0
	}
}

func (s *sender) writeFrame(b *binding, fr *Frame) {
	vp8 := s.clip.MimeType == webrtc.MimeTypeVP8
	s.hdr.Timestamp = s.ts
	for i, p := range fr.Payloads {
		s.hdr.SequenceNumber = s.seq
		s.seq++
		if s.kind == webrtc.RTPCodecTypeVideo {
			s.hdr.Marker = i == len(fr.Payloads)-1
		} else {
			s.hdr.Marker = !s.sentOnce // start of the talk spurt
		}
		payload := p
		if vp8 {
			// The shared clip is read-only; the picture ID must count on
			// across loops, so patch it in a per-stream copy.
			payload = s.scratch[:len(p)]
			copy(payload, p)
			payload[2] = 0x80 | byte(s.pid>>8)
			payload[3] = byte(s.pid)
		}
		if s.twccBuf != nil {
			binary.BigEndian.PutUint16(s.twccBuf, uint16(s.twccSeq.Add(1)))
		}
		s.times.Record(fr.Hashes[i], int64(time.Since(s.epoch)))
		if _, err := b.w.WriteRTP(&s.hdr, payload); err != nil {
			s.counters.WriteErrors.Add(1)
			continue
		}
		s.sentOnce = true
		s.counters.PacketsSent.Add(1)
		s.counters.BytesSent.Add(int64(len(payload)))
	}
}

// Pacer sends every sender's frames at real-time pace from a few goroutines,
// rather than one goroutine and timer per stream: at a hundred streams that
// is thousands of wake-ups per second fewer.
type Pacer struct {
	shards []*pacerShard
	rr     atomic.Uint32
	late   *atomic.Int64
}

type pacerShard struct {
	mu      sync.Mutex
	pending []*sender
	wake    chan struct{}
	queue   senderHeap
}

// NewPacer returns a pacer with n goroutines; late counts frames sent late.
func NewPacer(n int, late *atomic.Int64) *Pacer {
	p := &Pacer{late: late}
	for range max(n, 1) {
		p.shards = append(p.shards, &pacerShard{wake: make(chan struct{}, 1)})
	}
	return p
}

// Add starts sending s's frames. s stops when closed is set.
func (p *Pacer) Add(s *sender) {
	sh := p.shards[int(p.rr.Add(1))%len(p.shards)]
	sh.mu.Lock()
	sh.pending = append(sh.pending, s)
	sh.mu.Unlock()
	select {
	case sh.wake <- struct{}{}:
	default:
	}
}

// Run paces until ctx ends.
func (p *Pacer) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, sh := range p.shards {
		wg.Go(func() { sh.run(ctx, p.late) })
	}
	wg.Wait()
}

const (
	// pacerSlack lets one wake-up send frames that are due very soon, so
	// that streams started together share wake-ups.
	pacerSlack = time.Millisecond
	// maxLag is how late a frame may be before the pacer gives up catching
	// up: an overloaded generator must not send bursts that look like
	// network jitter to the server.
	maxLag = 100 * time.Millisecond
)

func (sh *pacerShard) run(ctx context.Context, late *atomic.Int64) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := time.Now()
		sh.mu.Lock()
		for _, s := range sh.pending {
			s.next = now
			heap.Push(&sh.queue, s)
		}
		sh.pending = sh.pending[:0]
		sh.mu.Unlock()

		for len(sh.queue) > 0 && !sh.queue[0].next.After(now.Add(pacerSlack)) {
			s := sh.queue[0]
			if s.closed.Load() {
				heap.Pop(&sh.queue)
				continue
			}
			if now.Sub(s.next) > maxLag {
				late.Add(1)
				s.next = now
			}
			s.sendFrame()
			s.next = s.next.Add(s.clip.FrameDur)
			heap.Fix(&sh.queue, 0)
			now = time.Now()
		}
		wait := time.Hour
		if len(sh.queue) > 0 {
			wait = sh.queue[0].next.Sub(now)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-sh.wake:
		}
	}
}

type senderHeap []*sender

func (h senderHeap) Len() int           { return len(h) }
func (h senderHeap) Less(i, j int) bool { return h[i].next.Before(h[j].next) }
func (h senderHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *senderHeap) Push(x any)        { *h = append(*h, x.(*sender)) }
func (h *senderHeap) Pop() any {
	old := *h
	s := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return s
}
