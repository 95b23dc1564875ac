package callcenter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/avs/avs/store"
)

// Rooms is the media plane as the call center sees it; the SFU implements
// it. Methods are called with the Service's lock held, so they must not call
// back into the Service and should return quickly.
type Rooms interface {
	OpenRoom(name string, voiceOnly bool) error
	CloseRoom(name string)
}

// Notifier pushes events to connected clients; the signaling layer
// implements it. Notify is called from one goroutine, in order, never with
// the Service's lock held; it may call back into the Service.
type Notifier interface {
	Notify(to Party, ev Event)
}

// Party roles.
const (
	RoleCustomer = "customer"
	RoleAgent    = "agent"
)

// Party addresses a customer or an agent.
type Party struct {
	Role string // RoleCustomer or RoleAgent
	ID   int64  // customer id or agent id
}

// Event is pushed to a Party. Data is one of the *Data types of events.go.
type Event struct {
	Type string
	Data any
}

// ICEServer is one STUN/TURN server handed to a client.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// Params are the Service's dependencies. Store, Rooms and Notifier are
// required.
type Params struct {
	Config     Config
	Store      *store.Store
	Logger     *slog.Logger
	Registerer prometheus.Registerer // nil = metrics are not exported
	Rooms      Rooms
	Notifier   Notifier
	// ICEServers returns the servers (with TURN credentials) for a client;
	// userKey is "customer-<id>" or "agent-<id>". nil = none.
	ICEServers func(userKey string) []ICEServer
	// OnOutbox is called after a webhook delivery was committed, to wake
	// the deliverer (webhook.Deliverer.Notify). nil = nothing.
	OnOutbox func()
	// Now is the clock for records and signatures; nil = time.Now. Timers
	// always run on real time.
	Now func() time.Time
}

// Service is the call center. All methods are safe for concurrent use.
type Service struct {
	cfg      Config
	st       *store.Store
	log      *slog.Logger
	rooms    Rooms
	ice      func(string) []ICEServer
	onOutbox func()
	now      func() time.Time
	m        *metrics
	limiter  *rateLimiter // customer auth per remote address
	chatRate *rateLimiter // chat messages per party

	// mu guards the live state below. Store writes that change a live call
	// happen under mu, so memory and database change in the same order.
	mu       sync.Mutex
	closed   bool
	draining bool
	agents   map[int64]*agentState
	calls    map[int64]*liveCall
	tenants  map[int64]*tenantState
	seq      uint64
	timers   sync.WaitGroup

	notifier *notifyQueue
}

// tenantState is what the queue needs to know of a tenant between calls.
type tenantState struct {
	avgCall    time.Duration // moving average of answered call length
	lastGroups map[string]bool
}

// New checks p, closes calls left open by a previous process, seeds the
// demo tenant if configured and returns a running Service.
func New(p Params) (*Service, error) {
	if err := p.Config.Validate(); err != nil {
		return nil, err
	}
	switch {
	case p.Store == nil:
		return nil, errors.New("callcenter: Store is required")
	case p.Rooms == nil:
		return nil, errors.New("callcenter: Rooms is required")
	case p.Notifier == nil:
		return nil, errors.New("callcenter: Notifier is required")
	}
	m, err := newMetrics(p.Registerer)
	if err != nil {
		return nil, err
	}
	s := &Service{
		cfg: p.Config, st: p.Store, log: p.Logger, rooms: p.Rooms, ice: p.ICEServers, onOutbox: p.OnOutbox,
		now: p.Now, m: m, limiter: newRateLimiter(p.Config.AuthRatePerMinute, time.Minute),
		chatRate: newRateLimiter(p.Config.ChatRatePerMinute, time.Minute),
		agents:   map[int64]*agentState{}, calls: map[int64]*liveCall{}, tenants: map[int64]*tenantState{},
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*p.Config.StoreTimeout)
	defer cancel()
	if p.Config.Demo.Enabled {
		if err := s.seedDemo(ctx); err != nil {
			return nil, err
		}
	}
	if err := s.recover(ctx); err != nil {
		return nil, err
	}
	s.notifier = newNotifyQueue(p.Notifier)
	return s, nil
}

// Close stops every timer and the notifier goroutine. Live calls stay open
// in the store; the next New closes them.
func (s *Service) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	for _, c := range s.calls {
		s.stopTimersLocked(c)
	}
	s.mu.Unlock()
	s.timers.Wait()
	s.notifier.close()
}

