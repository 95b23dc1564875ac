package whip

import (
	"fmt"
	"net/url"
	"time"
)

// Config is the [whip] section of config.toml.
type Config struct {
	// Enabled mounts /whip/ and /whep/.
	Enabled bool `toml:"enabled"`
	// Keys are accepted as bearer tokens as they are, and sign short-lived
	// tokens (see NewToken). Empty leaves the endpoints closed to everyone.
	Keys []string `toml:"keys"`
	// AllowedOrigins may call the endpoints from browser pages; "*" allows any.
	AllowedOrigins []string `toml:"allowed_origins"`
	// MaxSessions bounds the WHIP and WHEP sessions open at once.
	MaxSessions int `toml:"max_sessions"`
	// MaxSDPBytes bounds an offer or a PATCH body.
	MaxSDPBytes int64 `toml:"max_sdp_bytes"`
	// TURNCredentialTTL is the lifetime of the TURN credentials in the Link
	// headers of an answer.
	TURNCredentialTTL time.Duration `toml:"turn_credential_ttl"`
}

// DefaultConfig returns the settings used when config.toml says nothing.
func DefaultConfig() Config {
	return Config{
		Enabled:           true,
		MaxSessions:       1000,
		MaxSDPBytes:       64 << 10,
		TURNCredentialTTL: 12 * time.Hour,
	}
}

// Validate reports the first invalid setting, named as in config.toml.
func (c Config) Validate() error {
	for i, k := range c.Keys {
		if len(k) < 16 {
			return fmt.Errorf("whip.keys[%d]: a key must be at least 16 characters", i)
		}
	}
	for _, o := range c.AllowedOrigins {
		if o == "*" {
			continue
		}
		u, err := url.Parse(o)
		if err != nil || u.Scheme == "" || u.Host == "" {
			return fmt.Errorf("whip.allowed_origins: %q is not an origin such as https://example.com", o)
		}
	}
	if c.MaxSessions < 1 {
		return fmt.Errorf("whip.max_sessions: must be at least 1")
	}
	if c.MaxSDPBytes < 1024 || c.MaxSDPBytes > 1<<20 {
		return fmt.Errorf("whip.max_sdp_bytes: %d is outside 1024..1048576", c.MaxSDPBytes)
	}
	if c.TURNCredentialTTL < time.Minute {
		return fmt.Errorf("whip.turn_credential_ttl: must be at least 1m")
	}
	return nil
}
