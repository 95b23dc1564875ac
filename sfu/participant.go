package sfu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/avs/avs/sfu/bwe"
)

// SubscribeMode says how a participant receives the others' media.
type SubscribeMode int

const (
	// SubscribeNone: the participant only publishes (a WHIP client).
	SubscribeNone SubscribeMode = iota
	// SubscribeDynamic: the server adds a track for each publication of the
	// others and renegotiates by sending offers through Signals.
	SubscribeDynamic
	// SubscribeSlots: the client's offer fixes one receiving track per media
	// section (a WHEP player); each is fed by the room's newest publication
	// of its kind and switched seamlessly when that changes.
	SubscribeSlots
)

// Signals carries what the server has to tell a participant out of band.
type Signals interface {
	ServerOffer(sdp string)
	ServerCandidate(target string, c webrtc.ICECandidateInit)
}

// ParticipantOptions describe a participant when it joins.
type ParticipantOptions struct {
	ID        string
	VoiceOnly bool
	Subscribe SubscribeMode
	Signals   Signals // required for SubscribeDynamic
	// OnClose runs once when the participant has left, whatever the cause.
	OnClose func()
}

// Error codes returned by the media plane.
var (
	ErrBadSDP         = errors.New("malformed SDP")
	ErrTooManyTracks  = errors.New("too many tracks")
	ErrNoMedia        = errors.New("no media section with a supported codec")
	ErrClosed         = errors.New("participant closed")
	ErrRoomFull       = errors.New("room is full")
	ErrDuplicateID    = errors.New("participant id already in the room")
	ErrWrongDirection = errors.New("this participant cannot do that")
)

// Participant is one client in a room, with up to two PeerConnections: pub,
// where the client offers and publishes, and sub, where it receives.
type Participant struct {
	id   string
	room *Room
	opts ParticipantOptions
	log  *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu           sync.Mutex
	pub          *webrtc.PeerConnection
	sub          *webrtc.PeerConnection
	subTaps      *tapSet    // the incoming streams of sub
	transport    *transport // the subscribing connection's numbering and estimate; nil for a publisher only
	publications map[string]*Publication
	downTracks   map[*Publication]*DownTrack // dynamic mode
	slots        []*DownTrack                // slots mode
	senders      map[*DownTrack]*webrtc.RTPSender
	negotiating  bool
	renegotiate  bool
	iceRestart   bool
	closed       bool
	closeOnce    sync.Once

	// feedback collects arrivals for transport-wide feedback to this
	// participant as a publisher.
	feedback transportFeedback

	// attention asks the RTCP loop for a NACK and keyframe pass before the
	// next full one: a layer lost packets or a keyframe request waits.
	attention atomic.Bool

	// Scratch space of tick, which only the SFU's RTCP loop calls.
	tickPubs       []*Publication
	tickDownTracks []*DownTrack
}

func newParticipant(r *Room, opts ParticipantOptions) *Participant {
	ctx, cancel := context.WithCancel(context.Background())
	var t *transport
	if opts.Subscribe != SubscribeNone {
		cfg := r.sfu.cfg
		t = &transport{
			estimate:    bwe.New(cfg.InitialBitrate, minBitrate, cfg.MaxBitrate),
			videoStamps: stampHistory(cfg.VideoCacheSize),
			audioStamps: stampHistory(cfg.AudioCacheSize),
		}
	}
	return &Participant{
		transport:    t,
		id:           opts.ID,
		room:         r,
		opts:         opts,
		log:          r.log.With("participant", opts.ID),
		ctx:          ctx,
		cancel:       cancel,
		publications: map[string]*Publication{},
		downTracks:   map[*Publication]*DownTrack{},
		senders:      map[*DownTrack]*webrtc.RTPSender{},
	}
}

// ID is the participant's id within its room.
func (p *Participant) ID() string { return p.id }

// Room is the room the participant is in.
func (p *Participant) Room() *Room { return p.room }

// videoCodecs is what this participant's PeerConnections may negotiate.
func (p *Participant) videoCodecs() []string {
	if p.opts.VoiceOnly || p.room.opts.VoiceOnly {
		return nil
	}
	if c := p.room.opts.VideoCodec; c != "" {
		return []string{strings.ToUpper(c)}
	}
	return p.room.sfu.cfg.VideoCodecs
}

