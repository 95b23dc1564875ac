package loadgen

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
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
