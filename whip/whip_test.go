package whip

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"

	"github.com/avs/avs/internal/rtctest"
	"github.com/avs/avs/sfu"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testKey = "test-key-0123456789abcdef"

func newServer(t *testing.T) (*httptest.Server, *Handler) {
	t.Helper()
	cfg := sfu.DefaultConfig()
	cfg.UDPListen, cfg.TCPListen = "127.0.0.1:0", ""
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := sfu.New(sfu.Params{Config: cfg, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	wcfg := DefaultConfig()
	wcfg.Keys = []string{testKey}
	wcfg.AllowedOrigins = []string{"https://console.example.com"}
	h, err := New(Params{Config: wcfg, SFU: s, Logger: log, ICEServers: func(string) []ICEServer {
		return []ICEServer{{URLs: []string{"turn:turn.example.com:3478"}, Username: "u", Credential: "p"}}
	}})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/whip/", h)
	mux.Handle("/whep/", h)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		srv.Close()
		_ = s.Close()
	})
	return srv, h
}

func do(t *testing.T, method, url, token, contentType, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
	return resp
}

func readAll(t *testing.T, r *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// publish starts a WHIP session with a VP8 and an Opus track and answers
// keyframe requests, as a camera would.
func publish(t *testing.T, base, room string) (*webrtc.TrackLocalStaticRTP, *webrtc.TrackLocalStaticRTP, *atomic.Bool, string) {
	t.Helper()
	pc := rtctest.NewPeer(t, rtctest.Options{})
	video, _ := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "video", "cam")
	audio, _ := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus}, "audio", "cam")
	vs, err := pc.AddTrack(video)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.AddTrack(audio); err != nil {
		t.Fatal(err)
	}
	keyframeWanted := &atomic.Bool{}
	go func() {
		for {
			pkts, _, err := vs.ReadRTCP()
			if err != nil {
				return
			}
			for _, p := range pkts {
				if _, ok := p.(*rtcp.PictureLossIndication); ok {
					keyframeWanted.Store(true)
				}
			}
		}
	}()
	resp := do(t, http.MethodPost, base+"/whip/"+room, testKey, "application/sdp", rtctest.Offer(t, pc, nil))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("WHIP POST: %d %s", resp.StatusCode, readAll(t, resp))
	}
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, "/whip/"+room+"/") {
		t.Fatalf("Location = %q", loc)
	}
	if !strings.Contains(resp.Header.Get("Link"), `rel="ice-server"`) {
		t.Fatalf("no ice-server Link header: %q", resp.Header.Values("Link"))
	}
	rtctest.SetAnswer(t, pc, readAll(t, resp))
	rtctest.WaitConnected(t, pc)
	return video, audio, keyframeWanted, loc
}

// play starts a WHEP session that receives audio and video.
func play(t *testing.T, base, room string) (*webrtc.PeerConnection, *rtctest.Collector, string) {
	t.Helper()
	pc := rtctest.NewPeer(t, rtctest.Options{})
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	got := rtctest.Collect(pc)
	resp := do(t, http.MethodPost, base+"/whep/"+room, testKey, "application/sdp", rtctest.Offer(t, pc, nil))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("WHEP POST: %d %s", resp.StatusCode, readAll(t, resp))
	}
	rtctest.SetAnswer(t, pc, readAll(t, resp))
	rtctest.WaitConnected(t, pc)
	return pc, got, resp.Header.Get("Location")
}

// stream sends media until cond holds, with keyframes when asked for.
func stream(t *testing.T, video, audio *webrtc.TrackLocalStaticRTP, keyframe *atomic.Bool, what string, cond func() bool) {
	t.Helper()
	seq := uint16(1)
	aseq := uint16(1)
	rtctest.WaitFor(t, what, func() bool {
		key := keyframe.Swap(false)
		keyEvery := 0
		if key {
			keyEvery = 1
		}
		seq = rtctest.SendVideo(t, video, seq, 1, 2, keyEvery)
		aseq = rtctest.SendAudio(t, audio, aseq, 2)
		return cond()
	})
}

