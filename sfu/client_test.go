package sfu

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// The tests in this package run real pion peers against a real SFU over
// loopback UDP; nothing on the media path is mocked.

const testTimeout = 30 * time.Second

func testLogger() *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("AVS_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

func testConfig() Config {
	c := DefaultConfig()
	c.UDPListen = "127.0.0.1:0"
	c.TCPListen = "127.0.0.1:0"
	c.ICEDisconnectedTimeout = time.Second
	c.ICEFailedTimeout = 3 * time.Second
	return c
}

func newTestSFU(t *testing.T, mutate ...func(*Config)) *SFU {
	t.Helper()
	cfg := testConfig()
	for _, m := range mutate {
		m(&cfg)
	}
	s, err := New(Params{Config: cfg, Logger: testLogger()})
	if err != nil {
		t.Fatalf("new sfu: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// dropper is a client-side interceptor that loses chosen packets once,
// standing in for a lossy network in front of the receiver (remote streams)
// or behind the sender (local streams).
type dropper struct {
	interceptor.NoOp
	mu      sync.Mutex
	drop    func(seq uint16) bool
	dropped map[uint16]bool
}

func (d *dropper) shouldDrop(seq uint16) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.drop == nil || d.dropped[seq] || !d.drop(seq) {
		return false
	}
	d.dropped[seq] = true
	return true
}

func (d *dropper) BindRemoteStream(_ *interceptor.StreamInfo, r interceptor.RTPReader) interceptor.RTPReader {
	return interceptor.RTPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		for {
			n, attr, err := r.Read(b, a)
			if err != nil || n < 4 {
				return n, attr, err
			}
			seq := uint16(b[2])<<8 | uint16(b[3])
			if !d.shouldDrop(seq) {
				return n, attr, err
			}
		}
	})
}

func (d *dropper) BindLocalStream(_ *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		if d.shouldDrop(h.SequenceNumber) {
			return len(payload), nil
		}
		return w.Write(h, payload, a)
	})
}

type dropperFactory struct{ d *dropper }

func (f dropperFactory) NewInterceptor(string) (interceptor.Interceptor, error) { return f.d, nil }

// newClientPC builds a browser-like pion peer: default codecs and
// interceptors (NACK, reports, TWCC), with an optional lossy link.
func newClientPC(t *testing.T, drop func(seq uint16) bool) *webrtc.PeerConnection {
	t.Helper()
	return newClientPCOn(t, drop, nil)
}

// newClientPCOn is newClientPC whose media goes through conn when given, so
// that a test can make the client vanish from the network.
func newClientPCOn(t *testing.T, drop func(seq uint16) bool, conn net.PacketConn) *webrtc.PeerConnection {
	t.Helper()
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	for _, uri := range []string{sdp.SDESMidURI, sdp.SDESRTPStreamIDURI, sdp.SDESRepairRTPStreamIDURI} {
		if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: uri}, webrtc.RTPCodecTypeVideo); err != nil {
			t.Fatal(err)
		}
	}
	reg := &interceptor.Registry{}
	if drop != nil {
		reg.Add(dropperFactory{&dropper{drop: drop, dropped: map[uint16]bool{}}})
	}
	if err := webrtc.RegisterDefaultInterceptors(m, reg); err != nil {
		t.Fatal(err)
	}
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(0)
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	// The dropper loses packets after decryption, where SRTP has already
	// marked them seen; without this the retransmission would be refused
	// as a replay, which a real lossy network never causes.
	se.DisableSRTPReplayProtection(true)
	if conn != nil {
		se.SetICEUDPMux(webrtc.NewICEUDPMux(nil, conn))
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	return pc
}

// offerAll makes an offer and waits for the client's candidates.
func offerAll(t *testing.T, pc *webrtc.PeerConnection, opts *webrtc.OfferOptions) string {
	t.Helper()
	offer, err := pc.CreateOffer(opts)
	if err != nil {
		t.Fatal(err)
	}
	done := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-done
	return pc.LocalDescription().SDP
}

func setAnswer(t *testing.T, pc *webrtc.PeerConnection, answer string) {
	t.Helper()
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatalf("set answer: %v", err)
	}
}

// publisher is a client publishing synthetic VP8 and Opus.
type publisher struct {
	pc    *webrtc.PeerConnection
	video *webrtc.TrackLocalStaticRTP
	audio *webrtc.TrackLocalStaticRTP
	plis  chan struct{}
}

func newPublisher(t *testing.T, p *Participant, drop func(uint16) bool, withAudio bool) *publisher {
	t.Helper()
	return newPublisherOn(t, p, newClientPC(t, drop), withAudio)
}

func newPublisherOn(t *testing.T, p *Participant, pc *webrtc.PeerConnection, withAudio bool) *publisher {
	t.Helper()
	pub := &publisher{pc: pc, plis: make(chan struct{}, 64)}
	var err error
	pub.video, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "video", "cam")
	if err != nil {
		t.Fatal(err)
	}
	sender, err := pc.AddTrack(pub.video)
	if err != nil {
		t.Fatal(err)
	}
	go pub.readRTCP(sender)
	if withAudio {
		pub.audio, _ = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus}, "audio", "cam")
		s, err := pc.AddTrack(pub.audio)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				if _, _, err := s.ReadRTCP(); err != nil {
					return
				}
			}
		}()
	}
	answer, err := p.Offer(offerAll(t, pc, nil))
	if err != nil {
		t.Fatalf("publish offer: %v", err)
	}
	setAnswer(t, pc, answer)
	waitConnected(t, pc)
	return pub
}

