package e2e

import (
	"bytes"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Fast retries, and enough of them that a delivery never goes dead here.
const fastWebhooks = `
backoff_base = "100ms"
backoff_max = "400ms"
max_attempts = 50
poll_interval = "200ms"
`

// abandonedCall runs a call that ends in the queue (resultCode 1) and
// returns its id; its webhook is then in the outbox.
func abandonedCall(t *testing.T, s *server, ten tenant, ag agentAccount, biz string) int64 {
	t.Helper()
	agent := s.agent(ag)
	agent.mustReply("agent.status", map[string]string{"status": "away"})
	cust, _ := s.customer(entry(ten.Key, "crm-"+biz, biz, 1))
	call := cust.place()
	cust.mustReply("call.leave", map[string]int64{"callId": call.CallID})
	cust.ended(call.CallID)
	return call.CallID
}

// TestWebhookReceiverFailsFirstThenAccepts: a receiver answering 500
// twice gets the same delivery again, signed anew each time, until it
// accepts; the admin API shows three attempts and the delivery done.
func TestWebhookReceiverFailsFirstThenAccepts(t *testing.T) {
	rc := newReceiver(t, func(n int, _ *http.Request) int {
		if n <= 2 {
			return http.StatusInternalServerError
		}
		return http.StatusNoContent
	})
	s := boot(t, options{webhook: fastWebhooks})
	ten := s.createTenant("acme", rc.srv.URL, surveySettings)
	callID := abandonedCall(t, s, ten, s.createAgent(ten.ID, "ann"), "biz-retry")

	ok := rc.accepted(t, "call.ended", callID)
	hooks := rc.hooks()
	if len(hooks) != 3 {
		t.Fatalf("%d POSTs, want 3 (two refused, one accepted)", len(hooks))
	}
	for i, h := range hooks {
		if h.Delivery != ok.Delivery || !bytes.Equal(h.Body, ok.Body) {
			t.Fatalf("attempt %d: delivery %q, want the same delivery %q with the same body", i+1, h.Delivery, ok.Delivery)
		}
		if !h.verify(ten.WebhookSecret) {
			t.Fatalf("attempt %d is not signed with the tenant's secret", i+1)
		}
	}
	checkWebhook(t, ok, ten, 1, "biz-retry", false, 0)
	eventually(t, "the delivery marked delivered", func() bool {
		ds := s.deliveries(callID)
		return len(ds) == 1 && ds[0].Status == "delivered"
	})
	d := s.deliveries(callID)[0]
	if d.Attempts != 3 || d.LastStatus != http.StatusNoContent || d.DeliveryID != ok.Delivery {
		t.Fatalf("delivery %+v, want 3 attempts ending in 204", d)
	}
}

// TestWebhookSurvivesRestart stops the server while a delivery is pending
// and boots a new one on the same database file: the delivery arrives,
// with the same id and body.
func TestWebhookSurvivesRestart(t *testing.T) {
	tests := []struct {
		name string
		// inFlight: the first POST hangs until the shutdown cancels it;
		// else the receiver refuses until after the shutdown.
		inFlight bool
	}{
		{"receiver down across the restart", false},
		{"restart in the middle of a POST", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var accept atomic.Bool
			rc := newReceiver(t, func(n int, r *http.Request) int {
				if tt.inFlight && n == 1 {
					<-r.Context().Done()
					return http.StatusServiceUnavailable
				}
				if accept.Load() {
					return http.StatusOK
				}
				return http.StatusServiceUnavailable
			})
			s := boot(t, options{webhook: fastWebhooks})
			ten := s.createTenant("acme", rc.srv.URL, surveySettings)
			callID := abandonedCall(t, s, ten, s.createAgent(ten.ID, "ann"), "biz-restart")

			// The first POST has reached the receiver, and failed or hangs.
			eventually(t, "a first POST", func() bool { return len(rc.hooks()) > 0 })
			first := rc.hooks()[0]
			if !tt.inFlight {
				eventually(t, "a failed attempt recorded", func() bool {
					ds := s.deliveries(callID)
					return len(ds) == 1 && ds[0].Status == "pending" && ds[0].Attempts >= 1
				})
			}
			s.shutdown()
			accept.Store(true)
			s = s.restart()

			got := rc.accepted(t, "call.ended", callID)
			if got.Delivery != first.Delivery || !bytes.Equal(got.Body, first.Body) {
				t.Fatalf("after the restart: delivery %q, want %q with the same body", got.Delivery, first.Delivery)
			}
			checkWebhook(t, got, ten, 1, "biz-restart", false, 0)
			eventually(t, "the delivery marked delivered", func() bool {
				ds := s.deliveries(callID)
				return len(ds) == 1 && ds[0].Status == "delivered"
			})
			if tt.inFlight {
				// The interrupted POST does not count as an attempt.
				if d := s.deliveries(callID)[0]; d.Attempts != 1 {
					t.Fatalf("delivery %+v, want one attempt", d)
				}
			}
			if rec := s.call(callID); rec.State != "ended" || rec.ResultCode != 1 {
				t.Fatalf("call record after the restart %+v", rec)
			}
		})
	}
}

