package e2e

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// flow is one tenant with one agent on a fresh server, and a webhook
// receiver that accepts everything.
type flow struct {
	s     *server
	rc    *receiver
	ten   tenant
	ag    agentAccount
	agent *client
}

func newFlow(t *testing.T, o options) *flow {
	t.Helper()
	f := &flow{s: boot(t, o), rc: newReceiver(t, nil)}
	f.ten = f.s.createTenant("acme", f.rc.srv.URL, surveySettings)
	f.ag = f.s.createAgent(f.ten.ID, "ann")
	f.agent = f.s.agent(f.ag)
	return f
}

func (f *flow) setAgentStatus(t *testing.T, status string) {
	t.Helper()
	var out struct {
		Status string `json:"status"`
	}
	decode(t, f.agent.mustReply("agent.status", map[string]string{"status": status}).Data, &out)
	// An agent put online may be rung at once, which makes it busy.
	if out.Status != status && !(status == "online" && out.Status == "busy") {
		t.Fatalf("agent status %q, want %q", out.Status, status)
	}
}

// TestEveryResultCode runs the customer's flow from auth to the end of the
// call once per resultCode, and checks the push the customer gets, the
// call record of the admin API and the webhook the tenant receives.
func TestEveryResultCode(t *testing.T) {
	tests := []struct {
		name       string
		callcenter string
		away       bool // the agent keeps the queue open without taking calls
		drive      func(t *testing.T, f *flow, cust *client, call placeReply)
		want       int
		by         string
		rang       bool // an agent was rung, so the record and webhook name it
	}{
		{
			name: "1 abandoned in queue", away: true, want: 1, by: "customer",
			drive: func(t *testing.T, f *flow, cust *client, call placeReply) {
				cust.push("queue.position", forCall(call.CallID))
				cust.mustReply("call.leave", map[string]int64{"callId": call.CallID})
			},
		},
		{
			name: "2 queue timeout", callcenter: `queue_timeout = "1s"`, away: true, want: 2, by: "",
			drive: func(t *testing.T, f *flow, cust *client, call placeReply) {
				cust.push("queue.position", forCall(call.CallID))
			},
		},
		{
			name: "3 customer hung up while ringing", want: 3, by: "customer", rang: true,
			drive: func(t *testing.T, f *flow, cust *client, call placeReply) {
				cust.push("call.ringing", forCall(call.CallID))
				f.agent.push("call.ringing", forCall(call.CallID))
				cust.mustReply("call.hangup", map[string]int64{"callId": call.CallID})
				f.agent.push("call.ring_ended", forCall(call.CallID))
			},
		},
		{
			name: "4 answered", want: 4, by: "agent", rang: true,
			drive: func(t *testing.T, f *flow, cust *client, call placeReply) {
				f.agent.push("call.ringing", forCall(call.CallID))
				f.agent.mustReply("call.answer", map[string]int64{"callId": call.CallID})
				cust.push("call.connected", forCall(call.CallID))
				f.agent.push("call.connected", forCall(call.CallID))
				cust.mustReply("chat.send", map[string]any{"callId": call.CallID, "text": "你好"})
				f.agent.push("chat.message", forCall(call.CallID))
				f.agent.mustReply("call.hangup", map[string]int64{"callId": call.CallID})
				f.agent.push("call.ended", forCall(call.CallID))
			},
		},
		{
			name: "5 ring timed out", callcenter: "ring_timeout = \"300ms\"\non_no_answer = \"end\"", want: 5, rang: true,
			drive: func(t *testing.T, f *flow, cust *client, call placeReply) {
				f.agent.push("call.ringing", forCall(call.CallID))
				f.agent.push("call.ring_ended", forCall(call.CallID))
			},
		},
		{
			name: "5 agent rejected", callcenter: `on_no_answer = "end"`, want: 5, rang: true,
			drive: func(t *testing.T, f *flow, cust *client, call placeReply) {
				f.agent.push("call.ringing", forCall(call.CallID))
				f.agent.mustReply("call.reject", map[string]int64{"callId": call.CallID})
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFlow(t, options{callcenter: tt.callcenter})
			if tt.away {
				f.setAgentStatus(t, "away")
			}
			cust, auth := f.s.customer(entry(f.ten.Key, "crm-1", "order-"+strconv.Itoa(tt.want), 3))
			var ar authReply
			decode(t, auth.Data, &ar)
			if ar.NavigateType != 0 || ar.CallTimesLeft != 3 || ar.BizID != "order-"+strconv.Itoa(tt.want) {
				t.Fatalf("auth reply %s", auth.Data)
			}
			if auth.Session == nil || auth.Session.Role != "customer" || auth.Session.ResumeToken == "" {
				t.Fatalf("auth session %+v", auth.Session)
			}
			call := cust.place()
			cust.push("call.queued", forCall(call.CallID))
			tt.drive(t, f, cust, call)

			ended := cust.ended(call.CallID)
			if ended.ResultCode != tt.want || ended.By != tt.by {
				t.Fatalf("call.ended %+v, want resultCode %d by %q", ended, tt.want, tt.by)
			}
			answered := tt.want == 4
			if answered {
				// The tenant has a survey: the customer stays for it.
				if ended.NavigateType != 0 || len(ended.Survey) == 0 || string(ended.Survey) == "null" {
					t.Fatalf("answered call ended without the survey: %+v", ended)
				}
				var nav struct {
					NavigateType int `json:"navigateType"`
				}
				decode(t, cust.mustReply("survey.submit", map[string]any{"callId": call.CallID,
					"surveryResolveResult": "已解决", "surveryLables": []string{"速度快", "态度温柔"},
					"surveryRemark": "remark", "surveryDesc": "desc"}).Data, &nav)
				if nav.NavigateType != 4 {
					t.Fatalf("survey.submit navigateType %d, want 4", nav.NavigateType)
				}
				cust.mustError("survey.submit", map[string]any{"callId": call.CallID, "surveryResolveResult": "已解决"}, "invalid_state")
			} else if ended.NavigateType != 3 || len(ended.Survey) != 0 && string(ended.Survey) != "null" {
				t.Fatalf("unanswered call.ended %+v, want navigateType 3 and no survey", ended)
			}

			rec := f.s.call(call.CallID)
			if rec.State != "ended" || rec.ResultCode != tt.want || rec.BizID != ar.BizID {
				t.Fatalf("call record %+v", rec)
			}
			if tt.rang != (rec.AgentID == f.ag.ID) {
				t.Fatalf("call record agent %d, agent rung: %v", rec.AgentID, tt.rang)
			}
			var listed []callRecord
			f.s.admin(http.MethodGet, "/admin/calls?bizId="+ar.BizID+"&resultCode="+strconv.Itoa(tt.want), nil, http.StatusOK, &listed)
			if len(listed) != 1 || listed[0].ID != call.CallID {
				t.Fatalf("calls by bizId and resultCode: %+v", listed)
			}

			h := f.rc.accepted(t, "call.ended", call.CallID)
			checkWebhook(t, h, f.ten, tt.want, ar.BizID, tt.rang, f.ag.ID)
			if answered {
				if rec.Survey == nil || rec.Survey.ResolveResult != "已解决" || rec.Survey.Labels != "速度快,态度温柔" {
					t.Fatalf("survey in the record: %+v", rec.Survey)
				}
				h := f.rc.accepted(t, "call.survey", call.CallID)
				body := checkWebhook(t, h, f.ten, tt.want, ar.BizID, true, f.ag.ID)
				vc := body["videoCall"].(map[string]any)
				if vc["surveryResolveResult"] != "已解决" || vc["surveryLables"] != "速度快,态度温柔" ||
					vc["surveryRemark"] != "remark" || vc["surveryDesc"] != "desc" {
					t.Fatalf("survey webhook videoCall %v", vc)
				}
			}
			ds := f.s.deliveries(call.CallID)
			if len(ds) == 0 {
				t.Fatal("no delivery listed by the admin API")
			}
			eventually(t, "deliveries marked delivered", func() bool {
				for _, d := range f.s.deliveries(call.CallID) {
					if d.Status != "delivered" {
						return false
					}
				}
				return true
			})
		})
	}
}

