package turn

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Directions of relayed traffic, the values of the direction label.
const (
	dirToPeer   = "client_to_peer"
	dirFromPeer = "peer_to_client"
)

type metrics struct {
	allocations   prometheus.Gauge
	packets       *prometheus.CounterVec
	bytes         *prometheus.CounterVec
	authFailures  *prometheus.CounterVec
	rejected      *prometheus.CounterVec
	dropped       *prometheus.CounterVec
	permissionsNo prometheus.Counter

	// Resolved children, so the per-packet path does no label lookup.
	packetsTo, packetsFrom prometheus.Counter
	bytesTo, bytesFrom     prometheus.Counter
	droppedBandwidth       prometheus.Counter
	droppedPeer            prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "avs", "turn"
	m := &metrics{
		allocations: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "allocations_active",
			Help: "TURN allocations currently open.",
		}),
		packets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "relayed_packets_total",
			Help: "Datagrams relayed through TURN allocations, by direction.",
		}, []string{"direction"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "relayed_bytes_total",
			Help: "Payload bytes relayed through TURN allocations, by direction.",
		}, []string{"direction"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "auth_failures_total",
			Help: "Refused TURN authentications, by reason.",
		}, []string{"reason"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "allocations_rejected_total",
			Help: "Refused TURN allocations of authenticated clients, by reason.",
		}, []string{"reason"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "dropped_packets_total",
			Help: "Datagrams not relayed, by reason.",
		}, []string{"reason"}),
		permissionsNo: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "permissions_denied_total",
			Help: "CreatePermission, ChannelBind and Connect requests refused by the peer filter.",
		}),
	}
	for i, c := range m.collectors() {
		if err := reg.Register(c); err != nil {
			for _, done := range m.collectors()[:i] {
				reg.Unregister(done)
			}
			return nil, fmt.Errorf("turn: register metrics: %w", err)
		}
	}
	m.packetsTo, m.packetsFrom = m.packets.WithLabelValues(dirToPeer), m.packets.WithLabelValues(dirFromPeer)
	m.bytesTo, m.bytesFrom = m.bytes.WithLabelValues(dirToPeer), m.bytes.WithLabelValues(dirFromPeer)
	m.droppedBandwidth = m.dropped.WithLabelValues("bandwidth")
	m.droppedPeer = m.dropped.WithLabelValues("peer_denied")
	// Create every series up front so dashboards see zeros, not gaps.
	for _, r := range authReasons {
		m.authFailures.WithLabelValues(r)
	}
	for _, r := range []string{rejectUserQuota, rejectTotalQuota, rejectNoPort, rejectTCPRelay} {
		m.rejected.WithLabelValues(r)
	}
	return m, nil
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{
		m.allocations, m.packets, m.bytes, m.authFailures, m.rejected, m.dropped, m.permissionsNo,
	}
}

// unregister undoes newMetrics when New fails, so that a retry can
// register again.
func (m *metrics) unregister(reg prometheus.Registerer) {
	for _, c := range m.collectors() {
		reg.Unregister(c)
	}
}