// TestCallsCutByARestartAreClosed stops the server with a call connected,
// one ringing and one queued. Every socket is closed with 1001; the next
// server closes the three records with the result each call really had
// and sends their webhooks.
func TestCallsCutByARestartAreClosed(t *testing.T) {
	rc := newReceiver(t, nil)
	s := boot(t, options{webhook: fastWebhooks})
	ten := s.createTenant("acme", rc.srv.URL, surveySettings)
	ann, cid := s.createAgent(ten.ID, "ann"), s.createAgent(ten.ID, "cid")
	answering := s.agent(ann)
	later := s.agent(cid)
	later.mustReply("agent.status", map[string]string{"status": "away"})

	c1, _ := s.customer(entry(ten.Key, "crm-1", "biz-1", 1))
	connected := c1.place()
	answering.push("call.ringing", forCall(connected.CallID))
	answering.mustReply("call.answer", map[string]int64{"callId": connected.CallID})
	c1.push("call.connected", forCall(connected.CallID))

	c2, _ := s.customer(entry(ten.Key, "crm-2", "biz-2", 1))
	ringing := c2.place()
	c3, _ := s.customer(entry(ten.Key, "crm-3", "biz-3", 1))
	queued := c3.place()
	// Cid comes back and is rung for the call at the head of the queue.
	later.mustReply("agent.status", map[string]string{"status": "online"})
	later.push("call.ringing", forCall(ringing.CallID))
	c3.push("queue.position", func(m msg) bool {
		var d positionData
		decode(t, m.Data, &d)
		return d.CallID == queued.CallID && d.Position == 1
	})

	// The drain bound is short: the calls would go on for minutes.
	s.shutdownWithin(100 * time.Millisecond)
	for _, c := range []*client{c1, c2, c3, answering, later} {
		if code := c.closed(); code != websocket.CloseGoingAway {
			t.Fatalf("socket closed with %d at shutdown, want 1001", code)
		}
	}
	s = s.restart()
	for _, tt := range []struct {
		call int64
		want int
		biz  string
	}{{connected.CallID, 4, "biz-1"}, {ringing.CallID, 5, "biz-2"}, {queued.CallID, 2, "biz-3"}} {
		if rec := s.call(tt.call); rec.State != "ended" || rec.ResultCode != tt.want {
			t.Errorf("call %d after the restart: %+v, want ended with resultCode %d", tt.call, rec, tt.want)
			continue
		}
		checkWebhook(t, rc.accepted(t, "call.ended", tt.call), ten, tt.want, tt.biz, tt.want != 2, map[int]int64{4: ann.ID, 5: cid.ID}[tt.want])
	}
}

// drainingCall connects a call whose customer has joined media (a media
// session keeps the sockets open while the server drains), then starts
// the shutdown on its own goroutine and waits until the server reports
// draining. done closes when Shutdown has returned.
func drainingCall(t *testing.T) (f *flow, cust *client, call placeReply, done chan struct{}) {
	t.Helper()
	f = newFlow(t, options{})
	cust, _ = f.s.customer(entry(f.ten.Key, "crm-d", "biz-d", 1))
	call = cust.place()
	f.agent.push("call.ringing", forCall(call.CallID))
	f.agent.mustReply("call.answer", map[string]int64{"callId": call.CallID})
	cust.push("call.connected", forCall(call.CallID))
	cust.mustReply("media.join", nil)

	done = make(chan struct{})
	go func() {
		defer close(done)
		f.s.shutdownWithin(wait)
	}()
	// Whatever happens next, the test does not end before Shutdown.
	t.Cleanup(func() { <-done })
	eventually(t, "readyz to report draining", func() bool {
		resp, err := f.s.client.Get(f.s.base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	return f, cust, call, done
}

// TestDrainLetsTheRunningCallFinish stops the server while a call with
// media runs: new calls are refused with unavailable, the running call
// goes on until it is hung up, then every socket closes with 1001 and the
// call's record and webhook are complete.
func TestDrainLetsTheRunningCallFinish(t *testing.T) {
	f, cust, call, done := drainingCall(t)
	late, _ := f.s.customer(entry(f.ten.Key, "crm-late", "biz-late", 1))
	late.mustError("call.place", nil, "unavailable")

	// The running call is still served.
	cust.mustReply("chat.send", map[string]any{"callId": call.CallID, "text": "are we done?"})
	f.agent.push("chat.message", forCall(call.CallID))
	select {
	case <-done:
		t.Fatal("the server stopped while a call was running")
	default:
	}
	f.agent.mustReply("call.hangup", map[string]int64{"callId": call.CallID})
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatal("the server did not stop after the last call ended")
	}
	for _, c := range []*client{cust, f.agent, late} {
		if code := c.closed(); code != websocket.CloseGoingAway {
			t.Fatalf("socket closed with %d, want 1001", code)
		}
	}
	s := f.s.restart()
	if rec := s.call(call.CallID); rec.ResultCode != 4 {
		t.Fatalf("the drained call's record %+v", rec)
	}
	checkWebhook(t, f.rc.accepted(t, "call.ended", call.CallID), f.ten, 4, "biz-d", true, f.ag.ID)
}

// TestDrainAnswersTheLastHangUp: hanging up the last call of a draining
// server must still get its reply, and the customer its call.ended push,
// before the sockets close.
func TestDrainAnswersTheLastHangUp(t *testing.T) {
	f, cust, call, _ := drainingCall(t)
	m, err := f.agent.request("call.hangup", map[string]int64{"callId": call.CallID})
	if err != nil || m.Type != "reply" {
		t.Errorf("hang-up of the last call while draining: %v %+v", err, m.Error)
	}
	cust.push("call.ended", forCall(call.CallID))
}