// checkWebhook checks a delivery against PRODUCT.md §4 and returns its
// body: the signature, every key spelled as on the wire, and the values
// the call had.
func checkWebhook(t *testing.T, h hook, ten tenant, resultCode int, bizID string, withAgent bool, agentID int64) map[string]any {
	t.Helper()
	if !h.verify(ten.WebhookSecret) {
		t.Fatalf("webhook signature %q does not verify", h.Signature)
	}
	if h.Delivery == "" {
		t.Fatal("webhook without a delivery id")
	}
	var body map[string]any
	if err := json.Unmarshal(h.Body, &body); err != nil {
		t.Fatalf("webhook body: %v: %s", err, h.Body)
	}
	has := func(where string, obj map[string]any, keys ...string) {
		t.Helper()
		for _, k := range keys {
			if _, ok := obj[k]; !ok {
				t.Errorf("webhook %s lacks %q: %s", where, k, h.Body)
			}
		}
	}
	has("body", body, "bizId", "videoCall", "customer", "organizations", "agent")
	vc, _ := body["videoCall"].(map[string]any)
	has("videoCall", vc, "id", "dialTime", "queueDuration", "callDuration", "resultCode",
		"videoCallStartTime", "videoCallEndTime", "surveryResolveResult", "surveryLables", "surveryRemark", "surveryDesc")
	cu, _ := body["customer"].(map[string]any)
	has("customer", cu, "id", "nick_name", "source_channel", "is_blocked", "level", "created_at",
		"updated_at", "lang", "sdk_token", "web_token", "other_web_tokens", "open_api_token", "description", "email",
		"tags", "rich_tags", "custom_fields", "other_emails", "cellphones", "default_organization_id",
		"organization_ids", "weixin_minis")
	if t.Failed() {
		t.FailNow()
	}
	if body["bizId"] != bizID || vc["resultCode"] != float64(resultCode) {
		t.Fatalf("webhook bizId %v resultCode %v, want %q %d", body["bizId"], vc["resultCode"], bizID, resultCode)
	}
	// Durations are milliseconds in strings; times ISO 8601 with an offset.
	digits := regexp.MustCompile(`^[0-9]+$`)
	for _, k := range []string{"queueDuration", "callDuration"} {
		if s, _ := vc[k].(string); !digits.MatchString(s) {
			t.Errorf("videoCall.%s = %#v, want milliseconds in a string", k, vc[k])
		}
	}
	times := []string{"dialTime", "videoCallEndTime"}
	if resultCode == 4 {
		times = append(times, "videoCallStartTime")
	}
	for _, k := range times {
		s, _ := vc[k].(string)
		if _, err := time.Parse(time.RFC3339, s); err != nil {
			t.Errorf("videoCall.%s = %#v: %v", k, vc[k], err)
		}
		// In the tenant's time zone (surveySettings: Asia/Shanghai).
		if !strings.HasSuffix(s, "+08:00") {
			t.Errorf("videoCall.%s = %q, want the tenant's offset +08:00", k, s)
		}
	}
	if phones, _ := cu["cellphones"].([]any); len(phones) != 1 || phones[0].(map[string]any)["content"] != "13312223333" {
		t.Errorf("customer.cellphones %v", cu["cellphones"])
	}
	orgs, _ := body["organizations"].([]any)
	if len(orgs) != 1 {
		t.Errorf("organizations %v, want the customer's one", body["organizations"])
	} else {
		org, _ := orgs[0].(map[string]any)
		has("organizations[0]", org, "id", "name")
		if org["id"] != float64(7) {
			t.Errorf("organizations[0].id %v, want 7", org["id"])
		}
	}
	ag, _ := body["agent"].(map[string]any)
	switch {
	case !withAgent && body["agent"] != nil:
		t.Errorf("webhook names an agent for a call no agent rang: %v", body["agent"])
	case withAgent && ag == nil:
		t.Errorf("webhook has no agent: %s", h.Body)
	case withAgent:
		has("agent", ag, "id", "nick_name", "avatar", "user_group_ids", "work_id", "duty", "is_admin", "departments")
		if ag["id"] != float64(agentID) {
			t.Errorf("webhook agent id %v, want %d", ag["id"], agentID)
		}
		deps, _ := ag["departments"].([]any)
		if len(deps) != 1 || deps[0].(map[string]any)["name"] != "HQ" {
			t.Errorf("agent departments %v, want HQ", ag["departments"])
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	return body
}

// TestCallTimesRunOut: an entry allowing one call lets the customer place
// one, then refuses the next with navigateType 2, also on a new entry with
// the same bizId; callTimes 0 returns at once.
func TestCallTimesRunOut(t *testing.T) {
	f := newFlow(t, options{})
	f.setAgentStatus(t, "away")
	cust, auth := f.s.customer(entry(f.ten.Key, "crm-7", "claim-7", 1))
	var ar authReply
	decode(t, auth.Data, &ar)
	if ar.CallTimesLeft != 1 || ar.NavigateType != 0 {
		t.Fatalf("auth reply %s", auth.Data)
	}
	call := cust.place()
	cust.mustReply("call.leave", map[string]int64{"callId": call.CallID})
	cust.ended(call.CallID)

	e := cust.mustError("call.place", nil, "no_call_times")
	if e.NavigateType != 2 {
		t.Fatalf("no_call_times navigateType %d, want 2", e.NavigateType)
	}
	// The same entry (bizId) opened again has nothing left either.
	_, again := f.s.customer(entry(f.ten.Key, "crm-7", "claim-7", 1))
	decode(t, again.Data, &ar)
	if ar.CallTimesLeft != 0 || ar.NavigateType != 2 {
		t.Fatalf("auth reply on a used-up entry %s, want callTimesLeft 0 and navigateType 2", again.Data)
	}
	_, none := f.s.customer(entry(f.ten.Key, "crm-8", "claim-8", 0))
	decode(t, none.Data, &ar)
	if ar.NavigateType != 2 {
		t.Fatalf("auth reply with callTimes 0 %s, want navigateType 2", none.Data)
	}
	// Unlimited entries (-1) are not counted down.
	unl, _ := f.s.customer(entry(f.ten.Key, "crm-9", "claim-9", -1))
	for range 2 {
		c := unl.place()
		unl.mustReply("call.leave", map[string]int64{"callId": c.CallID})
		unl.ended(c.CallID)
	}
}

// TestSignedEntries signs mini-program-to-mini-program entries as an
// integrator does and checks every way one can fail.
func TestSignedEntries(t *testing.T) {
	f := newFlow(t, options{callcenter: `sign_window = "5m"`})
	strict := f.s.createTenant("strict", "", `{"requireSignature":true}`)

	const appID, path = "wx2e122adfbcf230d0", "plugin/pages/preIndex/index"
	signed := func(ten tenant, nonce string, ts time.Time, tamper bool) map[string]any {
		opts, _ := json.Marshal(map[string]any{"options": entry(ten.Key, "crm-s-"+nonce, "biz-"+nonce, 2)})
		extra := string(opts)
		stamp := strconv.FormatInt(ts.Unix(), 10)
		sign := entrySign(appID, path, extra, ten.Secret, nonce, stamp)
		if tamper {
			sign = entrySign(appID, path, extra, "not-the-secret", nonce, stamp)
		}
		return map[string]any{"sign": sign, "nonce": nonce, "timestamp": stamp, "appId": appID, "path": path, "extraData": extra}
	}
	now := time.Now()
	tests := []struct {
		name string
		req  map[string]any
		code string // "" = accepted
	}{
		{"valid", signed(f.ten, "n-1", now, false), ""},
		{"replayed nonce", signed(f.ten, "n-1", now, false), "replayed_nonce"},
		{"wrong sign", signed(f.ten, "n-2", now, true), "bad_signature"},
		{"stale timestamp", signed(f.ten, "n-3", now.Add(-time.Hour), false), "stale_timestamp"},
		{"timestamp from the future", signed(f.ten, "n-4", now.Add(time.Hour), false), "stale_timestamp"},
		{"unknown miniSdkToken", map[string]any{"options": entry("no-such-tenant", "x", "y", 1)}, "auth_failed"},
		{"unsigned entry where signing is required", map[string]any{"options": entry(strict.Key, "z", "w", 1)}, "signature_required"},
		{"signed entry where signing is required", signed(strict, "n-5", now, false), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, f.s.ws)
			if tt.code == "" {
				m := c.mustReply("customer.auth", tt.req)
				var ar authReply
				decode(t, m.Data, &ar)
				if ar.NavigateType != 0 || ar.Customer.ID == 0 {
					t.Fatalf("signed entry reply %s", m.Data)
				}
				return
			}
			e := c.mustError("customer.auth", tt.req, tt.code)
			if e.NavigateType != 1 {
				t.Fatalf("%s navigateType %d, want 1", tt.code, e.NavigateType)
			}
			// The socket stays usable, but not signed in.
			c.mustReply("ping", nil)
			c.mustError("call.place", nil, "unauthenticated")
		})
	}
}

