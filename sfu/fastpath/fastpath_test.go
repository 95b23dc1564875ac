package fastpath

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/selfsign"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"go.uber.org/goleak"

	"github.com/avs/avs/sfu/udpconn"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// sfuSide is the SFU's end of a test association: a real UDP socket
// wrapped by a router, read by one goroutine the way pion's UDP mux reads
// it. DTLS datagrams go on to a DTLS endpoint; every other datagram that
// the router lets through is kept in passed.
type sfuSide struct {
	router  *Router
	conn    *Conn
	session *Session
	dtlsIn  chan []byte

	mu        sync.Mutex
	passed    [][]byte
	handshake []handshakeDatagram // DTLS both ways, in order
	done      chan struct{}
}

type handshakeDatagram struct {
	pkt      []byte
	outbound bool
}

func (s *sfuSide) record(pkt []byte, outbound bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handshake = append(s.handshake, handshakeDatagram{append([]byte(nil), pkt...), outbound})
}

func (s *sfuSide) handshakeDatagrams() []handshakeDatagram {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]handshakeDatagram(nil), s.handshake...)
}

func newSFUSide(t *testing.T, sockets int) *sfuSide {
	t.Helper()
	group, err := udpconn.ListenGroup("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, sockets)
	if err != nil {
		t.Fatal(err)
	}
	wrapped := make([]UDPConn, len(group))
	for i, c := range group {
		wrapped[i] = c
	}
	r := NewRouter()
	s := &sfuSide{router: r, conn: r.WrapGroup(wrapped), session: r.NewSession(), dtlsIn: make(chan []byte, 64), done: make(chan struct{})}
	go s.read()
	t.Cleanup(func() {
		_ = s.conn.Close()
		<-s.done
	})
	return s
}

func (s *sfuSide) read() {
	defer close(s.done)
	defer close(s.dtlsIn)
	buf := make([]byte, 1500)
	for {
		n, _, err := s.conn.ReadFromAddrPort(buf)
		if err != nil {
			return
		}
		pkt := append([]byte(nil), buf[:n]...)
		if pkt[0] >= 20 && pkt[0] <= 63 {
			s.record(pkt, false)
			s.dtlsIn <- pkt
			continue
		}
		s.mu.Lock()
		s.passed = append(s.passed, pkt)
		s.mu.Unlock()
	}
}

func (s *sfuSide) passedCopy() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.passed...)
}

// dtlsConn is the DTLS endpoint's view of the SFU side: it reads what the
// reader handed over and writes through the router's socket.
type dtlsConn struct {
	side *sfuSide
	peer net.Addr
}

func (c *dtlsConn) ReadFrom(p []byte) (int, net.Addr, error) {
	pkt, ok := <-c.side.dtlsIn
	if !ok {
		return 0, nil, net.ErrClosed
	}
	return copy(p, pkt), c.peer, nil
}
func (c *dtlsConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	c.side.record(p, true)
	return c.side.conn.WriteTo(p, addr)
}
func (c *dtlsConn) Close() error                     { return nil }
func (c *dtlsConn) LocalAddr() net.Addr              { return c.side.conn.LocalAddr() }
func (c *dtlsConn) SetDeadline(time.Time) error      { return nil }
func (c *dtlsConn) SetReadDeadline(time.Time) error  { return nil }
func (c *dtlsConn) SetWriteDeadline(time.Time) error { return nil }

// association is a handshake done through the SFU side, and the peer's
// SRTP context for sending to it.
type association struct {
	side    *sfuSide
	peer    *net.UDPConn
	encrypt *srtp.Context
}

// associate runs a real DTLS-SRTP handshake between a peer socket and the
// SFU side, the SFU being the DTLS server or the client, with the
// session as the SFU end's key log.
func associate(t *testing.T, sfuIsServer bool, profile dtls.SRTPProtectionProfile) *association {
	t.Helper()
	return associateLogging(t, sfuIsServer, profile, nil, 1)
}

