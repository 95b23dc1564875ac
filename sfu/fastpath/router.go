package fastpath

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/transport/v5"

	"github.com/avs/avs/sfu/dtlssrtp"
)

// Router routes packets from the media sockets it wraps to the sessions
// whose keys it has recovered. One serves every socket of the server.
type Router struct {
	sessions sync.Map // netip.AddrPort (unmapped) -> *Session

	mu        sync.Mutex
	handshake map[netip.AddrPort]*handshake // hellos seen, by peer, until a session takes them
	waiting   map[[32]byte]*Session         // sessions with a key-log line, by client random
	conns     []*Conn
}

// handshake is what the socket showed of one peer's DTLS handshake.
type handshake struct {
	seen         time.Time
	clientHello  bool
	clientRandom [32]byte
	serverHello  *dtlssrtp.Hello
	weAreServer  bool // the ServerHello went out
}

// Handshakes are kept until their session claims them; these bound what
// peers that never finish (or never meant to) can leave behind.
const (
	handshakeTTL       = 30 * time.Second
	handshakesKeptMost = 4096
)

// NewRouter returns a router with no sessions.
func NewRouter() *Router {
	return &Router{handshake: map[netip.AddrPort]*handshake{}, waiting: map[[32]byte]*Session{}}
}

// Stats are the router's packet counts since it was made.
type Stats struct {
	Direct   uint64 // RTP packets decrypted and delivered here
	Fallback uint64 // RTP packets of routed streams left to pion, failing authentication here
	Dropped  uint64 // RTP packets of routed streams dropped as replays or malformed
}

// Stats returns the counts so far.
func (r *Router) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	var st Stats
	for _, c := range r.conns {
		st.Direct += c.count.direct.Load()
		st.Fallback += c.count.fallback.Load()
		st.Dropped += c.count.dropped.Load()
	}
	return st
}

// Sessions is the number of peer addresses routed to a session now.
func (r *Router) Sessions() int {
	n := 0
	r.sessions.Range(func(any, any) bool { n++; return true })
	return n
}

// UDPConn is the socket a Router wraps: pion's UDP mux reads and writes
// through the netip methods when a socket has them.
type UDPConn interface {
	transport.UDPConn
	ReadFromAddrPort(b []byte) (int, netip.AddrPort, error)
	WriteToAddrPort(b []byte, addr netip.AddrPort) (int, error)
}

// Conn is a media socket whose reads pass through the router. It is what
// pion's UDP mux is given; the methods the mux uses are the ones that
// route (ReadFromAddrPort, ReadFrom) and watch handshakes (WriteToAddrPort,
// WriteTo). The others are the socket's own.
type Conn struct {
	UDPConn
	router *Router
	count  connCounts

	readMu sync.Mutex // one reader at a time owns plain and header
	plain  []byte
	header rtp.Header
}

// connCounts are one socket's packet counts, kept per socket so that its
// reader is the only goroutine writing them.
type connCounts struct{ direct, fallback, dropped atomic.Uint64 }

// Wrap returns c reading through r.
func (r *Router) Wrap(c UDPConn) *Conn {
	conn := &Conn{UDPConn: c, router: r, plain: make([]byte, maxPacket)}
	r.mu.Lock()
	r.conns = append(r.conns, conn)
	r.mu.Unlock()
	return conn
}

// maxPacket is the largest datagram decrypted without allocating.
const maxPacket = 1500

// ReadFromAddrPort returns the next datagram that is not delivered here.
func (c *Conn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	for {
		n, from, err := c.UDPConn.ReadFromAddrPort(b)
		if err != nil || n == 0 {
			return n, from, err
		}
		switch first := b[0]; {
		case first >= 128 && first <= 191: // RTP or RTCP (RFC 7983)
			if s, ok := c.router.sessions.Load(unmap(from)); ok && s.(*Session).receive(b[:n], c.plain, &c.header, &c.count) {
				continue
			}
		case first == dtlsHandshake:
			c.router.sniff(b[:n], from, false)
		}
		return n, from, nil
	}
}

