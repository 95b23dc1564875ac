package callcenter

import (
	"sort"
	"testing"
)

// TestWebhookBodyKeys pins the wire keys of PRODUCT.md §4, typos included.
func TestWebhookBodyKeys(t *testing.T) {
	h := newHarness(t)
	ten := h.tenant("t", TenantSettings{WorkingHours: WorkingHours{Timezone: "Asia/Shanghai"}}, "http://r.invalid/")
	a := h.agent(ten, "alice")
	c := h.customer(ten, map[string]any{"bizId": 123, "customerInfo": map[string]any{
		"nickName": "n", "organizationIds": []int{5532292}, "custom_fields": map[string]any{"TextField_1": "x"},
		"telephones": []map[string]any{{"content": "1901920129"}}}})
	info, err := h.svc.PlaceCall(ctx, c, PlaceCallRequest{})
	if err != nil {
		t.Fatal(err)
	}
	h.wait(agt(a), EventCallRinging)
	if err := h.svc.Answer(ctx, a.AgentID, info.CallID); err != nil {
		t.Fatal(err)
	}
	if err := h.svc.Hangup(ctx, cust(c), info.CallID); err != nil {
		t.Fatal(err)
	}
	body := h.deliveries(info.CallID)[0]
	want := map[string][]string{
		"": {"agent", "bizId", "customer", "organizations", "videoCall"},
		"videoCall": {"callDuration", "dialTime", "id", "queueDuration", "resultCode", "surveryDesc", "surveryLables",
			"surveryRemark", "surveryResolveResult", "videoCallEndTime", "videoCallStartTime"},
		"customer": {"cellphones", "created_at", "custom_fields", "default_organization_id", "description", "email",
			"id", "is_blocked", "lang", "level", "nick_name", "open_api_token", "organization_ids", "other_emails",
			"other_web_tokens", "rich_tags", "sdk_token", "source_channel", "tags", "updated_at", "web_token",
			"weixin_minis"},
		"agent": {"avatar", "departments", "duty", "id", "is_admin", "nick_name", "user_group_ids", "work_id"},
	}
	for part, keys := range want {
		obj := body
		if part != "" {
			obj = body[part].(map[string]any)
		}
		var got []string
		for k := range obj {
			got = append(got, k)
		}
		sort.Strings(got)
		if len(got) != len(keys) {
			t.Fatalf("%s keys = %v, want %v", part, got, keys)
		}
		for i := range keys {
			if got[i] != keys[i] {
				t.Fatalf("%s keys = %v, want %v", part, got, keys)
			}
		}
	}
	if body["bizId"] != "123" {
		t.Fatalf("bizId = %v", body["bizId"])
	}
	vc := body["videoCall"].(map[string]any)
	if s := vc["dialTime"].(string); s[len(s)-6:] != "+08:00" {
		t.Fatalf("dialTime %q not in the tenant's offset", s)
	}
	org := body["organizations"].([]any)[0].(map[string]any)
	if org["id"].(float64) != 5532292 {
		t.Fatalf("organizations = %v", body["organizations"])
	}
	cu := body["customer"].(map[string]any)
	if cu["cellphones"].([]any)[0].(map[string]any)["content"] != "1901920129" ||
		cu["custom_fields"].(map[string]any)["TextField_1"] != "x" {
		t.Fatalf("customer = %v", cu)
	}
}
