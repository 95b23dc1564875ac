// Package bwe estimates the bandwidth toward one subscriber from the
// transport-wide congestion control feedback (transport-cc) it returns for
// the packets the SFU sends it.
//
// The estimate only has to choose among a few simulcast layers, so it is
// kept simple and cheap: every packet sent is recorded in a fixed ring by
// its transport-wide sequence number; each feedback tells which arrived,
// and when. Over windows of half a second the estimator backs off in
// proportion to loss above 10%, or to the delivered rate when the one-way
// delay grows (a queue is building), and grows by 8% per window while loss
// stays under 2% and the delay is flat.
package bwe

import (
	"sync"
	"time"

	"github.com/pion/rtcp"
)

const (
	// ringSize packets of history: at 1,000 packets a second still a full
	// second, far longer than feedback takes to come back.
	ringSize = 1 << 10
	window   = 500 * time.Millisecond
	// queueGrowth is how much the average one-way delay may rise from one
	// window to the next before it counts as a queue building.
	queueGrowth = 10 * time.Millisecond
)

type sentPacket struct {
	at   int64 // unix nanoseconds
	seq  uint16
	size uint16 // 0 for a free slot
}

// Estimator is safe for concurrent use: packets are recorded by the
// forwarding goroutines, feedback by the subscriber's RTCP reader.
type Estimator struct {
	mu                sync.Mutex
	min, max          int
	estimate          int
	sent              [ringSize]sentPacket
	windowStart       time.Time
	received, lost    int
	bytes             int
	firstArr, lastArr int64 // arrival times in the window, feedback clock, µs
	delaySum          int64 // sum of arrival - send, µs, over received packets
	lastDelay         int64 // average of the previous window, µs; 0 = none yet
}

// New returns an estimator starting at initial bit/s, kept within [min, max].
func New(initial, min, max int) *Estimator {
	return &Estimator{min: min, max: max, estimate: clamp(initial, min, max)}
}

func clamp(v, lo, hi int) int { return max(lo, min(hi, v)) }

// Sent records a packet of size bytes sent with a transport-wide sequence
// number.
func (e *Estimator) Sent(seq uint16, size int, at time.Time) {
	e.mu.Lock()
	e.sent[seq%ringSize] = sentPacket{seq: seq, size: uint16(min(max(size, 1), 0xffff)), at: at.UnixNano()}
	e.mu.Unlock()
}

// Estimate is the current estimate in bit/s.
func (e *Estimator) Estimate() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.estimate
}

// Feedback takes a transport-cc feedback packet.
func (e *Estimator) Feedback(fb *rtcp.TransportLayerCC, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.windowStart.IsZero() {
		e.windowStart = now
	}
	arrival := int64(fb.ReferenceTime) * 64000 // µs
	deltas := fb.RecvDeltas
	forEachStatus(fb, func(seq uint16, received bool) {
		// Every received packet has a delta, ours or not: take it first so
		// that the arrival times stay aligned.
		if received {
			if len(deltas) == 0 {
				return
			}
			arrival += deltas[0].Delta
			deltas = deltas[1:]
		}
		p := &e.sent[seq%ringSize]
		if p.size == 0 || p.seq != seq {
			return // not ours, or too old
		}
		size := p.size
		p.size = 0
		if !received {
			e.lost++
			return
		}
		if e.received == 0 {
			e.firstArr = arrival
		}
		e.received++
		e.lastArr = arrival
		e.bytes += int(size)
		e.delaySum += arrival - p.at/1000
	})
	if now.Sub(e.windowStart) >= window {
		e.update()
		e.windowStart = now
		e.received, e.lost, e.bytes, e.delaySum = 0, 0, 0, 0
	}
}

// update moves the estimate at the end of a window.
func (e *Estimator) update() {
	total := e.received + e.lost
	if total == 0 {
		return
	}
	loss := float64(e.lost) / float64(total)
	var delay int64
	if e.received > 0 {
		delay = e.delaySum / int64(e.received)
	}
	span := e.lastArr - e.firstArr
	rate := 0
	if span > int64(50*time.Millisecond/time.Microsecond) {
		rate = int(float64(e.bytes) * 8 / (float64(span) / 1e6))
	}
	queueing := e.lastDelay != 0 && e.received > 0 && delay-e.lastDelay > queueGrowth.Microseconds()
	switch {
	case loss > 0.10:
		e.estimate = int(float64(e.estimate) * (1 - loss/2))
	case queueing && rate > 0:
		e.estimate = min(e.estimate, rate*85/100)
	case loss < 0.02 && !queueing:
		e.estimate = e.estimate * 108 / 100
	}
	e.estimate = clamp(e.estimate, e.min, e.max)
	if e.received > 0 {
		e.lastDelay = delay
	}
}

// forEachStatus calls f for every sequence number the feedback covers,
// in order, telling whether it arrived.
func forEachStatus(fb *rtcp.TransportLayerCC, f func(seq uint16, received bool)) {
	seq := fb.BaseSequenceNumber
	left := int(fb.PacketStatusCount)
	emit := func(symbol uint16) {
		if left == 0 {
			return
		}
		f(seq, symbol == rtcp.TypeTCCPacketReceivedSmallDelta || symbol == rtcp.TypeTCCPacketReceivedLargeDelta)
		seq++
		left--
	}
	for _, chunk := range fb.PacketChunks {
		switch c := chunk.(type) {
		case *rtcp.RunLengthChunk:
			for range int(c.RunLength) {
				emit(c.PacketStatusSymbol)
			}
		case *rtcp.StatusVectorChunk:
			for _, s := range c.SymbolList {
				emit(s)
			}
		}
	}
}
