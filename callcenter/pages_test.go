package callcenter

import (
	"math"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

func TestVerifyCodePage(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.VerifyMaxAttempts = 3 })
	ten := h.tenant("t", TenantSettings{Pages: Pages{VerifyCode: true}}, "")
	h.agent(ten, "a")
	c := h.customer(ten, map[string]any{"customerInfo": map[string]any{
		"telephones": []map[string]any{{"content": "13800000000"}}}})
	_, err := h.svc.PlaceCall(ctx, c, PlaceCallRequest{})
	wantCode(t, err, CodeVerifyRequired)
	_, err = h.svc.IssueVerifyCode(ctx, VerifyCodeRequest{TenantID: ten.ID, TTL: time.Hour})
	wantCode(t, err, CodeBadRequest)
	expired, err := h.svc.IssueVerifyCode(ctx, VerifyCodeRequest{TenantID: ten.ID, Phone: "13800000000", Code: "1111",
		TTL: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	v, err := h.svc.IssueVerifyCode(ctx, VerifyCodeRequest{TenantID: ten.ID, Phone: "13800000000", TTL: time.Hour})
	if err != nil || len(v.Code) != 6 {
		t.Fatalf("issue: %+v %v", v, err)
	}
	h.eventually("code expired", func() bool { return time.Now().After(expired.ExpiresAt) })
	wantCode(t, h.svc.CheckVerifyCode(ctx, c, "1111"), CodeVerifyFailed)
	if err := h.svc.CheckVerifyCode(ctx, c, v.Code); err != nil {
		t.Fatal(err)
	}
	if !c.Verified() {
		t.Fatal("session not verified")
	}
	wantCode(t, h.svc.CheckVerifyCode(ctx, c, v.Code), CodeVerifyFailed) // single use
	if _, err := h.svc.PlaceCall(ctx, c, PlaceCallRequest{}); err != nil {
		t.Fatal(err)
	}
	// Attempts are limited per customer.
	other := h.customer(ten, nil)
	for i := 0; i < 3; i++ {
		wantCode(t, h.svc.CheckVerifyCode(ctx, other, "000000"), CodeVerifyFailed)
	}
	wantCode(t, h.svc.CheckVerifyCode(ctx, other, "000000"), CodeRateLimited)
}

func TestOptionalPages(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.RingTimeout = time.Hour })
	settings := TenantSettings{
		Pages: Pages{Goods: true, Stores: true, Agents: true, PreForm: true},
		Goods: []Goods{{ID: 1, Name: "car insurance"}, {ID: 2, Name: "home"}},
		Stores: []StoreInfo{
			{ID: 1, Name: "Shanghai", Lat: 31.2304, Lng: 121.4737, AgentGroupID: 0},
			{ID: 2, Name: "Beijing", Lat: 39.9042, Lng: 116.4074},
			{ID: 3, Name: "Tianjin", Lat: 39.3434, Lng: 117.3616},
		},
		PreForm: &Form{Fields: []FormField{
			{Name: "topic", Type: "select", Required: true, Options: []string{"claim", "buy"}},
			{Name: "email", Type: "email"},
			{Name: "tags", Type: "multiselect", Options: []string{"a", "b"}},
		}},
	}
	ten := h.tenant("t", settings, "")
	grp := h.group(ten.ID, "beijing")
	settings.Stores[1].AgentGroupID = grp
	if err := h.st.UpdateTenant(ctx, withSettings(t, ten, settings)); err != nil {
		t.Fatal(err)
	}
	a := h.agent(ten, "bj", grp)
	h.agent(ten, "idle")
	if err := h.svc.SetAgentStatus(ctx, a.AgentID+1, StatusAway); err != nil {
		t.Fatal(err)
	}
	c := h.customer(ten, nil)
	if !c.Settings.Pages.Goods || !c.Settings.HasPreForm || c.Settings.HasOfflineForm {
		t.Fatalf("public settings = %+v", c.Settings)
	}

	stores, err := h.svc.ListStores(ctx, c, 39.95, 116.30) // in Beijing
	if err != nil || len(stores) != 3 || stores[0].Name != "Beijing" || stores[1].Name != "Tianjin" {
		t.Fatalf("stores = %+v, %v", stores, err)
	}
	if d := stores[0].DistanceM; d < 5000 || d > 15000 {
		t.Fatalf("Beijing distance = %.0f m", d)
	}
	_, err = h.svc.ListStores(ctx, c, 91, 0)
	wantCode(t, err, CodeBadRequest)

	goods, err := h.svc.Goods(ctx, c)
	if err != nil || len(goods) != 2 {
		t.Fatalf("goods = %v, %v", goods, err)
	}
	agents, err := h.svc.ListAgents(ctx, c)
	if err != nil || len(agents) != 2 || agents[0].Status != StatusOnline || agents[1].Status != StatusAway {
		t.Fatalf("agents = %+v, %v", agents, err)
	}

	f, err := h.svc.FormDefinition(ctx, c, FormPre)
	if err != nil || len(f.Fields) != 3 {
		t.Fatalf("form = %+v, %v", f, err)
	}
	_, err = h.svc.FormDefinition(ctx, c, FormOffline)
	wantCode(t, err, CodeNotFound)
	for _, bad := range []map[string]any{
		{},
		{"topic": "other"},
		{"topic": "claim", "email": "not an address"},
		{"topic": "claim", "tags": []any{"z"}},
	} {
		_, err := h.svc.SubmitForm(ctx, c, FormPre, bad)
		wantCode(t, err, CodeBadRequest)
	}
	if _, err := h.svc.SubmitForm(ctx, c, FormPre, map[string]any{"topic": "claim", "tags": []any{"a"}}); err != nil {
		t.Fatal(err)
	}

	// Picking the Beijing store routes to its group; the goods travel as the subject.
	info, err := h.svc.PlaceCall(ctx, c, PlaceCallRequest{StoreID: 2, GoodsID: 1})
	if err != nil {
		t.Fatal(err)
	}
	in := h.wait(agt(a), EventCallRinging).Data.(IncomingData)
	if in.CallID != info.CallID || in.Subject != "car insurance" {
		t.Fatalf("incoming = %+v", in)
	}
	if agents, _ := h.svc.ListAgents(ctx, c); agents[0].Status != StatusBusy {
		t.Fatalf("ringing agent status = %s", agents[0].Status)
	}
	_, err = h.svc.PlaceCall(ctx, h.customer(ten, nil), PlaceCallRequest{GoodsID: 99})
	wantCode(t, err, CodeNotFound)

	var m dto.Metric
	if err := h.svc.m.agents.WithLabelValues(StatusBusy).Write(&m); err != nil || m.GetGauge().GetValue() != 1 {
		t.Fatalf("busy agents gauge = %v, %v", m.GetGauge().GetValue(), err)
	}
}

