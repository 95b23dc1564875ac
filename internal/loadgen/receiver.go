package loadgen

import (
	"strings"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// maxLatency bounds a plausible one-way latency; a match older than this is
// a stale entry from an earlier loop of the clip, not a measurement.
const maxLatency = 3 * time.Second

// pliInterval is how long a player waits for a keyframe before it asks for
// one, and how often it asks again, as a browser does when it cannot decode.
const pliInterval = time.Second

// KindStats are the receive-side measurements for one kind of media.
type KindStats struct {
	Loss    LossCounters
	Latency Histogram // one-way, microseconds
}

// receiver measures one played stream. One goroutine owns it; handle is
// separate from the read loop so that tests can drive it with packets.
type receiver struct {
	video    bool
	hasher   PayloadHasher
	peer     *SendTimes // the send times of the publisher this stream comes from
	stats    *KindStats
	all      *Histogram // latency of both kinds
	counters *Counters
	seq      *SeqTracker
	keyStart func([]byte) bool

	hdr         rtp.Header
	firstAt     int64
	lastPLI     int64
	keySeen     bool
	frameDone   bool
	onFirstFull func() // called once, when the first keyframe (or audio packet) has arrived
	sendPLI     func() error
}

func newReceiver(video bool, mimeType string, hasher PayloadHasher, peer *SendTimes, stats *KindStats,
	all *Histogram, c *Counters) *receiver {
	r := &receiver{
		video: video, hasher: hasher, peer: peer, stats: stats, all: all, counters: c,
		seq: NewSeqTracker(&stats.Loss),
	}
	if strings.EqualFold(mimeType, webrtc.MimeTypeH264) {
		r.keyStart = isH264KeyframeStart
	} else {
		r.keyStart = isVP8KeyframeStart
	}
	return r
}

// handle accounts for one RTP packet that arrived at now (nanoseconds on
// the run's clock).
func (r *receiver) handle(pkt []byte, now int64) {
	n, err := r.hdr.Unmarshal(pkt)
	if err != nil {
		return
	}
	payload := pkt[n:]
	if r.hdr.Padding && len(payload) > 0 {
		pad := int(payload[len(payload)-1])
		payload = payload[:max(len(payload)-pad, 0)]
	}
	r.counters.PacketsRecv.Add(1)
	r.counters.BytesRecv.Add(int64(len(payload)))
	if len(payload) == 0 {
		return // padding-only probes carry no media and have their own numbers in some SFUs
	}
	r.seq.Push(r.hdr.SequenceNumber)
	if r.firstAt == 0 {
		r.firstAt = now
	}
	if h := r.hasher.Hash(payload); h != 0 {
		if at, ok := r.peer.Lookup(h); ok && now >= at && now-at <= int64(maxLatency) {
			us := uint64(now-at) / 1e3
			r.stats.Latency.Add(us)
			r.all.Add(us)
		} else {
			r.counters.Unmatched.Add(1)
		}
	}
	r.trackFirstFrame(payload, now)
}

// trackFirstFrame notices the end of the first complete keyframe, which is
// when a real player could first show the remote video, and asks for a
// keyframe if none comes.
func (r *receiver) trackFirstFrame(payload []byte, now int64) {
	if r.frameDone {
		return
	}
	if !r.video {
		r.frameDone = true
		r.firstFull()
		return
	}
	if !r.keySeen && r.keyStart(payload) {
		r.keySeen = true
	}
	if r.keySeen && r.hdr.Marker {
		r.frameDone = true
		r.firstFull()
		return
	}
	if !r.keySeen && now-r.firstAt >= int64(pliInterval) && now-r.lastPLI >= int64(pliInterval) {
		r.lastPLI = now
		if r.sendPLI != nil {
			_ = r.sendPLI() // counted by the RTCP counter; a failure means the call is ending
		}
	}
}

func (r *receiver) firstFull() {
	if r.onFirstFull != nil {
		r.onFirstFull()
	}
}

// readLoop reads track until it ends (the peer connection closed).
func (r *receiver) readLoop(track *webrtc.TrackRemote, epoch time.Time) {
	buf := make([]byte, 1500)
	for {
		n, _, err := track.Read(buf)
		if err != nil {
			return
		}
		r.handle(buf[:n], int64(time.Since(epoch)))
	}
}
