package callcenter

import (
	"context"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/avs/avs/store"
)

// Agent statuses. An agent takes new calls only when online and below its
// concurrent call limit; ListAgents shows such an agent at its limit as busy.
const (
	StatusOnline  = "online"
	StatusAway    = "away"
	StatusBusy    = "busy"
	StatusOffline = "offline"
)

type agentState struct {
	rec       *store.Agent
	status    string
	maxCalls  int
	calls     map[int64]bool // ringing and connected calls
	idleSince time.Time
	missed    int // consecutive rings left to time out
}

func (a *agentState) available() bool {
	return a.status == StatusOnline && len(a.calls) < a.maxCalls && !a.rec.Disabled
}

func (a *agentState) liveStatus() string {
	if a.status == StatusOnline && len(a.calls) >= a.maxCalls {
		return StatusBusy
	}
	return a.status
}

func (a *agentState) inGroup(g int64) bool {
	for _, id := range a.rec.GroupIDs {
		if id == g {
			return true
		}
	}
	return false
}

func (a *agentState) info(status string) AgentInfo {
	return AgentInfo{ID: a.rec.ID, NickName: a.rec.NickName, Avatar: a.rec.Avatar, WorkID: a.rec.WorkID,
		GroupIDs: a.rec.GroupIDs, Status: status}
}

// AgentSession is a logged-in agent.
type AgentSession struct {
	AgentID    int64
	TenantID   int64
	Username   string
	NickName   string
	Avatar     string
	GroupIDs   []int64
	MaxCalls   int
	Status     string
	ICEServers []ICEServer
}

// AgentLogin checks an agent's password and marks the agent online.
func (s *Service) AgentLogin(ctx context.Context, tenantKey, username, password string) (*AgentSession, error) {
	t, err := s.st.TenantByKey(ctx, tenantKey)
	if err != nil {
		return nil, lookupErr(CodeAuthFailed, "tenant", err)
	}
	a, err := s.st.AgentByUsername(ctx, t.ID, username)
	if err != nil {
		// Spend the time a hash check would, so a wrong name and a wrong
		// password cannot be told apart by timing.
		_ = CheckPassword("pbkdf2-sha256$600000$AAAA$AAAA", password)
		return nil, lookupErr(CodeAuthFailed, "agent", err)
	}
	if a.Disabled || !CheckPassword(a.PasswordHash, password) {
		return nil, errf(CodeAuthFailed, "agent %d: wrong password or disabled", a.ID)
	}
	return s.loginAgent(a), nil
}

// AgentLoginToken logs an agent in with a token issued by IssueAgentToken.
func (s *Service) AgentLoginToken(ctx context.Context, token string) (*AgentSession, error) {
	a, err := s.st.AgentByToken(ctx, hashToken(token), s.now())
	if err != nil {
		return nil, lookupErr(CodeAuthFailed, "agent token", err)
	}
	if a.Disabled {
		return nil, errf(CodeAuthFailed, "agent %d disabled", a.ID)
	}
	return s.loginAgent(a), nil
}

// IssueAgentToken creates a login token for an agent (admin API). Only its
// hash is stored; the token is returned once.
func (s *Service) IssueAgentToken(ctx context.Context, agentID int64) (string, time.Time, error) {
	if _, err := s.st.AgentByID(ctx, agentID); err != nil {
		return "", time.Time{}, lookupErr(CodeNotFound, "agent", err)
	}
	var b [32]byte
	_, _ = rand.Read(b[:])
	tok := "avsa_" + base64.RawURLEncoding.EncodeToString(b[:])
	exp := s.now().Add(s.cfg.AgentTokenTTL)
	if err := s.st.CreateAgentToken(ctx, agentID, hashToken(tok), exp); err != nil {
		return "", time.Time{}, internal("issue agent token", err)
	}
	return tok, exp, nil
}

func hashToken(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:])
}

