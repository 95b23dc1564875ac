package callcenter

import (
	"testing"
	"time"

	"github.com/avs/avs/store"
)

// TestResultCodes walks the customer flow from auth to the end for every
// resultCode and checks the record, the webhook body and what the client
// is told.
func TestResultCodes(t *testing.T) {
	tests := []struct {
		name     string
		cfg      func(*Config)
		survey   bool
		agentOff bool // agent away: the call stays queued
		play     func(h *harness, c *CustomerSession, a *AgentSession, callID int64)
		code     int
		nav      int
	}{
		{name: "abandoned in queue", agentOff: true, code: ResultAbandoned, nav: NavigateCallEnded,
			play: func(h *harness, c *CustomerSession, a *AgentSession, id int64) {
				if err := h.svc.LeaveQueue(ctx, c, id); err != nil {
					h.t.Fatal(err)
				}
			}},
		{name: "queue timeout", agentOff: true, code: ResultQueueTimeout, nav: NavigateCallEnded,
			cfg:  func(c *Config) { c.QueueTimeout = 300 * time.Millisecond },
			play: func(h *harness, c *CustomerSession, a *AgentSession, id int64) {}},
		{name: "customer hung up while ringing", code: ResultCustomerHungUp, nav: NavigateCallEnded,
			play: func(h *harness, c *CustomerSession, a *AgentSession, id int64) {
				h.wait(agt(a), EventCallRinging)
				if err := h.svc.Hangup(ctx, cust(c), id); err != nil {
					h.t.Fatal(err)
				}
				h.wait(agt(a), EventRingCancelled)
			}},
		{name: "agent answered", code: ResultAnswered, nav: NavigateCallEnded,
			play: func(h *harness, c *CustomerSession, a *AgentSession, id int64) {
				h.wait(agt(a), EventCallRinging)
				if err := h.svc.Answer(ctx, a.AgentID, id); err != nil {
					h.t.Fatal(err)
				}
				h.wait(cust(c), EventCallConnected)
				if err := h.svc.Hangup(ctx, agt(a), id); err != nil {
					h.t.Fatal(err)
				}
			}},
		{name: "agent answered with survey", survey: true, code: ResultAnswered, nav: 0,
			play: func(h *harness, c *CustomerSession, a *AgentSession, id int64) {
				h.wait(agt(a), EventCallRinging)
				if err := h.svc.Answer(ctx, a.AgentID, id); err != nil {
					h.t.Fatal(err)
				}
				if err := h.svc.Hangup(ctx, cust(c), id); err != nil {
					h.t.Fatal(err)
				}
			}},
		{name: "agent did not answer", code: ResultNoAnswer, nav: NavigateCallEnded,
			cfg:  func(c *Config) { c.OnNoAnswer = OnNoAnswerEnd },
			play: func(h *harness, c *CustomerSession, a *AgentSession, id int64) { h.wait(agt(a), EventRingCancelled) }},
		{name: "agent rejected every ring", code: ResultNoAnswer, nav: NavigateCallEnded,
			cfg: func(c *Config) { c.MaxRingAttempts = 2; c.RingTimeout = time.Hour },
			play: func(h *harness, c *CustomerSession, a *AgentSession, id int64) {
				for i := 0; i < 2; i++ {
					h.wait(agt(a), EventCallRinging)
					if err := h.svc.Reject(ctx, a.AgentID, id); err != nil {
						h.t.Fatal(err)
					}
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mods := []func(*Config){}
			if tt.cfg != nil {
				mods = append(mods, tt.cfg)
			}
			h := newHarness(t, mods...)
			settings := TenantSettings{Survey: SurveyConfig{Enabled: tt.survey, ResolveOptions: []string{"已解决", "未解决"}}}
			ten := h.tenant("t1", settings, "http://receiver.invalid/hook")
			a := h.agent(ten, "alice")
			if tt.agentOff {
				if err := h.svc.SetAgentStatus(ctx, a.AgentID, StatusAway); err != nil {
					t.Fatal(err)
				}
			}
			c := h.customer(ten, map[string]any{"bizId": "order-1", "voiceOnly": true,
				"customerInfo": map[string]any{"nickName": "Bob", "customerToken": "ext-1",
					"telephones": []map[string]any{{"id": nil, "content": "13312223333"}}}})
			if c.NavigateType != 0 || c.CallTimesLeft != -1 || !c.Open || len(c.ICEServers) != 1 {
				t.Fatalf("session = %+v", c)
			}
			info, err := h.svc.PlaceCall(ctx, c, PlaceCallRequest{})
			if err != nil {
				t.Fatal(err)
			}
			h.wait(cust(c), EventCallQueued)
			tt.play(h, c, a, info.CallID)
			ended := h.wait(cust(c), EventCallEnded).Data.(EndedData)
			if ended.ResultCode != tt.code || ended.NavigateType != tt.nav {
				t.Fatalf("ended = %+v, want code %d nav %d", ended, tt.code, tt.nav)
			}
			rec := h.call(info.CallID)
			if rec.State != store.CallEnded || rec.ResultCode != tt.code || rec.BizID != "order-1" || !rec.VoiceOnly {
				t.Fatalf("record = %+v", rec)
			}
			bodies := h.deliveries(info.CallID)
			if len(bodies) != 1 {
				t.Fatalf("deliveries = %d", len(bodies))
			}
			vc := bodies[0]["videoCall"].(map[string]any)
			if vc["resultCode"].(float64) != float64(tt.code) || bodies[0]["bizId"] != "order-1" {
				t.Fatalf("webhook body = %v", bodies[0])
			}
			if _, err := time.Parse("2006-01-02T15:04:05.000-07:00", vc["dialTime"].(string)); err != nil {
				t.Fatalf("dialTime: %v", err)
			}
			if _, ok := vc["queueDuration"].(string); !ok {
				t.Fatalf("queueDuration not a string: %v", vc["queueDuration"])
			}
			if tt.code == ResultAnswered {
				if h.rooms.closed[0] != roomName(info.CallID) {
					t.Fatalf("room not closed: %v", h.rooms.closed)
				}
				if bodies[0]["agent"] == nil {
					t.Fatal("webhook without agent")
				}
			}
			if tt.survey {
				nav, err := h.svc.SubmitSurvey(ctx, c, info.CallID, SurveyAnswer{Resolved: "已解决",
					Labels: []string{"速度快", "态度温柔"}, Remark: "abc", Description: "d"})
				if err != nil || nav != NavigateSurveyDone {
					t.Fatalf("survey: %d %v", nav, err)
				}
				_, err = h.svc.SubmitSurvey(ctx, c, info.CallID, SurveyAnswer{})
				wantCode(t, err, CodeInvalidState)
				bodies = h.deliveries(info.CallID)
				vc = bodies[1]["videoCall"].(map[string]any)
				if len(bodies) != 2 || vc["surveryResolveResult"] != "已解决" || vc["surveryLables"] != "速度快,态度温柔" {
					t.Fatalf("survey webhook = %v", bodies)
				}
			}
			// The agent is free again.
			h.eventually("agent idle", func() bool { return h.svc.AgentStatus(a.AgentID) != StatusBusy })
		})
	}
}

func TestVoiceOnlyRoomAndChat(t *testing.T) {
	h := newHarness(t)
	ten := h.tenant("t1", TenantSettings{}, "")
	a := h.agent(ten, "alice")
	c := h.customer(ten, map[string]any{"voiceOnly": true})
	info, err := h.svc.PlaceCall(ctx, c, PlaceCallRequest{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.svc.SendChat(ctx, cust(c), info.CallID, "too early")
	wantCode(t, err, CodeInvalidState)
	h.wait(agt(a), EventCallRinging)
	if err := h.svc.Answer(ctx, a.AgentID, info.CallID); err != nil {
		t.Fatal(err)
	}
	h.rooms.mu.Lock()
	voice, ok := h.rooms.open[roomName(info.CallID)]
	h.rooms.mu.Unlock()
	if !ok || !voice {
		t.Fatalf("room open=%v voiceOnly=%v", ok, voice)
	}
	for i := 0; i < 4; i++ {
		p := cust(c)
		if i%2 == 1 {
			p = agt(a)
		}
		if _, err := h.svc.SendChat(ctx, p, info.CallID, "msg"+itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	got := h.wait(agt(a), EventChatMessage).Data.(ChatMessage)
	if got.Body != "msg0" || got.SenderRole != RoleCustomer {
		t.Fatalf("first chat = %+v", got)
	}
	_, err = h.svc.SendChat(ctx, Party{RoleAgent, a.AgentID + 100}, info.CallID, "intruder")
	wantCode(t, err, CodeForbidden)
	_, err = h.svc.SendChat(ctx, cust(c), info.CallID, "")
	wantCode(t, err, CodeBadRequest)

	page, err := h.svc.ChatHistory(ctx, c, 0)
	if err != nil || len(page.Messages) != 3 || !page.More || page.Messages[0].Body != "msg3" {
		t.Fatalf("page 1 = %+v, %v", page, err)
	}
	page, err = h.svc.ChatHistory(ctx, c, page.NextBefore)
	if err != nil || len(page.Messages) != 1 || page.More || page.Messages[0].Body != "msg0" {
		t.Fatalf("page 2 = %+v, %v", page, err)
	}
	if err := h.svc.Hangup(ctx, cust(c), info.CallID); err != nil {
		t.Fatal(err)
	}
	if rec := h.call(info.CallID); rec.ResultCode != ResultAnswered || rec.AnswerTime.IsZero() {
		t.Fatalf("record = %+v", rec)
	}
}

func TestCallTimesRunOut(t *testing.T) {
	h := newHarness(t)
	ten := h.tenant("t1", TenantSettings{}, "")
	h.agent(ten, "alice")
	opts := map[string]any{"bizId": "claim-7", "callTimes": 1,
		"customerInfo": map[string]any{"customerToken": "ext-9"}}
	c := h.customer(ten, opts)
	if c.CallTimesLeft != 1 {
		t.Fatalf("left = %d", c.CallTimesLeft)
	}
	info, err := h.svc.PlaceCall(ctx, c, PlaceCallRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if info.CallsLeft != 0 {
		t.Fatalf("calls left after placing = %d", info.CallsLeft)
	}
	if err := h.svc.LeaveQueue(ctx, c, info.CallID); err != nil {
		t.Fatal(err)
	}
	_, err = h.svc.PlaceCall(ctx, c, PlaceCallRequest{})
	wantCode(t, err, CodeNoCallTimes)
	if e := err.(*Error); e.NavigateType != NavigateNoCallTimes {
		t.Fatalf("navigateType = %d", e.NavigateType)
	}
	// Entering again with the same bizId does not reset the count, even
	// with a larger callTimes.
	opts["callTimes"] = 5
	again := h.customer(ten, opts)
	if again.NavigateType != NavigateNoCallTimes || again.CallTimesLeft != 0 || again.CustomerID != c.CustomerID {
		t.Fatalf("re-entry = %+v", again)
	}
	// Another bizId is another entry.
	opts["bizId"] = "claim-8"
	if other := h.customer(ten, opts); other.CallTimesLeft != 5 {
		t.Fatalf("other entry left = %d", other.CallTimesLeft)
	}
}

func TestNoAgentAndWorkingHours(t *testing.T) {
	h := newHarness(t)
	closed := TenantSettings{WorkingHours: WorkingHours{Timezone: "Asia/Shanghai",
		Weekly: map[string][]Span{}, Holidays: nil}, OfflineForm: &Form{Title: "leave a message",
		Fields: []FormField{{Name: "phone", Type: "phone", Required: true}}}}
	closed.WorkingHours.Weekly["mon"] = []Span{{Start: "09:00", End: "18:00"}}
	sh, _ := time.LoadLocation("Asia/Shanghai")
	for d := -1; d <= 1; d++ { // today in Shanghai is a holiday, whatever the test machine's date
		closed.WorkingHours.Holidays = append(closed.WorkingHours.Holidays,
			time.Now().In(sh).AddDate(0, 0, d).Format(time.DateOnly))
	}
	ten := h.tenant("closed", closed, "")
	c := h.customer(ten, nil)
	if c.Open || !c.OfferOfflineForm {
		t.Fatalf("closed tenant session = %+v", c)
	}
	_, err := h.svc.PlaceCall(ctx, c, PlaceCallRequest{})
	wantCode(t, err, CodeOutsideWorkingHours)
	_, err = h.svc.SubmitForm(ctx, c, FormOffline, map[string]any{})
	wantCode(t, err, CodeBadRequest)
	id, err := h.svc.SubmitForm(ctx, c, FormOffline, map[string]any{"phone": "555", "ignored": "x"})
	if err != nil || id == 0 {
		t.Fatalf("offline form: %d %v", id, err)
	}
	tickets, err := h.st.ListFormSubmissions(ctx, ten.ID, true, 10, 0)
	if err != nil || len(tickets) != 1 || tickets[0].Answers != `{"phone":"555"}` {
		t.Fatalf("tickets = %+v, %v", tickets, err)
	}

	open := h.tenant("open", TenantSettings{}, "")
	c2 := h.customer(open, nil)
	_, err = h.svc.PlaceCall(ctx, c2, PlaceCallRequest{})
	wantCode(t, err, CodeNoAgentOnline)
}