func TestHaversine(t *testing.T) {
	// Shanghai to Beijing is about 1,067 km.
	d := Haversine(31.2304, 121.4737, 39.9042, 116.4074)
	if math.Abs(d-1067e3) > 10e3 {
		t.Fatalf("distance = %.0f", d)
	}
	if Haversine(10, 10, 10, 10) != 0 {
		t.Fatal("zero distance")
	}
}

func TestWorkingHours(t *testing.T) {
	wh := WorkingHours{Timezone: "Asia/Shanghai", Weekly: map[string][]Span{
		"mon": {{Start: "09:00", End: "12:00"}, {Start: "13:00", End: "18:00"}},
		"sat": {{Start: "00:00", End: "24:00"}},
	}, Holidays: []string{"2026-11-30"}}
	sh, _ := time.LoadLocation("Asia/Shanghai")
	tests := []struct {
		at   time.Time
		open bool
	}{
		{time.Date(2026, 11, 23, 9, 0, 0, 0, sh), true},    // Monday opening
		{time.Date(2026, 11, 23, 12, 30, 0, 0, sh), false}, // lunch
		{time.Date(2026, 11, 23, 17, 59, 0, 0, sh), true},
		{time.Date(2026, 11, 23, 18, 0, 0, 0, sh), false},
		{time.Date(2026, 11, 23, 1, 30, 0, 0, time.UTC), true}, // 09:30 in Shanghai
		{time.Date(2026, 11, 24, 10, 0, 0, 0, sh), false},      // Tuesday: not listed
		{time.Date(2026, 11, 28, 23, 59, 0, 0, sh), true},      // Saturday all day
		{time.Date(2026, 11, 30, 10, 0, 0, 0, sh), false},      // holiday Monday
	}
	for _, tt := range tests {
		if got := wh.OpenAt(tt.at); got != tt.open {
			t.Errorf("%s: open = %v, want %v", tt.at, got, tt.open)
		}
	}
	if !(WorkingHours{}).OpenAt(time.Now()) {
		t.Error("empty schedule must be always open")
	}
	for _, bad := range []string{
		`{"workingHours":{"timezone":"Mars/Olympus"}}`,
		`{"workingHours":{"weekly":{"funday":[]}}}`,
		`{"workingHours":{"weekly":{"mon":[{"start":"18:00","end":"09:00"}]}}}`,
		`{"workingHours":{"holidays":["tomorrow"]}}`,
		`{"pages":`,
	} {
		if _, err := ParseSettings(bad); err == nil {
			t.Errorf("settings %s accepted", bad)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) { c.RingTimeout = 0 }, "callcenter.ring_timeout: must be > 0"},
		{func(c *Config) { c.QueueTimeout = -1 }, "callcenter.queue_timeout: must be > 0"},
		{func(c *Config) { c.DefaultMaxCalls = 0 }, "callcenter.default_max_calls: must be >= 1"},
		{func(c *Config) { c.OnNoAnswer = "maybe" }, "callcenter.on_no_answer"},
		{func(c *Config) { c.Demo.Enabled, c.Demo.TenantKey = true, "" }, "callcenter.demo.tenant_key"},
	}
	for _, tt := range tests {
		c := DefaultConfig()
		tt.mod(&c)
		if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("Validate = %v, want %q", err, tt.want)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestDemoSeed(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Demo.Enabled = true })
	h.stop()
	h.start() // seeding twice is a no-op
	sess, err := h.svc.AgentLogin(ctx, "demo", "agent", "agent")
	if err != nil || sess.NickName != "Demo agent" {
		t.Fatalf("demo login: %+v %v", sess, err)
	}
}
