package loadgen

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

func TestRunAgainstEcho(t *testing.T) {
	if testing.Short() {
		t.Skip("places real calls over loopback")
	}
	vp8 := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
	h264 := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
		SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"}
	tests := []struct {
		name      string
		codec     string
		serverCap webrtc.RTPCodecCapability
		voiceOnly bool
		simulcast bool
	}{
		{name: "vp8", codec: "vp8", serverCap: vp8},
		{name: "h264", codec: "h264", serverCap: h264},
		{name: "voice only", codec: "vp8", serverCap: vp8, voiceOnly: true},
		{name: "simulcast", codec: "vp8", serverCap: vp8, simulcast: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := startEcho(t, tt.serverCap)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			rep, err := Run(ctx, Config{
				ServerURL: url, Token: "test-token", Calls: 2, TWCC: true,
				Ramp: 200 * time.Millisecond, Duration: 2 * time.Second,
				Codec: tt.codec, Bitrate: 800, VoiceOnly: tt.voiceOnly, Simulcast: tt.simulcast, NACK: true,
				MediaDir: "../../testdata/media", ServerPID: os.Getpid(),
				Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
			})
			if err != nil {
				t.Fatal(err)
			}
			if rep.CallsUp != 2 || rep.CallsFailed != 0 || rep.SetupMs.N != 2 {
				t.Fatalf("calls up %d failed %d setups %d, want 2, 0, 2", rep.CallsUp, rep.CallsFailed, rep.SetupMs.N)
			}
			if rep.PacketsReceived == 0 || rep.LatencyMs.N == 0 {
				t.Fatalf("received %d packets, %d latency samples", rep.PacketsReceived, rep.LatencyMs.N)
			}
			if !tt.voiceOnly && rep.VideoLatencyMs.N == 0 {
				t.Fatal("no video latency samples")
			}
			if rep.ServerRSSMB == 0 {
				t.Fatal("no memory sample from /proc")
			}
			t.Logf("sent %d recv %d loss %.2f%% latency %+v setup %+v unmatched %d plis %d/%d",
				rep.PacketsSent, rep.PacketsReceived, rep.LossPct, rep.LatencyMs, rep.SetupMs, rep.Unmatched,
				rep.PLIsToPublishers, rep.PLIsFromPlayers)
		})
	}
}
