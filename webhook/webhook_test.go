package webhook

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/avs/avs/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func testConfig() Config {
	c := DefaultConfig()
	c.Timeout = 2 * time.Second
	c.BackoffBase = 10 * time.Millisecond
	c.BackoffMax = 40 * time.Millisecond
	c.PollInterval = 50 * time.Millisecond
	c.MaxAttempts = 3
	return c
}

func openStore(t *testing.T, path string) *store.Store {
	t.Helper()
	cfg := store.DefaultConfig()
	cfg.Path = path
	s, err := store.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func seed(t *testing.T, s *store.Store, url string) *store.Delivery {
	t.Helper()
	ctx := context.Background()
	ten := &store.Tenant{Key: "t", WebhookURL: url, WebhookSecret: "whsec"}
	if err := s.CreateTenant(ctx, ten); err != nil {
		t.Fatal(err)
	}
	d := &store.Delivery{TenantID: ten.ID, URL: url, Body: `{"bizId":"b1"}`, Event: "call.ended"}
	if err := s.EnqueueDelivery(ctx, d); err != nil {
		t.Fatal(err)
	}
	return d
}

func waitStatus(t *testing.T, s *store.Store, id int64, want string) *store.Delivery {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		d, err := s.DeliveryByID(context.Background(), id)
		if err == nil && d.Status == want {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("delivery %d: status %v (err %v), want %s", id, d, err, want)
		}
		time.Sleep(5 * time.Millisecond) // polling, not synchronization by delay
	}
}

func TestRetryThenDelivered(t *testing.T) {
	var calls atomic.Int32
	var mu sync.Mutex
	var ids []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if !Verify("whsec", r.Header.Get(HeaderSignature), r.Header.Get(HeaderTimestamp), body, time.Now(), time.Minute) {
			t.Errorf("bad signature")
		}
		mu.Lock()
		ids = append(ids, r.Header.Get(HeaderDelivery))
		mu.Unlock()
		if calls.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	s := openStore(t, filepath.Join(t.TempDir(), "a.db"))
	defer s.Close()
	d0 := seed(t, s, srv.URL)
	reg := prometheus.NewRegistry()
	d, err := New(Params{Config: testConfig(), Store: s, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	d.Start()
	defer d.Close()
	got := waitStatus(t, s, d0.ID, store.DeliveryDelivered)
	if got.Attempts != 2 {
		t.Fatalf("attempts = %d, want 2", got.Attempts)
	}
	mu.Lock()
	if len(ids) != 2 || ids[0] != d0.DeliveryID || ids[1] != d0.DeliveryID {
		t.Fatalf("delivery ids = %v, want twice %s", ids, d0.DeliveryID)
	}
	mu.Unlock()
	if v := counterValue(d.outcomes.WithLabelValues("retry")); v != 1 {
		t.Fatalf("retry count = %v", v)
	}
}

func TestDeadLetterAndRetry(t *testing.T) {
	var ok atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !ok.Load() {
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	s := openStore(t, filepath.Join(t.TempDir(), "a.db"))
	defer s.Close()
	d0 := seed(t, s, srv.URL)
	d, err := New(Params{Config: testConfig(), Store: s})
	if err != nil {
		t.Fatal(err)
	}
	d.Start()
	defer d.Close()
	dead := waitStatus(t, s, d0.ID, store.DeliveryDead)
	if dead.Attempts != 3 || dead.LastStatus != 500 {
		t.Fatalf("dead delivery = %+v", dead)
	}
	if v := counterValue(d.outcomes.WithLabelValues("dead")); v != 1 {
		t.Fatalf("dead count = %v", v)
	}
	ok.Store(true)
	if err := s.RetryDelivery(context.Background(), d0.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	d.Notify()
	waitStatus(t, s, d0.ID, store.DeliveryDelivered)
}

// TestRestartMidDelivery closes the deliverer and the store while a POST
// hangs, reopens both on the same file, and expects the delivery to arrive.
func TestRestartMidDelivery(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 8)
	var delivered atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if delivered.Load() == 0 {
			select {
			case entered <- struct{}{}:
			default:
			}
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
		delivered.Add(1)
	}))
	defer srv.Close()
	path := filepath.Join(t.TempDir(), "a.db")
	s := openStore(t, path)
	d0 := seed(t, s, srv.URL)
	d, err := New(Params{Config: testConfig(), Store: s})
	if err != nil {
		t.Fatal(err)
	}
	d.Start()
	<-entered
	d.Close()
	s.Close()
	delivered.Store(1) // the receiver is back to normal after the restart
	close(release)

	s2 := openStore(t, path)
	defer s2.Close()
	if got, _ := s2.DeliveryByID(context.Background(), d0.ID); got.Status != store.DeliveryPending || got.Attempts != 0 {
		t.Fatalf("after restart: %+v", got)
	}
	d2, err := New(Params{Config: testConfig(), Store: s2})
	if err != nil {
		t.Fatal(err)
	}
	d2.Start()
	defer d2.Close()
	waitStatus(t, s2, d0.ID, store.DeliveryDelivered)
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"timeout", func(c *Config) { c.Timeout = 0 }, "webhook.timeout: must be > 0"},
		{"attempts", func(c *Config) { c.MaxAttempts = 0 }, "webhook.max_attempts: must be >= 1"},
		{"backoff", func(c *Config) { c.BackoffMax = time.Millisecond }, "webhook.backoff_max: must be >= backoff_base"},
	}
	for _, tt := range tests {
		c := DefaultConfig()
		tt.mod(&c)
		if err := c.Validate(); err == nil || err.Error() != tt.want {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}