func TestPlayerBeforePublisherGetsMediaWithoutRenegotiation(t *testing.T) {
	srv, h := newServer(t)
	pc, got, _ := play(t, srv.URL, "lobby")
	var signalingChanges atomic.Int32
	pc.OnSignalingStateChange(func(webrtc.SignalingState) { signalingChanges.Add(1) })

	video, audio, keyframe, _ := publish(t, srv.URL, "lobby")
	stream(t, video, audio, keyframe, "video and audio at the early player", func() bool {
		return got.Count(webrtc.RTPCodecTypeVideo) > 5 && got.Count(webrtc.RTPCodecTypeAudio) > 5
	})
	if first := got.Packets(webrtc.RTPCodecTypeVideo)[0]; !rtctest.IsVP8Keyframe(first) {
		t.Fatal("the player's video did not start on a keyframe")
	}
	if signalingChanges.Load() != 0 {
		t.Fatal("the player was renegotiated")
	}
	if h.Sessions() != 2 {
		t.Fatalf("%d sessions, want 2", h.Sessions())
	}
}

func TestLatePlayerIsSentAKeyframe(t *testing.T) {
	srv, _ := newServer(t)
	video, audio, keyframe, _ := publish(t, srv.URL, "lobby")
	// The publisher has been streaming inter frames for a while...
	seq := rtctest.SendVideo(t, video, 1, 20, 1, 0)
	// ...when a player arrives: the server must ask the publisher for a
	// keyframe, and the player starts on it.
	_, got, _ := play(t, srv.URL, "lobby")
	rtctest.WaitFor(t, "a keyframe request for the late player", func() bool {
		seq = rtctest.SendVideo(t, video, seq, 1, 1, 0)
		return keyframe.Load()
	})
	stream(t, video, audio, keyframe, "video at the late player", func() bool {
		return got.Count(webrtc.RTPCodecTypeVideo) > 0
	})
	if first := got.Packets(webrtc.RTPCodecTypeVideo)[0]; !rtctest.IsVP8Keyframe(first) {
		t.Fatal("the late player started on an inter frame")
	}
}

func TestAuthorization(t *testing.T) {
	srv, _ := newServer(t)
	now := time.Now()
	tests := []struct {
		name   string
		token  string
		status int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"wrong key", "not-the-key-0123456789", http.StatusUnauthorized},
		{"token for this room", NewToken(testKey, "lobby", time.Minute, now), http.StatusBadRequest},
		{"token for any room", NewToken(testKey, "*", time.Minute, now), http.StatusBadRequest},
		{"token for another room", NewToken(testKey, "other", time.Minute, now), http.StatusUnauthorized},
		{"expired token", NewToken(testKey, "lobby", -time.Second, now), http.StatusUnauthorized},
		{"token signed with another key", NewToken("another-key-0123456789", "lobby", time.Minute, now), http.StatusUnauthorized},
		{"tampered token", strings.Replace(NewToken(testKey, "lobby", time.Minute, now), "lobby", "lobbx", 1), http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A body that is not SDP: past authorization it is refused
			// with 400, so 400 proves the token was accepted.
			resp := do(t, http.MethodPost, srv.URL+"/whip/lobby", tt.token, "application/sdp", "not sdp")
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, readAll(t, resp))
			}
		})
	}
}

func TestBadRequestsGetStableCodes(t *testing.T) {
	srv, _ := newServer(t)
	tests := []struct {
		name, method, path, contentType, body string
		status                                int
		code                                  string
	}{
		{"wrong content type", "POST", "/whip/r", "text/plain", "v=0", 415, "unsupported_media_type"},
		{"malformed sdp", "POST", "/whip/r", "application/sdp", "v=0\r\nm=audio", 400, "bad_sdp"},
		{"oversized", "POST", "/whep/r", "application/sdp", strings.Repeat("a", 70000), 413, "too_large"},
		{"unknown session", "DELETE", "/whip/r/nope", "", "", 404, "not_found"},
		{"no room", "POST", "/whip/", "application/sdp", "", 404, "not_found"},
		{"method", "GET", "/whip/r", "", "", 405, "method_not_allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := do(t, tt.method, srv.URL+tt.path, testKey, tt.contentType, tt.body)
			var body errorBody
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatalf("error body is not JSON: %v", err)
			}
			if resp.StatusCode != tt.status || body.Code != tt.code {
				t.Fatalf("got %d %q, want %d %q (%s)", resp.StatusCode, body.Code, tt.status, tt.code, body.Message)
			}
		})
	}
}

