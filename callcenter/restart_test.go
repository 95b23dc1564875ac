package callcenter

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/avs/avs/store"
	"github.com/avs/avs/webhook"
)

// receiver is an integrator backend that fails its first request, hangs
// the second until released, and accepts the rest.
type receiver struct {
	srv      *httptest.Server
	n        atomic.Int32
	hung     chan struct{}
	release  chan struct{}
	mu       sync.Mutex
	accepted []map[string]any
	ids      []string
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{hung: make(chan struct{}, 1), release: make(chan struct{})}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		if !webhook.Verify("whsec", req.Header.Get(webhook.HeaderSignature), req.Header.Get(webhook.HeaderTimestamp),
			body, time.Now(), time.Minute) {
			t.Errorf("bad webhook signature")
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		switch r.n.Add(1) {
		case 1:
			w.WriteHeader(http.StatusBadGateway)
			return
		case 2:
			r.hung <- struct{}{}
			select {
			case <-r.release:
			case <-req.Context().Done():
			}
			return
		}
		var m map[string]any
		_ = json.Unmarshal(body, &m)
		r.mu.Lock()
		r.accepted = append(r.accepted, m)
		r.ids = append(r.ids, req.Header.Get(webhook.HeaderDelivery))
		r.mu.Unlock()
	}))
	t.Cleanup(func() { close(r.release); r.srv.Close() })
	return r
}

func (h *harness) deliverer() *webhook.Deliverer {
	h.t.Helper()
	c := webhook.DefaultConfig()
	c.BackoffBase, c.BackoffMax, c.PollInterval, c.Timeout = 20*time.Millisecond, 50*time.Millisecond, 50*time.Millisecond, 5*time.Second
	d, err := webhook.New(webhook.Params{Config: c, Store: h.st})
	if err != nil {
		h.t.Fatal(err)
	}
	return d
}

// TestWebhookSurvivesRestart: the receiver fails the first POST, the
// server is stopped (Service, deliverer and Store closed) while the retry
// hangs, with a call still open; after reopening on the same file both the
// ended call's record and the open call's closing record arrive, once each.
func TestWebhookSurvivesRestart(t *testing.T) {
	rcv := newReceiver(t)
	h := newHarness(t)
	ten := h.tenant("t", TenantSettings{}, rcv.srv.URL)
	a := h.agent(ten, "alice")
	d := h.deliverer()
	d.Start()
	notify := d.Notify
	h.hook.Store(&notify)

	c := h.customer(ten, map[string]any{"bizId": "b-1"})
	info, err := h.svc.PlaceCall(ctx, c, PlaceCallRequest{})
	if err != nil {
		t.Fatal(err)
	}
	h.wait(agt(a), EventCallRinging)
	if err := h.svc.Answer(ctx, a.AgentID, info.CallID); err != nil {
		t.Fatal(err)
	}
	if err := h.svc.Hangup(ctx, cust(c), info.CallID); err != nil {
		t.Fatal(err)
	}
	// A second call stays queued across the restart.
	if err := h.svc.SetAgentStatus(ctx, a.AgentID, StatusAway); err != nil {
		t.Fatal(err)
	}
	c2 := h.customer(ten, map[string]any{"bizId": "b-2"})
	info2, err := h.svc.PlaceCall(ctx, c2, PlaceCallRequest{})
	if err != nil {
		t.Fatal(err)
	}
	<-rcv.hung // the retry of the first record is in flight
	d.Close()
	h.stop()

	h.start()
	if got := h.call(info2.CallID); got.State != store.CallEnded || got.ResultCode != ResultQueueTimeout {
		t.Fatalf("open call after restart = %+v", got)
	}
	d2 := h.deliverer()
	notify2 := d2.Notify
	h.hook.Store(&notify2)
	d2.Start()
	defer d2.Close()
	h.eventually("both records delivered", func() bool {
		ds, err := h.st.ListDeliveries(ctx, store.DeliveryFilter{Status: store.DeliveryDelivered})
		return err == nil && len(ds) == 2
	})
	d2.Close()
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if len(rcv.accepted) != 2 || rcv.ids[0] == rcv.ids[1] {
		t.Fatalf("accepted %d deliveries, ids %v", len(rcv.accepted), rcv.ids)
	}
	byBiz := map[string]int{}
	for _, m := range rcv.accepted {
		byBiz[m["bizId"].(string)] = int(m["videoCall"].(map[string]any)["resultCode"].(float64))
	}
	if byBiz["b-1"] != ResultAnswered || byBiz["b-2"] != ResultQueueTimeout {
		t.Fatalf("delivered = %v", byBiz)
	}
}
