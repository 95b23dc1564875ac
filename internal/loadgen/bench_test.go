package loadgen

import (
	"hash/maphash"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// marshalWriter stands in for pion's write path: it serialises the packet
// as SRTP would before encrypting, and keeps nothing.
type marshalWriter struct{ buf []byte }

func (w *marshalWriter) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	n, err := h.MarshalTo(w.buf)
	if err != nil {
		return 0, err
	}
	return n + copy(w.buf[n:], payload), nil
}

func (w *marshalWriter) Write(b []byte) (int, error) { return len(b), nil }

func benchSender(b *testing.B, load func(PayloadHasher) (*Clip, error), mime string) {
	clip, err := load(NewPayloadHasher(maphash.MakeSeed(), mime))
	if err != nil {
		b.Fatal(err)
	}
	var (
		times SendTimes
		c     Counters
	)
	kind := webrtc.RTPCodecTypeVideo
	if mime == webrtc.MimeTypeOpus {
		kind = webrtc.RTPCodecTypeAudio
	}
	s := newSender("v", "s", "", kind, clip, &times, &c, time.Now(), 1)
	mid := "0"
	s.mid.Store(&mid)
	s.twccSeq = new(atomic.Uint32)
	s.bound.Store(&binding{w: &marshalWriter{buf: make([]byte, 1500)}, ssrc: 1234, pt: 96, midID: 1, twccID: 3})
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		s.sendFrame()
	}
	b.ReportMetric(float64(c.PacketsSent.Load())/float64(b.N), "packets/op")
}

// BenchmarkSendFrame measures the generator's own cost per frame replayed,
// up to pion's write path.
func BenchmarkSendFrame(b *testing.B) {
	b.Run("vp8-800k", func(b *testing.B) {
		benchSender(b, func(h PayloadHasher) (*Clip, error) {
			return LoadIVF("../../testdata/media/vp8-640x480-800k.ivf", h)
		}, webrtc.MimeTypeVP8)
	})
	b.Run("h264-800k", func(b *testing.B) {
		benchSender(b, func(h PayloadHasher) (*Clip, error) {
			return LoadH264("../../testdata/media/h264-640x480-800k.h264", 30, h)
		}, webrtc.MimeTypeH264)
	})
	b.Run("opus-48k", func(b *testing.B) {
		benchSender(b, func(h PayloadHasher) (*Clip, error) {
			return LoadOgg("../../testdata/media/opus-48k.ogg", h)
		}, webrtc.MimeTypeOpus)
	})
}

// BenchmarkReceive measures the per-packet cost of loss and latency
// accounting on a received video packet.
func BenchmarkReceive(b *testing.B) {
	hasher := NewPayloadHasher(maphash.MakeSeed(), webrtc.MimeTypeVP8)
	clip, err := LoadIVF("../../testdata/media/vp8-640x480-800k.ivf", hasher)
	if err != nil {
		b.Fatal(err)
	}
	var (
		sent  SendTimes
		stats KindStats
		all   Histogram
		c     Counters
	)
	var pkts [][]byte
	for i, fr := range clip.Frames[:30] {
		for j, p := range fr.Payloads {
			sent.Record(fr.Hashes[j], int64(i))
			raw, err := (&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(len(pkts)), SSRC: 9,
				Marker: j == len(fr.Payloads)-1}, Payload: p}).Marshal()
			if err != nil {
				b.Fatal(err)
			}
			pkts = append(pkts, raw)
		}
	}
	r := newReceiver(true, webrtc.MimeTypeVP8, hasher, &sent, &stats, &all, &c)
	r.onFirstFull = func() {}
	b.ReportAllocs()
	b.SetBytes(int64(len(pkts[1])))
	i := 0
	for b.Loop() {
		r.handle(pkts[i%len(pkts)], int64(1e6+i))
		i++
	}
}
