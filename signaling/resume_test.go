package signaling

import (
	"testing"
	"time"
)

func TestResumeWithinGraceKeepsTheSession(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial(t)
	auth := c.mustReply("customer.auth", authData{ID: 10})
	c.mustReply("call.place", nil)
	qp := c.push("queue.position")
	c.mustReply("media.join", nil)

	// The socket dies without a close handshake.
	_ = c.ws.NetConn().Close()
	p := Party{RoleCustomer, 10}
	eventually(t, "session detached", func() bool {
		ss := e.srv.sessionsOf(p)
		if len(ss) != 1 {
			return false
		}
		ss[0].mu.Lock()
		defer ss[0].mu.Unlock()
		return ss[0].conn == nil
	})
	// Pushes made while disconnected wait for the client.
	if n := e.srv.Push(p, "queue.position", map[string]int{"position": 0}); n != 1 {
		t.Fatalf("push taken by %d sessions", n)
	}
	e.srv.Push(p, "call.ringing", map[string]int{"agentId": 3})

	c2 := e.dial(t)
	m := c2.mustReply("session.resume", map[string]any{"resumeToken": auth.Session.ResumeToken, "lastSeq": qp.Seq})
	if m.Session == nil || m.Session.ResumeToken == auth.Session.ResumeToken || m.Session.ID != auth.Session.ID {
		t.Fatalf("resume session block %+v (was %+v)", m.Session, auth.Session)
	}
	var rr resumeReply
	decode(t, m.Data, &rr)
	if rr.Replayed != 2 || rr.Gap {
		t.Fatalf("resume reply %+v", rr)
	}
	if got := c2.push("queue.position"); got.Seq != qp.Seq+1 {
		t.Errorf("replayed seq %d, want %d", got.Seq, qp.Seq+1)
	}
	c2.push("call.ringing")
	// The media session survived the socket.
	if m := c2.mustReply("media.offer", sdpData{SDP: "offer"}); string(m.Data) != `{"sdp":"answer-to-offer"}` {
		t.Errorf("offer reply %s", m.Data)
	}
	c2.push("media.offer")
	c2.push("media.candidate")
	if n := e.media.openSessions(); n != 1 {
		t.Errorf("%d media sessions, want 1", n)
	}
	select {
	case ev := <-e.h.ended:
		t.Fatalf("session ended: %+v", ev)
	default:
	}
	// The old token is spent.
	c3 := e.dial(t)
	c3.mustError("session.resume", map[string]any{"resumeToken": auth.Session.ResumeToken}, CodeResumeFailed)
}

func TestResumeAfterGraceFails(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.ResumeGrace = 50 * time.Millisecond })
	c := e.dial(t)
	auth := c.mustReply("customer.auth", authData{ID: 11})
	c.mustReply("call.place", nil)
	c.mustReply("media.join", nil)
	_ = c.ws.Close()

	ev := e.h.waitEnded(t)
	if ev.reason != EndGraceExpired || ev.party != (Party{RoleCustomer, 11}) || ev.others != 0 {
		t.Fatalf("ended %+v", ev)
	}
	eventually(t, "media closed", func() bool { return e.media.openSessions() == 0 })
	c2 := e.dial(t)
	m := c2.mustError("session.resume", map[string]any{"resumeToken": auth.Session.ResumeToken}, CodeResumeFailed)
	if m.Error.Message == "" {
		t.Error("no message")
	}
	// The socket is still usable: the client authenticates afresh.
	c2.mustReply("customer.auth", authData{ID: 11})
	if n := e.srv.Push(Party{RoleCustomer, 11}, "x", nil); n != 1 {
		t.Errorf("push reached %d sessions", n)
	}
}

func TestResumeTakesOverALiveSocket(t *testing.T) {
	e := newEnv(t, nil)
	old := e.dial(t)
	auth := old.mustReply("agent.login", authData{ID: 20})
	c := e.dial(t)
	c.mustReply("session.resume", map[string]any{"resumeToken": auth.Session.ResumeToken, "lastSeq": 0})
	if code := old.closeCode(); code != CloseSessionTakenOver {
		t.Fatalf("old socket close code %d, want %d", code, CloseSessionTakenOver)
	}
	if n := e.srv.Push(Party{RoleAgent, 20}, "call.ringing", nil); n != 1 {
		t.Fatalf("push reached %d sessions", n)
	}
	c.push("call.ringing")
}

