package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"

	"github.com/avs/avs/internal/config"
	"github.com/avs/avs/internal/loadgen"
	"github.com/avs/avs/internal/rtctest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const whipKey = "browser-test-key-0123456789"

// boot starts a whole server from configuration text, on ports the kernel
// chooses, with its database in the test's directory.
func boot(t *testing.T, extra string) *App {
	t.Helper()
	text := fmt.Sprintf(`
[server]
http_listen = "127.0.0.1:0"
metrics_listen = "127.0.0.1:0"
drain_timeout = "5s"
[sfu]
udp_listen = "127.0.0.1:0"
tcp_listen = "127.0.0.1:0"
[turn]
listen_udp = "127.0.0.1:0"
listen_tcp = ""
relay_port_min = 0
relay_port_max = 0
public_ip = "127.0.0.1"
auth_secret = "turn-secret-for-tests"
[store]
path = %q
%s`, filepath.Join(t.TempDir(), "avs.db"), extra)
	cfg, err := config.Parse(text)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	a, err := New(context.Background(), cfg, log)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		a.Shutdown(ctx)
	})
	return a
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestHealthReadinessAndMetrics(t *testing.T) {
	a := boot(t, "")
	base := "http://" + a.HTTPAddr()
	if code, _ := get(t, base+"/healthz"); code != 200 {
		t.Fatalf("healthz %d", code)
	}
	if code, _ := get(t, base+"/readyz"); code != 200 {
		t.Fatalf("readyz %d", code)
	}
	code, body := get(t, "http://"+a.MetricsAddr()+"/metrics")
	if code != 200 {
		t.Fatalf("metrics %d", code)
	}
	for _, name := range []string{
		"avs_sfu_rooms", "avs_sfu_participants", "avs_sfu_tracks", "avs_sfu_packets_total", "avs_sfu_bytes_total",
		"avs_sfu_nacks_total", "avs_sfu_plis_total", "avs_sfu_loss_ratio", "avs_sfu_rtt_seconds", "avs_sfu_jitter_seconds",
		"avs_sfu_fast_path_packets_total", "avs_sfu_fast_path_residence_seconds_bucket",
		"process_resident_memory_bytes",
	} {
		if !strings.Contains(body, name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	// The metrics are not on the public listener.
	if code, _ := get(t, base+"/metrics"); code == 200 {
		t.Fatal("/metrics is served on the public address")
	}
}

func TestDrainRefusesNewSessionsAndWaitsForRunningOnes(t *testing.T) {
	a := boot(t, fmt.Sprintf("[whip]\nkeys = [%q]\n", whipKey))
	base := "http://" + a.HTTPAddr()
	post := func(offer string) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, base+"/whep/room", strings.NewReader(offer))
		req.Header.Set("Authorization", "Bearer "+whipKey)
		req.Header.Set("Content-Type", "application/sdp")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = resp.Body.Close() })
		return resp
	}
	player := rtctest.NewPeer(t, rtctest.Options{})
	if _, err := player.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	offer := rtctest.Offer(t, player, nil)
	resp := post(offer)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("WHEP: %d", resp.StatusCode)
	}
	session := resp.Header.Get("Location")

	done := make(chan struct{})
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		a.Shutdown(ctx)
		close(done)
	}()
	rtctest.WaitFor(t, "readyz to report draining", func() bool {
		code, _ := get(t, base+"/readyz")
		return code == http.StatusServiceUnavailable
	})
	if resp := post(offer); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("a new session during the drain got %d, want 503", resp.StatusCode)
	}
	select {
	case <-done:
		t.Fatal("the server stopped while a session was still running")
	case <-time.After(200 * time.Millisecond):
	}
	req, _ := http.NewRequest(http.MethodDelete, base+session, nil)
	req.Header.Set("Authorization", "Bearer "+whipKey)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE: %v %v", resp, err)
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the server did not stop once the last session ended")
	}
}

// TestBrowserPublishesOverWHIPAndPlaysOverWHEP runs headless Chromium with
// its fake camera and microphone: one context publishes over WHIP, another
// plays over WHEP until its getStats() shows decoded frames and audio.
func TestBrowserPublishesOverWHIPAndPlaysOverWHEP(t *testing.T) {
	script, _ := filepath.Abs("../../test/browser/whip-whep.mjs")
	modules, _ := filepath.Abs("../../test/browser/node_modules/playwright-core")
	_, chromiumErr := exec.LookPath("chromium")
	_, nodeErr := exec.LookPath("node")
	if _, err := os.Stat(modules); err != nil || chromiumErr != nil || nodeErr != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("CI must provide chromium, node and test/browser/node_modules (.ci/run installs them)")
		}
		t.Skip("needs chromium, node and `npm ci` in test/browser")
	}
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "<!doctype html><title>avs browser test</title>")
	}))
	defer page.Close()
	a := boot(t, fmt.Sprintf("[whip]\nkeys = [%q]\nallowed_origins = [%q]\n", whipKey, page.URL))

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", script)
	cmd.Env = append(os.Environ(),
		"AVS_URL=http://"+a.HTTPAddr(), "PAGE_URL="+page.URL, "TOKEN="+whipKey, "ROOM=browser")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var result struct {
		OK                   bool   `json:"ok"`
		FramesDecoded        int    `json:"framesDecoded"`
		AudioPacketsReceived int    `json:"audioPacketsReceived"`
		VideoCodec           string `json:"videoCodec"`
		Error                string `json:"error"`
	}
	if jerr := json.Unmarshal(bytes.TrimSpace(out), &result); jerr != nil {
		t.Fatalf("browser run: %v %v\nstdout: %s\nstderr: %s", err, jerr, out, stderr.String())
	}
	if !result.OK || result.FramesDecoded < 10 || result.AudioPacketsReceived < 10 {
		t.Fatalf("player did not get media: %+v\nstderr: %s", result, stderr.String())
	}
	t.Logf("player decoded %d %s frames and received %d audio packets", result.FramesDecoded, result.VideoCodec, result.AudioPacketsReceived)
	// Chromium's SRTP took the fast path: its keys were recovered from
	// the handshake with a real browser.
	if st := a.SFU().FastPathStats(); st.Direct == 0 || st.Residence.Count == 0 {
		t.Fatalf("no browser packet took the fast path: %d delivered, %d timed", st.Direct, st.Residence.Count)
	}
}

