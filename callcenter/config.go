package callcenter

import (
	"errors"
	"fmt"
	"time"
)

// No-answer policies for Config.OnNoAnswer.
const (
	OnNoAnswerRequeue = "requeue" // ring the next agent (back to the head of the queue)
	OnNoAnswerEnd     = "end"     // end the call with resultCode 5
)

// Config is the [callcenter] section of config.toml.
type Config struct {
	// SignWindow bounds how far a signed entry's timestamp may be from now,
	// and how long its nonce is remembered.
	SignWindow time.Duration `toml:"sign_window"`
	// AppID, when set, is the video mini-program's WeChat app id used in the
	// signature; when empty the client-supplied appId is used.
	AppID string `toml:"app_id"`
	// RingTimeout is how long an agent's console rings before the call counts
	// as not answered.
	RingTimeout time.Duration `toml:"ring_timeout"`
	// QueueTimeout is how long a customer may wait in the queue.
	QueueTimeout time.Duration `toml:"queue_timeout"`
	// OnNoAnswer is "requeue" or "end".
	OnNoAnswer string `toml:"on_no_answer"`
	// MaxRingAttempts ends the call with resultCode 5 after that many
	// unanswered rings.
	MaxRingAttempts int `toml:"max_ring_attempts"`
	// AwayAfterMissed sets an agent away after that many consecutive rings
	// left to time out, so an absent agent stops delaying calls; 0 = never.
	AwayAfterMissed int `toml:"away_after_missed"`
	// DefaultMaxCalls is an agent's concurrent call limit unless set per agent.
	DefaultMaxCalls int `toml:"default_max_calls"`
	// EstimatedCallDuration seeds the average call length used for the
	// estimated wait, until real calls refine it.
	EstimatedCallDuration time.Duration `toml:"estimated_call_duration"`
	// ChatMaxLength bounds one chat message, in bytes.
	ChatMaxLength int `toml:"chat_max_length"`
	// ChatRatePerMinute bounds the chat messages one party sends.
	ChatRatePerMinute int `toml:"chat_rate_per_minute"`
	// ChatPageSize is how many messages one msgHis page holds.
	ChatPageSize int `toml:"chat_page_size"`
	// VerifyMaxAttempts is how many wrong verify codes a customer may enter
	// per VerifyWindow.
	VerifyMaxAttempts int `toml:"verify_max_attempts"`
	// VerifyWindow is the period over which wrong verify codes are counted.
	VerifyWindow time.Duration `toml:"verify_window"`
	// AgentTokenTTL is the lifetime of agent tokens issued by the admin API.
	AgentTokenTTL time.Duration `toml:"agent_token_ttl"`
	// AuthRatePerMinute bounds customer authentications per remote address.
	AuthRatePerMinute int `toml:"auth_rate_per_minute"`
	// WebhookAfterSurvey sends the call record again when a survey arrives
	// after the call ended.
	WebhookAfterSurvey bool `toml:"webhook_after_survey"`
	// StoreTimeout bounds one database operation started by a timer.
	StoreTimeout time.Duration `toml:"store_timeout"`
	// Demo seeds a demo tenant at start when enabled, so a fresh server is
	// usable without the admin API.
	Demo DemoConfig `toml:"demo"`
}

// DemoConfig is the [callcenter.demo] section.
type DemoConfig struct {
	// Enabled creates the tenant and agent below if they do not exist.
	Enabled bool `toml:"enabled"`
	// TenantKey is the demo tenant's miniSdkToken.
	TenantKey string `toml:"tenant_key"`
	// Secret is the demo tenant's signing secret.
	Secret string `toml:"secret"`
	// AgentUsername and AgentPassword log the demo agent in.
	AgentUsername string `toml:"agent_username"`
	AgentPassword string `toml:"agent_password"`
	// WebhookURL receives the demo tenant's call records ("" = none).
	WebhookURL string `toml:"webhook_url"`
}

// DefaultConfig returns the defaults documented in config.toml.
func DefaultConfig() Config {
	return Config{
		SignWindow:            5 * time.Minute,
		RingTimeout:           30 * time.Second,
		QueueTimeout:          10 * time.Minute,
		OnNoAnswer:            OnNoAnswerRequeue,
		MaxRingAttempts:       3,
		AwayAfterMissed:       3,
		DefaultMaxCalls:       1,
		EstimatedCallDuration: 3 * time.Minute,
		ChatMaxLength:         2000,
		ChatRatePerMinute:     60,
		ChatPageSize:          20,
		VerifyMaxAttempts:     5,
		VerifyWindow:          15 * time.Minute,
		AgentTokenTTL:         30 * 24 * time.Hour,
		AuthRatePerMinute:     60,
		WebhookAfterSurvey:    true,
		StoreTimeout:          10 * time.Second,
		Demo: DemoConfig{
			TenantKey:     "demo",
			Secret:        "demo-secret",
			AgentUsername: "agent",
			AgentPassword: "agent",
		},
	}
}

// Validate reports the first invalid key.
func (c Config) Validate() error {
	positive := []struct {
		key string
		v   time.Duration
	}{
		{"sign_window", c.SignWindow},
		{"ring_timeout", c.RingTimeout},
		{"queue_timeout", c.QueueTimeout},
		{"estimated_call_duration", c.EstimatedCallDuration},
		{"verify_window", c.VerifyWindow},
		{"agent_token_ttl", c.AgentTokenTTL},
		{"store_timeout", c.StoreTimeout},
	}
	for _, p := range positive {
		if p.v <= 0 {
			return fmt.Errorf("callcenter.%s: must be > 0", p.key)
		}
	}
	counts := []struct {
		key string
		v   int
	}{
		{"max_ring_attempts", c.MaxRingAttempts},
		{"default_max_calls", c.DefaultMaxCalls},
		{"chat_max_length", c.ChatMaxLength},
		{"chat_rate_per_minute", c.ChatRatePerMinute},
		{"chat_page_size", c.ChatPageSize},
		{"verify_max_attempts", c.VerifyMaxAttempts},
		{"auth_rate_per_minute", c.AuthRatePerMinute},
	}
	for _, p := range counts {
		if p.v < 1 {
			return fmt.Errorf("callcenter.%s: must be >= 1", p.key)
		}
	}
	if c.AwayAfterMissed < 0 {
		return errors.New("callcenter.away_after_missed: must be >= 0")
	}
	if c.OnNoAnswer != OnNoAnswerRequeue && c.OnNoAnswer != OnNoAnswerEnd {
		return fmt.Errorf("callcenter.on_no_answer: must be %q or %q", OnNoAnswerRequeue, OnNoAnswerEnd)
	}
	if c.Demo.Enabled {
		switch {
		case c.Demo.TenantKey == "":
			return errors.New("callcenter.demo.tenant_key: must not be empty")
		case c.Demo.AgentUsername == "" || c.Demo.AgentPassword == "":
			return errors.New("callcenter.demo.agent_username: username and password must not be empty")
		}
	}
	return nil
}
