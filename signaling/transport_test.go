package signaling

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func TestInvalidMessagesGetErrors(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial(t)
	tests := []struct {
		name, raw, code, id string
	}{
		{"not json", `hello`, CodeBadJSON, ""},
		{"truncated", `{"id":"1","type":"ping"`, CodeBadJSON, ""},
		{"array", `[1,2]`, CodeBadJSON, ""},
		{"missing id", `{"type":"ping"}`, CodeBadRequest, ""},
		{"object id", `{"id":{},"type":"ping"}`, CodeBadRequest, ""},
		{"missing type", `{"id":"a1"}`, CodeBadRequest, `"a1"`},
		{"unknown type", `{"id":"a2","type":"call.fly"}`, CodeUnknownType, `"a2"`},
		{"numeric id", `{"id":7,"type":"nope"}`, CodeUnknownType, `7`},
		{"bad data", `{"id":"a3","type":"media.candidate","data":"x"}`, CodeUnauthenticated, `"a3"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.t = t
			c.sendRaw(tt.raw)
			m, err := c.read()
			if err != nil {
				t.Fatal(err)
			}
			if m.Type != "error" || m.Error.Code != tt.code {
				t.Fatalf("got %s %+v, want error %s", m.Type, m.Error, tt.code)
			}
			if m.Error.Message == "" {
				t.Error("error without message")
			}
			if string(m.ID) != tt.id {
				t.Errorf("id = %s, want %s", m.ID, tt.id)
			}
		})
	}
	c.t = t
	// The connection survives a handful of mistakes.
	c.mustReply("ping", nil)
	if got := metricValue(t, e.srv.metrics.errors.WithLabelValues(CodeUnknownType)); got != 2 {
		t.Errorf("errors_total{code=unknown_type} = %v, want 2", got)
	}
}

func TestOversizedMessage(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.MaxMessageBytes = 1024
		c.HardMessageBytes = 4096
	})
	c := e.dial(t)
	big := `{"id":"1","type":"ping","data":{"x":"` + strings.Repeat("a", 2000) + `"}}`
	c.sendRaw(big)
	m, err := c.read()
	if err != nil {
		t.Fatal(err)
	}
	if m.Type != "error" || m.Error.Code != CodeMessageTooLarge {
		t.Fatalf("got %s %+v", m.Type, m.Error)
	}
	c.mustReply("ping", nil)

	c.sendRaw(`{"id":"2","type":"ping","data":"` + strings.Repeat("a", 8000) + `"}`)
	if code := c.closeCode(); code != websocket.CloseMessageTooBig {
		t.Fatalf("close code %d, want %d", code, websocket.CloseMessageTooBig)
	}
}

func TestFloodIsAnsweredThenClosed(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.RatePerSecond = 1
		c.RateBurst = 5
		c.MaxViolations = 3
		c.ViolationDecay = time.Hour
	})
	bystander := e.dial(t)
	bystander.mustReply("customer.auth", authData{ID: 9})
	flooder := e.dial(t)
	for i := 0; i < 50; i++ {
		// Writes may fail once the server has closed; that is the point.
		if err := flooder.ws.WriteMessage(websocket.TextMessage, []byte(`{"id":"f","type":"ping"}`)); err != nil {
			break
		}
	}
	var replies, limited int
	var code int
	for {
		m, err := flooder.read()
		if err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) {
				t.Fatalf("flooder: %v", err)
			}
			code = ce.Code
			break
		}
		switch {
		case m.Type == "reply":
			replies++
		case m.Type == "error" && m.Error.Code == CodeRateLimited:
			limited++
		default:
			t.Fatalf("unexpected %s %+v", m.Type, m.Error)
		}
	}
	if code != CloseTooManyErrors {
		t.Errorf("close code %d, want %d", code, CloseTooManyErrors)
	}
	if limited == 0 {
		t.Errorf("replies %d, rate_limited %d: want rate_limited errors before the close", replies, limited)
	}
	// Everyone else is served.
	bystander.mustReply("echo", map[string]int{"a": 1})
	if e.srv.Push(Party{RoleCustomer, 9}, "chat.message", map[string]string{"text": "hi"}) != 1 {
		t.Error("push to bystander not taken")
	}
	bystander.push("chat.message")
}

func TestConnectionLimitPerAddress(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxConnectionsPerAddr = 2 })
	a := e.dial(t)
	e.dial(t)
	_, resp, err := websocket.DefaultDialer.Dial(e.url, nil)
	if err == nil {
		t.Fatal("third connection accepted")
	}
	if resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("third connection: %v, resp %v; want 429", err, resp)
	}
	_ = resp.Body.Close()
	_ = a.ws.Close()
	// The slot is released once the server has seen the socket go.
	eventually(t, "slot released", func() bool {
		ws, resp, err := websocket.DefaultDialer.Dial(e.url, nil)
		if err != nil {
			if resp != nil {
				_ = resp.Body.Close()
			}
			return false
		}
		_ = ws.Close()
		return true
	})
}

func TestOriginCheck(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.AllowedOrigins = []string{"https://console.example.com"} })
	tests := []struct {
		origin string
		ok     bool
	}{
		{"", true},
		{"https://console.example.com", true},
		{"https://evil.example.com", false},
		{e.ts.URL, true}, // same host
	}
	for _, tt := range tests {
		h := http.Header{}
		if tt.origin != "" {
			h.Set("Origin", tt.origin)
		}
		ws, resp, err := websocket.DefaultDialer.Dial(e.url, h)
		if (err == nil) != tt.ok {
			t.Errorf("origin %q: err %v, want ok=%v", tt.origin, err, tt.ok)
		}
		if ws != nil {
			_ = ws.Close()
		}
		if resp != nil && resp.Body != nil {
			_ = resp.Body.Close()
		}
	}
}

func TestAccessRules(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial(t)
	c.mustError("call.place", nil, CodeUnauthenticated)
	c.mustError("echo", nil, CodeUnauthenticated)
	c.mustError("media.join", nil, CodeUnauthenticated)
	m := c.mustReply("customer.auth", authData{ID: 1})
	if m.Session == nil || m.Session.ResumeToken == "" || m.Session.Role != RoleCustomer || m.Session.PartyID != 1 {
		t.Fatalf("auth reply session block: %+v", m.Session)
	}
	if m2 := c.mustReply("echo", nil); m2.Session != nil {
		t.Error("session block on an ordinary reply")
	}
	c.mustError("call.answer", nil, CodeForbidden)
	c.mustError("agent.login", authData{ID: 2}, CodeAlreadyAuthenticated)
	c.mustError("session.resume", map[string]any{"resumeToken": m.Session.ResumeToken}, CodeAlreadyAuthenticated)
}

func TestHandlerErrorsAndPanics(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial(t)
	m := c.mustError("fail", nil, "no_call_times")
	if m.Error.NavigateType != 2 || m.Error.Message != "no calls left" {
		t.Errorf("error = %+v", m.Error)
	}
	c.mustError("boom", nil, CodeInternal)
	c.mustReply("ping", nil)
}

func TestRequestsAreAnsweredInOrder(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial(t)
	first := c.send("slow", nil)
	second := c.send("ping", nil)
	e.h.release <- struct{}{}
	m1, _ := c.read()
	m2, _ := c.read()
	if string(m1.ID) != `"`+first+`"` || string(m2.ID) != `"`+second+`"` {
		t.Fatalf("order: %s then %s", m1.ID, m2.ID)
	}
}

func TestAuthTimeout(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.AuthTimeout = 50 * time.Millisecond })
	c := e.dial(t)
	if code := c.closeCode(); code != CloseAuthTimeout {
		t.Fatalf("close code %d, want %d", code, CloseAuthTimeout)
	}
}

func TestSessionClose(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial(t)
	auth := c.mustReply("customer.auth", authData{ID: 3})
	c.mustReply("session.close", nil)
	if code := c.closeCode(); code != websocket.CloseNormalClosure {
		t.Fatalf("close code %d", code)
	}
	ev := e.h.waitEnded(t)
	if ev.reason != EndClientClosed || ev.party != (Party{RoleCustomer, 3}) {
		t.Fatalf("ended %+v", ev)
	}
	c2 := e.dial(t)
	c2.mustError("session.resume", map[string]any{"resumeToken": auth.Session.ResumeToken}, CodeResumeFailed)
}

func TestDeadConnectionIsDetected(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.PingInterval = 20 * time.Millisecond
		c.PongTimeout = 100 * time.Millisecond
		c.ResumeGrace = 50 * time.Millisecond
	})
	c := e.dial(t)
	c.mustReply("customer.auth", authData{ID: 4})
	// The client stops reading, so it never answers a ping: the server
	// must notice on its own, and after the grace end the session.
	ev := e.h.waitEnded(t)
	if ev.reason != EndGraceExpired || ev.party.ID != 4 || ev.state != "state-4" {
		t.Fatalf("ended %+v", ev)
	}
}

func TestSlowReaderIsDisconnectedNotWaitedFor(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.SendQueue = 4 })
	c := e.dial(t)
	c.mustReply("customer.auth", authData{ID: 5})
	s := e.srv.sessionsOf(Party{RoleCustomer, 5})[0]
	payload := strings.Repeat("x", 16<<10)
	// The client reads nothing; pushes must never block and the server
	// must drop the socket once its queue is full.
	for i := 0; ; i++ {
		if err := s.Push("chat.message", payload); err != nil {
			t.Fatal(err)
		}
		s.mu.Lock()
		detached := s.conn == nil
		s.mu.Unlock()
		if detached {
			break
		}
		if i > 100000 {
			t.Fatal("slow reader never disconnected")
		}
	}
	if code := c.closeCode(); code != CloseSlowConsumer {
		t.Fatalf("close code %d, want %d", code, CloseSlowConsumer)
	}
}

func TestShutdownDrains(t *testing.T) {
	e := newEnv(t, nil)
	cust := e.dial(t)
	cust.mustReply("customer.auth", authData{ID: 6})
	cust.mustReply("call.place", nil)
	cust.mustReply("media.join", nil)

	done := make(chan error, 1)
	go func() { done <- e.srv.Shutdown(context.Background()) }()
	eventually(t, "draining", e.srv.Draining)

	// No new call while draining; the running call goes on.
	other := e.dial(t)
	other.mustReply("customer.auth", authData{ID: 7})
	other.mustError("call.place", nil, "unavailable")
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned while a call had media: %v", err)
	default:
	}
	// Leaving lets Shutdown go on; the reply may or may not precede the
	// close frame.
	cust.send("media.leave", nil)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(wait):
		t.Fatal("Shutdown did not return")
	}
	for _, c := range []*client{cust, other} {
		if code := c.closeCode(); code != websocket.CloseGoingAway {
			t.Errorf("close code %d, want 1001", code)
		}
	}
	for range 2 {
		if ev := e.h.waitEnded(t); ev.reason != EndShutdown {
			t.Errorf("ended %+v", ev)
		}
	}
	_, resp, err := websocket.DefaultDialer.Dial(e.url, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("dial after shutdown: %v %v", err, resp)
	}
	_ = resp.Body.Close()
}

func TestShutdownGivesUpAtDeadline(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial(t)
	c.mustReply("customer.auth", authData{ID: 8})
	c.mustReply("call.place", nil)
	c.mustReply("media.join", nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := e.srv.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown: %v", err)
	}
	if code := c.closeCode(); code != websocket.CloseGoingAway {
		t.Fatalf("close code %d", code)
	}
	if n := e.media.openSessions(); n != 0 {
		t.Fatalf("%d media sessions left open", n)
	}
}

func TestMetricsUseTheGivenRegisterer(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial(t)
	c.mustReply("ping", nil)
	eventually(t, "gauge", func() bool { return metricValue(t, e.srv.metrics.connections) == 1 })
	if got := metricValue(t, e.srv.metrics.messages.WithLabelValues("in", "ping")); got != 1 {
		t.Errorf("messages_total{in,ping} = %v", got)
	}
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, n := range []string{"avs_signaling_connections", "avs_signaling_messages_total"} {
		if !names[n] {
			t.Errorf("%s not registered", n)
		}
	}
	// A second server on the same registry must fail, not panic.
	if _, err := New(Params{Config: testConfig(), Registerer: e.reg}); err == nil {
		t.Error("duplicate registration accepted")
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"defaults", func(*Config) {}, ""},
		{"message size", func(c *Config) { c.MaxMessageBytes = 0 }, "signaling.max_message_bytes: must be > 0"},
		{"hard limit", func(c *Config) { c.HardMessageBytes = 10 }, "signaling.hard_message_bytes"},
		{"rate", func(c *Config) { c.RatePerSecond = 0 }, "signaling.rate_per_second"},
		{"pong", func(c *Config) { c.PongTimeout = c.PingInterval }, "signaling.pong_timeout"},
		{"grace", func(c *Config) { c.ResumeGrace = 0 }, "signaling.resume_grace"},
		{"origin", func(c *Config) { c.AllowedOrigins = []string{""} }, "signaling.allowed_origins[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.mutate(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want %q", err, tt.want)
			}
		})
	}
}

func TestDecodeInbound(t *testing.T) {
	m, e := decodeInbound([]byte(`{"id":"1","type":"chat.send","data":{"text":"hi"}}`))
	if e != nil || m.Type != "chat.send" || string(m.ID) != `"1"` {
		t.Fatalf("%+v %v", m, e)
	}
	var d struct{ Text string }
	if err := json.Unmarshal(m.Data, &d); err != nil || d.Text != "hi" {
		t.Fatalf("data %s", m.Data)
	}
}

func BenchmarkDecodeInbound(b *testing.B) {
	msg := []byte(`{"id":"42","type":"media.candidate","data":{"target":"pub","candidate":{"candidate":"candidate:842163049 1 udp 1677729535 203.0.113.7 46154 typ srflx raddr 0.0.0.0 rport 0 generation 0","sdpMid":"0","sdpMLineIndex":0}}}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if _, e := decodeInbound(msg); e != nil {
			b.Fatal(e)
		}
	}
}

func TestRemoteAddr(t *testing.T) {
	tests := []struct {
		header, remote, value, want string
	}{
		{"", "192.0.2.1:5555", "", "192.0.2.1"},
		{"", "[2001:db8::1]:443", "", "2001:db8::1"},
		{"X-Real-IP", "10.0.0.1:80", "198.51.100.7", "198.51.100.7"},
		{"X-Forwarded-For", "10.0.0.1:80", "203.0.113.9, 198.51.100.7", "198.51.100.7"},
		{"X-Real-IP", "10.0.0.1:80", "", "10.0.0.1"}, // header missing: the peer
	}
	for _, tt := range tests {
		srv := &Server{cfg: Config{RealIPHeader: tt.header}}
		r := httptest.NewRequest(http.MethodGet, "/ws", nil)
		r.RemoteAddr = tt.remote
		if tt.header != "" && tt.value != "" {
			r.Header.Set(tt.header, tt.value)
		}
		if got := srv.remoteAddr(r); got != tt.want {
			t.Errorf("%s=%q from %s: got %q, want %q", tt.header, tt.value, tt.remote, got, tt.want)
		}
	}
}

func TestBusyWhenRequestsPileUp(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.RequestQueue = 1 })
	c := e.dial(t)
	ids := []string{c.send("slow", nil), c.send("ping", nil), c.send("ping", nil)}
	// Whether or not the worker has taken "slow" yet, one of the pings
	// finds the queue full and is refused at once.
	m, err := c.read()
	if err != nil {
		t.Fatal(err)
	}
	if m.Type != "error" || m.Error.Code != CodeBusy {
		t.Fatalf("got %s %+v, want busy", m.Type, m.Error)
	}
	answered := map[string]bool{string(m.ID): true}
	e.h.release <- struct{}{}
	for len(answered) < len(ids) {
		m, err := c.read()
		if err != nil {
			t.Fatal(err)
		}
		answered[string(m.ID)] = true
	}
	// Every request got its one answer; the connection serves on.
	c.mustReply("ping", nil)
}

