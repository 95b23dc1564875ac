package callcenter

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/avs/avs/store"
)

// ChatMessage is a stored text message of a call.
type ChatMessage struct {
	ID         int64     `json:"id"`
	CallID     int64     `json:"callId"`
	SenderRole string    `json:"senderRole"`
	SenderID   int64     `json:"senderId"`
	Body       string    `json:"body"`
	CreatedAt  time.Time `json:"createdAt"`
}

// ChatPage is one page of msgHis, newest first. Pass NextBefore to get the
// next (older) page; More is false on the last page.
type ChatPage struct {
	Messages   []ChatMessage `json:"messages"`
	More       bool          `json:"more"`
	NextBefore int64         `json:"nextBefore"`
}

// SendChat stores a message of a ringing or connected call and pushes it
// to both sides (EventChatMessage).
func (s *Service) SendChat(ctx context.Context, by Party, callID int64, text string) (*ChatMessage, error) {
	text = strings.TrimSpace(text)
	if text == "" || len(text) > s.cfg.ChatMaxLength || !utf8.ValidString(text) {
		return nil, errf(CodeBadRequest, "chat message must be 1 to %d bytes of UTF-8", s.cfg.ChatMaxLength)
	}
	if !s.chatRate.allow(by.Role+":"+strconv.FormatInt(by.ID, 10), s.now()) {
		return nil, newErr(CodeRateLimited, nil)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.callForLocked(by, callID)
	if err != nil {
		return nil, err
	}
	if c.rec.State != store.CallConnected {
		return nil, errf(CodeInvalidState, "call %d is %s", callID, c.rec.State)
	}
	if by.Role == RoleAgent && c.agent != by.ID {
		return nil, errf(CodeForbidden, "agent %d is not in call %d", by.ID, callID)
	}
	m := &store.ChatMessage{CallID: callID, CustomerID: c.rec.CustomerID, SenderRole: by.Role, SenderID: by.ID,
		Body: text, CreatedAt: s.now()}
	if err := s.st.AddChat(ctx, m); err != nil {
		return nil, internal("store chat", err)
	}
	out := chatOut(*m)
	s.emitLocked(Party{RoleCustomer, c.rec.CustomerID}, EventChatMessage, out)
	s.emitLocked(Party{RoleAgent, c.agent}, EventChatMessage, out)
	return &out, nil
}

// ChatHistory returns a page of the customer's messages across calls.
func (s *Service) ChatHistory(ctx context.Context, sess *CustomerSession, before int64) (*ChatPage, error) {
	msgs, more, err := s.st.ChatHistory(ctx, sess.CustomerID, before, s.cfg.ChatPageSize)
	if err != nil {
		return nil, internal("chat history", err)
	}
	p := &ChatPage{Messages: make([]ChatMessage, 0, len(msgs)), More: more}
	for _, m := range msgs {
		p.Messages = append(p.Messages, chatOut(m))
		p.NextBefore = m.ID
	}
	return p, nil
}

func chatOut(m store.ChatMessage) ChatMessage {
	return ChatMessage{ID: m.ID, CallID: m.CallID, SenderRole: m.SenderRole, SenderID: m.SenderID, Body: m.Body,
		CreatedAt: m.CreatedAt}
}

// SurveyAnswer is the customer's satisfaction survey.
type SurveyAnswer struct {
	Resolved    string   // e.g. "已解决"; one of the tenant's resolve options if it lists any
	Labels      []string // chosen labels
	Remark      string
	Description string
}

// SubmitSurvey stores the survey of an ended call of the customer and
// returns navigateType 4. With webhook_after_survey the call record is sent
// again, survey included.
func (s *Service) SubmitSurvey(ctx context.Context, sess *CustomerSession, callID int64, ans SurveyAnswer) (int, error) {
	if len(ans.Remark) > s.cfg.ChatMaxLength || len(ans.Description) > s.cfg.ChatMaxLength || len(ans.Labels) > 50 {
		return 0, errf(CodeBadRequest, "survey too long")
	}
	rec, err := s.st.CallByID(ctx, callID)
	if err != nil {
		return 0, lookupErr(CodeNotFound, "call", err)
	}
	if rec.CustomerID != sess.CustomerID || rec.TenantID != sess.TenantID {
		return 0, errf(CodeForbidden, "call %d is not the customer's", callID)
	}
	if rec.State != store.CallEnded || !rec.Survey.At.IsZero() {
		return 0, errf(CodeInvalidState, "call %d: survey not open", callID)
	}
	lc, err := s.loadCall(ctx, rec)
	if err != nil {
		return 0, internal("load call", err)
	}
	if !lc.settings.Survey.Enabled {
		return 0, errf(CodeInvalidState, "the tenant has no survey")
	}
	if opts := lc.settings.Survey.ResolveOptions; len(opts) > 0 && ans.Resolved != "" && !contains(opts, ans.Resolved) {
		return 0, errf(CodeBadRequest, "unknown resolve option %q", ans.Resolved)
	}
	now := s.now()
	rec.Survey = store.Survey{Resolved: ans.Resolved, Labels: strings.Join(ans.Labels, ","), Remark: ans.Remark,
		Description: ans.Description, At: now}
	var out *store.Delivery
	if s.cfg.WebhookAfterSurvey {
		if out, err = s.delivery(ctx, lc, HookSurvey, now); err != nil {
			return 0, internal("survey webhook", err)
		}
	}
	if err := s.st.SaveSurvey(ctx, rec.ID, rec.Survey, out); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return 0, errf(CodeInvalidState, "call %d: survey already submitted", callID)
		}
		return 0, internal("store survey", err)
	}
	if out != nil && s.onOutbox != nil {
		s.onOutbox()
	}
	return NavigateSurveyDone, nil
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}
