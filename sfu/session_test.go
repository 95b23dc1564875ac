package sfu

import (
	"bytes"
	"errors"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/avs/avs/internal/rtctest"
)

// layerOf reads the layer marker the simulcast test puts after the VP8 test payload header.
func layerOf(p *rtp.Packet) int { return int(p.Payload[5]) }

// simulcastCamera publishes three VP8 layers (q, h, f) into room as
// "camera", each packet marked with its layer, and answers keyframe
// requests. It returns the function that sends one frame on every layer.
func simulcastCamera(t *testing.T, room *Room) func() {
	t.Helper()
	pubP, _ := room.Join(ParticipantOptions{ID: "camera"})

	pc := newClientPC(t, nil)
	var layers [3]*webrtc.TrackLocalStaticRTP
	for i, rid := range []string{"q", "h", "f"} {
		tr, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "video", "cam", webrtc.WithRTPStreamID(rid))
		if err != nil {
			t.Fatal(err)
		}
		layers[i] = tr
	}
	sender, err := pc.AddTrack(layers[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers[1:] {
		if err := sender.AddEncoding(l); err != nil {
			t.Fatal(err)
		}
	}
	var keyframeWanted atomic.Bool
	go func() {
		for {
			pkts, _, err := sender.ReadRTCP()
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
	answer, err := pubP.Offer(offerAll(t, pc, nil))
	if err != nil {
		t.Fatal(err)
	}
	setAnswer(t, pc, answer)
	waitConnected(t, pc)

	// A pion sender leaves the mid and rid header extensions to the
	// application, which browsers add by themselves.
	var midID, ridID uint8
	for _, e := range sender.GetParameters().HeaderExtensions {
		switch e.URI {
		case sdp.SDESMidURI:
			midID = uint8(e.ID)
		case sdp.SDESRTPStreamIDURI:
			ridID = uint8(e.ID)
		}
	}
	mid := ""
	for _, tr := range pc.GetTransceivers() {
		if tr.Sender() == sender {
			mid = tr.Mid()
		}
	}
	frame := 0
	seqs := [3]uint16{100, 20000, 40000}
	sendFrame := func() {
		key := frame%30 == 0 || keyframeWanted.Swap(false)
		for i, l := range layers {
			for part := range 2 {
				payload := vp8Payload(key, frame, part)
				payload[5] = byte(i)
				pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seqs[i], Timestamp: uint32(frame*3000 + i*7777), Marker: part == 1}, Payload: payload}
				seqs[i]++
				_ = pkt.Header.SetExtension(midID, []byte(mid))
				_ = pkt.Header.SetExtension(ridID, []byte(l.RID()))
				if err := l.WriteRTP(pkt); err != nil {
					t.Fatalf("layer %d: %v", i, err)
				}
			}
		}
		frame++
		time.Sleep(3 * time.Millisecond)
	}
	return sendFrame
}

func TestSimulcastLayerSwitchOnKeyframe(t *testing.T) {
	// An estimate that carries every layer, so the request alone decides.
	s := newTestSFU(t, func(c *Config) { c.InitialBitrate, c.MaxBitrate = 20_000_000, 20_000_000 })
	room, _ := s.Room("r1", RoomOptions{})
	viewer, sub := joinDynamic(t, room, "viewer", nil)
	sendFrame := simulcastCamera(t, room)
	receivedLayer := func(want int) func() bool {
		return func() bool {
			sendFrame()
			got := sub.snapshot(webrtc.RTPCodecTypeVideo)
			return len(got) > 0 && layerOf(got[len(got)-1]) == want
		}
	}
	waitFor(t, "the high layer", receivedLayer(2))
	viewer.SetMaxQuality(0)
	waitFor(t, "a switch to the low layer", receivedLayer(0))
	viewer.SetMaxQuality(2)
	waitFor(t, "a switch back up", receivedLayer(2))

	got := sub.snapshot(webrtc.RTPCodecTypeVideo)
	checkSequence(t, got)
	switches := 0
	for i := 1; i < len(got); i++ {
		if layerOf(got[i]) == layerOf(got[i-1]) {
			continue
		}
		switches++
		if got[i].Payload[1]&0x01 != 0 || got[i].Payload[0]&0x10 == 0 {
			t.Fatalf("switch to layer %d at packet %d did not start on a keyframe", layerOf(got[i]), i)
		}
		if d := got[i].Timestamp - got[i-1].Timestamp; d == 0 || d > 90000 {
			t.Fatalf("timestamp jumped by %d at the switch", d)
		}
	}
	if switches < 2 {
		t.Fatalf("saw %d layer switches, want at least 2", switches)
	}
	// The layers' SSRCs were not in the SDP: pion read their first packets
	// itself to find the rids, and the readers still handed over to the taps.
	room.mu.Lock()
	pubs := slices.Clone(room.publications)
	room.mu.Unlock()
	var tapped int
	for _, pub := range pubs {
		for q := range maxLayers {
			if l := pub.layer(q); l != nil && pub.Kind() == webrtc.RTPCodecTypeVideo {
				if !l.tapped.Load() {
					t.Fatalf("simulcast layer %q not read through its tap", l.rid)
				}
				tapped++
			}
		}
	}
	if tapped != 3 {
		t.Fatalf("%d tapped video layers, want 3", tapped)
	}
}

func TestSimulcastLayerFollowsBandwidthEstimate(t *testing.T) {
	// A subscriber whose estimate cannot carry the upper layers (each sends
	// about 1 Mbit/s here) is moved to the lowest one without asking.
	s := newTestSFU(t, func(c *Config) { c.InitialBitrate, c.MaxBitrate = 100_000, 100_000 })
	room, _ := s.Room("r1", RoomOptions{})
	_, sub := joinDynamic(t, room, "viewer", nil)
	sendFrame := simulcastCamera(t, room)
	waitFor(t, "the low layer chosen by the estimate", func() bool {
		sendFrame()
		got := sub.snapshot(webrtc.RTPCodecTypeVideo)
		return len(got) > 0 && layerOf(got[len(got)-1]) == 0
	})
}

func TestVoiceOnly(t *testing.T) {
	tests := []struct {
		name     string
		room     RoomOptions
		customer ParticipantOptions
	}{
		{"room", RoomOptions{VoiceOnly: true}, ParticipantOptions{ID: "customer"}},
		{"participant", RoomOptions{}, ParticipantOptions{ID: "customer", VoiceOnly: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestSFU(t)
			room, _ := s.Room("call", tt.room)
			customer, sub := joinDynamicWith(t, room, tt.customer, nil)

			// The customer publishes audio and asks to receive video: the
			// video section must be rejected.
			pc := newClientPC(t, nil)
			audio, _ := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus}, "audio", "mic")
			if _, err := pc.AddTrack(audio); err != nil {
				t.Fatal(err)
			}
			if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
				t.Fatal(err)
			}
			answer, err := customer.Offer(offerAll(t, pc, nil))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(answer, "m=video 0 ") {
				t.Fatalf("video section was not rejected:\n%s", answer)
			}
			setAnswer(t, pc, answer)
			waitConnected(t, pc)

			// The agent publishes audio and, where the room allows it, video.
			agentP, _ := room.Join(ParticipantOptions{ID: "agent"})
			agentPC := newClientPC(t, nil)
			agentAudio, _ := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus}, "audio", "agent")
			agentVideo, _ := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "video", "agent")
			if _, err := agentPC.AddTrack(agentAudio); err != nil {
				t.Fatal(err)
			}
			if !tt.room.VoiceOnly {
				if _, err := agentPC.AddTrack(agentVideo); err != nil {
					t.Fatal(err)
				}
			}
			agentAnswer, err := agentP.Offer(offerAll(t, agentPC, nil))
			if err != nil {
				t.Fatal(err)
			}
			setAnswer(t, agentPC, agentAnswer)
			waitConnected(t, agentPC)
			seq := uint16(0)
			waitFor(t, "the agent's audio at the customer", func() bool {
				for range 5 {
					_ = agentAudio.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(seq) * 960}, Payload: []byte{0xfc, byte(seq)}})
					seq++
				}
				sendVideo(t, agentVideo, seq, 3, 1, 1)
				return len(sub.snapshot(webrtc.RTPCodecTypeAudio)) > 0
			})
			if n := len(sub.snapshot(webrtc.RTPCodecTypeVideo)); n != 0 {
				t.Fatalf("%d video packets reached a voiceOnly customer", n)
			}
			sub.mu.Lock()
			for _, offer := range sub.offers {
				if strings.Contains(offer, "m=video") {
					t.Errorf("a voiceOnly customer was offered video:\n%s", offer)
				}
			}
			sub.mu.Unlock()
			if _, _, videoTracks := customer.traffic(); videoTracks != 0 {
				t.Fatalf("%d video tracks counted for a voiceOnly customer", videoTracks)
			}
		})
	}
}

