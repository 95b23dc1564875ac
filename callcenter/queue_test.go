package callcenter

import (
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/avs/avs/store"
)

// TestQueuePositions fills a queue with many customers and checks that
// each is told its place, VIPs first, and that places move up when
// someone leaves or is served.
func TestQueuePositions(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.RingTimeout = time.Hour })
	ten := h.tenant("t", TenantSettings{VIPPriority: true}, "")
	a := h.agent(ten, "alice")
	if err := h.svc.SetAgentStatus(ctx, a.AgentID, StatusAway); err != nil {
		t.Fatal(err)
	}
	const n = 30
	var sessions []*CustomerSession
	var calls []int64
	for i := 0; i < n; i++ {
		level := "normal"
		if i == n-1 {
			level = "vip" // the last to arrive jumps the queue
		}
		c := h.customer(ten, map[string]any{"customerInfo": map[string]any{"level": level}})
		info, err := h.svc.PlaceCall(ctx, c, PlaceCallRequest{})
		if err != nil {
			t.Fatal(err)
		}
		sessions, calls = append(sessions, c), append(calls, info.CallID)
	}
	want := func(i int) int {
		if i == n-1 {
			return 1
		}
		return i + 2
	}
	for i, c := range sessions {
		h.eventually("position", func() bool { return h.lastPosition(cust(c)) == want(i) })
	}
	// The second normal customer leaves: everyone behind moves up one.
	if err := h.svc.LeaveQueue(ctx, sessions[1], calls[1]); err != nil {
		t.Fatal(err)
	}
	for i := 2; i < n-1; i++ {
		c := sessions[i]
		h.eventually("moved up", func() bool { return h.lastPosition(cust(c)) == i+1 })
	}
	// The agent comes back: the VIP is rung first.
	if err := h.svc.SetAgentStatus(ctx, a.AgentID, StatusOnline); err != nil {
		t.Fatal(err)
	}
	ring := h.wait(agt(a), EventCallRinging).Data.(IncomingData)
	if ring.CallID != calls[n-1] {
		t.Fatalf("rang call %d, want the VIP's %d", ring.CallID, calls[n-1])
	}
	h.eventually("first normal at head", func() bool { return h.lastPosition(cust(sessions[0])) == 1 })
	var pos QueuePositionData
	h.eventually("estimate", func() bool {
		h.ev.mu.Lock()
		defer h.ev.mu.Unlock()
		list := h.ev.byWho[cust(sessions[2])]
		pos = list[len(list)-1].Data.(QueuePositionData)
		return pos.Position == 2
	})
	if pos.EstimatedWaitMS != 2*h.cfg.EstimatedCallDuration.Milliseconds() {
		t.Fatalf("estimated wait = %d", pos.EstimatedWaitMS)
	}
	if got := h.svc.ActiveCalls(); got != n-1 {
		t.Fatalf("active calls = %d", got)
	}
	var m dto.Metric
	if err := h.svc.m.queueLen.WithLabelValues(itoa(int(ten.ID)), "0").Write(&m); err != nil ||
		m.GetGauge().GetValue() != n-2 {
		t.Fatalf("queue length gauge = %v, %v", m.GetGauge().GetValue(), err)
	}
	if err := h.svc.m.calls.WithLabelValues(itoa(ResultAbandoned)).Write(&m); err != nil || m.GetCounter().GetValue() != 1 {
		t.Fatalf("abandoned calls counter = %v, %v", m.GetCounter().GetValue(), err)
	}
}

