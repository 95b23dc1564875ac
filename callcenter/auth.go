package callcenter

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/avs/avs/store"
)

// AuthRequest is what the client sends on the preIndex page.
type AuthRequest struct {
	// Options is the entry options JSON of PRODUCT.md §2. When empty, the
	// options are read from ExtraData ({"options": {...}}).
	Options json.RawMessage
	// Sign, Nonce and Timestamp come from the page path's query of a signed
	// (mini-program to mini-program) entry; all empty for in-page entries.
	Sign      string
	Nonce     string
	Timestamp string
	// AppID, Path and ExtraData are the other signed parts: the video
	// mini-program's app id, the page path without '?' and query, and the
	// extraData string exactly as sent.
	AppID     string
	Path      string
	ExtraData string
	// RemoteAddr is the client's address, for rate limiting.
	RemoteAddr string
}

// EntryOptions are the options the integrator passes (PRODUCT.md §2),
// spelled as on the wire.
type EntryOptions struct {
	MiniSdkToken   string         `json:"miniSdkToken"`
	CustomerInfo   EntryCustomer  `json:"customerInfo"`
	BizID          flexString     `json:"bizId"`
	CallTimes      *int           `json:"callTimes"`
	CustomChannel  string         `json:"customChannel"`
	CallDirect     CallDirect     `json:"callDirect"`
	VoiceOnly      bool           `json:"voiceOnly"`
	EnvVersion     string         `json:"envVersion"`
	CommonNavigate CommonNavigate `json:"commonNavigate"`
}

// EntryCustomer is customerInfo of the entry options.
type EntryCustomer struct {
	ID              *flexInt        `json:"id"`
	CustomerToken   *string         `json:"customerToken"`
	NickName        string          `json:"nickName"`
	Avatar          string          `json:"avatar"`
	Email           string          `json:"email"`
	Description     string          `json:"description"`
	Telephones      []EntryPhone    `json:"telephones"`
	Level           string          `json:"level"`
	OrganizationIDs []int64         `json:"organizationIds"`
	CustomFields    json.RawMessage `json:"custom_fields"`
}

// EntryPhone is one of customerInfo.telephones; a nil ID adds a number.
type EntryPhone struct {
	ID      *flexInt `json:"id"`
	Content string   `json:"content"`
}

// CallDirect skips the optional pages and routes to an agent or a group.
type CallDirect struct {
	Enable       bool    `json:"enable"`
	AgentID      flexInt `json:"agentId"`
	AgentGroupID flexInt `json:"agentGroupId"`
}

// CommonNavigate says where the client returns to.
type CommonNavigate struct {
	Path string `json:"path"`
}

// flexInt accepts 12, "12" and null: integrators' code is not consistent.
type flexInt int64

func (f *flexInt) UnmarshalJSON(b []byte) error {
	b = bytes.Trim(b, `"`)
	if len(b) == 0 || string(b) == "null" {
		*f = 0
		return nil
	}
	v, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return fmt.Errorf("not an integer: %s", b)
	}
	*f = flexInt(v)
	return nil
}

// flexString accepts "abc", 123 and null.
type flexString string

func (f *flexString) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*f = ""
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*f = flexString(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("not a string: %s", b)
	}
	*f = flexString(n.String())
	return nil
}

// CustomerSession is an authenticated customer in one entry. The
// signaling layer keeps it for the connection and passes it back.
type CustomerSession struct {
	TenantID   int64
	TenantKey  string
	CustomerID int64
	EntryID    int64
	Customer   CustomerInfo
	BizID      string
	Channel    string
	VoiceOnly  bool
	CallDirect CallDirect
	EnvVersion string
	NavPath    string
	Signed     bool

	// CallTimesLeft is -1 for unlimited.
	CallTimesLeft int
	// NavigateType is 0 to go on, or NavigateNoCallTimes when no call is
	// left (the client returns to the integrator).
	NavigateType int
	// Open reports working hours; AgentsOnline counts agents not offline.
	Open         bool
	AgentsOnline int
	// OfferOfflineForm is true when the offline form should be shown:
	// outside working hours or nobody online, and the tenant has one.
	OfferOfflineForm bool
	Settings         PublicSettings
	ICEServers       []ICEServer

	verified atomic.Bool
}

// PublicSettings is the part of the tenant's settings the client sees.
type PublicSettings struct {
	Pages          Pages        `json:"pages"`
	Survey         SurveyConfig `json:"survey"`
	HasPreForm     bool         `json:"hasPreForm"`
	HasOfflineForm bool         `json:"hasOfflineForm"`
	Timezone       string       `json:"timezone"`
}

