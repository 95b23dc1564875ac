package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// ProcessSample is a process's cumulative CPU time and current resident
// memory at one moment.
type ProcessSample struct {
	At       time.Time
	CPU      time.Duration
	RSSBytes int64
}

// Sampler reads a process's CPU time and memory.
type Sampler interface {
	Sample(ctx context.Context) (ProcessSample, error)
	Source() string
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times; Linux fixes it
// at 100 for user space on every architecture Go supports.
const clockTicks = 100

// ProcSampler reads /proc/<pid>, for a server (or the generator itself) on
// this machine.
type ProcSampler struct {
	PID int // 0 means this process
}

// Source implements Sampler.
func (p ProcSampler) Source() string {
	if p.PID == 0 {
		return "/proc/self"
	}
	return fmt.Sprintf("/proc/%d", p.PID)
}

// Sample implements Sampler.
func (p ProcSampler) Sample(context.Context) (ProcessSample, error) {
	dir := p.Source()
	now := time.Now()
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return ProcessSample{}, fmt.Errorf("read %s/stat: %w", dir, err)
	}
	cpu, err := parseProcStatCPU(stat)
	if err != nil {
		return ProcessSample{}, fmt.Errorf("%s/stat: %w", dir, err)
	}
	statm, err := os.ReadFile(dir + "/statm")
	if err != nil {
		return ProcessSample{}, fmt.Errorf("read %s/statm: %w", dir, err)
	}
	fields := strings.Fields(string(statm))
	if len(fields) < 2 {
		return ProcessSample{}, fmt.Errorf("%s/statm: short", dir)
	}
	pages, err := strconv.ParseInt(fields[1], 10, 64)
	if err != nil {
		return ProcessSample{}, fmt.Errorf("%s/statm: %w", dir, err)
	}
	return ProcessSample{At: now, CPU: cpu, RSSBytes: pages * int64(os.Getpagesize())}, nil
}

// parseProcStatCPU returns utime+stime from the contents of /proc/<pid>/stat.
func parseProcStatCPU(stat []byte) (time.Duration, error) {
	// The command name is in parentheses and may itself hold spaces and
	// parentheses, so fields are counted from the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("no command name")
	}
	fields := strings.Fields(string(stat[i+1:]))
	// fields[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(fields) < 13 {
		return 0, fmt.Errorf("only %d fields", len(fields)+2)
	}
	var ticks int64
	for _, f := range fields[11:13] {
		v, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("cpu time %q: %w", f, err)
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// MetricsSampler scrapes the process metrics that the Prometheus Go client
// exports, for a server on another machine.
type MetricsSampler struct {
	URL    string
	Client *http.Client
}

// Source implements Sampler.
func (m MetricsSampler) Source() string { return m.URL }

// Sample implements Sampler.
func (m MetricsSampler) Sample(ctx context.Context) (ProcessSample, error) {
	now := time.Now()
	var s ProcessSample
	err := scrape(ctx, m.Client, m.URL, func(r io.Reader) (err error) {
		s, err = parseProcessMetrics(r)
		return err
	})
	s.At = now
	return s, err
}

// scrape fetches a Prometheus endpoint and hands its body to parse.
func scrape(ctx context.Context, client *http.Client, url string, parse func(io.Reader) error) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("build metrics request: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("scrape %s: %s", url, resp.Status)
	}
	if err := parse(io.LimitReader(resp.Body, 16<<20)); err != nil {
		return fmt.Errorf("scrape %s: %w", url, err)
	}
	return nil
}

// parseProcessMetrics picks process_cpu_seconds_total and
// process_resident_memory_bytes out of the Prometheus text format.
func parseProcessMetrics(r io.Reader) (ProcessSample, error) {
	var s ProcessSample
	var haveCPU, haveRSS bool
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || (name != "process_cpu_seconds_total" && name != "process_resident_memory_bytes") {
			continue
		}
		value, _, _ = strings.Cut(strings.TrimSpace(value), " ") // drop an optional timestamp
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return s, fmt.Errorf("%s: %w", name, err)
		}
		if name == "process_cpu_seconds_total" {
			s.CPU, haveCPU = time.Duration(v*float64(time.Second)), true
		} else {
			s.RSSBytes, haveRSS = int64(v), true
		}
	}
	if err := sc.Err(); err != nil {
		return s, fmt.Errorf("read metrics: %w", err)
	}
	if !haveCPU || !haveRSS {
		return s, fmt.Errorf("no process_cpu_seconds_total or process_resident_memory_bytes")
	}
	return s, nil
}

// cpuPercent is the CPU used between two samples as a percentage of one
// core.
func cpuPercent(from, to ProcessSample) float64 {
	wall := to.At.Sub(from.At)
	if wall <= 0 {
		return 0
	}
	return 100 * float64(to.CPU-from.CPU) / float64(wall)
}

// machineCPU returns the CPU time all processes on this machine have used
// (every core, idle and I/O wait excluded), from /proc/stat. The run
// reports it so that a reader can see when something besides the server
// and the generator was busy during a measurement.
func machineCPU() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("read /proc/stat: %w", err)
	}
	return parseMachineCPU(b)
}

func parseMachineCPU(stat []byte) (time.Duration, error) {
	line, _, _ := bytes.Cut(stat, []byte("\n"))
	fields := strings.Fields(string(line))
	if len(fields) < 6 || fields[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: no cpu line")
	}
	var busy int64
	for i, f := range fields[1:] {
		v, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: %w", err)
		}
		// Fields 4 and 5 are idle and iowait; guest time (9, 10) is
		// already counted in user and nice.
		if i == 3 || i == 4 || i >= 8 {
			continue
		}
		busy += v
	}
	return time.Duration(busy) * time.Second / clockTicks, nil
}
