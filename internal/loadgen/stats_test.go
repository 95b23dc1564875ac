package loadgen

import (
	"math"
	"testing"
)

func TestHistogramBucketsAreContiguous(t *testing.T) {
	var prevHi uint64
	for i := 0; i < 64+20*32; i++ {
		lo, hi := histBounds(i)
		if i > 0 && lo != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, previous ended at %d", i, lo, prevHi)
		}
		if histIndex(lo) != i || histIndex(hi) != i {
			t.Fatalf("bucket %d: bounds [%d,%d] map to %d and %d", i, lo, hi, histIndex(lo), histIndex(hi))
		}
		prevHi = hi
	}
	if got := histIndex(math.MaxUint64); got >= histBuckets {
		t.Fatalf("largest value maps past the last bucket: %d", got)
	}
}

func TestHistogramPercentile(t *testing.T) {
	tests := []struct {
		name   string
		values []uint64
		p      float64
		want   uint64
		tol    float64 // relative
	}{
		{"empty", nil, 50, 0, 0},
		{"single", []uint64{1234}, 99, 1234, 0.04},
		{"small exact", []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 50, 5, 0},
		{"p99 of 1..1000", seq(1, 1000), 99, 990, 0.04},
		{"p50 of 1..100000", seq(1, 100000), 50, 50000, 0.04},
		{"p100 is max", []uint64{10, 20, 5_000_000}, 100, 5_000_000, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Histogram
			for _, v := range tt.values {
				h.Add(v)
			}
			got := h.Percentile(tt.p)
			if diff := math.Abs(float64(got) - float64(tt.want)); diff > tt.tol*float64(tt.want) {
				t.Fatalf("p%v = %d, want %d (±%.0f%%)", tt.p, got, tt.want, tt.tol*100)
			}
		})
	}
}

func seq(from, to uint64) []uint64 {
	var out []uint64
	for v := from; v <= to; v++ {
		out = append(out, v)
	}
	return out
}

func TestPercentileExact(t *testing.T) {
	tests := []struct {
		values []int64
		p      float64
		want   int64
	}{
		{nil, 50, 0},
		{[]int64{7}, 1, 7},
		{[]int64{5, 1, 4, 2, 3}, 50, 3},
		{[]int64{5, 1, 4, 2, 3}, 99, 5},
		{[]int64{5, 1, 4, 2, 3}, 20, 1},
		{[]int64{5, 1, 4, 2, 3}, 21, 2},
	}
	for _, tt := range tests {
		if got := Percentile(append([]int64(nil), tt.values...), tt.p); got != tt.want {
			t.Errorf("Percentile(%v, %v) = %d, want %d", tt.values, tt.p, got, tt.want)
		}
	}
}

func TestSeqTrackerLoss(t *testing.T) {
	tests := []struct {
		name                 string
		seqs                 []uint16
		expected, received   int64
		duplicates, lateSeqs int64
	}{
		{"in order", []uint16{10, 11, 12, 13}, 4, 4, 0, 0},
		{"one gap", []uint16{10, 11, 13, 14}, 5, 4, 0, 0},
		{"gap filled by retransmission", []uint16{10, 11, 13, 14, 12}, 5, 5, 0, 0},
		{"duplicate does not hide loss", []uint16{10, 11, 11, 13}, 4, 3, 1, 0},
		{"reordered", []uint16{1, 3, 2, 4}, 4, 4, 0, 0},
		{"wrap-around", []uint16{65533, 65534, 65535, 0, 1}, 5, 5, 0, 0},
		{"gap across wrap", []uint16{65534, 65535, 1, 2}, 5, 4, 0, 0},
		{"retransmission across wrap", []uint16{65534, 1, 65535, 0}, 4, 4, 0, 0},
		{"too old to tell", []uint16{100, 1200, 101}, 1101, 2, 0, 1},
		{"two cycles", cycle(5000, 140000), 140000, 140000, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c LossCounters
			tr := NewSeqTracker(&c)
			for _, s := range tt.seqs {
				tr.Push(s)
			}
			if c.Expected.Load() != tt.expected || c.Received.Load() != tt.received ||
				c.Duplicates.Load() != tt.duplicates || c.Late.Load() != tt.lateSeqs {
				t.Fatalf("expected/received/duplicates/late = %d/%d/%d/%d, want %d/%d/%d/%d",
					c.Expected.Load(), c.Received.Load(), c.Duplicates.Load(), c.Late.Load(),
					tt.expected, tt.received, tt.duplicates, tt.lateSeqs)
			}
		})
	}
}

// cycle returns n consecutive sequence numbers from start, wrapping.
func cycle(start uint16, n int) []uint16 {
	out := make([]uint16, n)
	for i := range out {
		out[i] = start + uint16(i)
	}
	return out
}

func TestLossPercent(t *testing.T) {
	var c LossCounters
	if got := c.LossPercent(); got != 0 {
		t.Fatalf("empty: %v", got)
	}
	c.Expected.Store(200)
	c.Received.Store(199)
	if got := c.LossPercent(); got != 0.5 {
		t.Fatalf("got %v, want 0.5", got)
	}
}

type sendRecord struct {
	h  uint64
	at int64
}

func TestSendTimesMatching(t *testing.T) {
	const n = sendTimesSlots
	tests := []struct {
		name   string
		record []sendRecord
		lookup uint64
		want   int64
		ok     bool
	}{
		{"miss", nil, 42, 0, false},
		{"hit", []sendRecord{{42, 100}}, 42, 100, true},
		{"resend replaces", []sendRecord{{42, 100}, {42, 6100}}, 42, 6100, true},
		{"two colliding payloads both stay", []sendRecord{{42, 100}, {43 + n, 200}}, 42, 100, true},
		{"two colliding payloads both stay, newer", []sendRecord{{42, 100}, {43 + n, 200}}, 43 + n, 200, true},
		{"third collision evicts the oldest", []sendRecord{{42, 100}, {43, 200}, {42 + n, 300}}, 42, 0, false},
		{"third collision keeps the newer", []sendRecord{{42, 100}, {43, 200}, {42 + n, 300}}, 43, 200, true},
		{"resend of one of a pair keeps the other", []sendRecord{{42, 100}, {43, 200}, {42, 300}}, 43, 200, true},
		{"neighbouring pairs do not interfere", []sendRecord{{42, 100}, {43, 200}, {44, 300}, {45, 400}}, 42, 100, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s SendTimes
			for _, r := range tt.record {
				s.Record(r.h, r.at)
			}
			at, ok := s.Lookup(tt.lookup)
			if at != tt.want || ok != tt.ok {
				t.Fatalf("Lookup = %d, %v; want %d, %v", at, ok, tt.want, tt.ok)
			}
		})
	}
}
