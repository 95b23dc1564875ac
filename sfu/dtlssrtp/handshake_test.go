package dtlssrtp_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/selfsign"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"

	"github.com/avs/avs/sfu/dtlssrtp"
)

// tap passes every datagram one endpoint sends or receives to Scan, the way
// the SFU's socket reader would see them.
type tap struct {
	net.PacketConn

	mu    sync.Mutex
	hello dtlssrtp.Hello
}

func (t *tap) ReadFrom(p []byte) (int, net.Addr, error) {
	n, addr, err := t.PacketConn.ReadFrom(p)
	if n > 0 {
		t.observe(p[:n])
	}
	return n, addr, err
}

func (t *tap) WriteTo(p []byte, addr net.Addr) (int, error) {
	t.observe(p)
	return t.PacketConn.WriteTo(p, addr)
}

func (t *tap) observe(datagram []byte) {
	h, ok := dtlssrtp.Scan(datagram)
	if !ok {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if h.HasClientHello && !t.hello.HasClientHello {
		t.hello.HasClientHello = true
		t.hello.ClientRandom = h.ClientRandom
	}
	if h.HasServerHello && !t.hello.HasServerHello {
		t.hello.HasServerHello = true
		t.hello.ServerRandom = h.ServerRandom
		t.hello.CipherSuite = h.CipherSuite
		t.hello.Profile = h.Profile
	}
}

func (t *tap) seen() dtlssrtp.Hello {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.hello
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type handshakeResult struct {
	client, server *dtls.Conn
	tap            *tap
	keyLog         string
}

// handshake runs a real DTLS handshake between two UDP loopback sockets.
// The client's socket is tapped.
func handshake(t *testing.T, suite dtls.CipherSuiteID, profile dtls.SRTPProtectionProfile,
	keyLogOnServer bool, mki []byte) handshakeResult {
	t.Helper()
	listen := func() net.PacketConn {
		pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		return pc
	}
	clientPC, serverPC := listen(), listen()
	tp := &tap{PacketConn: clientPC}

	cert := func() dtls.Option {
		c, err := selfsign.GenerateSelfSigned()
		if err != nil {
			t.Fatal(err)
		}
		return dtls.WithCertificates(c)
	}
	keyLog := &lockedBuffer{}
	common := []dtls.Option{
		dtls.WithInsecureSkipVerify(true),
		dtls.WithCipherSuites(suite),
		dtls.WithSRTPProtectionProfiles(profile),
	}
	if mki != nil {
		common = append(common, dtls.WithSRTPMasterKeyIdentifier(mki))
	}
	clientOpts := []dtls.ClientOption{cert()}
	serverOpts := []dtls.ServerOption{cert()}
	for _, o := range common {
		clientOpts = append(clientOpts, o)
		serverOpts = append(serverOpts, o)
	}
	if keyLogOnServer {
		serverOpts = append(serverOpts, dtls.WithKeyLogWriter(keyLog))
	} else {
		clientOpts = append(clientOpts, dtls.WithKeyLogWriter(keyLog))
	}

	client, err := dtls.ClientWithOptions(tp, serverPC.LocalAddr(), clientOpts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	server, err := dtls.ServerWithOptions(serverPC, clientPC.LocalAddr(), serverOpts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = server.Close() })

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	errs := make(chan error, 2)
	go func() { errs <- client.HandshakeContext(ctx) }()
	go func() { errs <- server.HandshakeContext(ctx) }()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("handshake: %v", err)
		}
	}
	return handshakeResult{client: client, server: server, tap: tp, keyLog: keyLog.String()}
}

func exported(t *testing.T, name string, c *dtls.Conn, n int) []byte {
	t.Helper()
	state, ok := c.ConnectionState()
	if !ok {
		t.Fatalf("%s: no connection state", name)
	}
	m, err := state.ExportKeyingMaterial("EXTRACTOR-dtls_srtp", nil, n)
	if err != nil {
		t.Fatalf("%s: export: %v", name, err)
	}
	return m
}

// TestDeriveMatchesPion checks the whole path the SFU will take — Scan on
// the wire, ParseKeyLog on pion's key log, Derive — against the exporter of
// both pion endpoints, and then uses the keys for SRTP.
func TestDeriveMatchesPion(t *testing.T) {
	profiles := []dtls.SRTPProtectionProfile{
		dtls.SRTP_AES128_CM_HMAC_SHA1_80,
		dtls.SRTP_AEAD_AES_128_GCM,
		dtls.SRTP_AEAD_AES_256_GCM,
	}
	suites := []dtls.CipherSuiteID{
		dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		dtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	}
	for _, profile := range profiles {
		for _, suite := range suites {
			for _, onServer := range []bool{false, true} {
				side := "client"
				if onServer {
					side = "server"
				}
				name := fmt.Sprintf("%v/%v/keylog-%s", srtp.ProtectionProfile(profile), suite, side)
				t.Run(name, func(t *testing.T) {
					checkDerive(t, suite, profile, onServer)
				})
			}
		}
	}
}

