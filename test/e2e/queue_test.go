package e2e

import (
	"fmt"
	"strings"
	"testing"
)

// TestQueuePositionsWithManyWaitingCustomers queues twenty customers
// behind an away agent and checks that each learns its place, and its new
// place whenever someone ahead leaves or is served.
func TestQueuePositionsWithManyWaitingCustomers(t *testing.T) {
	const n = 20
	f := newFlow(t, options{})
	f.setAgentStatus(t, "away")

	type waiting struct {
		c    *client
		call placeReply
		pos  positionData // the last position pushed
	}
	queue := make([]*waiting, n)
	for i := range queue {
		c, _ := f.s.customer(entry(f.ten.Key, fmt.Sprintf("q-%02d", i), fmt.Sprintf("biz-q-%02d", i), 1))
		queue[i] = &waiting{c: c, call: c.place()}
		if queue[i].call.Position != i+1 {
			t.Fatalf("customer %d placed at position %d, want %d", i, queue[i].call.Position, i+1)
		}
	}
	// expect checks that every customer still waiting is told its place
	// (positions are pushed when they change), and that a later place
	// never promises a shorter wait.
	expect := func(what string) {
		t.Helper()
		var lastWait int64 = -1
		for i, w := range queue {
			if w.pos.Position != i+1 {
				decode(t, w.c.push("queue.position", func(m msg) bool {
					var d positionData
					decode(t, m.Data, &d)
					return d.CallID == w.call.CallID && d.Position == i+1
				}).Data, &w.pos)
			}
			if w.pos.EstimatedWaitMs < lastWait {
				t.Fatalf("%s: position %d estimates %d ms, less than the place ahead (%d ms)", what, i+1, w.pos.EstimatedWaitMs, lastWait)
			}
			lastWait = w.pos.EstimatedWaitMs
		}
	}
	expect("all placed")

	leave := func(i int) {
		t.Helper()
		w := queue[i]
		w.c.mustReply("call.leave", map[string]int64{"callId": w.call.CallID})
		if e := w.c.ended(w.call.CallID); e.ResultCode != 1 {
			t.Fatalf("left the queue with resultCode %d", e.ResultCode)
		}
		queue = append(queue[:i], queue[i+1:]...)
	}
	leave(0) // the head leaves: everyone moves up
	expect("the head left")
	leave(9) // one in the middle: only those behind move up
	expect("one in the middle left")
	leave(len(queue) - 1) // the last: nobody moves
	expect("the last left")

	// The agent comes back: the head is rung and leaves the queue.
	f.setAgentStatus(t, "online")
	head := queue[0]
	head.c.push("call.ringing", forCall(head.call.CallID))
	f.agent.push("call.ringing", forCall(head.call.CallID))
	queue = queue[1:]
	expect("the head is ringing")

	// The head's call is answered and hung up; the agent takes the next.
	f.agent.mustReply("call.answer", map[string]int64{"callId": head.call.CallID})
	head.c.push("call.connected", forCall(head.call.CallID))
	head.c.mustReply("call.hangup", map[string]int64{"callId": head.call.CallID})
	if e := head.c.ended(head.call.CallID); e.ResultCode != 4 {
		t.Fatalf("served call ended with resultCode %d", e.ResultCode)
	}
	next := queue[0]
	f.agent.push("call.ringing", forCall(next.call.CallID))
	next.c.push("call.ringing", forCall(next.call.CallID))
	queue = queue[1:]
	expect("the next is ringing")

	// The agent steps away before the rung customer hangs up, so nobody
	// else is rung; then everyone left ends their wait.
	f.setAgentStatus(t, "away")
	next.c.mustReply("call.hangup", map[string]int64{"callId": next.call.CallID})
	if e := next.c.ended(next.call.CallID); e.ResultCode != 3 {
		t.Fatalf("hung up while ringing with resultCode %d", e.ResultCode)
	}
	for len(queue) > 0 {
		leave(0)
	}
}

