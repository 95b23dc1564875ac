package sfu

import (
	"encoding/binary"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/avs/avs/sfu/packetcache"
	"github.com/avs/avs/sfu/rtpstats"
)

// maxLayers is the number of simulcast layers a video track may carry.
const maxLayers = 3

// Publication is one track a participant publishes: Opus audio, or video
// in up to three simulcast layers. Any source of RTP can feed it through
// WriteRTP, so a non-WebRTC publisher (an RTMP bridge) is a participant too.
type Publication struct {
	id        string
	streamID  string
	kind      webrtc.RTPCodecType
	mimeType  string
	clockRate uint32
	owner     *Participant

	layers [maxLayers]atomic.Pointer[layer]

	// subscribers is copy-on-write: the reader goroutines load it once per
	// packet and never wait for the lock that guards changes.
	subMu       sync.Mutex
	subscribers atomic.Pointer[[]*DownTrack]

	// audioLevel is the last RFC 6464 level in -dBov (0 loudest, 127
	// silent), smoothed; 127 when unknown.
	audioLevel   atomic.Int32
	levelExtID   uint8
	twccExtID    uint8 // the publisher's transport-wide sequence number extension
	pliInterval  time.Duration
	requestFrame func(ssrc uint32) // sends a PLI upstream
	closed       atomic.Bool
}

// layer is one simulcast encoding (or the only encoding) of a publication.
type layer struct {
	quality int
	rid     string
	ssrc    uint32
	cache   *packetcache.Cache
	stats   *rtpstats.Receiver

	packets    atomic.Uint64
	bytes      atomic.Uint64
	lastAt     atomic.Int64 // unix nanoseconds of the last packet
	lastPLIAt  atomic.Int64
	pliPending atomic.Bool
	bitrate    atomic.Int64 // bit/s over the last measurement period
	tapped     atomic.Bool  // packets come from the decrypting goroutine, no reader in between

	rateBytes uint64 // bytes at the last rate measurement; owned by the rate ticker
	rateAt    time.Time
}

func newPublication(owner *Participant, id, streamID string, kind webrtc.RTPCodecType, codec webrtc.RTPCodecParameters) *Publication {
	p := &Publication{
		id:          id,
		streamID:    streamID,
		kind:        kind,
		mimeType:    codec.MimeType,
		clockRate:   codec.ClockRate,
		owner:       owner,
		pliInterval: owner.room.sfu.cfg.PLIInterval,
	}
	p.audioLevel.Store(127)
	empty := []*DownTrack{}
	p.subscribers.Store(&empty)
	return p
}

// ID is the track id the publisher gave.
func (p *Publication) ID() string { return p.id }

// Kind is audio or video.
func (p *Publication) Kind() webrtc.RTPCodecType { return p.kind }

// MimeType is the codec, such as video/VP8.
func (p *Publication) MimeType() string { return p.mimeType }

// Owner is the publishing participant.
func (p *Publication) Owner() *Participant { return p.owner }

// qualityOfRID maps the usual simulcast rid names to a layer, low to high.
func qualityOfRID(rid string, fallback int) int {
	switch strings.ToLower(rid) {
	case "q", "l", "low", "0", "quarter":
		return 0
	case "h", "m", "mid", "medium", "1", "half":
		return 1
	case "f", "high", "hi", "2", "full":
		return 2
	}
	return min(max(fallback, 0), maxLayers-1)
}

func (p *Publication) addLayer(quality int, rid string, ssrc uint32) *layer {
	size := p.owner.room.sfu.cfg.AudioCacheSize
	if p.kind == webrtc.RTPCodecTypeVideo {
		size = p.owner.room.sfu.cfg.VideoCacheSize
	}
	l := &layer{
		quality: quality,
		rid:     rid,
		ssrc:    ssrc,
		cache:   packetcache.New(size, p.owner.room.sfu.cfg.NACKHistory),
		stats:   rtpstats.NewReceiver(p.clockRate),
		rateAt:  time.Now(),
	}
	p.layers[quality].Store(l)
	return l
}

func (p *Publication) layer(q int) *layer {
	if q < 0 || q >= maxLayers {
		return nil
	}
	return p.layers[q].Load()
}

// highestLayer is the best layer that sent media within the last second.
func (p *Publication) activeLayers(now time.Time) (active [maxLayers]bool) {
	for q := range maxLayers {
		if l := p.layers[q].Load(); l != nil && now.UnixNano()-l.lastAt.Load() < int64(time.Second) {
			active[q] = true
		}
	}
	return active
}

// readRTP is the reader goroutine of one layer of a WebRTC publisher. With
// a tap it only delivers what pion read ahead, then hands the stream to the
// tap and waits for its end; without one it reads every packet.
func (p *Publication) readRTP(l *layer, track *webrtc.TrackRemote, tap *streamTap) {
	buf := make([]byte, packetcache.MaxPacketSize)
	var h rtp.Header
	var delivered uint64
	handle := func(pkt []byte) { p.handleRTP(l, pkt, &h, time.Now()) }
	for {
		if tap != nil && tap.claim(delivered, handle) {
			l.tapped.Store(true)
			<-tap.Done()
			return
		}
		n, _, err := track.Read(buf)
		if err != nil {
			return
		}
		delivered++
		handle(buf[:n])
	}
}

