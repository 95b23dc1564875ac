// Package admin is the operator's and integrator backend's HTTP API for
// AVS: tenants, agent groups, agents and their login tokens, verify codes,
// call records, offline-form tickets and webhook deliveries. It is an
// http.Handler that main mounts under /admin/; every request needs
// "Authorization: Bearer <admin token>". docs/admin-api.md describes the
// routes with curl examples.
package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/avs/avs/callcenter"
	"github.com/avs/avs/store"
)

// Config is the [admin] section of config.toml.
type Config struct {
	// Token is the bearer token of the admin API; "" disables the API.
	Token string `toml:"token"`
	// MaxBodyBytes bounds a request body.
	MaxBodyBytes int64 `toml:"max_body_bytes"`
}

// DefaultConfig returns the defaults documented in config.toml.
func DefaultConfig() Config { return Config{MaxBodyBytes: 1 << 20} }

// Validate reports the first invalid key.
func (c Config) Validate() error {
	if c.MaxBodyBytes < 1024 {
		return errors.New("admin.max_body_bytes: must be >= 1024")
	}
	if c.Token != "" && len(c.Token) < 16 {
		return errors.New("admin.token: must be at least 16 characters")
	}
	return nil
}

// Params are the handler's dependencies.
type Params struct {
	Config  Config
	Store   *store.Store
	Service *callcenter.Service
	Logger  *slog.Logger
	// OnRetry wakes the webhook deliverer after a retry (Deliverer.Notify).
	OnRetry func()
}

// Handler serves the admin API.
type Handler struct {
	cfg     Config
	st      *store.Store
	svc     *callcenter.Service
	log     *slog.Logger
	onRetry func()
	mux     *http.ServeMux
	token   [32]byte
}

// New builds the handler.
func New(p Params) (*Handler, error) {
	if err := p.Config.Validate(); err != nil {
		return nil, err
	}
	if p.Store == nil || p.Service == nil {
		return nil, errors.New("admin: Store and Service are required")
	}
	h := &Handler{cfg: p.Config, st: p.Store, svc: p.Service, log: p.Logger, onRetry: p.OnRetry,
		mux: http.NewServeMux(), token: sha256.Sum256([]byte(p.Config.Token))}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	h.routes()
	return h, nil
}

func (h *Handler) routes() {
	m := h.mux
	m.HandleFunc("GET /admin/tenants", h.listTenants)
	m.HandleFunc("POST /admin/tenants", h.createTenant)
	m.HandleFunc("GET /admin/tenants/{tenant}", h.getTenant)
	m.HandleFunc("PUT /admin/tenants/{tenant}", h.updateTenant)
	m.HandleFunc("DELETE /admin/tenants/{tenant}", h.deleteTenant)
	m.HandleFunc("GET /admin/tenants/{tenant}/groups", h.listGroups)
	m.HandleFunc("POST /admin/tenants/{tenant}/groups", h.createGroup)
	m.HandleFunc("DELETE /admin/tenants/{tenant}/groups/{group}", h.deleteGroup)
	m.HandleFunc("GET /admin/tenants/{tenant}/agents", h.listAgents)
	m.HandleFunc("POST /admin/tenants/{tenant}/agents", h.createAgent)
	m.HandleFunc("GET /admin/agents/{agent}", h.getAgent)
	m.HandleFunc("PUT /admin/agents/{agent}", h.updateAgent)
	m.HandleFunc("DELETE /admin/agents/{agent}", h.deleteAgent)
	m.HandleFunc("POST /admin/agents/{agent}/tokens", h.issueToken)
	m.HandleFunc("DELETE /admin/agents/{agent}/tokens", h.revokeTokens)
	m.HandleFunc("POST /admin/tenants/{tenant}/verify-codes", h.issueVerifyCode)
	m.HandleFunc("GET /admin/tenants/{tenant}/tickets", h.listTickets)
	m.HandleFunc("GET /admin/calls", h.listCalls)
	m.HandleFunc("GET /admin/calls/{call}", h.getCall)
	m.HandleFunc("GET /admin/webhooks", h.listDeliveries)
	m.HandleFunc("GET /admin/webhooks/{delivery}", h.getDelivery)
	m.HandleFunc("POST /admin/webhooks/{delivery}/retry", h.retryDelivery)
}

// ServeHTTP checks the bearer token and dispatches.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Token == "" {
		writeErr(w, http.StatusServiceUnavailable, "disabled", "the admin API has no token configured")
		return
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	sum := sha256.Sum256([]byte(tok))
	// Comparing digests keeps the comparison constant-time whatever the
	// length of the presented token.
	if !ok || subtle.ConstantTimeCompare(sum[:], h.token[:]) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="avs-admin"`)
		writeErr(w, http.StatusUnauthorized, "unauthorized", "a valid admin bearer token is required")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes)
	h.mux.ServeHTTP(w, r)
}

// apiError is every error body.
type apiError struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

func writeErr(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, apiError{Error: code, Message: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// fail maps an error to a status and a stable code.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	var ce *callcenter.Error
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeErr(w, http.StatusNotFound, callcenter.CodeNotFound, err.Error())
	case errors.Is(err, store.ErrConflict):
		writeErr(w, http.StatusConflict, "conflict", err.Error())
	case errors.As(err, &ce) && ce.Code == callcenter.CodeNotFound:
		writeErr(w, http.StatusNotFound, ce.Code, ce.Message)
	case errors.As(err, &ce) && ce.Code == callcenter.CodeBadRequest:
		writeErr(w, http.StatusBadRequest, ce.Code, ce.Error())
	case errors.As(err, &badRequest{}):
		writeErr(w, http.StatusBadRequest, callcenter.CodeBadRequest, err.Error())
	default:
		h.log.Error("admin request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		writeErr(w, http.StatusInternalServerError, callcenter.CodeInternal, "internal error")
	}
}

// badRequest marks input errors.
type badRequest struct{ err error }

func (b badRequest) Error() string { return b.err.Error() }
func (b badRequest) Unwrap() error { return b.err }

func badf(format string, args ...any) error { return badRequest{fmt.Errorf(format, args...)} }

func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badf("request body: %w", err)
	}
	return nil
}

func pathID(r *http.Request, name string) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue(name), 10, 64)
	if err != nil || id <= 0 {
		return 0, badf("%s: not an id: %q", name, r.PathValue(name))
	}
	return id, nil
}

func queryInt(r *http.Request, name string) (int64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, badf("%s: not an integer: %q", name, v)
	}
	return n, nil
}

func queryTime(r *http.Request, name string) (time.Time, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, badf("%s: not RFC 3339: %q", name, v)
	}
	return t, nil
}

// tenantFor loads the tenant named in the path.
func (h *Handler) tenantFor(r *http.Request) (*store.Tenant, error) {
	id, err := pathID(r, "tenant")
	if err != nil {
		return nil, err
	}
	return h.st.TenantByID(r.Context(), id)
}

func ctxOf(r *http.Request) context.Context { return r.Context() }
