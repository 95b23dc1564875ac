package turn

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	pionturn "github.com/pion/turn/v5"
)

// Reasons for refused allocations, the values of the reason label.
const (
	rejectUserQuota  = "user_quota"
	rejectTotalQuota = "total_quota"
	rejectNoPort     = "no_port"
	rejectTCPRelay   = "tcp_relay_disabled"
)

// relaySocketBuffer is the requested kernel receive buffer of a relay socket.
const relaySocketBuffer = 1 << 20

var (
	errQuota       = errors.New("turn: allocation quota reached")
	errNoRelayPort = errors.New("turn: no free relay port")
	errTCPRelay    = errors.New("turn: TCP relay allocations (RFC 6062) are disabled")
)

// relays creates the relay sockets of allocations. It is pion's
// RelayAddressGenerator, and it is where quotas, the bandwidth cap, the
// allocation age limit, the per-datagram peer filter and the relay
// metrics attach: every allocation's traffic passes through the
// relayConn it returns.
type relays struct {
	cfg     Config
	bindIP  netip.Addr
	public  netip.Addr
	filter  *peerFilter
	metrics *metrics

	mu      sync.Mutex
	total   int
	perUser map[string]int
	idle    chan struct{} // closed when total drops to 0; see waitIdle
}

var _ pionturn.RelayAddressGenerator = (*relays)(nil)

func (r *relays) Validate() error { return nil }

// quotaOK is pion's QuotaHandler; refusing here yields the proper 486
// answer. AllocatePacketConn checks again under the lock that counts,
// because concurrent TCP clients of one user may pass here together.
func (r *relays) quotaOK(userID, _ string, _ net.Addr) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	reason := r.overQuota(userID)
	if reason != "" {
		r.metrics.rejected.WithLabelValues(reason).Inc()
	}
	return reason == ""
}

func (r *relays) overQuota(userID string) string {
	switch {
	case r.cfg.MaxAllocations > 0 && r.total >= r.cfg.MaxAllocations:
		return rejectTotalQuota
	case r.cfg.MaxAllocationsPerUser > 0 && r.perUser[userID] >= r.cfg.MaxAllocationsPerUser:
		return rejectUserQuota
	}
	return ""
}

func (r *relays) reserve(userID string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if reason := r.overQuota(userID); reason != "" {
		r.metrics.rejected.WithLabelValues(reason).Inc()
		return errQuota
	}
	r.total++
	r.perUser[userID]++
	r.metrics.allocations.Inc()
	return nil
}

func (r *relays) release(userID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.total--
	if r.perUser[userID]--; r.perUser[userID] <= 0 {
		delete(r.perUser, userID)
	}
	r.metrics.allocations.Dec()
	if r.total == 0 && r.idle != nil {
		close(r.idle)
		r.idle = nil
	}
}

// waitIdle returns once no allocation is open, or after timeout.
func (r *relays) waitIdle(timeout time.Duration) bool {
	r.mu.Lock()
	if r.total == 0 {
		r.mu.Unlock()
		return true
	}
	if r.idle == nil {
		r.idle = make(chan struct{})
	}
	idle := r.idle
	r.mu.Unlock()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-idle:
		return true
	case <-t.C:
		return false
	}
}

func (r *relays) active() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.total
}

// AllocatePacketConn opens the UDP relay socket of a new allocation.
func (r *relays) AllocatePacketConn(conf pionturn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	if r.public.Is4() != (conf.Network == "udp4") {
		return nil, nil, fmt.Errorf("turn: relay family %s not served", conf.Network)
	}
	if err := r.reserve(conf.UserID); err != nil {
		return nil, nil, err
	}
	conn, err := r.listen(conf.Network, conf.RequestedPort)
	if err != nil {
		r.release(conf.UserID)
		r.metrics.rejected.WithLabelValues(rejectNoPort).Inc()
		return nil, nil, err
	}
	if uc, ok := conn.(*net.UDPConn); ok {
		// Room for a burst while the allocation's reading goroutine waits
		// for a CPU; capped by net.core.rmem_max, so failure is harmless.
		_ = uc.SetReadBuffer(relaySocketBuffer)
	}
	now := time.Now()
	rc := &relayConn{PacketConn: conn, relays: r, userID: conf.UserID}
	if r.cfg.MaxBitrateKbps > 0 {
		rc.up, rc.down = newBandwidthCap(r.cfg.MaxBitrateKbps, now), newBandwidthCap(r.cfg.MaxBitrateKbps, now)
	}
	if r.cfg.MaxAllocationAge > 0 {
		// pion deletes the allocation when its relay read fails, so a
		// deadline on the socket ends the allocation without a timer
		// goroutine of our own.
		if err := conn.SetReadDeadline(now.Add(r.cfg.MaxAllocationAge)); err != nil {
			_ = rc.Close()
			return nil, nil, fmt.Errorf("turn: relay deadline: %w", err)
		}
	}
	port := conn.LocalAddr().(*net.UDPAddr).Port
	return rc, &net.UDPAddr{IP: r.public.AsSlice(), Port: port}, nil
}

