package loadgen

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
)

// residenceMetric is the histogram avs-server keeps of each fast-path
// packet's time inside it, from the kernel's arrival stamp on its socket
// to the end of its forwarding.
const residenceMetric = "avs_sfu_fast_path_residence_seconds"

// residenceHistogram is one scrape of that histogram: bucket upper bounds
// in seconds (the last one +Inf) and cumulative counts.
type residenceHistogram struct {
	bounds     []float64
	cumulative []uint64
}

// ResidenceQuantiles are the server's own share of the latency over the
// hold: for each quantile, the upper bound of the bucket that holds it, in
// milliseconds; -1 means above the largest bound.
type ResidenceQuantiles struct {
	P50  float64 `json:"p50"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	N    uint64  `json:"n"`
}

// scrapeResidence reads the histogram from the server's /metrics.
func scrapeResidence(ctx context.Context, client *http.Client, url string) (residenceHistogram, error) {
	var h residenceHistogram
	err := scrape(ctx, client, url, func(r io.Reader) (err error) {
		h, err = parseResidence(r)
		return err
	})
	return h, err
}

// parseResidence picks the histogram's buckets out of the Prometheus text
// format, in the order the server writes them (increasing bounds).
func parseResidence(r io.Reader) (residenceHistogram, error) {
	var h residenceHistogram
	prefix := residenceMetric + `_bucket{le="`
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), prefix)
		if !ok {
			continue
		}
		le, value, ok := strings.Cut(rest, `"} `)
		if !ok {
			return h, fmt.Errorf("%s: malformed bucket line %q", residenceMetric, sc.Text())
		}
		bound, err := strconv.ParseFloat(le, 64)
		if err != nil {
			return h, fmt.Errorf("%s: bound %q: %w", residenceMetric, le, err)
		}
		value, _, _ = strings.Cut(strings.TrimSpace(value), " ") // drop an optional timestamp
		count, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return h, fmt.Errorf("%s: count %q: %w", residenceMetric, value, err)
		}
		if n := len(h.bounds); n > 0 && (bound <= h.bounds[n-1] || uint64(count) < h.cumulative[n-1]) {
			return h, fmt.Errorf("%s: buckets out of order", residenceMetric)
		}
		h.bounds = append(h.bounds, bound)
		h.cumulative = append(h.cumulative, uint64(count))
	}
	if err := sc.Err(); err != nil {
		return h, fmt.Errorf("read metrics: %w", err)
	}
	if len(h.bounds) == 0 || !math.IsInf(h.bounds[len(h.bounds)-1], 1) {
		return h, fmt.Errorf("no %s histogram", residenceMetric)
	}
	return h, nil
}

// residenceBetween returns the quantiles of the packets counted between
// two scrapes of the same server; false when there were none or the
// scrapes do not match (the server restarted, say).
func residenceBetween(from, to residenceHistogram) (ResidenceQuantiles, bool) {
	if len(from.bounds) != len(to.bounds) || len(to.bounds) == 0 {
		return ResidenceQuantiles{}, false
	}
	delta := make([]uint64, len(to.cumulative))
	for i := range delta {
		if to.cumulative[i] < from.cumulative[i] || to.bounds[i] != from.bounds[i] {
			return ResidenceQuantiles{}, false
		}
		delta[i] = to.cumulative[i] - from.cumulative[i]
	}
	n := delta[len(delta)-1]
	if n == 0 {
		return ResidenceQuantiles{}, false
	}
	at := func(q float64) float64 {
		rank := uint64(math.Ceil(q * float64(n)))
		for i, c := range delta {
			if c >= rank {
				if math.IsInf(to.bounds[i], 1) {
					return -1
				}
				return to.bounds[i] * 1e3
			}
		}
		return -1
	}
	return ResidenceQuantiles{P50: at(0.5), P99: at(0.99), P999: at(0.999), N: n}, true
}
