package signaling

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// wait is the generous upper bound for anything a test waits for; tests
// never assert how long something took.
const wait = 20 * time.Second

// fakeHandler is a tiny business layer for transport tests.
type fakeHandler struct {
	ended   chan endedEvent
	release chan struct{} // "slow" requests wait on it
}

type endedEvent struct {
	party  Party
	reason EndReason
	others int
	state  any
}

func newFakeHandler() *fakeHandler {
	return &fakeHandler{ended: make(chan endedEvent, 64), release: make(chan struct{})}
}

func (h *fakeHandler) Routes() []Route {
	return []Route{
		{"customer.auth", Public},
		{"agent.login", Public},
		{"call.place", CustomerOnly},
		{"call.answer", AgentOnly},
		{"echo", Authenticated},
		{"slow", Public},
		{"boom", Public},
		{"fail", Public},
	}
}

type authData struct {
	ID int64 `json:"id"`
}

func (h *fakeHandler) Handle(ctx context.Context, req *Request) (any, error) {
	switch req.Type {
	case "customer.auth", "agent.login":
		var d authData
		if err := req.Decode(&d); err != nil {
			return nil, err
		}
		role := RoleCustomer
		if req.Type == "agent.login" {
			role = RoleAgent
		}
		if err := req.Session.Authenticate(Party{role, d.ID}); err != nil {
			return nil, err
		}
		req.Session.SetState(fmt.Sprintf("state-%d", d.ID))
		return map[string]any{"ok": true}, nil
	case "call.place":
		if req.Draining {
			return nil, Errorf("unavailable", "not taking new calls")
		}
		req.Session.SetMediaRoom("room-1", false)
		_ = req.Session.Push("queue.position", map[string]int{"position": 1})
		return map[string]any{"callId": 1}, nil
	case "echo", "call.answer":
		var v any
		if err := req.Decode(&v); err != nil {
			return nil, err
		}
		return v, nil
	case "slow":
		select {
		case <-h.release:
			return nil, nil
		case <-ctx.Done():
			return nil, fmt.Errorf("slow: %w", ctx.Err())
		}
	case "boom":
		panic("boom")
	case "fail":
		return nil, fmt.Errorf("wrapped: %w", &Error{Code: "no_call_times", Message: "no calls left", NavigateType: 2})
	}
	return nil, errors.New("unreachable")
}

func (h *fakeHandler) SessionEnded(_ context.Context, s *Session, reason EndReason, others int) {
	p, _ := s.Party()
	h.ended <- endedEvent{party: p, reason: reason, others: others, state: s.State()}
}

// fakeMedia records what signaling asks of the SFU.
type fakeMedia struct {
	mu     sync.Mutex
	joined []string
	open   int
	last   *fakeMediaSession
}

type fakeMediaSession struct {
	m   *fakeMedia
	sig MediaSignals
}

func (m *fakeMedia) Join(_ context.Context, room, pid string, voiceOnly bool, sig MediaSignals) (MediaSession, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.joined = append(m.joined, room+"/"+pid)
	m.open++
	m.last = &fakeMediaSession{m: m, sig: sig}
	return m.last, nil
}

func (m *fakeMedia) openSessions() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.open
}

func (f *fakeMediaSession) Offer(sdp string) (string, error) {
	f.sig.ServerOffer("server-offer")
	f.sig.ServerCandidate("sub", webrtc.ICECandidateInit{Candidate: "candidate:1 1 udp 1 127.0.0.1 5000 typ host"})
	return "answer-to-" + sdp, nil
}

func (f *fakeMediaSession) Answer(string) error { return nil }

func (f *fakeMediaSession) Candidate(string, webrtc.ICECandidateInit) error { return nil }

func (f *fakeMediaSession) Close() error {
	f.m.mu.Lock()
	f.m.open--
	f.m.mu.Unlock()
	return nil
}

type testEnv struct {
	srv   *Server
	ts    *httptest.Server
	url   string
	h     *fakeHandler
	media *fakeMedia
	reg   *prometheus.Registry
}

func testConfig() Config {
	c := DefaultConfig()
	c.RequestTimeout = wait
	return c
}

func newEnv(t *testing.T, mutate func(*Config)) *testEnv {
	t.Helper()
	cfg := testConfig()
	if mutate != nil {
		mutate(&cfg)
	}
	e := &testEnv{h: newFakeHandler(), media: &fakeMedia{}, reg: prometheus.NewRegistry()}
	srv, err := New(Params{Config: cfg, Registerer: e.reg, Media: e.media, Handler: e.h})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	e.ts = httptest.NewServer(srv)
	e.url = "ws" + strings.TrimPrefix(e.ts.URL, "http")
	t.Cleanup(func() {
		close(e.h.release)
		_ = srv.Close()
		e.ts.Close()
	})
	return e
}