func TestICERestartKeepsMediaFlowing(t *testing.T) {
	st := startStreaming(t, streamOptions{})
	oldUfrag := iceUfrag(st.pub.pc.RemoteDescription().SDP)
	answer, err := st.camera.Offer(offerAll(t, st.pub.pc, &webrtc.OfferOptions{ICERestart: true}))
	if err != nil {
		t.Fatalf("ICE restart offer: %v", err)
	}
	if iceUfrag(answer) == oldUfrag {
		t.Fatal("server kept its ICE credentials across a restart")
	}
	setAnswer(t, st.pub.pc, answer)
	n := st.sub.Count(webrtc.RTPCodecTypeVideo)
	st.waitVideo(t, "video after restart", func() bool { return st.sub.Count(webrtc.RTPCodecTypeVideo) > n+20 })
}

func iceUfrag(sdp string) string {
	for _, line := range strings.Split(sdp, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "a=ice-ufrag:"); ok {
			return v
		}
	}
	return ""
}

func TestBadOffersAreRefusedWithAClearError(t *testing.T) {
	s := newTestSFU(t, func(c *Config) { c.MaxTracksPerParticipant = 2 })
	manyTracks := func() string {
		pc := newClientPC(t, nil)
		for range 3 {
			if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio); err != nil {
				t.Fatal(err)
			}
		}
		offer, _ := pc.CreateOffer(nil)
		return offer.SDP
	}
	videoOnly := func() string {
		pc := newClientPC(t, nil)
		if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo); err != nil {
			t.Fatal(err)
		}
		offer, _ := pc.CreateOffer(nil)
		return offer.SDP
	}
	tests := []struct {
		name  string
		room  RoomOptions
		offer string
		want  error
	}{
		{"garbage", RoomOptions{}, "this is not sdp", ErrBadSDP},
		{"empty", RoomOptions{}, "", ErrBadSDP},
		{"truncated", RoomOptions{}, "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\nm=audio", ErrBadSDP},
		{"too many tracks", RoomOptions{}, manyTracks(), ErrTooManyTracks},
		{"no usable codec", RoomOptions{VoiceOnly: true}, videoOnly(), ErrNoMedia},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			room, _ := s.Room("bad"+string(rune('a'+i)), tt.room)
			p, err := room.Join(ParticipantOptions{ID: "x"})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			if _, err := p.Offer(tt.offer); !errors.Is(err, tt.want) {
				t.Fatalf("Offer error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestGarbageRTCPIsDroppedAndForwardingGoesOn(t *testing.T) {
	st := startStreaming(t, streamOptions{})
	garbage := make([]byte, 1200)
	for i := range garbage {
		garbage[i] = byte(i * 7)
	}
	garbage[0] = 0x80 // version 2, so it passes the demultiplexer as RTCP
	garbage[1] = 200
	for _, pc := range []*webrtc.PeerConnection{st.sub.pc, st.pub.pc} {
		for range 20 {
			raw := rtcp.RawPacket(garbage)
			_ = pc.WriteRTCP([]rtcp.Packet{&raw})
		}
	}
	n := st.sub.Count(webrtc.RTPCodecTypeVideo)
	st.waitVideo(t, "video after garbage RTCP", func() bool { return st.sub.Count(webrtc.RTPCodecTypeVideo) > n+10 })

}

func TestSilentPeerIsRemovedAndItsTracksFreed(t *testing.T) {
	raw, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = raw.Close() })
	conn := &rtctest.VanishingConn{PacketConn: raw}
	st := startStreaming(t, streamOptions{cameraPeer: rtctest.NewPeer(t, rtctest.Options{Conn: conn})})
	room := st.room
	conn.Gone.Store(true)
	waitFor(t, "the silent publisher to be removed", func() bool {
		return room.Participant("camera") == nil
	})
	waitFor(t, "its track to be withdrawn from the viewer", func() bool {
		v := room.Participant("viewer")
		v.mu.Lock()
		defer v.mu.Unlock()
		return len(v.downTracks) == 0
	})
}

