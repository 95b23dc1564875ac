package turn

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// discardConn is a relay socket that sends nowhere, so the benchmark
// measures only what relayConn adds to each datagram.
type discardConn struct{ net.PacketConn }

func (discardConn) WriteTo(p []byte, _ net.Addr) (int, error) { return len(p), nil }

// BenchmarkRelayConnWriteTo is the per-datagram cost of the peer filter,
// the bandwidth cap and the metrics, without the syscall.
func BenchmarkRelayConnWriteTo(b *testing.B) {
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	c := DefaultConfig()
	c.MaxBitrateKbps = 0
	filter, err := newPeerFilter(c, []netip.Addr{netip.MustParseAddr("198.51.100.1")}, nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, capped := range []bool{false, true} {
		name := "uncapped"
		if capped {
			name = "capped"
		}
		b.Run(name, func(b *testing.B) {
			rc := &relayConn{PacketConn: discardConn{}, relays: &relays{filter: filter, metrics: m}}
			if capped {
				// High enough never to drop: the benchmark measures the check.
				rc.up = newTokenBucket(1e15, 1e15, time.Now())
			}
			peer := &net.UDPAddr{IP: net.IPv4(93, 184, 216, 34), Port: 5000}
			payload := make([]byte, 200)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := rc.WriteTo(payload, peer); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
