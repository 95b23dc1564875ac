package fastpath

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"

	"github.com/avs/avs/sfu/dtlssrtp"
)

// Session is the shortcut of one PeerConnection. It is the connection's
// DTLS key-log writer; once its keys are known, packets of the streams
// routed to it are decrypted and delivered by the socket's reader.
type Session struct {
	router *Router
	routes atomic.Pointer[map[uint32]*route] // by SSRC; replaced whole, read without a lock
	edit   sync.Mutex                        // serialises route changes

	mu           sync.Mutex
	keyLog       []byte // a line not finished yet
	logged       bool
	clientRandom [32]byte
	masterSecret []byte
	decrypt      *srtp.Context // nil until the keys are known
	peers        []netip.AddrPort
	closed       bool
}

// replayWindow is pion's own default: packets further behind the newest
// are refused as replays.
const replayWindow = 64

// route is where one stream's packets go.
type route struct {
	deliver func(pkt []byte)
	// failures counts authentication failures in a row. A stream whose
	// packets keep failing here while pion reads them (this context
	// guessed the rollover counter differently: the stream wrapped its
	// sequence numbers before it was routed) is given back to pion.
	failures atomic.Uint32
}

// failuresBeforeGivingUp is how many packets in a row a route may fail
// to authenticate before its stream goes back to pion for good.
const failuresBeforeGivingUp = 16

// NewSession returns the shortcut of one new PeerConnection; give it to
// pion as the connection's DTLS key-log writer, and close it with the
// connection.
func (r *Router) NewSession() *Session { return &Session{router: r} }

// Write takes pion's key-log lines, one handshake's master secret each.
func (s *Session) Write(p []byte) (int, error) {
	s.mu.Lock()
	if s.closed || s.logged {
		s.mu.Unlock()
		return len(p), nil
	}
	s.keyLog = append(s.keyLog, p...)
	end := bytes.IndexByte(s.keyLog, '\n')
	if end < 0 {
		if len(s.keyLog) > 1024 {
			s.keyLog = nil // not a key log; nothing to wait for
		}
		s.mu.Unlock()
		return len(p), nil
	}
	clientRandom, secret, err := dtlssrtp.ParseKeyLog(s.keyLog[:end])
	s.keyLog = nil
	if err != nil {
		s.mu.Unlock()
		return 0, fmt.Errorf("fastpath: %w", err)
	}
	s.logged, s.clientRandom, s.masterSecret = true, clientRandom, secret
	s.mu.Unlock()
	s.router.keyLogged(s, clientRandom)
	return len(p), nil
}

// install derives the keys for the handshake seen with peer. The router
// calls it under its lock.
func (s *Session) install(hello *dtlssrtp.Hello, weAreServer bool, peer netip.AddrPort) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || !s.logged {
		return false
	}
	if s.decrypt == nil {
		keys, err := dtlssrtp.Derive(s.masterSecret, s.clientRandom, hello.ServerRandom, hello.CipherSuite, hello.Profile)
		if err != nil {
			return false // pion does it all, as without the shortcut
		}
		key, salt := keys.ServerKey, keys.ServerSalt
		if weAreServer {
			key, salt = keys.ClientKey, keys.ClientSalt
		}
		// Cryptex is accepted whether or not it was negotiated: it only
		// changes how a packet that uses it is read.
		ctx, err := srtp.CreateContext(key, salt, keys.Profile,
			srtp.SRTPReplayProtection(replayWindow), srtp.Cryptex(srtp.CryptexModeEnabled))
		if err != nil {
			return false
		}
		s.decrypt = ctx
		clear(s.masterSecret)
		s.masterSecret = nil
	}
	if !slices.Contains(s.peers, peer) {
		s.peers = append(s.peers, peer)
	}
	return true
}

// Follow routes peer's packets to the session too, for when ICE moves the
// connection to another candidate pair after the handshake.
func (s *Session) Follow(peer netip.AddrPort) {
	peer = unmap(peer)
	r := s.router
	r.mu.Lock()
	defer r.mu.Unlock()
	s.mu.Lock()
	ok := s.decrypt != nil && !s.closed
	if ok && !slices.Contains(s.peers, peer) {
		s.peers = append(s.peers, peer)
	}
	s.mu.Unlock()
	if ok {
		r.sessions.Store(peer, s)
	}
}

// Ready reports whether the session has its keys.
func (s *Session) Ready() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.decrypt != nil
}

// Route delivers the stream ssrc to deliver from now on, with a packet
// that is only valid during the call. Packets that stay with pion (those
// already on their way through it, and any the session cannot decrypt)
// reach the SFU through pion's own path, so deliver may see the stream's
// packets from two goroutines and must serialise them.
func (s *Session) Route(ssrc uint32, deliver func(pkt []byte)) {
	s.editRoutes(func(routes map[uint32]*route) { routes[ssrc] = &route{deliver: deliver} })
}

// Unroute gives the stream ssrc back to pion.
func (s *Session) Unroute(ssrc uint32) {
	s.editRoutes(func(routes map[uint32]*route) { delete(routes, ssrc) })
}

// editRoutes changes a copy of the routes and puts it in place, so that
// the readers never take a lock to look a stream up.
func (s *Session) editRoutes(change func(map[uint32]*route)) {
	s.edit.Lock()
	defer s.edit.Unlock()
	next := map[uint32]*route{}
	if old := s.routes.Load(); old != nil {
		maps.Copy(next, *old)
	}
	change(next)
	s.routes.Store(&next)
}

// Close stops the shortcut; pion gets everything again.
func (s *Session) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.decrypt = nil
	clear(s.masterSecret)
	peers, logged, clientRandom := s.peers, s.logged, s.clientRandom
	s.mu.Unlock()
	s.routes.Store(nil)
	s.router.forget(s, peers, logged, clientRandom)
}

// receive decrypts and delivers pkt if its stream is routed here, into
// plain, the reading goroutine's buffer. It reports whether pkt was taken
// (delivered, or dropped as a replay); otherwise pion gets it.
func (s *Session) receive(pkt, plain []byte, h *rtp.Header, count *connCounts) bool {
	if len(pkt) < 12 || pkt[1] >= 192 && pkt[1] <= 223 { // RTCP (RFC 5761)
		return false
	}
	routes := s.routes.Load()
	if routes == nil {
		return false
	}
	ssrc := binary.BigEndian.Uint32(pkt[8:12])
	rt := (*routes)[ssrc]
	if rt == nil {
		return false
	}
	s.mu.Lock()
	if s.decrypt == nil {
		s.mu.Unlock()
		return false
	}
	out, err := s.decrypt.DecryptRTP(plain, pkt, h)
	s.mu.Unlock()
	switch {
	case err == nil:
		if rt.failures.Load() != 0 {
			rt.failures.Store(0)
		}
		count.direct.Add(1)
		rt.deliver(out)
		return true
	case errors.Is(err, srtp.ErrFailedToVerifyAuthTag):
		// Not ours to judge: pion, which saw the stream from its first
		// packet, decides.
		count.fallback.Add(1)
		if rt.failures.Add(1) == failuresBeforeGivingUp {
			s.Unroute(ssrc)
		}
		return false
	default: // a replay, or not RTP
		count.dropped.Add(1)
		return true
	}
}
