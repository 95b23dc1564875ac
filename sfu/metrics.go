package sfu

import (
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics is the SFU's Prometheus collector. Per-packet counts live in the
// tracks themselves (no shared cache line on the hot path) and are summed
// at scrape time; what departed tracks counted is kept in retired.
type metrics struct {
	sfu *SFU

	participantsJoined, participantsLeft atomic.Uint64
	plisReceived, plisSent               atomic.Uint64
	nacksReceived, nacksSent             atomic.Uint64
	retransmits                          atomic.Uint64
	malformedRTP, malformedRTCP          atomic.Uint64

	retiredPacketsIn, retiredBytesIn   atomic.Uint64
	retiredPacketsOut, retiredBytesOut atomic.Uint64

	loss, rtt, jitter prometheus.Histogram

	descRooms, descParticipants, descTracks *prometheus.Desc
	descPackets, descBytes                  *prometheus.Desc
	descNACKs, descPLIs, descRetransmits    *prometheus.Desc
	descMalformed                           *prometheus.Desc
	descFastPath, descResidence             *prometheus.Desc
}

func newMetrics(s *SFU) *metrics {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("avs_sfu_"+name, help, labels, nil)
	}
	return &metrics{
		sfu: s,
		loss: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "avs_sfu_loss_ratio", Help: "Fraction of packets lost, from receiver reports (subscribers about us, us about publishers).",
			Buckets: []float64{0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1},
		}),
		rtt: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "avs_sfu_rtt_seconds", Help: "Round-trip time to subscribers, from their receiver reports.",
			Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6},
		}),
		jitter: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "avs_sfu_jitter_seconds", Help: "Interarrival jitter, from receiver reports in both directions.",
			Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2},
		}),
		descRooms:        d("rooms", "Open rooms."),
		descParticipants: d("participants", "Participants in rooms."),
		descTracks:       d("tracks", "Published tracks.", "kind"),
		descPackets:      d("packets_total", "RTP packets received from publishers (in) and sent to subscribers (out).", "direction"),
		descBytes:        d("bytes_total", "RTP bytes received from publishers (in) and sent to subscribers (out).", "direction"),
		descNACKs:        d("nacks_total", "Sequence numbers NACKed by subscribers (received) and by us to publishers (sent).", "direction"),
		descPLIs:         d("plis_total", "Keyframe requests from subscribers (received) and to publishers after throttling (sent).", "direction"),
		descRetransmits:  d("retransmits_total", "Packets resent from the packet cache in answer to NACKs."),
		descMalformed:    d("malformed_total", "Malformed packets dropped.", "protocol"),
		descResidence: d("fast_path_residence_seconds", "Time publishers' RTP packets on the fast path spent in the server: "+
			"from the kernel's arrival stamp on the media socket to the end of their forwarding (Linux)."),
		descFastPath: d("fast_path_packets_total", "Publishers' RTP packets on the fast path: decrypted and forwarded by the socket's reader (delivered), "+
			"failing authentication there and left to pion (fallback), or dropped as replays or malformed (dropped); "+
			"and datagrams for pion dropped because its reader fell behind the socket readers (overflow).", "result"),
	}
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.descRooms, m.descParticipants, m.descTracks, m.descPackets, m.descBytes,
		m.descNACKs, m.descPLIs, m.descRetransmits, m.descMalformed, m.descFastPath, m.descResidence} {
		ch <- d
	}
	m.loss.Describe(ch)
	m.rtt.Describe(ch)
	m.jitter.Describe(ch)
}

// trafficTotals sums the live counters of a participant's tracks.
type trafficTotals struct{ packetsIn, bytesIn, packetsOut, bytesOut uint64 }

func (p *Participant) traffic() (t trafficTotals, audio, video int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pub := range p.publications {
		if pub.kind == webrtc.RTPCodecTypeAudio {
			audio++
		} else {
			video++
		}
		for q := range maxLayers {
			if l := pub.layer(q); l != nil {
				t.packetsIn += l.packets.Load()
				t.bytesIn += l.bytes.Load()
			}
		}
	}
	add := func(dt *DownTrack) {
		t.packetsOut += dt.packets.Load() + dt.nacked.Load()
		t.bytesOut += dt.bytes.Load()
	}
	for _, dt := range p.downTracks {
		add(dt)
	}
	for _, dt := range p.slots {
		add(dt)
	}
	return t, audio, video
}