// checkOffer parses an SDP offer and enforces the per-participant limits
// before pion sees it.
func (p *Participant) checkOffer(offer string) (*sdp.SessionDescription, error) {
	var parsed sdp.SessionDescription
	if err := parsed.UnmarshalString(offer); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadSDP, err)
	}
	media := 0
	for _, m := range parsed.MediaDescriptions {
		if m.MediaName.Media == "audio" || m.MediaName.Media == "video" {
			media++
		}
	}
	if media > p.room.sfu.cfg.MaxTracksPerParticipant {
		return nil, fmt.Errorf("%w: %d media sections, at most %d", ErrTooManyTracks, media, p.room.sfu.cfg.MaxTracksPerParticipant)
	}
	return &parsed, nil
}

// Offer takes the client's offer for its publishing PeerConnection (the
// first one, a renegotiation, or an ICE restart) and returns the answer,
// complete with the server's candidates.
func (p *Participant) Offer(offer string) (string, error) {
	if _, err := p.checkOffer(offer); err != nil {
		return "", err
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return "", ErrClosed
	}
	pc := p.pub
	if pc == nil {
		var err error
		if pc, err = p.newPublishingPC(); err != nil {
			p.mu.Unlock()
			return "", err
		}
		p.pub = pc
	}
	p.mu.Unlock()
	return p.answer(pc, offer)
}

func (p *Participant) answer(pc *webrtc.PeerConnection, offer string) (string, error) {
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadSDP, err)
	}
	if p.opts.Subscribe == SubscribeSlots && pc == p.subPC() {
		if err := p.fillSlots(pc); err != nil {
			return "", err
		}
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrNoMedia, err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(ans); err != nil {
		return "", fmt.Errorf("set local description: %w", err)
	}
	select {
	case <-gathered:
	case <-time.After(5 * time.Second):
	case <-p.ctx.Done():
		return "", ErrClosed
	}
	local := pc.LocalDescription()
	if !hasActiveMedia(local.SDP) {
		return "", ErrNoMedia
	}
	return local.SDP, nil
}

// hasActiveMedia reports whether an answer accepted at least one media section.
func hasActiveMedia(s string) bool {
	var parsed sdp.SessionDescription
	if parsed.UnmarshalString(s) != nil {
		return false
	}
	for _, m := range parsed.MediaDescriptions {
		if (m.MediaName.Media == "audio" || m.MediaName.Media == "video") && m.MediaName.Port.Value != 0 {
			return true
		}
	}
	return false
}

func (p *Participant) subPC() *webrtc.PeerConnection {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sub
}

func (p *Participant) newPublishingPC() (*webrtc.PeerConnection, error) {
	taps := newTapSet()
	pc, err := p.room.sfu.apis.newPeerConnection(p.videoCodecs(), taps)
	if err != nil {
		return nil, err
	}
	pc.OnTrack(func(track *webrtc.TrackRemote, receiver *webrtc.RTPReceiver) {
		p.onTrack(pc, taps, track, receiver)
	})
	p.watchConnection(pc, "pub")
	return pc, nil
}

// Play takes a receive-only offer (a WHEP player) and answers it with one
// track per media section, fed from the room's publications.
func (p *Participant) Play(offer string) (string, error) {
	if p.opts.Subscribe != SubscribeSlots {
		return "", ErrWrongDirection
	}
	if _, err := p.checkOffer(offer); err != nil {
		return "", err
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return "", ErrClosed
	}
	pc := p.sub
	if pc == nil {
		var err error
		taps := newTapSet()
		if pc, err = p.room.sfu.apis.newPeerConnection(p.videoCodecs(), taps); err != nil {
			p.mu.Unlock()
			return "", err
		}
		p.sub, p.subTaps = pc, taps
		p.watchConnection(pc, "sub")
	}
	p.mu.Unlock()
	answer, err := p.answer(pc, offer)
	if err != nil {
		return "", err
	}
	p.room.assignSlots(p)
	return answer, nil
}

// fillSlots adds a DownTrack for every media section of the offer that has
// none yet.
func (p *Participant) fillSlots(pc *webrtc.PeerConnection) error {
	for _, tr := range pc.GetTransceivers() {
		if tr.Sender() != nil || tr.Mid() == "" && tr.Direction() == webrtc.RTPTransceiverDirectionInactive {
			continue
		}
		kind := tr.Kind()
		if kind != webrtc.RTPCodecTypeAudio && kind != webrtc.RTPCodecTypeVideo {
			continue
		}
		dt := newDownTrack(kind, kind.String(), "avs")
		dt.transport = p.transport
		sender, err := pc.AddTrack(dt)
		if err != nil {
			continue // a section pion rejects, such as video in a voiceOnly room
		}
		p.mu.Lock()
		p.slots = append(p.slots, dt)
		p.senders[dt] = sender
		p.mu.Unlock()
		p.startSenderRTCP(sender, dt)
	}
	return nil
}

