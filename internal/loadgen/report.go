package loadgen

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"
)

// monitor samples the server's and the generator's CPU and memory and
// prints progress lines. Only the run's driving goroutine uses it.
type monitor struct {
	r            *Runner
	server, self Sampler
	srvErrLogged bool

	lastSrv, lastSelf  ProcessSample
	haveSrv            bool
	srvPct, selfPct    float64 // over the last interval
	maxSrvPct          float64
	maxRSS             int64
	holdSrv, holdSelf  [2]ProcessSample // at the end of the ramp and at the end
	holdMachine        [2]ProcessSample // all processes, from /proc/stat
	holdReceived       [2]int64         // packets the players had received
	haveHold           [2]bool
	prevSent, prevRecv int64
	prevAt             time.Time

	// The server's residence histogram at both ends of the hold, when its
	// /metrics is known.
	metricsURL    string
	client        *http.Client
	residence     [2]residenceHistogram
	haveResidence [2]bool
}

func newMonitor(r *Runner, server Sampler, metricsURL string, client *http.Client) *monitor {
	return &monitor{r: r, server: server, self: ProcSampler{}, metricsURL: metricsURL, client: client}
}

// sample takes a sample of both processes and works out the last
// interval's CPU use.
func (m *monitor) sample(ctx context.Context) {
	if s, err := m.self.Sample(ctx); err == nil {
		if !m.lastSelf.At.IsZero() {
			m.selfPct = cpuPercent(m.lastSelf, s)
		}
		m.lastSelf = s
	}
	if m.server == nil {
		return
	}
	s, err := m.server.Sample(ctx)
	if err != nil {
		if !m.srvErrLogged {
			m.srvErrLogged = true
			m.r.log.Warn("server sample failed; will keep trying", "source", m.server.Source(), "err", err)
		}
		return
	}
	if m.haveSrv {
		m.srvPct = cpuPercent(m.lastSrv, s)
		m.maxSrvPct = max(m.maxSrvPct, m.srvPct)
	}
	m.maxRSS = max(m.maxRSS, s.RSSBytes)
	m.lastSrv, m.haveSrv = s, true
}

func (m *monitor) holdStart(ctx context.Context) { m.hold(ctx, 0) }
func (m *monitor) holdEnd(ctx context.Context)   { m.hold(ctx, 1) }

func (m *monitor) hold(ctx context.Context, i int) {
	m.sample(ctx)
	m.holdReceived[i] = m.r.counters.PacketsRecv.Load()
	m.holdSelf[i] = m.lastSelf
	if cpu, err := machineCPU(); err == nil {
		m.holdMachine[i] = ProcessSample{At: time.Now(), CPU: cpu}
	}
	if m.haveSrv {
		m.holdSrv[i] = m.lastSrv
		m.haveHold[i] = true
	}
	if m.metricsURL != "" {
		h, err := scrapeResidence(ctx, m.client, m.metricsURL)
		if err != nil {
			m.r.log.Warn("server residence times not read", "err", err)
		}
		m.residence[i], m.haveResidence[i] = h, err == nil
	}
}

func (m *monitor) progress(elapsed time.Duration) {
	w := m.r.cfg.Progress
	if w == nil {
		return
	}
	c := &m.r.counters
	now := time.Now()
	sent, recv := c.PacketsSent.Load(), c.PacketsRecv.Load()
	var sentRate, recvRate float64
	if !m.prevAt.IsZero() {
		secs := now.Sub(m.prevAt).Seconds()
		sentRate, recvRate = float64(sent-m.prevSent)/secs, float64(recv-m.prevRecv)/secs
	}
	m.prevSent, m.prevRecv, m.prevAt = sent, recv, now
	m.r.mu.Lock()
	failed := m.r.failed
	m.r.mu.Unlock()
	srv := "server n/a"
	if m.haveSrv {
		srv = fmt.Sprintf("server cpu %5.1f%% rss %4.0f MB", m.srvPct, mb(m.lastSrv.RSSBytes))
	}
	fmt.Fprintf(w, "%6.0fs calls %d/%d failed %d | sent %6.0f pkt/s recv %6.0f pkt/s loss %.2f%% | latency p50 %.2f p99 %.2f ms | %s | generator cpu %5.1f%% late %d\n",
		elapsed.Seconds(), m.r.established.Load(), m.r.cfg.Calls, failed, sentRate, recvRate,
		m.r.lossPercent(), ms(m.r.latency.Percentile(50)), ms(m.r.latency.Percentile(99)), srv, m.selfPct,
		c.LateFrames.Load())
}

