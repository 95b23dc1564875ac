package turn

import (
	"context"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// uclientTotals matches turnutils_uclient's final summary line.
var uclientTotals = regexp.MustCompile(`tot_send_msgs=(\d+), tot_recv_msgs=(\d+)\n`)

// TestCoturnClient drives our server with coturn's turnutils_uclient, a
// TURN client none of us wrote, using our time-limited credentials: it
// allocates, binds channels to an echo peer and counts the echoes.
func TestCoturnClient(t *testing.T) {
	uclient, err := exec.LookPath("turnutils_uclient")
	if err != nil {
		t.Skip("turnutils_uclient not found; install Debian package coturn (apt-get install -y coturn) to run this test")
	}
	const messages = 20
	tests := []struct {
		name          string
		tcp           bool
		allowLoopback bool
		secret        string
		issued        time.Time
		wantRelayed   bool
	}{
		{"udp", false, true, testSecret, time.Now(), true},
		{"tcp", true, true, testSecret, time.Now(), true},
		{"loopback peer refused by default", false, false, testSecret, time.Now(), false},
		{"expired credentials", false, true, testSecret, time.Now().Add(-2 * time.Hour), false},
		{"forged credentials", false, true, "guessed-secret", time.Now(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// uclient spends most of its run waiting for late packets, so
			// the cases overlap well.
			t.Parallel()
			c := testConfig()
			c.AllowLoopbackPeers = tt.allowLoopback
			s, _ := startServer(t, c)
			peer := echoPeer(t)
			user, pass := Credentials(tt.secret, "coturn-client", time.Hour, tt.issued)
			port := addrPort(s.Addrs().UDP)
			// -c: no RTCP allocation pair (our echo peer has no port+1).
			args := []string{"-c", "-n", strconv.Itoa(messages), "-l", "200", "-z", "5",
				"-u", user, "-w", pass, "-e", "127.0.0.1", "-r", strconv.Itoa(peer.Port)}
			if tt.tcp {
				port = addrPort(s.Addrs().TCP)
				args = append(args, "-t")
			}
			args = append(args, "-p", strconv.Itoa(port), "127.0.0.1")
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, uclient, args...).CombinedOutput()
			m := uclientTotals.FindAllSubmatch(out, -1)
			received := 0
			if len(m) > 0 {
				received, _ = strconv.Atoi(string(m[len(m)-1][2]))
			}
			switch {
			case tt.wantRelayed && (err != nil || received < messages-2):
				t.Fatalf("relayed %d of %d messages (err %v):\n%s", received, messages, err, out)
			case !tt.wantRelayed && (err == nil || received > 0):
				t.Fatalf("not refused: %d messages echoed (err %v):\n%s", received, err, out)
			}
		})
	}
}
