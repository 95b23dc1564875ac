// Package app assembles avs-server from its components: the store, the
// SFU, TURN, the call center, signaling, WHIP/WHEP, webhooks, the admin
// API, health checks and metrics. It owns their lifecycle: New starts
// everything, Shutdown drains and stops it in order.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/avs/avs/admin"
	"github.com/avs/avs/callcenter"
	"github.com/avs/avs/internal/config"
	"github.com/avs/avs/sfu"
	"github.com/avs/avs/signaling"
	"github.com/avs/avs/store"
	"github.com/avs/avs/turn"
	"github.com/avs/avs/webhook"
	"github.com/avs/avs/whip"
)

// App is a running avs-server.
type App struct {
	cfg config.Config
	log *slog.Logger
	reg *prometheus.Registry

	store     *store.Store
	sfu       *sfu.SFU
	turn      *turn.Server
	deliverer *webhook.Deliverer
	calls     *callcenter.Service
	signaling *signaling.Server
	whip      *whip.Handler

	httpServer    *http.Server
	httpLn        net.Listener
	metricsServer *http.Server
	metricsLn     net.Listener
	serveErr      chan error

	draining atomic.Bool
	closers  []func()
}

// New starts every component and the listeners. On error, whatever was
// started is stopped again.
func New(ctx context.Context, cfg config.Config, log *slog.Logger) (_ *App, err error) {
	a := &App{cfg: cfg, log: log, reg: prometheus.NewRegistry(), serveErr: make(chan error, 2)}
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	defer func() {
		if err != nil {
			a.closeAll()
		}
	}()
	if err := a.startMedia(); err != nil {
		return nil, err
	}
	if err := a.startCallCenter(ctx); err != nil {
		return nil, err
	}
	if err := a.listen(); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *App) startMedia() error {
	var err error
	a.sfu, err = sfu.New(sfu.Params{Config: a.cfg.SFU, Logger: a.log, Registerer: a.reg})
	if err != nil {
		return fmt.Errorf("sfu: %w", err)
	}
	a.closers = append(a.closers, func() { _ = a.sfu.Close() })
	if a.cfg.TURN.Enabled {
		a.turn, err = turn.New(turn.Params{
			Config: a.cfg.TURN, Logger: a.log.With("component", "turn"), Registerer: a.reg,
			AllowedPeers: []netip.AddrPort{sfuPeer(a.sfu.UDPAddr())},
		})
		if err != nil {
			return fmt.Errorf("turn: %w", err)
		}
		a.closers = append(a.closers, func() { _ = a.turn.Close() })
	}
	a.whip, err = whip.New(whip.Params{Config: a.cfg.WHIP, SFU: a.sfu, Logger: a.log, ICEServers: a.whipICEServers})
	if err != nil {
		return fmt.Errorf("whip: %w", err)
	}
	return nil
}

func (a *App) startCallCenter(ctx context.Context) error {
	var err error
	a.store, err = store.Open(ctx, a.cfg.Store)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	a.closers = append(a.closers, func() { _ = a.store.Close() })
	a.deliverer, err = webhook.New(webhook.Params{Config: a.cfg.Webhook, Store: a.store, Logger: a.log.With("component", "webhook"), Registerer: a.reg})
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	a.deliverer.Start()
	a.closers = append(a.closers, a.deliverer.Close)

	a.signaling, err = signaling.New(signaling.Params{Config: a.cfg.Signaling, Logger: a.log.With("component", "signaling"), Registerer: a.reg, Media: media{a.sfu}})
	if err != nil {
		return fmt.Errorf("signaling: %w", err)
	}
	a.closers = append(a.closers, func() { _ = a.signaling.Close() })
	flow := signaling.NewCallFlow(a.signaling)
	a.calls, err = callcenter.New(callcenter.Params{
		Config: a.cfg.CallCenter, Store: a.store, Logger: a.log.With("component", "callcenter"), Registerer: a.reg,
		Rooms: a.sfu, Notifier: flow, ICEServers: a.iceServers, OnOutbox: a.deliverer.Notify,
	})
	if err != nil {
		return fmt.Errorf("callcenter: %w", err)
	}
	a.closers = append(a.closers, a.calls.Close)
	if err := flow.Attach(a.calls); err != nil {
		return fmt.Errorf("signaling: %w", err)
	}
	return nil
}