func checkDerive(t *testing.T, suite dtls.CipherSuiteID, profile dtls.SRTPProtectionProfile, keyLogOnServer bool) {
	r := handshake(t, suite, profile, keyLogOnServer, nil)

	lines := strings.SplitAfter(r.keyLog, "\n")
	if len(lines) != 2 || lines[1] != "" {
		t.Fatalf("want exactly one key-log line, got %q", r.keyLog)
	}
	clientRandom, masterSecret, err := dtlssrtp.ParseKeyLog([]byte(lines[0]))
	if err != nil {
		t.Fatalf("ParseKeyLog: %v", err)
	}

	h := r.tap.seen()
	if !h.HasClientHello || !h.HasServerHello {
		t.Fatalf("Scan missed a hello: %+v", h)
	}
	if h.ClientRandom != clientRandom {
		t.Fatalf("ClientHello random %x, key log %x", h.ClientRandom, clientRandom)
	}
	if h.CipherSuite != uint16(suite) {
		t.Fatalf("cipher suite %#04x, negotiated %#04x", h.CipherSuite, uint16(suite))
	}
	if sel, ok := r.client.SelectedSRTPProtectionProfile(); !ok || h.Profile != srtp.ProtectionProfile(sel) {
		t.Fatalf("profile %v, negotiated %v (%v)", h.Profile, sel, ok)
	}

	keys, err := dtlssrtp.Derive(masterSecret, h.ClientRandom, h.ServerRandom, h.CipherSuite, h.Profile)
	if err != nil {
		t.Fatalf("Derive: %v", err)
	}
	if keys.Profile != h.Profile {
		t.Fatalf("Keys.Profile %v, want %v", keys.Profile, h.Profile)
	}
	keyLen, _ := keys.Profile.KeyLen()
	saltLen, _ := keys.Profile.SaltLen()
	if len(keys.ClientKey) != keyLen || len(keys.ServerKey) != keyLen ||
		len(keys.ClientSalt) != saltLen || len(keys.ServerSalt) != saltLen {
		t.Fatalf("lengths %d/%d/%d/%d, want key %d salt %d", len(keys.ClientKey), len(keys.ServerKey),
			len(keys.ClientSalt), len(keys.ServerSalt), keyLen, saltLen)
	}
	var derived []byte
	for _, part := range [][]byte{keys.ClientKey, keys.ServerKey, keys.ClientSalt, keys.ServerSalt} {
		derived = append(derived, part...)
	}
	n := 2 * (keyLen + saltLen)
	fromClient := exported(t, "client", r.client, n)
	fromServer := exported(t, "server", r.server, n)
	if !bytes.Equal(derived, fromClient) {
		t.Fatalf("derived %x\nclient exporter %x", derived, fromClient)
	}
	if !bytes.Equal(derived, fromServer) {
		t.Fatalf("derived %x\nserver exporter %x", derived, fromServer)
	}

	// Each direction: the sender's derived key/salt must be what the peer
	// decrypts with, taken from the peer's own exporter output by the RFC
	// 5764 layout. The opposite direction's key must not work.
	split := func(m []byte) (cKey, cSalt, sKey, sSalt []byte) {
		return m[:keyLen], m[2*keyLen : 2*keyLen+saltLen], m[keyLen : 2*keyLen], m[2*keyLen+saltLen:]
	}
	sCKey, sCSalt, _, _ := split(fromServer)
	_, _, cSKey, cSSalt := split(fromClient)
	roundTrip(t, "client->server", keys.Profile, keys.ClientKey, keys.ClientSalt, sCKey, sCSalt, true)
	roundTrip(t, "server->client", keys.Profile, keys.ServerKey, keys.ServerSalt, cSKey, cSSalt, true)
	roundTrip(t, "wrong direction", keys.Profile, keys.ClientKey, keys.ClientSalt, cSKey, cSSalt, false)
}

func roundTrip(t *testing.T, name string, profile srtp.ProtectionProfile,
	encKey, encSalt, decKey, decSalt []byte, wantOK bool) {
	t.Helper()
	enc, err := srtp.CreateContext(encKey, encSalt, profile)
	if err != nil {
		t.Fatalf("%s: encrypt context: %v", name, err)
	}
	dec, err := srtp.CreateContext(decKey, decSalt, profile)
	if err != nil {
		t.Fatalf("%s: decrypt context: %v", name, err)
	}
	pkt := rtp.Packet{
		Header:  rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: 4242, Timestamp: 960, SSRC: 0x5eed},
		Payload: []byte("opus frame, more or less"),
	}
	plain, err := pkt.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	cipher, err := enc.EncryptRTP(nil, plain, nil)
	if err != nil {
		t.Fatalf("%s: encrypt: %v", name, err)
	}
	if bytes.Contains(cipher, pkt.Payload) {
		t.Fatalf("%s: payload not encrypted", name)
	}
	got, err := dec.DecryptRTP(nil, cipher, nil)
	if !wantOK {
		if err == nil {
			t.Fatalf("%s: decrypted with the other direction's key", name)
		}
		return
	}
	if err != nil {
		t.Fatalf("%s: decrypt: %v", name, err)
	}
	if !bytes.Equal(got, plain) {
		t.Fatalf("%s: decrypted %x, want %x", name, got, plain)
	}
}

// TestScanRealMKI checks that a ServerHello from pion that carries an MKI,
// whose SRTP packets the plain keys cannot handle, is reported as unusable.
func TestScanRealMKI(t *testing.T) {
	r := handshake(t, dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, dtls.SRTP_AEAD_AES_128_GCM, false, []byte{7, 7})
	h := r.tap.seen()
	if !h.HasServerHello {
		t.Fatalf("Scan missed the ServerHello: %+v", h)
	}
	if h.Profile != 0 {
		t.Fatalf("Profile = %v with an MKI, want 0", h.Profile)
	}
	if _, err := dtlssrtp.Derive(make([]byte, 48), h.ClientRandom, h.ServerRandom, h.CipherSuite, h.Profile); err == nil {
		t.Fatal("Derive accepted profile 0")
	}
}
