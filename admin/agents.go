package admin

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/avs/avs/callcenter"
	"github.com/avs/avs/store"
)

// agentJSON is an agent on the wire. Password is write-only.
type agentJSON struct {
	ID          int64           `json:"id"`
	TenantID    int64           `json:"tenantId"`
	Username    string          `json:"username"`
	Password    string          `json:"password,omitempty"`
	NickName    string          `json:"nickName"`
	Avatar      string          `json:"avatar"`
	WorkID      string          `json:"workId"`
	Duty        string          `json:"duty"`
	IsAdmin     bool            `json:"isAdmin"`
	MaxCalls    int             `json:"maxCalls"`
	Departments json.RawMessage `json:"departments"`
	Disabled    bool            `json:"disabled"`
	GroupIDs    []int64         `json:"groupIds"`
	Status      string          `json:"status"`
	CreatedAt   time.Time       `json:"createdAt"`
}

func (h *Handler) agentOut(a *store.Agent) agentJSON {
	groups := a.GroupIDs
	if groups == nil {
		groups = []int64{}
	}
	return agentJSON{ID: a.ID, TenantID: a.TenantID, Username: a.Username, NickName: a.NickName, Avatar: a.Avatar,
		WorkID: a.WorkID, Duty: a.Duty, IsAdmin: a.IsAdmin, MaxCalls: a.MaxCalls,
		Departments: json.RawMessage(a.Departments), Disabled: a.Disabled, GroupIDs: groups,
		Status: h.svc.AgentStatus(a.ID), CreatedAt: a.CreatedAt}
}

// agentIn reads an agent body into a; the password is required when
// creating and optional when updating.
func agentIn(r *http.Request, a *store.Agent, creating bool) error {
	var in agentJSON
	if err := decode(r, &in); err != nil {
		return err
	}
	in.Username = strings.TrimSpace(in.Username)
	switch {
	case in.Username == "" || len(in.Username) > 128:
		return badf("username: 1 to 128 characters required")
	case creating && len(in.Password) < 8:
		return badf("password: at least 8 characters required")
	case !creating && in.Password != "" && len(in.Password) < 8:
		return badf("password: at least 8 characters")
	case in.MaxCalls < 0 || in.MaxCalls > 100:
		return badf("maxCalls: 0 (default) to 100")
	}
	deps := "[]"
	if len(in.Departments) > 0 && string(in.Departments) != "null" {
		var check []struct {
			ID   int64  `json:"id"`
			Name string `json:"name"`
		}
		if err := json.Unmarshal(in.Departments, &check); err != nil {
			return badf("departments: a list of {id, name}: %w", err)
		}
		deps = string(in.Departments)
	}
	if in.Password != "" {
		hash, err := callcenter.HashPassword(in.Password)
		if err != nil {
			return err
		}
		a.PasswordHash = hash
	}
	a.Username, a.NickName, a.Avatar, a.WorkID, a.Duty = in.Username, in.NickName, in.Avatar, in.WorkID, in.Duty
	a.IsAdmin, a.MaxCalls, a.Departments, a.Disabled, a.GroupIDs = in.IsAdmin, in.MaxCalls, deps, in.Disabled, in.GroupIDs
	return nil
}

func (h *Handler) listAgents(w http.ResponseWriter, r *http.Request) {
	t, err := h.tenantFor(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	as, err := h.st.ListAgents(ctxOf(r), t.ID)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := make([]agentJSON, 0, len(as))
	for _, a := range as {
		out = append(out, h.agentOut(a))
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *Handler) createAgent(w http.ResponseWriter, r *http.Request) {
	t, err := h.tenantFor(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	a := store.Agent{TenantID: t.ID}
	if err := agentIn(r, &a, true); err != nil {
		h.fail(w, r, err)
		return
	}
	if err := h.st.CreateAgent(ctxOf(r), &a); err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, h.agentOut(&a))
}

func (h *Handler) agentFor(r *http.Request) (*store.Agent, error) {
	id, err := pathID(r, "agent")
	if err != nil {
		return nil, err
	}
	return h.st.AgentByID(ctxOf(r), id)
}

func (h *Handler) getAgent(w http.ResponseWriter, r *http.Request) {
	a, err := h.agentFor(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, h.agentOut(a))
}

func (h *Handler) updateAgent(w http.ResponseWriter, r *http.Request) {
	a, err := h.agentFor(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if err := agentIn(r, a, false); err != nil {
		h.fail(w, r, err)
		return
	}
	if err := h.st.UpdateAgent(ctxOf(r), a); err != nil {
		h.fail(w, r, err)
		return
	}
	if err := h.svc.ReloadAgent(ctxOf(r), a.ID); err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, h.agentOut(a))
}

func (h *Handler) deleteAgent(w http.ResponseWriter, r *http.Request) {
	a, err := h.agentFor(r)
	if err == nil {
		err = h.st.DeleteAgent(ctxOf(r), a.TenantID, a.ID)
	}
	if err == nil {
		// A deleted agent still logged in stops getting calls at once.
		err = h.svc.ReloadAgent(ctxOf(r), a.ID)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type tokenOut struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expiresAt"`
}

func (h *Handler) issueToken(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "agent")
	if err != nil {
		h.fail(w, r, err)
		return
	}
	tok, exp, err := h.svc.IssueAgentToken(ctxOf(r), id)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, tokenOut{Token: tok, ExpiresAt: exp})
}

func (h *Handler) revokeTokens(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "agent")
	if err == nil {
		err = h.st.RevokeAgentTokens(ctxOf(r), id)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