func TestRoomLimitedToOneVideoCodec(t *testing.T) {
	tests := []struct {
		room, mime, fmtp, other string
		key, inter              []byte
	}{
		{"H264", webrtc.MimeTypeH264, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f", "VP8",
			[]byte{0x65, 0x88, 0x84}, []byte{0x41, 0x9a, 0x00}}, // IDR and non-IDR slices
		{"VP9", webrtc.MimeTypeVP9, "profile-id=0", "VP8",
			[]byte{0x88, 0x01}, []byte{0xc8, 0x02}}, // start of a key and of an inter frame
		{"VP8", webrtc.MimeTypeVP8, "", "VP9",
			vp8Payload(true, 0, 0), vp8Payload(false, 1, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.room, func(t *testing.T) {
			s := newTestSFU(t)
			room, _ := s.Room("mini", RoomOptions{VideoCodec: strings.ToLower(tt.room)})
			_, sub := joinDynamic(t, room, "agent", nil)
			pubP, _ := room.Join(ParticipantOptions{ID: "customer"})

			// The client offers every codec it has.
			pc := newClientPC(t, nil)
			track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: tt.mime, ClockRate: 90000, SDPFmtpLine: tt.fmtp}, "video", "cam")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := pc.AddTrack(track); err != nil {
				t.Fatal(err)
			}
			offer := offerAll(t, pc, nil)
			if !strings.Contains(offer, tt.other) {
				t.Fatalf("the client did not offer %s", tt.other)
			}
			answer, err := pubP.Offer(offer)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(answer, tt.other+"/90000") || !strings.Contains(answer, tt.room+"/90000") {
				t.Fatalf("answer of a %s room:\n%s", tt.room, answer)
			}
			setAnswer(t, pc, answer)
			waitConnected(t, pc)
			seq := uint16(1)
			waitFor(t, tt.room+" at the agent", func() bool {
				for i := range 10 {
					payload := tt.inter
					if i == 0 {
						payload = tt.key
					}
					_ = track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(seq) * 3000, Marker: true}, Payload: payload})
					seq++
				}
				return len(sub.snapshot(webrtc.RTPCodecTypeVideo)) > 0
			})
			remote := <-sub.Tracks
			if !strings.EqualFold(remote.Codec().MimeType, tt.mime) {
				t.Fatalf("agent received %s", remote.Codec().MimeType)
			}
			if first := sub.snapshot(webrtc.RTPCodecTypeVideo)[0]; !bytes.Equal(first.Payload, tt.key) {
				t.Fatalf("agent's video started on %x, not the keyframe", first.Payload[:2])
			}
		})
	}
}

