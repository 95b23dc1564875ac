package rtpstats

import "time"

// maxMissing bounds the missing-packet list; a burst larger than this is
// better repaired by a keyframe than by retransmission.
const maxMissing = 128

type missingPacket struct {
	seq      uint16
	tries    uint8
	firstAt  time.Time
	lastSent time.Time
}

// nackList is a small ordered list of missing sequence numbers. It lives in a
// fixed array so that loss on the hot path does not allocate.
type nackList struct {
	n       int
	entries [maxMissing]missingPacket
}

func (l *nackList) add(seq uint16, now time.Time) {
	if l.n == maxMissing {
		copy(l.entries[:], l.entries[1:])
		l.n--
	}
	l.entries[l.n] = missingPacket{seq: seq, firstAt: now}
	l.n++
}

func (l *nackList) remove(seq uint16) bool {
	for i := 0; i < l.n; i++ {
		if l.entries[i].seq == seq {
			copy(l.entries[i:], l.entries[i+1:l.n])
			l.n--
			return true
		}
	}
	return false
}

func (l *nackList) clear() { l.n = 0 }

func (l *nackList) due(dst []uint16, now time.Time, minAge, retryEvery time.Duration, maxTries int) []uint16 {
	kept := 0
	for i := 0; i < l.n; i++ {
		e := l.entries[i]
		if int(e.tries) >= maxTries {
			continue
		}
		if now.Sub(e.firstAt) >= minAge && (e.tries == 0 || now.Sub(e.lastSent) >= retryEvery) {
			e.tries++
			e.lastSent = now
			dst = append(dst, e.seq)
		}
		l.entries[kept] = e
		kept++
	}
	l.n = kept
	return dst
}
