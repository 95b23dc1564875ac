package main

import "testing"

func TestParseKbps(t *testing.T) {
	tests := []struct {
		in   string
		want int
		err  bool
	}{
		{"800k", 800, false},
		{"800", 800, false},
		{"1.5M", 1500, false},
		{"2m", 2000, false},
		{"fast", 0, true},
		{"-5k", 0, true},
	}
	for _, tt := range tests {
		got, err := parseKbps(tt.in)
		if got != tt.want || (err != nil) != tt.err {
			t.Errorf("parseKbps(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestDefaultToken(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{}, ""},
		{map[string]string{"AVS_WHIP_KEYS": "key-one-0123456789, key-two"}, "key-one-0123456789"},
		{map[string]string{"AVS_WHIP_TOKEN": "tok", "AVS_WHIP_KEYS": "key"}, "tok"},
	}
	for _, tt := range tests {
		if got := defaultToken(func(k string) string { return tt.env[k] }); got != tt.want {
			t.Errorf("%v: got %q, want %q", tt.env, got, tt.want)
		}
	}
}