// associateLogging is associate with the SFU end's key log going to
// keyLog instead of the session, when not nil.
func associateLogging(t *testing.T, sfuIsServer bool, profile dtls.SRTPProtectionProfile, keyLog io.Writer, sockets int) *association {
	t.Helper()
	side := newSFUSide(t, sockets)
	if keyLog == nil {
		keyLog = side.session
	}
	peer, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = peer.Close() })
	cert := func() dtls.Option {
		c, err := selfsign.GenerateSelfSigned()
		if err != nil {
			t.Fatal(err)
		}
		return dtls.WithCertificates(c)
	}
	sfuConn := &dtlsConn{side: side, peer: peer.LocalAddr()}
	var sfuEnd, peerEnd *dtls.Conn
	if sfuIsServer {
		sfuEnd, err = dtls.ServerWithOptions(sfuConn, peer.LocalAddr(), cert(), dtls.WithInsecureSkipVerify(true),
			dtls.WithSRTPProtectionProfiles(profile), dtls.WithKeyLogWriter(keyLog))
		if err == nil {
			peerEnd, err = dtls.ClientWithOptions(peer, side.conn.LocalAddr(), cert(), dtls.WithInsecureSkipVerify(true),
				dtls.WithSRTPProtectionProfiles(profile))
		}
	} else {
		sfuEnd, err = dtls.ClientWithOptions(sfuConn, peer.LocalAddr(), cert(), dtls.WithInsecureSkipVerify(true),
			dtls.WithSRTPProtectionProfiles(profile), dtls.WithKeyLogWriter(keyLog))
		if err == nil {
			peerEnd, err = dtls.ServerWithOptions(peer, side.conn.LocalAddr(), cert(), dtls.WithInsecureSkipVerify(true),
				dtls.WithSRTPProtectionProfiles(profile))
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sfuEnd.Close(); _ = peerEnd.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	errs := make(chan error, 2)
	go func() { errs <- sfuEnd.HandshakeContext(ctx) }()
	go func() { errs <- peerEnd.HandshakeContext(ctx) }()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("handshake: %v", err)
		}
	}
	if keyLog == side.session && !side.session.Ready() {
		t.Fatal("session has no keys after the handshake")
	}

	// The peer's sending keys, as pion derives them on its side.
	state, _ := peerEnd.ConnectionState()
	p := srtp.ProtectionProfile(profile)
	keyLen, _ := p.KeyLen()
	saltLen, _ := p.SaltLen()
	m, err := state.ExportKeyingMaterial("EXTRACTOR-dtls_srtp", nil, 2*(keyLen+saltLen))
	if err != nil {
		t.Fatal(err)
	}
	key, salt := m[:keyLen], m[2*keyLen:2*keyLen+saltLen] // the client's
	if !sfuIsServer {
		key, salt = m[keyLen:2*keyLen], m[2*keyLen+saltLen:] // the server's
	}
	enc, err := srtp.CreateContext(key, salt, p)
	if err != nil {
		t.Fatal(err)
	}
	return &association{side: side, peer: peer, encrypt: enc}
}

func (a *association) send(t *testing.T, pkt []byte) {
	t.Helper()
	if _, err := a.peer.WriteTo(pkt, a.side.conn.LocalAddr()); err != nil {
		t.Fatal(err)
	}
}

func (a *association) sealRTP(t *testing.T, ssrc uint32, seq uint16) (plain, sealed []byte) {
	t.Helper()
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: uint32(seq) * 3000, SSRC: ssrc},
		Payload: bytes.Repeat([]byte{byte(seq)}, 900)}
	plain, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	sealed, err = a.encrypt.EncryptRTP(nil, plain, nil)
	if err != nil {
		t.Fatal(err)
	}
	return plain, sealed
}

// tally is the counting part of Stats.
type tally struct{ direct, fallback, dropped, overflow uint64 }

func tallyOf(st Stats) tally { return tally{st.Direct, st.Fallback, st.Dropped, st.Overflow} }

// collector records what a route delivers.
type collector struct {
	mu  sync.Mutex
	got [][]byte
}

func (c *collector) deliver(pkt []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, append([]byte(nil), pkt...))
}

