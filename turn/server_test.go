package turn

import (
	"bytes"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	pionturn "github.com/pion/turn/v5"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

// setupTimeout is generous: other packages compile and test on the same
// two cores while these tests run.
const setupTimeout = 30 * time.Second

const testSecret = "test-secret"

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func testLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// testConfig listens on loopback with kernel-chosen ports and relays
// from 127.0.0.1.
func testConfig() Config {
	c := DefaultConfig()
	c.ListenUDP = "127.0.0.1:0"
	c.ListenTCP = "127.0.0.1:0"
	c.RelayBindIP = "127.0.0.1"
	c.RelayPortMin, c.RelayPortMax = 0, 0
	c.AuthSecret = testSecret
	return c
}

func startServer(t *testing.T, c Config) (*Server, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	s, err := New(Params{Config: c, Logger: testLogger(), Registerer: reg})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s, reg
}

// metricValue reads one series of a counter or gauge from reg.
func metricValue(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			match := label == ""
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					match = true
				}
			}
			if !match {
				continue
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s{%s=%q} not found", name, label, value)
	return 0
}

// turnClient is a pion TURN client on its own UDP socket (or on a TCP or
// TLS connection when conn is given).
func turnClient(t *testing.T, server net.Addr, user, pass string, conn net.PacketConn) *pionturn.Client {
	t.Helper()
	if conn == nil {
		var err error
		if conn, err = net.ListenPacket("udp4", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	c, err := pionturn.NewClient(&pionturn.ClientConfig{
		STUNServerAddr: server.String(),
		TURNServerAddr: server.String(),
		Conn:           conn,
		Username:       user,
		Password:       pass,
		Realm:          "avs",
		LoggerFactory:  newSlogFactory(testLogger()),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		_ = conn.Close()
	})
	return c
}

// echoPeer answers every datagram with the same bytes.
func echoPeer(t *testing.T) *net.UDPAddr {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = conn.WriteTo(buf[:n], from)
		}
	})
	t.Cleanup(func() {
		_ = conn.Close()
		wg.Wait()
	})
	return conn.LocalAddr().(*net.UDPAddr)
}

// roundTrip sends payload through relay to peer and waits for the echo,
// resending because UDP may drop the first datagrams while a channel is
// being bound.
func roundTrip(t *testing.T, relay net.PacketConn, peer net.Addr, payload []byte) error {
	t.Helper()
	deadline := time.Now().Add(setupTimeout)
	buf := make([]byte, 1500)
	for time.Now().Before(deadline) {
		if _, err := relay.WriteTo(payload, peer); err != nil {
			return err
		}
		_ = relay.SetReadDeadline(time.Now().Add(time.Second))
		n, from, err := relay.ReadFrom(buf)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			continue
		}
		if err != nil {
			return err
		}
		if from.String() == peer.String() && bytes.Equal(buf[:n], payload) {
			return nil
		}
	}
	return errors.New("no echo before the deadline")
}

func allocate(t *testing.T, c *pionturn.Client) net.PacketConn {
	t.Helper()
	relay, err := c.Allocate()
	if err != nil {
		t.Fatalf("Allocate: %v", err)
	}
	t.Cleanup(func() { _ = relay.Close() })
	return relay
}

func TestRelayOverUDPAndTCP(t *testing.T) {
	c := testConfig()
	c.AllowLoopbackPeers = true
	s, reg := startServer(t, c)
	peer := echoPeer(t)
	user, pass := Credentials(testSecret, "agent-7", time.Hour, time.Now())

	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			var conn net.PacketConn
			server := s.Addrs().UDP
			if transport == "tcp" {
				server = s.Addrs().TCP
				tc, err := net.DialTimeout("tcp", server.String(), setupTimeout)
				if err != nil {
					t.Fatal(err)
				}
				conn = pionturn.NewSTUNConn(tc)
			}
			relay := allocate(t, turnClient(t, server, user, pass, conn))
			if got := relay.LocalAddr().(*net.UDPAddr).IP.String(); got != "127.0.0.1" {
				t.Fatalf("relayed address %s, want 127.0.0.1", got)
			}
			if err := roundTrip(t, relay, peer, []byte("hello via "+transport)); err != nil {
				t.Fatal(err)
			}
		})
	}
	// The relay counts after its send returns, which may be after the
	// echo already arrived here.
	waitFor(t, func() bool {
		return metricValue(t, reg, "avs_turn_relayed_packets_total", "direction", dirToPeer) >= 2 &&
			metricValue(t, reg, "avs_turn_relayed_bytes_total", "direction", dirFromPeer) > 0
	})
}

