package callcenter

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"net/mail"
	"sort"
	"strings"
	"time"

	"github.com/avs/avs/store"
)

// Form kinds.
const (
	FormPre     = "pre"     // asked before the call
	FormOffline = "offline" // left when nobody can answer; kept as a ticket
)

// CheckVerifyCode checks a one-time code issued by IssueVerifyCode for this
// customer or one of its phones. Wrong codes are counted; past
// verify_max_attempts per verify_window the answer is rate_limited.
func (s *Service) CheckVerifyCode(ctx context.Context, sess *CustomerSession, code string) error {
	code = strings.TrimSpace(code)
	if code == "" || len(code) > 64 {
		return errf(CodeBadRequest, "verify code must be 1 to 64 characters")
	}
	cust, err := s.st.CustomerByID(ctx, sess.TenantID, sess.CustomerID)
	if err != nil {
		return lookupErr(CodeNotFound, "customer", err)
	}
	phones := make([]string, 0, len(cust.Phones))
	for _, p := range cust.Phones {
		phones = append(phones, p.Content)
	}
	ok, err := s.st.ConsumeVerifyCode(ctx, store.VerifyCheck{TenantID: sess.TenantID, CustomerID: sess.CustomerID,
		Phones: phones, Code: code, Now: s.now(), MaxAttempts: s.cfg.VerifyMaxAttempts, Window: s.cfg.VerifyWindow})
	switch {
	case errors.Is(err, store.ErrTooManyAttempts):
		return newErr(CodeRateLimited, err)
	case err != nil:
		return internal("verify code", err)
	case !ok:
		return newErr(CodeVerifyFailed, nil)
	}
	sess.verified.Store(true)
	return nil
}

// VerifyCodeRequest issues a code (admin API). Code "" generates six digits.
type VerifyCodeRequest struct {
	TenantID   int64
	CustomerID int64  // 0 = not bound to a customer
	Phone      string // "" = not bound to a phone
	Code       string
	TTL        time.Duration
}

// IssueVerifyCode stores a one-time code and returns it.
func (s *Service) IssueVerifyCode(ctx context.Context, req VerifyCodeRequest) (*store.VerifyCode, error) {
	if req.CustomerID == 0 && req.Phone == "" {
		return nil, errf(CodeBadRequest, "a verify code must be bound to a customer or a phone")
	}
	if req.TTL <= 0 {
		return nil, errf(CodeBadRequest, "ttl must be > 0")
	}
	if req.Code == "" {
		n, err := rand.Int(rand.Reader, big.NewInt(1_000_000))
		if err != nil {
			return nil, internal("verify code", err)
		}
		req.Code = fmt.Sprintf("%06d", n.Int64())
	}
	now := s.now()
	v := &store.VerifyCode{TenantID: req.TenantID, Code: req.Code, CustomerID: req.CustomerID, Phone: req.Phone,
		ExpiresAt: now.Add(req.TTL), CreatedAt: now}
	if err := s.st.CreateVerifyCode(ctx, v); err != nil {
		return nil, internal("verify code", err)
	}
	return v, nil
}

func (s *Service) settingsOf(ctx context.Context, tenantID int64) (*TenantSettings, error) {
	t, err := s.st.TenantByID(ctx, tenantID)
	if err != nil {
		return nil, lookupErr(CodeNotFound, "tenant", err)
	}
	st, err := ParseSettings(t.Settings)
	if err != nil {
		return nil, internal("tenant settings", err)
	}
	return st, nil
}

// FormDefinition returns the tenant's pre-call or offline form.
func (s *Service) FormDefinition(ctx context.Context, sess *CustomerSession, kind string) (*Form, error) {
	st, err := s.settingsOf(ctx, sess.TenantID)
	if err != nil {
		return nil, err
	}
	f := st.PreForm
	if kind == FormOffline {
		f = st.OfflineForm
	} else if kind != FormPre {
		return nil, errf(CodeBadRequest, "unknown form kind %q", kind)
	}
	if f == nil {
		return nil, errf(CodeNotFound, "no %s form", kind)
	}
	return f, nil
}

// SubmitForm checks answers against the form and stores them; an offline
// form's submission is a ticket. It returns the submission id.
func (s *Service) SubmitForm(ctx context.Context, sess *CustomerSession, kind string, answers map[string]any) (int64, error) {
	f, err := s.FormDefinition(ctx, sess, kind)
	if err != nil {
		return 0, err
	}
	clean, err := checkAnswers(f, answers)
	if err != nil {
		return 0, err
	}
	body, err := json.Marshal(clean)
	if err != nil {
		return 0, internal("form answers", err)
	}
	sub := &store.FormSubmission{TenantID: sess.TenantID, CustomerID: sess.CustomerID, Kind: kind,
		Answers: string(body), IsTicket: kind == FormOffline, CreatedAt: s.now()}
	if err := s.st.AddFormSubmission(ctx, sub); err != nil {
		return 0, internal("form submission", err)
	}
	return sub.ID, nil
}

