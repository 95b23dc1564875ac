package signaling

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	connections prometheus.Gauge
	sessions    prometheus.Gauge
	messages    *prometheus.CounterVec // by direction and type
	errors      *prometheus.CounterVec // by code
	closes      *prometheus.CounterVec // by close code
	resumes     *prometheus.CounterVec // by result
	rejected    *prometheus.CounterVec // refused upgrades by reason
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "avs", Subsystem: "signaling", Name: "connections",
			Help: "Open signaling WebSocket connections.",
		}),
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "avs", Subsystem: "signaling", Name: "sessions",
			Help: "Authenticated signaling sessions, connected or within their resume grace.",
		}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "avs", Subsystem: "signaling", Name: "messages_total",
			Help: "Signaling messages by direction (in, out) and type.",
		}, []string{"direction", "type"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "avs", Subsystem: "signaling", Name: "errors_total",
			Help: "Error replies sent to clients, by code.",
		}, []string{"code"}),
		closes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "avs", Subsystem: "signaling", Name: "closes_total",
			Help: "Connections closed by the server, by WebSocket close code.",
		}, []string{"code"}),
		resumes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "avs", Subsystem: "signaling", Name: "resumes_total",
			Help: "Session resume attempts by result (ok, failed).",
		}, []string{"result"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "avs", Subsystem: "signaling", Name: "rejected_connections_total",
			Help: "Refused WebSocket upgrades by reason.",
		}, []string{"reason"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.connections, m.sessions, m.messages, m.errors, m.closes, m.resumes, m.rejected} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("signaling metrics: %w", err)
		}
	}
	return m, nil
}
