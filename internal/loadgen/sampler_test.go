package loadgen

import (
	"strings"
	"testing"
	"time"
)

func TestParseProcStatCPU(t *testing.T) {
	tests := []struct {
		name string
		stat string
		want time.Duration
		err  bool
	}{
		{"plain", "1234 (avs-server) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 100 0 0", 3 * time.Second, false},
		{"name with spaces and parens", "99 (a (b) c) R 1 2 3 4 5 6 7 8 9 10 7 3 0 0", 100 * time.Millisecond, false},
		{"truncated", "99 (x) R 1 2", 0, true},
		{"no name", "garbage", 0, true},
	}
	for _, tt := range tests {
		got, err := parseProcStatCPU([]byte(tt.stat))
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("%s: got %v, %v; want %v, error %v", tt.name, got, err, tt.want, tt.err)
		}
	}
}

func TestParseProcessMetrics(t *testing.T) {
	text := `# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.5
process_cpu_seconds_total_other 99
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 8.388608e+07
go_goroutines 42
`
	s, err := parseProcessMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if s.CPU != 12500*time.Millisecond || s.RSSBytes != 83886080 {
		t.Fatalf("got %v and %d", s.CPU, s.RSSBytes)
	}
	if _, err := parseProcessMetrics(strings.NewReader("go_goroutines 1\n")); err == nil {
		t.Fatal("no error for metrics without process figures")
	}
}

func TestParseMachineCPU(t *testing.T) {
	stat := "cpu  100 5 50 1000 20 1 2 3 7 0\ncpu0 50 2 25 500 10 0 1 1 0 0\n"
	got, err := parseMachineCPU([]byte(stat))
	if err != nil {
		t.Fatal(err)
	}
	if want := 161 * time.Second / 100; got != want { // user+nice+system+irq+softirq+steal
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestCPUPercent(t *testing.T) {
	t0 := time.Unix(1000, 0)
	from := ProcessSample{At: t0, CPU: time.Second}
	to := ProcessSample{At: t0.Add(10 * time.Second), CPU: 6 * time.Second}
	if got := cpuPercent(from, to); got != 50 {
		t.Fatalf("got %v, want 50", got)
	}
	if got := cpuPercent(to, to); got != 0 {
		t.Fatalf("zero interval: got %v", got)
	}
}
