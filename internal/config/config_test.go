package config

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// The shipped config.toml must say exactly what the embedded defaults are,
// so that reading it documents the server that runs without it.
func TestShippedFileMatchesDefaults(t *testing.T) {
	data, err := os.ReadFile("../../config.toml")
	if err != nil {
		t.Fatal(err)
	}
	got := Default()
	if err := decode(data, &got); err != nil {
		t.Fatalf("config.toml: %v", err)
	}
	want := Default()
	// Printed, an empty list in the file and a nil default look the same,
	// as they behave the same.
	if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
		t.Fatalf("config.toml differs from the defaults:\nfile:     %+v\ndefaults: %+v", got, want)
	}
}

func TestBadConfigNamesTheKey(t *testing.T) {
	tests := []struct {
		name, text, want string
	}{
		{"unknown key", "[sfu]\nudp_listen = \":1\"\nudp_lisen = \":2\"\n", "sfu.udp_lisen"},
		{"unknown section", "[sfuu]\nx = 1\n", "sfuu"},
		{"bad value", "[sfu]\npli_interval = \"1ms\"\n", "sfu.pli_interval"},
		{"wrong type", "[sfu]\nmax_bitrate = \"lots\"\n", "max_bitrate"},
		{"bad address", "[server]\nhttp_listen = \"nowhere\"\n", "server.http_listen"},
		{"bad level", "[server]\nlog_level = \"loud\"\n", "server.log_level"},
		{"bad codec", "[sfu]\nvideo_codecs = [\"AV2\"]\n", "sfu.video_codecs"},
		{"negative readers", "[sfu]\nudp_readers = -1\n", "sfu.udp_readers"},
		{"syntax", "[sfu\n", "line 2"},
		{"enabled TURN without secret", "[turn]\nenabled = true\n", "turn.auth_secret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.text)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want one naming %q", err, tt.want)
			}
		})
	}
}

func TestEnvironmentOverridesSecrets(t *testing.T) {
	env := map[string]string{
		"AVS_TURN_AUTH_SECRET": "turn-secret-from-env",
		"AVS_ADMIN_TOKEN":      "admin-token-from-env-0123",
		"AVS_WHIP_KEYS":        "key-one-0123456789,key-two-0123456789",
	}
	c, err := Load("", func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.TURN.AuthSecret != env["AVS_TURN_AUTH_SECRET"] || c.Admin.Token != env["AVS_ADMIN_TOKEN"] || len(c.WHIP.Keys) != 2 {
		t.Fatalf("environment not applied: %+v %+v %+v", c.TURN.AuthSecret, c.Admin.Token, c.WHIP.Keys)
	}
	if c.GeneratedTURNSecret {
		t.Fatal("a secret was generated although one was given")
	}
}

func TestDefaultsStartWithARandomTURNSecret(t *testing.T) {
	a, err := Load("", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Load("", func(string) string { return "" })
	if !a.GeneratedTURNSecret || a.TURN.AuthSecret == "" || a.TURN.AuthSecret == b.TURN.AuthSecret {
		t.Fatal("defaults must get a fresh random TURN secret")
	}
}

func TestDisabledTURNNeedsNoSecret(t *testing.T) {
	if _, err := Parse("[turn]\nenabled = false\n"); err != nil {
		t.Fatal(err)
	}
}
