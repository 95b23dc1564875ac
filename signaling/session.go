package signaling

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrSessionEnded is returned by Push on a session that has ended.
var ErrSessionEnded = errors.New("signaling: session ended")

// Session is one client's signaling session. It starts with a socket, gets
// a Party when the client authenticates, and from then on outlives its
// socket for the resume grace so the client can reconnect and keep its
// place in the queue or its call.
type Session struct {
	srv *Server
	id  string

	mu        sync.Mutex
	party     Party
	authed    bool
	token     string
	conn      *conn // nil while detached
	detachGen uint64
	timer     *time.Timer
	ended     bool
	state     any
	seq       uint64
	ring      pushRing
	room      string // media room this session may join; "" = none
	voiceOnly bool

	// mediaMu serialises media operations, which may wait on the SFU; it
	// is taken before mu, never while holding it, and never by Push.
	mediaMu sync.Mutex
	media   *mediaBinding
}

func newSession(srv *Server) *Session {
	return &Session{srv: srv, id: randomHex(12), ring: newPushRing(srv.cfg.ResumeBuffer)}
}

// ID is a random identifier for logs; it is not a credential.
func (s *Session) ID() string { return s.id }

// Party returns the authenticated party; ok is false before authentication.
func (s *Session) Party() (p Party, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.party, s.authed
}

func (s *Session) authenticated() bool {
	_, ok := s.Party()
	return ok
}

// State returns what the Handler stored with SetState.
func (s *Session) State() any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// SetState stores the Handler's per-session value (for example the
// business layer's session object); signaling never looks inside.
func (s *Session) SetState(v any) {
	s.mu.Lock()
	s.state = v
	s.mu.Unlock()
}

// Authenticate binds the session to p. From then on the session receives
// pushes for p, and the reply to the current request carries the resume
// token. Authenticating again as the same party is a no-op; as another
// party it fails with already_authenticated.
func (s *Session) Authenticate(p Party) error {
	if p.Role != RoleCustomer && p.Role != RoleAgent {
		return fmt.Errorf("signaling: authenticate: unknown role %q", p.Role)
	}
	srv := s.srv
	srv.mu.Lock()
	defer srv.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return ErrSessionEnded
	}
	if s.authed {
		if s.party == p {
			return nil
		}
		return Errorf(CodeAlreadyAuthenticated, "this connection is already signed in as another party")
	}
	s.party, s.authed, s.token = p, true, randomToken()
	srv.sessions[s.token] = s
	set := srv.parties[p]
	if set == nil {
		set = make(map[*Session]struct{})
		srv.parties[p] = set
	}
	set[s] = struct{}{}
	srv.metrics.sessions.Inc()
	return nil
}

// infoLocked is the session block of an auth or resume reply; s.mu must be
// held.
func (s *Session) infoLocked() *SessionInfo {
	return &SessionInfo{
		ID:           s.id,
		Role:         s.party.Role,
		PartyID:      s.party.ID,
		ResumeToken:  s.token,
		GraceSeconds: int(s.srv.cfg.ResumeGrace / time.Second),
		LastSeq:      s.seq,
	}
}

// Push sends a server event to this session: at once if it is connected,
// on resume otherwise (the last resume_buffer pushes are kept). It never
// blocks on the network.
func (s *Session) Push(typ string, data any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return ErrSessionEnded
	}
	b, err := encodePush(typ, s.seq+1, data)
	if err != nil {
		return err
	}
	s.seq++
	s.ring.add(s.seq, b)
	if s.conn != nil {
		s.conn.send(b, typ)
	}
	return nil
}

// Push sends a server event to every live session of p and returns how
// many sessions took it (connected or within their grace).
func (srv *Server) Push(p Party, typ string, data any) int {
	n := 0
	for _, s := range srv.sessionsOf(p) {
		if s.Push(typ, data) == nil {
			n++
		}
	}
	return n
}

