package bwe

import (
	"testing"
	"time"

	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/rtcp"
)

// link simulates a path: packets of 1200 bytes at a given rate, a loss
// pattern and a one-way delay that may grow; the receiver's feedback is
// built by pion's own transport-cc recorder, as a browser's would be.
type link struct {
	seq   uint16
	now   time.Time
	start time.Time
}

func (l *link) run(t *testing.T, e *Estimator, seconds float64, packetsPerSecond int, lose func(i int) bool, delay func(elapsed time.Duration) time.Duration) {
	t.Helper()
	rec := twcc.NewRecorder(1)
	gap := time.Second / time.Duration(packetsPerSecond)
	n := int(seconds * float64(packetsPerSecond))
	for i := range n {
		l.now = l.now.Add(gap)
		e.Sent(l.seq, 1200, l.now)
		if !lose(i) {
			arrival := l.now.Add(delay(l.now.Sub(l.start)))
			rec.Record(5, l.seq, arrival.Sub(l.start).Microseconds())
		}
		l.seq++
		if i%10 == 9 { // feedback every ten packets
			for _, p := range rec.BuildFeedbackPacket() {
				if fb, ok := p.(*rtcp.TransportLayerCC); ok {
					e.Feedback(fb, l.now)
				}
			}
		}
	}
}

func newLink() *link {
	now := time.Unix(1000, 0)
	return &link{now: now, start: now}
}

func noLoss(int) bool                  { return false }
func flat(time.Duration) time.Duration { return 20 * time.Millisecond }

func TestEstimate(t *testing.T) {
	tests := []struct {
		name    string
		lose    func(int) bool
		delay   func(time.Duration) time.Duration
		initial int
		check   func(got int) bool
		want    string
	}{
		{"clean path grows to the ceiling", noLoss, flat, 300_000,
			func(got int) bool { return got == 2_000_000 }, "2000000"},
		{"heavy loss backs off", func(i int) bool { return i%4 == 0 }, flat, 1_500_000,
			func(got int) bool { return got < 500_000 }, "< 500000"},
		{"a building queue caps at the delivered rate", noLoss,
			func(el time.Duration) time.Duration { return 20*time.Millisecond + el/10 }, 2_000_000,
			func(got int) bool { return got <= 1_000_000 }, "<= 1000000 (about 0.85 x 0.96 Mbit/s)"},
		{"light loss holds", func(i int) bool { return i%20 == 0 }, flat, 800_000,
			func(got int) bool { return got == 800_000 }, "800000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := New(tt.initial, 50_000, 2_000_000)
			newLink().run(t, e, 30, 100, tt.lose, tt.delay) // 100 pkt/s x 1200 B = 0.96 Mbit/s
			if got := e.Estimate(); !tt.check(got) {
				t.Fatalf("estimate %d, want %s", got, tt.want)
			}
		})
	}
}

func TestFeedbackForUnknownPacketsIsIgnored(t *testing.T) {
	e := New(500_000, 50_000, 2_000_000)
	rec := twcc.NewRecorder(1)
	for seq := uint16(0); seq < 100; seq++ {
		rec.Record(5, seq, int64(seq)*10_000)
	}
	// Two rounds a second apart, so that a window closes.
	for round := range 2 {
		for _, p := range rec.BuildFeedbackPacket() {
			e.Feedback(p.(*rtcp.TransportLayerCC), time.Unix(1000, 0).Add(time.Duration(round)*time.Second))
		}
		for seq := uint16(100); seq < 200; seq++ {
			rec.Record(5, seq, int64(seq)*10_000)
		}
	}
	if got := e.Estimate(); got != 500_000 {
		t.Fatalf("feedback about packets never sent moved the estimate to %d", got)
	}
}

func BenchmarkSent(b *testing.B) {
	e := New(500_000, 50_000, 2_000_000)
	now := time.Now()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		e.Sent(uint16(i), 1200, now)
	}
}
