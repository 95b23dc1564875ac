// Package rtpstats keeps the receive-side statistics of one RTP stream as
// RFC 3550 defines them (extended highest sequence number, cumulative and
// fractional loss, interarrival jitter, the last sender report) and the list
// of missing packets still worth a NACK to the sender.
//
// A Receiver is fed by the stream's single reader goroutine; reports are taken
// from another goroutine, so the state sits behind a mutex that is never
// shared with another stream.
package rtpstats

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
)

// maxDropout is the largest forward jump still taken as loss rather than as a
// restart of the stream (RFC 3550 appendix A.1 uses 3000).
const maxDropout = 3000

// maxNACKGap is the largest gap repaired by NACKs.
const maxNACKGap = 64

// Receiver accumulates statistics of one incoming stream.
type Receiver struct {
	mu        sync.Mutex
	clockRate float64
	started   bool
	baseSeq   uint16
	maxSeq    uint16
	cycles    uint32
	received  uint64
	bytes     uint64

	expectedPrior uint32
	receivedPrior uint64

	transit int64
	jitter  float64

	lastSR        uint32 // middle 32 bits of the NTP timestamp of the last SR
	lastSRArrival time.Time

	nacks   nackList
	history [historySize / 64]uint64 // which recent sequence numbers arrived
	missing atomic.Int32             // nacks.n, readable without the lock
}

// HasMissing reports, without locking, whether packets are waiting for a
// NACK, so that the periodic NACK pass can skip streams that lose nothing.
func (r *Receiver) HasMissing() bool { return r.missing.Load() > 0 }

// historySize is how far back a late packet is still told from a duplicate.
const historySize = 1024

func (r *Receiver) seen(seq uint16) bool {
	i := seq % historySize
	return r.history[i/64]&(1<<(i%64)) != 0
}

func (r *Receiver) markSeen(seq uint16) {
	i := seq % historySize
	r.history[i/64] |= 1 << (i % 64)
}

// clearSeen forgets the slots of [from, to), which now stand for newer
// sequence numbers that have not arrived.
func (r *Receiver) clearSeen(from, to uint16) {
	if to-from >= historySize {
		r.history = [historySize / 64]uint64{}
		return
	}
	for s := from; s != to; s++ {
		i := s % historySize
		r.history[i/64] &^= 1 << (i % 64)
	}
}

// NewReceiver returns statistics for a stream with the given RTP clock rate.
func NewReceiver(clockRate uint32) *Receiver {
	if clockRate == 0 {
		clockRate = 90000
	}
	return &Receiver{clockRate: float64(clockRate)}
}

// Update records the arrival of a packet. It reports false for a duplicate
// or a packet too old to count, which the caller should not forward again.
func (r *Receiver) Update(seq uint16, rtpTime uint32, size int, arrival time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	defer r.missing.Store(int32(r.nacks.n))
	if !r.started {
		r.started = true
		r.baseSeq, r.maxSeq = seq, seq
		r.received, r.bytes = 1, uint64(size)
		r.transit = r.transitOf(rtpTime, arrival)
		r.markSeen(seq)
		return true
	}
	delta := seq - r.maxSeq
	switch {
	case delta == 0:
		return false
	case delta < maxDropout: // in order, possibly after a gap
		if seq < r.maxSeq {
			r.cycles += 1 << 16
		}
		if delta <= maxNACKGap {
			for missing := r.maxSeq + 1; missing != seq; missing++ {
				r.nacks.add(missing, arrival)
			}
		} else {
			// Too much to repair packet by packet; the receiver will ask
			// for a keyframe instead.
			r.nacks.clear()
		}
		r.clearSeen(r.maxSeq+1, seq)
		r.maxSeq = seq
		r.markSeen(seq)
	case delta > 1<<15: // late or duplicate
		if r.maxSeq-seq >= historySize || r.seen(seq) {
			return false
		}
		r.nacks.remove(seq)
		r.markSeen(seq)
	default: // a jump too large: the sender restarted its sequence
		r.history = [historySize / 64]uint64{}
		r.markSeen(seq)
		r.baseSeq, r.maxSeq, r.cycles = seq, seq, 0
		r.expectedPrior, r.receivedPrior, r.received = 0, 0, 0
		r.nacks.clear()
	}
	r.received++
	r.bytes += uint64(size)
	r.updateJitter(rtpTime, arrival)
	return true
}