// sfuPeer is the SFU's media address as the TURN peer filter must allow
// it: the filter refuses this host's own addresses, and the media port on
// them is the one exception relayed clients need. An SFU bound to one
// address (loopback included) is allowed there alone.
func sfuPeer(udp *net.UDPAddr) netip.AddrPort {
	ap := udp.AddrPort()
	if ap.Addr().IsUnspecified() {
		return netip.AddrPortFrom(netip.IPv4Unspecified(), ap.Port())
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// iceServers hands a customer or agent the TURN server with fresh
// time-limited credentials.
func (a *App) iceServers(userKey string) []callcenter.ICEServer {
	if a.turn == nil || a.cfg.TURN.AuthSecret == "" {
		return nil
	}
	s := a.turn.ICEServer(userKey, time.Now())
	return []callcenter.ICEServer{{URLs: s.URLs, Username: s.Username, Credential: s.Credential}}
}

func (a *App) whipICEServers(sessionID string) []whip.ICEServer {
	if a.turn == nil || a.cfg.TURN.AuthSecret == "" {
		return nil
	}
	s := a.turn.ICEServer("whip-"+sessionID, time.Now())
	return []whip.ICEServer{{URLs: s.URLs, Username: s.Username, Credential: s.Credential}}
}

func (a *App) listen() error {
	var err error
	a.httpLn, err = net.Listen("tcp", a.cfg.Server.HTTPListen)
	if err != nil {
		return fmt.Errorf("server.http_listen: %w", err)
	}
	a.httpServer = &http.Server{Handler: a.routes(), ReadHeaderTimeout: 10 * time.Second}
	go a.serve(a.httpServer, a.httpLn)
	if a.cfg.Server.MetricsListen != "" {
		a.metricsLn, err = net.Listen("tcp", a.cfg.Server.MetricsListen)
		if err != nil {
			return fmt.Errorf("server.metrics_listen: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{Registry: a.reg}))
		// Profiles on the operator's port only, for measuring a live server.
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		a.metricsServer = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go a.serve(a.metricsServer, a.metricsLn)
	}
	a.log.Info("avs-server started", "http", a.httpLn.Addr().String(), "metrics", a.MetricsAddr(),
		"media_udp", a.sfu.UDPAddr().String())
	return nil
}

// serve runs one HTTP server; Shutdown stops it, and only an unexpected
// end is reported.
func (a *App) serve(s *http.Server, ln net.Listener) {
	if err := s.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		a.serveErr <- err
	}
}

func (a *App) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if a.draining.Load() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle("/ws", a.signaling)
	if a.cfg.WHIP.Enabled {
		mux.Handle("/whip/", a.whip)
		mux.Handle("/whep/", a.whip)
	}
	if a.cfg.Admin.Token != "" {
		h, err := admin.New(admin.Params{Config: a.cfg.Admin, Store: a.store, Service: a.calls, Logger: a.log.With("component", "admin"), OnRetry: a.deliverer.Notify})
		if err == nil {
			mux.Handle("/admin/", h)
		} else {
			a.log.Error("admin API disabled", "err", err)
		}
	}
	return mux
}

// Errors reports a listener that failed while serving.
func (a *App) Errors() <-chan error { return a.serveErr }

// HTTPAddr is the bound address of the HTTP listener.
func (a *App) HTTPAddr() string { return a.httpLn.Addr().String() }

// MetricsAddr is the bound address of the metrics listener, or "".
func (a *App) MetricsAddr() string {
	if a.metricsLn == nil {
		return ""
	}
	return a.metricsLn.Addr().String()
}

// SFU gives tests and tools the media plane.
func (a *App) SFU() *sfu.SFU { return a.sfu }

// TURN is the built-in TURN server, or nil when disabled.
func (a *App) TURN() *turn.Server { return a.turn }

// Store gives tests the database.
func (a *App) Store() *store.Store { return a.store }

// Shutdown refuses new calls at once, lets running calls and media
// sessions go on until they end or ctx expires, then stops everything.
func (a *App) Shutdown(ctx context.Context) {
	a.draining.Store(true)
	a.calls.SetDraining(true)
	a.whip.Drain()
	a.sfu.Drain()
	a.log.Info("draining", "calls", a.calls.ActiveCalls(), "whip_sessions", a.whip.Sessions())
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for a.calls.ActiveCalls() > 0 || a.whip.Sessions() > 0 {
		select {
		case <-ctx.Done():
			a.log.Warn("drain limit reached", "calls", a.calls.ActiveCalls(), "whip_sessions", a.whip.Sessions())
			a.stop()
			return
		case <-tick.C:
		}
	}
	// The calls are over; their last events (call.ended) go out before the
	// sockets close, and so do the replies to the last requests.
	if err := a.calls.FlushNotifications(ctx); err != nil {
		a.log.Warn("drain limit reached before the last events went out", "err", err)
	}
	if err := a.signaling.Shutdown(ctx); err != nil {
		a.log.Warn("signaling drain ended early", "err", err)
	}
	a.stop()
}

func (a *App) stop() {
	closeCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = a.httpServer.Shutdown(closeCtx)
	if a.metricsServer != nil {
		_ = a.metricsServer.Shutdown(closeCtx)
	}
	a.closeAll()
	a.log.Info("avs-server stopped")
}

// closeAll stops the components in the reverse order of their start.
func (a *App) closeAll() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
	a.closers = nil
}