func (c *collector) packets() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.got...)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRoutedStreamsAreDecryptedAndTheRestPassesThrough(t *testing.T) {
	cases := []struct {
		name        string
		sfuIsServer bool
		profile     dtls.SRTPProtectionProfile
		sockets     int
	}{
		{"sfu-server/aes-gcm-128", true, dtls.SRTP_AEAD_AES_128_GCM, 1},
		{"sfu-client/aes-gcm-128", false, dtls.SRTP_AEAD_AES_128_GCM, 1},
		{"sfu-server/aes-cm-sha1-80", true, dtls.SRTP_AES128_CM_HMAC_SHA1_80, 1},
		{"sfu-client/aes-gcm-256", false, dtls.SRTP_AEAD_AES_256_GCM, 1},
		{"sfu-server/aes-gcm-128/3-sockets", true, dtls.SRTP_AEAD_AES_128_GCM, 3},
		{"sfu-client/aes-cm-sha1-80/3-sockets", false, dtls.SRTP_AES128_CM_HMAC_SHA1_80, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := associateLogging(t, tc.sfuIsServer, tc.profile, nil, tc.sockets)
			const routed, other = 0x1111, 0x2222
			var got collector
			a.side.session.Route(routed, got.deliver)

			var want [][]byte
			var passWant [][]byte
			for seq := uint16(100); seq < 110; seq++ {
				plain, sealed := a.sealRTP(t, routed, seq)
				want = append(want, plain)
				a.send(t, sealed)
				_, sealedOther := a.sealRTP(t, other, seq)
				passWant = append(passWant, sealedOther)
				a.send(t, sealedOther)
			}
			// RTCP is never taken, even about a routed stream.
			rr, err := (&rtcp.ReceiverReport{SSRC: routed}).Marshal()
			if err != nil {
				t.Fatal(err)
			}
			srtcpPkt, err := a.encrypt.EncryptRTCP(nil, rr, nil)
			if err != nil {
				t.Fatal(err)
			}
			passWant = append(passWant, srtcpPkt)
			a.send(t, srtcpPkt)

			waitFor(t, "the packets", func() bool {
				return len(got.packets()) == len(want) && len(a.side.passedCopy()) == len(passWant)
			})
			for i, pkt := range got.packets() {
				if !bytes.Equal(pkt, want[i]) {
					t.Fatalf("routed packet %d differs from what was sent", i)
				}
			}
			for i, pkt := range a.side.passedCopy() {
				if !bytes.Equal(pkt, passWant[i]) {
					t.Fatalf("passed-through datagram %d was altered", i)
				}
			}
			st := a.side.router.Stats()
			if got := tallyOf(st); got != (tally{direct: 10}) {
				t.Fatalf("stats %+v, want 10 delivered", got)
			}
			// Each delivered packet's time in the server, from the kernel's
			// arrival stamp, is in the histogram.
			if st.Residence.Count != 10 || st.Residence.Sum <= 0 {
				t.Fatalf("residence histogram has %d packets (sum %v), want 10", st.Residence.Count, st.Residence.Sum)
			}
		})
	}
}

func TestReplaysAreDroppedAndForgeriesLeftToPion(t *testing.T) {
	a := associate(t, true, dtls.SRTP_AEAD_AES_128_GCM)
	const ssrc = 0x3333
	var got collector
	a.side.session.Route(ssrc, got.deliver)

	_, first := a.sealRTP(t, ssrc, 1)
	a.send(t, first)
	a.send(t, first) // a replay
	_, second := a.sealRTP(t, ssrc, 2)
	forged := append([]byte(nil), second...)
	forged[len(forged)-1] ^= 0xff // a broken tag: not ours to judge, pion decides
	a.send(t, forged)
	a.send(t, second)

	waitFor(t, "two deliveries and the forgery passed on", func() bool {
		return len(got.packets()) == 2 && len(a.side.passedCopy()) == 1
	})
	if !bytes.Equal(a.side.passedCopy()[0], forged) {
		t.Fatal("the forged packet was not passed on as it came")
	}
	if st := tallyOf(a.side.router.Stats()); st != (tally{direct: 2, fallback: 1, dropped: 1}) {
		t.Fatalf("stats %+v, want 2 delivered, 1 fallback, 1 dropped", st)
	}
}

