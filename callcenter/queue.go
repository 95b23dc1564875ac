package callcenter

import (
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/avs/avs/store"
)

// liveCall is a call that is not final yet: queued, ringing or connected.
type liveCall struct {
	rec      *store.Call
	customer *store.Customer
	tenant   *store.Tenant
	settings *TenantSettings
	loc      *time.Location

	priority    int    // higher is served first (VIP)
	seq         uint64 // arrival order; kept on requeue so the call keeps its place
	targetAgent int64  // route to this agent only; else rec.GroupID (0 = any agent)
	enqueuedAt  time.Time
	deadline    time.Time // queue timeout

	queueTimer *time.Timer
	ringTimer  *time.Timer
	ringGen    int // tells a stale ring timer from the current one

	ringing  int64 // agent being rung, 0 if none
	agent    int64 // agent in the call, 0 if none
	tried    map[int64]bool
	rings    int // unanswered rings
	answered bool
	roomOpen bool

	lastPos  int
	lastWait int64
}

func roomName(callID int64) string { return "call-" + strconv.FormatInt(callID, 10) }

// routeKey groups calls that compete for the same agents, for positions
// and metrics.
func (c *liveCall) routeKey() string {
	if c.targetAgent != 0 {
		return "agent"
	}
	return strconv.FormatInt(c.rec.GroupID, 10)
}

// queuedLocked returns the tenant's queued calls in service order.
func (s *Service) queuedLocked(tenantID int64) []*liveCall {
	var q []*liveCall
	for _, c := range s.calls {
		if c.rec.TenantID == tenantID && c.rec.State == store.CallQueued {
			q = append(q, c)
		}
	}
	sort.Slice(q, func(i, j int) bool {
		if q[i].priority != q[j].priority {
			return q[i].priority > q[j].priority
		}
		return q[i].seq < q[j].seq
	})
	return q
}

// enqueueLocked puts c in the queue and arms its timeout.
func (s *Service) enqueueLocked(c *liveCall, now time.Time) {
	c.rec.State = store.CallQueued
	c.enqueuedAt = now
	s.stopTimer(c.queueTimer)
	wait := max(c.deadline.Sub(now), time.Millisecond)
	id := c.rec.ID
	c.queueTimer = s.afterLocked(wait, func() { s.queueTimeoutLocked(id) })
}

func (s *Service) queueTimeoutLocked(id int64) {
	c := s.calls[id]
	if c == nil || c.rec.State != store.CallQueued {
		return
	}
	c.queueTimer = nil
	code := ResultQueueTimeout
	if c.rings > 0 {
		// The last thing that happened to the customer was an agent not
		// answering; the record says so rather than "timeout".
		code = ResultNoAnswer
	}
	s.endLocked(c, code, "")
}

// dispatchLocked rings available agents for the tenant's queued calls, in
// queue order, then pushes fresh positions.
func (s *Service) dispatchLocked(tenantID int64) {
	for _, c := range s.queuedLocked(tenantID) {
		if a := s.pickAgentLocked(c); a != nil {
			s.ringLocked(c, a)
		}
	}
	s.pushPositionsLocked(tenantID)
}

// eligibleLocked reports whether agent a may take call c, status aside.
func eligible(c *liveCall, a *agentState) bool {
	if a.rec.TenantID != c.rec.TenantID {
		return false
	}
	if c.targetAgent != 0 {
		return a.rec.ID == c.targetAgent
	}
	if c.rec.GroupID != 0 {
		return a.inGroup(c.rec.GroupID)
	}
	return true
}

// pickAgentLocked chooses the longest-idle available agent for c,
// preferring agents this call has not rung yet.
func (s *Service) pickAgentLocked(c *liveCall) *agentState {
	var best *agentState
	for _, a := range s.agents {
		if !eligible(c, a) || !a.available() {
			continue
		}
		if best == nil || better(c, a, best) {
			best = a
		}
	}
	return best
}

func better(c *liveCall, a, b *agentState) bool {
	if c.tried[a.rec.ID] != c.tried[b.rec.ID] {
		return !c.tried[a.rec.ID]
	}
	if !a.idleSince.Equal(b.idleSince) {
		return a.idleSince.Before(b.idleSince)
	}
	return a.rec.ID < b.rec.ID
}

// ringLocked takes c out of the queue and rings agent a.
func (s *Service) ringLocked(c *liveCall, a *agentState) {
	now := s.now()
	s.observeWaitLocked(c, now)
	c.rec.State = store.CallRinging
	c.rec.AgentID = a.rec.ID
	c.ringing = a.rec.ID
	c.tried[a.rec.ID] = true
	a.calls[c.rec.ID] = true
	c.ringGen++
	gen, id := c.ringGen, c.rec.ID
	c.ringTimer = s.afterLocked(s.cfg.RingTimeout, func() { s.ringTimeoutLocked(id, gen) })
	s.saveLocked(c)
	s.agentMetricsLocked()
	s.emitLocked(Party{RoleCustomer, c.rec.CustomerID}, EventCallRinging, RingingData{CallID: id, Agent: a.info("")})
	s.emitLocked(Party{RoleAgent, a.rec.ID}, EventCallRinging, IncomingData{
		CallID: id, Customer: customerInfo(c.customer), BizID: c.rec.BizID, Subject: c.rec.Subject,
		VoiceOnly: c.rec.VoiceOnly, Transferred: c.answered, RingTimeoutMS: s.cfg.RingTimeout.Milliseconds(),
	})
}

