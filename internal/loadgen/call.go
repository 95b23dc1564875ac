package loadgen

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// setupTimeout bounds how long a call may take from being placed to both
// players showing their first remote frame.
const setupTimeout = 20 * time.Second

// hangupTimeout bounds each DELETE at the end of a call.
const hangupTimeout = 3 * time.Second

// participant is one side of a call: a publishing peer and a playing peer.
type participant struct {
	name                 string
	pub, play            *webrtc.PeerConnection
	pubSess, playSess    Session
	senders              []*sender
	audioSent, videoSent SendTimes // what this side sent, for the other side's player
	readyOnce            sync.Once
	twccSeq              atomic.Uint32 // transport-wide sequence of the publishing peer
}

// call is one 1:1 call: A publishes to room load-<i>-a, which B plays, and
// B publishes to load-<i>-b, which A plays. Two rooms with one publisher
// each leave no doubt about whose media a player gets.
type call struct {
	r       *Runner
	index   int
	a, b    participant
	placed  time.Time
	waiting atomic.Int32
	ready   chan struct{}
	setup   time.Duration // valid once ready is closed
	failed  atomic.Bool   // a peer connection failed after setup
}

func newCall(r *Runner, index int) *call {
	c := &call{r: r, index: index, ready: make(chan struct{})}
	c.a.name, c.b.name = "a", "b"
	c.waiting.Store(2)
	return c
}

func (c *call) room(side string) string { return fmt.Sprintf("load-%d-%s", c.index, side) }

// establish places the call and waits until both players have their first
// remote frame.
func (c *call) establish(ctx context.Context) error {
	c.placed = time.Now()
	var wg sync.WaitGroup
	errs := make([]error, 4)
	wg.Go(func() { errs[0] = c.publish(ctx, &c.a, c.room("a")) })
	wg.Go(func() { errs[1] = c.publish(ctx, &c.b, c.room("b")) })
	wg.Go(func() { errs[2] = c.play(ctx, &c.a, c.room("b"), &c.b) })
	wg.Go(func() { errs[3] = c.play(ctx, &c.b, c.room("a"), &c.a) })
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	timer := time.NewTimer(setupTimeout)
	defer timer.Stop()
	select {
	case <-c.ready:
		return nil
	case <-timer.C:
		return fmt.Errorf("call %d: no remote frame on both sides within %v", c.index, setupTimeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *call) playerReady(p *participant) {
	p.readyOnce.Do(func() {
		if c.waiting.Add(-1) == 0 {
			c.setup = time.Since(c.placed)
			close(c.ready)
		}
	})
}

// watch follows pc's state; onConnected, if not nil, runs when it first
// connects.
func (c *call) watch(pc *webrtc.PeerConnection, what string, onConnected func()) {
	var once sync.Once
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		c.r.log.Debug("peer state", "call", c.index, "peer", what, "state", s, "since_placed", time.Since(c.placed))
		switch s {
		case webrtc.PeerConnectionStateConnected:
			if onConnected != nil {
				once.Do(onConnected)
			}
		case webrtc.PeerConnectionStateFailed:
			c.failed.Store(true)
		}
	})
}

func (c *call) publish(ctx context.Context, p *participant, room string) error {
	r := c.r
	pc, err := r.peers.newPeer(true)
	if err != nil {
		return err
	}
	p.pub = pc
	// Media starts when DTLS is up, as in a browser: frames written before
	// are dropped by pion, and a keyframe the server asked for early would
	// be lost with them, leaving the player to wait for the next one.
	c.watch(pc, "publish "+room, func() {
		for _, tr := range pc.GetTransceivers() {
			mid := tr.Mid()
			for _, s := range p.senders {
				if s.kind == tr.Kind() {
					s.mid.Store(&mid)
				}
			}
		}
		for _, s := range p.senders {
			r.pacer.Add(s)
		}
	})
	if err := c.addSenders(p, pc); err != nil {
		return err
	}
	sess, err := r.dialer.Dial(ctx, RolePublish, room, pc)
	if err != nil {
		return err
	}
	r.log.Debug("negotiated", "call", c.index, "peer", "publish "+room, "since_placed", time.Since(c.placed))
	p.pubSess = sess
	for _, tr := range pc.GetTransceivers() {
		if tr.Sender() != nil {
			c.readFeedback(tr.Sender(), p.senders, tr.Kind())
		}
	}
	return nil
}

