// Package config reads config.toml: one section per component, each
// decoded strictly (an unknown key stops the start), over the component's
// own defaults, then validated so that an error names the key at fault.
// Secrets may come from environment variables instead of the file.
package config

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/avs/avs/admin"
	"github.com/avs/avs/callcenter"
	"github.com/avs/avs/sfu"
	"github.com/avs/avs/signaling"
	"github.com/avs/avs/store"
	"github.com/avs/avs/turn"
	"github.com/avs/avs/webhook"
	"github.com/avs/avs/whip"
)

// Server is the [server] section: the process itself.
type Server struct {
	// HTTPListen serves signaling, WHIP/WHEP, the admin API and health checks.
	HTTPListen string `toml:"http_listen"`
	// MetricsListen serves Prometheus /metrics on its own address; empty disables it.
	MetricsListen string `toml:"metrics_listen"`
	// DrainTimeout is how long running calls may go on after SIGTERM.
	DrainTimeout time.Duration `toml:"drain_timeout"`
	// LogLevel is debug, info, warn or error; LogFormat is text or json.
	LogLevel  string `toml:"log_level"`
	LogFormat string `toml:"log_format"`
	// GCPercent is the garbage collector's target (Go's GOGC), unless the
	// GOGC environment variable is set. The forwarding path allocates
	// little, so a tighter target costs little CPU and saves memory.
	GCPercent int `toml:"gc_percent"`
}

// Config is the whole of config.toml.
type Config struct {
	Server     Server            `toml:"server"`
	SFU        sfu.Config        `toml:"sfu"`
	WHIP       whip.Config       `toml:"whip"`
	TURN       turn.Config       `toml:"turn"`
	Signaling  signaling.Config  `toml:"signaling"`
	CallCenter callcenter.Config `toml:"callcenter"`
	Store      store.Config      `toml:"store"`
	Webhook    webhook.Config    `toml:"webhook"`
	Admin      admin.Config      `toml:"admin"`

	// GeneratedTURNSecret tells that turn.auth_secret was made up at start.
	GeneratedTURNSecret bool `toml:"-"`
}

// Default is the configuration of a server started without a file.
func Default() Config {
	return Config{
		Server: Server{
			HTTPListen:    ":8080",
			MetricsListen: ":9090",
			DrainTimeout:  30 * time.Second,
			LogLevel:      "info",
			LogFormat:     "text",
			GCPercent:     50,
		},
		SFU:        sfu.DefaultConfig(),
		WHIP:       whip.DefaultConfig(),
		TURN:       turn.DefaultConfig(),
		Signaling:  signaling.DefaultConfig(),
		CallCenter: callcenter.DefaultConfig(),
		Store:      store.DefaultConfig(),
		Webhook:    webhook.DefaultConfig(),
		Admin:      admin.DefaultConfig(),
	}
}

// Load reads a file over the defaults; an empty path means defaults only.
// Environment variables (see Secrets) override the file.
func Load(path string, getenv func(string) string) (Config, error) {
	c := Default()
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return Config{}, fmt.Errorf("read config: %w", err)
		}
		if err := decode(data, &c); err != nil {
			return Config{}, fmt.Errorf("%s: %w", path, err)
		}
	}
	applyEnv(&c, getenv)
	c.ensureTURNSecret()
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// ensureTURNSecret gives a TURN server that has no credentials configured
// a random secret of its own, so that it is never an open relay and the
// embedded defaults still start. Credentials then hold for this process
// only; servers that share TURN need turn.auth_secret.
func (c *Config) ensureTURNSecret() {
	if !c.TURN.Enabled || c.TURN.AuthSecret != "" || len(c.TURN.StaticUsers) > 0 {
		return
	}
	c.TURN.AuthSecret = rand.Text()
	c.GeneratedTURNSecret = true
}

// Parse reads configuration text over the defaults, for tests that boot a
// whole server from a string.
func Parse(text string) (Config, error) {
	c := Default()
	if err := decode([]byte(text), &c); err != nil {
		return Config{}, err
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

func decode(data []byte, c *Config) error {
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(c)
	if err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) {
			return fmt.Errorf("line %d: %s", perr.Position.Line, perr.Message)
		}
		return err
	}
	if undecoded := md.Undecoded(); len(undecoded) > 0 {
		keys := make([]string, len(undecoded))
		for i, k := range undecoded {
			keys[i] = k.String()
		}
		return fmt.Errorf("unknown key %s", strings.Join(keys, ", "))
	}
	return nil
}

// Secrets lists the environment variables that override config.toml, so
// that secrets need not sit in a file.
var Secrets = []string{
	"AVS_TURN_AUTH_SECRET", "AVS_ADMIN_TOKEN", "AVS_WHIP_KEYS", "AVS_CALLCENTER_DEMO_SECRET",
}

func applyEnv(c *Config, getenv func(string) string) {
	if getenv == nil {
		return
	}
	if v := getenv("AVS_TURN_AUTH_SECRET"); v != "" {
		c.TURN.AuthSecret = v
	}
	if v := getenv("AVS_ADMIN_TOKEN"); v != "" {
		c.Admin.Token = v
	}
	if v := getenv("AVS_WHIP_KEYS"); v != "" {
		c.WHIP.Keys = strings.Split(v, ",")
	}
	if v := getenv("AVS_CALLCENTER_DEMO_SECRET"); v != "" {
		c.CallCenter.Demo.Secret = v
	}
}

// Validate checks every section.
func (c Config) Validate() error {
	if err := c.Server.validate(); err != nil {
		return err
	}
	sections := []interface{ Validate() error }{c.SFU, c.WHIP, c.Signaling, c.CallCenter, c.Store, c.Webhook, c.Admin}
	if c.TURN.Enabled {
		sections = append(sections, c.TURN) // a disabled TURN server needs no secret
	}
	for _, v := range sections {
		if err := v.Validate(); err != nil {
			return err
		}
	}
	return nil
}

func (s Server) validate() error {
	if _, _, err := net.SplitHostPort(s.HTTPListen); err != nil {
		return fmt.Errorf("server.http_listen: %q is not host:port", s.HTTPListen)
	}
	if s.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(s.MetricsListen); err != nil {
			return fmt.Errorf("server.metrics_listen: %q is not host:port", s.MetricsListen)
		}
	}
	if s.DrainTimeout < 0 {
		return fmt.Errorf("server.drain_timeout: must not be negative")
	}
	if _, err := s.Level(); err != nil {
		return err
	}
	if s.GCPercent < 10 || s.GCPercent > 1000 {
		return fmt.Errorf("server.gc_percent: %d is outside 10..1000", s.GCPercent)
	}
	if s.LogFormat != "text" && s.LogFormat != "json" {
		return fmt.Errorf("server.log_format: %q is neither text nor json", s.LogFormat)
	}
	return nil
}

// Level is the slog level of log_level.
func (s Server) Level() (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s.LogLevel)); err != nil {
		return 0, fmt.Errorf("server.log_level: %q is not debug, info, warn or error", s.LogLevel)
	}
	return l, nil
}
