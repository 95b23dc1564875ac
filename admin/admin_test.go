package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/avs/avs/callcenter"
	"github.com/avs/avs/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type nopRooms struct{}

func (nopRooms) OpenRoom(string, bool) error { return nil }
func (nopRooms) CloseRoom(string)            {}

type nopNotifier struct{}

func (nopNotifier) Notify(callcenter.Party, callcenter.Event) {}

const token = "admin-token-0123456789"

type env struct {
	t   *testing.T
	srv *httptest.Server
	st  *store.Store
	svc *callcenter.Service
}

func newEnv(t *testing.T) *env {
	sc := store.DefaultConfig()
	sc.Path = filepath.Join(t.TempDir(), "avs.db")
	st, err := store.Open(context.Background(), sc)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := callcenter.New(callcenter.Params{Config: callcenter.DefaultConfig(), Store: st, Rooms: nopRooms{},
		Notifier: nopNotifier{}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Token = token
	h, err := New(Params{Config: cfg, Store: st, Service: svc})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/admin/", h)
	e := &env{t: t, srv: httptest.NewServer(mux), st: st, svc: svc}
	t.Cleanup(func() { e.srv.Close(); svc.Close(); st.Close() })
	return e
}

// do sends a request and decodes the JSON answer into out (if not nil).
func (e *env) do(method, path string, body any, want int, out any) {
	e.t.Helper()
	var rd bytes.Buffer
	if body != nil {
		_ = json.NewEncoder(&rd).Encode(body)
	}
	req, _ := http.NewRequest(method, e.srv.URL+path, &rd)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		var msg map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&msg)
		e.t.Fatalf("%s %s: status %d, want %d: %v", method, path, resp.StatusCode, want, msg)
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			e.t.Fatal(err)
		}
	}
}

func TestAuth(t *testing.T) {
	e := newEnv(t)
	for _, auth := range []string{"", "Bearer wrong", "Basic " + token, "Bearer " + token + "x"} {
		req, _ := http.NewRequest("GET", e.srv.URL+"/admin/tenants", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("auth %q: status %d", auth, resp.StatusCode)
		}
	}
}