// handleRTP stores and forwards one packet. It runs on the layer's reader
// goroutine; h is that goroutine's reusable header, so parsing allocates
// nothing.
func (p *Publication) handleRTP(l *layer, pkt []byte, h *rtp.Header, now time.Time) {
	hl, err := h.Unmarshal(pkt)
	if err != nil {
		p.owner.room.sfu.metrics.malformedRTP.Add(1)
		return
	}
	end := len(pkt)
	if h.Padding {
		pad := int(pkt[end-1])
		if pad == 0 || hl+pad > end {
			p.owner.room.sfu.metrics.malformedRTP.Add(1)
			return
		}
		end -= pad
	}
	payload := pkt[hl:end]
	l.packets.Add(1)
	l.bytes.Add(uint64(len(pkt)))
	l.lastAt.Store(now.UnixNano())
	if !l.stats.Update(h.SequenceNumber, h.Timestamp, len(pkt), now) {
		return // a duplicate: the subscribers had it already
	}
	if l.stats.HasMissing() && !p.owner.attention.Load() {
		p.owner.attention.Store(true)
	}
	l.cache.Store(h.SequenceNumber, pkt, int64(now.Sub(p.owner.room.sfu.started)))
	if len(payload) == 0 {
		return // padding only, a bandwidth probe of the publisher
	}
	if p.twccExtID != 0 {
		if ext := h.GetExtension(p.twccExtID); len(ext) >= 2 {
			p.owner.feedback.record(l.ssrc, binary.BigEndian.Uint16(ext), now)
		}
	}
	if p.levelExtID != 0 {
		if ext := h.GetExtension(p.levelExtID); len(ext) > 0 {
			p.updateAudioLevel(int32(ext[0] & 0x7f))
		}
	}
	keyframe := p.kind == webrtc.RTPCodecTypeVideo && isKeyframe(p.mimeType, payload)
	for _, dt := range *p.subscribers.Load() {
		dt.forward(p, l.quality, h, payload, keyframe, now)
	}
}

// WriteRTP feeds one RTP packet of the given layer from a non-WebRTC source.
func (p *Publication) WriteRTP(quality int, pkt []byte, h *rtp.Header) {
	if l := p.layer(quality); l != nil {
		p.handleRTP(l, pkt, h, time.Now())
	}
}

func (p *Publication) updateAudioLevel(level int32) {
	// A fast attack and a slow release keep a speaker active through the
	// short pauses between words.
	old := p.audioLevel.Load()
	if level < old {
		p.audioLevel.Store(level)
	} else {
		p.audioLevel.Store(old + (level-old+7)/8)
	}
}

// RequestKeyframe asks the publisher for a keyframe on one layer, at most
// once per configured interval however many subscribers ask.
func (p *Publication) RequestKeyframe(quality int) {
	l := p.layer(quality)
	if l == nil || p.kind != webrtc.RTPCodecTypeVideo || p.requestFrame == nil {
		return
	}
	now := time.Now().UnixNano()
	last := l.lastPLIAt.Load()
	if now-last < int64(p.pliInterval) || !l.lastPLIAt.CompareAndSwap(last, now) {
		// Too soon: one request goes out when the interval ends.
		l.pliPending.Store(true)
		p.owner.attention.Store(true)
		return
	}
	l.pliPending.Store(false)
	p.owner.room.sfu.metrics.plisSent.Add(1)
	p.requestFrame(l.ssrc)
}

// needsAttention reports lost packets still to be asked for, or a
// keyframe request held back by the throttle.
func (p *Publication) needsAttention() bool {
	for q := range maxLayers {
		if l := p.layer(q); l != nil && (l.stats.HasMissing() || l.pliPending.Load()) {
			return true
		}
	}
	return false
}

// flushKeyframeRequests sends the requests held back by the throttle once
// their interval has passed.
func (p *Publication) flushKeyframeRequests() {
	for q := range maxLayers {
		if l := p.layer(q); l != nil && l.pliPending.Load() {
			p.RequestKeyframe(q)
		}
	}
}

func (p *Publication) addSubscriber(dt *DownTrack) {
	p.subMu.Lock()
	defer p.subMu.Unlock()
	old := *p.subscribers.Load()
	next := make([]*DownTrack, 0, len(old)+1)
	next = append(next, old...)
	next = append(next, dt)
	p.subscribers.Store(&next)
}

func (p *Publication) removeSubscriber(dt *DownTrack) {
	p.subMu.Lock()
	defer p.subMu.Unlock()
	old := *p.subscribers.Load()
	next := make([]*DownTrack, 0, len(old))
	for _, d := range old {
		if d != dt {
			next = append(next, d)
		}
	}
	p.subscribers.Store(&next)
}

// upstreamNACKs builds NACKs for what each layer misses; minAge leaves room
// for reordering before a packet is called lost.
func (p *Publication) upstreamNACKs(now time.Time, senderSSRC uint32, out []rtcp.Packet) []rtcp.Packet {
	var seqs [64]uint16
	for q := range maxLayers {
		l := p.layer(q)
		if l == nil {
			continue
		}
		missing := l.stats.MissingForNACK(seqs[:0], now, 10*time.Millisecond, 80*time.Millisecond, 4)
		if len(missing) == 0 {
			continue
		}
		p.owner.room.sfu.metrics.nacksSent.Add(uint64(len(missing)))
		out = append(out, &rtcp.TransportLayerNack{
			SenderSSRC: senderSSRC, MediaSSRC: l.ssrc, Nacks: rtcp.NackPairsFromSequenceNumbers(missing),
		})
	}
	return out
}

// updateBitrates measures each layer's incoming rate, for layer selection.
func (p *Publication) updateBitrates(now time.Time) {
	for q := range maxLayers {
		l := p.layer(q)
		if l == nil {
			continue
		}
		b := l.bytes.Load()
		if d := now.Sub(l.rateAt); d > 0 {
			l.bitrate.Store(int64(float64(b-l.rateBytes) * 8 / d.Seconds()))
		}
		l.rateBytes, l.rateAt = b, now
	}
}
