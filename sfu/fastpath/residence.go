package fastpath

import (
	"sync/atomic"
	"time"
)

// Residence is a histogram of how long packets spent in the server: from
// the kernel's arrival stamp on the socket to the end of their forwarding
// (the last send). Queueing behind other work shows here first, before
// any loss, which makes it the server's own measure of saturation.
type Residence struct {
	Bounds []time.Duration // upper bounds of the buckets; one more bucket is unbounded
	Counts []uint64        // per bucket, not cumulative
	Count  uint64
	Sum    time.Duration
}

// residenceBuckets counts the buckets, the unbounded last one included.
const residenceBuckets = 11

// residenceBounds are the buckets' upper bounds: a packet on an idle
// server takes tens of microseconds; milliseconds mean queueing.
func residenceBounds() [residenceBuckets - 1]time.Duration {
	return [...]time.Duration{
		50 * time.Microsecond, 100 * time.Microsecond, 200 * time.Microsecond, 500 * time.Microsecond,
		time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond,
		20 * time.Millisecond, 50 * time.Millisecond,
	}
}

// residenceHistogram is one reader's; only that reader writes it.
type residenceHistogram struct {
	counts [residenceBuckets]atomic.Uint64
	sum    atomic.Int64 // nanoseconds
}

func (h *residenceHistogram) observe(d time.Duration) {
	if d < 0 {
		d = 0 // the wall clock stepped back
	}
	i := 0
	for _, bound := range residenceBounds() {
		if d <= bound {
			break
		}
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(int64(d))
}

func (h *residenceHistogram) addTo(r *Residence) {
	if r.Bounds == nil {
		b := residenceBounds()
		r.Bounds = b[:]
		r.Counts = make([]uint64, len(h.counts))
	}
	for i := range h.counts {
		n := h.counts[i].Load()
		r.Counts[i] += n
		r.Count += n
	}
	r.Sum += time.Duration(h.sum.Load())
}
