package callcenter

import (
	"fmt"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	queueLen  *prometheus.GaugeVec
	queueWait *prometheus.HistogramVec
	calls     *prometheus.CounterVec
	agents    *prometheus.GaugeVec
	active    prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		queueLen: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "avs_callcenter_queue_length",
			Help: "Customers waiting in the queue, by tenant id and agent group id (0 = any agent, agent = a named agent).",
		}, []string{"tenant", "group"}),
		queueWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "avs_callcenter_queue_wait_seconds",
			Help:    "Time customers spent in the queue until ringing, abandon or timeout.",
			Buckets: []float64{1, 5, 10, 20, 30, 60, 120, 300, 600, 1200},
		}, []string{"tenant", "group"}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "avs_callcenter_calls_total",
			Help: "Ended calls by resultCode (1 abandoned, 2 queue timeout, 3 customer hung up, 4 answered, 5 not answered).",
		}, []string{"result_code"}),
		agents: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "avs_callcenter_agents",
			Help: "Logged-in agents by status (online, away, busy, offline).",
		}, []string{"status"}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "avs_callcenter_active_calls",
			Help: "Calls queued, ringing or connected.",
		}),
	}
	for c := 1; c <= 5; c++ {
		m.calls.WithLabelValues(strconv.Itoa(c))
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.queueLen, m.queueWait, m.calls, m.agents, m.active} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("callcenter: register metrics: %w", err)
		}
	}
	return m, nil
}