func TestStreamThatKeepsFailingGoesBackToPion(t *testing.T) {
	// The stream wrapped its sequence numbers before it was routed, so
	// this side guesses rollover counter 0 where the sender uses 1: every
	// packet fails here and pion (which counted the wrap) reads them.
	a := associate(t, true, dtls.SRTP_AEAD_AES_128_GCM)
	const ssrc, sent = 0x5555, failuresBeforeGivingUp + 4
	a.encrypt.SetROC(ssrc, 1)
	var got collector
	a.side.session.Route(ssrc, got.deliver)
	for seq := range uint16(sent) {
		_, sealed := a.sealRTP(t, ssrc, 100+seq)
		a.send(t, sealed)
	}
	waitFor(t, "every packet passed on", func() bool { return len(a.side.passedCopy()) == sent })
	if st := a.side.router.Stats(); st.Fallback != failuresBeforeGivingUp || st.Direct != 0 {
		t.Fatalf("stats %+v, want %d fallbacks and then no more tries", st, failuresBeforeGivingUp)
	}
	if routes := a.side.session.routes.Load(); routes != nil && (*routes)[ssrc] != nil {
		t.Fatal("the failing stream is still routed")
	}
	if len(got.packets()) != 0 {
		t.Fatal("a packet that failed authentication was delivered")
	}
}

func TestClosedSessionGivesEverythingBackToPion(t *testing.T) {
	a := associate(t, false, dtls.SRTP_AEAD_AES_128_GCM)
	const ssrc = 0x4444
	var got collector
	a.side.session.Route(ssrc, got.deliver)
	if n := a.side.router.Sessions(); n != 1 {
		t.Fatalf("%d peers routed, want 1", n)
	}
	a.side.session.Close()
	if n := a.side.router.Sessions(); n != 0 {
		t.Fatalf("%d peers routed after close, want 0", n)
	}
	_, sealed := a.sealRTP(t, ssrc, 7)
	a.send(t, sealed)
	waitFor(t, "the packet passed on", func() bool { return len(a.side.passedCopy()) == 1 })
	if len(got.packets()) != 0 {
		t.Fatal("a closed session delivered a packet")
	}
}

func TestUnroutedStreamGoesBackToPion(t *testing.T) {
	a := associate(t, true, dtls.SRTP_AEAD_AES_128_GCM)
	var got collector
	a.side.session.Route(1, got.deliver)
	a.side.session.Route(2, got.deliver)
	a.side.session.Unroute(1)
	_, one := a.sealRTP(t, 1, 1)
	_, two := a.sealRTP(t, 2, 1)
	a.send(t, one)
	a.send(t, two)
	waitFor(t, "one passed on, one delivered", func() bool {
		return len(a.side.passedCopy()) == 1 && len(got.packets()) == 1
	})
	if !bytes.Equal(a.side.passedCopy()[0], one) {
		t.Fatal("the unrouted stream's packet is not the one passed on")
	}
}

