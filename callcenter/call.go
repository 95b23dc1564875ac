package callcenter

import (
	"context"
	"errors"
	"time"

	"github.com/avs/avs/store"
)

// PlaceCallRequest is the customer's choice on the optional pages. Routing
// takes the first of: AgentID, GroupID, StoreID's group, the entry's
// callDirect, the tenant's default group, any agent.
type PlaceCallRequest struct {
	AgentID int64 // picked on the agents page
	GroupID int64
	StoreID int64 // picked on the stores page
	GoodsID int64 // picked on the goods page; travels to the agent as the subject
}

// CallInfo is a placed call.
type CallInfo struct {
	CallID     int64 `json:"callId"`
	Position   int   `json:"position"`
	CallsLeft  int   `json:"callTimesLeft"` // -1 = unlimited
	VoiceOnly  bool  `json:"voiceOnly"`
	AgentID    int64 `json:"agentId,omitempty"`
	GroupID    int64 `json:"groupId,omitempty"`
	WaitMillis int64 `json:"estimatedWaitMs"`
}

// PlaceCall checks working hours, the verify code, agents and callTimes,
// records the call and puts it in the queue. The customer then gets
// EventQueuePosition, EventCallRinging, EventCallConnected, EventCallEnded.
func (s *Service) PlaceCall(ctx context.Context, sess *CustomerSession, req PlaceCallRequest) (*CallInfo, error) {
	t, err := s.st.TenantByID(ctx, sess.TenantID)
	if err != nil {
		return nil, lookupErr(CodeAuthFailed, "tenant", err)
	}
	settings, err := ParseSettings(t.Settings)
	if err != nil {
		return nil, internal("tenant settings", err)
	}
	now := s.now()
	if !settings.WorkingHours.OpenAt(now) {
		return nil, newErr(CodeOutsideWorkingHours, nil)
	}
	// callDirect skips the optional pages, but only a signed entry may skip
	// the verify code: an unsigned one could set callDirect itself.
	if settings.Pages.VerifyCode && !sess.Verified() && !(sess.CallDirect.Enable && sess.Signed) {
		return nil, newErr(CodeVerifyRequired, nil)
	}
	cust, err := s.st.CustomerByID(ctx, sess.TenantID, sess.CustomerID)
	if err != nil {
		return nil, lookupErr(CodeNotFound, "customer", err)
	}
	lc := &liveCall{customer: cust, tenant: t, settings: settings, loc: tenantLoc(settings), tried: map[int64]bool{}}
	rec := &store.Call{TenantID: t.ID, CustomerID: cust.ID, EntryID: sess.EntryID, BizID: sess.BizID,
		CustomChannel: sess.Channel, VoiceOnly: sess.VoiceOnly, VIP: cust.Level == "vip", State: store.CallQueued,
		DialTime: now}
	lc.rec = rec
	if err := s.route(lc, sess, req); err != nil {
		return nil, err
	}
	if settings.VIPPriority && rec.VIP {
		lc.priority = 1
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.draining {
		return nil, newErr(CodeUnavailable, nil)
	}
	for _, c := range s.calls {
		if c.rec.CustomerID == cust.ID {
			return nil, errf(CodeInvalidState, "customer already has call %d", c.rec.ID)
		}
	}
	if !s.anyoneServes(lc) {
		return nil, newErr(CodeNoAgentOnline, nil)
	}
	if err := s.st.CreateCall(ctx, rec); err != nil {
		if errors.Is(err, store.ErrNoCallTimes) {
			return nil, newErr(CodeNoCallTimes, err)
		}
		return nil, internal("create call", err)
	}
	s.seq++
	lc.seq = s.seq
	lc.deadline = now.Add(s.cfg.QueueTimeout)
	s.calls[rec.ID] = lc
	s.enqueueLocked(lc, now)
	s.emitLocked(Party{RoleCustomer, cust.ID}, EventCallQueued, CallStateData{CallID: rec.ID})
	s.dispatchLocked(t.ID)
	info := &CallInfo{CallID: rec.ID, VoiceOnly: rec.VoiceOnly, AgentID: lc.targetAgent, GroupID: rec.GroupID,
		Position: lc.lastPos, WaitMillis: lc.lastWait, CallsLeft: -1}
	if e, err := s.st.EntryByID(ctx, sess.EntryID); err == nil {
		info.CallsLeft = e.Left()
	}
	return info, nil
}

// route fills the call's target from the request, the entry and the tenant.
func (s *Service) route(lc *liveCall, sess *CustomerSession, req PlaceCallRequest) error {
	st := lc.settings
	if req.GoodsID != 0 {
		g := findGoods(st.Goods, req.GoodsID)
		if g == nil {
			return errf(CodeNotFound, "goods %d", req.GoodsID)
		}
		lc.rec.Subject = g.Name
	}
	switch {
	case req.AgentID != 0:
		lc.targetAgent = req.AgentID
	case req.GroupID != 0:
		lc.rec.GroupID = req.GroupID
	case req.StoreID != 0:
		var found *StoreInfo
		for i := range st.Stores {
			if st.Stores[i].ID == req.StoreID {
				found = &st.Stores[i]
			}
		}
		if found == nil {
			return errf(CodeNotFound, "store %d", req.StoreID)
		}
		lc.rec.GroupID = found.AgentGroupID
	case sess.CallDirect.AgentID != 0:
		lc.targetAgent = int64(sess.CallDirect.AgentID)
	case sess.CallDirect.AgentGroupID != 0:
		lc.rec.GroupID = int64(sess.CallDirect.AgentGroupID)
	default:
		lc.rec.GroupID = st.DefaultGroupID
	}
	return nil
}

// anyoneServes reports whether an agent able to take c is logged in and
// not offline; if not, the customer is offered the offline form instead.
func (s *Service) anyoneServes(c *liveCall) bool {
	for _, a := range s.agents {
		if eligible(c, a) && a.status != StatusOffline && !a.rec.Disabled {
			return true
		}
	}
	return false
}

// LeaveQueue is the customer leaving the queue page (resultCode 1).
func (s *Service) LeaveQueue(ctx context.Context, sess *CustomerSession, callID int64) error {
	return s.Hangup(ctx, Party{RoleCustomer, sess.CustomerID}, callID)
}

// Hangup ends or leaves a call for either side. The customer leaving the
// queue gives resultCode 1, hanging up while ringing 3; an agent hanging
// up while ringing rejects; either side hanging up a connected call gives 4.
func (s *Service) Hangup(ctx context.Context, by Party, callID int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.callForLocked(by, callID)
	if err != nil {
		return err
	}
	switch {
	case by.Role == RoleAgent && c.ringing == by.ID:
		s.noAnswerLocked(c, "rejected")
	case by.Role == RoleAgent && c.agent != by.ID:
		return errf(CodeForbidden, "agent %d is not in call %d", by.ID, callID)
	case c.answered:
		s.endLocked(c, ResultAnswered, by.Role)
	case c.rec.State == store.CallQueued:
		s.endLocked(c, ResultAbandoned, by.Role)
	default:
		s.endLocked(c, ResultCustomerHungUp, by.Role)
	}
	return nil
}

// callForLocked finds a live call the party belongs to.
func (s *Service) callForLocked(by Party, callID int64) (*liveCall, error) {
	c := s.calls[callID]
	if c == nil {
		return nil, errf(CodeNotFound, "call %d is not active", callID)
	}
	switch by.Role {
	case RoleCustomer:
		if c.rec.CustomerID != by.ID {
			return nil, errf(CodeForbidden, "call %d is not the customer's", callID)
		}
	case RoleAgent:
		if c.ringing != by.ID && c.agent != by.ID {
			return nil, errf(CodeForbidden, "agent %d is not in call %d", by.ID, callID)
		}
	default:
		return nil, errf(CodeBadRequest, "unknown role %q", by.Role)
	}
	return c, nil
}

// Answer connects the ringing agent: the room opens (audio only for
// voiceOnly calls) and both sides get EventCallConnected.
func (s *Service) Answer(ctx context.Context, agentID, callID int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.calls[callID]
	if c == nil || c.ringing != agentID || c.rec.State != store.CallRinging {
		return errf(CodeInvalidState, "call %d is not ringing agent %d", callID, agentID)
	}
	room := roomName(callID)
	if !c.roomOpen {
		if err := s.rooms.OpenRoom(room, c.rec.VoiceOnly); err != nil {
			return internal("open room", err)
		}
		c.roomOpen = true
	}
	now := s.now()
	s.stopTimer(c.ringTimer)
	c.ringTimer = nil
	c.ringing, c.agent = 0, agentID
	c.rec.State, c.rec.AgentID = store.CallConnected, agentID
	if a := s.agents[agentID]; a != nil {
		a.missed = 0
	}
	if !c.answered {
		c.answered = true
		c.rec.AnswerTime = now
		c.rec.QueueMS = now.Sub(c.rec.DialTime).Milliseconds()
	}
	s.saveLocked(c)
	s.agentMetricsLocked()
	data := ConnectedData{CallID: callID, Room: room, VoiceOnly: c.rec.VoiceOnly, AgentID: agentID,
		CustomerID: c.rec.CustomerID}
	s.emitLocked(Party{RoleCustomer, c.rec.CustomerID}, EventCallConnected, data)
	s.emitLocked(Party{RoleAgent, agentID}, EventCallConnected, data)
	return nil
}

// Reject is the ringing agent declining; the call goes on as if the ring
// timed out (OnNoAnswer).
func (s *Service) Reject(ctx context.Context, agentID, callID int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.calls[callID]
	if c == nil || c.ringing != agentID {
		return errf(CodeInvalidState, "call %d is not ringing agent %d", callID, agentID)
	}
	s.noAnswerLocked(c, "rejected")
	return nil
}

// TransferTarget is an agent or a group; exactly one is set.
type TransferTarget struct {
	AgentID int64
	GroupID int64
}

// Transfer hands a connected call to another agent or group. The customer
// stays in the room; the call goes back to the head of the queue routed to
// the target, and the first agent leaves.
func (s *Service) Transfer(ctx context.Context, agentID, callID int64, to TransferTarget) error {
	if (to.AgentID == 0) == (to.GroupID == 0) {
		return errf(CodeBadRequest, "transfer needs exactly one of agent or group")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.calls[callID]
	if c == nil || c.agent != agentID || c.rec.State != store.CallConnected {
		return errf(CodeInvalidState, "call %d is not connected to agent %d", callID, agentID)
	}
	if to.AgentID == agentID {
		return errf(CodeBadRequest, "cannot transfer to oneself")
	}
	probe := &liveCall{rec: &store.Call{TenantID: c.rec.TenantID, GroupID: to.GroupID}, targetAgent: to.AgentID}
	if !s.anyoneServes(probe) {
		return newErr(CodeNoAgentOnline, nil)
	}
	now := s.now()
	s.releaseAgentLocked(c, agentID, now)
	c.agent = 0
	c.targetAgent, c.rec.GroupID = to.AgentID, to.GroupID
	c.tried = map[int64]bool{agentID: true}
	c.rings = 0
	c.deadline = now.Add(s.cfg.QueueTimeout)
	c.lastPos = 0
	s.enqueueLocked(c, now)
	s.saveLocked(c)
	data := TransferData{CallID: callID, ToAgentID: to.AgentID, ToGroupID: to.GroupID, FromAgentID: agentID}
	s.emitLocked(Party{RoleCustomer, c.rec.CustomerID}, EventCallTransfered, data)
	data.LeftTheAgent = true
	s.emitLocked(Party{RoleAgent, agentID}, EventCallTransfered, data)
	s.agentMetricsLocked()
	s.dispatchLocked(c.rec.TenantID)
	return nil
}

// releaseAgentLocked frees an agent's slot held by c.
func (s *Service) releaseAgentLocked(c *liveCall, agentID int64, now time.Time) {
	if a := s.agents[agentID]; a != nil && a.calls[c.rec.ID] {
		delete(a.calls, c.rec.ID)
		if len(a.calls) == 0 {
			a.idleSince = now
		}
	}
}

// endLocked makes c final with code: timers stop, the agent is freed, the
// room closes, the record and its webhook are committed together, both
// sides are told, and the queue moves on.
func (s *Service) endLocked(c *liveCall, code int, by string) {
	now := s.now()
	if c.rec.State == store.CallQueued {
		s.observeWaitLocked(c, now)
	}
	s.stopTimersLocked(c)
	ringing, agent := c.ringing, c.agent
	for _, id := range []int64{ringing, agent} {
		if id != 0 {
			s.releaseAgentLocked(c, id, now)
		}
	}
	if c.roomOpen {
		s.rooms.CloseRoom(roomName(c.rec.ID))
		c.roomOpen = false
	}
	delete(s.calls, c.rec.ID)
	if c.answered {
		t := s.tenantLocked(c.rec.TenantID)
		// An exponential moving average keeps the estimate current without
		// storing history.
		t.avgCall = (t.avgCall*7 + now.Sub(c.rec.AnswerTime)) / 8
	}
	ctx, cancel := s.storeCtx()
	err := s.finish(ctx, c, code, now)
	cancel()
	if err != nil {
		s.log.Error("final call state not saved", "call", c.rec.ID, "err", err)
	}
	s.m.calls.WithLabelValues(itoa(code)).Inc()
	ended := EndedData{CallID: c.rec.ID, ResultCode: code, By: by, NavigateType: NavigateCallEnded}
	if c.settings.Survey.Enabled && code == ResultAnswered {
		ended.NavigateType = 0
		sv := c.settings.Survey
		ended.Survey = &sv
	}
	s.emitLocked(Party{RoleCustomer, c.rec.CustomerID}, EventCallEnded, ended)
	if ringing != 0 {
		s.emitLocked(Party{RoleAgent, ringing}, EventRingCancelled, CallStateData{CallID: c.rec.ID, Reason: "ended"})
	}
	if agent != 0 {
		s.emitLocked(Party{RoleAgent, agent}, EventCallEnded, EndedData{CallID: c.rec.ID, ResultCode: code, By: by})
	}
	s.agentMetricsLocked()
	s.dispatchLocked(c.rec.TenantID)
}

func (s *Service) stopTimersLocked(c *liveCall) {
	s.stopTimer(c.queueTimer)
	s.stopTimer(c.ringTimer)
	c.queueTimer, c.ringTimer = nil, nil
}
