// Command avs-server runs AVS: the SFU, TURN, signaling, the call center,
// WHIP/WHEP, webhooks and metrics in one process.
//
//	avs-server [-config config.toml]
//
// SIGINT or SIGTERM drains it: new calls are refused, running ones may go
// on for server.drain_timeout, then it exits 0.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/avs/avs/internal/app"
	"github.com/avs/avs/internal/config"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "avs-server:", err)
		os.Exit(1)
	}
}

func run() error {
	configPath := flag.String("config", "", "path of config.toml (empty: embedded defaults)")
	flag.Parse()
	cfg, err := config.Load(*configPath, os.Getenv)
	if err != nil {
		return err
	}
	level, _ := cfg.Server.Level()
	opts := &slog.HandlerOptions{Level: level}
	var handler slog.Handler = slog.NewTextHandler(os.Stderr, opts)
	if cfg.Server.LogFormat == "json" {
		handler = slog.NewJSONHandler(os.Stderr, opts)
	}
	log := slog.New(handler)
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(cfg.Server.GCPercent)
	}
	if cfg.GeneratedTURNSecret {
		log.Warn("turn.auth_secret is not set: TURN credentials are signed with a random secret valid for this process only")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a, err := app.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		log.Info("signal received, draining", "limit", cfg.Server.DrainTimeout.String())
	case err := <-a.Errors():
		log.Error("listener failed", "err", err)
	}
	stop() // a second signal now ends the process at once
	drainCtx, cancel := context.WithTimeout(context.Background(), cfg.Server.DrainTimeout)
	defer cancel()
	a.Shutdown(drainCtx)
	return nil
}
