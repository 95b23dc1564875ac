// Package sfu is the media plane of AVS: rooms of participants who publish
// audio and video over WebRTC and receive each other's tracks through a
// selective forwarding unit.
//
// The package knows rooms, participants and tracks, nothing of queues,
// customers or tenants. A Publication is one incoming track (with up to
// three simulcast layers); a DownTrack is what one subscriber receives of one
// kind, with its own SSRC, sequence numbers and timestamps, fed by whichever
// publication is its source. Each incoming layer has one reader goroutine
// that parses, caches and forwards each packet to a copy-on-write list of
// DownTracks, without allocation and without any lock shared between rooms.
// NACKs are answered from a per-layer packet cache and only misses go to the
// publisher; keyframe requests reach a publisher at most once per interval.
//
// All media share one UDP port (ICE UDP mux) and one ICE-TCP port.
package sfu

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/avs/avs/sfu/fastpath"
)

// Params are what New needs.
type Params struct {
	Config     Config
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// OnActiveSpeaker is told when a room's loudest participant changes.
	OnActiveSpeaker func(room, participant string)
}

// SFU owns the rooms and the media sockets.
type SFU struct {
	cfg     Config
	log     *slog.Logger
	apis    *apiSet
	metrics *metrics
	speaker func(room, participant string)

	mu       sync.Mutex
	rooms    map[string]*Room
	draining bool
	closed   bool

	// everyone is every participant of every room, copy-on-write, for the
	// RTCP loop that visits them all fifty times a second.
	everyoneMu sync.Mutex
	everyone   atomic.Pointer[[]*Participant]

	stop chan struct{}
	wg   sync.WaitGroup

	// started anchors packet arrival times on the monotonic clock, so a
	// wall-clock step cannot make cached packets look young or old.
	started time.Time
}

// ErrDraining refuses new rooms while the server shuts down.
var ErrDraining = errors.New("server is draining")

// New opens the media sockets and starts the SFU.
func New(p Params) (*SFU, error) {
	if err := p.Config.Validate(); err != nil {
		return nil, err
	}
	log := p.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "sfu")
	apis, err := newAPISet(p.Config, log)
	if err != nil {
		return nil, err
	}
	s := &SFU{
		cfg:     p.Config,
		log:     log,
		apis:    apis,
		speaker: p.OnActiveSpeaker,
		rooms:   map[string]*Room{},
		stop:    make(chan struct{}),
		started: time.Now(),
	}
	s.metrics = newMetrics(s)
	if p.Registerer != nil {
		if err := p.Registerer.Register(s.metrics); err != nil {
			apis.close()
			return nil, fmt.Errorf("register sfu metrics: %w", err)
		}
	}
	s.wg.Add(2)
	go s.runSpeakerLoop()
	go s.runRTCPLoop()
	log.Info("media listening", "udp", apis.UDPAddr().String(), "tcp", fmt.Sprint(apis.TCPAddr()))
	return s, nil
}

// UDPAddr is the address of the media UDP port.
func (s *SFU) UDPAddr() *net.UDPAddr { return s.apis.UDPAddr() }

// TCPAddr is the address of the ICE-TCP port, or nil.
func (s *SFU) TCPAddr() net.Addr { return s.apis.TCPAddr() }

// FastPathStats counts the packets of the fast path (sfu.fast_path); all
// zero when it is off.
func (s *SFU) FastPathStats() fastpath.Stats {
	if s.apis.fast == nil {
		return fastpath.Stats{}
	}
	return s.apis.fast.Stats()
}