func mb(b int64) float64   { return float64(b) / (1 << 20) }
func ms(us uint64) float64 { return float64(us) / 1e3 }

func (r *Runner) lossPercent() float64 {
	var all LossCounters
	for _, k := range []*KindStats{&r.audioStats, &r.videoStats} {
		all.Expected.Add(k.Loss.Expected.Load())
		all.Received.Add(k.Loss.Received.Load())
	}
	return all.LossPercent()
}

// Quantiles summarise a distribution, in milliseconds.
type Quantiles struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
	N   int64   `json:"n"`
}

func histQuantiles(h *Histogram) Quantiles {
	return Quantiles{P50: ms(h.Percentile(50)), P99: ms(h.Percentile(99)), Max: ms(h.Max()), N: int64(h.Count())}
}

// Report is a run's result. Its JSON form is what docs/BENCHMARKS.md
// records.
type Report struct {
	Date         string  `json:"date"`
	Server       string  `json:"server"`
	Codec        string  `json:"codec"`
	BitrateKbps  int     `json:"bitrate_kbps"`
	VoiceOnly    bool    `json:"voice_only"`
	Simulcast    bool    `json:"simulcast"`
	RampS        float64 `json:"ramp_s"`
	DurationS    float64 `json:"duration_s"`
	ElapsedS     float64 `json:"elapsed_s"`
	CallsTarget  int     `json:"calls_target"`
	CallsUp      int     `json:"calls_up"`
	CallsFailed  int     `json:"calls_failed"`
	CallsDropped int     `json:"calls_dropped"`

	SetupMs Quantiles `json:"setup_ms"`

	ServerCPUSource string  `json:"server_cpu_source,omitempty"`
	ServerCPUPct    float64 `json:"server_cpu_pct"`
	ServerCPUPctMax float64 `json:"server_cpu_pct_max"`
	// ServerCPUPerPacketUs is the server's CPU time during the hold divided
	// by the packets the players received in it: what one forwarded packet
	// costs. HoldPacketsPerSec is that packet rate.
	ServerCPUPerPacketUs float64 `json:"server_cpu_us_per_packet"`
	HoldPacketsPerSec    float64 `json:"hold_packets_per_s"`
	ServerRSSMB          float64 `json:"server_rss_mb_max"`
	// ServerResidenceMs is the server's own share of the latency during
	// the hold, from its histogram of fast-path packets' time inside it
	// (with -metrics-url).
	ServerResidenceMs *ResidenceQuantiles `json:"server_residence_ms,omitempty"`
	GeneratorCPUPct   float64             `json:"generator_cpu_pct"`
	// MachineCPUPct is every process on the machine, 100 per busy core; if
	// it is well above server plus generator, something else was running.
	MachineCPUPct float64 `json:"machine_cpu_pct"`

	PacketsSent     int64   `json:"packets_sent"`
	PacketsReceived int64   `json:"packets_received"`
	BytesSent       int64   `json:"bytes_sent"`
	BytesReceived   int64   `json:"bytes_received"`
	LossPct         float64 `json:"loss_pct"`
	AudioLossPct    float64 `json:"audio_loss_pct"`
	VideoLossPct    float64 `json:"video_loss_pct"`
	Duplicates      int64   `json:"duplicates"`

	LatencyMs      Quantiles `json:"latency_ms"`
	AudioLatencyMs Quantiles `json:"audio_latency_ms"`
	VideoLatencyMs Quantiles `json:"video_latency_ms"`
	Unmatched      int64     `json:"unmatched_payloads"`

	NACKsToPublishers int64 `json:"nacks_to_publishers"`
	NACKedPackets     int64 `json:"nacked_packets"`
	PLIsToPublishers  int64 `json:"plis_to_publishers"`
	NACKsFromPlayers  int64 `json:"nacks_from_players"`
	PLIsFromPlayers   int64 `json:"plis_from_players"`
	LateFrames        int64 `json:"generator_late_frames"`
	WriteErrors       int64 `json:"write_errors"`

	// Warnings say why the figures may not describe the server alone.
	Warnings []string `json:"warnings,omitempty"`
}

