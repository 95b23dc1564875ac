package signaling

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
)

// Params are the dependencies of a Server.
type Params struct {
	Config     Config
	Logger     *slog.Logger          // nil: discard
	Registerer prometheus.Registerer // nil: metrics are not exported
	Media      Media                 // nil: media.* requests fail with media_failed
	// Handler may be nil here and set later with SetHandler, because the
	// business layer usually needs the Server as its notifier first.
	Handler Handler
}

// Server accepts signaling WebSockets. Its zero value is not usable; call
// New.
type Server struct {
	cfg      Config
	log      *slog.Logger
	media    Media
	metrics  *metrics
	upgrader websocket.Upgrader

	handler atomic.Pointer[handlerState]

	// ctx ends when the server closes; it is the parent of every
	// connection's context.
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	closed   bool
	draining bool
	wg       sync.WaitGroup // every goroutine the server starts
	conns    map[*conn]struct{}
	perAddr  map[string]int
	sessions map[string]*Session             // authenticated, by resume token
	parties  map[Party]map[*Session]struct{} // live sessions by party
	idle     chan struct{}                   // closed and replaced when media sessions reach 0
	inMedia  int
	inFlight atomic.Int64 // requests being handled, whose reply is still to be sent
}

type handlerState struct {
	h      Handler
	routes map[string]Access
}

// New builds a Server from validated parameters.
func New(p Params) (*Server, error) {
	if err := p.Config.Validate(); err != nil {
		return nil, fmt.Errorf("signaling: %w", err)
	}
	m, err := newMetrics(p.Registerer)
	if err != nil {
		return nil, err
	}
	log := p.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := &Server{
		cfg:      p.Config,
		log:      log.With("component", "signaling"),
		media:    p.Media,
		metrics:  m,
		ctx:      ctx,
		cancel:   cancel,
		conns:    make(map[*conn]struct{}),
		perAddr:  make(map[string]int),
		sessions: make(map[string]*Session),
		parties:  make(map[Party]map[*Session]struct{}),
		idle:     make(chan struct{}),
	}
	srv.upgrader = websocket.Upgrader{
		ReadBufferSize:  4096,
		WriteBufferSize: 4096,
		CheckOrigin:     srv.checkOrigin,
	}
	if p.Handler != nil {
		if err := srv.SetHandler(p.Handler); err != nil {
			cancel()
			return nil, err
		}
	}
	return srv, nil
}

// transportTypes are answered by the transport itself.
var transportTypes = map[string]bool{
	"ping": true, "session.resume": true, "session.close": true,
	"media.join": true, "media.offer": true, "media.answer": true,
	"media.candidate": true, "media.leave": true,
}

// SetHandler installs the business handler. Until it is set, upgrades are
// refused with 503.
func (srv *Server) SetHandler(h Handler) error {
	routes := make(map[string]Access)
	for _, r := range h.Routes() {
		if transportTypes[r.Type] {
			return fmt.Errorf("signaling: handler route %q is a transport type", r.Type)
		}
		if r.Type == "" || len(r.Type) > maxTypeBytes {
			return fmt.Errorf("signaling: handler route %q: bad type", r.Type)
		}
		routes[r.Type] = r.Access
	}
	srv.handler.Store(&handlerState{h: h, routes: routes})
	return nil
}

func (srv *Server) checkOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	for _, o := range srv.cfg.AllowedOrigins {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
	}
	u, err := url.Parse(origin)
	return err == nil && strings.EqualFold(u.Host, r.Host)
}

