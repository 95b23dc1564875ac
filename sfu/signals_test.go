package sfu

import (
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/avs/avs/internal/rtctest"
)

func TestTracksAddedAndRemovedLaterRenegotiate(t *testing.T) {
	st := startStreaming(t, streamOptions{})
	pub, pubP, sub := st.pub, st.camera, st.sub
	// The publisher adds a microphone: a new offer on its connection, and
	// a server offer with the new track for the viewer.
	audio, _ := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus}, "mic", "cam")
	sender, err := pub.pc.AddTrack(audio)
	if err != nil {
		t.Fatal(err)
	}
	answer, err := pubP.Offer(offerAll(t, pub.pc, nil))
	if err != nil {
		t.Fatal(err)
	}
	setAnswer(t, pub.pc, answer)
	aseq := uint16(1)
	waitFor(t, "the added audio at the viewer", func() bool {
		aseq = rtctest.SendAudio(t, audio, aseq, 5)
		time.Sleep(10 * time.Millisecond)
		return sub.Count(webrtc.RTPCodecTypeAudio) > 0
	})

	// It takes the microphone away again: the viewer's offer drops it.
	if err := pub.pc.RemoveTrack(sender); err != nil {
		t.Fatal(err)
	}
	answer, err = pubP.Offer(offerAll(t, pub.pc, nil))
	if err != nil {
		t.Fatal(err)
	}
	setAnswer(t, pub.pc, answer)
	waitFor(t, "a server offer without the audio track", func() bool {
		sub.mu.Lock()
		defer sub.mu.Unlock()
		last := sub.offers[len(sub.offers)-1]
		return len(sub.offers) >= 3 && !strings.Contains(last, "msid:camera mic")
	})
	waitFor(t, "the publication to end", func() bool {
		pubP.mu.Lock()
		defer pubP.mu.Unlock()
		return len(pubP.publications) == 1
	})
}

