package e2e

import (
	"encoding/json"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/avs/avs/internal/rtctest"
)

// party is one side's media as a browser would run it (docs/protocol.md
// §6): "pub" publishes a microphone and a camera, "sub" answers the
// server's offers and receives the other side.
type party struct {
	pub, sub *webrtc.PeerConnection
	got      *rtctest.Collector
	stop     chan struct{}
	wg       sync.WaitGroup
	// ending is set once the test hangs up the call.
	ending atomic.Bool
}

// startMedia joins c's media room and starts publishing synthetic Opus
// and VP8; it runs until the test ends.
func startMedia(t *testing.T, c *client, room string) *party {
	t.Helper()
	p := &party{stop: make(chan struct{})}
	// Server offers are taken from here on by the answering goroutine.
	c.mu.Lock()
	c.mediaOn = true
	c.mu.Unlock()
	var join struct {
		Room          string `json:"room"`
		ParticipantID string `json:"participantId"`
	}
	decode(t, c.mustReply("media.join", nil).Data, &join)
	if join.Room != room || join.ParticipantID == "" {
		t.Fatalf("media.join %+v, want room %s", join, room)
	}

	p.sub = rtctest.NewPeer(t, rtctest.Options{})
	p.got = rtctest.Collect(p.sub)
	p.pub = rtctest.NewPeer(t, rtctest.Options{})
	audio, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "mic")
	if err != nil {
		t.Fatal(err)
	}
	video, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", "cam")
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range []*webrtc.TrackLocalStaticRTP{audio, video} {
		sender, err := p.pub.AddTrack(tr)
		if err != nil {
			t.Fatal(err)
		}
		// Reading RTCP lets the interceptors see the SFU's feedback; it
		// ends when the PeerConnection closes.
		go func() {
			for {
				if _, _, err := sender.ReadRTCP(); err != nil {
					return
				}
			}
		}()
	}
	// Stop the goroutines before the PeerConnections close (cleanups run
	// last registered first).
	t.Cleanup(func() {
		close(p.stop)
		p.wg.Wait()
	})
	p.wg.Add(2)
	go p.answer(t, c)
	go p.send(audio, video)

	var answer struct {
		SDP string `json:"sdp"`
	}
	decode(t, c.mustReply("media.offer", map[string]string{"sdp": rtctest.Offer(t, p.pub, nil)}).Data, &answer)
	rtctest.SetAnswer(t, p.pub, answer.SDP)
	return p
}

// answer answers each server offer on sub, as a browser's client does.
func (p *party) answer(t *testing.T, c *client) {
	defer p.wg.Done()
	for {
		select {
		case <-p.stop:
			return
		case <-c.done:
			return
		case m := <-c.offers:
			var offer struct {
				SDP string `json:"sdp"`
			}
			if err := json.Unmarshal(m.Data, &offer); err != nil {
				t.Errorf("server offer: %v", err)
				return
			}
			// fail reports an error unless the call is ending: then the
			// server closes the media session (and its DTLS close closes
			// sub here), so a last offer may find either side gone.
			fail := func(format string, args ...any) {
				if !p.ending.Load() {
					t.Errorf(format, args...)
				}
			}
			sdp, err := rtctest.Answer(t, p.sub, offer.SDP)
			if err != nil {
				fail("answering the server's offer: %v", err)
				return
			}
			r, err := c.request("media.answer", map[string]string{"sdp": sdp})
			if err != nil {
				select {
				case <-c.done: // the socket went away meanwhile
				default:
					fail("media.answer: %v", err)
				}
				return
			}
			if r.Type != "reply" {
				fail("media.answer: %+v", r.Error)
				return
			}
		}
	}
}