// TestNoAnswerRingsNextAgent: the longest-idle agent is rung first; when it
// does not answer the call goes to the other agent.
func TestNoAnswerRingsNextAgent(t *testing.T) {
	h := newHarness(t)
	ten := h.tenant("t", TenantSettings{}, "")
	first := h.agent(ten, "first")
	second := h.agent(ten, "second")
	c := h.customer(ten, nil)
	info, err := h.svc.PlaceCall(ctx, c, PlaceCallRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r := h.wait(agt(first), EventCallRinging).Data.(IncomingData); r.CallID != info.CallID {
		t.Fatalf("first rang %d", r.CallID)
	}
	h.wait(agt(first), EventRingCancelled)
	h.wait(cust(c), EventCallQueued)
	h.wait(agt(second), EventCallRinging)
	if err := h.svc.Answer(ctx, first.AgentID, info.CallID); CodeOf(err) != CodeInvalidState {
		t.Fatalf("late answer by first: %v", err)
	}
	if err := h.svc.Answer(ctx, second.AgentID, info.CallID); err != nil {
		t.Fatal(err)
	}
	if err := h.svc.Hangup(ctx, agt(second), info.CallID); err != nil {
		t.Fatal(err)
	}
	if rec := h.call(info.CallID); rec.ResultCode != ResultAnswered || rec.AgentID != second.AgentID {
		t.Fatalf("record = %+v", rec)
	}
}

func TestGroupsDirectAndTransfer(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.RingTimeout = time.Hour })
	ten := h.tenant("t", TenantSettings{Stores: []StoreInfo{}}, "")
	sales := h.group(ten.ID, "sales")
	support := h.group(ten.ID, "support")
	s1 := h.agent(ten, "s1", sales)
	p1 := h.agent(ten, "p1", support)
	p2 := h.agent(ten, "p2", support)

	// callDirect to a group.
	c := h.customer(ten, map[string]any{"callDirect": map[string]any{"enable": true, "agentGroupId": sales}})
	info, err := h.svc.PlaceCall(ctx, c, PlaceCallRequest{})
	if err != nil {
		t.Fatal(err)
	}
	h.wait(agt(s1), EventCallRinging)
	if err := h.svc.Answer(ctx, s1.AgentID, info.CallID); err != nil {
		t.Fatal(err)
	}
	// Transfer to a named agent of the other group: the customer stays.
	wantCode(t, h.svc.Transfer(ctx, s1.AgentID, info.CallID, TransferTarget{}), CodeBadRequest)
	if err := h.svc.Transfer(ctx, s1.AgentID, info.CallID, TransferTarget{AgentID: p2.AgentID}); err != nil {
		t.Fatal(err)
	}
	h.wait(cust(c), EventCallTransfered)
	in := h.wait(agt(p2), EventCallRinging).Data.(IncomingData)
	if !in.Transferred {
		t.Fatal("transfer not flagged")
	}
	if err := h.svc.Answer(ctx, p2.AgentID, info.CallID); err != nil {
		t.Fatal(err)
	}
	h.rooms.mu.Lock()
	_, open := h.rooms.open[roomName(info.CallID)]
	h.rooms.mu.Unlock()
	if !open {
		t.Fatal("room closed during transfer")
	}
	if _, err := h.svc.SendChat(ctx, agt(s1), info.CallID, "gone"); CodeOf(err) != CodeForbidden {
		t.Fatalf("old agent chat: %v", err)
	}
	// The new agent drops off: the call ends as answered.
	if err := h.svc.SetAgentStatus(ctx, p2.AgentID, StatusOffline); err != nil {
		t.Fatal(err)
	}
	if ended := h.wait(cust(c), EventCallEnded).Data.(EndedData); ended.ResultCode != ResultAnswered {
		t.Fatalf("ended = %+v", ended)
	}
	if rec := h.call(info.CallID); rec.AgentID != p2.AgentID || rec.GroupID != 0 {
		t.Fatalf("record after transfer = %+v", rec)
	}

	// callDirect to a named agent who is busy waits for that agent only.
	c2 := h.customer(ten, map[string]any{"callDirect": map[string]any{"enable": true, "agentId": p1.AgentID}})
	c3 := h.customer(ten, nil)
	i2, err := h.svc.PlaceCall(ctx, c2, PlaceCallRequest{})
	if err != nil {
		t.Fatal(err)
	}
	h.wait(agt(p1), EventCallRinging)
	i3, err := h.svc.PlaceCall(ctx, c3, PlaceCallRequest{GroupID: support})
	if err != nil {
		t.Fatal(err)
	}
	h.eventually("support call waiting", func() bool { return h.lastPosition(cust(c3)) == 1 })
	if got := h.call(i3.CallID).State; got != store.CallQueued {
		t.Fatalf("state = %s", got)
	}
	if err := h.svc.Hangup(ctx, cust(c2), i2.CallID); err != nil {
		t.Fatal(err)
	}
	if r := h.wait(agt(p1), EventCallRinging).Data.(IncomingData); r.CallID != i3.CallID {
		t.Fatalf("p1 rang %d", r.CallID)
	}
}

func TestConcurrentCallsPerAgent(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.RingTimeout = time.Hour; c.DefaultMaxCalls = 2 })
	ten := h.tenant("t", TenantSettings{}, "")
	a := h.agent(ten, "a")
	var ids []int64
	for i := 0; i < 3; i++ {
		c := h.customer(ten, nil)
		info, err := h.svc.PlaceCall(ctx, c, PlaceCallRequest{})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, info.CallID)
	}
	h.wait(agt(a), EventCallRinging)
	h.wait(agt(a), EventCallRinging)
	if h.svc.AgentStatus(a.AgentID) != StatusBusy {
		t.Fatalf("status = %s", h.svc.AgentStatus(a.AgentID))
	}
	if got := h.call(ids[2]).State; got != store.CallQueued {
		t.Fatalf("third call %s, want queued", got)
	}
	_, err := h.svc.PlaceCall(ctx, h.customer(ten, nil), PlaceCallRequest{AgentID: a.AgentID + 99})
	wantCode(t, err, CodeNoAgentOnline)
}

// TestAbsentAgentSetAway: an agent who lets rings time out goes to the back
// of the idle order and, after away_after_missed, away.
func TestAbsentAgentSetAway(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.AwayAfterMissed = 2; c.MaxRingAttempts = 10 })
	ten := h.tenant("t", TenantSettings{}, "")
	absent := h.agent(ten, "absent")
	c := h.customer(ten, nil)
	info, err := h.svc.PlaceCall(ctx, c, PlaceCallRequest{})
	if err != nil {
		t.Fatal(err)
	}
	h.wait(agt(absent), EventCallRinging)
	h.wait(agt(absent), EventCallRinging) // the only agent: rung again
	st := h.wait(agt(absent), EventAgentStatus).Data.(AgentStatusData)
	if st.Status != StatusAway || h.svc.AgentStatus(absent.AgentID) != StatusAway {
		t.Fatalf("status = %+v", st)
	}
	present := h.agent(ten, "present")
	h.wait(agt(present), EventCallRinging)
	if err := h.svc.Answer(ctx, present.AgentID, info.CallID); err != nil {
		t.Fatal(err)
	}
}