func (s *Service) ringTimeoutLocked(id int64, gen int) {
	c := s.calls[id]
	if c == nil || c.rec.State != store.CallRinging || c.ringGen != gen {
		return
	}
	c.ringTimer = nil
	s.noAnswerLocked(c, "timeout")
}

// noAnswerLocked handles a ring that ended without an answer (timeout,
// reject, agent gone): ring the next agent or end with resultCode 5.
func (s *Service) noAnswerLocked(c *liveCall, reason string) {
	agentID := c.ringing
	s.stopTimer(c.ringTimer)
	c.ringTimer = nil
	c.ringing = 0
	c.rings++
	if a := s.agents[agentID]; a != nil {
		delete(a.calls, c.rec.ID)
		if reason == "timeout" {
			s.missedLocked(a)
		}
	}
	s.emitLocked(Party{RoleAgent, agentID}, EventRingCancelled, CallStateData{CallID: c.rec.ID, Reason: reason})
	if s.cfg.OnNoAnswer == OnNoAnswerEnd || c.rings >= s.cfg.MaxRingAttempts {
		s.endLocked(c, ResultNoAnswer, "")
		return
	}
	now := s.now()
	if !now.Before(c.deadline) {
		s.endLocked(c, ResultNoAnswer, "")
		return
	}
	s.enqueueLocked(c, now)
	s.saveLocked(c)
	s.emitLocked(Party{RoleCustomer, c.rec.CustomerID}, EventCallQueued, CallStateData{CallID: c.rec.ID, Reason: "no_answer"})
	c.lastPos = 0
	s.agentMetricsLocked()
	s.dispatchLocked(c.rec.TenantID)
}

// missedLocked counts a ring agent a let time out. The agent goes to the
// back of the idle order, and after AwayAfterMissed in a row is set away:
// otherwise an absent agent, never busy, would be rung first for every call.
func (s *Service) missedLocked(a *agentState) {
	a.missed++
	a.idleSince = s.now()
	if s.cfg.AwayAfterMissed > 0 && a.missed >= s.cfg.AwayAfterMissed && a.status == StatusOnline {
		a.status = StatusAway
		s.log.Info("agent set away after missed calls", "agent", a.rec.ID, "missed", a.missed)
		s.emitLocked(Party{RoleAgent, a.rec.ID}, EventAgentStatus,
			AgentStatusData{AgentID: a.rec.ID, Status: StatusAway, Reason: "missed_calls"})
	}
}

// pushPositionsLocked tells every waiting customer of the tenant its place
// and estimated wait when they changed, and refreshes the queue gauges.
func (s *Service) pushPositionsLocked(tenantID int64) {
	t := s.tenantLocked(tenantID)
	type route struct{ group, agent int64 }
	ahead := map[route]int{}
	serving := map[route]int{}
	counts := map[string]int{}
	for _, c := range s.queuedLocked(tenantID) {
		r := route{c.rec.GroupID, c.targetAgent}
		ahead[r]++
		pos := ahead[r]
		counts[c.routeKey()]++
		n, ok := serving[r]
		if !ok {
			for _, a := range s.agents {
				if eligible(c, a) && a.status != StatusOffline {
					n += a.maxCalls
				}
			}
			serving[r] = n
		}
		wait := int64(pos) * t.avgCall.Milliseconds() / int64(max(n, 1))
		if pos == c.lastPos && wait == c.lastWait {
			continue
		}
		c.lastPos, c.lastWait = pos, wait
		s.emitLocked(Party{RoleCustomer, c.rec.CustomerID}, EventQueuePosition,
			QueuePositionData{CallID: c.rec.ID, Position: pos, EstimatedWaitMS: wait})
	}
	tenant := strconv.FormatInt(tenantID, 10)
	for g := range t.lastGroups {
		if counts[g] == 0 {
			s.m.queueLen.WithLabelValues(tenant, g).Set(0)
			delete(t.lastGroups, g)
		}
	}
	for g, n := range counts {
		s.m.queueLen.WithLabelValues(tenant, g).Set(float64(n))
		t.lastGroups[g] = true
	}
	s.m.active.Set(float64(len(s.calls)))
}

// observeWaitLocked records the time c spent in the queue just now.
func (s *Service) observeWaitLocked(c *liveCall, now time.Time) {
	s.stopTimer(c.queueTimer)
	c.queueTimer = nil
	s.m.queueWait.WithLabelValues(strconv.FormatInt(c.rec.TenantID, 10), c.routeKey()).
		Observe(now.Sub(c.enqueuedAt).Seconds())
}

// saveLocked writes c's record; a failure is logged, not returned, because
// the live state has already moved on and the next write carries it.
func (s *Service) saveLocked(c *liveCall) {
	ctx, cancel := s.storeCtx()
	defer cancel()
	if err := s.st.UpdateCall(ctx, c.rec, nil); err != nil {
		s.log.Error("call record not saved", "call", c.rec.ID, "err", err)
	}
}

func (s *Service) agentMetricsLocked() {
	counts := map[string]int{StatusOnline: 0, StatusAway: 0, StatusBusy: 0, StatusOffline: 0}
	for _, a := range s.agents {
		counts[a.liveStatus()]++
	}
	for st, n := range counts {
		s.m.agents.WithLabelValues(st).Set(float64(n))
	}
}

func customerInfo(c *store.Customer) CustomerInfo {
	if c == nil {
		return CustomerInfo{}
	}
	return CustomerInfo{ID: c.ID, NickName: c.NickName, Avatar: c.Avatar, Level: c.Level, Email: c.Email,
		Description: c.Description, CustomerCode: c.Token}
}

func (c *liveCall) String() string { return fmt.Sprintf("call %d (%s)", c.rec.ID, c.rec.State) }
