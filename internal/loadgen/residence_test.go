package loadgen

import (
	"math"
	"strings"
	"testing"
)

func TestParseResidence(t *testing.T) {
	good := `# HELP avs_sfu_fast_path_residence_seconds Time ...
# TYPE avs_sfu_fast_path_residence_seconds histogram
avs_sfu_fast_path_residence_seconds_bucket{le="5e-05"} 10
avs_sfu_fast_path_residence_seconds_bucket{le="0.0001"} 60
avs_sfu_fast_path_residence_seconds_bucket{le="0.001"} 99
avs_sfu_fast_path_residence_seconds_bucket{le="+Inf"} 100
avs_sfu_fast_path_residence_seconds_sum 0.01
avs_sfu_fast_path_residence_seconds_count 100
avs_sfu_rooms 3
`
	tests := []struct {
		name, text string
		wantErr    string
		wantN      int
	}{
		{"good", good, "", 4},
		{"absent", "avs_sfu_rooms 3\n", "no avs_sfu_fast_path_residence_seconds", 0},
		{"no +Inf bucket", `avs_sfu_fast_path_residence_seconds_bucket{le="0.001"} 5` + "\n", "no avs_sfu", 0},
		{"bad count", `avs_sfu_fast_path_residence_seconds_bucket{le="0.001"} many` + "\n", "count", 0},
		{"bad bound", `avs_sfu_fast_path_residence_seconds_bucket{le="soon"} 5` + "\n", "bound", 0},
		{"out of order", `avs_sfu_fast_path_residence_seconds_bucket{le="0.001"} 5` + "\n" +
			`avs_sfu_fast_path_residence_seconds_bucket{le="0.0001"} 6` + "\n", "out of order", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := parseResidence(strings.NewReader(tt.text))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || len(h.bounds) != tt.wantN {
				t.Fatalf("got %d buckets, %v; want %d", len(h.bounds), err, tt.wantN)
			}
		})
	}
}

func TestResidenceBetween(t *testing.T) {
	h := func(counts ...uint64) residenceHistogram {
		bounds := []float64{0.00005, 0.0001, 0.001, 0.005, math.Inf(1)}
		return residenceHistogram{bounds: bounds, cumulative: counts}
	}
	tests := []struct {
		name     string
		from, to residenceHistogram
		want     ResidenceQuantiles
		ok       bool
	}{
		{"only the hold counts", h(100, 100, 100, 100, 100), h(110, 600, 1090, 1099, 1100),
			ResidenceQuantiles{P50: 0.1, P99: 1, P999: 5, N: 1000}, true},
		{"above the largest bound", h(0, 0, 0, 0, 0), h(0, 0, 0, 0, 10), ResidenceQuantiles{P50: -1, P99: -1, P999: -1, N: 10}, true},
		{"nothing forwarded", h(5, 5, 5, 5, 5), h(5, 5, 5, 5, 5), ResidenceQuantiles{}, false},
		{"server restarted", h(100, 100, 100, 100, 100), h(1, 2, 3, 4, 5), ResidenceQuantiles{}, false},
		{"different buckets", residenceHistogram{bounds: []float64{math.Inf(1)}, cumulative: []uint64{1}}, h(1, 2, 3, 4, 5), ResidenceQuantiles{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := residenceBetween(tt.from, tt.to)
			if ok != tt.ok || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}
