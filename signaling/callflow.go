package signaling

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/avs/avs/callcenter"
)

// This file is the only place that knows package callcenter: it maps the
// protocol's business requests onto the Service, and the Service's events
// onto pushes. Everything else in the package is transport.

// CallFlow binds a Server to a callcenter.Service. It is the Server's
// Handler and the Service's Notifier.
type CallFlow struct {
	srv *Server
	cc  *callcenter.Service
	ops map[string]flowOp
}

type flowOp struct {
	access Access
	fn     func(ctx context.Context, req *Request) (any, error)
}

// NewCallFlow returns the binding for srv. Pass it as the callcenter's
// Notifier, then call Attach with the Service:
//
//	flow := signaling.NewCallFlow(sig)
//	cc, err := callcenter.New(callcenter.Params{..., Notifier: flow})
//	err = flow.Attach(cc)
func NewCallFlow(srv *Server) *CallFlow {
	f := &CallFlow{srv: srv}
	f.ops = map[string]flowOp{
		"customer.auth":    {Public, f.customerAuth},
		"agent.login":      {Public, f.agentLogin},
		"agent.loginToken": {Public, f.agentLoginToken},
		"call.place":       {CustomerOnly, f.placeCall},
		"call.leave":       {CustomerOnly, f.leaveQueue},
		"chat.history":     {CustomerOnly, f.chatHistory},
		"survey.submit":    {CustomerOnly, f.submitSurvey},
		"agent.status":     {AgentOnly, f.agentStatus},
		"call.answer":      {AgentOnly, f.answer},
		"call.reject":      {AgentOnly, f.reject},
		"call.transfer":    {AgentOnly, f.transfer},
		"call.hangup":      {Authenticated, f.hangup},
		"chat.send":        {Authenticated, f.sendChat},
	}
	f.addPageOps()
	return f
}

// Attach connects the Service and installs the binding as the Server's
// Handler; until then the Server refuses connections.
func (f *CallFlow) Attach(cc *callcenter.Service) error {
	if cc == nil {
		return errors.New("signaling: Attach: nil callcenter.Service")
	}
	f.cc = cc
	return f.srv.SetHandler(f)
}

// Routes implements Handler.
func (f *CallFlow) Routes() []Route {
	out := make([]Route, 0, len(f.ops))
	for t, op := range f.ops {
		out = append(out, Route{Type: t, Access: op.access})
	}
	return out
}

// Handle implements Handler.
func (f *CallFlow) Handle(ctx context.Context, req *Request) (any, error) {
	op, ok := f.ops[req.Type]
	if !ok {
		return nil, Errorf(CodeUnknownType, "unknown message type %q", req.Type)
	}
	out, err := op.fn(ctx, req)
	if err != nil {
		return nil, fromCallcenter(err)
	}
	return out, nil
}

// fromCallcenter keeps the Service's stable code and human message.
func fromCallcenter(err error) error {
	var ce *callcenter.Error
	if errors.As(err, &ce) {
		return &Error{Code: ce.Code, Message: ce.Message, NavigateType: ce.NavigateType}
	}
	return err
}

// customerState and agentState are what a session remembers of the
// business layer, so a session that ends can be cleaned up.
type customerState struct {
	cs *callcenter.CustomerSession

	mu     sync.Mutex
	callID int64 // the call this session placed, until it ends
}

type agentState struct {
	as *callcenter.AgentSession

	mu      sync.Mutex
	ringing map[int64]bool // ringing call id → voiceOnly
}

func (f *CallFlow) customer(req *Request) (*customerState, error) {
	st, ok := req.Session.State().(*customerState)
	if !ok {
		return nil, Errorf(CodeUnauthenticated, "sign in as a customer first")
	}
	return st, nil
}

func (f *CallFlow) agent(req *Request) (*agentState, error) {
	st, ok := req.Session.State().(*agentState)
	if !ok {
		return nil, Errorf(CodeUnauthenticated, "sign in as an agent first")
	}
	return st, nil
}

// roomFor names a call's SFU room. It must match the name the call center
// opens (callcenter's roomName and ConnectedData.Room): the customer joins
// it while still queued, before the call center announces it.
func roomFor(callID int64) string { return "call-" + strconv.FormatInt(callID, 10) }

type authIn struct {
	Options   json.RawMessage `json:"options"`
	ExtraData string          `json:"extraData"`
	Sign      string          `json:"sign"`
	Nonce     string          `json:"nonce"`
	Timestamp json.RawMessage `json:"timestamp"` // string or number
	AppID     string          `json:"appId"`
	Path      string          `json:"path"`
}