func TestLoopbackPeerRefusedByDefault(t *testing.T) {
	s, reg := startServer(t, testConfig())
	user, pass := Credentials(testSecret, "customer-1", time.Hour, time.Now())
	client := turnClient(t, s.Addrs().UDP, user, pass, nil)
	allocate(t, client)
	err := client.CreatePermission(echoPeer(t))
	if err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("CreatePermission to 127.0.0.1: got %v, want a 403 error", err)
	}
	if got := metricValue(t, reg, "avs_turn_permissions_denied_total", "", ""); got != 1 {
		t.Fatalf("permissions_denied_total = %v, want 1", got)
	}
}

func TestCredentialsRefused(t *testing.T) {
	now := time.Now()
	expiredUser, expiredPass := Credentials(testSecret, "old", time.Hour, now.Add(-2*time.Hour))
	forgedUser, forgedPass := Credentials("not-the-secret", "mallory", time.Hour, now)
	tests := []struct {
		name, user, pass, reason string
	}{
		{"expired", expiredUser, expiredPass, reasonExpired},
		{"forged", forgedUser, forgedPass, reasonIntegrity},
		{"malformed", "mallory", "x", reasonMalformed},
		{"static user, wrong password", "alice", "guess", reasonIntegrity},
	}
	c := testConfig()
	c.StaticUsers = map[string]string{"alice": "right"}
	s, reg := startServer(t, c)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := metricValue(t, reg, "avs_turn_auth_failures_total", "reason", tt.reason)
			client := turnClient(t, s.Addrs().UDP, tt.user, tt.pass, nil)
			if relay, err := client.Allocate(); err == nil {
				_ = relay.Close()
				t.Fatal("allocation succeeded")
			}
			if got := metricValue(t, reg, "avs_turn_auth_failures_total", "reason", tt.reason); got <= before {
				t.Fatalf("auth_failures_total{reason=%q} = %v, want > %v", tt.reason, got, before)
			}
		})
	}
	t.Run("static user", func(t *testing.T) {
		allocate(t, turnClient(t, s.Addrs().UDP, "alice", "right", nil))
	})
}

func TestAuthFailuresRateLimited(t *testing.T) {
	c := testConfig()
	c.AuthFailureLimit = 2
	s, reg := startServer(t, c)
	forgedUser, forgedPass := Credentials("guess", "mallory", time.Hour, time.Now())
	for range c.AuthFailureLimit {
		client := turnClient(t, s.Addrs().UDP, forgedUser, forgedPass, nil)
		if _, err := client.Allocate(); err == nil {
			t.Fatal("forged credentials accepted")
		}
	}
	// The same source address now fails even with good credentials.
	user, pass := Credentials(testSecret, "mallory", time.Hour, time.Now())
	client := turnClient(t, s.Addrs().UDP, user, pass, nil)
	if relay, err := client.Allocate(); err == nil {
		_ = relay.Close()
		t.Fatal("allocation succeeded from a blocked address")
	}
	if got := metricValue(t, reg, "avs_turn_auth_failures_total", "reason", reasonRateLimited); got == 0 {
		t.Fatal("no rate_limited failure counted")
	}
}

func TestQuotas(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		ids    [2]string
		reason string
	}{
		{"per user", func(c *Config) { c.MaxAllocationsPerUser = 1 }, [2]string{"u", "u"}, rejectUserQuota},
		{"total", func(c *Config) { c.MaxAllocations = 1 }, [2]string{"u", "v"}, rejectTotalQuota},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testConfig()
			tt.change(&c)
			s, reg := startServer(t, c)
			u0, p0 := Credentials(testSecret, tt.ids[0], time.Hour, time.Now())
			first := allocate(t, turnClient(t, s.Addrs().UDP, u0, p0, nil))
			u1, p1 := Credentials(testSecret, tt.ids[1], time.Hour, time.Now())
			second := turnClient(t, s.Addrs().UDP, u1, p1, nil)
			_, err := second.Allocate()
			if err == nil || !strings.Contains(err.Error(), "486") {
				t.Fatalf("second allocation: got %v, want a 486 error", err)
			}
			if got := metricValue(t, reg, "avs_turn_allocations_rejected_total", "reason", tt.reason); got != 1 {
				t.Fatalf("allocations_rejected_total{reason=%q} = %v, want 1", tt.reason, got)
			}
			if err := first.Close(); err != nil {
				t.Fatal(err)
			}
			waitFor(t, func() bool { return s.AllocationCount() == 0 })
			allocate(t, second)
		})
	}
}