func (pub *publisher) readRTCP(s *webrtc.RTPSender) {
	for {
		pkts, _, err := s.ReadRTCP()
		if err != nil {
			return
		}
		for _, p := range pkts {
			if _, ok := p.(*rtcp.PictureLossIndication); ok {
				select {
				case pub.plis <- struct{}{}:
				default:
				}
			}
		}
	}
}

func waitConnected(t *testing.T, pc *webrtc.PeerConnection) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	connected := make(chan struct{})
	var once sync.Once
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			once.Do(func() { close(connected) })
		}
	})
	if pc.ConnectionState() == webrtc.PeerConnectionStateConnected {
		return
	}
	select {
	case <-connected:
	case <-ctx.Done():
		t.Fatalf("peer did not connect: %s", pc.ConnectionState())
	}
}

// vp8Payload is a minimal VP8 payload: descriptor with the start bit, then
// a frame header byte whose low bit tells keyframe (0) from inter (1), then
// a marker of which frame and packet it is.
func vp8Payload(key bool, frame, part int) []byte {
	b := []byte{0x10, 0x01, byte(frame >> 8), byte(frame), byte(part)}
	if key {
		b[1] = 0x00
	}
	if part > 0 {
		b[0] = 0x00
	}
	return append(b, make([]byte, 200)...)
}

// subscriber collects what a client receives.
type subscriber struct {
	pc       *webrtc.PeerConnection
	mu       sync.Mutex
	packets  map[webrtc.RTPCodecType][]*rtp.Packet
	tracks   chan *webrtc.TrackRemote
	received chan struct{}
	offers   []string // server offers, as received
}

func newSubscriberPC(t *testing.T, drop func(uint16) bool) *subscriber {
	s := &subscriber{
		pc:       newClientPC(t, drop),
		packets:  map[webrtc.RTPCodecType][]*rtp.Packet{},
		tracks:   make(chan *webrtc.TrackRemote, 8),
		received: make(chan struct{}, 1),
	}
	s.pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		s.tracks <- tr
		for {
			pkt, _, err := tr.ReadRTP()
			if err != nil {
				if err != io.EOF {
					return
				}
				return
			}
			s.mu.Lock()
			s.packets[tr.Kind()] = append(s.packets[tr.Kind()], pkt)
			s.mu.Unlock()
			select {
			case s.received <- struct{}{}:
			default:
			}
		}
	})
	return s
}

func (s *subscriber) snapshot(kind webrtc.RTPCodecType) []*rtp.Packet {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*rtp.Packet(nil), s.packets[kind]...)
}

// waitFor polls cond until it holds or the test times out.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// signalsFunc adapts functions to the Signals interface for dynamic
// subscribers in tests.
type testSignals struct {
	offers chan string
}

func (s testSignals) ServerOffer(sdp string)                          { s.offers <- sdp }
func (s testSignals) ServerCandidate(string, webrtc.ICECandidateInit) {}

// joinDynamic joins a participant that receives by server offers and
// answers them as a browser would, until the test ends.
func joinDynamic(t *testing.T, r *Room, id string, drop func(uint16) bool) (*Participant, *subscriber) {
	t.Helper()
	return joinDynamicWith(t, r, ParticipantOptions{ID: id}, drop)
}

func joinDynamicWith(t *testing.T, r *Room, opts ParticipantOptions, drop func(uint16) bool) (*Participant, *subscriber) {
	t.Helper()
	sig := testSignals{offers: make(chan string, 16)}
	opts.Subscribe, opts.Signals = SubscribeDynamic, sig
	id := opts.ID
	p, err := r.Join(opts)
	if err != nil {
		t.Fatalf("join %s: %v", id, err)
	}
	sub := newSubscriberPC(t, drop)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case offer := <-sig.offers:
				sub.mu.Lock()
				sub.offers = append(sub.offers, offer)
				sub.mu.Unlock()
				if err := sub.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
					t.Errorf("subscriber set offer: %v", err)
					return
				}
				ans, err := sub.pc.CreateAnswer(nil)
				if err != nil {
					t.Errorf("subscriber answer: %v", err)
					return
				}
				done := webrtc.GatheringCompletePromise(sub.pc)
				if err := sub.pc.SetLocalDescription(ans); err != nil {
					t.Errorf("subscriber set answer: %v", err)
					return
				}
				<-done
				if err := p.Answer(sub.pc.LocalDescription().SDP); err != nil {
					t.Errorf("server took answer: %v", err)
					return
				}
			}
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return p, sub
}

// sendVideo sends frames of synthetic VP8, keyframe first, n packets per frame.
func sendVideo(t *testing.T, track *webrtc.TrackLocalStaticRTP, firstSeq uint16, frames, perFrame int, keyEvery int) uint16 {
	t.Helper()
	seq := firstSeq
	for f := range frames {
		for part := range perFrame {
			pkt := &rtp.Packet{
				Header: rtp.Header{
					Version: 2, SequenceNumber: seq, Timestamp: uint32(f * 3000),
					Marker: part == perFrame-1,
				},
				Payload: vp8Payload(keyEvery > 0 && f%keyEvery == 0, f, part),
			}
			if err := track.WriteRTP(pkt); err != nil {
				t.Fatalf("write rtp: %v", err)
			}
			seq++
		}
		time.Sleep(5 * time.Millisecond)
	}
	return seq
}