type authOut struct {
	Customer         callcenter.CustomerInfo   `json:"customer"`
	BizID            string                    `json:"bizId"`
	CallTimesLeft    int                       `json:"callTimesLeft"`
	NavigateType     int                       `json:"navigateType"`
	NavigatePath     string                    `json:"navigatePath,omitempty"`
	EnvVersion       string                    `json:"envVersion,omitempty"`
	VoiceOnly        bool                      `json:"voiceOnly"`
	CallDirect       callcenter.CallDirect     `json:"callDirect"`
	Open             bool                      `json:"open"`
	AgentsOnline     int                       `json:"agentsOnline"`
	OfferOfflineForm bool                      `json:"offerOfflineForm"`
	Settings         callcenter.PublicSettings `json:"settings"`
	ICEServers       []callcenter.ICEServer    `json:"iceServers"`
}

func (f *CallFlow) customerAuth(ctx context.Context, req *Request) (any, error) {
	var in authIn
	if err := req.Decode(&in); err != nil {
		return nil, err
	}
	cs, err := f.cc.AuthCustomer(ctx, callcenter.AuthRequest{
		Options: in.Options, ExtraData: in.ExtraData, Sign: in.Sign, Nonce: in.Nonce,
		Timestamp: strings.Trim(string(in.Timestamp), `"`), AppID: in.AppID, Path: in.Path,
		RemoteAddr: req.RemoteAddr,
	})
	if err != nil {
		return nil, err
	}
	if err := req.Session.Authenticate(Party{RoleCustomer, cs.CustomerID}); err != nil {
		return nil, err
	}
	req.Session.SetState(&customerState{cs: cs})
	ice := cs.ICEServers
	if ice == nil {
		ice = []callcenter.ICEServer{}
	}
	return authOut{
		Customer: cs.Customer, BizID: cs.BizID, CallTimesLeft: cs.CallTimesLeft, NavigateType: cs.NavigateType,
		NavigatePath: cs.NavPath, EnvVersion: cs.EnvVersion, VoiceOnly: cs.VoiceOnly, CallDirect: cs.CallDirect,
		Open: cs.Open, AgentsOnline: cs.AgentsOnline, OfferOfflineForm: cs.OfferOfflineForm,
		Settings: cs.Settings, ICEServers: ice,
	}, nil
}

type agentLoginIn struct {
	TenantKey string `json:"tenantKey"`
	Username  string `json:"username"`
	Password  string `json:"password"`
	Token     string `json:"token"`
}

type agentOut struct {
	AgentID    int64                  `json:"agentId"`
	Username   string                 `json:"username"`
	NickName   string                 `json:"nickName"`
	Avatar     string                 `json:"avatar,omitempty"`
	GroupIDs   []int64                `json:"groupIds"`
	MaxCalls   int                    `json:"maxCalls"`
	Status     string                 `json:"status"`
	ICEServers []callcenter.ICEServer `json:"iceServers"`
}

func (f *CallFlow) agentLogin(ctx context.Context, req *Request) (any, error) {
	var in agentLoginIn
	if err := req.Decode(&in); err != nil {
		return nil, err
	}
	as, err := f.cc.AgentLogin(ctx, in.TenantKey, in.Username, in.Password)
	if err != nil {
		return nil, err
	}
	return f.agentSignedIn(req, as)
}

func (f *CallFlow) agentLoginToken(ctx context.Context, req *Request) (any, error) {
	var in agentLoginIn
	if err := req.Decode(&in); err != nil {
		return nil, err
	}
	as, err := f.cc.AgentLoginToken(ctx, in.Token)
	if err != nil {
		return nil, err
	}
	return f.agentSignedIn(req, as)
}

func (f *CallFlow) agentSignedIn(req *Request, as *callcenter.AgentSession) (any, error) {
	if err := req.Session.Authenticate(Party{RoleAgent, as.AgentID}); err != nil {
		return nil, err
	}
	req.Session.SetState(&agentState{as: as, ringing: map[int64]bool{}})
	out := agentOut{AgentID: as.AgentID, Username: as.Username, NickName: as.NickName, Avatar: as.Avatar,
		GroupIDs: as.GroupIDs, MaxCalls: as.MaxCalls, Status: as.Status, ICEServers: as.ICEServers}
	if out.GroupIDs == nil {
		out.GroupIDs = []int64{}
	}
	if out.ICEServers == nil {
		out.ICEServers = []callcenter.ICEServer{}
	}
	return out, nil
}

type placeIn struct {
	AgentID int64 `json:"agentId"`
	GroupID int64 `json:"groupId"`
	StoreID int64 `json:"storeId"`
	GoodsID int64 `json:"goodsId"`
}

type placeOut struct {
	*callcenter.CallInfo
	Room       string `json:"room"`
	MediaReady bool   `json:"mediaReady"`
}