func (srv *Server) remoteAddr(r *http.Request) string {
	if h := srv.cfg.RealIPHeader; h != "" {
		if v := strings.TrimSpace(r.Header.Get(h)); v != "" {
			// X-Forwarded-For style lists: the last hop is the one our
			// trusted proxy appended.
			if i := strings.LastIndexByte(v, ','); i >= 0 {
				v = strings.TrimSpace(v[i+1:])
			}
			return v
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// ServeHTTP upgrades the request to a signaling WebSocket and serves it
// until it closes.
func (srv *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hs := srv.handler.Load()
	if hs == nil {
		srv.refuse(w, "not_ready", http.StatusServiceUnavailable)
		return
	}
	addr := srv.remoteAddr(r)
	if reason, status := srv.admit(addr); status != 0 {
		srv.refuse(w, reason, status)
		return
	}
	ws, err := srv.upgrader.Upgrade(w, r, nil)
	if err != nil {
		// The upgrader has already answered the client.
		srv.release(addr)
		srv.metrics.rejected.WithLabelValues("upgrade").Inc()
		srv.log.Debug("upgrade failed", "addr", addr, "err", err)
		return
	}
	c := newConn(srv, ws, addr, hs)
	if !srv.track(c) {
		srv.release(addr)
		_ = ws.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.CloseGoingAway, "server shutting down"), deadline(srv.cfg.WriteTimeout))
		_ = ws.Close()
		return
	}
	defer srv.untrack(c)
	c.serve()
}

func (srv *Server) refuse(w http.ResponseWriter, reason string, status int) {
	srv.metrics.rejected.WithLabelValues(reason).Inc()
	http.Error(w, reason, status)
}

// admit reserves a connection slot for addr.
func (srv *Server) admit(addr string) (string, int) {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	switch {
	case srv.closed:
		// While draining, sockets are still accepted: a client in a
		// running call must be able to resume.
		return "shutting_down", http.StatusServiceUnavailable
	case srv.perAddr[addr] >= srv.cfg.MaxConnectionsPerAddr:
		return "per_addr_limit", http.StatusTooManyRequests
	case srv.totalReserved() >= srv.cfg.MaxConnections:
		return "connection_limit", http.StatusServiceUnavailable
	}
	srv.perAddr[addr]++
	return "", 0
}

func (srv *Server) totalReserved() int {
	n := 0
	for _, v := range srv.perAddr {
		n += v
	}
	return n
}

func (srv *Server) release(addr string) {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.perAddr[addr] <= 1 {
		delete(srv.perAddr, addr)
	} else {
		srv.perAddr[addr]--
	}
}

// track registers a live connection; false once the server is closed.
func (srv *Server) track(c *conn) bool {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.closed {
		return false
	}
	srv.conns[c] = struct{}{}
	// The handler goroutine is http.Server's, but Close must still wait for
	// it to finish its cleanup, so it is counted here.
	srv.wg.Add(1)
	srv.metrics.connections.Inc()
	return true
}

func (srv *Server) untrack(c *conn) {
	srv.mu.Lock()
	delete(srv.conns, c)
	srv.mu.Unlock()
	srv.release(c.addr)
	srv.metrics.connections.Dec()
	srv.wg.Done()
}

// goSafe starts fn on a goroutine the server owns, unless it is closed.
func (srv *Server) goSafe(fn func()) bool {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.closed {
		return false
	}
	srv.wg.Add(1)
	go func() {
		defer srv.wg.Done()
		fn()
	}()
	return true
}

// Draining reports whether Shutdown has begun.
func (srv *Server) Draining() bool {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	return srv.draining || srv.closed
}

// Shutdown drains the server: new connections are refused and handlers see
// Request.Draining, so no new call starts. It waits until no session has
// media open (running calls have finished) or ctx ends, then closes every
// socket with 1001 "going away", ends every session with EndShutdown and
// waits for the server's goroutines. It returns ctx's error if the wait was
// cut short.
func (srv *Server) Shutdown(ctx context.Context) error {
	srv.mu.Lock()
	srv.draining = true
	srv.mu.Unlock()
	var waitErr error
wait:
	for {
		srv.mu.Lock()
		n, idle := srv.inMedia, srv.idle
		srv.mu.Unlock()
		if n == 0 {
			break
		}
		select {
		case <-idle:
		case <-ctx.Done():
			waitErr = ctx.Err()
			break wait
		}
	}
	// Every request gets its one reply: the last hang-up of a drain is
	// still being handled when the media count reaches zero.
	if waitErr == nil {
		waitErr = srv.waitRequests(ctx)
	}
	srv.closeAll(websocket.CloseGoingAway, "server shutting down")
	return waitErr
}

// waitRequests waits until no request is being handled. Requests are short
// (bounded by request_timeout), so polling costs little and only on drain.
func (srv *Server) waitRequests(ctx context.Context) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for srv.inFlight.Load() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// Close closes every socket with 1001, ends every session and waits for
// the server's goroutines. It is safe to call more than once.
func (srv *Server) Close() error {
	srv.closeAll(websocket.CloseGoingAway, "server closing")
	return nil
}

func (srv *Server) closeAll(code int, reason string) {
	srv.mu.Lock()
	if srv.closed {
		srv.mu.Unlock()
		srv.wg.Wait()
		return
	}
	srv.closed = true
	srv.draining = true
	conns := make([]*conn, 0, len(srv.conns))
	for c := range srv.conns {
		conns = append(conns, c)
	}
	sessions := make([]*Session, 0, len(srv.sessions))
	for _, ss := range srv.sessions {
		sessions = append(sessions, ss)
	}
	srv.mu.Unlock()

	for _, c := range conns {
		// Flush so the last pushes (call ended, ...) reach the client; the
		// write timeout bounds the wait on a client that does not read.
		c.close(code, reason, true)
	}
	for _, ss := range sessions {
		srv.endSession(ss, EndShutdown)
	}
	srv.wg.Wait()
	srv.cancel()
}
