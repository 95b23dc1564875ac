package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Small limits, so a test reaches them with a few messages.
const tightSignaling = `
max_message_bytes = 4096
hard_message_bytes = 16384
rate_per_second = 5.0
rate_burst = 10
max_violations = 5
violation_decay = "1m"
`

// raw writes one frame as is. When id is not empty (the JSON text of the
// id, quotes included) the answer is awaited by that id, else as an
// error the server could not tie to a request.
func (c *client) raw(kind int, b []byte, id string) msg {
	c.t.Helper()
	ch := make(chan msg, 1)
	if id != "" {
		c.mu.Lock()
		c.waiting[id] = ch
		c.mu.Unlock()
	}
	if err := c.write(kind, b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
	if id == "" {
		ch = c.idless
	}
	select {
	case m := <-ch:
		return m
	case <-c.done:
		c.t.Fatalf("connection closed (%d) instead of an answer", c.code())
	case <-time.After(wait):
		c.t.Fatal("no answer")
	}
	return msg{}
}

// TestMalformedAndOversizedMessages sends one bad message per socket: each
// gets its stable error code, with the id when the server could read one,
// and the socket goes on serving.
func TestMalformedAndOversizedMessages(t *testing.T) {
	s := boot(t, options{signaling: tightSignaling})
	big := fmt.Sprintf(`{"id":"9","type":"ping","data":{"pad":%q}}`, strings.Repeat("x", 5000))
	tests := []struct {
		name string
		kind int
		body string
		id   string // the id the error must carry; "" = none
		code string
	}{
		{"not JSON", websocket.TextMessage, "hello", "", "bad_json"},
		{"not an object", websocket.TextMessage, "[1,2]", "", "bad_json"},
		{"missing id", websocket.TextMessage, `{"type":"ping"}`, "", "bad_request"},
		{"id not a string or number", websocket.TextMessage, `{"id":{"a":1},"type":"ping"}`, "", "bad_request"},
		{"id too long", websocket.TextMessage, fmt.Sprintf(`{"id":%q,"type":"ping"}`, strings.Repeat("i", 100)), "", "bad_request"},
		{"missing type", websocket.TextMessage, `{"id":"1"}`, `"1"`, "bad_request"},
		{"unknown type", websocket.TextMessage, `{"id":2,"type":"no.such.thing"}`, `2`, "unknown_type"},
		{"binary frame", websocket.BinaryMessage, `{"id":"3","type":"ping"}`, "", "bad_request"},
		{"over max_message_bytes", websocket.TextMessage, big, "", "message_too_large"},
		{"before authentication", websocket.TextMessage, `{"id":"4","type":"call.place"}`, `"4"`, "unauthenticated"},
		{"malformed data", websocket.TextMessage, `{"id":"5","type":"customer.auth","data":"nope"}`, `"5"`, "bad_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, s.ws)
			m := c.raw(tt.kind, []byte(tt.body), tt.id)
			if m.Type != "error" || m.Error.Code != tt.code || string(m.ID) != tt.id {
				t.Fatalf("got %s id %s %+v, want error %s with id %q", m.Type, m.ID, m.Error, tt.code, tt.id)
			}
			if m.Error.Message == "" {
				t.Fatal("error without a message")
			}
			c.mustReply("ping", nil)
		})
	}

	t.Run("frame over hard_message_bytes closes with 1009", func(t *testing.T) {
		c := dial(t, s.ws)
		_ = c.write(websocket.TextMessage, []byte(fmt.Sprintf(`{"id":"1","type":"ping","data":{"pad":%q}}`, strings.Repeat("x", 20000))))
		if code := c.closed(); code != websocket.CloseMessageTooBig {
			t.Fatalf("close code %d, want 1009", code)
		}
	})
	t.Run("repeated violations close with 4008", func(t *testing.T) {
		c := dial(t, s.ws)
		for range 20 {
			if c.write(websocket.TextMessage, []byte("not json")) != nil {
				break
			}
		}
		if code := c.closed(); code != 4008 {
			t.Fatalf("close code %d, want 4008", code)
		}
		var codes []string
		for len(c.idless) > 0 {
			codes = append(codes, (<-c.idless).Error.Code)
		}
		if len(codes) == 0 || codes[0] != "bad_json" {
			t.Fatalf("errors before the close: %v", codes)
		}
	})
}

// TestFloodingClientIsClosedOthersAreServed floods pings from one socket
// while a queued customer goes on using its own: the flooder gets
// rate_limited and is closed with 4008; the customer keeps its answers
// and its place, and new clients can still sign in.
func TestFloodingClientIsClosedOthersAreServed(t *testing.T) {
	f := newFlow(t, options{signaling: tightSignaling})
	f.setAgentStatus(t, "away")
	cust, _ := f.s.customer(entry(f.ten.Key, "crm-b", "biz-b", 1))
	call := cust.place()

	flooder := dial(t, f.s.ws)
	for i := range 200 {
		if flooder.write(websocket.TextMessage, []byte(fmt.Sprintf(`{"id":"f%d","type":"ping"}`, i))) != nil {
			break // the server closed it
		}
		// The bystander stays well within its own rate limit (a burst of
		// ten), as a well-behaved client does.
		if i%50 == 0 {
			cust.mustReply("ping", nil)
		}
	}
	if code := flooder.closed(); code != 4008 {
		t.Fatalf("flooder closed with %d, want 4008", code)
	}
	limited := 0
	for len(flooder.idless) > 0 {
		m := <-flooder.idless
		if m.Type == "error" && m.Error.Code == "rate_limited" {
			limited++
		}
	}
	if limited == 0 {
		t.Fatal("the flooder never got rate_limited")
	}

	cust.mustReply("ping", nil)
	if rec := f.s.call(call.CallID); rec.State != "queued" {
		t.Fatalf("the bystander's call is %q", rec.State)
	}
	other, _ := f.s.customer(entry(f.ten.Key, "crm-b2", "biz-b2", 1))
	other.mustReply("ping", nil)
	cust.mustReply("call.leave", map[string]int64{"callId": call.CallID})
	cust.ended(call.CallID)
}
