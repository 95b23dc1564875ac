// Command avs-loadtest places concurrent 1:1 video calls on an avs-server
// through WHIP and WHEP and reports what the server did to them: calls up,
// setup time, server CPU and memory, loss, one-way latency through the
// server, and the NACKs and PLIs exchanged.
//
// Each call has two participants, each publishing looped VP8 or H.264 video
// and Opus audio from testdata/media at real-time pace and playing the
// other's media. Progress goes to stderr every few seconds; at the end a
// table and then one line of JSON go to stdout.
//
// Usage:
//
//	avs-loadtest -server http://127.0.0.1:8080 -token secret -calls 10 -duration 60s
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/avs/avs/internal/loadgen"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "avs-loadtest:", err)
		os.Exit(1)
	}
}

func run() error {
	var cfg loadgen.Config
	var bitrate string
	var verbose bool
	var cpuProfile string
	flag.StringVar(&cfg.ServerURL, "server", "http://127.0.0.1:8080", "base URL of the server's WHIP/WHEP endpoints")
	flag.StringVar(&cfg.Token, "token", defaultToken(os.Getenv), "bearer token for WHIP/WHEP (default $AVS_WHIP_TOKEN, else the first of the server's $AVS_WHIP_KEYS)")
	flag.StringVar(&cfg.MetricsURL, "metrics-url", "", "the server's Prometheus endpoint, e.g. http://127.0.0.1:9090/metrics: the time packets spent inside the server, and CPU and RSS when -server-pid is not given")
	flag.IntVar(&cfg.ServerPID, "server-pid", 0, "process ID of a server on this machine; CPU and RSS are read from /proc")
	flag.IntVar(&cfg.Calls, "calls", 10, "concurrent 1:1 calls (4 forwarded streams each, 2 with -voice-only)")
	flag.DurationVar(&cfg.Ramp, "ramp", 10*time.Second, "time over which calls are placed, evenly")
	flag.DurationVar(&cfg.Duration, "duration", 30*time.Second, "time all calls are held after the ramp")
	flag.DurationVar(&cfg.Interval, "interval", 5*time.Second, "time between progress lines")
	flag.StringVar(&cfg.Codec, "codec", "vp8", "video codec: vp8 or h264")
	flag.StringVar(&bitrate, "bitrate", "800k", "video bitrate (top layer with -simulcast); other than 800k needs ffmpeg once")
	flag.BoolVar(&cfg.VoiceOnly, "voice-only", false, "audio only")
	flag.BoolVar(&cfg.Simulcast, "simulcast", false, "publish three VP8 layers (f at -bitrate, h 320x240 250k, q 160x120 100k)")
	flag.BoolVar(&cfg.NACK, "nack", true, "players send NACKs for missing packets")
	flag.BoolVar(&cfg.TWCC, "twcc", true, "transport-wide congestion control: sequence numbers on sent media, feedback on received media, as browsers do")
	flag.StringVar(&cfg.MediaDir, "media", "testdata/media", "directory of the clips")
	flag.BoolVar(&verbose, "v", false, "debug logging")
	flag.StringVar(&cpuProfile, "cpuprofile", "", "write the generator's CPU profile to this file")
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", flag.Args())
	}
	kbps, err := parseKbps(bitrate)
	if err != nil {
		return err
	}
	cfg.Bitrate = kbps

	level := slog.LevelInfo
	if verbose {
		level = slog.LevelDebug
	}
	cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	cfg.Progress = os.Stderr

	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := loadgen.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if err := rep.WriteTable(os.Stdout); err != nil {
		return err
	}
	return rep.WriteJSON(os.Stdout)
}

// defaultToken lets a generator started beside a server share its
// environment: a server key is accepted as a bearer token as it is.
func defaultToken(getenv func(string) string) string {
	if t := getenv("AVS_WHIP_TOKEN"); t != "" {
		return t
	}
	first, _, _ := strings.Cut(getenv("AVS_WHIP_KEYS"), ",")
	return strings.TrimSpace(first)
}

// parseKbps reads a bitrate such as "800k", "1.5M" or "800" (kbit/s).
func parseKbps(s string) (int, error) {
	mult := 1.0
	switch {
	case strings.HasSuffix(s, "k"), strings.HasSuffix(s, "K"):
		s = s[:len(s)-1]
	case strings.HasSuffix(s, "M"), strings.HasSuffix(s, "m"):
		s, mult = s[:len(s)-1], 1000
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v <= 0 {
		return 0, errors.New("bitrate: want a number of kbit/s such as 800k or 1.5M")
	}
	return int(v * mult), nil
}