func TestFollowRoutesANewPeerAddress(t *testing.T) {
	// ICE may move a connection to another candidate pair after the
	// handshake; the session follows it there with the same keys.
	a := associate(t, true, dtls.SRTP_AEAD_AES_128_GCM)
	moved, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer moved.Close()
	var got collector
	a.side.session.Route(9, got.deliver)
	_, sealed := a.sealRTP(t, 9, 1)
	send := func() {
		if _, err := moved.WriteTo(sealed, a.side.conn.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	send()
	waitFor(t, "the packet from the unknown address passed on", func() bool { return len(a.side.passedCopy()) == 1 })
	a.side.session.Follow(moved.LocalAddr().(*net.UDPAddr).AddrPort())
	_, sealed = a.sealRTP(t, 9, 2)
	send()
	waitFor(t, "delivery from the new address", func() bool { return len(got.packets()) == 1 })
}

func TestKeyLogBeforeTheHellosBindsWhenTheyArrive(t *testing.T) {
	// A real handshake's key-log line and datagrams, given to a second
	// router in the other order: the line first, then the hellos.
	var keyLog bytes.Buffer
	a := associateLogging(t, true, dtls.SRTP_AEAD_AES_128_GCM, &keyLog, 1)
	if a.side.session.Ready() {
		t.Fatal("the first router's session has keys without a key log")
	}
	r := NewRouter()
	s := r.NewSession()
	if _, err := s.Write(keyLog.Bytes()); err != nil {
		t.Fatal(err)
	}
	peer := a.peer.LocalAddr().(*net.UDPAddr).AddrPort()
	for _, d := range a.side.handshakeDatagrams() {
		r.sniff(d.pkt, peer, d.outbound)
	}
	if !s.Ready() {
		t.Fatal("no keys once the hellos came")
	}
	var got collector
	s.Route(5, got.deliver)
	plain, sealed := a.sealRTP(t, 5, 1)
	var counts connCounts
	if !s.receive(sealed, make([]byte, maxPacket), &rtp.Header{}, &counts) {
		t.Fatal("the routed packet was not taken")
	}
	if pkts := got.packets(); len(pkts) != 1 || !bytes.Equal(pkts[0], plain) {
		t.Fatal("the routed packet was not delivered decrypted")
	}
}

func TestMalformedKeyLogIsAnError(t *testing.T) {
	s := NewRouter().NewSession()
	if _, err := s.Write([]byte("CLIENT_RANDOM zz 00\n")); err == nil {
		t.Fatal("a malformed key-log line was accepted")
	}
	if s.Ready() {
		t.Fatal("ready without keys")
	}
}

func TestGroupCloseStopsItsReaders(t *testing.T) {
	// goleak (TestMain) checks the readers are gone; here the caller's
	// read ends with the standard error for a closed socket.
	side := newSFUSide(t, 4)
	if err := side.conn.Close(); err != nil {
		t.Fatal(err)
	}
	<-side.done
	if _, _, err := side.conn.ReadFromAddrPort(make([]byte, 10)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after close: %v, want net.ErrClosed", err)
	}
}

// BenchmarkReceive is the fast path's own work on one routed 1200-byte
// payload: the peer lookup, the route lookup, SRTP decryption with the
// replay check, the call to the route (which here only counts) and the
// residence histogram.
func BenchmarkReceive(b *testing.B) {
	for _, profile := range []srtp.ProtectionProfile{srtp.ProtectionProfileAeadAes128Gcm, srtp.ProtectionProfileAes128CmHmacSha1_80} {
		b.Run(profile.String(), func(b *testing.B) {
			keyLen, _ := profile.KeyLen()
			saltLen, _ := profile.SaltLen()
			key, salt := bytes.Repeat([]byte{1}, keyLen), bytes.Repeat([]byte{2}, saltLen)
			enc, err := srtp.CreateContext(key, salt, profile)
			if err != nil {
				b.Fatal(err)
			}
			// A run of sealed packets is opened over and over, with a new
			// receiving context for each pass so that the replay check
			// lets the run in again.
			const run = 1 << 14
			sealed := make([][]byte, run)
			for i := range sealed {
				p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(i), SSRC: 7},
					Payload: make([]byte, 1200)}
				plain, err := p.Marshal()
				if err != nil {
					b.Fatal(err)
				}
				if sealed[i], err = enc.EncryptRTP(nil, plain, nil); err != nil {
					b.Fatal(err)
				}
			}
			r := NewRouter()
			s := r.NewSession()
			peer := netip.MustParseAddrPort("192.0.2.1:5000")
			r.sessions.Store(peer, s)
			delivered := 0
			s.Route(7, func([]byte) { delivered++ })
			rd := &reader{plain: make([]byte, maxPacket)}
			c := &Conn{router: r}
			arrival := time.Now().UnixNano()
			b.SetBytes(1200)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if i%run == 0 {
					b.StopTimer()
					if s.decrypt, err = srtp.CreateContext(key, salt, profile, srtp.SRTPReplayProtection(replayWindow)); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
				if !c.filter(sealed[i%run], peer, arrival, rd) {
					b.Fatal("not taken")
				}
			}
			if delivered != b.N {
				b.Fatalf("%d delivered of %d", delivered, b.N)
			}
		})
	}
}
