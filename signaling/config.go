package signaling

import (
	"errors"
	"fmt"
	"time"
)

// Config is the [signaling] section of config.toml.
type Config struct {
	// MaxMessageBytes bounds one client message; larger ones are answered
	// with message_too_large and count as a violation.
	MaxMessageBytes int `toml:"max_message_bytes"`
	// HardMessageBytes is the frame size at which the connection is closed
	// at once (1009) instead of answered, so a client cannot make the server
	// read unbounded data.
	HardMessageBytes int `toml:"hard_message_bytes"`
	// RatePerSecond and RateBurst shape the token bucket of client messages
	// per connection.
	RatePerSecond float64 `toml:"rate_per_second"`
	RateBurst     int     `toml:"rate_burst"`
	// MaxViolations is how many limit violations a connection may commit
	// (refilled at one per ViolationDecay) before it is closed with 4008.
	MaxViolations  int           `toml:"max_violations"`
	ViolationDecay time.Duration `toml:"violation_decay"`
	// MaxConnections and MaxConnectionsPerAddr refuse new upgrades (503 and
	// 429) above these counts of open sockets.
	MaxConnections        int `toml:"max_connections"`
	MaxConnectionsPerAddr int `toml:"max_connections_per_addr"`
	// SendQueue bounds the outgoing messages waiting for one connection's
	// writer; a reader slower than that is disconnected (4009) and may
	// resume.
	SendQueue int `toml:"send_queue"`
	// RequestQueue bounds requests waiting to be handled per connection.
	RequestQueue int `toml:"request_queue"`
	// ResumeBuffer is how many recent pushes a session keeps for replay on
	// resume.
	ResumeBuffer int `toml:"resume_buffer"`
	// PingInterval is how often the server pings; PongTimeout is how long a
	// connection may stay silent (no pong, no message) before it is dead.
	PingInterval time.Duration `toml:"ping_interval"`
	PongTimeout  time.Duration `toml:"pong_timeout"`
	// WriteTimeout bounds one socket write.
	WriteTimeout time.Duration `toml:"write_timeout"`
	// AuthTimeout is how long a new connection may stay unauthenticated.
	AuthTimeout time.Duration `toml:"auth_timeout"`
	// ResumeGrace is how long a session outlives its socket.
	ResumeGrace time.Duration `toml:"resume_grace"`
	// RequestTimeout bounds the handling of one request.
	RequestTimeout time.Duration `toml:"request_timeout"`
	// AllowedOrigins lists the Origin values accepted besides the server's
	// own host; "*" accepts any. Requests without Origin (native clients)
	// are accepted.
	AllowedOrigins []string `toml:"allowed_origins"`
	// RealIPHeader names a header set by a trusted reverse proxy that
	// carries the client address (for example "X-Real-IP"); empty means the
	// socket's peer address is used.
	RealIPHeader string `toml:"real_ip_header"`
}

// DefaultConfig returns the defaults documented in docs/protocol.md.
func DefaultConfig() Config {
	return Config{
		MaxMessageBytes:       64 << 10,
		HardMessageBytes:      256 << 10,
		RatePerSecond:         20,
		RateBurst:             40,
		MaxViolations:         10,
		ViolationDecay:        10 * time.Second,
		MaxConnections:        10000,
		MaxConnectionsPerAddr: 64,
		SendQueue:             256,
		RequestQueue:          16,
		ResumeBuffer:          128,
		PingInterval:          15 * time.Second,
		PongTimeout:           45 * time.Second,
		WriteTimeout:          10 * time.Second,
		AuthTimeout:           20 * time.Second,
		ResumeGrace:           60 * time.Second,
		RequestTimeout:        15 * time.Second,
	}
}

// Validate reports every invalid key, named as in config.toml.
func (c Config) Validate() error {
	var errs []error
	positive := func(key string, v int) {
		if v <= 0 {
			errs = append(errs, fmt.Errorf("signaling.%s: must be > 0", key))
		}
	}
	positiveDur := func(key string, v time.Duration) {
		if v <= 0 {
			errs = append(errs, fmt.Errorf("signaling.%s: must be > 0", key))
		}
	}
	positive("max_message_bytes", c.MaxMessageBytes)
	if c.HardMessageBytes < c.MaxMessageBytes {
		errs = append(errs, fmt.Errorf("signaling.hard_message_bytes: must be >= max_message_bytes (%d)", c.MaxMessageBytes))
	}
	if c.RatePerSecond <= 0 {
		errs = append(errs, errors.New("signaling.rate_per_second: must be > 0"))
	}
	positive("rate_burst", c.RateBurst)
	positive("max_violations", c.MaxViolations)
	positiveDur("violation_decay", c.ViolationDecay)
	positive("max_connections", c.MaxConnections)
	positive("max_connections_per_addr", c.MaxConnectionsPerAddr)
	positive("send_queue", c.SendQueue)
	positive("request_queue", c.RequestQueue)
	positive("resume_buffer", c.ResumeBuffer)
	positiveDur("ping_interval", c.PingInterval)
	positiveDur("write_timeout", c.WriteTimeout)
	positiveDur("auth_timeout", c.AuthTimeout)
	positiveDur("resume_grace", c.ResumeGrace)
	positiveDur("request_timeout", c.RequestTimeout)
	if c.PongTimeout <= c.PingInterval {
		errs = append(errs, fmt.Errorf("signaling.pong_timeout: must be > ping_interval (%s)", c.PingInterval))
	}
	for i, o := range c.AllowedOrigins {
		if o == "" {
			errs = append(errs, fmt.Errorf("signaling.allowed_origins[%d]: must not be empty", i))
		}
	}
	return errors.Join(errs...)
}
