package loadgen

import (
	"math"
	"math/bits"
	"slices"
	"sync/atomic"
)

// Histogram counts non-negative values (microseconds here) in log-linear
// buckets: exact below 64, then 32 buckets per power of two, so any
// percentile read from it is within about 3% of the true value. Adding is
// one atomic increment, cheap enough to call per received packet from many
// goroutines at once.
type Histogram struct {
	buckets [histBuckets]atomic.Uint64
	count   atomic.Uint64
	max     atomic.Uint64
}

const (
	histSubBits = 5
	histLinear  = 2 << histSubBits // values below this have a bucket each
	histBuckets = histLinear + (64-histSubBits-1)<<histSubBits
)

func histIndex(v uint64) int {
	if v < histLinear {
		return int(v)
	}
	shift := bits.Len64(v) - (histSubBits + 1)
	top := v >> shift // in [32, 63]
	return histLinear + (shift-1)<<histSubBits + int(top) - 1<<histSubBits
}

// histBounds returns the smallest and largest value that land in bucket i.
func histBounds(i int) (lo, hi uint64) {
	if i < histLinear {
		return uint64(i), uint64(i)
	}
	j := i - histLinear
	shift := j>>histSubBits + 1
	top := uint64(j&(1<<histSubBits-1)) + 1<<histSubBits
	return top << shift, (top+1)<<shift - 1
}

// Add records one value.
func (h *Histogram) Add(v uint64) {
	h.buckets[histIndex(v)].Add(1)
	h.count.Add(1)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			return
		}
	}
}

// Count returns how many values were added.
func (h *Histogram) Count() uint64 { return h.count.Load() }

// Max returns the largest value added, exactly.
func (h *Histogram) Max() uint64 { return h.max.Load() }

// Percentile returns the nearest-rank p-th percentile (0 < p <= 100) as the
// middle of its bucket, or 0 when the histogram is empty. It may run while
// values are being added; it then sees some of them.
func (h *Histogram) Percentile(p float64) uint64 {
	var counts [histBuckets]uint64
	var total uint64
	for i := range h.buckets {
		counts[i] = h.buckets[i].Load()
		total += counts[i]
	}
	if total == 0 {
		return 0
	}
	rank := nearestRank(p, int(total))
	var seen uint64
	for i, c := range counts {
		seen += c
		if seen >= uint64(rank) {
			lo, hi := histBounds(i)
			return min(lo+(hi-lo)/2, h.Max())
		}
	}
	return h.Max()
}

// nearestRank returns the 1-based rank of the p-th percentile among n sorted
// values.
func nearestRank(p float64, n int) int {
	r := int(math.Ceil(p / 100 * float64(n)))
	return min(max(r, 1), n)
}

// Percentile returns the nearest-rank p-th percentile of values, which it
// sorts in place; 0 when values is empty. It is for small sets such as one
// setup time per call.
func Percentile[T int64 | float64 | uint64](values []T, p float64) T {
	if len(values) == 0 {
		return 0
	}
	slices.Sort(values)
	return values[nearestRank(p, len(values))-1]
}

// LossCounters are the totals that SeqTrackers add to, shared by all streams
// of one kind.
type LossCounters struct {
	Expected   atomic.Int64 // packets the sequence numbers say were sent
	Received   atomic.Int64 // distinct packets that arrived
	Duplicates atomic.Int64 // packets that arrived again (retransmissions)
	Late       atomic.Int64 // packets too old to tell whether they are new
}

// LossPercent returns the share of expected packets that did not arrive.
func (c *LossCounters) LossPercent() float64 {
	exp := c.Expected.Load()
	if exp <= 0 {
		return 0
	}
	lost := exp - c.Received.Load()
	return 100 * float64(max(lost, 0)) / float64(exp)
}

// seqWindow is how far back (in packets) a tracker remembers what arrived,
// enough for a NACK round trip at a few hundred packets per second.
const seqWindow = 1024

// SeqTracker counts loss on one received RTP stream from its sequence
// numbers, in the manner of RFC 3550 (expected = highest - first + 1) but
// counting each sequence number once, so that a retransmission that fills a
// gap lowers the loss and a duplicate does not hide one. The server rewrites
// sequence numbers per subscriber, so these are the subscriber's numbers.
// One goroutine owns a tracker; it publishes into shared LossCounters.
type SeqTracker struct {
	out     *LossCounters
	started bool
	highest uint64 // extended (wrap-counting) highest sequence number
	seen    [seqWindow / 64]uint64
}