func (srv *Server) sessionsOf(p Party) []*Session {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	set := srv.parties[p]
	out := make([]*Session, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	return out
}

// detach is called when c's socket is gone. An authenticated session
// starts its grace; an anonymous one simply ends.
func (s *Session) detach(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != c || s.ended {
		return
	}
	s.conn = nil
	if !s.authed {
		s.ended = true
		return
	}
	s.detachGen++
	gen := s.detachGen
	srv := s.srv
	s.timer = time.AfterFunc(srv.cfg.ResumeGrace, func() {
		srv.goSafe(func() { srv.expire(s, gen) })
	})
}

func (srv *Server) expire(s *Session, gen uint64) {
	s.mu.Lock()
	stale := s.conn != nil || s.detachGen != gen || s.ended
	s.mu.Unlock()
	if !stale {
		srv.endSession(s, EndGraceExpired)
	}
}

// endSession ends s for good: it forgets the resume token, closes media and
// tells the Handler. It is idempotent.
func (srv *Server) endSession(s *Session, reason EndReason) {
	srv.mu.Lock()
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		srv.mu.Unlock()
		return
	}
	s.ended = true
	if s.timer != nil {
		s.timer.Stop()
	}
	authed, p, token := s.authed, s.party, s.token
	s.conn = nil
	s.mu.Unlock()
	others := 0
	if authed {
		if srv.sessions[token] == s {
			delete(srv.sessions, token)
		}
		if set := srv.parties[p]; set != nil {
			delete(set, s)
			others = len(set)
			if others == 0 {
				delete(srv.parties, p)
			}
		}
		srv.metrics.sessions.Dec()
	}
	srv.mu.Unlock()

	s.closeMedia()
	if !authed {
		return
	}
	srv.log.Info("session ended", "session", s.id, "role", p.Role, "party", p.ID, "reason", reason)
	hs := srv.handler.Load()
	if hs == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), srv.cfg.RequestTimeout)
	defer cancel()
	hs.h.SessionEnded(ctx, s, reason, others)
}

// resume moves the session named by token onto c, rotating the token, and
// queues the reply followed by the pushes after lastSeq. Both are queued
// here under the session lock so no new push can slip in between.
func (srv *Server) resume(c *conn, id []byte, token string, lastSeq uint64) (*Session, error) {
	srv.mu.Lock()
	s := srv.sessions[token]
	if s == nil {
		srv.mu.Unlock()
		return nil, Errorf(CodeResumeFailed, "unknown or expired resume token; authenticate again")
	}
	newToken := randomToken()
	delete(srv.sessions, token)
	srv.sessions[newToken] = s
	s.mu.Lock()
	srv.mu.Unlock()
	defer s.mu.Unlock()

	old := s.conn
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	s.detachGen++
	s.token = newToken
	s.conn = c
	c.setSession(s)

	replay, gap := s.ring.since(lastSeq)
	if lastSeq > s.seq {
		// The client claims pushes we never sent; trust our numbering.
		replay, gap = nil, true
	}
	info := s.infoLocked()
	b, err := encodeReply(id, resumeReply{Replayed: len(replay), Gap: gap}, info)
	if err != nil {
		return nil, err
	}
	c.send(b, "reply")
	for _, p := range replay {
		c.send(p, "replay")
	}
	if old != nil && old != c {
		old.close(CloseSessionTakenOver, "session resumed on another connection", false)
	}
	return s, nil
}

type resumeReply struct {
	Replayed int  `json:"replayed"`
	Gap      bool `json:"gap"`
}

// pushRing keeps the most recent pushes with their sequence numbers.
type pushRing struct {
	seqs []uint64
	msgs [][]byte
	next int
	n    int
}

func newPushRing(size int) pushRing {
	return pushRing{seqs: make([]uint64, size), msgs: make([][]byte, size)}
}

func (r *pushRing) add(seq uint64, b []byte) {
	r.seqs[r.next], r.msgs[r.next] = seq, b
	r.next = (r.next + 1) % len(r.seqs)
	if r.n < len(r.seqs) {
		r.n++
	}
}

// since returns the kept pushes with seq > after, oldest first; gap is true
// when some pushes after `after` are no longer kept.
func (r *pushRing) since(after uint64) (out [][]byte, gap bool) {
	start := (r.next - r.n + len(r.seqs)) % len(r.seqs)
	for i := 0; i < r.n; i++ {
		j := (start + i) % len(r.seqs)
		if r.seqs[j] <= after {
			continue
		}
		if len(out) == 0 && r.seqs[j] > after+1 {
			gap = true
		}
		out = append(out, r.msgs[j])
	}
	return out, gap
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+).
	return hex.EncodeToString(b)
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// attachFresh binds a new anonymous session to its first connection.
func (s *Session) attachFresh(c *conn) {
	s.mu.Lock()
	s.conn = c
	s.mu.Unlock()
}
