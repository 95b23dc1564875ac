package callcenter

import (
	"context"
	"encoding/json"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/avs/avs/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeRooms records what the SFU would be asked.
type fakeRooms struct {
	mu     sync.Mutex
	open   map[string]bool // name -> voiceOnly
	closed []string
}

func (r *fakeRooms) OpenRoom(name string, voiceOnly bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.open[name] = voiceOnly
	return nil
}

func (r *fakeRooms) CloseRoom(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.open, name)
	r.closed = append(r.closed, name)
}

// events collects what the signaling layer would push.
type events struct {
	mu     sync.Mutex
	byWho  map[Party][]Event
	cursor map[Party]int
}

func (e *events) Notify(to Party, ev Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.byWho[to] = append(e.byWho[to], ev)
}

type harness struct {
	t     *testing.T
	path  string
	cfg   Config
	st    *store.Store
	svc   *Service
	rooms *fakeRooms
	ev    *events
	reg   *prometheus.Registry
	now   func() time.Time
	// hook is called when the service commits a webhook delivery.
	hook atomic.Pointer[func()]
}

func testConfig() Config {
	c := DefaultConfig()
	c.RingTimeout = 200 * time.Millisecond
	c.QueueTimeout = 5 * time.Second
	c.MaxRingAttempts = 3
	c.ChatPageSize = 3
	c.AuthRatePerMinute = 10000
	return c
}

func newHarness(t *testing.T, mods ...func(*Config)) *harness {
	t.Helper()
	return (&harness{t: t}).init(mods...)
}

func (h *harness) init(mods ...func(*Config)) *harness {
	h.path, h.cfg = filepath.Join(h.t.TempDir(), "avs.db"), testConfig()
	for _, m := range mods {
		m(&h.cfg)
	}
	h.start()
	h.t.Cleanup(h.stop)
	return h
}

// start opens the store and the service on h.path.
func (h *harness) start() {
	h.t.Helper()
	sc := store.DefaultConfig()
	sc.Path = h.path
	st, err := store.Open(context.Background(), sc)
	if err != nil {
		h.t.Fatalf("store: %v", err)
	}
	h.st = st
	h.rooms = &fakeRooms{open: map[string]bool{}}
	h.ev = &events{byWho: map[Party][]Event{}, cursor: map[Party]int{}}
	h.reg = prometheus.NewRegistry()
	svc, err := New(Params{Config: h.cfg, Store: st, Rooms: h.rooms, Notifier: h.ev, Registerer: h.reg, Now: h.now,
		OnOutbox: func() {
			if f := h.hook.Load(); f != nil {
				(*f)()
			}
		},
		ICEServers: func(k string) []ICEServer { return []ICEServer{{URLs: []string{"turn:x"}, Username: k}} }})
	if err != nil {
		h.t.Fatalf("service: %v", err)
	}
	h.svc = svc
}

func (h *harness) stop() {
	if h.svc != nil {
		h.svc.Close()
		h.svc = nil
	}
	if h.st != nil {
		h.st.Close()
		h.st = nil
	}
}

var ctx = context.Background()

func (h *harness) tenant(key string, settings TenantSettings, webhookURL string) *store.Tenant {
	h.t.Helper()
	b, _ := json.Marshal(settings)
	t := &store.Tenant{Key: key, Secret: "s3cret", WebhookURL: webhookURL, WebhookSecret: "whsec", Settings: string(b)}
	if err := h.st.CreateTenant(ctx, t); err != nil {
		h.t.Fatal(err)
	}
	return t
}

func (h *harness) group(tenantID int64, name string) int64 {
	h.t.Helper()
	g := &store.Group{TenantID: tenantID, Name: name}
	if err := h.st.CreateGroup(ctx, g); err != nil {
		h.t.Fatal(err)
	}
	return g.ID
}

// agent creates an agent and logs it in (status online).
func (h *harness) agent(t *store.Tenant, name string, groups ...int64) *AgentSession {
	h.t.Helper()
	hash, err := hashPasswordIter("pw-"+name, 1000)
	if err != nil {
		h.t.Fatal(err)
	}
	a := &store.Agent{TenantID: t.ID, Username: name, PasswordHash: hash, NickName: "Agent " + name, GroupIDs: groups}
	if err := h.st.CreateAgent(ctx, a); err != nil {
		h.t.Fatal(err)
	}
	sess, err := h.svc.AgentLogin(ctx, t.Key, name, "pw-"+name)
	if err != nil {
		h.t.Fatal(err)
	}
	return sess
}

// customer authenticates an unsigned entry with opts merged over defaults.
func (h *harness) customer(t *store.Tenant, opts map[string]any) *CustomerSession {
	h.t.Helper()
	o := map[string]any{"miniSdkToken": t.Key, "customerInfo": map[string]any{"nickName": "c"}}
	for k, v := range opts {
		o[k] = v
	}
	raw, _ := json.Marshal(o)
	sess, err := h.svc.AuthCustomer(ctx, AuthRequest{Options: raw, RemoteAddr: "10.0.0.1:5000"})
	if err != nil {
		h.t.Fatalf("auth: %v", err)
	}
	return sess
}

func cust(sess *CustomerSession) Party { return Party{RoleCustomer, sess.CustomerID} }
func agt(a *AgentSession) Party        { return Party{RoleAgent, a.AgentID} }

// wait returns the next event of type typ for p after the previous one
// waited for, failing after a generous deadline.
func (h *harness) wait(p Party, typ string) Event {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		h.ev.mu.Lock()
		list := h.ev.byWho[p]
		for i := h.ev.cursor[p]; i < len(list); i++ {
			if list[i].Type == typ {
				h.ev.cursor[p] = i + 1
				h.ev.mu.Unlock()
				return list[i]
			}
		}
		h.ev.mu.Unlock()
		if time.Now().After(deadline) {
			h.t.Fatalf("%v: no %s event; got %v", p, typ, list)
		}
		time.Sleep(2 * time.Millisecond) // polling interval, not a synchronization delay
	}
}

// eventually polls cond until it holds.
func (h *harness) eventually(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// lastPosition returns the latest queue position pushed to p (0 if none).
func (h *harness) lastPosition(p Party) int {
	h.ev.mu.Lock()
	defer h.ev.mu.Unlock()
	list := h.ev.byWho[p]
	for i := len(list) - 1; i >= 0; i-- {
		if list[i].Type == EventQueuePosition {
			return list[i].Data.(QueuePositionData).Position
		}
	}
	return 0
}

func (h *harness) call(id int64) *store.Call {
	h.t.Helper()
	c, err := h.st.CallByID(ctx, id)
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

// deliveries returns the decoded webhook bodies of a call.
func (h *harness) deliveries(callID int64) []map[string]any {
	h.t.Helper()
	ds, err := h.st.ListDeliveries(ctx, store.DeliveryFilter{CallID: callID})
	if err != nil {
		h.t.Fatal(err)
	}
	var out []map[string]any
	for i := len(ds) - 1; i >= 0; i-- {
		var m map[string]any
		if err := json.Unmarshal([]byte(ds[i].Body), &m); err != nil {
			h.t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if CodeOf(err) != code {
		t.Fatalf("error %v: code %q, want %q", err, CodeOf(err), code)
	}
}

func withSettings(t *testing.T, ten *store.Tenant, s TenantSettings) *store.Tenant {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	ten.Settings = string(b)
	return ten
}