// checkAnswers keeps the answers to known fields and checks them.
func checkAnswers(f *Form, answers map[string]any) (map[string]any, error) {
	clean := map[string]any{}
	for _, fd := range f.Fields {
		v, ok := answers[fd.Name]
		str, isStr := v.(string)
		if !ok || v == nil || (isStr && strings.TrimSpace(str) == "") {
			if fd.Required {
				return nil, errf(CodeBadRequest, "form field %q is required", fd.Name)
			}
			continue
		}
		switch fd.Type {
		case "multiselect":
			list, ok := v.([]any)
			if !ok {
				return nil, errf(CodeBadRequest, "form field %q must be a list", fd.Name)
			}
			for _, x := range list {
				if xs, _ := x.(string); !contains(fd.Options, xs) {
					return nil, errf(CodeBadRequest, "form field %q: unknown option %v", fd.Name, x)
				}
			}
		default:
			if !isStr || len(str) > 4000 {
				return nil, errf(CodeBadRequest, "form field %q must be text up to 4000 bytes", fd.Name)
			}
			if fd.Type == "select" && !contains(fd.Options, str) {
				return nil, errf(CodeBadRequest, "form field %q: unknown option %q", fd.Name, str)
			}
			if fd.Type == "email" {
				if _, err := mail.ParseAddress(str); err != nil {
					return nil, errf(CodeBadRequest, "form field %q: %w", fd.Name, err)
				}
			}
		}
		clean[fd.Name] = v
	}
	return clean, nil
}

// Goods returns the tenant's consult objects.
func (s *Service) Goods(ctx context.Context, sess *CustomerSession) ([]Goods, error) {
	st, err := s.settingsOf(ctx, sess.TenantID)
	if err != nil {
		return nil, err
	}
	return st.Goods, nil
}

func findGoods(list []Goods, id int64) *Goods {
	for i := range list {
		if list[i].ID == id {
			return &list[i]
		}
	}
	return nil
}

// ListAgents returns the tenant's agents with live status (online, away,
// busy, offline), online ones first.
func (s *Service) ListAgents(ctx context.Context, sess *CustomerSession) ([]AgentInfo, error) {
	recs, err := s.st.ListAgents(ctx, sess.TenantID)
	if err != nil {
		return nil, internal("list agents", err)
	}
	rank := map[string]int{StatusOnline: 0, StatusBusy: 1, StatusAway: 2, StatusOffline: 3}
	out := make([]AgentInfo, 0, len(recs))
	s.mu.Lock()
	for _, r := range recs {
		if r.Disabled {
			continue
		}
		status := StatusOffline
		if a := s.agents[r.ID]; a != nil {
			status = a.liveStatus()
		}
		out = append(out, (&agentState{rec: r}).info(status))
	}
	s.mu.Unlock()
	sort.SliceStable(out, func(i, j int) bool { return rank[out[i].Status] < rank[out[j].Status] })
	return out, nil
}

// StoreDistance is a store with its distance from the customer.
type StoreDistance struct {
	StoreInfo
	DistanceM float64 `json:"distanceM"`
}

// ListStores returns the tenant's stores nearest first from (lat, lng).
func (s *Service) ListStores(ctx context.Context, sess *CustomerSession, lat, lng float64) ([]StoreDistance, error) {
	if math.IsNaN(lat) || math.IsNaN(lng) || lat < -90 || lat > 90 || lng < -180 || lng > 180 {
		return nil, errf(CodeBadRequest, "bad coordinates %v,%v", lat, lng)
	}
	st, err := s.settingsOf(ctx, sess.TenantID)
	if err != nil {
		return nil, err
	}
	out := make([]StoreDistance, 0, len(st.Stores))
	for _, x := range st.Stores {
		out = append(out, StoreDistance{StoreInfo: x, DistanceM: Haversine(lat, lng, x.Lat, x.Lng)})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].DistanceM < out[j].DistanceM })
	return out, nil
}

// Haversine returns the great-circle distance in metres between two points.
func Haversine(lat1, lng1, lat2, lng2 float64) float64 {
	const earthRadius = 6371008.8 // mean radius, metres
	rad := math.Pi / 180
	dLat, dLng := (lat2-lat1)*rad, (lng2-lng1)*rad
	a := math.Sin(dLat/2)*math.Sin(dLat/2) +
		math.Cos(lat1*rad)*math.Cos(lat2*rad)*math.Sin(dLng/2)*math.Sin(dLng/2)
	return 2 * earthRadius * math.Asin(math.Min(1, math.Sqrt(a)))
}

// seedDemo creates the demo tenant and agent if they do not exist yet.
func (s *Service) seedDemo(ctx context.Context) error {
	d := s.cfg.Demo
	t, err := s.st.TenantByKey(ctx, d.TenantKey)
	if errors.Is(err, store.ErrNotFound) {
		t = &store.Tenant{Key: d.TenantKey, Name: "Demo", Secret: d.Secret, WebhookURL: d.WebhookURL,
			WebhookSecret: d.Secret, Settings: `{"survey":{"enabled":true,"resolveOptions":["已解决","未解决"]}}`}
		err = s.st.CreateTenant(ctx, t)
	}
	if err != nil {
		return fmt.Errorf("callcenter: demo tenant: %w", err)
	}
	if _, err := s.st.AgentByUsername(ctx, t.ID, d.AgentUsername); err == nil {
		return nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("callcenter: demo agent: %w", err)
	}
	hash, err := HashPassword(d.AgentPassword)
	if err != nil {
		return err
	}
	a := &store.Agent{TenantID: t.ID, Username: d.AgentUsername, PasswordHash: hash, NickName: "Demo agent"}
	if err := s.st.CreateAgent(ctx, a); err != nil {
		return fmt.Errorf("callcenter: demo agent: %w", err)
	}
	s.log.Info("demo tenant seeded", "tenant", d.TenantKey, "agent", d.AgentUsername)
	return nil
}