func TestUpgradeRefusals(t *testing.T) {
	t.Run("server full", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.MaxConnections = 1 })
		e.dial(t)
		_, resp, err := websocket.DefaultDialer.Dial(e.url, nil)
		if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("second connection: %v %v", err, resp)
		}
		_ = resp.Body.Close()
	})
	t.Run("no handler yet", func(t *testing.T) {
		srv, err := New(Params{Config: testConfig()})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/ws", nil))
		if rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("status %d", rec.Code)
		}
	})
}

// BenchmarkRequestRoundTrip is one ping request and its reply over a real
// loopback WebSocket: decode, limits, worker hand-off, encode, writer.
func BenchmarkRequestRoundTrip(b *testing.B) {
	e := newBenchEnv(b)
	ws, _, err := websocket.DefaultDialer.Dial(e.url, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer ws.Close()
	req := []byte(`{"id":"1","type":"ping"}`)
	b.ReportAllocs()
	for b.Loop() {
		if err := ws.WriteMessage(websocket.TextMessage, req); err != nil {
			b.Fatal(err)
		}
		if _, _, err := ws.ReadMessage(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPush is the server side of one push to a connected session:
// encode, sequence, replay buffer, queue to the writer.
func BenchmarkPush(b *testing.B) {
	e := newBenchEnv(b)
	ws, _, err := websocket.DefaultDialer.Dial(e.url, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer ws.Close()
	go func() { // drain
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				return
			}
		}
	}()
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"id":"1","type":"customer.auth","data":{"id":1}}`)); err != nil {
		b.Fatal(err)
	}
	p := Party{RoleCustomer, 1}
	for len(e.srv.sessionsOf(p)) == 0 {
		runtime.Gosched()
	}
	data := map[string]any{"callId": 1201, "position": 3, "estimatedWaitMs": 95000}
	b.ReportAllocs()
	for b.Loop() {
		if e.srv.Push(p, "queue.position", data) != 1 {
			b.Fatal("push not taken")
		}
	}
}

func newBenchEnv(b *testing.B) *testEnv {
	cfg := testConfig()
	cfg.RatePerSecond = 1e9
	cfg.RateBurst = 1 << 30
	cfg.SendQueue = 1 << 16
	e := &testEnv{h: newFakeHandler(), media: &fakeMedia{}}
	srv, err := New(Params{Config: cfg, Media: e.media, Handler: e.h})
	if err != nil {
		b.Fatal(err)
	}
	e.srv = srv
	e.ts = httptest.NewServer(srv)
	e.url = "ws" + strings.TrimPrefix(e.ts.URL, "http")
	b.Cleanup(func() {
		_ = srv.Close()
		e.ts.Close()
	})
	return e
}