// Verified reports whether the session passed the verify code page.
func (cs *CustomerSession) Verified() bool { return cs.verified.Load() }

// AuthCustomer authenticates an entry, creates or matches the customer,
// opens the entry's callTimes counter and returns the session. Auth
// failures are *Error with NavigateType 1.
func (s *Service) AuthCustomer(ctx context.Context, req AuthRequest) (*CustomerSession, error) {
	if !s.limiter.allow(hostOf(req.RemoteAddr), s.now()) {
		return nil, newErr(CodeRateLimited, nil)
	}
	opts, err := parseOptions(req)
	if err != nil {
		return nil, err
	}
	t, err := s.st.TenantByKey(ctx, opts.MiniSdkToken)
	if err != nil {
		return nil, lookupErr(CodeAuthFailed, "miniSdkToken", err)
	}
	settings, err := ParseSettings(t.Settings)
	if err != nil {
		return nil, internal("tenant settings", err)
	}
	signed := req.Sign != "" || req.Nonce != "" || req.Timestamp != ""
	if signed {
		if err := s.checkSignature(ctx, t, req); err != nil {
			return nil, err
		}
	} else if settings.RequireSignature {
		return nil, newErr(CodeSignatureRequired, nil)
	}
	now := s.now()
	cust, err := s.matchCustomer(ctx, t.ID, &opts.CustomerInfo, opts.CustomChannel, now)
	if err != nil {
		return nil, err
	}
	key := "biz:" + string(opts.BizID)
	if signed {
		key = "nonce:" + req.Nonce
	}
	callTimes := -1
	if opts.CallTimes != nil && *opts.CallTimes >= 0 {
		callTimes = *opts.CallTimes
	}
	entry, err := s.st.OpenEntry(ctx, t.ID, cust.ID, key, callTimes, now)
	if err != nil {
		return nil, internal("open entry", err)
	}
	sess := &CustomerSession{
		TenantID: t.ID, TenantKey: t.Key, CustomerID: cust.ID, EntryID: entry.ID, Customer: customerInfo(cust),
		BizID: string(opts.BizID), Channel: opts.CustomChannel, VoiceOnly: opts.VoiceOnly, CallDirect: opts.CallDirect,
		EnvVersion: opts.EnvVersion, NavPath: opts.CommonNavigate.Path, Signed: signed,
		CallTimesLeft: entry.Left(), Open: settings.WorkingHours.OpenAt(now),
		Settings: PublicSettings{Pages: settings.Pages, Survey: settings.Survey, HasPreForm: settings.PreForm != nil,
			HasOfflineForm: settings.OfflineForm != nil, Timezone: settings.WorkingHours.Timezone},
	}
	if sess.CallTimesLeft == 0 {
		sess.NavigateType = NavigateNoCallTimes
	}
	sess.AgentsOnline = s.agentsOnline(t.ID)
	sess.OfferOfflineForm = settings.OfflineForm != nil && (!sess.Open || sess.AgentsOnline == 0)
	if s.ice != nil {
		sess.ICEServers = s.ice("customer-" + strconv.FormatInt(cust.ID, 10))
	}
	return sess, nil
}

func parseOptions(req AuthRequest) (*EntryOptions, error) {
	raw := req.Options
	if len(bytes.TrimSpace(raw)) == 0 {
		var wrap struct {
			Options json.RawMessage `json:"options"`
		}
		if err := json.Unmarshal([]byte(req.ExtraData), &wrap); err != nil {
			return nil, errf(CodeAuthFailed, "extraData: %w", err)
		}
		raw = wrap.Options
	}
	var o EntryOptions
	if err := json.Unmarshal(raw, &o); err != nil {
		return nil, errf(CodeAuthFailed, "entry options: %w", err)
	}
	if o.MiniSdkToken == "" {
		return nil, errf(CodeAuthFailed, "entry options: miniSdkToken missing")
	}
	if l := o.CustomerInfo.Level; l != "" && l != "vip" && l != "normal" {
		return nil, errf(CodeAuthFailed, "entry options: customerInfo.level %q", l)
	}
	return &o, nil
}

// Sign computes the entry signature of PRODUCT.md §2: lowercase hex of
// SHA-256(appId + path + extraData + secret + nonce + timestamp).
func Sign(appID, path, extraData, secret, nonce, timestamp string) string {
	h := sha256.New()
	for _, p := range []string{appID, path, extraData, secret, nonce, timestamp} {
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil))
}

