package sfu

import (
	"math/rand/v2"
	"sync"
	"time"

	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/rtcp"
)

// transportFeedback records when a publisher's packets arrive, by their
// transport-wide sequence numbers, for the transport-cc feedback that
// drives the publisher's own congestion control. The layers' reader goroutines record
// under the participant's own lock, where pion's interceptor would hand
// every packet through a channel to another goroutine and parse its header
// a second time.
type transportFeedback struct {
	mu       sync.Mutex
	recorder *twcc.Recorder
	start    time.Time
	pending  bool
}

func (f *transportFeedback) record(ssrc uint32, seq uint16, arrival time.Time) {
	f.mu.Lock()
	if f.recorder == nil {
		f.recorder = twcc.NewRecorder(rand.Uint32())
		f.start = arrival
	}
	f.recorder.Record(ssrc, seq, arrival.Sub(f.start).Microseconds())
	f.pending = true
	f.mu.Unlock()
}

// packets returns the feedback due since the last call, or nil.
func (f *transportFeedback) packets() []rtcp.Packet {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.pending {
		return nil
	}
	f.pending = false
	return f.recorder.BuildFeedbackPacket()
}