func (f *CallFlow) placeCall(ctx context.Context, req *Request) (any, error) {
	st, err := f.customer(req)
	if err != nil {
		return nil, err
	}
	if req.Draining {
		return nil, &Error{Code: callcenter.CodeUnavailable, Message: "the service is not taking calls now"}
	}
	var in placeIn
	if err := req.Decode(&in); err != nil {
		return nil, err
	}
	info, err := f.cc.PlaceCall(ctx, st.cs, callcenter.PlaceCallRequest{
		AgentID: in.AgentID, GroupID: in.GroupID, StoreID: in.StoreID, GoodsID: in.GoodsID,
	})
	if err != nil {
		return nil, err
	}
	st.mu.Lock()
	st.callID = info.CallID
	st.mu.Unlock()
	// Media may be set up while the customer waits, so it flows the moment
	// an agent answers.
	room := roomFor(info.CallID)
	req.Session.SetMediaRoom(room, info.VoiceOnly)
	return placeOut{CallInfo: info, Room: room, MediaReady: true}, nil
}

type callIn struct {
	CallID  int64  `json:"callId"`
	AgentID int64  `json:"agentId"` // call.transfer
	GroupID int64  `json:"groupId"` // call.transfer
	Text    string `json:"text"`    // chat.send
}

func decodeCall(req *Request) (callIn, error) {
	var in callIn
	if err := req.Decode(&in); err != nil {
		return in, err
	}
	if in.CallID <= 0 {
		return in, Errorf(CodeBadRequest, "%s: callId is required", req.Type)
	}
	return in, nil
}

func (f *CallFlow) leaveQueue(ctx context.Context, req *Request) (any, error) {
	st, err := f.customer(req)
	if err != nil {
		return nil, err
	}
	in, err := decodeCall(req)
	if err != nil {
		return nil, err
	}
	return nil, f.cc.LeaveQueue(ctx, st.cs, in.CallID)
}

func (f *CallFlow) hangup(ctx context.Context, req *Request) (any, error) {
	in, err := decodeCall(req)
	if err != nil {
		return nil, err
	}
	p, _ := req.Session.Party()
	return nil, f.cc.Hangup(ctx, callcenter.Party{Role: p.Role, ID: p.ID}, in.CallID)
}

func (f *CallFlow) sendChat(ctx context.Context, req *Request) (any, error) {
	in, err := decodeCall(req)
	if err != nil {
		return nil, err
	}
	p, _ := req.Session.Party()
	return f.cc.SendChat(ctx, callcenter.Party{Role: p.Role, ID: p.ID}, in.CallID, in.Text)
}

func (f *CallFlow) chatHistory(ctx context.Context, req *Request) (any, error) {
	st, err := f.customer(req)
	if err != nil {
		return nil, err
	}
	var in struct {
		Before int64 `json:"before"`
	}
	if err := req.Decode(&in); err != nil {
		return nil, err
	}
	return f.cc.ChatHistory(ctx, st.cs, in.Before)
}

// labels accepts the survey labels as a list or as one comma-separated
// string, as the mini-program has sent both.
type labels []string

func (l *labels) UnmarshalJSON(b []byte) error {
	var list []string
	if err := json.Unmarshal(b, &list); err == nil {
		*l = list
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("labels must be a list or a string: %w", err)
	}
	*l = nil
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*l = append(*l, part)
		}
	}
	return nil
}

type surveyIn struct {
	CallID   int64  `json:"callId"`
	Resolved string `json:"surveryResolveResult"`
	Labels   labels `json:"surveryLables"`
	Remark   string `json:"surveryRemark"`
	Desc     string `json:"surveryDesc"`
}

func (f *CallFlow) submitSurvey(ctx context.Context, req *Request) (any, error) {
	st, err := f.customer(req)
	if err != nil {
		return nil, err
	}
	var in surveyIn
	if err := req.Decode(&in); err != nil {
		return nil, err
	}
	if in.CallID <= 0 {
		return nil, Errorf(CodeBadRequest, "survey.submit: callId is required")
	}
	nav, err := f.cc.SubmitSurvey(ctx, st.cs, in.CallID, callcenter.SurveyAnswer{
		Resolved: in.Resolved, Labels: in.Labels, Remark: in.Remark, Description: in.Desc,
	})
	if err != nil {
		return nil, err
	}
	return navigateOut{NavigateType: nav}, nil
}

type navigateOut struct {
	NavigateType int `json:"navigateType"`
}

func (f *CallFlow) agentStatus(ctx context.Context, req *Request) (any, error) {
	st, err := f.agent(req)
	if err != nil {
		return nil, err
	}
	var in struct {
		Status string `json:"status"`
	}
	if err := req.Decode(&in); err != nil {
		return nil, err
	}
	if err := f.cc.SetAgentStatus(ctx, st.as.AgentID, in.Status); err != nil {
		return nil, err
	}
	return struct {
		Status string `json:"status"`
	}{f.cc.AgentStatus(st.as.AgentID)}, nil
}

