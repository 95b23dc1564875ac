// Command turnbench measures relay throughput and allocation rate of
// avs's TURN server and of coturn's turnserver on the same machine, with
// the same clients: coturn's turnutils_uclient and turnutils_peer for
// relaying, pion/turn clients for allocations. Each server runs in its own
// process so that its CPU time can be read from /proc.
//
//	go run ./turn/internal/turnbench            # both servers
//	go run ./turn/internal/turnbench -servers avs
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	pionturn "github.com/pion/turn/v5"

	"github.com/avs/avs/turn"
)

const secret = "turnbench-secret"

type options struct {
	servers      string
	clients      int
	messages     int
	size         int
	interval     int
	allocWorkers int
	allocFor     time.Duration
	profile      string
}

func main() {
	serve := flag.String("serve", "", "internal: run avs's TURN server on this UDP address")
	profile := flag.String("cpuprofile", "", "write the avs server's CPU profile to this file")
	var o options
	flag.StringVar(&o.servers, "servers", "avs,coturn", "servers to measure")
	flag.IntVar(&o.clients, "clients", 20, "uclient: concurrent allocations (-m)")
	flag.IntVar(&o.messages, "messages", 1000, "uclient: messages per client (-n)")
	flag.IntVar(&o.size, "size", 200, "uclient: message size in bytes (-l)")
	flag.IntVar(&o.interval, "interval", 1, "uclient: ms between a client's messages (-z)")
	flag.IntVar(&o.allocWorkers, "alloc-workers", 8, "allocation benchmark: concurrent clients")
	flag.DurationVar(&o.allocFor, "alloc-for", 10*time.Second, "allocation benchmark: duration")
	flag.Parse()
	o.profile = *profile
	if *serve != "" {
		if err := runAVS(*serve, *profile); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// runAVS serves with the default configuration, except loopback peers
// (the benchmark's peer is local), the listen and relay addresses, and
// no per-user quota (all uclient sessions share one username; coturn has
// no per-user quota by default either).
func runAVS(addr, profile string) error {
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	c := turn.DefaultConfig()
	c.ListenUDP, c.ListenTCP = addr, ""
	c.RelayBindIP = "127.0.0.1"
	c.RelayPortMin, c.RelayPortMax = 20000, 24999
	c.AuthSecret = secret
	c.AllowLoopbackPeers = true
	c.MaxAllocationsPerUser = 0
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := turn.New(turn.Params{Config: c, Logger: log})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	<-ctx.Done()
	return s.Close()
}

func run(o options) error {
	fmt.Printf("date: %s\n", time.Now().UTC().Format(time.RFC3339))
	fmt.Printf("uclient: -m %d -n %d -l %d -z %d; allocations: %d workers for %s\n\n",
		o.clients, o.messages, o.size, o.interval, o.allocWorkers, o.allocFor)
	for _, name := range strings.Split(o.servers, ",") {
		if err := measure(name, o); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

func measure(name string, o options) error {
	port, err := freeUDPPort()
	if err != nil {
		return err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	srv, err := startServer(name, addr, o)
	if err != nil {
		return err
	}
	defer func() {
		_ = srv.Process.Signal(syscall.SIGTERM)
		_ = srv.Wait()
	}()
	if err := waitReady(addr); err != nil {
		return err
	}
	peerPort, err := freeUDPPort()
	if err != nil {
		return err
	}
	peer := exec.Command("turnutils_peer", "-L", "127.0.0.1", "-p", strconv.Itoa(peerPort))
	if err := peer.Start(); err != nil {
		return fmt.Errorf("turnutils_peer: %w", err)
	}
	defer func() {
		_ = peer.Process.Kill()
		_ = peer.Wait()
	}()

	cpu0 := cpuTime(srv.Process.Pid)
	res, err := relay(port, peerPort, o)
	if err != nil {
		return err
	}
	cpu := cpuTime(srv.Process.Pid) - cpu0
	relayed := res.sent + res.received
	fmt.Printf("%-7s relay: %d sent, %d echoed (%.2f%% lost) in %.1fs = %.0f packets/s through the server; "+
		"server CPU %.2fs = %.1f µs/packet\n", name, res.sent, res.received, 100*float64(res.sent-res.received)/float64(res.sent),
		res.wall.Seconds(), float64(relayed)/res.wall.Seconds(), cpu.Seconds(), float64(cpu.Microseconds())/float64(relayed))

	cpu0 = cpuTime(srv.Process.Pid)
	ok, failed := allocations(addr, o.allocWorkers, o.allocFor)
	cpu = cpuTime(srv.Process.Pid) - cpu0
	fmt.Printf("%-7s allocations: %d in %s (%d failed) = %.0f/s; server CPU %.2fs = %.0f µs/allocation\n",
		name, ok, o.allocFor, failed, float64(ok)/o.allocFor.Seconds(), cpu.Seconds(),
		float64(cpu.Microseconds())/float64(max(ok, 1)))
	return nil
}

func startServer(name, addr string, o options) (*exec.Cmd, error) {
	var cmd *exec.Cmd
	switch name {
	case "avs":
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		cmd = exec.Command(self, "-serve", addr, "-cpuprofile", o.profile)
	case "coturn":
		host, port, _ := net.SplitHostPort(addr)
		cmd = exec.Command("turnserver", "-n", "--listening-ip="+host, "--listening-port="+port,
			"--relay-ip=127.0.0.1", "--min-port=25000", "--max-port=29999",
			"--use-auth-secret", "--static-auth-secret="+secret, "--realm=avs",
			"--allow-loopback-peers", "--no-cli", "--no-tls", "--no-dtls", "--no-tcp-relay",
			"--no-stdout-log", "--log-file=/dev/null", "--pidfile=/dev/null")
	default:
		return nil, fmt.Errorf("unknown server %q (avs, coturn)", name)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start: %w", err)
	}
	return cmd, nil
}

// waitReady allocates once, which also proves the credentials work.
func waitReady(addr string) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := allocateOnce(addr, "ready")
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type relayResult struct {
	sent, received int
	wall           time.Duration
}

var uclientTotals = regexp.MustCompile(`tot_send_msgs=(\d+), tot_recv_msgs=(\d+)\n`)

func relay(port, peerPort int, o options) (relayResult, error) {
	user, pass := turn.Credentials(secret, "uclient", time.Hour, time.Now())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	out, err := exec.CommandContext(ctx, "turnutils_uclient", "-c",
		"-m", strconv.Itoa(o.clients), "-n", strconv.Itoa(o.messages), "-l", strconv.Itoa(o.size),
		"-z", strconv.Itoa(o.interval), "-u", user, "-w", pass,
		"-e", "127.0.0.1", "-r", strconv.Itoa(peerPort), "-p", strconv.Itoa(port), "127.0.0.1").CombinedOutput()
	wall := time.Since(start)
	if err != nil {
		return relayResult{}, fmt.Errorf("turnutils_uclient: %w\n%s", err, out)
	}
	m := uclientTotals.FindAllSubmatch(out, -1)
	if len(m) == 0 {
		return relayResult{}, fmt.Errorf("no totals in uclient output:\n%s", out)
	}
	last := m[len(m)-1]
	sent, _ := strconv.Atoi(string(last[1]))
	received, _ := strconv.Atoi(string(last[2]))
	return relayResult{sent: sent, received: received, wall: wall}, nil
}

// allocations runs workers that allocate and release as fast as they can.
func allocations(addr string, workers int, d time.Duration) (ok, failed int) {
	var nOK, nFailed, nReleaseFailed atomic.Int64
	var firstErr, firstReleaseErr sync.Once
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := 0; time.Now().Before(stop); i++ {
				allocErr, releaseErr := allocateAndRelease(addr, fmt.Sprintf("w%d-%d", w, i))
				if allocErr != nil {
					firstErr.Do(func() { fmt.Fprintf(os.Stderr, "first allocation error: %v\n", allocErr) })
					nFailed.Add(1)
					continue
				}
				nOK.Add(1)
				if releaseErr != nil {
					firstReleaseErr.Do(func() { fmt.Fprintf(os.Stderr, "first release error: %v\n", releaseErr) })
					nReleaseFailed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n := nReleaseFailed.Load(); n > 0 {
		fmt.Fprintf(os.Stderr, "%d releases (Refresh with lifetime 0) failed\n", n)
	}
	return int(nOK.Load()), int(nFailed.Load())
}

func allocateOnce(addr, id string) error {
	allocErr, releaseErr := allocateAndRelease(addr, id)
	return errors.Join(allocErr, releaseErr)
}

// allocateAndRelease is one client's life: Allocate (401, then
// authenticated), then Refresh with lifetime 0 to release.
func allocateAndRelease(addr, id string) (allocErr, releaseErr error) {
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return err, nil
	}
	defer conn.Close()
	user, pass := turn.Credentials(secret, id, time.Hour, time.Now())
	c, err := pionturn.NewClient(&pionturn.ClientConfig{
		STUNServerAddr: addr, TURNServerAddr: addr, Conn: conn,
		Username: user, Password: pass, Realm: "avs",
	})
	if err != nil {
		return err, nil
	}
	defer c.Close()
	if err := c.Listen(); err != nil {
		return err, nil
	}
	relay, err := c.Allocate()
	if err != nil {
		return err, nil
	}
	return nil, relay.Close()
}

// cpuTime is a process's user plus system CPU time from /proc.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the parenthesised command name; utime and stime are
	// the 14th and 15th fields of the whole line, in clock ticks (100/s).
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(fields) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

func freeUDPPort() (int, error) {
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer c.Close()
	port := c.LocalAddr().(*net.UDPAddr).Port
	if port == 0 {
		return 0, errors.New("no free port")
	}
	return port, nil
}
