package sfu

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/avs/avs/internal/rtctest"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
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

func newClientPC(t *testing.T, drop func(seq uint16) bool) *webrtc.PeerConnection {
	t.Helper()
	return rtctest.NewPeer(t, rtctest.Options{Drop: drop})
}

func offerAll(t *testing.T, pc *webrtc.PeerConnection, opts *webrtc.OfferOptions) string {
	t.Helper()
	return rtctest.Offer(t, pc, opts)
}

func setAnswer(t *testing.T, pc *webrtc.PeerConnection, answer string) {
	t.Helper()
	rtctest.SetAnswer(t, pc, answer)
}

// publisher is a client publishing synthetic VP8 and Opus.
type publisher struct {
	pc    *webrtc.PeerConnection
	video *webrtc.TrackLocalStaticRTP
	audio *webrtc.TrackLocalStaticRTP
	plis  chan struct{}
	twcc  atomic.Bool // transport-wide feedback arrived
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
			switch p.(type) {
			case *rtcp.PictureLossIndication:
				select {
				case pub.plis <- struct{}{}:
				default:
				}
			case *rtcp.TransportLayerCC:
				pub.twcc.Store(true)
			}
		}
	}
}

func waitConnected(t *testing.T, pc *webrtc.PeerConnection) {
	t.Helper()
	rtctest.WaitConnected(t, pc)
}

func vp8Payload(key bool, frame, part int) []byte { return rtctest.VP8Payload(key, frame, part) }

// subscriber collects what a client receives, and the server's offers.
type subscriber struct {
	*rtctest.Collector
	pc     *webrtc.PeerConnection
	mu     sync.Mutex
	offers []string
}

func newSubscriberPC(t *testing.T, o rtctest.Options) *subscriber {
	pc := rtctest.NewPeer(t, o)
	return &subscriber{pc: pc, Collector: rtctest.Collect(pc)}
}

func (s *subscriber) snapshot(kind webrtc.RTPCodecType) []*rtp.Packet { return s.Packets(kind) }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	rtctest.WaitFor(t, what, cond)
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
	return joinDynamicOn(t, r, opts, rtctest.Options{Drop: drop})
}

// joinDynamicOn is joinDynamicWith on a peer built from peer options.
func joinDynamicOn(t *testing.T, r *Room, opts ParticipantOptions, peer rtctest.Options) (*Participant, *subscriber) {
	t.Helper()
	sig := testSignals{offers: make(chan string, 16)}
	opts.Subscribe, opts.Signals = SubscribeDynamic, sig
	id := opts.ID
	p, err := r.Join(opts)
	if err != nil {
		t.Fatalf("join %s: %v", id, err)
	}
	sub := newSubscriberPC(t, peer)
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
				// An offer that crosses the participant's departure at the
				// end of a test (the others leave first) has no one to answer.
				answer, err := rtctest.Answer(t, sub.pc, offer)
				if err == nil {
					err = p.Answer(answer)
				}
				if err != nil {
					if p.ctx.Err() == nil {
						t.Errorf("subscriber answer: %v", err)
					}
					return
				}
			}
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return p, sub
}

func sendVideo(t *testing.T, track *webrtc.TrackLocalStaticRTP, seq uint16, frames, perFrame, keyEvery int) uint16 {
	t.Helper()
	return rtctest.SendVideo(t, track, seq, frames, perFrame, keyEvery)
}

// streaming is a room where a camera publishes video that a viewer
// receives, once the first video has arrived.
type streaming struct {
	sfu    *SFU
	room   *Room
	viewer *Participant
	sub    *subscriber
	camera *Participant
	pub    *publisher
	seq    uint16
}

// streamOptions vary startStreaming.
type streamOptions struct {
	config     func(*Config)
	cameraPeer *webrtc.PeerConnection // default: a plain client peer
}

func startStreaming(t *testing.T, o streamOptions) *streaming {
	t.Helper()
	st := &streaming{seq: 1}
	if o.config != nil {
		st.sfu = newTestSFU(t, o.config)
	} else {
		st.sfu = newTestSFU(t)
	}
	st.room, _ = st.sfu.Room("r1", RoomOptions{})
	st.viewer, st.sub = joinDynamic(t, st.room, "viewer", nil)
	st.camera, _ = st.room.Join(ParticipantOptions{ID: "camera"})
	pc := o.cameraPeer
	if pc == nil {
		pc = newClientPC(t, nil)
	}
	st.pub = newPublisherOn(t, st.camera, pc, false)
	st.waitVideo(t, "video at the viewer", func() bool { return st.sub.Count(webrtc.RTPCodecTypeVideo) > 0 })
	return st
}

// waitVideo keeps the camera sending, a keyframe per burst, until cond holds.
func (st *streaming) waitVideo(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitFor(t, what, func() bool {
		st.seq = sendVideo(t, st.pub.video, st.seq, 3, 1, 1)
		return cond()
	})
}

// cameraToViewer puts a dynamic viewer and a camera (audio and video) in a
// room of s and sends video until the viewer has some, which takes a
// connected subscriber and a keyframe. It returns the next sequence number.
func cameraToViewer(t *testing.T, s *SFU) (*Participant, *publisher, *subscriber, uint16) {
	t.Helper()
	room, err := s.Room("r1", RoomOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, sub := joinDynamic(t, room, "viewer", nil)
	pubP, err := room.Join(ParticipantOptions{ID: "camera"})
	if err != nil {
		t.Fatal(err)
	}
	pub := newPublisher(t, pubP, nil, true)
	seq := uint16(1000)
	waitFor(t, "first video at subscriber", func() bool {
		seq = sendVideo(t, pub.video, seq, 10, 3, 5)
		return len(sub.snapshot(webrtc.RTPCodecTypeVideo)) > 0
	})
	return pubP, pub, sub, seq
}
