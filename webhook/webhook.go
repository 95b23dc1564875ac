// Package webhook delivers call records to the integrator's backend.
//
// The call center writes each delivery into the store's outbox in the same
// transaction as the call's state change (see store.UpdateCall); the
// Deliverer reads the outbox and POSTs the bodies, signed with the tenant's
// webhook secret (HeaderSignature, HeaderTimestamp) and carrying a stable
// delivery id (HeaderDelivery). A failed POST is retried with exponential
// backoff; after MaxAttempts the delivery is dead: it stays in the store for
// the admin API (store.ListDeliveries, store.RetryDelivery) and is counted in
// avs_webhook_deliveries_total{outcome="dead"}.
//
// Delivery is at least once: a POST interrupted by Close is not counted and
// is sent again after a restart, with the same delivery id.
package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/avs/avs/store"
)

// Config is the [webhook] section of config.toml.
type Config struct {
	// Timeout bounds one POST, response included.
	Timeout time.Duration `toml:"timeout"`
	// MaxAttempts is how many POSTs are tried before the delivery is dead.
	MaxAttempts int `toml:"max_attempts"`
	// BackoffBase is the wait after the first failure; it doubles each time.
	BackoffBase time.Duration `toml:"backoff_base"`
	// BackoffMax caps the wait between attempts.
	BackoffMax time.Duration `toml:"backoff_max"`
	// PollInterval is how often the outbox is read when nothing wakes the
	// deliverer (a safety net; new deliveries wake it at once).
	PollInterval time.Duration `toml:"poll_interval"`
	// Concurrency is how many POSTs run at once.
	Concurrency int `toml:"concurrency"`
	// Retention is how long delivered rows are kept; 0 keeps them forever.
	Retention time.Duration `toml:"retention"`
}

// DefaultConfig returns the defaults documented in config.toml.
func DefaultConfig() Config {
	return Config{
		Timeout:      10 * time.Second,
		MaxAttempts:  8,
		BackoffBase:  5 * time.Second,
		BackoffMax:   30 * time.Minute,
		PollInterval: 5 * time.Second,
		Concurrency:  4,
		Retention:    30 * 24 * time.Hour,
	}
}

// Validate reports the first invalid key.
func (c Config) Validate() error {
	switch {
	case c.Timeout <= 0:
		return errors.New("webhook.timeout: must be > 0")
	case c.MaxAttempts < 1:
		return errors.New("webhook.max_attempts: must be >= 1")
	case c.BackoffBase <= 0:
		return errors.New("webhook.backoff_base: must be > 0")
	case c.BackoffMax < c.BackoffBase:
		return errors.New("webhook.backoff_max: must be >= backoff_base")
	case c.PollInterval <= 0:
		return errors.New("webhook.poll_interval: must be > 0")
	case c.Concurrency < 1:
		return errors.New("webhook.concurrency: must be >= 1")
	case c.Retention < 0:
		return errors.New("webhook.retention: must be >= 0")
	}
	return nil
}

// Params are the Deliverer's dependencies.
type Params struct {
	Config     Config
	Store      *store.Store
	Logger     *slog.Logger
	Registerer prometheus.Registerer // nil = no metrics
	Client     *http.Client          // nil = a client with Config.Timeout
	Now        func() time.Time      // nil = time.Now
}

// Deliverer POSTs the outbox. Create it with New, then Start; Close stops it.
type Deliverer struct {
	cfg    Config
	st     *store.Store
	log    *slog.Logger
	client *http.Client
	now    func() time.Time

	wake    chan struct{}
	cancel  context.CancelFunc
	done    chan struct{}
	started bool
	mu      sync.Mutex

	outcomes *prometheus.CounterVec
	latency  prometheus.Histogram
	outbox   *prometheus.GaugeVec
}

// New checks p and builds a Deliverer; it does not start it.
func New(p Params) (*Deliverer, error) {
	if err := p.Config.Validate(); err != nil {
		return nil, err
	}
	if p.Store == nil {
		return nil, errors.New("webhook: Store is required")
	}
	d := &Deliverer{
		cfg: p.Config, st: p.Store, log: p.Logger, client: p.Client, now: p.Now,
		wake: make(chan struct{}, 1), done: make(chan struct{}),
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if d.client == nil {
		d.client = &http.Client{
			Timeout: p.Config.Timeout,
			// A redirected POST would arrive as a GET without the body;
			// a 3xx is reported as a failure instead.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if d.now == nil {
		d.now = time.Now
	}
	d.outcomes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "avs_webhook_deliveries_total",
		Help: "Webhook POST attempts by outcome: delivered, retry (failed, will retry), dead (failed for the last time).",
	}, []string{"outcome"})
	d.latency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "avs_webhook_delivery_duration_seconds",
		Help:    "Duration of webhook POSTs, failures included.",
		Buckets: prometheus.ExponentialBuckets(0.01, 2, 12),
	})
	d.outbox = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "avs_webhook_outbox",
		Help: "Webhook deliveries in the outbox by status (pending, delivered, dead).",
	}, []string{"status"})
	for _, o := range []string{"delivered", "retry", "dead"} {
		d.outcomes.WithLabelValues(o)
	}
	if p.Registerer != nil {
		for _, c := range []prometheus.Collector{d.outcomes, d.latency, d.outbox} {
			if err := p.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("webhook: register metrics: %w", err)
			}
		}
	}
	return d, nil
}

// Start launches the delivery loop. It returns at once.
func (d *Deliverer) Start() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.started {
		return
	}
	d.started = true
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	go d.loop(ctx)
}

