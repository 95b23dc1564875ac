package admin

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/avs/avs/callcenter"
	"github.com/avs/avs/store"
)

// tenantJSON is a tenant on the wire. Settings is the document described
// by callcenter.TenantSettings.
type tenantJSON struct {
	ID            int64           `json:"id"`
	Key           string          `json:"key"`
	Name          string          `json:"name"`
	Secret        string          `json:"secret"`
	WebhookURL    string          `json:"webhookUrl"`
	WebhookSecret string          `json:"webhookSecret"`
	Settings      json.RawMessage `json:"settings"`
	CreatedAt     time.Time       `json:"createdAt"`
	UpdatedAt     time.Time       `json:"updatedAt"`
}

func tenantOut(t *store.Tenant) tenantJSON {
	return tenantJSON{ID: t.ID, Key: t.Key, Name: t.Name, Secret: t.Secret, WebhookURL: t.WebhookURL,
		WebhookSecret: t.WebhookSecret, Settings: json.RawMessage(t.Settings), CreatedAt: t.CreatedAt,
		UpdatedAt: t.UpdatedAt}
}

// tenantIn reads and checks a tenant body into t.
func tenantIn(r *http.Request, t *store.Tenant) error {
	var in tenantJSON
	if err := decode(r, &in); err != nil {
		return err
	}
	in.Key = strings.TrimSpace(in.Key)
	if in.Key == "" || len(in.Key) > 128 {
		return badf("key: 1 to 128 characters required")
	}
	if in.WebhookURL != "" && !strings.HasPrefix(in.WebhookURL, "http://") && !strings.HasPrefix(in.WebhookURL, "https://") {
		return badf("webhookUrl: must be http(s)")
	}
	settings := "{}"
	if len(in.Settings) > 0 && string(in.Settings) != "null" {
		settings = string(in.Settings)
	}
	if _, err := callcenter.ParseSettings(settings); err != nil {
		return badf("settings: %w", err)
	}
	t.Key, t.Name, t.Secret, t.WebhookURL, t.WebhookSecret, t.Settings =
		in.Key, in.Name, in.Secret, in.WebhookURL, in.WebhookSecret, settings
	return nil
}

func (h *Handler) listTenants(w http.ResponseWriter, r *http.Request) {
	ts, err := h.st.ListTenants(ctxOf(r))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := make([]tenantJSON, 0, len(ts))
	for _, t := range ts {
		out = append(out, tenantOut(t))
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *Handler) createTenant(w http.ResponseWriter, r *http.Request) {
	var t store.Tenant
	if err := tenantIn(r, &t); err != nil {
		h.fail(w, r, err)
		return
	}
	if err := h.st.CreateTenant(ctxOf(r), &t); err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, tenantOut(&t))
}

func (h *Handler) getTenant(w http.ResponseWriter, r *http.Request) {
	t, err := h.tenantFor(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, tenantOut(t))
}

func (h *Handler) updateTenant(w http.ResponseWriter, r *http.Request) {
	t, err := h.tenantFor(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if err := tenantIn(r, t); err != nil {
		h.fail(w, r, err)
		return
	}
	if err := h.st.UpdateTenant(ctxOf(r), t); err != nil {
		h.fail(w, r, err)
		return
	}
	t, err = h.st.TenantByID(ctxOf(r), t.ID)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, tenantOut(t))
}

func (h *Handler) deleteTenant(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "tenant")
	if err == nil {
		err = h.st.DeleteTenant(ctxOf(r), id)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type groupJSON struct {
	ID       int64  `json:"id"`
	TenantID int64  `json:"tenantId"`
	Name     string `json:"name"`
}

func (h *Handler) listGroups(w http.ResponseWriter, r *http.Request) {
	t, err := h.tenantFor(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	gs, err := h.st.ListGroups(ctxOf(r), t.ID)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := make([]groupJSON, 0, len(gs))
	for _, g := range gs {
		out = append(out, groupJSON(g))
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *Handler) createGroup(w http.ResponseWriter, r *http.Request) {
	t, err := h.tenantFor(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	var in groupJSON
	if err := decode(r, &in); err != nil {
		h.fail(w, r, err)
		return
	}
	if strings.TrimSpace(in.Name) == "" {
		h.fail(w, r, badf("name: required"))
		return
	}
	g := store.Group{TenantID: t.ID, Name: strings.TrimSpace(in.Name)}
	if err := h.st.CreateGroup(ctxOf(r), &g); err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, groupJSON(g))
}

func (h *Handler) deleteGroup(w http.ResponseWriter, r *http.Request) {
	tid, err := pathID(r, "tenant")
	if err != nil {
		h.fail(w, r, err)
		return
	}
	gid, err := pathID(r, "group")
	if err == nil {
		err = h.st.DeleteGroup(ctxOf(r), tid, gid)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type verifyCodeIn struct {
	CustomerID int64  `json:"customerId"`
	Phone      string `json:"phone"`
	Code       string `json:"code"`
	TTLSeconds int64  `json:"ttlSeconds"`
}

type verifyCodeOut struct {
	ID         int64     `json:"id"`
	Code       string    `json:"code"`
	CustomerID int64     `json:"customerId,omitempty"`
	Phone      string    `json:"phone,omitempty"`
	ExpiresAt  time.Time `json:"expiresAt"`
}

func (h *Handler) issueVerifyCode(w http.ResponseWriter, r *http.Request) {
	t, err := h.tenantFor(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	in := verifyCodeIn{TTLSeconds: 600}
	if err := decode(r, &in); err != nil {
		h.fail(w, r, err)
		return
	}
	v, err := h.svc.IssueVerifyCode(ctxOf(r), callcenter.VerifyCodeRequest{TenantID: t.ID, CustomerID: in.CustomerID,
		Phone: in.Phone, Code: in.Code, TTL: time.Duration(in.TTLSeconds) * time.Second})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, verifyCodeOut{ID: v.ID, Code: v.Code, CustomerID: v.CustomerID, Phone: v.Phone,
		ExpiresAt: v.ExpiresAt})
}
