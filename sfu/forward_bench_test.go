package sfu

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/avs/avs/sfu/bwe"
)

// countingWriter stands in for the SRTP write stream: it keeps the last
// sequence number so the compiler cannot drop the work.
type countingWriter struct {
	n    int
	last uint16
}

func (w *countingWriter) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	w.n++
	w.last = h.SequenceNumber
	return len(payload), nil
}

// benchPublication builds a video publication with subs subscribers, outside
// any PeerConnection, to measure the forwarding path alone.
func benchPublication(subs int) (*Publication, *layer, []*countingWriter) {
	s := &SFU{cfg: DefaultConfig()}
	s.metrics = newMetrics(s)
	room := &Room{sfu: s, participants: map[string]*Participant{}}
	owner := &Participant{id: "camera", room: room}
	codec := webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: mimeVP8, ClockRate: 90000}}
	pub := newPublication(owner, "video", "cam", webrtc.RTPCodecTypeVideo, codec)
	l := pub.addLayer(0, "", 0x1234)
	writers := make([]*countingWriter, subs)
	for i := range subs {
		writers[i] = &countingWriter{}
		dt := newDownTrack(webrtc.RTPCodecTypeVideo, "video", "cam")
		dt.AttachWriter(writers[i], uint32(1000+i), map[string]uint8{mimeVP8: 96})
		// Numbered for transport-wide feedback, as toward a browser.
		dt.transport = &transport{estimate: bwe.New(1_000_000, minBitrate, 4_000_000)}
		dt.twccID = 3
		dt.setSource(pub)
	}
	return pub, l, writers
}

// benchPacket is a marshalled 1200-byte VP8 packet whose sequence number
// and timestamp the benchmark rewrites in place.
func benchPacket(key bool) []byte {
	h := rtp.Header{Version: 2, PayloadType: 96, SSRC: 0x1234, Extension: true}
	_ = h.SetExtension(3, []byte{0x10, 0x20}) // a transport-wide sequence number, as browsers send
	hdr, _ := h.Marshal()
	payload := vp8Payload(key, 0, 0)
	payload = append(payload, make([]byte, 1200-len(hdr)-len(payload))...)
	return append(hdr, payload...)
}

func benchmarkForward(b *testing.B, subs int) {
	pub, l, writers := benchPublication(subs)
	key, inter := benchPacket(true), benchPacket(false)
	var h rtp.Header
	now := time.Now()
	pub.handleRTP(l, key, &h, now) // every subscriber starts on a keyframe
	b.SetBytes(int64(len(inter)))
	b.ReportAllocs()
	seq := uint16(1)
	for b.Loop() {
		binary.BigEndian.PutUint16(inter[2:], seq)
		// Packets 10 ms apart in both clocks, as 800 kbit/s video: the
		// packet cache keeps the arena that bitrate needs, not its ceiling.
		binary.BigEndian.PutUint32(inter[4:], uint32(seq)*900)
		now = now.Add(10 * time.Millisecond)
		pub.handleRTP(l, inter, &h, now)
		seq++
	}
	b.StopTimer()
	if writers[0].n < 2 {
		b.Fatalf("forwarded %d packets", writers[0].n)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*subs), "ns/forwarded-packet")
}

// BenchmarkForward measures one incoming packet from parse to the write
// call of each subscriber: RTP parse, receive statistics, packet cache,
// keyframe check and the per-subscriber rewrite.
func BenchmarkForward(b *testing.B) {
	for _, subs := range []int{1, 2, 10} {
		b.Run(map[int]string{1: "1-subscriber", 2: "2-subscribers", 10: "10-subscribers"}[subs], func(b *testing.B) {
			benchmarkForward(b, subs)
		})
	}
}

// BenchmarkNACKFromCache measures answering a subscriber's NACK of one
// packet from the cache.
func BenchmarkNACKFromCache(b *testing.B) {
	pub, l, writers := benchPublication(1)
	var h rtp.Header
	now := time.Now()
	pub.handleRTP(l, benchPacket(true), &h, now)
	pkt := benchPacket(false)
	for seq := uint16(1); seq < 300; seq++ {
		binary.BigEndian.PutUint16(pkt[2:], seq)
		pub.handleRTP(l, pkt, &h, now)
	}
	dt := (*pub.subscribers.Load())[0]
	p := &Participant{room: pub.owner.room}
	nack := &rtcp.TransportLayerNack{Nacks: []rtcp.NackPair{{PacketID: writers[0].last - 100}}}
	b.ReportAllocs()
	for b.Loop() {
		p.answerNACK(dt, nack)
	}
	if pub.owner.room.sfu.metrics.retransmits.Load() == 0 {
		b.Fatal("no retransmission")
	}
}
