package sfu

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/avs/avs/internal/rtctest"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// checkContinuous asserts that packets are consecutive in sequence number
// and carry the payloads that were sent, in order.
func checkContinuous(t *testing.T, pkts []*rtp.Packet) {
	t.Helper()
	checkSequence(t, pkts)
	for i := 1; i < len(pkts); i++ {
		prev, cur := frameOf(pkts[i-1]), frameOf(pkts[i])
		if cur < prev || cur > prev+1 {
			t.Fatalf("packet %d: frame %d after %d", i, cur, prev)
		}
	}
}

// checkSequence asserts consecutive sequence numbers and one SSRC.
func checkSequence(t *testing.T, pkts []*rtp.Packet) {
	t.Helper()
	for i := 1; i < len(pkts); i++ {
		if pkts[i].SequenceNumber != pkts[i-1].SequenceNumber+1 || pkts[i].SSRC != pkts[0].SSRC {
			t.Fatalf("packet %d: seq %d after %d", i, pkts[i].SequenceNumber, pkts[i-1].SequenceNumber)
		}
	}
}

func frameOf(p *rtp.Packet) int { return int(p.Payload[2])<<8 | int(p.Payload[3]) }

func TestForwardsVideoIntactAndInOrder(t *testing.T) {
	for _, tc := range []struct {
		fast    bool
		readers int
	}{{true, 1}, {true, 3}, {false, 1}} {
		t.Run(fmt.Sprintf("fast_path=%v/udp_readers=%d", tc.fast, tc.readers), func(t *testing.T) {
			forwardsVideoIntactAndInOrder(t, tc.fast, tc.readers)
		})
	}
}

func forwardsVideoIntactAndInOrder(t *testing.T, fast bool, readers int) {
	// Once the subscriber has seen video, send a known run and check it
	// arrives whole.
	s := newTestSFU(t, func(c *Config) { c.FastPath, c.UDPReaders = fast, readers })
	pubP, pub, sub, seq := cameraToViewer(t, s)
	var directBefore uint64
	if fast {
		directBefore = s.apis.fast.Stats().Direct
	}
	before := len(sub.snapshot(webrtc.RTPCodecTypeVideo))
	sendVideo(t, pub.video, seq, 60, 3, 30)
	waitFor(t, "the whole run", func() bool {
		return len(sub.snapshot(webrtc.RTPCodecTypeVideo)) >= before+180
	})
	got := sub.snapshot(webrtc.RTPCodecTypeVideo)
	checkSequence(t, got)
	got = got[before:]
	checkContinuous(t, got)
	last := got[len(got)-1]
	want := vp8Payload(false, 59, 2)
	if !bytes.Equal(last.Payload, want) || !last.Marker {
		t.Fatalf("last packet payload or marker differs from what was sent")
	}
	if first := sub.snapshot(webrtc.RTPCodecTypeVideo)[0]; first.Payload[1]&0x01 != 0 {
		t.Fatalf("subscriber started on an inter frame, not a keyframe")
	}
	// The run went the short way: straight from SRTP decryption to the
	// forwarding, without a reader goroutine per track.
	pubP.mu.Lock()
	defer pubP.mu.Unlock()
	if len(pubP.publications) == 0 {
		t.Fatal("no publication")
	}
	for _, p := range pubP.publications {
		if l := p.layer(0); l == nil || !l.tapped.Load() {
			t.Fatalf("%s track not read through its tap", p.Kind())
		}
	}
	// With the fast path, shorter still: decrypted by the socket's reader.
	if fast {
		st := s.apis.fast.Stats()
		if st.Direct-directBefore < 180 || st.Fallback != 0 || st.Dropped != 0 {
			t.Fatalf("fast path delivered %d of the run's 180 packets (fallback %d, dropped %d)",
				st.Direct-directBefore, st.Fallback, st.Dropped)
		}
	}
}

func TestPLIFromSubscriberReachesPublisherThrottled(t *testing.T) {
	st := startStreaming(t, streamOptions{config: func(c *Config) { c.PLIInterval = 200 * time.Millisecond }})
	s, sub, pub, seq := st.sfu, st.sub, st.pub, st.seq
	for len(pub.plis) > 0 {
		<-pub.plis
	}
	var track *webrtc.TrackRemote
	select {
	case track = <-sub.Tracks:
	case <-time.After(testTimeout):
		t.Fatal("no track")
	}
	// A storm of PLIs from the subscriber...
	for range 50 {
		if err := sub.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(track.SSRC())}}); err != nil {
			t.Fatal(err)
		}
	}
	// ...reaches the publisher, which answers with a keyframe that the
	// subscriber then receives.
	select {
	case <-pub.plis:
	case <-time.After(testTimeout):
		t.Fatal("publisher got no PLI")
	}
	n := len(sub.snapshot(webrtc.RTPCodecTypeVideo))
	sendVideo(t, pub.video, seq, 1, 2, 1)
	waitFor(t, "keyframe at subscriber", func() bool {
		got := sub.snapshot(webrtc.RTPCodecTypeVideo)
		for _, p := range got[n:] {
			if p.Payload[0]&0x10 != 0 && p.Payload[1]&0x01 == 0 {
				return true
			}
		}
		return false
	})
	if sent := s.metrics.plisSent.Load(); sent > 10 {
		t.Fatalf("%d PLIs went upstream for a storm of 50; throttling failed", sent)
	}
}

