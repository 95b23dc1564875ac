package signaling

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// conn is one WebSocket. It has three goroutines: the reader (the HTTP
// handler's goroutine), the writer (the only one that writes frames, so a
// slow client never blocks anyone else) and the worker (handles requests in
// order). All three stop when the socket closes; serve waits for them.
type conn struct {
	srv  *Server
	ws   *websocket.Conn
	addr string
	hs   *handlerState

	ctx    context.Context // ends when the socket is gone
	cancel context.CancelFunc
	out    chan []byte
	reqs   chan inbound
	wg     sync.WaitGroup

	closeOnce   sync.Once
	closing     chan struct{} // closed when the server decides to close
	closeCode   int           // 0: the client went away, no close frame
	closeReason string
	flush       bool // send what is queued before the close frame

	sess atomic.Pointer[Session]

	// Only the reader touches the buckets.
	rate       bucket
	violations bucket
}

func newConn(srv *Server, ws *websocket.Conn, addr string, hs *handlerState) *conn {
	cfg := srv.cfg
	ctx, cancel := context.WithCancel(srv.ctx)
	now := time.Now()
	c := &conn{
		srv: srv, ws: ws, addr: addr, hs: hs,
		ctx: ctx, cancel: cancel,
		out:        make(chan []byte, cfg.SendQueue),
		reqs:       make(chan inbound, cfg.RequestQueue),
		closing:    make(chan struct{}),
		rate:       newBucket(cfg.RatePerSecond, float64(cfg.RateBurst), now),
		violations: newBucket(1/cfg.ViolationDecay.Seconds(), float64(cfg.MaxViolations), now),
	}
	c.sess.Store(newSession(srv))
	c.sess.Load().attachFresh(c)
	return c
}

func (c *conn) session() *Session     { return c.sess.Load() }
func (c *conn) setSession(s *Session) { c.sess.Store(s) }

// serve runs the connection to its end.
func (c *conn) serve() {
	cfg := c.srv.cfg
	c.ws.SetReadLimit(int64(cfg.HardMessageBytes))
	_ = c.ws.SetReadDeadline(time.Now().Add(cfg.PongTimeout))
	c.ws.SetPongHandler(func(string) error {
		return c.ws.SetReadDeadline(time.Now().Add(cfg.PongTimeout))
	})
	c.wg.Add(2)
	go func() { defer c.wg.Done(); c.writeLoop() }()
	go func() { defer c.wg.Done(); c.workLoop() }()

	c.srv.log.Debug("connection opened", "addr", c.addr)
	c.readLoop()

	c.close(0, "", false)
	c.cancel()
	c.wg.Wait()
	_ = c.ws.Close()
	s := c.session()
	s.detach(c)
	// closeCode is stable once closing is closed, which close above ensured.
	c.srv.log.Debug("connection closed", "addr", c.addr, "session", s.id, "code", c.closeCode, "reason", c.closeReason)
}

// close asks the writer to end the connection with code (0: no close
// frame). Only the first call counts; it never blocks.
func (c *conn) close(code int, reason string, flush bool) {
	c.closeOnce.Do(func() {
		c.closeCode, c.closeReason, c.flush = code, reason, flush
		close(c.closing)
	})
}

// send queues one encoded message. A full queue means the client does not
// read: rather than block the sender, the connection is dropped and the
// client may resume (pushes are replayed from the session's buffer).
func (c *conn) send(b []byte, typ string) bool {
	select {
	case <-c.closing:
		return false
	default:
	}
	select {
	case c.out <- b:
		c.srv.metrics.messages.WithLabelValues("out", typ).Inc()
		return true
	default:
		c.close(CloseSlowConsumer, "client is not reading its messages", false)
		return false
	}
}

func (c *conn) writeLoop() {
	cfg := c.srv.cfg
	ping := time.NewTicker(cfg.PingInterval)
	defer ping.Stop()
	auth := time.NewTimer(cfg.AuthTimeout)
	defer auth.Stop()
	for {
		select {
		case b := <-c.out:
			if !c.write(b) {
				return
			}
		case <-ping.C:
			if err := c.ws.WriteControl(websocket.PingMessage, nil, deadline(cfg.WriteTimeout)); err != nil {
				_ = c.ws.Close()
				return
			}
		case <-auth.C:
			if !c.session().authenticated() {
				c.close(CloseAuthTimeout, "authentication timeout", true)
			}
		case <-c.closing:
			c.finish()
			return
		}
	}
}

func (c *conn) write(b []byte) bool {
	_ = c.ws.SetWriteDeadline(deadline(c.srv.cfg.WriteTimeout))
	if err := c.ws.WriteMessage(websocket.TextMessage, b); err != nil {
		// The reader sees the closed socket and ends the connection.
		_ = c.ws.Close()
		return false
	}
	return true
}