// TestResumeInQueue loses a queued customer's socket; while it is away its
// call starts ringing. The customer resumes on a new socket, gets the
// missed pushes in order, keeps its call and is connected.
func TestResumeInQueue(t *testing.T) {
	f := newFlow(t, options{})
	f.setAgentStatus(t, "away")
	cust, auth := f.s.customer(entry(f.ten.Key, "crm-r", "biz-r", 1))
	call := cust.place()
	cust.push("queue.position", forCall(call.CallID))
	seen := cust.seq()
	cust.drop()

	f.setAgentStatus(t, "online")
	f.agent.push("call.ringing", forCall(call.CallID))

	again := dial(t, f.s.ws)
	m := again.mustReply("session.resume", map[string]any{"resumeToken": auth.Session.ResumeToken, "lastSeq": seen})
	var rr struct {
		Replayed int  `json:"replayed"`
		Gap      bool `json:"gap"`
	}
	decode(t, m.Data, &rr)
	if rr.Gap || rr.Replayed < 1 || m.Session == nil || m.Session.PartyID != auth.Session.PartyID {
		t.Fatalf("resume reply %s %+v", m.Data, m.Session)
	}
	if m.Session.ResumeToken == auth.Session.ResumeToken {
		t.Fatal("the resume token did not change")
	}
	ring := again.push("call.ringing", forCall(call.CallID))
	if ring.Seq <= seen {
		t.Fatalf("replayed push seq %d after lastSeq %d", ring.Seq, seen)
	}
	// The old token is used up.
	dial(t, f.s.ws).mustError("session.resume", map[string]any{"resumeToken": auth.Session.ResumeToken, "lastSeq": 0}, "resume_failed")

	f.agent.mustReply("call.answer", map[string]int64{"callId": call.CallID})
	again.push("call.connected", forCall(call.CallID))
	if rec := f.s.call(call.CallID); rec.State != "connected" {
		t.Fatalf("call state %q after resume and answer", rec.State)
	}
	again.mustReply("call.hangup", map[string]int64{"callId": call.CallID})
	if e := again.ended(call.CallID); e.ResultCode != 4 {
		t.Fatalf("resultCode %d", e.ResultCode)
	}
}

// TestResumeInCall resumes a connected customer on a second socket while
// the first is still open (the client noticed the loss first): the first
// is closed with 4001, the call and its chat go on, and the pushes sent
// meanwhile arrive. The agent's console is lost and resumed too.
func TestResumeInCall(t *testing.T) {
	f := newFlow(t, options{})
	cust, auth := f.s.customer(entry(f.ten.Key, "crm-c", "biz-c", 1))
	call := cust.place()
	f.agent.push("call.ringing", forCall(call.CallID))
	agentSeen := f.agent.seq()
	f.agent.mustReply("call.answer", map[string]int64{"callId": call.CallID})
	cust.push("call.connected", forCall(call.CallID))
	seen := cust.seq()

	// The agent's socket drops too, and its console comes back.
	f.agent.drop()
	console := dial(t, f.s.ws)
	console.mustReply("session.resume", map[string]any{"resumeToken": f.agent.resumeToken(), "lastSeq": agentSeen})
	console.push("call.connected", forCall(call.CallID))

	console.mustReply("chat.send", map[string]any{"callId": call.CallID, "text": "still there?"})
	again := dial(t, f.s.ws)
	again.mustReply("session.resume", map[string]any{"resumeToken": auth.Session.ResumeToken, "lastSeq": seen})
	if code := cust.closed(); code != 4001 {
		t.Fatalf("the replaced socket closed with %d, want 4001", code)
	}
	var chat struct {
		Body       string `json:"body"`
		SenderRole string `json:"senderRole"`
	}
	decode(t, again.push("chat.message", forCall(call.CallID)).Data, &chat)
	if chat.Body != "still there?" || chat.SenderRole != "agent" {
		t.Fatalf("chat after resume %+v", chat)
	}
	again.mustReply("chat.send", map[string]any{"callId": call.CallID, "text": "yes"})
	console.push("chat.message", func(m msg) bool { return callIDOf(m) == call.CallID && strings.Contains(string(m.Data), `"yes"`) })
	if rec := f.s.call(call.CallID); rec.State != "connected" {
		t.Fatalf("call state %q after both resumed", rec.State)
	}
	console.mustReply("call.hangup", map[string]int64{"callId": call.CallID})
	if e := again.ended(call.CallID); e.ResultCode != 4 || e.By != "agent" {
		t.Fatalf("call.ended %+v", e)
	}
	if rec := f.s.call(call.CallID); rec.ResultCode != 4 {
		t.Fatalf("resultCode %d", rec.ResultCode)
	}
}