func TestPublicIPReplacesHostCandidates(t *testing.T) {
	s := newTestSFU(t, func(c *Config) { c.PublicIPs = []string{"203.0.113.7"}; c.TCPListen = "" })
	room, _ := s.Room("nat", RoomOptions{})
	p, _ := room.Join(ParticipantOptions{ID: "camera"})
	pc := newClientPC(t, nil)
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	answer, err := p.Offer(offerAll(t, pc, nil))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(answer, " 203.0.113.7 ") || strings.Contains(answer, " 127.0.0.1 ") {
		t.Fatalf("the answer does not announce only the public address:\n%s", answer)
	}
}

func TestWildcardListenGathersNoLinkLocalCandidates(t *testing.T) {
	var linkLocal bool
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.IsLinkLocalUnicast() && n.IP.To4() == nil {
			linkLocal = true
		}
	}
	if !linkLocal {
		t.Skip("no link-local IPv6 address on this machine: nothing to leave out")
	}
	s := newTestSFU(t, func(c *Config) { c.UDPListen = net.JoinHostPort("", strconv.Itoa(freeUDPPort(t))) })
	room, _ := s.Room("ll", RoomOptions{})
	p, _ := room.Join(ParticipantOptions{ID: "camera"})
	pc := newClientPC(t, nil)
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Offer(offerAll(t, pc, nil)); err != nil {
		t.Fatal(err)
	}
	// Pion leaves link-local addresses out of the SDP but would still
	// gather them, each with a reader goroutine and buffers; the server's
	// own statistics list what it gathered.
	p.mu.Lock()
	server := p.pub
	p.mu.Unlock()
	var gathered int
	for _, st := range server.GetStats() {
		c, ok := st.(webrtc.ICECandidateStats)
		if !ok || c.Type != webrtc.StatsTypeLocalCandidate {
			continue
		}
		gathered++
		if ip := net.ParseIP(c.IP); ip != nil && ip.IsLinkLocalUnicast() {
			t.Fatalf("link-local candidate gathered: %s %s", c.Protocol, c.IP)
		}
	}
	if gathered == 0 {
		t.Fatal("no local candidates in the server's statistics")
	}
}