func (r *Receiver) transitOf(rtpTime uint32, arrival time.Time) int64 {
	return int64(float64(arrival.UnixNano())*r.clockRate/1e9) - int64(rtpTime)
}

func (r *Receiver) updateJitter(rtpTime uint32, arrival time.Time) {
	transit := r.transitOf(rtpTime, arrival)
	d := float64(transit - r.transit)
	r.transit = transit
	if d < 0 {
		d = -d
	}
	// A jump of many seconds is a timestamp discontinuity, not jitter.
	if d > r.clockRate*10 {
		return
	}
	r.jitter += (d - r.jitter) / 16
}

// SenderReport records an RTCP sender report from the stream's sender, so
// that receiver reports can carry LSR and DLSR for its RTT measurement.
func (r *Receiver) SenderReport(ntpTime uint64, arrival time.Time) {
	r.mu.Lock()
	r.lastSR = uint32(ntpTime >> 16)
	r.lastSRArrival = arrival
	r.mu.Unlock()
}

// Snapshot is a consistent copy of the statistics.
type Snapshot struct {
	Received       uint64
	Bytes          uint64
	Lost           int64   // cumulative, may be negative with duplicates
	FractionLost   float64 // since the previous report, 0..1
	Jitter         float64 // in seconds
	ExtendedMaxSeq uint32
}

// Report builds a reception report block for ssrc and advances the interval
// used for the fraction lost. It reports false before the first packet.
func (r *Receiver) Report(ssrc uint32, now time.Time) (rtcp.ReceptionReport, Snapshot, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.started {
		return rtcp.ReceptionReport{}, Snapshot{}, false
	}
	extMax := r.cycles | uint32(r.maxSeq)
	expected := extMax - uint32(r.baseSeq) + 1
	lost := int64(expected) - int64(r.received)

	expectedInterval := expected - r.expectedPrior
	receivedInterval := r.received - r.receivedPrior
	r.expectedPrior, r.receivedPrior = expected, r.received
	var fraction uint8
	if lostInterval := int64(expectedInterval) - int64(receivedInterval); expectedInterval > 0 && lostInterval > 0 {
		fraction = uint8((lostInterval << 8) / int64(expectedInterval))
	}
	var dlsr uint32
	if !r.lastSRArrival.IsZero() {
		dlsr = uint32(now.Sub(r.lastSRArrival).Seconds() * 65536)
	}
	totalLost := max(min(lost, 0x7fffff), -0x800000)
	rr := rtcp.ReceptionReport{
		SSRC:               ssrc,
		FractionLost:       fraction,
		TotalLost:          uint32(totalLost) & 0xffffff,
		LastSequenceNumber: extMax,
		Jitter:             uint32(r.jitter),
		LastSenderReport:   r.lastSR,
		Delay:              dlsr,
	}
	return rr, Snapshot{
		Received:       r.received,
		Bytes:          r.bytes,
		Lost:           lost,
		FractionLost:   float64(fraction) / 256,
		Jitter:         r.jitter / r.clockRate,
		ExtendedMaxSeq: extMax,
	}, true
}

// MissingForNACK appends to dst the sequence numbers that are missing, have
// waited at least minAge for reordering to settle, and have been asked for
// fewer than maxTries times, at most once per retryEvery. Entries that used up
// their tries are dropped.
func (r *Receiver) MissingForNACK(dst []uint16, now time.Time, minAge, retryEvery time.Duration, maxTries int) []uint16 {
	r.mu.Lock()
	defer r.mu.Unlock()
	dst = r.nacks.due(dst, now, minAge, retryEvery, maxTries)
	r.missing.Store(int32(r.nacks.n))
	return dst
}
