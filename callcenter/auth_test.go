package callcenter

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"
)

func TestSignedEntry(t *testing.T) {
	fixed := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	h := newHarnessAt(t, fixed)
	ten := h.tenant("EV6aWsYcIth6eRVr", TenantSettings{RequireSignature: true}, "")
	extra := `{"options":{"miniSdkToken":"EV6aWsYcIth6eRVr","callTimes":1,"customerInfo":{"nickName":"hello"}}}`
	const appID, path = "wx2e122adfbcf230d0", "plugin/pages/preIndex/index"
	ts := strconv.FormatInt(fixed.Unix(), 10)
	signed := func(nonce, ts, secret string) AuthRequest {
		return AuthRequest{AppID: appID, Path: path, ExtraData: extra, Nonce: nonce, Timestamp: ts,
			Sign: Sign(appID, path, extra, secret, nonce, ts), RemoteAddr: "10.0.0.2:1"}
	}
	old := strconv.FormatInt(fixed.Add(-time.Hour).Unix(), 10)
	msTS := strconv.FormatInt(fixed.UnixMilli(), 10)
	tests := []struct {
		name string
		req  AuthRequest
		code string
	}{
		{"valid", signed("n-1", ts, "s3cret"), ""},
		{"valid with millisecond timestamp", signed("n-ms", msTS, "s3cret"), ""},
		{"replayed nonce", signed("n-1", ts, "s3cret"), CodeReplayedNonce},
		{"wrong secret", signed("n-2", ts, "other"), CodeBadSignature},
		{"tampered extraData", func() AuthRequest {
			r := signed("n-3", ts, "s3cret")
			r.ExtraData = `{"options":{"miniSdkToken":"EV6aWsYcIth6eRVr","callTimes":-1}}`
			return r
		}(), CodeBadSignature},
		{"stale timestamp", signed("n-4", old, "s3cret"), CodeStaleTimestamp},
		{"future timestamp", signed("n-5", strconv.FormatInt(fixed.Add(time.Hour).Unix(), 10), "s3cret"), CodeStaleTimestamp},
		{"missing nonce", func() AuthRequest { r := signed("", ts, "s3cret"); return r }(), CodeBadSignature},
		{"unsigned entry refused", AuthRequest{ExtraData: extra}, CodeSignatureRequired},
		{"unknown token", AuthRequest{Options: json.RawMessage(`{"miniSdkToken":"nope"}`)}, CodeAuthFailed},
		{"malformed options", AuthRequest{Options: json.RawMessage(`{"miniSdkToken":`)}, CodeAuthFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sess, err := h.svc.AuthCustomer(ctx, tt.req)
			if tt.code == "" {
				if err != nil {
					t.Fatalf("auth: %v", err)
				}
				if !sess.Signed || sess.TenantID != ten.ID || sess.CallTimesLeft != 1 || sess.Customer.NickName != "hello" {
					t.Fatalf("session = %+v", sess)
				}
				return
			}
			wantCode(t, err, tt.code)
			if e := err.(*Error); e.NavigateType != NavigateAuthFailed {
				t.Fatalf("navigateType = %d", e.NavigateType)
			}
		})
	}
}

func TestAuthRateLimit(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.AuthRatePerMinute = 2 })
	ten := h.tenant("t", TenantSettings{}, "")
	raw, _ := json.Marshal(map[string]any{"miniSdkToken": ten.Key})
	var err error
	for i := 0; i < 3; i++ {
		_, err = h.svc.AuthCustomer(ctx, AuthRequest{Options: raw, RemoteAddr: "10.9.9.9:1234"})
	}
	wantCode(t, err, CodeRateLimited)
	if _, err := h.svc.AuthCustomer(ctx, AuthRequest{Options: raw, RemoteAddr: "10.9.9.8:1234"}); err != nil {
		t.Fatalf("other address limited: %v", err)
	}
}

func TestCustomerMatching(t *testing.T) {
	h := newHarness(t)
	ten := h.tenant("t", TenantSettings{}, "")
	a := h.customer(ten, map[string]any{"customerInfo": map[string]any{"customerToken": "x", "nickName": "A",
		"level": "vip", "organizationIds": []int{5532292}, "custom_fields": map[string]any{"TextField_1": "t"}}})
	b := h.customer(ten, map[string]any{"customerInfo": map[string]any{"customerToken": "x", "email": "a@b.c"}})
	if a.CustomerID != b.CustomerID || b.Customer.NickName != "A" || b.Customer.Email != "a@b.c" || b.Customer.Level != "vip" {
		t.Fatalf("token match: %+v vs %+v", a.Customer, b.Customer)
	}
	byID := h.customer(ten, map[string]any{"customerInfo": map[string]any{"id": strconv.FormatInt(a.CustomerID, 10)}})
	if byID.CustomerID != a.CustomerID {
		t.Fatalf("id match: %d vs %d", byID.CustomerID, a.CustomerID)
	}
	anon := h.customer(ten, nil)
	if anon.CustomerID == a.CustomerID {
		t.Fatal("anonymous entry matched a known customer")
	}
	raw, _ := json.Marshal(map[string]any{"miniSdkToken": ten.Key, "customerInfo": map[string]any{"id": 999999}})
	_, err := h.svc.AuthCustomer(ctx, AuthRequest{Options: raw})
	wantCode(t, err, CodeAuthFailed)
}

func TestAgentLogin(t *testing.T) {
	h := newHarness(t)
	ten := h.tenant("t", TenantSettings{}, "")
	a := h.agent(ten, "alice")
	_, err := h.svc.AgentLogin(ctx, ten.Key, "alice", "wrong")
	wantCode(t, err, CodeAuthFailed)
	_, err = h.svc.AgentLogin(ctx, ten.Key, "nobody", "x")
	wantCode(t, err, CodeAuthFailed)
	tok, _, err := h.svc.IssueAgentToken(ctx, a.AgentID)
	if err != nil {
		t.Fatal(err)
	}
	sess, err := h.svc.AgentLoginToken(ctx, tok)
	if err != nil || sess.AgentID != a.AgentID || sess.MaxCalls != 1 || len(sess.ICEServers) != 1 {
		t.Fatalf("token login: %+v %v", sess, err)
	}
	_, err = h.svc.AgentLoginToken(ctx, tok+"x")
	wantCode(t, err, CodeAuthFailed)
	wantCode(t, h.svc.SetAgentStatus(ctx, a.AgentID, "dancing"), CodeBadRequest)
	if !CheckPassword(mustHash(t, "p"), "p") || CheckPassword(mustHash(t, "p"), "q") || CheckPassword("junk", "p") {
		t.Fatal("password check")
	}
}

func mustHash(t *testing.T, pw string) string {
	h, err := hashPasswordIter(pw, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func newHarnessAt(t *testing.T, at time.Time) *harness {
	h := &harness{t: t, now: func() time.Time { return at }}
	return h.init()
}