func TestPatchAndDelete(t *testing.T) {
	srv, h := newServer(t)
	_, _, _, loc := publish(t, srv.URL, "lobby")

	trickle := "a=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n"
	if resp := do(t, http.MethodPatch, srv.URL+loc, testKey, "application/trickle-ice-sdpfrag", trickle); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("trickle PATCH: %d %s", resp.StatusCode, readAll(t, resp))
	}
	restart := "a=ice-ufrag:newufrag\r\na=ice-pwd:newpasswordnewpasswordnew1\r\n"
	resp := do(t, http.MethodPatch, srv.URL+loc, testKey, "application/trickle-ice-sdpfrag", restart)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("restart PATCH: %d %s", resp.StatusCode, readAll(t, resp))
	}
	if frag := readAll(t, resp); !strings.Contains(frag, "a=ice-ufrag:") || !strings.Contains(frag, "a=candidate:") {
		t.Fatalf("restart answer lacks credentials or candidates:\n%s", frag)
	}
	if resp := do(t, http.MethodDelete, srv.URL+loc, testKey, "", ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE: %d", resp.StatusCode)
	}
	rtctest.WaitFor(t, "the session to go", func() bool { return h.Sessions() == 0 })
	if resp := do(t, http.MethodDelete, srv.URL+loc, testKey, "", ""); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("second DELETE: %d", resp.StatusCode)
	}
}

func TestCORS(t *testing.T) {
	srv, _ := newServer(t)
	for _, tt := range []struct {
		origin string
		allow  bool
	}{{"https://console.example.com", true}, {"https://evil.example.com", false}} {
		req, _ := http.NewRequest(http.MethodOptions, srv.URL+"/whip/lobby", nil)
		req.Header.Set("Origin", tt.origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		got := resp.Header.Get("Access-Control-Allow-Origin") == tt.origin
		if got != tt.allow || resp.StatusCode != http.StatusNoContent {
			t.Fatalf("origin %s: allowed=%v status=%d", tt.origin, got, resp.StatusCode)
		}
		if tt.allow && !strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "Location") {
			t.Fatal("Location is not exposed to the page")
		}
	}
}

// TestPublisherChangeIsASeamlessSwitchForThePlayer: when the room's
// publisher changes (an agent transfers the call), the player's track goes
// on with the same SSRC and the next sequence number, starting the new
// source on a keyframe, without renegotiation.
func TestPublisherChangeIsASeamlessSwitchForThePlayer(t *testing.T) {
	srv, _ := newServer(t)
	pc, got, _ := play(t, srv.URL, "desk")
	var renegotiated atomic.Bool
	pc.OnSignalingStateChange(func(webrtc.SignalingState) { renegotiated.Store(true) })

	videoA, audioA, keyA, locA := publish(t, srv.URL, "desk")
	stream(t, videoA, audioA, keyA, "the first publisher's video", func() bool {
		return got.Count(webrtc.RTPCodecTypeVideo) > 10
	})
	if resp := do(t, http.MethodDelete, srv.URL+locA, testKey, "", ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE: %d", resp.StatusCode)
	}
	before := got.Count(webrtc.RTPCodecTypeVideo)
	videoB, audioB, keyB, _ := publish(t, srv.URL, "desk")
	stream(t, videoB, audioB, keyB, "the second publisher's video", func() bool {
		return got.Count(webrtc.RTPCodecTypeVideo) > before+10
	})

	pkts := got.Packets(webrtc.RTPCodecTypeVideo)
	last, next := pkts[before-1], pkts[before]
	if next.SSRC != last.SSRC {
		t.Fatal("the player's SSRC changed with the publisher")
	}
	if next.SequenceNumber != last.SequenceNumber+1 {
		t.Fatalf("sequence jumped from %d to %d at the switch", last.SequenceNumber, next.SequenceNumber)
	}
	if d := next.Timestamp - last.Timestamp; d == 0 || d > 1<<31 {
		t.Fatalf("timestamp went from %d to %d at the switch", last.Timestamp, next.Timestamp)
	}
	if !rtctest.IsVP8Keyframe(next) {
		t.Fatal("the new source did not start on a keyframe")
	}
	if renegotiated.Load() {
		t.Fatal("the player was renegotiated")
	}
}
