package loadgen

import (
	"hash/maphash"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// packet builds an RTP packet as a server would forward it: its own SSRC,
// sequence number and timestamp, the publisher's payload.
func packet(t *testing.T, seq uint16, marker bool, payload []byte) []byte {
	t.Helper()
	p := rtp.Packet{Header: rtp.Header{Version: 2, SSRC: 0xfeed, SequenceNumber: seq, Timestamp: uint32(seq) * 3000,
		Marker: marker, PayloadType: 96}, Payload: payload}
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// vp8Payload returns a payload with the descriptor the given SFU wrote
// (7- or 15-bit picture ID) and a body unique to n.
func vp8Payload(n int, longPID, key bool) []byte {
	body := []byte{0x01, byte(n), byte(n >> 8), 0xaa, 0xbb}
	if key {
		body[0] = 0x00
	}
	desc := []byte{0x90, 0x80, 0x05}
	if longPID {
		desc = []byte{0x90, 0x80, 0x80 | byte(n>>8), byte(n)}
	}
	return append(desc, body...)
}

func TestReceiverMatchesLatencyAcrossSequenceWrap(t *testing.T) {
	const ms = int64(1e6)
	seed := maphash.MakeSeed()
	hasher := NewPayloadHasher(seed, webrtc.MimeTypeVP8)
	type pkt struct {
		seq     uint16
		payload int  // which sent payload arrives
		longPID bool // descriptor form the server wrote
		at      int64
	}
	tests := []struct {
		name           string
		pkts           []pkt
		wantSamples    uint64
		wantMaxUS      uint64
		wantExpected   int64
		wantReceived   int64
		wantUnmatched  int64
		wantDuplicates int64
	}{
		{
			name: "wrap with rewritten descriptors",
			pkts: []pkt{
				{65534, 0, true, 12 * ms}, {65535, 1, false, 13 * ms}, {0, 2, true, 14 * ms}, {1, 3, false, 15 * ms},
			},
			wantSamples: 4, wantMaxUS: 12000, wantExpected: 4, wantReceived: 4,
		},
		{
			name: "gap at the wrap then retransmission",
			pkts: []pkt{
				{65535, 0, true, 10 * ms}, {1, 2, true, 12 * ms}, {0, 1, true, 40 * ms},
			},
			wantSamples: 3, wantMaxUS: 39000, wantExpected: 3, wantReceived: 3,
		},
		{
			name:        "duplicate",
			pkts:        []pkt{{100, 0, true, 5 * ms}, {100, 0, true, 6 * ms}},
			wantSamples: 2, wantMaxUS: 6000, wantExpected: 1, wantReceived: 1, wantDuplicates: 1,
		},
		{
			name:        "payload never sent",
			pkts:        []pkt{{7, 99, true, 5 * ms}},
			wantSamples: 0, wantExpected: 1, wantReceived: 1, wantUnmatched: 1,
		},
		{
			name:        "stale match from an earlier loop is not a sample",
			pkts:        []pkt{{7, 0, true, 4 * int64(maxLatency)}},
			wantSamples: 0, wantExpected: 1, wantReceived: 1, wantUnmatched: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sent SendTimes
			// Payload i was sent at i ms by the publisher, with its own
			// descriptor; the hash skips the descriptor.
			for i := range 4 {
				sent.Record(hasher.Hash(vp8Payload(i, true, false)), int64(i)*ms)
			}
			var stats KindStats
			var all Histogram
			var c Counters
			r := newReceiver(true, webrtc.MimeTypeVP8, hasher, &sent, &stats, &all, &c)
			for _, p := range tt.pkts {
				r.handle(packet(t, p.seq, false, vp8Payload(p.payload, p.longPID, false)), p.at)
			}
			if got := stats.Latency.Count(); got != tt.wantSamples {
				t.Errorf("latency samples %d, want %d", got, tt.wantSamples)
			}
			if tt.wantSamples > 0 && stats.Latency.Max() != tt.wantMaxUS {
				t.Errorf("max latency %d µs, want %d", stats.Latency.Max(), tt.wantMaxUS)
			}
			if all.Count() != stats.Latency.Count() {
				t.Errorf("overall histogram has %d samples, kind has %d", all.Count(), stats.Latency.Count())
			}
			if e, r := stats.Loss.Expected.Load(), stats.Loss.Received.Load(); e != tt.wantExpected || r != tt.wantReceived {
				t.Errorf("expected/received %d/%d, want %d/%d", e, r, tt.wantExpected, tt.wantReceived)
			}
			if got := c.Unmatched.Load(); got != tt.wantUnmatched {
				t.Errorf("unmatched %d, want %d", got, tt.wantUnmatched)
			}
			if got := stats.Loss.Duplicates.Load(); got != tt.wantDuplicates {
				t.Errorf("duplicates %d, want %d", got, tt.wantDuplicates)
			}
		})
	}
}

func TestReceiverFirstFrame(t *testing.T) {
	hasher := NewPayloadHasher(maphash.MakeSeed(), webrtc.MimeTypeVP8)
	tests := []struct {
		name      string
		keys      []bool // keyframe start per packet
		markers   []bool
		wantReady bool
		wantPLIs  int
	}{
		{"keyframe then end of frame", []bool{true, false}, []bool{false, true}, true, 0},
		{"delta frames only", []bool{false, false}, []bool{true, true}, false, 0},
		{"keyframe without its end", []bool{true, false}, []bool{false, false}, false, 0},
		{"no keyframe for long asks once per interval", []bool{false, false, false}, []bool{true, true, true}, false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var (
				sent  SendTimes
				stats KindStats
				all   Histogram
				c     Counters
			)
			r := newReceiver(true, webrtc.MimeTypeVP8, hasher, &sent, &stats, &all, &c)
			ready, plis := false, 0
			r.onFirstFull = func() { ready = true }
			r.sendPLI = func() error { plis++; return nil }
			step := int64(10e6)
			if tt.wantPLIs > 0 {
				step = int64(pliInterval) * 3 / 4 // the third packet is past one interval, not two
			}
			for i := range tt.keys {
				r.handle(packet(t, uint16(i), tt.markers[i], vp8Payload(i, true, tt.keys[i])), 1+int64(i)*step)
			}
			if ready != tt.wantReady || plis != tt.wantPLIs {
				t.Fatalf("ready %v, PLIs %d; want %v, %d", ready, plis, tt.wantReady, tt.wantPLIs)
			}
		})
	}
}