// TestResumeLimits covers the ends of a session: pushes beyond the resume
// buffer are reported as a gap, a session not resumed within its grace
// ends its call, and session.close ends it at once.
func TestResumeLimits(t *testing.T) {
	t.Run("gap beyond the resume buffer", func(t *testing.T) {
		f := newFlow(t, options{signaling: "resume_buffer = 4"})
		cust, auth := f.s.customer(entry(f.ten.Key, "crm-g", "biz-g", 1))
		call := cust.place()
		f.agent.push("call.ringing", forCall(call.CallID))
		f.agent.mustReply("call.answer", map[string]int64{"callId": call.CallID})
		cust.push("call.connected", forCall(call.CallID))
		seen := cust.seq()
		cust.drop()
		const n = 10
		for i := range n {
			f.agent.mustReply("chat.send", map[string]any{"callId": call.CallID, "text": fmt.Sprintf("message %d", i)})
		}
		again := dial(t, f.s.ws)
		var rr struct {
			Replayed int  `json:"replayed"`
			Gap      bool `json:"gap"`
		}
		m := again.mustReply("session.resume", map[string]any{"resumeToken": auth.Session.ResumeToken, "lastSeq": seen})
		decode(t, m.Data, &rr)
		if !rr.Gap || rr.Replayed > 4 {
			t.Fatalf("resume after %d pushes with a buffer of 4: %s", n, m.Data)
		}
		// What the gap lost is in the history.
		var page struct {
			Messages []struct {
				Body string `json:"body"`
			} `json:"messages"`
		}
		decode(t, again.mustReply("chat.history", nil).Data, &page)
		if len(page.Messages) != n || page.Messages[0].Body != fmt.Sprintf("message %d", n-1) {
			t.Fatalf("history after the gap: %+v", page.Messages)
		}
		again.mustReply("call.hangup", map[string]int64{"callId": call.CallID})
		again.ended(call.CallID)
	})

	t.Run("grace over ends the queued call", func(t *testing.T) {
		f := newFlow(t, options{signaling: `resume_grace = "500ms"`})
		f.setAgentStatus(t, "away")
		cust, auth := f.s.customer(entry(f.ten.Key, "crm-e", "biz-e", 1))
		call := cust.place()
		cust.drop()
		eventually(t, "the abandoned call ended", func() bool { return f.s.call(call.CallID).State == "ended" })
		if rec := f.s.call(call.CallID); rec.ResultCode != 1 {
			t.Fatalf("resultCode %d, want 1", rec.ResultCode)
		}
		dial(t, f.s.ws).mustError("session.resume", map[string]any{"resumeToken": auth.Session.ResumeToken, "lastSeq": 0}, "resume_failed")
		f.rc.accepted(t, "call.ended", call.CallID)
	})

	t.Run("session.close leaves at once", func(t *testing.T) {
		f := newFlow(t, options{})
		f.setAgentStatus(t, "away")
		cust, auth := f.s.customer(entry(f.ten.Key, "crm-x", "biz-x", 1))
		call := cust.place()
		cust.mustReply("session.close", nil)
		if code := cust.closed(); code != 1000 {
			t.Fatalf("close code %d, want 1000", code)
		}
		eventually(t, "the call ended", func() bool { return f.s.call(call.CallID).State == "ended" })
		if rec := f.s.call(call.CallID); rec.ResultCode != 1 {
			t.Fatalf("resultCode %d, want 1", rec.ResultCode)
		}
		dial(t, f.s.ws).mustError("session.resume", map[string]any{"resumeToken": auth.Session.ResumeToken, "lastSeq": 0}, "resume_failed")
	})
}