// TestRelayOnlyClientReachesTheSFUThroughBuiltInTURN publishes over WHIP
// from a client that may only use relay candidates, with the credentials
// of the answer's Link header, and plays the media directly over WHEP.
func TestRelayOnlyClientReachesTheSFUThroughBuiltInTURN(t *testing.T) {
	a := boot(t, fmt.Sprintf("[whip]\nkeys = [%q]\n", whipKey))
	base := "http://" + a.HTTPAddr()
	ice := a.TURN().ICEServer("relay-test", time.Now())
	var urls []string
	for _, u := range ice.URLs {
		if strings.HasPrefix(u, "turn:") && strings.Contains(u, "transport=udp") {
			urls = append(urls, u)
		}
	}
	if len(urls) == 0 {
		t.Fatalf("no UDP TURN URL in %v", ice.URLs)
	}
	publisher := rtctest.NewPeer(t, rtctest.Options{RelayOnly: true, ICEServers: []webrtc.ICEServer{
		{URLs: urls, Username: ice.Username, Credential: ice.Credential},
	}})
	video, _ := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "video", "cam")
	if _, err := publisher.AddTrack(video); err != nil {
		t.Fatal(err)
	}
	offer := rtctest.Offer(t, publisher, nil)
	if !strings.Contains(offer, "typ relay") {
		t.Fatalf("the relay-only client gathered no relay candidate:\n%s", offer)
	}
	resp := postSDP(t, base+"/whip/relayed", offer)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("WHIP: %d", resp.StatusCode)
	}
	answer, _ := io.ReadAll(resp.Body)
	rtctest.SetAnswer(t, publisher, string(answer))
	rtctest.WaitConnected(t, publisher)

	player := rtctest.NewPeer(t, rtctest.Options{})
	if _, err := player.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	got := rtctest.Collect(player)
	resp = postSDP(t, base+"/whep/relayed", rtctest.Offer(t, player, nil))
	answer, _ = io.ReadAll(resp.Body)
	rtctest.SetAnswer(t, player, string(answer))
	seq := uint16(1)
	rtctest.WaitFor(t, "relayed video at the player", func() bool {
		seq = rtctest.SendVideo(t, video, seq, 2, 1, 1)
		return got.Count(webrtc.RTPCodecTypeVideo) > 0
	})
	if a.TURN().AllocationCount() == 0 {
		t.Fatal("no TURN allocation was used")
	}
	if st := a.SFU().FastPathStats(); st.Direct == 0 {
		t.Fatalf("no relayed packet took the fast path: %d delivered", st.Direct)
	}
}

func postSDP(t *testing.T, url, offer string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(offer))
	req.Header.Set("Authorization", "Bearer "+whipKey)
	req.Header.Set("Content-Type", "application/sdp")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
	return resp
}

// TestLoadGeneratorMeasuresTheServer runs a small load through the real
// server with the load generator, as docs/BENCHMARKS.md does at scale: both
// ends of each call see the other's media, and the server's own residence
// histogram reaches the report through /metrics.
func TestLoadGeneratorMeasuresTheServer(t *testing.T) {
	if testing.Short() {
		t.Skip("places real calls over loopback")
	}
	a := boot(t, fmt.Sprintf("[whip]\nkeys = [%q]\n", whipKey))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := loadgen.Run(ctx, loadgen.Config{
		ServerURL: "http://" + a.HTTPAddr(), Token: whipKey, Calls: 2, Ramp: 200 * time.Millisecond, Duration: 2 * time.Second,
		Codec: "vp8", Bitrate: 800, NACK: true, TWCC: true, MediaDir: "../../testdata/media",
		ServerPID: os.Getpid(), MetricsURL: "http://" + a.MetricsAddr() + "/metrics",
		Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.CallsUp != 2 || rep.PacketsReceived == 0 || rep.VideoLatencyMs.N == 0 || rep.AudioLatencyMs.N == 0 {
		t.Fatalf("calls up %d, received %d packets (%d video, %d audio latency samples)",
			rep.CallsUp, rep.PacketsReceived, rep.VideoLatencyMs.N, rep.AudioLatencyMs.N)
	}
	if rep.LossPct > 1 {
		t.Fatalf("loss %.2f%% on loopback", rep.LossPct)
	}
	res := rep.ServerResidenceMs
	if res == nil || res.N == 0 || res.P99 == 0 {
		t.Fatalf("no residence times from the server's /metrics: %+v", res)
	}
	t.Logf("latency %+v, in the server %+v", rep.LatencyMs, *res)
}