// ReadFrom is ReadFromAddrPort for callers that want a net.Addr.
func (c *Conn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, from, err := c.ReadFromAddrPort(b)
	if err != nil {
		return n, nil, err
	}
	return n, net.UDPAddrFromAddrPort(from), nil
}

// WriteToAddrPort sends a datagram, noting a ServerHello on its way out.
func (c *Conn) WriteToAddrPort(b []byte, to netip.AddrPort) (int, error) {
	if len(b) > 0 && b[0] == dtlsHandshake {
		c.router.sniff(b, to, true)
	}
	return c.UDPConn.WriteToAddrPort(b, to)
}

// WriteTo is WriteToAddrPort for callers with a net.Addr.
func (c *Conn) WriteTo(b []byte, to net.Addr) (int, error) {
	if ua, ok := to.(*net.UDPAddr); ok && len(b) > 0 && b[0] == dtlsHandshake {
		c.router.sniff(b, ua.AddrPort(), true)
	}
	return c.UDPConn.WriteTo(b, to)
}

// dtlsHandshake is the DTLS record type of handshake messages, the first
// byte of every datagram that can carry a hello.
const dtlsHandshake = 22

// unmap keys peers the same whether a dual-stack socket reported an IPv4
// peer as mapped or pion handed its address back plain.
func unmap(a netip.AddrPort) netip.AddrPort {
	if a.Addr().Is4In6() {
		return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
	}
	return a
}

// sniff notes the hellos in a handshake datagram to or from peer.
func (r *Router) sniff(datagram []byte, peer netip.AddrPort, outbound bool) {
	hello, ok := dtlssrtp.Scan(datagram)
	if !ok {
		return
	}
	peer = unmap(peer)
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.handshake[peer]
	if h == nil {
		r.makeRoom(now)
		h = &handshake{}
		r.handshake[peer] = h
	}
	h.seen = now
	if hello.HasClientHello {
		if h.clientHello && h.clientRandom != hello.ClientRandom {
			h.serverHello = nil // a new handshake from the same address
		}
		h.clientHello, h.clientRandom = true, hello.ClientRandom
	}
	if hello.HasServerHello {
		h.serverHello, h.weAreServer = &hello, outbound
	}
	if h.clientHello && h.serverHello != nil {
		if s := r.waiting[h.clientRandom]; s != nil {
			r.bindLocked(s, peer, h)
		}
	}
}

// makeRoom drops stale handshakes, and the oldest when too many are fresh.
func (r *Router) makeRoom(now time.Time) {
	if len(r.handshake) < handshakesKeptMost/2 {
		return
	}
	var oldest netip.AddrPort
	var oldestSeen time.Time
	for peer, h := range r.handshake {
		if now.Sub(h.seen) > handshakeTTL {
			delete(r.handshake, peer)
			continue
		}
		if oldestSeen.IsZero() || h.seen.Before(oldestSeen) {
			oldest, oldestSeen = peer, h.seen
		}
	}
	if len(r.handshake) >= handshakesKeptMost {
		delete(r.handshake, oldest)
	}
}

// keyLogged is called by a session that has its master secret: it binds
// the session to the peer whose handshake has that client random, now or
// when the handshake's hellos have both been seen.
func (r *Router) keyLogged(s *Session, clientRandom [32]byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for peer, h := range r.handshake {
		if h.clientHello && h.clientRandom == clientRandom && h.serverHello != nil {
			r.bindLocked(s, peer, h)
			return
		}
	}
	r.waiting[clientRandom] = s
}

func (r *Router) bindLocked(s *Session, peer netip.AddrPort, h *handshake) {
	delete(r.handshake, peer)
	delete(r.waiting, h.clientRandom)
	if s.install(h.serverHello, h.weAreServer, peer) {
		r.sessions.Store(peer, s)
	}
}

// forget removes a closed session's routes and wait. It takes the lock
// that bindLocked runs under, so a bind either finished before (and its
// peer is in peers) or finds the session closed.
func (r *Router) forget(s *Session, peers []netip.AddrPort, logged bool, clientRandom [32]byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, peer := range peers {
		r.sessions.CompareAndDelete(peer, s)
	}
	if logged && r.waiting[clientRandom] == s {
		delete(r.waiting, clientRandom)
	}
}
