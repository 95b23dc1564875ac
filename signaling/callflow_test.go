package signaling

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/avs/avs/callcenter"
	"github.com/avs/avs/store"
)

// These tests run the real call center on a temporary SQLite file behind
// real WebSockets; only the SFU is a fake (it records joins).

type fakeRooms struct {
	mu   sync.Mutex
	open map[string]bool
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
}

type flowEnv struct {
	url        string
	srv        *Server
	st         *store.Store
	cc         *callcenter.Service
	media      *fakeMedia
	tenant     *store.Tenant
	agentID    int64
	agentToken string
}

func newFlowEnv(t *testing.T, mutate func(*Config)) *flowEnv {
	t.Helper()
	fm := &fakeMedia{}
	fe := newFlowEnvWith(t, mutate, fm, &fakeRooms{open: map[string]bool{}})
	fe.media = fm
	return fe
}

// newFlowEnvWith builds the env on the given media plane.
func newFlowEnvWith(t *testing.T, mutate func(*Config), media Media, rooms callcenter.Rooms) *flowEnv {
	t.Helper()
	ctx := context.Background()
	sc := store.DefaultConfig()
	sc.Path = filepath.Join(t.TempDir(), "avs.db")
	st, err := store.Open(ctx, sc)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	if mutate != nil {
		mutate(&cfg)
	}
	fe := &flowEnv{st: st}
	fe.srv, err = New(Params{Config: cfg, Registerer: prometheus.NewRegistry(), Media: media})
	if err != nil {
		t.Fatal(err)
	}
	flow := NewCallFlow(fe.srv)
	ccfg := callcenter.DefaultConfig()
	ccfg.RingTimeout = time.Hour // the agent answers when the test says so
	ccfg.QueueTimeout = time.Hour
	ccfg.AuthRatePerMinute = 100000
	fe.cc, err = callcenter.New(callcenter.Params{Config: ccfg, Store: st, Rooms: rooms,
		Notifier: flow, Registerer: prometheus.NewRegistry(),
		ICEServers: func(k string) []callcenter.ICEServer {
			return []callcenter.ICEServer{{URLs: []string{"turn:127.0.0.1:3478"}, Username: k, Credential: "c"}}
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := flow.Attach(fe.cc); err != nil {
		t.Fatal(err)
	}
	fe.tenant = &store.Tenant{Key: "acme", Name: "Acme", Secret: "s3cret",
		Settings: `{"survey":{"enabled":true,"resolveOptions":["已解决","未解决"],"labels":["快","好"]}}`}
	if err := st.CreateTenant(ctx, fe.tenant); err != nil {
		t.Fatal(err)
	}
	a := &store.Agent{TenantID: fe.tenant.ID, Username: "ann", PasswordHash: "unused", NickName: "Ann"}
	if err := st.CreateAgent(ctx, a); err != nil {
		t.Fatal(err)
	}
	fe.agentID = a.ID
	if fe.agentToken, _, err = fe.cc.IssueAgentToken(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(fe.srv)
	fe.url = "ws" + strings.TrimPrefix(ts.URL, "http")
	t.Cleanup(func() {
		// Sessions end first: their cleanup talks to the call center.
		_ = fe.srv.Close()
		fe.cc.Close()
		_ = st.Close()
		ts.Close()
	})
	return fe
}

func (fe *flowEnv) agent(t *testing.T) *client {
	t.Helper()
	c := dialURL(t, fe.url)
	m := c.mustReply("agent.loginToken", map[string]string{"token": fe.agentToken})
	if m.Session == nil || m.Session.Role != RoleAgent || m.Session.PartyID != fe.agentID {
		t.Fatalf("agent login: %+v", m.Session)
	}
	return c
}

func (fe *flowEnv) customer(t *testing.T, opts map[string]any) (*client, msg) {
	t.Helper()
	c := dialURL(t, fe.url)
	o := map[string]any{"miniSdkToken": fe.tenant.Key, "customerInfo": map[string]any{"nickName": "Wang", "customerToken": "w-1"},
		"bizId": "order-9", "callTimes": 3}
	for k, v := range opts {
		o[k] = v
	}
	m := c.mustReply("customer.auth", map[string]any{"options": o})
	return c, m
}

func (fe *flowEnv) callRecord(t *testing.T, id int64) *store.Call {
	t.Helper()
	rec, err := fe.st.CallByID(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

type callReply struct {
	CallID     int64  `json:"callId"`
	Room       string `json:"room"`
	MediaReady bool   `json:"mediaReady"`
}

func place(t *testing.T, c *client) callReply {
	t.Helper()
	var cr callReply
	decode(t, c.mustReply("call.place", nil).Data, &cr)
	if cr.CallID == 0 || cr.Room == "" || !cr.MediaReady {
		t.Fatalf("call.place reply %+v", cr)
	}
	return cr
}

func TestCustomerFlowEndToEnd(t *testing.T) {
	fe := newFlowEnv(t, nil)
	agent := fe.agent(t)
	cust, auth := fe.customer(t, nil)
	var ar authOut
	decode(t, auth.Data, &ar)
	if ar.NavigateType != 0 || ar.CallTimesLeft != 3 || !ar.Settings.Survey.Enabled || len(ar.ICEServers) == 0 || ar.BizID != "order-9" {
		t.Fatalf("auth reply %+v", ar)
	}

	call := place(t, cust)
	// Media is set up while waiting: the room is known before the answer.
	var jr joinReply
	decode(t, cust.mustReply("media.join", nil).Data, &jr)
	if jr.Room != call.Room {
		t.Fatalf("customer joined %q, call room %q", jr.Room, call.Room)
	}

	ring := agent.push(callcenter.EventCallRinging)
	var in callcenter.IncomingData
	decode(t, ring.Data, &in)
	if in.CallID != call.CallID || in.Customer.NickName != "Wang" || in.BizID != "order-9" {
		t.Fatalf("incoming %+v", in)
	}
	cust.push(callcenter.EventCallRinging)

	agent.mustReply("call.answer", map[string]int64{"callId": call.CallID})
	decode(t, agent.mustReply("media.join", nil).Data, &jr)
	if jr.Room != call.Room || jr.ParticipantID == "" {
		t.Fatalf("agent join %+v", jr)
	}
	cust.push(callcenter.EventCallConnected)
	agent.push(callcenter.EventCallConnected)
	cust.mustReply("media.offer", sdpData{SDP: "customer-offer"})

	cust.mustReply("chat.send", map[string]any{"callId": call.CallID, "text": "你好"})
	var chat callcenter.ChatMessage
	decode(t, agent.push(callcenter.EventChatMessage).Data, &chat)
	if chat.Body != "你好" || chat.SenderRole != RoleCustomer {
		t.Fatalf("chat %+v", chat)
	}

	agent.mustReply("call.hangup", map[string]int64{"callId": call.CallID})
	var ended callcenter.EndedData
	decode(t, cust.push(callcenter.EventCallEnded).Data, &ended)
	if ended.ResultCode != callcenter.ResultAnswered || ended.Survey == nil || ended.NavigateType != 0 {
		t.Fatalf("ended %+v", ended)
	}
	agent.push(callcenter.EventCallEnded)
	// The call is over: its media sessions close and joining is refused.
	eventually(t, "media closed", func() bool { return fe.media.openSessions() == 0 })
	cust.mustError("media.join", nil, CodeNoCall)

	m := cust.mustReply("survey.submit", map[string]any{"callId": call.CallID,
		"surveryResolveResult": "已解决", "surveryLables": "快, 好", "surveryRemark": "ok", "surveryDesc": "fine"})
	var nav navigateOut
	decode(t, m.Data, &nav)
	if nav.NavigateType != callcenter.NavigateSurveyDone {
		t.Fatalf("survey reply %s", m.Data)
	}
	var page callcenter.ChatPage
	decode(t, cust.mustReply("chat.history", nil).Data, &page)
	if len(page.Messages) != 1 || page.Messages[0].Body != "你好" {
		t.Fatalf("history %+v", page)
	}
	rec := fe.callRecord(t, call.CallID)
	if rec.ResultCode != callcenter.ResultAnswered || rec.Survey.Resolved != "已解决" || rec.Survey.Labels != "快,好" {
		t.Fatalf("record %+v", rec)
	}
}

func TestAbandonInQueue(t *testing.T) {
	fe := newFlowEnv(t, nil)
	agent := fe.agent(t)
	// An away agent keeps the queue open without taking the call.
	agent.mustReply("agent.status", map[string]string{"status": callcenter.StatusAway})
	cust, _ := fe.customer(t, nil)
	call := place(t, cust)
	var pos callcenter.QueuePositionData
	decode(t, cust.push(callcenter.EventQueuePosition).Data, &pos)
	if pos.CallID != call.CallID || pos.Position != 1 {
		t.Fatalf("position %+v", pos)
	}
	cust.mustReply("call.leave", map[string]int64{"callId": call.CallID})
	var ended callcenter.EndedData
	decode(t, cust.push(callcenter.EventCallEnded).Data, &ended)
	if ended.ResultCode != callcenter.ResultAbandoned || ended.NavigateType != callcenter.NavigateCallEnded {
		t.Fatalf("ended %+v", ended)
	}
	if rec := fe.callRecord(t, call.CallID); rec.ResultCode != callcenter.ResultAbandoned {
		t.Fatalf("resultCode %d", rec.ResultCode)
	}
}

func TestAuthAndCallTimesErrorsCarryNavigateType(t *testing.T) {
	fe := newFlowEnv(t, nil)
	c := dialURL(t, fe.url)
	m := c.mustError("customer.auth", map[string]any{"options": map[string]any{"miniSdkToken": "nope"}}, callcenter.CodeAuthFailed)
	if m.Error.NavigateType != callcenter.NavigateAuthFailed {
		t.Fatalf("auth error %+v", m.Error)
	}
	agent := fe.agent(t)
	agent.mustReply("agent.status", map[string]string{"status": callcenter.StatusAway})
	cust, _ := fe.customer(t, map[string]any{"callTimes": 1})
	call := place(t, cust)
	cust.mustReply("call.leave", map[string]int64{"callId": call.CallID})
	cust.push(callcenter.EventCallEnded)
	m = cust.mustError("call.place", nil, callcenter.CodeNoCallTimes)
	if m.Error.NavigateType != callcenter.NavigateNoCallTimes {
		t.Fatalf("no call times error %+v", m.Error)
	}
	// Agent-only requests are refused to customers.
	cust.mustError("call.answer", map[string]int64{"callId": call.CallID}, CodeForbidden)
}

func TestResumeInQueueKeepsThePlace(t *testing.T) {
	fe := newFlowEnv(t, nil)
	agent := fe.agent(t)
	agent.mustReply("agent.status", map[string]string{"status": callcenter.StatusAway})
	cust, auth := fe.customer(t, nil)
	call := place(t, cust)
	last := cust.push(callcenter.EventQueuePosition)
	_ = cust.ws.NetConn().Close()

	// While the customer is away the agent comes back and is rung.
	agent.mustReply("agent.status", map[string]string{"status": callcenter.StatusOnline})
	agent.push(callcenter.EventCallRinging)

	c2 := dialURL(t, fe.url)
	m := c2.mustReply("session.resume", map[string]any{"resumeToken": auth.Session.ResumeToken, "lastSeq": last.Seq})
	var rr resumeReply
	decode(t, m.Data, &rr)
	if rr.Gap {
		t.Fatal("gap on resume")
	}
	c2.push(callcenter.EventCallRinging)
	agent.mustReply("call.answer", map[string]int64{"callId": call.CallID})
	c2.push(callcenter.EventCallConnected)
	if rec := fe.callRecord(t, call.CallID); rec.State != store.CallConnected {
		t.Fatalf("state %s", rec.State)
	}
}

func TestResumeInCallKeepsTheCall(t *testing.T) {
	fe := newFlowEnv(t, nil)
	agent := fe.agent(t)
	cust, auth := fe.customer(t, nil)
	call := place(t, cust)
	cust.mustReply("media.join", nil)
	agent.push(callcenter.EventCallRinging)
	agent.mustReply("call.answer", map[string]int64{"callId": call.CallID})
	connected := cust.push(callcenter.EventCallConnected)
	_ = cust.ws.NetConn().Close()

	agent.mustReply("chat.send", map[string]any{"callId": call.CallID, "text": "still there?"})
	c2 := dialURL(t, fe.url)
	c2.mustReply("session.resume", map[string]any{"resumeToken": auth.Session.ResumeToken, "lastSeq": connected.Seq})
	var chat callcenter.ChatMessage
	decode(t, c2.push(callcenter.EventChatMessage).Data, &chat)
	if chat.Body != "still there?" {
		t.Fatalf("chat %+v", chat)
	}
	// Media and call survived the reconnect.
	c2.mustReply("media.offer", sdpData{SDP: "ice-restart-offer"})
	c2.mustReply("chat.send", map[string]any{"callId": call.CallID, "text": "yes"})
	if n := fe.media.openSessions(); n != 1 {
		t.Fatalf("%d media sessions", n)
	}
}

func TestGraceExpiryEndsTheCall(t *testing.T) {
	tests := []struct {
		name     string
		answered bool
		want     int
	}{
		{"queued customer abandons", false, callcenter.ResultAbandoned},
		{"connected call is hung up", true, callcenter.ResultAnswered},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fe := newFlowEnv(t, func(c *Config) { c.ResumeGrace = 50 * time.Millisecond })
			agent := fe.agent(t)
			if !tt.answered {
				agent.mustReply("agent.status", map[string]string{"status": callcenter.StatusAway})
			}
			cust, _ := fe.customer(t, nil)
			call := place(t, cust)
			if tt.answered {
				agent.push(callcenter.EventCallRinging)
				agent.mustReply("call.answer", map[string]int64{"callId": call.CallID})
				cust.push(callcenter.EventCallConnected)
			}
			_ = cust.ws.Close()
			if tt.answered {
				var ended callcenter.EndedData
				decode(t, agent.push(callcenter.EventCallEnded).Data, &ended)
				if ended.By != RoleCustomer {
					t.Errorf("ended by %q", ended.By)
				}
			}
			eventually(t, "call final", func() bool {
				return fe.callRecord(t, call.CallID).State == store.CallEnded
			})
			if rec := fe.callRecord(t, call.CallID); rec.ResultCode != tt.want {
				t.Fatalf("resultCode %d, want %d", rec.ResultCode, tt.want)
			}
		})
	}
}

func TestAgentDisconnectGoesOffline(t *testing.T) {
	fe := newFlowEnv(t, func(c *Config) { c.ResumeGrace = 50 * time.Millisecond })
	agent := fe.agent(t)
	var ao agentOut
	decode(t, agent.mustReply("agent.status", map[string]string{"status": callcenter.StatusOnline}).Data, &ao)
	if ao.Status != callcenter.StatusOnline {
		t.Fatalf("status %q", ao.Status)
	}
	_ = agent.ws.Close()
	eventually(t, "agent offline", func() bool { return fe.cc.AgentStatus(fe.agentID) == callcenter.StatusOffline })
	cust, _ := fe.customer(t, nil)
	cust.mustError("call.place", nil, callcenter.CodeNoAgentOnline)
}

func TestShutdownLeavesCallsToTheCallCenter(t *testing.T) {
	fe := newFlowEnv(t, nil)
	agent := fe.agent(t)
	agent.mustReply("agent.status", map[string]string{"status": callcenter.StatusAway})
	cust, _ := fe.customer(t, nil)
	call := place(t, cust)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = fe.srv.Shutdown(ctx)
	if code := cust.closeCode(); code != 1001 {
		t.Fatalf("close code %d", code)
	}
	if rec := fe.callRecord(t, call.CallID); rec.State == store.CallEnded {
		t.Fatalf("call ended by shutdown: %+v", rec)
	}
}
