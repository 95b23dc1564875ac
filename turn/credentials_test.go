package turn

import (
	"net/netip"
	"testing"
	"time"
)

func TestCredentials(t *testing.T) {
	// Expected passwords computed independently:
	//   printf %s "$user" | openssl dgst -sha1 -hmac s3cret -binary | base64
	now := time.Unix(1700000000, 0)
	tests := []struct {
		id       string
		ttl      time.Duration
		wantUser string
		wantPass string
	}{
		{"alice", 0, "1700000000:alice", "TtElzSjT0GdnTQ9xdcRNxx96yQs="},
		{"", time.Hour, "1700003600", "hkHv/K58ZdACCJ9F4MWT46M317I="},
	}
	for _, tt := range tests {
		user, pass := Credentials("s3cret", tt.id, tt.ttl, now)
		if user != tt.wantUser || pass != tt.wantPass {
			t.Errorf("Credentials(%q, %v) = %q, %q; want %q, %q", tt.id, tt.ttl, user, pass, tt.wantUser, tt.wantPass)
		}
	}
}

func TestFailureLimiter(t *testing.T) {
	l := newFailureLimiter(3, time.Minute)
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	now := time.Unix(1000, 0)
	for i := range 3 {
		if l.blocked(a, now) {
			t.Fatalf("blocked after %d failures", i)
		}
		l.fail(a, now)
	}
	if !l.blocked(a, now) {
		t.Fatal("not blocked after the limit")
	}
	if l.blocked(b, now) {
		t.Fatal("another source is blocked")
	}
	if l.blocked(a, now.Add(time.Minute)) {
		t.Fatal("still blocked after the window")
	}
	if off := newFailureLimiter(0, 0); func() bool { off.fail(a, now); return off.blocked(a, now) }() {
		t.Fatal("a zero limit blocks")
	}
}

func TestTokenBucket(t *testing.T) {
	now := time.Unix(1000, 0)
	b := newTokenBucket(100_000, 64*1024, now)
	sent := 0
	for b.take(1000, now) {
		sent += 1000
	}
	if sent != 65000 {
		t.Fatalf("burst allowed %d bytes, want 65000", sent)
	}
	if !b.take(1000, now.Add(20*time.Millisecond)) { // 2000 bytes refilled
		t.Fatal("no refill")
	}
	second := b.take(1000, now.Add(20*time.Millisecond))
	third := b.take(1000, now.Add(20*time.Millisecond))
	if second && third {
		t.Fatal("refill exceeded the rate")
	}
}
