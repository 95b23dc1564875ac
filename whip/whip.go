// Package whip serves the WHIP (RFC 9725) and WHEP endpoints of the SFU, so
// that a browser or any standard tool can publish into a room and play from
// it without AVS's own signaling:
//
//	POST   /whip/{room}        SDP offer in, SDP answer out, Location of the session
//	POST   /whep/{room}        the same for a receive-only player
//	PATCH  /whip/{room}/{id}   trickle ICE candidates, or an ICE restart
//	DELETE /whip/{room}/{id}   leave (likewise under /whep/)
//
// Requests carry "Authorization: Bearer" with a configured key or a
// short-lived token signed with one (NewToken).
package whip

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/avs/avs/sfu"
)

// ICEServer is one entry of the Link headers that tell a client which STUN
// and TURN servers to use.
type ICEServer struct {
	URLs       []string
	Username   string
	Credential string
}

// Params are what New needs.
type Params struct {
	Config Config
	SFU    *sfu.SFU
	Logger *slog.Logger
	// ICEServers, when set, returns the servers (with fresh TURN
	// credentials) announced to each new session.
	ICEServers func(sessionID string) []ICEServer
	Now        func() time.Time
}

// Handler serves both endpoints.
type Handler struct {
	cfg        Config
	sfu        *sfu.SFU
	log        *slog.Logger
	iceServers func(string) []ICEServer
	now        func() time.Time

	mu       sync.Mutex
	sessions map[string]*session
	draining bool
}

type session struct {
	id          string
	kind        string // "whip" or "whep"
	room        string
	participant *sfu.Participant
	offer       string // the last full offer, the base of an ICE restart
}

// New returns the handler; mount it at "/whip/" and "/whep/".
func New(p Params) (*Handler, error) {
	if err := p.Config.Validate(); err != nil {
		return nil, err
	}
	if p.SFU == nil {
		return nil, errors.New("whip: no SFU")
	}
	log := p.Logger
	if log == nil {
		log = slog.Default()
	}
	now := p.Now
	if now == nil {
		now = time.Now
	}
	return &Handler{
		cfg: p.Config, sfu: p.SFU, log: log.With("component", "whip"),
		iceServers: p.ICEServers, now: now, sessions: map[string]*session{},
	}, nil
}

// Drain refuses new sessions; open ones go on.
func (h *Handler) Drain() {
	h.mu.Lock()
	h.draining = true
	h.mu.Unlock()
}

// Sessions is the number of open sessions.
func (h *Handler) Sessions() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.sessions)
}