func TestNACKRecoveryUnderLoss(t *testing.T) {
	tests := []struct {
		name             string
		downstream       func(uint16) bool
		upstream         func(uint16) bool
		wantCacheAnswers bool
		wantUpstream     bool
	}{
		// One packet in 10 lost toward the subscriber: the cache answers.
		{"subscriber side", func(seq uint16) bool { return seq%10 == 3 }, nil, true, false},
		// One in 13 lost from the publisher: the SFU asks upstream.
		{"publisher side", nil, func(seq uint16) bool { return seq%13 == 5 }, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testNACKRecovery(t, tt.downstream, tt.upstream, tt.wantCacheAnswers, tt.wantUpstream)
		})
	}
}

func testNACKRecovery(t *testing.T, downstream, upstream func(uint16) bool, wantCacheAnswers, wantUpstream bool) {
	s := newTestSFU(t)
	room, _ := s.Room("r1", RoomOptions{})
	var wire resentOnWire
	_, sub := joinDynamicOn(t, room, ParticipantOptions{ID: "viewer"}, rtctest.Options{Drop: downstream, Wire: wire.see})
	pubP, _ := room.Join(ParticipantOptions{ID: "camera"})
	var lossy atomic.Bool
	var drop func(uint16) bool
	if upstream != nil {
		drop = func(seq uint16) bool { return lossy.Load() && upstream(seq) }
	}
	pub := newPublisher(t, pubP, drop, false)
	seq := uint16(1)
	waitFor(t, "video at subscriber", func() bool {
		seq = sendVideo(t, pub.video, seq, 5, 2, 5)
		return len(sub.snapshot(webrtc.RTPCodecTypeVideo)) > 0
	})
	lossy.Store(true)
	before := len(sub.snapshot(webrtc.RTPCodecTypeVideo))
	sendVideo(t, pub.video, seq, 100, 3, 0)
	// Retransmissions arrive late, so check completeness, not order. Loss
	// is only seen when a later packet arrives, so the stream goes on (with
	// frames outside the checked run) meanwhile. About 30 packets of the
	// 300 are lost once; every one must be repaired.
	seenCount := func() int {
		seen := map[[2]int]bool{}
		for _, p := range sub.snapshot(webrtc.RTPCodecTypeVideo)[before:] {
			if f := frameOf(p); f < 100 {
				seen[[2]int{f, int(p.Payload[4])}] = true
			}
		}
		return len(seen)
	}
	trailer := 1000
	next := seq + 300
	deadline := time.Now().Add(rtctest.Timeout)
	for seenCount() < 300 && time.Now().Before(deadline) {
		_ = pub.video.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: next, Timestamp: uint32(next) * 1000}, Payload: vp8Payload(false, trailer, 0)})
		next++
		trailer++
		time.Sleep(20 * time.Millisecond)
	}
	if n := seenCount(); n < 300 {
		t.Fatalf("only %d of 300 packets arrived despite NACKs", n)
	}
	if wantCacheAnswers && s.metrics.retransmits.Load() == 0 {
		t.Fatal("no retransmission from the cache")
	}
	// A retransmission is the lost datagram again, byte for byte: SRTP
	// must not encrypt other bytes under the same sequence number.
	if same, differ := wire.counts(); wantCacheAnswers && (same == 0 || differ != 0) {
		t.Fatalf("%d retransmissions were the lost datagram again and %d differed", same, differ)
	}
	// About 23 packets were lost upstream: NACKs went to the publisher for
	// them, but not a storm of them.
	if up := s.metrics.nacksSent.Load(); wantUpstream && (up == 0 || up > 200) {
		t.Fatalf("%d sequence numbers NACKed upstream for about 23 lost packets", up)
	}
}

// resentOnWire compares, on the subscriber's wire, each datagram lost on
// the way in with the one that later came with the same SSRC and sequence
// number.
type resentOnWire struct {
	mu            sync.Mutex
	lost          map[uint64][]byte
	same, differs int
}

func (w *resentOnWire) see(datagram []byte, dropped bool) {
	key := uint64(binary.BigEndian.Uint32(datagram[8:12]))<<16 | uint64(binary.BigEndian.Uint16(datagram[2:4]))
	w.mu.Lock()
	defer w.mu.Unlock()
	if dropped {
		if w.lost == nil {
			w.lost = map[uint64][]byte{}
		}
		w.lost[key] = append([]byte(nil), datagram...)
		return
	}
	if first, ok := w.lost[key]; ok {
		if bytes.Equal(first, datagram) {
			w.same++
		} else {
			w.differs++
		}
		delete(w.lost, key)
	}
}

func (w *resentOnWire) counts() (same, differ int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.same, w.differs
}