type answerOut struct {
	CallID    int64  `json:"callId"`
	Room      string `json:"room"`
	VoiceOnly bool   `json:"voiceOnly"`
}

func (f *CallFlow) answer(ctx context.Context, req *Request) (any, error) {
	st, err := f.agent(req)
	if err != nil {
		return nil, err
	}
	in, err := decodeCall(req)
	if err != nil {
		return nil, err
	}
	if err := f.cc.Answer(ctx, st.as.AgentID, in.CallID); err != nil {
		return nil, err
	}
	st.mu.Lock()
	voiceOnly := st.ringing[in.CallID]
	delete(st.ringing, in.CallID)
	st.mu.Unlock()
	// Set here as well as on call.connected so a media.join right after
	// this reply finds the room.
	room := roomFor(in.CallID)
	req.Session.SetMediaRoom(room, voiceOnly)
	return answerOut{CallID: in.CallID, Room: room, VoiceOnly: voiceOnly}, nil
}

func (f *CallFlow) reject(ctx context.Context, req *Request) (any, error) {
	st, err := f.agent(req)
	if err != nil {
		return nil, err
	}
	in, err := decodeCall(req)
	if err != nil {
		return nil, err
	}
	return nil, f.cc.Reject(ctx, st.as.AgentID, in.CallID)
}

func (f *CallFlow) transfer(ctx context.Context, req *Request) (any, error) {
	st, err := f.agent(req)
	if err != nil {
		return nil, err
	}
	in, err := decodeCall(req)
	if err != nil {
		return nil, err
	}
	return nil, f.cc.Transfer(ctx, st.as.AgentID, in.CallID, callcenter.TransferTarget{AgentID: in.AgentID, GroupID: in.GroupID})
}

// Notify implements callcenter.Notifier: it applies what an event means for
// media, then pushes it to every live session of the party.
func (f *CallFlow) Notify(to callcenter.Party, ev callcenter.Event) {
	p := Party{Role: to.Role, ID: to.ID}
	for _, s := range f.srv.sessionsOf(p) {
		f.track(s, ev)
	}
	f.srv.Push(p, ev.Type, ev.Data)
}

func (f *CallFlow) track(s *Session, ev callcenter.Event) {
	switch d := ev.Data.(type) {
	case callcenter.IncomingData:
		if st, ok := s.State().(*agentState); ok {
			st.mu.Lock()
			st.ringing[d.CallID] = d.VoiceOnly
			st.mu.Unlock()
		}
	case callcenter.ConnectedData:
		s.SetMediaRoom(d.Room, d.VoiceOnly)
	case callcenter.TransferData:
		if d.LeftTheAgent {
			s.clearMediaRoom(roomFor(d.CallID))
		}
	case callcenter.CallStateData:
		if ev.Type == callcenter.EventRingCancelled {
			if st, ok := s.State().(*agentState); ok {
				st.mu.Lock()
				delete(st.ringing, d.CallID)
				st.mu.Unlock()
			}
		}
	case callcenter.EndedData:
		s.clearMediaRoom(roomFor(d.CallID))
		if st, ok := s.State().(*customerState); ok {
			st.mu.Lock()
			if st.callID == d.CallID {
				st.callID = 0
			}
			st.mu.Unlock()
		}
	}
}

// SessionEnded implements Handler: a session that is gone for good leaves
// its call (the call center decides the resultCode) and an agent with no
// other console goes offline.
func (f *CallFlow) SessionEnded(ctx context.Context, s *Session, reason EndReason, others int) {
	if reason == EndShutdown {
		// The process is going away: the call center keeps live calls open
		// in the store and closes them when it starts again, with the
		// result the call really had; a hang-up here would record the
		// customer as having abandoned.
		return
	}
	p, _ := s.Party()
	var err error
	switch st := s.State().(type) {
	case *customerState:
		st.mu.Lock()
		callID := st.callID
		st.mu.Unlock()
		if callID != 0 {
			err = f.cc.Hangup(ctx, callcenter.Party{Role: p.Role, ID: p.ID}, callID)
			if c := callcenter.CodeOf(err); c == callcenter.CodeNotFound || c == callcenter.CodeInvalidState {
				err = nil // the call ended meanwhile
			}
		}
	case *agentState:
		if others == 0 {
			err = f.cc.SetAgentStatus(ctx, st.as.AgentID, callcenter.StatusOffline)
		}
	}
	if err != nil {
		f.srv.log.Warn("business cleanup after session end failed", "role", p.Role, "party", p.ID,
			"reason", reason, "err", err)
	}
}