// msg is any server message as a client sees it.
type msg struct {
	ID      json.RawMessage `json:"id"`
	Type    string          `json:"type"`
	Seq     uint64          `json:"seq"`
	Data    json.RawMessage `json:"data"`
	Error   *wireError      `json:"error"`
	Session *SessionInfo    `json:"session"`
}

type client struct {
	t      *testing.T
	ws     *websocket.Conn
	nextID int
	pushes []msg // pushes seen while waiting for replies
}

func (e *testEnv) dial(t *testing.T) *client {
	t.Helper()
	return dialURL(t, e.url)
}

func dialURL(t *testing.T, url string) *client {
	t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatalf("dial: %v (resp %v)", err, resp)
	}
	c := &client{t: t, ws: ws}
	t.Cleanup(func() { _ = ws.Close() })
	return c
}

func (c *client) sendRaw(s string) {
	c.t.Helper()
	_ = c.ws.SetWriteDeadline(time.Now().Add(wait))
	if err := c.ws.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// send sends a request and returns its id.
func (c *client) send(typ string, data any) string {
	c.t.Helper()
	c.nextID++
	id := fmt.Sprint(c.nextID)
	b, err := json.Marshal(map[string]any{"id": id, "type": typ, "data": data})
	if err != nil {
		c.t.Fatal(err)
	}
	c.sendRaw(string(b))
	return id
}

func (c *client) read() (msg, error) {
	_ = c.ws.SetReadDeadline(time.Now().Add(wait))
	_, b, err := c.ws.ReadMessage()
	if err != nil {
		return msg{}, err
	}
	var m msg
	if err := json.Unmarshal(b, &m); err != nil {
		c.t.Fatalf("server sent invalid JSON %q: %v", b, err)
	}
	return m, nil
}

// replyTo reads until the reply or error for id, keeping pushes.
func (c *client) replyTo(id string) msg {
	c.t.Helper()
	for {
		m, err := c.read()
		if err != nil {
			c.t.Fatalf("waiting for reply %s: %v", id, err)
		}
		if m.Type != "reply" && m.Type != "error" {
			c.pushes = append(c.pushes, m)
			continue
		}
		if string(m.ID) == `"`+id+`"` {
			return m
		}
		c.t.Fatalf("reply for %s while waiting for %s", m.ID, id)
	}
}

func (c *client) request(typ string, data any) msg {
	c.t.Helper()
	return c.replyTo(c.send(typ, data))
}

func (c *client) mustReply(typ string, data any) msg {
	c.t.Helper()
	m := c.request(typ, data)
	if m.Type != "reply" {
		c.t.Fatalf("%s: got %s %+v", typ, m.Type, m.Error)
	}
	return m
}

func (c *client) mustError(typ string, data any, code string) msg {
	c.t.Helper()
	m := c.request(typ, data)
	if m.Type != "error" || m.Error == nil || m.Error.Code != code {
		c.t.Fatalf("%s: want error %s, got %s %+v", typ, code, m.Type, m.Error)
	}
	return m
}

// push returns the next push of type typ, reading as needed.
func (c *client) push(typ string) msg {
	c.t.Helper()
	for i, m := range c.pushes {
		if m.Type == typ {
			c.pushes = append(c.pushes[:i], c.pushes[i+1:]...)
			return m
		}
	}
	for {
		m, err := c.read()
		if err != nil {
			c.t.Fatalf("waiting for push %s: %v", typ, err)
		}
		if m.Type == typ {
			return m
		}
		c.pushes = append(c.pushes, m)
	}
}

// closeCode reads until the server closes and returns the close code.
func (c *client) closeCode() int {
	c.t.Helper()
	for {
		_, err := c.read()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code
		}
		c.t.Fatalf("connection ended without a close frame: %v", err)
	}
}

func (h *fakeHandler) waitEnded(t *testing.T) endedEvent {
	t.Helper()
	select {
	case ev := <-h.ended:
		return ev
	case <-time.After(wait):
		t.Fatal("no SessionEnded")
	}
	return endedEvent{}
}

// eventually polls cond until it holds; for state that has no event to
// wait on (counters released after a socket closes).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// metricValue reads one gauge or counter.
func metricValue(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}

func decode(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
}
