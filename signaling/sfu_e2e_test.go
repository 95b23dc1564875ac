package signaling

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/avs/avs/callcenter"
	"github.com/avs/avs/sfu"
)

// This test runs the whole control and media path: real WebSockets, the
// real call center on SQLite, the real SFU on loopback UDP, and pion peers
// as the customer's H5 page and the agent's console.

// sfuMedia adapts the SFU to Media the way avs-server wires it.
type sfuMedia struct{ s *sfu.SFU }

func (m sfuMedia) Join(_ context.Context, room, pid string, voiceOnly bool, sig MediaSignals) (MediaSession, error) {
	// AutoClose: a room made by a queued customer's early join must not
	// outlive its participants when the call is never answered.
	r, err := m.s.Room(room, sfu.RoomOptions{VoiceOnly: voiceOnly, AutoClose: true})
	if err != nil {
		return nil, err
	}
	var onClose func()
	if e, ok := sig.(MediaEnder); ok {
		onClose = e.MediaEnded
	}
	p, err := r.Join(sfu.ParticipantOptions{ID: pid, VoiceOnly: voiceOnly, Subscribe: sfu.SubscribeDynamic,
		Signals: sig, OnClose: onClose})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// asyncClient reads on its own goroutine, so server offers can be answered
// while the test waits for something else.
type asyncClient struct {
	t       *testing.T
	ws      *websocket.Conn
	wmu     sync.Mutex
	mu      sync.Mutex
	next    int
	waiting map[string]chan msg
	pushes  chan msg
	done    chan struct{}
}

func dialAsync(t *testing.T, url string) *asyncClient {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &asyncClient{t: t, ws: ws, waiting: map[string]chan msg{}, pushes: make(chan msg, 1024), done: make(chan struct{})}
	go c.readLoop()
	t.Cleanup(func() {
		_ = ws.Close()
		<-c.done
	})
	return c
}

func (c *asyncClient) readLoop() {
	defer close(c.done)
	defer close(c.pushes)
	for {
		_, b, err := c.ws.ReadMessage()
		if err != nil {
			return
		}
		var m msg
		if json.Unmarshal(b, &m) != nil {
			continue
		}
		if m.Type != "reply" && m.Type != "error" {
			c.pushes <- m
			continue
		}
		c.mu.Lock()
		ch := c.waiting[string(m.ID)]
		delete(c.waiting, string(m.ID))
		c.mu.Unlock()
		if ch != nil {
			ch <- m
		}
	}
}

// call sends a request and waits for its reply; an error reply fails.
func (c *asyncClient) call(typ string, data any) (json.RawMessage, error) {
	c.mu.Lock()
	c.next++
	id := fmt.Sprintf("%q", fmt.Sprint(c.next))
	ch := make(chan msg, 1)
	c.waiting[id] = ch
	c.mu.Unlock()
	b, err := json.Marshal(map[string]any{"id": json.RawMessage(id), "type": typ, "data": data})
	if err != nil {
		return nil, err
	}
	c.wmu.Lock()
	err = c.ws.WriteMessage(websocket.TextMessage, b)
	c.wmu.Unlock()
	if err != nil {
		return nil, err
	}
	select {
	case m := <-ch:
		if m.Type == "error" {
			return nil, fmt.Errorf("%s: %s: %s", typ, m.Error.Code, m.Error.Message)
		}
		return m.Data, nil
	case <-c.done:
		return nil, errors.New("connection closed")
	case <-time.After(wait):
		return nil, fmt.Errorf("%s: no reply", typ)
	}
}

func (c *asyncClient) mustCall(typ string, data any) json.RawMessage {
	c.t.Helper()
	d, err := c.call(typ, data)
	if err != nil {
		c.t.Fatal(err)
	}
	return d
}

// nextPush returns the next push of type typ, dropping others.
func (c *asyncClient) nextPush(typ string) msg {
	c.t.Helper()
	timeout := time.After(wait)
	for {
		select {
		case m, ok := <-c.pushes:
			if !ok {
				c.t.Fatalf("connection closed waiting for %s", typ)
			}
			if m.Type == typ {
				return m
			}
		case <-timeout:
			c.t.Fatalf("no %s push", typ)
		}
	}
}

func newPeerAPI(t *testing.T) *webrtc.API {
	t.Helper()
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	se.SetICEMulticastDNSMode(0)
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se))
}