func TestAdminFlow(t *testing.T) {
	e := newEnv(t)
	var ten tenantJSON
	e.do("POST", "/admin/tenants", map[string]any{"key": "acme", "name": "Acme", "secret": "s",
		"webhookUrl": "http://127.0.0.1:1/hook", "settings": map[string]any{"survey": map[string]any{"enabled": true}}},
		http.StatusCreated, &ten)
	e.do("POST", "/admin/tenants", map[string]any{"key": "acme"}, http.StatusConflict, nil)
	e.do("POST", "/admin/tenants", map[string]any{"key": "bad", "settings": map[string]any{
		"workingHours": map[string]any{"timezone": "Nowhere/Town"}}}, http.StatusBadRequest, nil)
	e.do("POST", "/admin/tenants", map[string]any{"key": "x", "unknown": 1}, http.StatusBadRequest, nil)

	var g groupJSON
	e.do("POST", fmt.Sprintf("/admin/tenants/%d/groups", ten.ID), map[string]any{"name": "vip"}, http.StatusCreated, &g)
	var a agentJSON
	e.do("POST", fmt.Sprintf("/admin/tenants/%d/agents", ten.ID), map[string]any{"username": "alice",
		"password": "correct horse", "nickName": "Alice", "groupIds": []int64{g.ID},
		"departments": []map[string]any{{"id": 1, "name": "HQ"}}}, http.StatusCreated, &a)
	if a.Status != callcenter.StatusOffline || len(a.GroupIDs) != 1 || a.Password != "" {
		t.Fatalf("agent = %+v", a)
	}
	e.do("POST", fmt.Sprintf("/admin/tenants/%d/agents", ten.ID), map[string]any{"username": "bob", "password": "short"},
		http.StatusBadRequest, nil)
	if _, err := e.svc.AgentLogin(context.Background(), "acme", "alice", "correct horse"); err != nil {
		t.Fatalf("password login: %v", err)
	}
	var tok tokenOut
	e.do("POST", fmt.Sprintf("/admin/agents/%d/tokens", a.ID), nil, http.StatusCreated, &tok)
	if _, err := e.svc.AgentLoginToken(context.Background(), tok.Token); err != nil {
		t.Fatalf("token login: %v", err)
	}
	e.do("DELETE", fmt.Sprintf("/admin/agents/%d/tokens", a.ID), nil, http.StatusNoContent, nil)
	if _, err := e.svc.AgentLoginToken(context.Background(), tok.Token); callcenter.CodeOf(err) != callcenter.CodeAuthFailed {
		t.Fatalf("revoked token: %v", err)
	}
	var got agentJSON
	e.do("GET", fmt.Sprintf("/admin/agents/%d", a.ID), nil, http.StatusOK, &got)
	if got.Status != callcenter.StatusOnline {
		t.Fatalf("live status = %s", got.Status)
	}
	e.do("PUT", fmt.Sprintf("/admin/agents/%d", a.ID), map[string]any{"username": "alice", "nickName": "A2",
		"maxCalls": 2}, http.StatusOK, &got)
	if got.NickName != "A2" || got.MaxCalls != 2 || len(got.GroupIDs) != 0 {
		t.Fatalf("updated agent = %+v", got)
	}

	var code verifyCodeOut
	e.do("POST", fmt.Sprintf("/admin/tenants/%d/verify-codes", ten.ID), map[string]any{"phone": "138"},
		http.StatusCreated, &code)
	if len(code.Code) != 6 || !code.ExpiresAt.After(time.Now()) {
		t.Fatalf("verify code = %+v", code)
	}
	e.do("POST", fmt.Sprintf("/admin/tenants/%d/verify-codes", ten.ID), map[string]any{}, http.StatusBadRequest, nil)

	// A call, to list and to have a webhook delivery: alice rings, the
	// customer hangs up (resultCode 3).
	raw, _ := json.Marshal(map[string]any{"miniSdkToken": "acme", "bizId": "o-1"})
	sess, err := e.svc.AuthCustomer(context.Background(), callcenter.AuthRequest{Options: raw})
	if err != nil {
		t.Fatal(err)
	}
	info, err := e.svc.PlaceCall(context.Background(), sess, callcenter.PlaceCallRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.svc.LeaveQueue(context.Background(), sess, info.CallID); err != nil {
		t.Fatal(err)
	}
	var calls []callJSON
	e.do("GET", fmt.Sprintf("/admin/calls?tenant=%d&resultCode=3&bizId=o-1", ten.ID), nil, http.StatusOK, &calls)
	if len(calls) != 1 || calls[0].ID != info.CallID || calls[0].EndTime == nil {
		t.Fatalf("calls = %+v", calls)
	}
	e.do("GET", "/admin/calls?resultCode=4", nil, http.StatusOK, &calls)
	if len(calls) != 0 {
		t.Fatalf("answered calls = %+v", calls)
	}
	e.do("GET", "/admin/calls?from=yesterday", nil, http.StatusBadRequest, nil)

	var ds []deliveryJSON
	e.do("GET", fmt.Sprintf("/admin/webhooks?call=%d", info.CallID), nil, http.StatusOK, &ds)
	if len(ds) != 1 || ds[0].Status != store.DeliveryPending {
		t.Fatalf("deliveries = %+v", ds)
	}
	if err := e.st.RecordAttempt(context.Background(), ds[0].ID, store.DeliveryAttempt{Status: store.DeliveryDead,
		Error: "refused", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	e.do("GET", "/admin/webhooks?status=dead", nil, http.StatusOK, &ds)
	if len(ds) != 1 || ds[0].LastError != "refused" {
		t.Fatalf("dead = %+v", ds)
	}
	var d deliveryJSON
	e.do("POST", fmt.Sprintf("/admin/webhooks/%d/retry", ds[0].ID), nil, http.StatusOK, &d)
	if d.Status != store.DeliveryPending || d.Attempts != 0 {
		t.Fatalf("retried = %+v", d)
	}
	e.do("GET", fmt.Sprintf("/admin/webhooks/%d", d.ID), nil, http.StatusOK, &d)
	var body map[string]any
	if err := json.Unmarshal(d.Body, &body); err != nil || body["bizId"] != "o-1" {
		t.Fatalf("body = %s", d.Body)
	}
	e.do("GET", fmt.Sprintf("/admin/tenants/%d/tickets", ten.ID), nil, http.StatusOK, nil)
	e.do("DELETE", fmt.Sprintf("/admin/agents/%d", a.ID), nil, http.StatusNoContent, nil)
	e.do("DELETE", fmt.Sprintf("/admin/tenants/%d", ten.ID), nil, http.StatusNoContent, nil)
	e.do("GET", fmt.Sprintf("/admin/tenants/%d", ten.ID), nil, http.StatusNotFound, nil)
}