// freeUDPPort finds a port no one listens on, for a wildcard listener
// (which needs a fixed port to open one socket per address).
func freeUDPPort(t *testing.T) int {
	t.Helper()
	free, err := net.ListenUDP("udp", &net.UDPAddr{})
	if err != nil {
		t.Fatal(err)
	}
	defer free.Close()
	return free.LocalAddr().(*net.UDPAddr).Port
}

func TestWildcardListenForwards(t *testing.T) {
	// One socket per local address, each a udpconn socket: media reaches
	// the subscriber over the machine's own non-loopback addresses.
	s := newTestSFU(t, func(c *Config) { c.UDPListen = net.JoinHostPort("", strconv.Itoa(freeUDPPort(t))) })
	_, _, sub, _ := cameraToViewer(t, s)
	checkSequence(t, sub.snapshot(webrtc.RTPCodecTypeVideo))
	if st := s.apis.fast.Stats(); st.Direct == 0 {
		t.Fatalf("no packet took the fast path through the per-address sockets: %+v", st)
	}
}

func TestFastPathSessionsEndWithTheirConnections(t *testing.T) {
	// Each connection's keys are recovered from its handshake, and the
	// router forgets them when the connection goes.
	s := newTestSFU(t)
	pubP, _, _, _ := cameraToViewer(t, s)
	if n := s.apis.fast.Sessions(); n != 2 {
		t.Fatalf("%d peers routed, want 2 (the camera's and the viewer's connections)", n)
	}
	for _, id := range pubP.room.Participants() {
		_ = pubP.room.Participant(id).Close()
	}
	waitFor(t, "the router to forget both connections", func() bool { return s.apis.fast.Sessions() == 0 })
}