// TestAgentNoAnswer: with on_no_answer = "requeue", a ring that times out
// puts the call back in the queue and rings the next agent; the agent who
// missed it is set away. When every ring is missed the call ends with
// resultCode 5 after max_ring_attempts.
func TestAgentNoAnswer(t *testing.T) {
	reason := func(want string) func(msg) bool {
		return func(m msg) bool {
			var d struct {
				Reason string `json:"reason"`
			}
			decode(t, m.Data, &d)
			return d.Reason == want
		}
	}

	t.Run("the next agent answers", func(t *testing.T) {
		f := newFlow(t, options{callcenter: `
ring_timeout = "300ms"
on_no_answer = "requeue"
max_ring_attempts = 3
away_after_missed = 1
`})
		// Ann logged in first, so she is the longest idle and rung first.
		bob := f.s.createAgent(f.ten.ID, "bob")
		bobConsole := f.s.agent(bob)
		cust, _ := f.s.customer(entry(f.ten.Key, "crm-n", "biz-n", 1))
		call := cust.place()

		f.agent.push("call.ringing", forCall(call.CallID))
		f.agent.pushesAnyOrder(map[string]func(msg) bool{
			"call.ring_ended": reason("timeout"),
			"agent.status": func(m msg) bool {
				var d struct {
					AgentID int64  `json:"agentId"`
					Status  string `json:"status"`
				}
				decode(t, m.Data, &d)
				return d.AgentID == f.ag.ID && d.Status == "away"
			},
		})
		cust.push("call.queued", reason("no_answer"))
		bobConsole.push("call.ringing", forCall(call.CallID))
		bobConsole.mustReply("call.answer", map[string]int64{"callId": call.CallID})
		var conn struct {
			AgentID int64 `json:"agentId"`
		}
		decode(t, cust.push("call.connected", forCall(call.CallID)).Data, &conn)
		if conn.AgentID != bob.ID {
			t.Fatalf("connected to agent %d, want %d", conn.AgentID, bob.ID)
		}
		cust.mustReply("call.hangup", map[string]int64{"callId": call.CallID})
		if e := cust.ended(call.CallID); e.ResultCode != 4 {
			t.Fatalf("resultCode %d", e.ResultCode)
		}
		if rec := f.s.call(call.CallID); rec.ResultCode != 4 || rec.AgentID != bob.ID {
			t.Fatalf("call record %+v", rec)
		}
		h := f.rc.accepted(t, "call.ended", call.CallID)
		checkWebhook(t, h, f.ten, 4, "biz-n", true, bob.ID)
	})

	t.Run("every ring missed", func(t *testing.T) {
		f := newFlow(t, options{callcenter: `
ring_timeout = "300ms"
on_no_answer = "requeue"
max_ring_attempts = 2
away_after_missed = 0
`})
		cust, _ := f.s.customer(entry(f.ten.Key, "crm-m", "biz-m", 1))
		call := cust.place()
		for range 2 {
			f.agent.push("call.ringing", forCall(call.CallID))
			cust.push("call.ringing", forCall(call.CallID))
			f.agent.push("call.ring_ended", forCall(call.CallID))
		}
		e := cust.ended(call.CallID)
		if e.ResultCode != 5 || e.NavigateType != 3 {
			t.Fatalf("call.ended %+v, want resultCode 5 and navigateType 3", e)
		}
		if rec := f.s.call(call.CallID); rec.ResultCode != 5 {
			t.Fatalf("resultCode %d", rec.ResultCode)
		}
		checkWebhook(t, f.rc.accepted(t, "call.ended", call.CallID), f.ten, 5, "biz-m", true, f.ag.ID)
	})
}