// retire moves a departing participant's counts into the totals. Layers
// that ended earlier took their counts with them: a small undercount that
// keeps the hot path free of bookkeeping.
func (s *SFU) retire(p *Participant) {
	t, _, _ := p.traffic()
	s.metrics.retiredPacketsIn.Add(t.packetsIn)
	s.metrics.retiredBytesIn.Add(t.bytesIn)
	s.metrics.retiredPacketsOut.Add(t.packetsOut)
	s.metrics.retiredBytesOut.Add(t.bytesOut)
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	s := m.sfu
	s.mu.Lock()
	rooms := make([]*Room, 0, len(s.rooms))
	for _, r := range s.rooms {
		rooms = append(rooms, r)
	}
	s.mu.Unlock()
	total := trafficTotals{
		packetsIn: m.retiredPacketsIn.Load(), bytesIn: m.retiredBytesIn.Load(),
		packetsOut: m.retiredPacketsOut.Load(), bytesOut: m.retiredBytesOut.Load(),
	}
	var participants, audio, video int
	for _, r := range rooms {
		r.mu.Lock()
		ps := r.othersLocked(nil)
		r.mu.Unlock()
		participants += len(ps)
		for _, p := range ps {
			t, a, v := p.traffic()
			total.packetsIn += t.packetsIn
			total.bytesIn += t.bytesIn
			total.packetsOut += t.packetsOut
			total.bytesOut += t.bytesOut
			audio += a
			video += v
		}
	}
	g := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	c := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	g(m.descRooms, float64(len(rooms)))
	g(m.descParticipants, float64(participants))
	g(m.descTracks, float64(audio), "audio")
	g(m.descTracks, float64(video), "video")
	c(m.descPackets, total.packetsIn, "in")
	c(m.descPackets, total.packetsOut, "out")
	c(m.descBytes, total.bytesIn, "in")
	c(m.descBytes, total.bytesOut, "out")
	c(m.descNACKs, m.nacksReceived.Load(), "received")
	c(m.descNACKs, m.nacksSent.Load(), "sent")
	c(m.descPLIs, m.plisReceived.Load(), "received")
	c(m.descPLIs, m.plisSent.Load(), "sent")
	c(m.descRetransmits, m.retransmits.Load())
	c(m.descMalformed, m.malformedRTP.Load(), "rtp")
	c(m.descMalformed, m.malformedRTCP.Load(), "rtcp")
	if fast := m.sfu.apis.fast; fast != nil {
		st := fast.Stats()
		c(m.descFastPath, st.Direct, "delivered")
		c(m.descFastPath, st.Fallback, "fallback")
		c(m.descFastPath, st.Dropped, "dropped")
		c(m.descFastPath, st.Overflow, "overflow")
		res := st.Residence
		buckets := make(map[float64]uint64, len(res.Bounds))
		var cumulative uint64
		for i, bound := range res.Bounds {
			cumulative += res.Counts[i]
			buckets[bound.Seconds()] = cumulative
		}
		ch <- prometheus.MustNewConstHistogram(m.descResidence, res.Count, res.Sum.Seconds(), buckets)
	}
	m.loss.Collect(ch)
	m.rtt.Collect(ch)
	m.jitter.Collect(ch)
}

// observeReport records a subscriber's receiver report about one of our
// tracks: its loss, its jitter, and the round trip to it (RFC 3550 §6.4.1).
func (m *metrics) observeReport(dt *DownTrack, r rtcp.ReceptionReport, now time.Time) {
	m.loss.Observe(float64(r.FractionLost) / 256)
	dt.lastLoss.Store(uint32(r.FractionLost))
	if dt.clockRate > 0 {
		m.jitter.Observe(float64(r.Jitter) / float64(dt.clockRate))
		dt.lastJit.Store(r.Jitter)
	}
	if r.LastSenderReport == 0 || r.LastSenderReport != dt.srNTPMid.Load() {
		return
	}
	sent := time.Unix(0, dt.srSentAt.Load())
	rtt := now.Sub(sent) - time.Duration(float64(r.Delay)/65536*float64(time.Second))
	if rtt >= 0 {
		m.rtt.Observe(rtt.Seconds())
		dt.lastRTT.Store(int64(rtt))
	}
}

// receptionReports builds our receiver reports about a publication's layers
// and records the loss and jitter we see from the publisher.
func (m *metrics) receptionReports(pub *Publication, now time.Time) []rtcp.ReceptionReport {
	var out []rtcp.ReceptionReport
	for q := range maxLayers {
		l := pub.layer(q)
		if l == nil {
			continue
		}
		rr, snap, ok := l.stats.Report(l.ssrc, now)
		if !ok {
			continue
		}
		m.loss.Observe(snap.FractionLost)
		m.jitter.Observe(snap.Jitter)
		out = append(out, rr)
	}
	return out
}
