package callcenter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/avs/avs/store"
	"github.com/avs/avs/webhook"
)

// Webhook event names (webhook.HeaderEvent).
const (
	HookCallEnded = "call.ended"
	HookSurvey    = "call.survey"
)

// finish writes c's final record and, if the tenant has a webhook URL, the
// delivery announcing it, in one transaction.
func (s *Service) finish(ctx context.Context, c *liveCall, code int, now time.Time) error {
	r := c.rec
	r.State, r.ResultCode, r.EndTime = store.CallEnded, code, now
	if c.answered || !r.AnswerTime.IsZero() {
		r.CallMS = now.Sub(r.AnswerTime).Milliseconds()
	} else {
		r.QueueMS = now.Sub(r.DialTime).Milliseconds()
	}
	out, err := s.delivery(ctx, c, HookCallEnded, now)
	if err != nil {
		return err
	}
	if err := s.st.UpdateCall(ctx, r, out); err != nil {
		return fmt.Errorf("save final call: %w", err)
	}
	if out != nil && s.onOutbox != nil {
		s.onOutbox()
	}
	return nil
}

// delivery builds the outbox row for c, or nil when the tenant has no URL.
func (s *Service) delivery(ctx context.Context, c *liveCall, event string, now time.Time) (*store.Delivery, error) {
	if c.tenant.WebhookURL == "" {
		return nil, nil
	}
	p, err := s.payload(ctx, c)
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("webhook body: %w", err)
	}
	return &store.Delivery{TenantID: c.rec.TenantID, Event: event, URL: c.tenant.WebhookURL, Body: string(body),
		CreatedAt: now}, nil
}

// payload is the body of PRODUCT.md §4.
func (s *Service) payload(ctx context.Context, c *liveCall) (*webhook.Payload, error) {
	r, loc := c.rec, c.loc
	p := &webhook.Payload{
		BizID: r.BizID,
		VideoCall: webhook.VideoCall{
			ID: r.ID, DialTime: webhook.FormatTime(r.DialTime, loc),
			QueueDuration: strconv.FormatInt(r.QueueMS, 10), CallDuration: strconv.FormatInt(r.CallMS, 10),
			ResultCode: r.ResultCode, VideoCallStartTime: webhook.FormatTime(r.AnswerTime, loc),
			VideoCallEndTime:     webhook.FormatTime(r.EndTime, loc),
			SurveryResolveResult: r.Survey.Resolved, SurveryLables: r.Survey.Labels,
			SurveryRemark: r.Survey.Remark, SurveryDesc: r.Survey.Description,
		},
		Customer:      customerPayload(c.customer, loc),
		Organizations: []webhook.Organization{},
	}
	for _, id := range p.Customer.OrganizationIDs {
		p.Organizations = append(p.Organizations, webhook.Organization{ID: id})
	}
	if r.AgentID != 0 {
		a, err := s.st.AgentByID(ctx, r.AgentID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("webhook agent: %w", err)
		}
		if a != nil {
			p.Agent = agentPayload(a)
		}
	}
	return p, nil
}

func customerPayload(c *store.Customer, loc *time.Location) webhook.Customer {
	out := webhook.Customer{
		ID: c.ID, NickName: c.NickName, SourceChannel: c.SourceChannel, Level: c.Level,
		CreatedAt: webhook.FormatTime(c.CreatedAt, loc), UpdatedAt: webhook.FormatTime(c.UpdatedAt, loc),
		OtherWebTokens: []string{}, Description: c.Description, Email: c.Email, RichTags: []webhook.RichTag{},
		CustomFields: json.RawMessage("{}"), OtherEmails: []string{}, Cellphones: []webhook.Cellphone{},
		OrganizationIDs: []int64{}, WeixinMinis: []webhook.WeixinMini{},
	}
	if c.Token != "" {
		tok := c.Token
		out.SDKToken = &tok
	}
	if json.Valid([]byte(c.CustomFields)) && c.CustomFields != "" {
		out.CustomFields = json.RawMessage(c.CustomFields)
	}
	_ = json.Unmarshal([]byte(c.OrganizationIDs), &out.OrganizationIDs)
	if out.OrganizationIDs == nil {
		out.OrganizationIDs = []int64{}
	}
	if len(out.OrganizationIDs) > 0 {
		first := out.OrganizationIDs[0]
		out.DefaultOrganizationID = &first
	}
	for _, ph := range c.Phones {
		out.Cellphones = append(out.Cellphones, webhook.Cellphone{ID: ph.ID, Content: ph.Content})
	}
	return out
}

func agentPayload(a *store.Agent) *webhook.Agent {
	out := &webhook.Agent{ID: a.ID, NickName: a.NickName, Avatar: a.Avatar, UserGroupIDs: a.GroupIDs,
		WorkID: a.WorkID, Duty: a.Duty, IsAdmin: a.IsAdmin, Departments: []webhook.Department{}}
	if out.UserGroupIDs == nil {
		out.UserGroupIDs = []int64{}
	}
	_ = json.Unmarshal([]byte(a.Departments), &out.Departments)
	return out
}

// loadCall rebuilds what finish needs for a stored call.
func (s *Service) loadCall(ctx context.Context, rec *store.Call) (*liveCall, error) {
	t, err := s.st.TenantByID(ctx, rec.TenantID)
	if err != nil {
		return nil, err
	}
	settings, err := ParseSettings(t.Settings)
	if err != nil {
		settings = &TenantSettings{}
	}
	cust, err := s.st.CustomerByID(ctx, rec.TenantID, rec.CustomerID)
	if err != nil {
		return nil, err
	}
	return &liveCall{rec: rec, tenant: t, settings: settings, loc: tenantLoc(settings), customer: cust,
		answered: !rec.AnswerTime.IsZero()}, nil
}

func tenantLoc(ts *TenantSettings) *time.Location {
	loc, err := ts.WorkingHours.location()
	if err != nil {
		return time.UTC
	}
	return loc
}

func itoa(n int) string { return strconv.Itoa(n) }