// otherLoadMargin is how much CPU (percent of one core) other processes may
// use during a run before the report says the machine was not quiet.
const otherLoadMargin = 15

func (rep *Report) addWarnings() {
	if rep.LateFrames > 0 {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf(
			"the generator sent %d frames over %v late: it was short of CPU, so loss and latency include its own delays",
			rep.LateFrames, maxLag))
	}
	if rep.ServerCPUSource != "" && strings.HasPrefix(rep.ServerCPUSource, "/proc/") && rep.MachineCPUPct > 0 {
		if other := rep.MachineCPUPct - rep.ServerCPUPct - rep.GeneratorCPUPct; other > otherLoadMargin {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf(
				"other processes used %.0f%% of a core during the hold: the machine was not quiet", other))
		}
	}
	if rep.CallsFailed > 0 || rep.CallsDropped > 0 {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("%d calls failed to come up and %d dropped", rep.CallsFailed, rep.CallsDropped))
	}
}

func (r *Runner) report(m *monitor, up int, elapsed time.Duration) *Report {
	c := &r.counters
	r.mu.Lock()
	setups := make([]float64, len(r.setups))
	for i, d := range r.setups {
		setups[i] = float64(d.Microseconds()) / 1e3
	}
	failed, established := r.failed, len(r.calls)
	r.mu.Unlock()
	rep := &Report{
		Date: time.Now().UTC().Format(time.RFC3339), Server: r.cfg.ServerURL,
		Codec: r.cfg.Codec, BitrateKbps: r.cfg.Bitrate, VoiceOnly: r.cfg.VoiceOnly, Simulcast: r.cfg.Simulcast,
		RampS: r.cfg.Ramp.Seconds(), DurationS: r.cfg.Duration.Seconds(), ElapsedS: elapsed.Seconds(),
		CallsTarget: r.cfg.Calls, CallsUp: up, CallsFailed: failed, CallsDropped: established - up,
		SetupMs: Quantiles{P50: Percentile(setups, 50), P99: Percentile(setups, 99), N: int64(len(setups))},

		PacketsSent: c.PacketsSent.Load(), PacketsReceived: c.PacketsRecv.Load(),
		BytesSent: c.BytesSent.Load(), BytesReceived: c.BytesRecv.Load(),
		LossPct: r.lossPercent(), AudioLossPct: r.audioStats.Loss.LossPercent(),
		VideoLossPct: r.videoStats.Loss.LossPercent(),
		Duplicates:   r.audioStats.Loss.Duplicates.Load() + r.videoStats.Loss.Duplicates.Load(),
		LatencyMs:    histQuantiles(&r.latency), AudioLatencyMs: histQuantiles(&r.audioStats.Latency),
		VideoLatencyMs: histQuantiles(&r.videoStats.Latency), Unmatched: c.Unmatched.Load(),

		NACKsToPublishers: c.NACKsToPublishers.Load(), NACKedPackets: c.NACKedSeqs.Load(),
		PLIsToPublishers: c.PLIsToPublishers.Load(), NACKsFromPlayers: c.NACKsFromPlayers.Load(),
		PLIsFromPlayers: c.PLIsFromPlayers.Load(), LateFrames: c.LateFrames.Load(), WriteErrors: c.WriteErrors.Load(),
	}
	if len(setups) > 0 {
		rep.SetupMs.Max = setups[len(setups)-1] // Percentile sorted them
	}
	if m.server != nil {
		rep.ServerCPUSource = m.server.Source()
		if m.haveHold[0] && m.haveHold[1] {
			rep.ServerCPUPct = cpuPercent(m.holdSrv[0], m.holdSrv[1])
			rep.ServerCPUPerPacketUs, rep.HoldPacketsPerSec = perPacket(m.holdSrv[0], m.holdSrv[1], m.holdReceived[1]-m.holdReceived[0])
		}
		rep.ServerCPUPctMax = m.maxSrvPct
		rep.ServerRSSMB = mb(m.maxRSS)
	}
	if m.haveResidence[0] && m.haveResidence[1] {
		if q, ok := residenceBetween(m.residence[0], m.residence[1]); ok {
			rep.ServerResidenceMs = &q
		}
	}
	if !m.holdSelf[0].At.IsZero() {
		rep.GeneratorCPUPct = cpuPercent(m.holdSelf[0], m.holdSelf[1])
	}
	if !m.holdMachine[0].At.IsZero() && !m.holdMachine[1].At.IsZero() {
		rep.MachineCPUPct = cpuPercent(m.holdMachine[0], m.holdMachine[1])
	}
	rep.addWarnings()
	return rep
}

