package udpconn

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func listen(t testing.TB, network, addr string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Skipf("cannot listen on %s %s: %v", network, addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func wrap(t testing.TB, c *net.UDPConn) *Conn {
	t.Helper()
	w, err := Wrap(c)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name       string
		network    string
		listenAddr string // the wrapped socket
		peerNet    string
		peerAddr   string
		wantFrom   func(peer netip.AddrPort) netip.AddrPort // how the wrapped socket sees the peer
	}{
		{"IPv4", "udp4", "127.0.0.1:0", "udp4", "127.0.0.1:0", func(p netip.AddrPort) netip.AddrPort { return p }},
		{"IPv6", "udp6", "[::1]:0", "udp6", "[::1]:0", func(p netip.AddrPort) netip.AddrPort { return p }},
		{"dual-stack socket, IPv4 peer", "udp", "[::]:0", "udp4", "127.0.0.1:0", func(p netip.AddrPort) netip.AddrPort {
			return netip.AddrPortFrom(netip.AddrFrom16(p.Addr().As16()), p.Port()) // seen mapped, as the standard library reports it
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := wrap(t, listen(t, tt.network, tt.listenAddr))
			peer := listen(t, tt.peerNet, tt.peerAddr)
			peerAddr := peer.LocalAddr().(*net.UDPAddr).AddrPort()
			port := c.LocalAddr().(*net.UDPAddr).AddrPort().Port()
			to := netip.AddrPortFrom(peerAddr.Addr(), port)

			// peer -> wrapped
			if _, err := peer.WriteToUDPAddrPort([]byte("hello"), to); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 64)
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, from, err := c.ReadFromAddrPort(buf)
			if err != nil {
				t.Fatal(err)
			}
			if string(buf[:n]) != "hello" {
				t.Fatalf("read %q", buf[:n])
			}
			if want := tt.wantFrom(peerAddr); from != want {
				t.Fatalf("from %v, want %v", from, want)
			}

			// Again, with the kernel's arrival time.
			before := time.Now().UnixNano()
			if _, err := peer.WriteToUDPAddrPort([]byte("again"), to); err != nil {
				t.Fatal(err)
			}
			n, fromAt, arrival, err := c.ReadFromAddrPortAt(buf)
			after := time.Now().UnixNano()
			if err != nil || string(buf[:n]) != "again" || fromAt != from {
				t.Fatalf("ReadFromAddrPortAt = %q from %v, %v", buf[:n], fromAt, err)
			}
			if arrival < before || arrival > after {
				t.Fatalf("arrival %d is not between sending (%d) and reading (%d)", arrival, before, after)
			}

			// wrapped -> peer, to the address it reported
			if n, err := c.WriteToAddrPort([]byte("world!"), from); err != nil || n != 6 {
				t.Fatalf("WriteToAddrPort = %d, %v", n, err)
			}
			_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, back, err := peer.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatal(err)
			}
			if string(buf[:n]) != "world!" || back.Port() != port {
				t.Fatalf("peer read %q from %v", buf[:n], back)
			}

			// The net.PacketConn methods go the same way.
			if _, err := c.WriteTo([]byte{}, net.UDPAddrFromAddrPort(from)); err != nil {
				t.Fatalf("empty datagram: %v", err)
			}
			if n, _, err := peer.ReadFromUDPAddrPort(buf); err != nil || n != 0 {
				t.Fatalf("peer read %d, %v; want the empty datagram", n, err)
			}
			if _, err := peer.WriteToUDPAddrPort([]byte("x"), to); err != nil {
				t.Fatal(err)
			}
			if n, addr, err := c.ReadFrom(buf); err != nil || n != 1 || addr.(*net.UDPAddr).AddrPort() != from {
				t.Fatalf("ReadFrom = %d %v %v", n, addr, err)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	c := wrap(t, listen(t, "udp4", "127.0.0.1:0"))
	buf := make([]byte, 16)

	_ = c.SetReadDeadline(time.Now().Add(-time.Second))
	var ne net.Error
	if _, _, err := c.ReadFromAddrPort(buf); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past the deadline: %v, want a timeout", err)
	}
	_ = c.SetReadDeadline(time.Time{})

	if _, err := c.WriteToAddrPort([]byte("x"), netip.MustParseAddrPort("[2001:db8::1]:9")); err == nil {
		t.Fatal("IPv6 destination on an IPv4 socket accepted")
	}
	if _, err := c.WriteToAddrPort([]byte("x"), netip.AddrPort{}); err == nil {
		t.Fatal("invalid destination accepted")
	}
	if _, err := c.WriteTo([]byte("x"), &net.TCPAddr{}); err == nil {
		t.Fatal("TCP destination accepted")
	}

	// A reader waiting for a datagram is released by Close.
	done := make(chan error, 1)
	go func() {
		_, _, err := c.ReadFromAddrPort(buf)
		done <- err
	}()
	time.Sleep(10 * time.Millisecond) // let it park; a Close before the read is checked below too
	_ = c.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read on a closed socket: %v, want net.ErrClosed", err)
	}
	if _, err := c.WriteToAddrPort([]byte("x"), netip.MustParseAddrPort("127.0.0.1:9")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write on a closed socket: %v, want net.ErrClosed", err)
	}
}

func TestConcurrentWriters(t *testing.T) {
	c := wrap(t, listen(t, "udp4", "127.0.0.1:0"))
	peer := listen(t, "udp4", "127.0.0.1:0")
	_ = peer.SetReadBuffer(1 << 20)
	to := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	const writers, each = 4, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			pkt := bytes.Repeat([]byte{byte(w)}, 100+w)
			for range each {
				if _, err := c.WriteToAddrPort(pkt, to); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	counts := map[byte]int{}
	buf := make([]byte, 256)
	_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	for range writers * each {
		n, _, err := peer.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatal(err)
		}
		w := buf[0]
		if n != 100+int(w) || !bytes.Equal(buf[:n], bytes.Repeat([]byte{w}, n)) {
			t.Fatalf("a datagram of writer %d arrived mixed or cut (%d bytes)", w, n)
		}
		counts[w]++
	}
	for w := range writers {
		if counts[byte(w)] != each {
			t.Fatalf("writer %d: %d datagrams arrived, want %d", w, counts[byte(w)], each)
		}
	}
}

func BenchmarkWriteToAddrPort(b *testing.B) {
	peer := listen(b, "udp4", "127.0.0.1:0")
	to := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	pkt := make([]byte, 1200)
	std := listen(b, "udp4", "127.0.0.1:0")
	direct := wrap(b, listen(b, "udp4", "127.0.0.1:0"))
	b.Run("std", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = std.WriteToUDPAddrPort(pkt, to)
		}
	})
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = direct.WriteToAddrPort(pkt, to)
		}
	})
}