// Close stops the loop and waits for POSTs in flight to be abandoned.
func (d *Deliverer) Close() {
	d.mu.Lock()
	started := d.started
	if d.cancel != nil {
		d.cancel()
	}
	d.mu.Unlock()
	if started {
		<-d.done
	}
}

// Notify wakes the loop because a delivery was enqueued. It never blocks.
func (d *Deliverer) Notify() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *Deliverer) loop(ctx context.Context) {
	defer close(d.done)
	timer := time.NewTimer(0)
	defer timer.Stop()
	var lastPrune time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-d.wake:
		}
		d.drain(ctx)
		if ctx.Err() != nil {
			return
		}
		if d.cfg.Retention > 0 && time.Since(lastPrune) > time.Hour {
			lastPrune = time.Now()
			if _, err := d.st.PruneDeliveries(ctx, d.now().Add(-d.cfg.Retention)); err != nil && ctx.Err() == nil {
				d.log.Warn("webhook outbox prune failed", "err", err)
			}
		}
		timer.Reset(d.untilNext(ctx))
	}
}

// untilNext is how long to sleep: until the next due delivery, at most
// PollInterval.
func (d *Deliverer) untilNext(ctx context.Context) time.Duration {
	wait := d.cfg.PollInterval
	next, ok, err := d.st.NextDeliveryAt(ctx)
	if err != nil || !ok {
		return wait
	}
	return min(max(next.Sub(d.now()), time.Millisecond), wait)
}

// drain sends every due delivery, batch by batch.
func (d *Deliverer) drain(ctx context.Context) {
	const batch = 64
	for ctx.Err() == nil {
		due, err := d.st.DueDeliveries(ctx, d.now(), batch)
		if err != nil {
			if ctx.Err() == nil {
				d.log.Error("webhook outbox read failed", "err", err)
			}
			return
		}
		if len(due) == 0 {
			break
		}
		sem := make(chan struct{}, d.cfg.Concurrency)
		var wg sync.WaitGroup
		for _, dl := range due {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				d.deliver(ctx, dl)
			}()
		}
		wg.Wait()
		if len(due) < batch {
			break
		}
	}
	d.refreshGauge(ctx)
}

func (d *Deliverer) refreshGauge(ctx context.Context) {
	counts, err := d.st.CountDeliveries(ctx)
	if err != nil {
		return
	}
	for _, s := range []string{store.DeliveryPending, store.DeliveryDelivered, store.DeliveryDead} {
		d.outbox.WithLabelValues(s).Set(float64(counts[s]))
	}
}

// deliver makes one attempt and records its outcome.
func (d *Deliverer) deliver(ctx context.Context, dl *store.Delivery) {
	start := time.Now()
	code, err := d.post(ctx, dl)
	d.latency.Observe(time.Since(start).Seconds())
	if err != nil && ctx.Err() != nil {
		// Shutting down: the interrupted attempt does not count; it is sent
		// again after the restart. A success is still recorded below.
		return
	}
	now := d.now()
	a := store.DeliveryAttempt{StatusCode: code, At: now}
	log := d.log.With("delivery", dl.DeliveryID, "call", dl.CallID, "attempt", dl.Attempts+1)
	switch {
	case err == nil:
		a.Status = store.DeliveryDelivered
		d.outcomes.WithLabelValues("delivered").Inc()
		log.Debug("webhook delivered", "status", code)
	case dl.Attempts+1 >= d.cfg.MaxAttempts:
		a.Status, a.Error = store.DeliveryDead, err.Error()
		d.outcomes.WithLabelValues("dead").Inc()
		log.Warn("webhook delivery dead", "err", err)
	default:
		a.Status, a.Error = store.DeliveryPending, err.Error()
		a.Next = now.Add(d.backoff(dl.Attempts + 1))
		d.outcomes.WithLabelValues("retry").Inc()
		log.Info("webhook delivery failed, will retry", "err", err, "next", a.Next)
	}
	if err := d.st.RecordAttempt(context.WithoutCancel(ctx), dl.ID, a); err != nil && !errors.Is(err, store.ErrNotFound) {
		log.Error("webhook attempt not recorded", "err", err)
	}
}

// backoff is the wait after the n-th failed attempt: base·2^(n-1), capped,
// with up to 10% jitter so a receiver coming back is not hit in lockstep.
func (d *Deliverer) backoff(n int) time.Duration {
	w := d.cfg.BackoffBase
	for i := 1; i < n && w < d.cfg.BackoffMax; i++ {
		w *= 2
	}
	w = min(w, d.cfg.BackoffMax)
	return w + time.Duration(rand.Int64N(int64(w)/10+1))
}

// post sends one delivery and returns the HTTP status.
func (d *Deliverer) post(ctx context.Context, dl *store.Delivery) (int, error) {
	t, err := d.st.TenantByID(ctx, dl.TenantID)
	if err != nil {
		return 0, fmt.Errorf("tenant: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	body := []byte(dl.Body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, dl.URL, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("request: %w", err)
	}
	now := d.now()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "avs-webhook/1")
	req.Header.Set(HeaderDelivery, dl.DeliveryID)
	req.Header.Set(HeaderEvent, dl.Event)
	req.Header.Set(HeaderTimestamp, fmt.Sprint(now.Unix()))
	req.Header.Set(HeaderSignature, Sign(t.WebhookSecret, now, body))
	resp, err := d.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("post: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, fmt.Errorf("post: status %d", resp.StatusCode)
	}
	return resp.StatusCode, nil
}
