package turn

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// TestWebRTCThroughRelay connects two pion peers that may use relayed
// candidates only, so every media packet crosses our TURN server, and
// checks that RTP sent on a track arrives.
func TestWebRTCThroughRelay(t *testing.T) {
	c := testConfig()
	c.AllowLoopbackPeers = true
	s, reg := startServer(t, c)
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			before := metricValue(t, reg, "avs_turn_relayed_packets_total", "direction", dirToPeer)
			var urls []string
			for _, u := range s.URLs() {
				if strings.HasSuffix(u, "?transport="+transport) {
					urls = append(urls, u)
				}
			}
			now := time.Now()
			customer, agent := s.ICEServer("customer", now), s.ICEServer("agent", now)
			customer.URLs, agent.URLs = urls, urls
			runRelayedCall(t, customer, agent)
			waitFor(t, func() bool {
				return metricValue(t, reg, "avs_turn_relayed_packets_total", "direction", dirToPeer) > before
			})
		})
	}
}

func runRelayedCall(t *testing.T, sender, receiver ICEServer) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	offerer := relayOnlyPeer(t, sender)
	answerer := relayOnlyPeer(t, receiver)

	track, err := webrtc.NewTrackLocalStaticRTP(
		webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "relay-test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := offerer.AddTrack(track); err != nil {
		t.Fatal(err)
	}
	payload := []byte("relayed opus frame")
	arrived := make(chan error, 1)
	answerer.OnTrack(func(remote *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			pkt, _, err := remote.ReadRTP()
			if err != nil {
				arrived <- err
				return
			}
			if bytes.Equal(pkt.Payload, payload) {
				arrived <- nil
				return
			}
		}
	})
	exchangeSDP(t, offerer, answerer)

	// Send until the receiver reports the packet: the first ones may be
	// sent before ICE and DTLS finish and are then lost.
	ticker := time.NewTicker(20 * time.Millisecond)
	defer ticker.Stop()
	for seq := uint16(0); ; seq++ {
		select {
		case err := <-arrived:
			if err != nil {
				t.Fatalf("reading the remote track: %v", err)
			}
			assertRelayPair(t, offerer)
			return
		case <-ctx.Done():
			t.Fatalf("no RTP arrived through the relay (ICE %s / %s)",
				offerer.ICEConnectionState(), answerer.ICEConnectionState())
		case <-ticker.C:
			err := track.WriteRTP(&rtp.Packet{
				Header:  rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: seq, Timestamp: uint32(seq) * 960},
				Payload: payload,
			})
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Fatalf("WriteRTP: %v", err)
			}
		}
	}
}

func relayOnlyPeer(t *testing.T, ice ICEServer) *webrtc.PeerConnection {
	t.Helper()
	var se webrtc.SettingEngine
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeTCP4})
	se.SetICETimeouts(20*time.Second, 30*time.Second, time.Second)
	api := webrtc.NewAPI(webrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(webrtc.Configuration{
		ICETransportPolicy: webrtc.ICETransportPolicyRelay,
		ICEServers: []webrtc.ICEServer{{
			URLs: ice.URLs, Username: ice.Username, Credential: ice.Credential,
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := pc.Close(); err != nil {
			t.Errorf("closing peer connection: %v", err)
		}
	})
	return pc
}

// exchangeSDP does a non-trickle offer/answer: each description carries
// its relayed candidates.
func exchangeSDP(t *testing.T, offerer, answerer *webrtc.PeerConnection) {
	t.Helper()
	offer, err := offerer.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(offerer)
	if err := offerer.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	waitGathered(t, gathered)
	if err := answerer.SetRemoteDescription(*offerer.LocalDescription()); err != nil {
		t.Fatal(err)
	}
	answer, err := answerer.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered = webrtc.GatheringCompletePromise(answerer)
	if err := answerer.SetLocalDescription(answer); err != nil {
		t.Fatal(err)
	}
	waitGathered(t, gathered)
	for _, pc := range []*webrtc.PeerConnection{offerer, answerer} {
		if !strings.Contains(pc.LocalDescription().SDP, "typ relay") {
			t.Fatalf("no relayed candidate gathered:\n%s", pc.LocalDescription().SDP)
		}
	}
	if err := offerer.SetRemoteDescription(*answerer.LocalDescription()); err != nil {
		t.Fatal(err)
	}
}

func waitGathered(t *testing.T, done <-chan struct{}) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(setupTimeout):
		t.Fatal("ICE gathering did not complete")
	}
}

// assertRelayPair checks that the selected candidate pair is relayed on
// the local side, so the media could not have bypassed the server.
func assertRelayPair(t *testing.T, pc *webrtc.PeerConnection) {
	t.Helper()
	for _, sctr := range pc.GetTransceivers() {
		sender := sctr.Sender()
		if sender == nil {
			continue
		}
		pair, err := sender.Transport().ICETransport().GetSelectedCandidatePair()
		if err != nil || pair == nil {
			t.Fatalf("no selected candidate pair: %v", err)
		}
		if pair.Local.Typ != webrtc.ICECandidateTypeRelay || pair.Remote.Typ != webrtc.ICECandidateTypeRelay {
			t.Fatalf("selected pair %s is not relay-to-relay", pair)
		}
	}
}