func (s *Service) checkSignature(ctx context.Context, t *store.Tenant, req AuthRequest) error {
	if req.Sign == "" || req.Nonce == "" || req.Timestamp == "" || t.Secret == "" {
		return errf(CodeBadSignature, "sign, nonce, timestamp and a tenant secret are all required")
	}
	appID := req.AppID
	if s.cfg.AppID != "" {
		appID = s.cfg.AppID
	}
	want := Sign(appID, req.Path, req.ExtraData, t.Secret, req.Nonce, req.Timestamp)
	if subtle.ConstantTimeCompare([]byte(want), []byte(strings.ToLower(req.Sign))) != 1 {
		return newErr(CodeBadSignature, nil)
	}
	ts, err := strconv.ParseInt(req.Timestamp, 10, 64)
	if err != nil {
		return errf(CodeStaleTimestamp, "timestamp %q: %w", req.Timestamp, err)
	}
	at := time.Unix(ts, 0)
	if ts > 1e12 { // milliseconds, as JavaScript's Date.now() gives
		at = time.UnixMilli(ts)
	}
	now := s.now()
	if d := now.Sub(at); d > s.cfg.SignWindow || d < -s.cfg.SignWindow {
		return errf(CodeStaleTimestamp, "timestamp %s is %s away", at.UTC().Format(time.RFC3339), d.Round(time.Second))
	}
	// Remembering the nonce until the timestamp leaves the window is
	// enough: after that the timestamp check refuses the entry anyway.
	fresh, err := s.st.UseNonce(ctx, t.ID, req.Nonce, now, at.Add(s.cfg.SignWindow+time.Second))
	if err != nil {
		return internal("use nonce", err)
	}
	if !fresh {
		return newErr(CodeReplayedNonce, nil)
	}
	return nil
}

// matchCustomer finds the customer by id or customerToken, creating one
// when neither is given or the token is new, and merges the profile.
func (s *Service) matchCustomer(ctx context.Context, tenantID int64, in *EntryCustomer, channel string, now time.Time) (*store.Customer, error) {
	var c *store.Customer
	var err error
	switch {
	case in.ID != nil && *in.ID != 0:
		c, err = s.st.CustomerByID(ctx, tenantID, int64(*in.ID))
		if err != nil {
			return nil, lookupErr(CodeAuthFailed, "customerInfo.id", err)
		}
	case in.CustomerToken != nil && *in.CustomerToken != "":
		c, err = s.st.CustomerByToken(ctx, tenantID, *in.CustomerToken)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, internal("customer by token", err)
		}
	}
	if c == nil {
		c = &store.Customer{TenantID: tenantID, SourceChannel: channel}
		if in.CustomerToken != nil {
			c.Token = *in.CustomerToken
		}
	}
	mergeProfile(c, in)
	if err := s.st.SaveCustomer(ctx, c, now); err != nil {
		if errors.Is(err, store.ErrConflict) && c.Token != "" {
			// Two first entries with one new token raced; the other won.
			return s.matchCustomer(ctx, tenantID, in, channel, now)
		}
		return nil, internal("save customer", err)
	}
	return c, nil
}

func mergeProfile(c *store.Customer, in *EntryCustomer) {
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&c.NickName, in.NickName)
	set(&c.Avatar, in.Avatar)
	set(&c.Email, in.Email)
	set(&c.Description, in.Description)
	set(&c.Level, in.Level)
	if in.OrganizationIDs != nil {
		b, _ := json.Marshal(in.OrganizationIDs)
		c.OrganizationIDs = string(b)
	}
	if len(in.CustomFields) > 0 && string(in.CustomFields) != "null" {
		c.CustomFields = string(in.CustomFields)
	}
	c.Phones = c.Phones[:0:0]
	for _, p := range in.Telephones {
		if strings.TrimSpace(p.Content) == "" {
			continue
		}
		var id int64
		if p.ID != nil {
			id = int64(*p.ID)
		}
		c.Phones = append(c.Phones, store.Phone{ID: id, Content: p.Content})
	}
}

func (s *Service) agentsOnline(tenantID int64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, a := range s.agents {
		if a.rec.TenantID == tenantID && a.status != StatusOffline {
			n++
		}
	}
	return n
}

func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// rateLimiter counts requests per key in fixed windows. It is small on
// purpose: its job is to make guessing and flooding slow, not to be fair.
type rateLimiter struct {
	mu     sync.Mutex
	limit  int
	window time.Duration
	start  time.Time
	counts map[string]int
}

func newRateLimiter(limit int, window time.Duration) *rateLimiter {
	return &rateLimiter{limit: limit, window: window, counts: map[string]int{}}
}

func (r *rateLimiter) allow(key string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Sub(r.start) >= r.window || now.Before(r.start) {
		r.start = now
		clear(r.counts)
	}
	r.counts[key]++
	return r.counts[key] <= r.limit
}
