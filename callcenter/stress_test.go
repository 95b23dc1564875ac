package callcenter

import (
	"sync"
	"testing"
	"time"

	"github.com/avs/avs/store"
)

// TestConcurrentFlows runs many customers and a few agents at once, with
// every side acting from its own goroutine, and checks that every call
// ends with a valid resultCode and no agent is left holding a call.
func TestConcurrentFlows(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.RingTimeout = 100 * time.Millisecond
		c.QueueTimeout = 3 * time.Second
		c.AwayAfterMissed = 0 // a slow answer loop under -race must not send agents away
	})
	ten := h.tenant("t", TenantSettings{}, "http://receiver.invalid/")
	var agents []*AgentSession
	for _, n := range []string{"a", "b", "c"} {
		agents = append(agents, h.agent(ten, n))
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, a := range agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.answerLoop(a, stop)
		}()
	}
	const customers = 24
	ids := make(chan int64, customers)
	var cw sync.WaitGroup
	for i := 0; i < customers; i++ {
		c := h.customer(ten, nil)
		cw.Add(1)
		go func() {
			defer cw.Done()
			info, err := h.svc.PlaceCall(ctx, c, PlaceCallRequest{})
			if err != nil {
				t.Errorf("place: %v", err)
				return
			}
			ids <- info.CallID
			if i%3 == 0 {
				_ = h.svc.LeaveQueue(ctx, c, info.CallID) // may race with an answer: either is fine
			}
		}()
	}
	cw.Wait()
	close(ids)
	for id := range ids {
		h.eventually("call ended", func() bool {
			c, err := h.st.CallByID(ctx, id)
			return err == nil && c.State == store.CallEnded
		})
		if rc := h.call(id).ResultCode; rc < ResultAbandoned || rc > ResultNoAnswer {
			t.Errorf("call %d resultCode %d", id, rc)
		}
	}
	close(stop)
	wg.Wait()
	if n := h.svc.ActiveCalls(); n != 0 {
		t.Fatalf("%d calls still active", n)
	}
	for _, a := range agents {
		if st := h.svc.AgentStatus(a.AgentID); st != StatusOnline {
			t.Errorf("agent %d is %s", a.AgentID, st)
		}
	}
}

// answerLoop answers every ring, then hangs up, until stop.
func (h *harness) answerLoop(a *AgentSession, stop chan struct{}) {
	p := agt(a)
	seen := 0
	for {
		select {
		case <-stop:
			return
		default:
		}
		h.ev.mu.Lock()
		list := h.ev.byWho[p]
		var rings []int64
		for ; seen < len(list); seen++ {
			if d, ok := list[seen].Data.(IncomingData); ok {
				rings = append(rings, d.CallID)
			}
		}
		h.ev.mu.Unlock()
		for _, id := range rings {
			if h.svc.Answer(ctx, a.AgentID, id) == nil {
				_, _ = h.svc.SendChat(ctx, p, id, "hello")
				_ = h.svc.Hangup(ctx, p, id)
			}
		}
		time.Sleep(time.Millisecond) // polling the event list
	}
}