func (s *Service) loginAgent(rec *store.Agent) *AgentSession {
	s.mu.Lock()
	a := s.agents[rec.ID]
	if a == nil {
		a = &agentState{calls: map[int64]bool{}, idleSince: s.now()}
		s.agents[rec.ID] = a
	}
	a.rec = rec
	a.maxCalls = rec.MaxCalls
	if a.maxCalls <= 0 {
		a.maxCalls = s.cfg.DefaultMaxCalls
	}
	if a.status == "" || a.status == StatusOffline {
		a.status = StatusOnline
		a.idleSince = s.now()
	}
	sess := &AgentSession{AgentID: rec.ID, TenantID: rec.TenantID, Username: rec.Username, NickName: rec.NickName,
		Avatar: rec.Avatar, GroupIDs: rec.GroupIDs, MaxCalls: a.maxCalls, Status: a.status}
	s.agentMetricsLocked()
	s.dispatchLocked(rec.TenantID)
	s.mu.Unlock()
	if s.ice != nil {
		sess.ICEServers = s.ice("agent-" + strconv.FormatInt(rec.ID, 10))
	}
	return sess
}

// SetAgentStatus changes an agent's status. Going offline ends the agent's
// calls: a ringing call counts as not answered, a connected call is hung
// up. The signaling layer sets offline when the console disconnects.
func (s *Service) SetAgentStatus(ctx context.Context, agentID int64, status string) error {
	switch status {
	case StatusOnline, StatusAway, StatusBusy, StatusOffline:
	default:
		return errf(CodeBadRequest, "unknown agent status %q", status)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.agents[agentID]
	if a == nil {
		if status == StatusOffline {
			return nil
		}
		return errf(CodeNotFound, "agent %d is not logged in", agentID)
	}
	if status == StatusOnline && a.status != StatusOnline {
		a.idleSince = s.now()
		a.missed = 0
	}
	a.status = status
	if status == StatusOffline {
		for id := range a.calls {
			c := s.calls[id]
			switch {
			case c == nil:
				delete(a.calls, id)
			case c.ringing == agentID:
				s.noAnswerLocked(c, "agent_offline")
			case c.agent == agentID:
				s.endLocked(c, ResultAnswered, RoleAgent)
			}
		}
	}
	s.agentMetricsLocked()
	s.dispatchLocked(a.rec.TenantID)
	return nil
}

// AgentStatus returns an agent's live status ("offline" if not logged in).
func (s *Service) AgentStatus(agentID int64) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := s.agents[agentID]; a != nil {
		return a.liveStatus()
	}
	return StatusOffline
}

// ReloadAgent refreshes a logged-in agent's profile, groups and limit
// after the admin API changed them.
func (s *Service) ReloadAgent(ctx context.Context, agentID int64) error {
	rec, err := s.st.AgentByID(ctx, agentID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return internal("reload agent", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.agents[agentID]
	if a == nil {
		return nil
	}
	if rec == nil {
		rec = a.rec
		rec.Disabled = true
	}
	a.rec = rec
	a.maxCalls = rec.MaxCalls
	if a.maxCalls <= 0 {
		a.maxCalls = s.cfg.DefaultMaxCalls
	}
	s.dispatchLocked(rec.TenantID)
	return nil
}

const pbkdf2Iter = 600000

// HashPassword returns a salted PBKDF2-SHA256 hash of password for
// store.Agent.PasswordHash.
func HashPassword(password string) (string, error) { return hashPasswordIter(password, pbkdf2Iter) }

func hashPasswordIter(password string, iter int) (string, error) {
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	key, err := pbkdf2.Key(sha256.New, password, salt, iter, 32)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return fmt.Sprintf("pbkdf2-sha256$%d$%s$%s", iter, base64.RawStdEncoding.EncodeToString(salt),
		base64.RawStdEncoding.EncodeToString(key)), nil
}

// CheckPassword compares password with a HashPassword hash in constant time.
func CheckPassword(hash, password string) bool {
	parts := strings.Split(hash, "$")
	if len(parts) != 4 || parts[0] != "pbkdf2-sha256" {
		return false
	}
	iter, err := strconv.Atoi(parts[1])
	if err != nil || iter < 1 || iter > 10_000_000 {
		return false
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[2])
	want, err2 := base64.RawStdEncoding.DecodeString(parts[3])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false
	}
	got, err := pbkdf2.Key(sha256.New, password, salt, iter, len(want))
	return err == nil && subtle.ConstantTimeCompare(got, want) == 1
}

// lookupErr maps a store lookup failure to code when the row is missing,
// and to internal otherwise.
func lookupErr(code, what string, err error) *Error {
	if errors.Is(err, store.ErrNotFound) {
		return newErr(code, fmt.Errorf("%s: %w", what, err))
	}
	return internal(what, err)
}