func TestActiveSpeakerFromAudioLevel(t *testing.T) {
	var mu sync.Mutex
	var speakers []string
	cfg := testConfig()
	s, err := New(Params{Config: cfg, Logger: testLogger(), OnActiveSpeaker: func(room, who string) {
		mu.Lock()
		speakers = append(speakers, room+"/"+who)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	room, _ := s.Room("call", RoomOptions{})
	_, _ = joinDynamic(t, room, "agent", nil)
	customer, _ := room.Join(ParticipantOptions{ID: "customer"})
	pub := newPublisher(t, customer, nil, true)
	var levelID uint8
	for _, tr := range pub.pc.GetTransceivers() {
		if tr.Kind() != webrtc.RTPCodecTypeAudio {
			continue
		}
		for _, e := range tr.Sender().GetParameters().HeaderExtensions {
			if e.URI == rtctest.AudioLevelURI {
				levelID = uint8(e.ID)
			}
		}
	}
	if levelID == 0 {
		t.Fatal("audio level extension not negotiated")
	}
	seq := uint16(0)
	waitFor(t, "the customer to become the active speaker", func() bool {
		for range 5 {
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(seq) * 960}, Payload: []byte{0xfc, 1, 2}}
			_ = pkt.Header.SetExtension(levelID, []byte{0x80 | 20}) // voice, -20 dBov
			_ = pub.audio.WriteRTP(pkt)
			seq++
		}
		time.Sleep(20 * time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		return len(speakers) > 0
	})
	if speakers[0] != "call/customer" || room.ActiveSpeaker() != "customer" {
		t.Fatalf("active speaker %v, want call/customer", speakers)
	}
}

func TestCongestionFeedbackAndEstimate(t *testing.T) {
	st := startStreaming(t, streamOptions{})
	viewer, sub := st.viewer, st.sub
	st.waitVideo(t, "TWCC feedback at the publisher", st.pub.twcc.Load)
	// What the viewer receives is numbered for its transport-wide
	// feedback, which feeds the viewer's own estimate on the server.
	var twccID uint8
	for _, tr := range sub.pc.GetTransceivers() {
		for _, e := range tr.Receiver().GetParameters().HeaderExtensions {
			if e.URI == sdp.TransportCCURI {
				twccID = uint8(e.ID)
			}
		}
	}
	got := sub.snapshot(webrtc.RTPCodecTypeVideo)
	if twccID == 0 || got[len(got)-1].GetExtension(twccID) == nil {
		t.Fatal("forwarded packets carry no transport-wide sequence number")
	}
	// The viewer's feedback on them moves its estimate: a clean path lets
	// it grow from where it started.
	initial := st.sfu.cfg.InitialBitrate
	st.waitVideo(t, "the viewer's estimate to grow on its feedback", func() bool {
		return viewer.transport.estimate.Estimate() > initial
	})
}

func TestICETCPWhenUDPIsBlocked(t *testing.T) {
	st := startStreaming(t, streamOptions{cameraPeer: rtctest.NewPeer(t, rtctest.Options{TCPOnly: true})})
	pub := st.pub
	pair, err := pub.pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil || pair.Local.Protocol != webrtc.ICEProtocolTCP {
		t.Fatalf("selected pair %v (%v) is not TCP", pair, err)
	}
}

func TestSubscribersGetSenderReports(t *testing.T) {
	st := startStreaming(t, streamOptions{})
	viewer, sub, pub, seq := st.viewer, st.sub, st.pub, st.seq
	var receiver *webrtc.RTPReceiver
	for _, tr := range sub.pc.GetTransceivers() {
		if tr.Kind() == webrtc.RTPCodecTypeVideo {
			receiver = tr.Receiver()
		}
	}
	track := <-sub.Tracks
	srs := make(chan *rtcp.SenderReport, 1)
	go func() {
		for {
			pkts, _, err := receiver.ReadRTCP()
			if err != nil {
				return
			}
			for _, p := range pkts {
				if sr, ok := p.(*rtcp.SenderReport); ok && sr.SSRC == uint32(track.SSRC()) {
					select {
					case srs <- sr:
					default:
					}
				}
			}
		}
	}()
	waitFor(t, "a sender report for the viewer's track", func() bool {
		seq = sendVideo(t, pub.video, seq, 2, 1, 0)
		return len(srs) > 0
	})
	sr := <-srs
	if sr.PacketCount == 0 || sr.NTPTime == 0 {
		t.Fatalf("empty sender report %+v", sr)
	}
	// The viewer's receiver reports come back and give the SFU its RTT.
	waitFor(t, "an RTT from the viewer's receiver reports", func() bool {
		seq = sendVideo(t, pub.video, seq, 2, 1, 0)
		viewer.mu.Lock()
		defer viewer.mu.Unlock()
		for _, dt := range viewer.downTracks {
			if dt.lastRTT.Load() > 0 {
				return true
			}
		}
		return false
	})
}

func TestServerRestartsICEWhenTheViewerDropsOff(t *testing.T) {
	s := newTestSFU(t)
	room, _ := s.Room("r1", RoomOptions{})
	raw, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = raw.Close() })
	conn := &rtctest.VanishingConn{PacketConn: raw}
	_, sub := joinDynamicOn(t, room, ParticipantOptions{ID: "viewer"}, rtctest.Options{Conn: conn})
	camera, _ := room.Join(ParticipantOptions{ID: "camera"})
	pub := newPublisher(t, camera, nil, false)
	seq := uint16(1)
	waitFor(t, "video", func() bool {
		seq = sendVideo(t, pub.video, seq, 3, 1, 1)
		return sub.Count(webrtc.RTPCodecTypeVideo) > 0
	})
	sub.mu.Lock()
	firstUfrag := iceUfrag(sub.offers[len(sub.offers)-1])
	sub.mu.Unlock()

	// The viewer's network goes away, as on a switch from Wi-Fi to 4G...
	conn.Gone.Store(true)
	waitFor(t, "a server offer that restarts ICE", func() bool {
		sub.mu.Lock()
		defer sub.mu.Unlock()
		return iceUfrag(sub.offers[len(sub.offers)-1]) != firstUfrag
	})
	// ...and comes back; the restarted connection carries video again.
	conn.Gone.Store(false)
	n := sub.Count(webrtc.RTPCodecTypeVideo)
	waitFor(t, "video after the restart", func() bool {
		seq = sendVideo(t, pub.video, seq, 3, 1, 1)
		return sub.Count(webrtc.RTPCodecTypeVideo) > n+10
	})
}