func TestBandwidthCap(t *testing.T) {
	c := testConfig()
	c.AllowLoopbackPeers = true
	c.MaxBitrateKbps = 64
	s, reg := startServer(t, c)
	peer := echoPeer(t)
	user, pass := Credentials(testSecret, "u", time.Hour, time.Now())
	relay := allocate(t, turnClient(t, s.Addrs().UDP, user, pass, nil))
	if err := roundTrip(t, relay, peer, []byte("warm up")); err != nil {
		t.Fatal(err)
	}
	// 300 kB is far beyond the 64 KiB burst plus what 64 kbit/s refills
	// while a loop sends them.
	payload := make([]byte, 1000)
	for range 300 {
		if _, err := relay.WriteTo(payload, peer); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool {
		return metricValue(t, reg, "avs_turn_dropped_packets_total", "reason", "bandwidth") > 0
	})
}

func TestMaxAllocationAge(t *testing.T) {
	c := testConfig()
	c.MaxAllocationAge = time.Second
	s, reg := startServer(t, c)
	user, pass := Credentials(testSecret, "u", time.Hour, time.Now())
	allocate(t, turnClient(t, s.Addrs().UDP, user, pass, nil))
	if got := metricValue(t, reg, "avs_turn_allocations_active", "", ""); got != 1 {
		t.Fatalf("allocations_active = %v, want 1", got)
	}
	waitFor(t, func() bool { return s.AllocationCount() == 0 })
}