// NewSeqTracker returns a tracker that adds to out.
func NewSeqTracker(out *LossCounters) *SeqTracker {
	return &SeqTracker{out: out}
}

// Push records the arrival of a packet with sequence number seq.
func (t *SeqTracker) Push(seq uint16) {
	if !t.started {
		t.started = true
		t.highest = 1<<16 + uint64(seq) // room below for packets reordered before the first
		t.mark(t.highest)
		t.out.Expected.Add(1)
		t.out.Received.Add(1)
		return
	}
	ext := t.extend(seq)
	switch {
	case ext > t.highest:
		gap := ext - t.highest
		for s := t.highest + 1; s < ext && s <= t.highest+seqWindow; s++ {
			t.unmark(s)
		}
		t.highest = ext
		t.mark(ext)
		t.out.Expected.Add(int64(gap))
		t.out.Received.Add(1)
	case t.highest-ext >= seqWindow:
		t.out.Late.Add(1)
	case t.marked(ext):
		t.out.Duplicates.Add(1)
	default:
		t.mark(ext)
		t.out.Received.Add(1)
	}
}

// extend places seq in the 2^16 cycle closest to the highest number seen.
func (t *SeqTracker) extend(seq uint16) uint64 {
	delta := int16(seq - uint16(t.highest))
	return uint64(int64(t.highest) + int64(delta))
}

func (t *SeqTracker) mark(ext uint64)   { t.seen[ext/64%uint64(len(t.seen))] |= 1 << (ext % 64) }
func (t *SeqTracker) unmark(ext uint64) { t.seen[ext/64%uint64(len(t.seen))] &^= 1 << (ext % 64) }
func (t *SeqTracker) marked(ext uint64) bool {
	return t.seen[ext/64%uint64(len(t.seen))]&(1<<(ext%64)) != 0
}

// SendTimes remembers when recent payloads were sent, keyed by a hash of the
// payload, so that the receiving end can compute each packet's one-way
// latency. The server rewrites SSRC, sequence numbers and timestamps per
// subscriber but not payloads, so the payload is the one key both ends share.
//
// It is a two-way set-associative table: a payload's hash picks a pair of
// slots and a new send replaces the older of the two, so two packets of one
// frame that pick the same pair both stay (with one slot per hash, such a
// pair lost a sample on every loop of the clip). An eviction loses a sample,
// never yields a wrong one, since the full hash is compared. A clip that
// loops re-sends the same payloads; the newer send then replaces the older,
// which is the one a receiver sees next. One goroutine writes; any number
// read.
type SendTimes struct {
	slots [sendTimesSlots]sendSlot
}

// sendTimesSlots holds several seconds of one video stream at a few hundred
// packets per second.
const sendTimesSlots = 4096

type sendSlot struct {
	hash atomic.Uint64
	at   atomic.Int64
}

func (s *SendTimes) pair(h uint64) (*sendSlot, *sendSlot) {
	i := h % sendTimesSlots &^ 1
	return &s.slots[i], &s.slots[i+1]
}

// Record notes that a payload with hash h was sent at time at (any
// monotonic clock in nanoseconds). h must not be 0.
func (s *SendTimes) Record(h uint64, at int64) {
	a, b := s.pair(h)
	slot := a
	switch {
	case a.hash.Load() == h:
	case b.hash.Load() == h, b.at.Load() < a.at.Load():
		slot = b
	}
	// Clearing the hash first means a reader that sees the same hash before
	// and after reading the time read a time written for that hash.
	slot.hash.Store(0)
	slot.at.Store(at)
	slot.hash.Store(h)
}

// Lookup returns when the payload with hash h was last sent.
func (s *SendTimes) Lookup(h uint64) (at int64, ok bool) {
	a, b := s.pair(h)
	for _, slot := range [2]*sendSlot{a, b} {
		if slot.hash.Load() != h {
			continue
		}
		at = slot.at.Load()
		if slot.hash.Load() == h {
			return at, true
		}
	}
	return 0, false
}