// addSenders gives the publishing peer its audio track and its video
// track with one encoding per layer.
func (c *call) addSenders(p *participant, pc *webrtc.PeerConnection) error {
	r := c.r
	stream := fmt.Sprintf("call%d-%s", c.index, p.name)
	seed := uint32(c.index * 16) // room for eight streams per side
	if p.name == "b" {
		seed += 8
	}
	sendonly := webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}
	audio := newSender("audio", stream, "", webrtc.RTPCodecTypeAudio, r.audio, &p.audioSent, &r.counters, r.epoch, seed)
	if _, err := pc.AddTransceiverFromTrack(audio, sendonly); err != nil {
		return fmt.Errorf("add audio track: %w", err)
	}
	p.senders = append(p.senders, audio)
	if !r.cfg.VoiceOnly {
		var video []*sender
		for i, layer := range r.video {
			video = append(video, newSender("video", stream, layer.rid, webrtc.RTPCodecTypeVideo, layer.clip,
				&p.videoSent, &r.counters, r.epoch, seed+1+uint32(i)))
		}
		tr, err := pc.AddTransceiverFromTrack(video[0], sendonly)
		if err != nil {
			return fmt.Errorf("add video track: %w", err)
		}
		for _, s := range video[1:] {
			if err := tr.Sender().AddEncoding(s); err != nil {
				return fmt.Errorf("add simulcast layer %s: %w", s.rid, err)
			}
		}
		p.senders = append(p.senders, video...)
	}
	if r.cfg.TWCC {
		for _, s := range p.senders {
			s.twccSeq = &p.twccSeq
		}
	}
	return nil
}

// readFeedback reads the RTCP the server sends to one of our senders: pion
// only runs the NACK responder on RTCP that someone reads, and PLIs must
// reach the sender as keyframe requests.
func (c *call) readFeedback(rs *webrtc.RTPSender, senders []*sender, kind webrtc.RTPCodecType) {
	for _, s := range senders {
		if s.kind != kind {
			continue
		}
		read := rs.ReadRTCP
		if s.rid != "" {
			rid := s.rid
			read = func() ([]rtcp.Packet, interceptor.Attributes, error) { return rs.ReadSimulcastRTCP(rid) }
		}
		go c.feedbackLoop(read, s)
		if s.rid == "" {
			return // one stream, one reader
		}
	}
}

func (c *call) feedbackLoop(read func() ([]rtcp.Packet, interceptor.Attributes, error), s *sender) {
	counters := &c.r.counters
	for {
		pkts, _, err := read()
		if err != nil {
			return
		}
		for _, p := range pkts {
			switch p := p.(type) {
			case *rtcp.TransportLayerNack:
				counters.NACKsToPublishers.Add(1)
				for _, pair := range p.Nacks {
					counters.NACKedSeqs.Add(int64(len(pair.PacketList())))
				}
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				counters.PLIsToPublishers.Add(1)
				s.requestKeyframe()
			}
		}
	}
}

func (c *call) play(ctx context.Context, p *participant, room string, from *participant) error {
	r := c.r
	pc, err := r.peers.newPeer(false)
	if err != nil {
		return err
	}
	p.play = pc
	c.watch(pc, "play "+room, nil)
	recvonly := webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, recvonly); err != nil {
		return fmt.Errorf("add audio receiver: %w", err)
	}
	if !r.cfg.VoiceOnly {
		if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, recvonly); err != nil {
			return fmt.Errorf("add video receiver: %w", err)
		}
	}
	pc.OnTrack(func(track *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		video := track.Kind() == webrtc.RTPCodecTypeVideo
		sent, stats := &from.audioSent, &r.audioStats
		if video {
			sent, stats = &from.videoSent, &r.videoStats
		}
		mime := track.Codec().MimeType
		rc := newReceiver(video, mime, NewPayloadHasher(r.seed, mime), sent, stats, &r.latency, &r.counters)
		rc.sendPLI = func() error {
			return pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(track.SSRC())}})
		}
		if video || r.cfg.VoiceOnly {
			rc.onFirstFull = func() { c.playerReady(p) }
		}
		rc.readLoop(track, r.epoch)
	})
	sess, err := r.dialer.Dial(ctx, RolePlay, room, pc)
	if err != nil {
		return err
	}
	r.log.Debug("negotiated", "call", c.index, "peer", "play "+room, "since_placed", time.Since(c.placed))
	p.playSess = sess
	return nil
}

// connected reports whether all of the call's peers are still connected.
func (c *call) connected() bool {
	if c.failed.Load() {
		return false
	}
	for _, pc := range []*webrtc.PeerConnection{c.a.pub, c.a.play, c.b.pub, c.b.play} {
		if pc == nil || pc.ConnectionState() != webrtc.PeerConnectionStateConnected {
			return false
		}
	}
	return true
}

// hangup ends the call's sessions at the server and closes its peers.
func (c *call) hangup() {
	var wg sync.WaitGroup
	for _, p := range []*participant{&c.a, &c.b} {
		for _, s := range p.senders {
			s.closed.Store(true)
		}
		for _, sess := range []Session{p.pubSess, p.playSess} {
			if sess == nil {
				continue
			}
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), hangupTimeout)
				defer cancel()
				if err := sess.Hangup(ctx); err != nil {
					c.r.log.Debug("hang up", "call", c.index, "err", err)
				}
			})
		}
		for _, pc := range []*webrtc.PeerConnection{p.pub, p.play} {
			if pc != nil {
				wg.Go(func() { _ = pc.Close() })
			}
		}
	}
	wg.Wait()
}