// finish writes what must precede the close frame, the frame itself, and
// closes the socket so the reader returns.
func (c *conn) finish() {
	if c.closeCode == 0 {
		return
	}
	if c.flush {
	drain:
		for {
			select {
			case b := <-c.out:
				if !c.write(b) {
					return
				}
			default:
				break drain
			}
		}
	}
	c.srv.metrics.closes.WithLabelValues(strconv.Itoa(c.closeCode)).Inc()
	_ = c.ws.WriteControl(websocket.CloseMessage,
		websocket.FormatCloseMessage(c.closeCode, c.closeReason), deadline(c.srv.cfg.WriteTimeout))
	_ = c.ws.Close()
}

func (c *conn) readLoop() {
	cfg := c.srv.cfg
	for {
		mt, r, err := c.ws.NextReader()
		if err != nil {
			if errors.Is(err, websocket.ErrReadLimit) {
				c.srv.metrics.closes.WithLabelValues(strconv.Itoa(websocket.CloseMessageTooBig)).Inc()
			}
			return
		}
		_ = c.ws.SetReadDeadline(time.Now().Add(cfg.PongTimeout))
		b, err := io.ReadAll(io.LimitReader(r, int64(cfg.MaxMessageBytes)+1))
		if err != nil {
			return
		}
		if len(b) > cfg.MaxMessageBytes {
			// Drain the rest (bounded by the hard read limit) so the next
			// message can be read.
			if _, err := io.Copy(io.Discard, r); err != nil {
				return
			}
		}
		select {
		case <-c.closing:
			continue // closing: read only to notice the socket's end
		default:
		}
		c.receive(mt, b)
	}
}

// receive checks one message against the limits and queues it for the
// worker.
func (c *conn) receive(mt int, b []byte) {
	cfg := c.srv.cfg
	now := time.Now()
	if mt != websocket.TextMessage {
		c.violation(nil, Errorf(CodeBadRequest, "only text messages are accepted"), "binary", now)
		return
	}
	if len(b) > cfg.MaxMessageBytes {
		c.violation(nil, Errorf(CodeMessageTooLarge, "message larger than %d bytes", cfg.MaxMessageBytes), "oversized", now)
		return
	}
	if !c.rate.allow(now) {
		m, _ := decodeInbound(b)
		c.violation(m.ID, Errorf(CodeRateLimited, "too many messages; slow down"), "rate_limited", now)
		return
	}
	m, e := decodeInbound(b)
	if e != nil {
		c.violation(m.ID, e, "invalid", now)
		return
	}
	if !transportTypes[m.Type] {
		if _, ok := c.hs.routes[m.Type]; !ok {
			c.violation(m.ID, Errorf(CodeUnknownType, "unknown message type %q", m.Type), "unknown", now)
			return
		}
	}
	c.srv.metrics.messages.WithLabelValues("in", m.Type).Inc()
	select {
	case c.reqs <- m:
	default:
		c.violation(m.ID, Errorf(CodeBusy, "too many requests in flight"), m.Type, now)
	}
}

// violation answers a message that broke a rule; a connection that keeps
// breaking them is closed.
func (c *conn) violation(id json.RawMessage, e *Error, label string, now time.Time) {
	if label != "" && e.Code != CodeBusy {
		c.srv.metrics.messages.WithLabelValues("in", label).Inc()
	}
	c.sendError(id, e)
	if !c.violations.allow(now) {
		c.srv.log.Info("closing connection after repeated violations", "addr", c.addr, "code", e.Code)
		c.close(CloseTooManyErrors, "too many invalid or excess messages", true)
	}
}

func (c *conn) sendError(id json.RawMessage, e *Error) {
	c.srv.metrics.errors.WithLabelValues(e.Code).Inc()
	c.send(encodeError(id, e), "error")
}

func (c *conn) workLoop() {
	for {
		select {
		case <-c.closing:
			return
		case <-c.ctx.Done():
			return
		case m := <-c.reqs:
			c.handle(m)
		}
	}
}

func deadline(d time.Duration) time.Time { return time.Now().Add(d) }

// bucket is a token bucket: rate tokens per second up to burst.
type bucket struct {
	rate, burst, tokens float64
	last                time.Time
}

func newBucket(rate, burst float64, now time.Time) bucket {
	return bucket{rate: rate, burst: burst, tokens: burst, last: now}
}

func (b *bucket) allow(now time.Time) bool {
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = min(b.burst, b.tokens+el*b.rate)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