// WriteTable prints the report for people.
func (rep *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	q := func(x Quantiles) string { return fmt.Sprintf("%.2f / %.2f / %.2f ms (n=%d)", x.P50, x.P99, x.Max, x.N) }
	rows := [][2]string{
		{"calls up / target", fmt.Sprintf("%d / %d (failed %d, dropped %d)", rep.CallsUp, rep.CallsTarget, rep.CallsFailed, rep.CallsDropped)},
		{"media", fmt.Sprintf("%s %d kbit/s, voice only %v, simulcast %v", rep.Codec, rep.BitrateKbps, rep.VoiceOnly, rep.Simulcast)},
		{"setup p50 / p99 / max", q(rep.SetupMs)},
		{"server CPU avg / max", fmt.Sprintf("%.1f%% / %.1f%% of one core (%s)", rep.ServerCPUPct, rep.ServerCPUPctMax, orNA(rep.ServerCPUSource))},
		{"server CPU per forwarded packet", fmt.Sprintf("%.1f µs (%.0f packets/s during the hold)", rep.ServerCPUPerPacketUs, rep.HoldPacketsPerSec)},
		{"server RSS max", fmt.Sprintf("%.1f MB", rep.ServerRSSMB)},
		{"in the server p50 / p99 / p99.9", residenceRow(rep.ServerResidenceMs)},
		{"generator CPU avg", fmt.Sprintf("%.1f%% of one core", rep.GeneratorCPUPct)},
		{"machine CPU avg (all processes)", fmt.Sprintf("%.1f%% (100%% per core)", rep.MachineCPUPct)},
		{"packets sent / received", fmt.Sprintf("%d / %d", rep.PacketsSent, rep.PacketsReceived)},
		{"receive loss all / audio / video", fmt.Sprintf("%.3f%% / %.3f%% / %.3f%% (duplicates %d)", rep.LossPct, rep.AudioLossPct, rep.VideoLossPct, rep.Duplicates)},
		{"latency p50 / p99 / max", q(rep.LatencyMs)},
		{"  audio", q(rep.AudioLatencyMs)},
		{"  video", q(rep.VideoLatencyMs)},
		{"NACKs / PLIs to publishers", fmt.Sprintf("%d (%d packets) / %d", rep.NACKsToPublishers, rep.NACKedPackets, rep.PLIsToPublishers)},
		{"NACKs / PLIs from players", fmt.Sprintf("%d / %d", rep.NACKsFromPlayers, rep.PLIsFromPlayers)},
		{"generator late frames / write errors", fmt.Sprintf("%d / %d", rep.LateFrames, rep.WriteErrors)},
	}
	for _, warning := range rep.Warnings {
		rows = append(rows, [2]string{"WARNING", warning})
	}
	for _, row := range rows {
		fmt.Fprintf(tw, "%s\t%s\n", row[0], row[1])
	}
	return tw.Flush()
}

// perPacket divides the CPU time between two samples by the packets
// forwarded between them, and gives their rate too.
func perPacket(from, to ProcessSample, packets int64) (us, perSec float64) {
	wall := to.At.Sub(from.At)
	if packets <= 0 || wall <= 0 {
		return 0, 0
	}
	return float64((to.CPU - from.CPU).Microseconds()) / float64(packets), float64(packets) / wall.Seconds()
}

// residenceRow prints bucket bounds as such: the server's histogram says
// "at most", not an exact quantile.
func residenceRow(q *ResidenceQuantiles) string {
	if q == nil {
		return "n/a (needs -metrics-url)"
	}
	b := func(ms float64) string {
		if ms < 0 {
			return "over 50"
		}
		return fmt.Sprintf("≤ %g", ms)
	}
	return fmt.Sprintf("%s / %s / %s ms (bucket bounds, n=%d)", b(q.P50), b(q.P99), b(q.P999), q.N)
}

func orNA(s string) string {
	if s == "" {
		return "n/a"
	}
	return s
}

// WriteJSON prints the report as one line of JSON.
func (rep *Report) WriteJSON(w io.Writer) error {
	b, err := json.Marshal(rep)
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}
