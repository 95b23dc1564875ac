package loadgen

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Config is what one load run does.
type Config struct {
	ServerURL  string        // base URL of the server's WHIP/WHEP endpoints
	Token      string        // bearer token for WHIP/WHEP
	MetricsURL string        // the server's /metrics: CPU and RSS when ServerPID is 0, and its residence times
	ServerPID  int           // a local server's process ID, read from /proc
	Calls      int           // concurrent 1:1 calls
	Ramp       time.Duration // time over which calls are placed, evenly
	Duration   time.Duration // time all calls are held after the ramp
	Interval   time.Duration // between progress lines
	Codec      string        // "vp8" or "h264"
	Bitrate    int           // video kbit/s (top layer with simulcast)
	VoiceOnly  bool
	Simulcast  bool // three VP8 layers: f (Bitrate), h and q
	NACK       bool // players send NACKs for missing packets
	TWCC       bool // transport-wide congestion control feedback both ways, as browsers do
	MediaDir   string
	Dialer     Dialer       // nil means WHIP/WHEP at ServerURL
	Log        *slog.Logger // nil means discard
	Progress   io.Writer    // progress lines; nil means none
}

func (c *Config) validate() error {
	switch {
	case c.Calls < 1:
		return errors.New("calls must be at least 1")
	case c.Codec != "vp8" && c.Codec != "h264":
		return fmt.Errorf("codec %q: want vp8 or h264", c.Codec)
	case c.Simulcast && c.Codec != "vp8":
		return errors.New("simulcast is only available with vp8")
	case c.Bitrate < 50 || c.Bitrate > 10000:
		return fmt.Errorf("bitrate %d kbit/s out of range 50..10000", c.Bitrate)
	case c.Duration <= 0 || c.Ramp < 0:
		return errors.New("duration must be positive and ramp not negative")
	}
	if c.Interval <= 0 {
		c.Interval = 5 * time.Second
	}
	return nil
}

// Runner holds one run's shared state: media, peers, pacer and totals.
type Runner struct {
	cfg    Config
	log    *slog.Logger
	epoch  time.Time // zero of the clock that send and receive times share
	seed   maphash.Seed
	audio  *Clip
	video  []layer
	peers  *peerFactory
	dialer Dialer
	pacer  *Pacer

	counters   Counters
	audioStats KindStats
	videoStats KindStats
	latency    Histogram

	mu          sync.Mutex
	calls       []*call // established
	setups      []time.Duration
	failed      int
	established atomic.Int64
}

// maxLoggedFailures keeps a run against a broken server from flooding the
// log: the rest are only counted.
const maxLoggedFailures = 5

// Run places cfg.Calls calls, holds them, hangs up and reports. Cancelling
// ctx ends the run early; the report then covers what ran.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Runner{cfg: cfg, log: log, epoch: time.Now(), seed: maphash.MakeSeed()}
	var err error
	if r.audio, r.video, err = loadMedia(ctx, &cfg, r.seed); err != nil {
		return nil, err
	}
	if r.peers, err = newPeerFactory(cfg.ServerURL, cfg.Codec, cfg.Simulcast, cfg.NACK, cfg.TWCC, &r.counters, log); err != nil {
		return nil, err
	}
	// Its own transport, so that the keep-alive connections it leaves
	// (to the WHIP endpoint and /metrics) end with the run.
	transport := http.DefaultTransport.(*http.Transport).Clone()
	defer transport.CloseIdleConnections()
	client := &http.Client{Timeout: 15 * time.Second, Transport: transport}
	r.dialer = cfg.Dialer
	if r.dialer == nil {
		base, err := url.Parse(cfg.ServerURL)
		if err != nil {
			return nil, fmt.Errorf("server URL: %w", err)
		}
		r.dialer = &WHIPDialer{Base: base, Token: cfg.Token, Client: client}
	}
	r.pacer = NewPacer(runtime.GOMAXPROCS(0), &r.counters.LateFrames)
	pacerCtx, stopPacer := context.WithCancel(context.WithoutCancel(ctx))
	var pacerDone sync.WaitGroup
	pacerDone.Go(func() { r.pacer.Run(pacerCtx) })
	defer func() { stopPacer(); pacerDone.Wait() }()

	mon := newMonitor(r, serverSampler(cfg, client), cfg.MetricsURL, client)
	return r.drive(ctx, mon), nil
}

func serverSampler(cfg Config, client *http.Client) Sampler {
	switch {
	case cfg.ServerPID > 0:
		return ProcSampler{PID: cfg.ServerPID}
	case cfg.MetricsURL != "":
		return MetricsSampler{URL: cfg.MetricsURL, Client: client}
	}
	return nil
}

// drive runs the ramp, the hold and the hang-up, printing progress.
func (r *Runner) drive(ctx context.Context, mon *monitor) *Report {
	start := time.Now()
	callsCtx, endCalls := context.WithCancel(ctx)
	defer endCalls()
	var callsDone sync.WaitGroup
	callsDone.Go(func() { r.placeCalls(callsCtx, start, &callsDone) })

	mon.sample(ctx)
	mon.prevAt = start
	ticker := time.NewTicker(r.cfg.Interval)
	defer ticker.Stop()
	rampEnd := time.NewTimer(r.cfg.Ramp)
	defer rampEnd.Stop()
	end := time.NewTimer(r.cfg.Ramp + r.cfg.Duration)
	defer end.Stop()
loop:
	for {
		select {
		case now := <-ticker.C:
			mon.sample(ctx)
			mon.progress(now.Sub(start))
		case <-rampEnd.C:
			mon.holdStart(ctx)
		case <-end.C:
			break loop
		case <-ctx.Done():
			break loop
		}
	}
	mon.holdEnd(ctx)
	up := r.callsUp()
	r.log.Info("hanging up", "calls", r.established.Load())
	endCalls()
	callsDone.Wait()
	return r.report(mon, up, time.Since(start))
}

// placeCalls starts the calls evenly over the ramp.
func (r *Runner) placeCalls(ctx context.Context, start time.Time, wg *sync.WaitGroup) {
	n := r.cfg.Calls
	for i := range n {
		at := start.Add(r.cfg.Ramp * time.Duration(i) / time.Duration(n))
		if d := time.Until(at); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		wg.Go(func() { r.runCall(ctx, i) })
	}
}

func (r *Runner) runCall(ctx context.Context, i int) {
	c := newCall(r, i)
	if err := c.establish(ctx); err != nil {
		c.hangup()
		if ctx.Err() != nil {
			return // the run ended while the call was being placed
		}
		r.mu.Lock()
		r.failed++
		n := r.failed
		r.mu.Unlock()
		if n <= maxLoggedFailures {
			r.log.Warn("call failed", "call", i, "err", err)
		}
		return
	}
	r.mu.Lock()
	r.calls = append(r.calls, c)
	r.setups = append(r.setups, c.setup)
	r.mu.Unlock()
	r.established.Add(1)
	r.log.Debug("call up", "call", i, "setup", c.setup)
	<-ctx.Done()
	c.hangup()
}

// callsUp counts established calls whose peers are all still connected.
func (r *Runner) callsUp() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.calls {
		if c.connected() {
			n++
		}
	}
	return n
}