func TestResumeReportsAGap(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.ResumeBuffer = 4 })
	c := e.dial(t)
	auth := c.mustReply("agent.login", authData{ID: 21})
	_ = c.ws.Close()
	p := Party{RoleAgent, 21}
	for i := range 10 {
		e.srv.Push(p, "queue.position", map[string]int{"position": i})
	}
	c2 := e.dial(t)
	m := c2.mustReply("session.resume", map[string]any{"resumeToken": auth.Session.ResumeToken, "lastSeq": 0})
	var rr resumeReply
	decode(t, m.Data, &rr)
	if rr.Replayed != 4 || !rr.Gap {
		t.Fatalf("resume reply %+v, want 4 replayed and a gap", rr)
	}
	if last := m.Session.LastSeq; last != 10 {
		t.Errorf("lastSeq %d, want 10", last)
	}
}

func TestPushRing(t *testing.T) {
	r := newPushRing(3)
	for seq := uint64(1); seq <= 5; seq++ {
		r.add(seq, []byte{byte(seq)})
	}
	tests := []struct {
		after   uint64
		want    []byte
		wantGap bool
	}{
		{0, []byte{3, 4, 5}, true},
		{1, []byte{3, 4, 5}, true},
		{2, []byte{3, 4, 5}, false},
		{4, []byte{5}, false},
		{5, nil, false},
	}
	for _, tt := range tests {
		got, gap := r.since(tt.after)
		var flat []byte
		for _, b := range got {
			flat = append(flat, b...)
		}
		if string(flat) != string(tt.want) || gap != tt.wantGap {
			t.Errorf("since(%d) = %v gap %v, want %v gap %v", tt.after, flat, gap, tt.want, tt.wantGap)
		}
	}
}

func TestMediaSignaling(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial(t)
	c.mustReply("customer.auth", authData{ID: 30})
	c.mustError("media.join", nil, CodeNoCall)
	c.mustError("media.offer", sdpData{SDP: "o"}, CodeNoCall)
	c.mustReply("call.place", nil)
	m := c.mustReply("media.join", nil)
	var jr joinReply
	decode(t, m.Data, &jr)
	if jr.Room != "room-1" || jr.ParticipantID != "customer-30" {
		t.Fatalf("join reply %+v", jr)
	}
	c.mustReply("media.join", nil) // idempotent
	tests := []struct {
		typ  string
		data any
		code string
	}{
		{"media.candidate", map[string]any{"target": "pub", "candidate": map[string]any{"candidate": "candidate:1 1 udp 1 10.0.0.1 9 typ host"}}, ""},
		{"media.candidate", map[string]any{"target": "side", "candidate": map[string]any{}}, CodeBadRequest},
		{"media.candidate", nil, CodeBadRequest},
		{"media.answer", sdpData{SDP: "a"}, ""},
		{"media.offer", "not an object", CodeBadRequest},
	}
	for _, tt := range tests {
		if tt.code == "" {
			c.mustReply(tt.typ, tt.data)
		} else {
			c.mustError(tt.typ, tt.data, tt.code)
		}
	}
	e.media.mu.Lock()
	joined := append([]string(nil), e.media.joined...)
	e.media.mu.Unlock()
	if len(joined) != 1 || joined[0] != "room-1/customer-30" {
		t.Errorf("joined %v", joined)
	}
	// The business layer ends the call: media closes, joining is refused.
	e.srv.SetMediaRoom(Party{RoleCustomer, 30}, "", false)
	eventually(t, "media closed", func() bool { return e.media.openSessions() == 0 })
	c.mustError("media.join", nil, CodeNoCall)
}

func TestMediaEndedBySFU(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial(t)
	c.mustReply("customer.auth", authData{ID: 31})
	c.mustReply("call.place", nil)
	c.mustReply("media.join", nil)
	e.media.mu.Lock()
	sig := e.media.last.sig
	e.media.mu.Unlock()
	// The participant left on its own (ICE failed): the client is told and
	// may join again.
	sig.(MediaEnder).MediaEnded()
	var d mediaEndedData
	decode(t, c.push("media.ended").Data, &d)
	if d.Room != "room-1" {
		t.Fatalf("media.ended %+v", d)
	}
	c.mustError("media.offer", sdpData{SDP: "o"}, CodeNoCall)
	c.mustReply("media.join", nil)
	if n := e.media.openSessions(); n != 1 {
		t.Fatalf("%d media sessions open", n)
	}
	// Late callbacks of the old participant are dropped.
	sig.ServerOffer("stale")
	c.mustReply("ping", nil)
	for _, m := range c.pushes {
		if m.Type == "media.offer" {
			t.Fatal("stale server offer delivered")
		}
	}
}