// newBandwidthCap limits one direction of one allocation. Datagrams over
// the limit are dropped, as a congested link would drop them; WebRTC's
// congestion control then backs off.
func newBandwidthCap(kbps int, now time.Time) *tokenBucket {
	bytesPerSecond := float64(kbps) * 1000 / 8
	// A burst of a quarter second absorbs a video key frame without
	// letting a sender exceed the rate for long.
	return newTokenBucket(bytesPerSecond, max(bytesPerSecond/4, 64*1024), now)
}

// listen binds a relay port: the requested one (EVEN-PORT reservations),
// else a free one in the range, scanning from a random point so that
// allocation succeeds whenever any port is free.
func (r *relays) listen(network string, requested int) (net.PacketConn, error) {
	bind := func(port int) (net.PacketConn, error) {
		return net.ListenPacket(network, net.JoinHostPort(r.bindIP.String(), strconv.Itoa(port)))
	}
	lo, hi := r.cfg.RelayPortMin, r.cfg.RelayPortMax
	if requested != 0 {
		if lo != 0 && (requested < lo || requested > hi) {
			return nil, fmt.Errorf("%w: port %d outside the relay range", errNoRelayPort, requested)
		}
		return bind(requested)
	}
	if lo == 0 {
		return bind(0)
	}
	n := hi - lo + 1
	start := rand.IntN(n)
	for i := range n {
		if conn, err := bind(lo + (start+i)%n); err == nil {
			return conn, nil
		}
	}
	return nil, fmt.Errorf("%w in %d-%d", errNoRelayPort, lo, hi)
}

// AllocateListener would open a TCP relay (RFC 6062). WebRTC never asks
// for one, and a TCP relay turns the server into a general TCP proxy.
func (r *relays) AllocateListener(pionturn.AllocateListenerConfig) (net.Listener, net.Addr, error) {
	r.metrics.rejected.WithLabelValues(rejectTCPRelay).Inc()
	return nil, nil, errTCPRelay
}

// AllocateConn is the outgoing half of RFC 6062, refused like AllocateListener.
func (r *relays) AllocateConn(pionturn.AllocateConnConfig) (net.Conn, error) {
	return nil, errTCPRelay
}

// relayConn is an allocation's relay socket.
type relayConn struct {
	net.PacketConn
	relays    *relays
	userID    string
	up, down  *tokenBucket
	closeOnce sync.Once
	closeErr  error
}

// WriteTo sends a client's datagram to a peer. Dropped datagrams report
// success: pion treats a short write as an error worth logging, and a
// drop is policy, not failure.
func (c *relayConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	m := c.relays.metrics
	if !c.relays.filter.permitAddr(netAddrPort(addr)) {
		m.droppedPeer.Inc()
		return len(p), nil
	}
	if c.up != nil && !c.up.take(len(p), time.Now()) {
		m.droppedBandwidth.Inc()
		return len(p), nil
	}
	n, err := c.PacketConn.WriteTo(p, addr)
	if err == nil {
		m.packetsTo.Inc()
		m.bytesTo.Add(float64(n))
	}
	return n, err
}

// ReadFrom receives a peer's datagram for the client. pion still drops
// datagrams from peers without a permission after this, so the
// peer_to_client counters include those.
func (c *relayConn) ReadFrom(p []byte) (int, net.Addr, error) {
	m := c.relays.metrics
	for {
		n, addr, err := c.PacketConn.ReadFrom(p)
		if err != nil {
			return n, addr, err
		}
		if c.down != nil && !c.down.take(n, time.Now()) {
			m.droppedBandwidth.Inc()
			continue
		}
		m.packetsFrom.Inc()
		m.bytesFrom.Add(float64(n))
		return n, addr, nil
	}
}

// Close releases the quota once; pion may close twice (lifetime expiry
// racing the read loop's exit).
func (c *relayConn) Close() error {
	c.closeOnce.Do(func() {
		c.closeErr = c.PacketConn.Close()
		c.relays.release(c.userID)
	})
	return c.closeErr
}
