package fastpath

import (
	"net/netip"
	"sync"
	"time"

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
	Overflow uint64 // datagrams for pion dropped because pion's reader fell behind (several readers only)

	// Residence is the time delivered packets spent in the server, from
	// the socket's arrival stamp to the end of their forwarding (Linux).
	Residence Residence
}

// Stats returns the counts so far.
func (r *Router) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	var st Stats
	for _, c := range r.conns {
		for _, rd := range c.readers {
			st.Direct += rd.count.direct.Load()
			st.Fallback += rd.count.fallback.Load()
			st.Dropped += rd.count.dropped.Load()
			rd.residence.addTo(&st.Residence)
		}
		st.Overflow += c.overflow.Load()
	}
	return st
}

// Sessions is the number of peer addresses routed to a session now.
func (r *Router) Sessions() int {
	n := 0
	r.sessions.Range(func(any, any) bool { n++; return true })
	return n
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
