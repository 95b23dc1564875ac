package loadgen

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"
)

func TestReportWarnings(t *testing.T) {
	tests := []struct {
		name string
		rep  Report
		want []string // substrings, one per warning
	}{
		{"quiet", Report{ServerCPUSource: "/proc/1", MachineCPUPct: 60, ServerCPUPct: 40, GeneratorCPUPct: 15}, nil},
		{"busy machine", Report{ServerCPUSource: "/proc/1", MachineCPUPct: 150, ServerCPUPct: 40, GeneratorCPUPct: 15}, []string{"not quiet"}},
		{"remote server: machine load is not comparable", Report{ServerCPUSource: "http://x/metrics", MachineCPUPct: 150}, nil},
		{"late generator and failed calls", Report{LateFrames: 3, CallsFailed: 1}, []string{"late", "failed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.rep.addWarnings()
			if len(tt.rep.Warnings) != len(tt.want) {
				t.Fatalf("warnings %q, want %d", tt.rep.Warnings, len(tt.want))
			}
			for i, w := range tt.want {
				if !strings.Contains(tt.rep.Warnings[i], w) {
					t.Errorf("warning %q does not mention %q", tt.rep.Warnings[i], w)
				}
			}
		})
	}
}

func TestPerPacket(t *testing.T) {
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name       string
		cpu, wall  time.Duration
		packets    int64
		wantUs     float64
		wantPerSec float64
	}{
		{"40 calls", 2400 * time.Millisecond, 10 * time.Second, 121_000, 2400e3 / 121_000, 12_100},
		{"no packets", time.Second, 10 * time.Second, 0, 0, 0},
		{"no time", time.Second, 0, 100, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			from := ProcessSample{At: t0, CPU: 5 * time.Second}
			to := ProcessSample{At: t0.Add(tt.wall), CPU: from.CPU + tt.cpu}
			us, perSec := perPacket(from, to, tt.packets)
			if math.Abs(us-tt.wantUs) > 1e-9 || math.Abs(perSec-tt.wantPerSec) > 1e-9 {
				t.Fatalf("perPacket = %v µs, %v/s; want %v, %v", us, perSec, tt.wantUs, tt.wantPerSec)
			}
		})
	}
}

func TestReportOutput(t *testing.T) {
	rep := Report{CallsTarget: 2, CallsUp: 2, Codec: "vp8", LatencyMs: Quantiles{P50: 0.4, P99: 2, Max: 9, N: 10}}
	rep.addWarnings()
	var table, js bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "2 / 2") {
		t.Errorf("table lacks calls up:\n%s", table.String())
	}
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(js.String(), "\n"); n != 1 {
		t.Errorf("JSON is %d lines, want one", n)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || back.LatencyMs != rep.LatencyMs {
		t.Errorf("JSON does not round-trip: %v, %+v", err, back.LatencyMs)
	}
}