// errorBody is the JSON body of every error answer.
type errorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(errorBody{Code: code, Message: msg})
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.cors(w, r)
	kind, rest, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if kind != "whip" && kind != "whep" {
		writeError(w, http.StatusNotFound, "not_found", "no such endpoint")
		return
	}
	room, id, hasID := strings.Cut(rest, "/")
	if room == "" || strings.Contains(id, "/") {
		writeError(w, http.StatusNotFound, "not_found", "expected /"+kind+"/{room} or /"+kind+"/{room}/{session}")
		return
	}
	if r.Method == http.MethodOptions {
		w.Header().Set("Accept-Post", "application/sdp")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if err := authorize(h.cfg.Keys, bearer(r), room, h.now()); err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="avs"`)
		writeError(w, http.StatusUnauthorized, "unauthorized", err.Error())
		return
	}
	switch {
	case !hasID && r.Method == http.MethodPost:
		h.create(w, r, kind, room)
	case hasID && r.Method == http.MethodPatch:
		h.patch(w, r, kind, room, id)
	case hasID && r.Method == http.MethodDelete:
		h.remove(w, kind, room, id)
	default:
		w.Header().Set("Allow", "OPTIONS, POST, PATCH, DELETE")
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not used here")
	}
}

func bearer(r *http.Request) string {
	v, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return ""
	}
	return strings.TrimSpace(v)
}

// cors lets pages of the allowed origins call the endpoints and read the
// Location and Link headers.
func (h *Handler) cors(w http.ResponseWriter, r *http.Request) {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return
	}
	allowed := slices.Contains(h.cfg.AllowedOrigins, "*") || slices.Contains(h.cfg.AllowedOrigins, origin)
	if !allowed {
		return
	}
	hd := w.Header()
	hd.Set("Access-Control-Allow-Origin", origin)
	hd.Add("Vary", "Origin")
	hd.Set("Access-Control-Allow-Methods", "OPTIONS, POST, PATCH, DELETE")
	hd.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, If-Match")
	hd.Set("Access-Control-Expose-Headers", "Location, Link, ETag, Accept-Post")
	hd.Set("Access-Control-Max-Age", "600")
}

func (h *Handler) readSDP(w http.ResponseWriter, r *http.Request, wantType string) (string, bool) {
	ct := strings.TrimSpace(strings.Split(r.Header.Get("Content-Type"), ";")[0])
	if !strings.EqualFold(ct, wantType) {
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "Content-Type must be "+wantType)
		return "", false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxSDPBytes))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("body exceeds %d bytes", h.cfg.MaxSDPBytes))
		return "", false
	}
	return string(body), true
}

func newSessionID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (h *Handler) create(w http.ResponseWriter, r *http.Request, kind, roomName string) {
	offer, ok := h.readSDP(w, r, "application/sdp")
	if !ok {
		return
	}
	h.mu.Lock()
	full, draining := len(h.sessions) >= h.cfg.MaxSessions, h.draining
	h.mu.Unlock()
	if draining {
		writeError(w, http.StatusServiceUnavailable, "draining", "the server is shutting down")
		return
	}
	if full {
		writeError(w, http.StatusServiceUnavailable, "too_many_sessions", "the server has no room for another session")
		return
	}
	room, err := h.sfu.Room(roomName, sfu.RoomOptions{AutoClose: true})
	if err != nil {
		h.fail(w, err)
		return
	}
	s := &session{id: newSessionID(), kind: kind, room: roomName, offer: offer}
	opts := sfu.ParticipantOptions{ID: kind + "-" + s.id, OnClose: func() { h.forget(s) }}
	if kind == "whep" {
		opts.Subscribe = sfu.SubscribeSlots
	}
	p, err := room.Join(opts)
	if err != nil {
		h.fail(w, err)
		return
	}
	s.participant = p
	h.mu.Lock()
	h.sessions[s.id] = s
	h.mu.Unlock()

	var answer string
	if kind == "whip" {
		answer, err = p.Offer(offer)
	} else {
		answer, err = p.Play(offer)
	}
	if err != nil {
		_ = p.Close()
		h.fail(w, err)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "application/sdp")
	hd.Set("Location", "/"+kind+"/"+roomName+"/"+s.id)
	hd.Set("ETag", `"`+iceUfrag(answer)+`"`)
	for _, link := range h.links(s.id) {
		hd.Add("Link", link)
	}
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, answer)
	h.log.Info("session started", "kind", kind, "room", roomName, "session", s.id)
}

// links renders the ICE servers as RFC 9725 Link headers.
func (h *Handler) links(id string) []string {
	if h.iceServers == nil {
		return nil
	}
	var out []string
	for _, s := range h.iceServers(id) {
		for _, u := range s.URLs {
			l := fmt.Sprintf(`<%s>; rel="ice-server"`, u)
			if s.Username != "" {
				l += fmt.Sprintf(`; username="%s"; credential="%s"; credential-type="password"`, s.Username, s.Credential)
			}
			out = append(out, l)
		}
	}
	return out
}

// fail maps the media plane's errors to answers with stable codes.
func (h *Handler) fail(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, sfu.ErrBadSDP):
		writeError(w, http.StatusBadRequest, "bad_sdp", err.Error())
	case errors.Is(err, sfu.ErrTooManyTracks):
		writeError(w, http.StatusBadRequest, "too_many_tracks", err.Error())
	case errors.Is(err, sfu.ErrNoMedia):
		writeError(w, http.StatusNotAcceptable, "no_media", err.Error())
	case errors.Is(err, sfu.ErrRoomFull):
		writeError(w, http.StatusConflict, "room_full", err.Error())
	case errors.Is(err, sfu.ErrDraining):
		writeError(w, http.StatusServiceUnavailable, "draining", err.Error())
	default:
		h.log.Warn("session failed", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "the session could not be set up")
	}
}

func (h *Handler) lookup(kind, room, id string) *session {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.sessions[id]
	if s == nil || s.kind != kind || s.room != room {
		return nil
	}
	return s
}

func (h *Handler) forget(s *session) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.sessions[s.id] == s {
		delete(h.sessions, s.id)
	}
}

func (h *Handler) remove(w http.ResponseWriter, kind, room, id string) {
	s := h.lookup(kind, room, id)
	if s == nil {
		writeError(w, http.StatusNotFound, "not_found", "no such session")
		return
	}
	_ = s.participant.Close()
	h.forget(s)
	w.WriteHeader(http.StatusOK)
}

// patch takes trickled candidates, or new ICE credentials for a restart
// (RFC 9725 §4.3), as an SDP fragment.
func (h *Handler) patch(w http.ResponseWriter, r *http.Request, kind, room, id string) {
	s := h.lookup(kind, room, id)
	if s == nil {
		writeError(w, http.StatusNotFound, "not_found", "no such session")
		return
	}
	body, ok := h.readSDP(w, r, "application/trickle-ice-sdpfrag")
	if !ok {
		return
	}
	frag := parseFragment(body)
	target := "pub"
	if kind == "whep" {
		target = "sub"
	}
	if frag.ufrag == "" || frag.ufrag == iceUfrag(s.offer) {
		for _, c := range frag.candidates {
			if err := s.participant.Candidate(target, c); err != nil {
				writeError(w, http.StatusBadRequest, "bad_candidate", err.Error())
				return
			}
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	h.restartICE(w, s, frag)
}

func (h *Handler) restartICE(w http.ResponseWriter, s *session, frag fragment) {
	offer := withICECredentials(s.offer, frag.ufrag, frag.pwd)
	var answer string
	var err error
	if s.kind == "whip" {
		answer, err = s.participant.Offer(offer)
	} else {
		answer, err = s.participant.Play(offer)
	}
	if err != nil {
		h.fail(w, err)
		return
	}
	s.offer = offer
	w.Header().Set("Content-Type", "application/trickle-ice-sdpfrag")
	w.Header().Set("ETag", `"`+iceUfrag(answer)+`"`)
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, answerFragment(answer))
}

// candidateInit is how a fragment's candidate reaches the participant.
func candidateInit(line, mid string) webrtc.ICECandidateInit {
	c := webrtc.ICECandidateInit{Candidate: line}
	if mid != "" {
		c.SDPMid = &mid
	}
	return c
}