// localSDP sets d as the local description and returns it with every
// candidate gathered, so no client-side trickle is needed.
func localSDP(pc *webrtc.PeerConnection, d webrtc.SessionDescription) (string, error) {
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(d); err != nil {
		return "", err
	}
	select {
	case <-gathered:
	case <-time.After(wait):
		return "", errors.New("ICE gathering did not complete")
	}
	return pc.LocalDescription().SDP, nil
}

func TestMediaFlowsThroughTheSFU(t *testing.T) {
	sfuCfg := sfu.DefaultConfig()
	sfuCfg.UDPListen = "127.0.0.1:0"
	sfuCfg.TCPListen = ""
	media, err := sfu.New(sfu.Params{Config: sfuCfg, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = media.Close() }) // cleanups run last first: after the env's
	fe := newFlowEnvWith(t, nil, sfuMedia{media}, media)
	api := newPeerAPI(t)

	agent := dialAsync(t, fe.url)
	agent.mustCall("agent.loginToken", map[string]string{"token": fe.agentToken})
	cust := dialAsync(t, fe.url)
	cust.mustCall("customer.auth", map[string]any{"options": map[string]any{
		"miniSdkToken": fe.tenant.Key, "customerInfo": map[string]any{"nickName": "Wang"}, "voiceOnly": true}})
	var call callReply
	decode(t, cust.mustCall("call.place", nil), &call)

	// The customer publishes while it still waits in the queue.
	cust.mustCall("media.join", nil)
	pub, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "customer")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	offer, err := pub.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	sdp, err := localSDP(pub, offer)
	if err != nil {
		t.Fatal(err)
	}
	var answer sdpData
	decode(t, cust.mustCall("media.offer", sdpData{SDP: sdp}), &answer)
	if err := pub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer.SDP}); err != nil {
		t.Fatal(err)
	}
	// The SFU learns of a track from its first packets, so the customer
	// talks from now on.
	stopTalking := make(chan struct{})
	talking := sync.WaitGroup{}
	talking.Add(1)
	go func() {
		defer talking.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for seq := uint16(1); ; seq++ {
			select {
			case <-stopTalking:
				return
			case <-tick.C:
			}
			_ = track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: seq,
				Timestamp: uint32(seq) * 960, SSRC: 4242}, Payload: []byte{0xfc, 0xff, 0xfe}})
		}
	}()
	defer talking.Wait()
	defer close(stopTalking)

	// The agent answers and receives on its subscribing connection.
	agent.nextPush(callcenter.EventCallRinging)
	agent.mustCall("call.answer", map[string]int64{"callId": call.CallID})
	agent.mustCall("media.join", nil)
	sub, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	got := make(chan *rtp.Packet, 1)
	sub.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			p, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			select {
			case got <- p:
			default:
			}
		}
	})
	serverOffer := agent.nextPush("media.offer")
	var so sdpData
	decode(t, serverOffer.Data, &so)
	if err := sub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: so.SDP}); err != nil {
		t.Fatal(err)
	}
	ans, err := sub.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if sdp, err = localSDP(sub, ans); err != nil {
		t.Fatal(err)
	}
	agent.mustCall("media.answer", sdpData{SDP: sdp})

	select {
	case p := <-got:
		if len(p.Payload) == 0 {
			t.Fatal("empty payload")
		}
	case <-time.After(wait):
		t.Fatal("no media reached the agent")
	}

	cust.mustCall("call.hangup", map[string]int64{"callId": call.CallID})
	cust.nextPush(callcenter.EventCallEnded)
	agent.nextPush(callcenter.EventCallEnded)
	if _, err := agent.call("media.offer", sdpData{SDP: "x"}); err == nil {
		t.Fatal("media still open after the call ended")
	}
}
