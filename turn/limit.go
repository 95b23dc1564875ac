package turn

import (
	"net/netip"
	"sync"
	"time"
)

// maxTrackedSources bounds the memory an attacker spraying from many
// addresses can make the failure limiter use.
const maxTrackedSources = 65536

// failureLimiter counts failed authentications per source IP in fixed
// windows and blocks a source for the rest of its window once it passed
// the limit, so that a password cannot be guessed at line rate.
type failureLimiter struct {
	limit  int
	window time.Duration

	mu        sync.Mutex
	sources   map[netip.Addr]*failureWindow
	lastSweep time.Time
}

type failureWindow struct {
	start    time.Time
	failures int
}

func newFailureLimiter(limit int, window time.Duration) *failureLimiter {
	return &failureLimiter{limit: limit, window: window, sources: map[netip.Addr]*failureWindow{}}
}

func (l *failureLimiter) blocked(ip netip.Addr, now time.Time) bool {
	if l.limit == 0 {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.sources[ip]
	return w != nil && now.Sub(w.start) < l.window && w.failures >= l.limit
}

func (l *failureLimiter) fail(ip netip.Addr, now time.Time) {
	if l.limit == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) >= l.window || len(l.sources) >= maxTrackedSources {
		l.sweep(now)
	}
	w := l.sources[ip]
	if w == nil {
		if len(l.sources) >= maxTrackedSources {
			// Still full of live windows after a sweep: forget the new
			// source rather than grow; its next failure tries again.
			return
		}
		w = &failureWindow{start: now}
		l.sources[ip] = w
	}
	if now.Sub(w.start) >= l.window {
		w.start, w.failures = now, 0
	}
	w.failures++
}

func (l *failureLimiter) sweep(now time.Time) {
	l.lastSweep = now
	for ip, w := range l.sources {
		if now.Sub(w.start) >= l.window {
			delete(l.sources, ip)
		}
	}
}

// tokenBucket limits a rate: the bytes per second through one direction
// of one allocation, or log lines.
type tokenBucket struct {
	mu     sync.Mutex
	rate   float64 // tokens per second
	burst  float64
	tokens float64
	last   time.Time
}

func newTokenBucket(rate, burst float64, now time.Time) *tokenBucket {
	return &tokenBucket{rate: rate, burst: burst, tokens: burst, last: now}
}

func (b *tokenBucket) take(n int, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(b.burst, b.tokens+d.Seconds()*b.rate)
		b.last = now
	}
	if b.tokens < float64(n) {
		return false
	}
	b.tokens -= float64(n)
	return true
}