func TestTLS(t *testing.T) {
	c := testConfig()
	c.ListenTCP = ""
	c.ListenTLS = "127.0.0.1:0"
	c.TLSCertFile, c.TLSKeyFile = writeSelfSignedCert(t)
	c.AllowLoopbackPeers = true
	s, _ := startServer(t, c)
	if s.Addrs().TCP != nil || s.Addrs().TLS == nil {
		t.Fatalf("addrs %+v", s.Addrs())
	}
	dialer := &net.Dialer{Timeout: setupTimeout}
	tc, err := tls.DialWithDialer(dialer, "tcp", s.Addrs().TLS.String(), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // self-signed test certificate
	if err != nil {
		t.Fatal(err)
	}
	user, pass := Credentials(testSecret, "u", time.Hour, time.Now())
	relay := allocate(t, turnClient(t, s.Addrs().TLS, user, pass, pionturn.NewSTUNConn(tc)))
	if err := roundTrip(t, relay, echoPeer(t), []byte("over tls")); err != nil {
		t.Fatal(err)
	}
	urls := s.URLs()
	if len(urls) != 2 || !strings.HasPrefix(urls[1], "turns:127.0.0.1:") {
		t.Fatalf("URLs() = %v", urls)
	}
}

func TestCloseEndsClientConnections(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, err := New(Params{Config: testConfig(), Logger: testLogger(), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	tc, err := net.DialTimeout("tcp", s.Addrs().TCP.String(), setupTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	user, pass := Credentials(testSecret, "u", time.Hour, time.Now())
	client := turnClient(t, s.Addrs().TCP, user, pass, pionturn.NewSTUNConn(tc))
	relay, err := client.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if n := s.AllocationCount(); n != 0 {
		t.Fatalf("%d allocations open after Close", n)
	}
	// The server closed the client's TCP connection.
	_ = tc.SetReadDeadline(time.Now().Add(setupTimeout))
	if _, err := tc.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection still open after Close")
	}
}

func TestICEServer(t *testing.T) {
	c := testConfig()
	c.PublicHost = "turn.example.com"
	s, _ := startServer(t, c)
	now := time.Unix(1700000000, 0)
	ice := s.ICEServer("agent-7", now)
	wantUser, wantPass := Credentials(testSecret, "agent-7", 24*time.Hour, now)
	if ice.Username != wantUser || ice.Credential != wantPass {
		t.Fatalf("credentials %q %q", ice.Username, ice.Credential)
	}
	if len(ice.URLs) != 2 || !strings.HasPrefix(ice.URLs[0], "turn:turn.example.com:") ||
		!strings.HasSuffix(ice.URLs[0], "?transport=udp") || !strings.HasSuffix(ice.URLs[1], "?transport=tcp") {
		t.Fatalf("URLs %v", ice.URLs)
	}
}

func TestNewRefusesBadInput(t *testing.T) {
	c := testConfig()
	c.AuthSecret = ""
	if _, err := New(Params{Config: c}); err == nil {
		t.Fatal("started without credentials")
	}
	c = testConfig()
	c.Enabled = false
	if _, err := New(Params{Config: c}); err == nil {
		t.Fatal("started while disabled")
	}
	// A failed New closes the sockets it was given and releases its
	// metrics, so that the caller can retry.
	reg := prometheus.NewRegistry()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c = testConfig()
	c.ListenTCP = "127.0.0.1:bad-port"
	if _, err := New(Params{Config: c, Registerer: reg, PacketConn: conn}); err == nil {
		t.Fatal("started with a bad TCP address")
	}
	if _, err := conn.WriteTo([]byte("x"), conn.LocalAddr()); err == nil {
		t.Fatal("injected socket still open after New failed")
	}
	// Two servers on one registry collide rather than share counters.
	s, err := New(Params{Config: testConfig(), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := New(Params{Config: testConfig(), Registerer: reg}); err == nil {
		t.Fatal("second server registered the same metrics")
	}
}

// waitFor polls cond until it holds; the deadline only guards against a
// hang, the assertion is on behaviour.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(setupTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached before the deadline")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestTCPRelayRefused: RFC 6062 TCP allocations would make the server a
// general TCP proxy; WebRTC never needs them.
func TestTCPRelayRefused(t *testing.T) {
	s, reg := startServer(t, testConfig())
	tc, err := net.DialTimeout("tcp", s.Addrs().TCP.String(), setupTimeout)
	if err != nil {
		t.Fatal(err)
	}
	user, pass := Credentials(testSecret, "u", time.Hour, time.Now())
	client := turnClient(t, s.Addrs().TCP, user, pass, pionturn.NewSTUNConn(tc))
	if alloc, err := client.AllocateTCP(); err == nil {
		_ = alloc.Close()
		t.Fatal("TCP relay allocation succeeded")
	}
	if got := metricValue(t, reg, "avs_turn_allocations_rejected_total", "reason", rejectTCPRelay); got != 1 {
		t.Fatalf("allocations_rejected_total{reason=tcp_relay_disabled} = %v, want 1", got)
	}
}

// TestQuotaUnderConcurrency: many clients of one user allocate at once
// over TCP (one pion goroutine each), and the per-user quota still holds
// exactly; after they leave, the accounting returns to zero.
func TestQuotaUnderConcurrency(t *testing.T) {
	const clients, quota = 12, 3
	c := testConfig()
	c.MaxAllocationsPerUser = quota
	s, reg := startServer(t, c)
	user, pass := Credentials(testSecret, "crowd", time.Hour, time.Now())
	relays := make(chan net.PacketConn, clients)
	var wg sync.WaitGroup
	for range clients {
		tc, err := net.DialTimeout("tcp", s.Addrs().TCP.String(), setupTimeout)
		if err != nil {
			t.Fatal(err)
		}
		client := turnClient(t, s.Addrs().TCP, user, pass, pionturn.NewSTUNConn(tc))
		wg.Go(func() {
			if relay, err := client.Allocate(); err == nil {
				relays <- relay
			}
		})
	}
	wg.Wait()
	close(relays)
	var granted []net.PacketConn
	for relay := range relays {
		granted = append(granted, relay)
	}
	if len(granted) != quota {
		t.Fatalf("%d allocations granted, want exactly %d", len(granted), quota)
	}
	if got := metricValue(t, reg, "avs_turn_allocations_active", "", ""); got != quota {
		t.Fatalf("allocations_active = %v, want %d", got, quota)
	}
	for _, relay := range granted {
		if err := relay.Close(); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool { return s.AllocationCount() == 0 })
	if got := metricValue(t, reg, "avs_turn_allocations_active", "", ""); got != 0 {
		t.Fatalf("allocations_active = %v after release, want 0", got)
	}
}
