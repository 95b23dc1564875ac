package turn

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

func TestDefaultConfigNeedsOnlyASecret(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "turn.auth_secret:") {
		t.Fatalf("default config without secret: got %v, want an auth_secret error", err)
	}
	c.AuthSecret = "x"
	if err := c.Validate(); err != nil {
		t.Fatalf("default config with secret: %v", err)
	}
	if c.tlsEnabled() {
		t.Fatal("TLS enabled without certificate")
	}
}

func TestValidateNamesTheKey(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"port order", func(c *Config) { c.RelayPortMin, c.RelayPortMax = 50000, 49000 },
			"turn.relay_port_min: must be ≤ relay_port_max"},
		{"port range", func(c *Config) { c.RelayPortMax = 70000 }, "turn.relay_port_max:"},
		{"half a port pair", func(c *Config) { c.RelayPortMin = 0 }, "turn.relay_port_min:"},
		{"realm", func(c *Config) { c.Realm = "" }, "turn.realm:"},
		{"listen", func(c *Config) { c.ListenUDP = "3478" }, "turn.listen_udp:"},
		{"no listener", func(c *Config) { c.ListenUDP, c.ListenTCP = "", "" }, "turn.listen_udp: no listener"},
		{"cert without key", func(c *Config) { c.TLSCertFile = "a.pem" }, "turn.tls_cert_file:"},
		{"public ip", func(c *Config) { c.PublicIP = "example.com" }, "turn.public_ip:"},
		{"bind ip", func(c *Config) { c.RelayBindIP = "" }, "turn.relay_bind_ip:"},
		{"ttl", func(c *Config) { c.CredentialTTL = 0 }, "turn.credential_ttl:"},
		{"quota", func(c *Config) { c.MaxAllocationsPerUser = -1 }, "turn.max_allocations_per_user:"},
		{"lifetime", func(c *Config) { c.AllocationLifetime = 2 * time.Hour }, "turn.allocation_lifetime:"},
		{"window", func(c *Config) { c.AuthFailureWindow = 0 }, "turn.auth_failure_window:"},
		{"allowed peers", func(c *Config) { c.AllowedPeers = []string{"nope"} }, "turn.allowed_peers:"},
		{"denied port", func(c *Config) { c.DeniedPeers = []string{"1.2.3.4:5"} }, "turn.denied_peers:"},
		{"static user", func(c *Config) { c.StaticUsers = map[string]string{"bob": ""} }, "turn.static_users:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			c.AuthSecret = "x"
			tt.change(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want %q", err, tt.want)
			}
		})
	}
}

func TestConfigFromTOML(t *testing.T) {
	const text = `
[turn]
realm = "example"
listen_tls = ":5349"
tls_cert_file = "cert.pem"
tls_key_file = "key.pem"
public_ip = "203.0.113.10"
relay_port_min = 40000
relay_port_max = 40100
auth_secret = "s"
credential_ttl = "2h"
max_allocation_age = "30m"
allowed_peers = ["203.0.113.10:7882", "10.0.0.0/8"]
static_users = { alice = "pw" }
`
	var file struct {
		Turn Config `toml:"turn"`
	}
	file.Turn = DefaultConfig()
	md, err := toml.Decode(text, &file)
	if err != nil {
		t.Fatal(err)
	}
	if u := md.Undecoded(); len(u) > 0 {
		t.Fatalf("keys not decoded: %v", u)
	}
	c := file.Turn
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.CredentialTTL != 2*time.Hour || c.MaxAllocationAge != 30*time.Minute || c.StaticUsers["alice"] != "pw" {
		t.Fatalf("decoded %+v", c)
	}
	if !c.tlsEnabled() || c.ListenUDP != ":3478" {
		t.Fatalf("defaults lost or TLS off: %+v", c)
	}
	rules, err := parsePeerRules(c.AllowedPeers)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := rules.addrPorts[netip.MustParseAddrPort("203.0.113.10:7882")]; !ok || len(rules.prefixes) != 1 {
		t.Fatalf("rules %+v", rules)
	}
}

// TestDocumentedSection keeps testdata/turn-section.toml, the [turn]
// section shipped in config.toml, equal to DefaultConfig.
func TestDocumentedSection(t *testing.T) {
	var file struct {
		Turn Config `toml:"turn"`
	}
	md, err := toml.DecodeFile("testdata/turn-section.toml", &file)
	if err != nil {
		t.Fatal(err)
	}
	if u := md.Undecoded(); len(u) > 0 {
		t.Fatalf("unknown keys: %v", u)
	}
	want := DefaultConfig()
	// Empty TOML arrays and tables decode as empty, not nil.
	want.StaticUsers, want.AllowedPeers, want.DeniedPeers = map[string]string{}, []string{}, []string{}
	if !reflect.DeepEqual(file.Turn, want) {
		t.Fatalf("documented section differs from DefaultConfig:\n got %+v\nwant %+v", file.Turn, want)
	}
	v := reflect.TypeOf(Config{})
	for i := range v.NumField() {
		if !md.IsDefined("turn", v.Field(i).Tag.Get("toml")) {
			t.Errorf("key %s missing from the documented section", v.Field(i).Tag.Get("toml"))
		}
	}
}
