package signaling

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// handle answers one request; it runs on the worker goroutine, so the
// requests of a connection are answered in order.
func (c *conn) handle(m inbound) {
	c.srv.inFlight.Add(1)
	defer c.srv.inFlight.Add(-1)
	defer func() {
		// A bug in a handler must cost one request, not the server.
		if r := recover(); r != nil {
			c.srv.log.Error("request handler panicked", "type", m.Type, "panic", fmt.Sprint(r))
			c.sendError(m.ID, Errorf(CodeInternal, "internal error"))
		}
	}()
	ctx, cancel := context.WithTimeout(c.ctx, c.srv.cfg.RequestTimeout)
	defer cancel()
	s := c.session()

	switch m.Type {
	case "ping":
		c.reply(m.ID, pingReply{Time: time.Now().UnixMilli()}, nil)
	case "session.resume":
		c.handleResume(m)
	case "session.close":
		c.handleClose(m, s)
	case "media.join", "media.offer", "media.answer", "media.candidate", "media.leave":
		data, err := c.handleMedia(ctx, s, m.Type, m.Data)
		c.finishRequest(ctx, m, data, err, nil)
	default:
		c.handleBusiness(ctx, m, s)
	}
}

type pingReply struct {
	Time int64 `json:"time"` // server clock, Unix milliseconds
}

func (c *conn) handleBusiness(ctx context.Context, m inbound, s *Session) {
	access := c.hs.routes[m.Type]
	p, authed := s.Party()
	switch {
	case access == Public:
	case !authed:
		c.sendError(m.ID, Errorf(CodeUnauthenticated, "%s needs an authenticated session", m.Type))
		return
	case access == CustomerOnly && p.Role != RoleCustomer,
		access == AgentOnly && p.Role != RoleAgent:
		c.sendError(m.ID, Errorf(CodeForbidden, "%s is not allowed for role %s", m.Type, p.Role))
		return
	}
	req := &Request{Type: m.Type, Data: m.Data, Session: s, RemoteAddr: c.addr, Draining: c.srv.Draining()}
	data, err := c.hs.h.Handle(ctx, req)
	var info *SessionInfo
	if !authed && err == nil {
		s.mu.Lock()
		if s.authed {
			info = s.infoLocked()
		}
		s.mu.Unlock()
	}
	c.finishRequest(ctx, m, data, err, info)
}

// finishRequest sends the reply or the error for m.
func (c *conn) finishRequest(ctx context.Context, m inbound, data any, err error, info *SessionInfo) {
	if err != nil {
		c.sendError(m.ID, c.clientError(ctx, m.Type, err))
		return
	}
	c.reply(m.ID, data, info)
}

func (c *conn) reply(id json.RawMessage, data any, info *SessionInfo) {
	b, err := encodeReply(id, data, info)
	if err != nil {
		c.srv.log.Error("cannot encode reply", "err", err)
		c.sendError(id, Errorf(CodeInternal, "internal error"))
		return
	}
	c.send(b, "reply")
}

// clientError decides what the client sees for err.
func (c *conn) clientError(ctx context.Context, typ string, err error) *Error {
	if e, ok := asError(err); ok {
		return e
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil:
		return Errorf(CodeTimeout, "%s took too long", typ)
	case errors.Is(err, ErrSessionEnded):
		return Errorf(CodeResumeFailed, "the session has ended")
	}
	c.srv.log.Error("request failed", "type", typ, "err", err)
	return Errorf(CodeInternal, "internal error")
}

type resumeData struct {
	Token   string `json:"resumeToken"`
	LastSeq uint64 `json:"lastSeq"`
}

func (c *conn) handleResume(m inbound) {
	var d resumeData
	if err := decodeData(m.Type, m.Data, &d); err != nil {
		c.sendError(m.ID, c.clientError(c.ctx, m.Type, err))
		return
	}
	if c.session().authenticated() {
		c.sendError(m.ID, Errorf(CodeAlreadyAuthenticated, "this connection already has a session"))
		return
	}
	fresh := c.session()
	s, err := c.srv.resume(c, m.ID, d.Token, d.LastSeq)
	if err != nil {
		c.srv.metrics.resumes.WithLabelValues("failed").Inc()
		c.sendError(m.ID, c.clientError(c.ctx, m.Type, err))
		return
	}
	c.srv.metrics.resumes.WithLabelValues("ok").Inc()
	// The anonymous session this socket started with is no longer used.
	fresh.mu.Lock()
	fresh.ended, fresh.conn = true, nil
	fresh.mu.Unlock()
	p, _ := s.Party()
	c.srv.log.Info("session resumed", "session", s.id, "role", p.Role, "party", p.ID, "addr", c.addr)
}

func (c *conn) handleClose(m inbound, s *Session) {
	c.reply(m.ID, nil, nil)
	c.srv.endSession(s, EndClientClosed)
	c.close(1000, "session closed", true)
}