// SetDraining makes PlaceCall refuse new calls (code unavailable) while
// running calls go on; used on SIGTERM.
func (s *Service) SetDraining(on bool) {
	s.mu.Lock()
	s.draining = on
	s.mu.Unlock()
}

// FlushNotifications waits until every event of the calls so far (a
// call.ended at the end of a drain) has been handed to the Notifier.
func (s *Service) FlushNotifications(ctx context.Context) error {
	return s.notifier.flush(ctx)
}

// ActiveCalls returns how many calls are queued, ringing or connected.
func (s *Service) ActiveCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.calls)
}

// storeCtx bounds a store operation that no caller context covers.
func (s *Service) storeCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), s.cfg.StoreTimeout)
}

// afterLocked runs fn after d on its own goroutine with mu held, unless the
// Service is closed by then. It must be called with mu held.
func (s *Service) afterLocked(d time.Duration, fn func()) *time.Timer {
	if s.closed {
		return nil
	}
	s.timers.Add(1)
	return time.AfterFunc(d, func() {
		defer s.timers.Done()
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.closed {
			return
		}
		fn()
	})
}

// stopTimer stops t and releases its WaitGroup slot if it had not fired.
func (s *Service) stopTimer(t *time.Timer) {
	if t != nil && t.Stop() {
		s.timers.Done()
	}
}

// emitLocked queues an event for delivery after the lock is released.
func (s *Service) emitLocked(to Party, typ string, data any) {
	s.notifier.push(to, Event{Type: typ, Data: data})
}

func (s *Service) tenantLocked(id int64) *tenantState {
	t := s.tenants[id]
	if t == nil {
		t = &tenantState{avgCall: s.cfg.EstimatedCallDuration, lastGroups: map[string]bool{}}
		s.tenants[id] = t
	}
	return t
}

// recover ends the calls a previous process left open: their queue
// places, timers and media died with it.
func (s *Service) recover(ctx context.Context) error {
	open, err := s.st.OpenCalls(ctx)
	if err != nil {
		return fmt.Errorf("callcenter: recover: %w", err)
	}
	for _, rec := range open {
		code := ResultQueueTimeout
		switch {
		case !rec.AnswerTime.IsZero():
			code = ResultAnswered
		case rec.State == store.CallRinging:
			code = ResultNoAnswer
		}
		lc, err := s.loadCall(ctx, rec)
		if err != nil {
			return fmt.Errorf("callcenter: recover call %d: %w", rec.ID, err)
		}
		if err := s.finish(ctx, lc, code, s.now()); err != nil {
			return fmt.Errorf("callcenter: recover call %d: %w", rec.ID, err)
		}
		s.log.Info("closed call left open by a previous run", "call", rec.ID, "resultCode", code)
	}
	if len(open) > 0 && s.onOutbox != nil {
		s.onOutbox()
	}
	return nil
}

// notifyQueue hands events to the Notifier on one goroutine, in order, so
// that the Service never calls out with its lock held.
type notifyQueue struct {
	n      Notifier
	mu     sync.Mutex
	items  []notice
	wake   chan struct{}
	done   chan struct{}
	closed bool
}

type notice struct {
	to Party
	ev Event
	// flushed, when set, marks a flush point: closed once everything
	// queued before it has been handed to the Notifier.
	flushed chan struct{}
}

func newNotifyQueue(n Notifier) *notifyQueue {
	q := &notifyQueue{n: n, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go q.run()
	return q
}

func (q *notifyQueue) push(to Party, ev Event) {
	q.mu.Lock()
	if !q.closed {
		q.items = append(q.items, notice{to: to, ev: ev})
	}
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *notifyQueue) run() {
	defer close(q.done)
	for {
		q.mu.Lock()
		items, closed := q.items, q.closed
		q.items = nil
		q.mu.Unlock()
		for _, it := range items {
			if it.flushed != nil {
				close(it.flushed)
				continue
			}
			q.n.Notify(it.to, it.ev)
		}
		if closed {
			return
		}
		<-q.wake
	}
}

// flush waits until everything queued so far has been delivered.
func (q *notifyQueue) flush(ctx context.Context) error {
	done := make(chan struct{})
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil
	}
	q.items = append(q.items, notice{flushed: done})
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// close delivers what is queued, then stops the goroutine.
func (q *notifyQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	<-q.done
}