// send paces a microphone (50 packets a second) and a camera (25 frames
// a second, a keyframe every ten) as a real client would.
func (p *party) send(audio, video *webrtc.TrackLocalStaticRTP) {
	defer p.wg.Done()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var aseq, vseq uint16
	for n := 0; ; n++ {
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
		aseq++
		_ = audio.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: aseq, Timestamp: uint32(aseq) * 960},
			Payload: []byte{0xfc, byte(aseq), 0xff, 0xfe}})
		if n%2 == 0 {
			frame := n / 2
			vseq++
			_ = video.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: vseq, Timestamp: uint32(frame) * 3600, Marker: true},
				Payload: rtctest.VP8Payload(frame%10 == 0, frame, 0)})
		}
	}
}

// TestMediaBothWays places a call from a pion customer who publishes audio
// and video while still queued; a pion agent answers and publishes too;
// each receives the other's audio and video through the SFU. The
// customer's signaling then reconnects and the media goes on.
func TestMediaBothWays(t *testing.T) {
	s := boot(t, options{})
	ten := s.createTenant("acme", "", surveySettings)
	ag := s.createAgent(ten.ID, "ann")
	agent := dial(t, s.ws)
	agent.mustReply("agent.login", map[string]string{"tenantKey": ten.Key, "username": ag.Username, "password": ag.Password})
	agent.mustReply("agent.status", map[string]string{"status": "away"})

	cust, auth := s.customer(entry(ten.Key, "crm-m", "biz-m", 1))
	call := cust.place()
	cust.push("queue.position", forCall(call.CallID))
	customer := startMedia(t, cust, call.Room)
	rtctest.WaitConnected(t, customer.pub)
	if rec := s.call(call.CallID); rec.State != "queued" {
		t.Fatalf("the customer published while its call was %q, want queued", rec.State)
	}

	agent.mustReply("agent.status", map[string]string{"status": "online"})
	agent.push("call.ringing", forCall(call.CallID))
	var ans struct {
		Room string `json:"room"`
	}
	decode(t, agent.mustReply("call.answer", map[string]int64{"callId": call.CallID}).Data, &ans)
	if ans.Room != call.Room {
		t.Fatalf("agent answered into room %q, the customer is in %q", ans.Room, call.Room)
	}
	cust.push("call.connected", forCall(call.CallID))
	console := startMedia(t, agent, call.Room)

	both := func(what string, p *party, min int) {
		t.Helper()
		eventually(t, what, func() bool {
			return p.got.Count(webrtc.RTPCodecTypeAudio) >= min && p.got.Count(webrtc.RTPCodecTypeVideo) >= min
		})
	}
	both("the customer's audio and video at the agent", console, 20)
	both("the agent's audio and video at the customer", customer, 20)
	for _, p := range []*party{console, customer} {
		keyframe := false
		for _, pkt := range p.got.Packets(webrtc.RTPCodecTypeVideo) {
			keyframe = keyframe || rtctest.IsVP8Keyframe(pkt)
		}
		if !keyframe {
			t.Fatal("video arrived without a keyframe")
		}
	}

	// Media does not depend on the signaling socket.
	seen := cust.seq()
	cust.drop()
	before := console.got.Count(webrtc.RTPCodecTypeVideo)
	again := dial(t, s.ws)
	again.mustReply("session.resume", map[string]any{"resumeToken": auth.Session.ResumeToken, "lastSeq": seen})
	both("media after the customer's signaling reconnected", console, before+20)

	customer.ending.Store(true)
	console.ending.Store(true)
	again.mustReply("call.hangup", map[string]int64{"callId": call.CallID})
	if e := again.ended(call.CallID); e.ResultCode != 4 {
		t.Fatalf("resultCode %d", e.ResultCode)
	}
	agent.push("call.ended", forCall(call.CallID))
	// The call is over: its media sessions are closed.
	eventually(t, "the agent's media session closed", func() bool {
		m, err := agent.request("media.offer", map[string]string{"sdp": "v=0"})
		return err == nil && m.Type == "error" && m.Error.Code == "no_call"
	})
}