// Room returns the named room, creating it with opts if it does not exist.
func (s *SFU) Room(name string, opts RoomOptions) (*Room, error) {
	if name == "" || len(name) > 128 {
		return nil, fmt.Errorf("room name must be 1 to 128 characters")
	}
	if opts.VideoCodec != "" && videoCodecs(opts.VideoCodec) == nil {
		return nil, fmt.Errorf("unknown video codec %q", opts.VideoCodec)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.rooms[name]; r != nil {
		return r, nil
	}
	if s.closed || s.draining {
		return nil, ErrDraining
	}
	r := &Room{
		name:         name,
		sfu:          s,
		opts:         RoomOptions{VoiceOnly: opts.VoiceOnly, VideoCodec: strings.ToUpper(opts.VideoCodec), AutoClose: opts.AutoClose},
		log:          s.log.With("room", name),
		participants: map[string]*Participant{},
	}
	s.rooms[name] = r
	return r, nil
}

// LookupRoom returns the named room or nil.
func (s *SFU) LookupRoom(name string) *Room {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rooms[name]
}

// OpenRoom creates a room for a call; it is how the call center asks for one.
func (s *SFU) OpenRoom(name string, voiceOnly bool) error {
	_, err := s.Room(name, RoomOptions{VoiceOnly: voiceOnly})
	return err
}

// CloseRoom removes every participant and forgets the room.
func (s *SFU) CloseRoom(name string) {
	s.mu.Lock()
	r := s.rooms[name]
	delete(s.rooms, name)
	s.mu.Unlock()
	if r == nil {
		return
	}
	for _, p := range r.close() {
		_ = p.Close()
	}
}

// removeIfEmpty forgets a room whose last participant left.
func (s *SFU) removeIfEmpty(r *Room) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r.mu.Lock()
	empty := len(r.participants) == 0
	r.mu.Unlock()
	if empty && s.rooms[r.name] == r {
		delete(s.rooms, r.name)
	}
}

// Drain refuses new rooms; existing ones go on.
func (s *SFU) Drain() {
	s.mu.Lock()
	s.draining = true
	s.mu.Unlock()
}

// RoomCount is the number of open rooms.
func (s *SFU) RoomCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.rooms)
}

// Close ends every room and releases the sockets.
func (s *SFU) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	names := make([]string, 0, len(s.rooms))
	for n := range s.rooms {
		names = append(names, n)
	}
	s.mu.Unlock()
	for _, n := range names {
		s.CloseRoom(n)
	}
	close(s.stop)
	s.wg.Wait()
	s.apis.close()
	return nil
}

// runRTCPLoop drives every participant's periodic RTCP from one
// goroutine: NACKs to publishers every tick, reports and layer choice each
// second. One timer for the whole server costs less than one per
// participant, and a tick's work per participant is a few lock-guarded
// reads and, rarely, a write to the network.
func (s *SFU) runRTCPLoop() {
	defer s.wg.Done()
	const nackEvery = 20 * time.Millisecond
	t := time.NewTicker(nackEvery)
	defer t.Stop()
	// Transport-wide feedback goes out every fifth tick (100 ms), as
	// browsers expect it, and the full pass every fiftieth (1 s). Each
	// participant has its own phase, so that the sends of a busy server
	// are spread over the ticks instead of leaving in one burst that holds
	// up forwarding.
	const feedbackEvery, fullPassEvery = 5, 50
	for n := 0; ; n++ {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			if list := s.everyone.Load(); list != nil {
				for i, p := range *list {
					phase := n + i
					if phase%feedbackEvery == 0 {
						p.sendTransportFeedback()
					}
					p.tick(now, phase%fullPassEvery == 0)
				}
			}
		}
	}
}

func (s *SFU) addParticipant(p *Participant) {
	s.everyoneMu.Lock()
	defer s.everyoneMu.Unlock()
	var old []*Participant
	if l := s.everyone.Load(); l != nil {
		old = *l
	}
	next := append(slices.Clip(old), p)
	s.everyone.Store(&next)
}

func (s *SFU) removeParticipant(p *Participant) {
	s.everyoneMu.Lock()
	defer s.everyoneMu.Unlock()
	if l := s.everyone.Load(); l != nil {
		next := slices.DeleteFunc(slices.Clone(*l), func(x *Participant) bool { return x == p })
		s.everyone.Store(&next)
	}
}

func (s *SFU) runSpeakerLoop() {
	defer s.wg.Done()
	t := time.NewTicker(300 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.mu.Lock()
			rooms := make([]*Room, 0, len(s.rooms))
			for _, r := range s.rooms {
				rooms = append(rooms, r)
			}
			s.mu.Unlock()
			for _, r := range rooms {
				if who, changed := r.updateSpeaker(); changed && s.speaker != nil {
					s.speaker(r.name, who)
				}
			}
		}
	}
}