// Answer takes the client's answer to a server offer on the subscribing
// PeerConnection.
func (p *Participant) Answer(answer string) error {
	pc := p.subPC()
	if pc == nil || p.opts.Subscribe != SubscribeDynamic {
		return ErrWrongDirection
	}
	var parsed sdp.SessionDescription
	if err := parsed.UnmarshalString(answer); err != nil {
		return fmt.Errorf("%w: %w", ErrBadSDP, err)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		if p.ctx.Err() != nil {
			return ErrClosed // an answer that crossed the participant's departure
		}
		return fmt.Errorf("%w: %w", ErrBadSDP, err)
	}
	p.mu.Lock()
	p.negotiating = false
	again := p.renegotiate
	p.mu.Unlock()
	if again {
		p.negotiate()
	}
	return nil
}

// Candidate adds a trickled remote ICE candidate to "pub" or "sub".
func (p *Participant) Candidate(target string, c webrtc.ICECandidateInit) error {
	p.mu.Lock()
	pc := p.pub
	if target == "sub" {
		pc = p.sub
	}
	p.mu.Unlock()
	if pc == nil {
		return fmt.Errorf("%w: no %q connection yet", ErrWrongDirection, target)
	}
	if err := pc.AddICECandidate(c); err != nil {
		return fmt.Errorf("add candidate: %w", err)
	}
	return nil
}

// watchConnection removes the participant when its connection fails or
// closes, and restarts ICE on the server-offered side when it drops.
func (p *Participant) watchConnection(pc *webrtc.PeerConnection, name string) {
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		p.log.Debug("connection state", "pc", name, "state", s.String())
		switch s {
		case webrtc.PeerConnectionStateConnected:
			if name == "sub" {
				p.requestKeyframes()
			}
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			p.closeAsync()
		}
	})
	if name == "sub" && p.opts.Subscribe == SubscribeDynamic {
		pc.OnICEConnectionStateChange(func(s webrtc.ICEConnectionState) {
			if s == webrtc.ICEConnectionStateDisconnected {
				p.mu.Lock()
				p.iceRestart = true
				p.mu.Unlock()
				p.negotiate()
			}
		})
	}
}

// requestKeyframes restarts every received video track on a fresh
// keyframe: what was sent before the connection came up never arrived.
func (p *Participant) requestKeyframes() {
	p.mu.Lock()
	dts := append(slices.Collect(maps.Values(p.downTracks)), p.slots...)
	p.mu.Unlock()
	for _, dt := range dts {
		dt.mu.Lock()
		dt.needKeyframe = true
		src, q := dt.source, max(dt.current, dt.target)
		dt.mu.Unlock()
		if src != nil {
			src.RequestKeyframe(q)
		}
	}
}

// closeAsync leaves from a pion callback, which must not wait for pion.
func (p *Participant) closeAsync() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.room.leave(p)
	}()
}

// SetMaxQuality caps the simulcast layer of every video track the
// participant receives (0 low, 1 medium, 2 high); the bandwidth estimate
// may choose lower still.
func (p *Participant) SetMaxQuality(q int) {
	p.mu.Lock()
	dts := append(slices.Collect(maps.Values(p.downTracks)), p.slots...)
	p.mu.Unlock()
	for _, dt := range dts {
		if dt.kind == webrtc.RTPCodecTypeVideo {
			dt.SetMaxQuality(q)
		}
	}
}

// Close leaves the room and frees everything the participant holds.
func (p *Participant) Close() error {
	p.room.leave(p)
	p.wg.Wait()
	return nil
}

// shutdown runs once, from Room.leave.
func (p *Participant) shutdown() {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		pub, sub := p.pub, p.sub
		slots := p.slots
		dts := make([]*DownTrack, 0, len(p.downTracks))
		for _, dt := range p.downTracks {
			dts = append(dts, dt)
		}
		p.mu.Unlock()
		p.cancel()
		for _, dt := range append(dts, slots...) {
			dt.setSource(nil)
		}
		for _, pc := range []*webrtc.PeerConnection{pub, sub} {
			if pc != nil {
				_ = pc.Close()
			}
		}
		if p.opts.OnClose != nil {
			p.opts.OnClose()
		}
	})
}
