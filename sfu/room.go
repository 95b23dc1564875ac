package sfu

import (
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/pion/webrtc/v4"
)

// RoomOptions are fixed when a room is created.
type RoomOptions struct {
	// VoiceOnly rooms negotiate no video at all.
	VoiceOnly bool
	// VideoCodec limits the room to one video codec (VP8, VP9 or H264), for
	// instance H.264 when a mini-program or Safari takes part.
	VideoCodec string
	// AutoClose forgets the room when its last participant leaves, for
	// rooms made on demand (WHIP/WHEP); call rooms are closed by their owner.
	AutoClose bool
}

// Room is a set of participants who receive each other's media.
type Room struct {
	name string
	sfu  *SFU
	opts RoomOptions
	log  *slog.Logger

	mu           sync.Mutex
	participants map[string]*Participant
	publications []*Publication // in order of publication
	closed       bool
	speaker      string
}

// Name is the room's name.
func (r *Room) Name() string { return r.name }

// Options are the room's fixed options.
func (r *Room) Options() RoomOptions { return r.opts }

// Join adds a participant. For SubscribeDynamic the subscribing
// PeerConnection is created at once, so the client's first message can be
// its publishing offer while the server prepares its own.
func (r *Room) Join(opts ParticipantOptions) (*Participant, error) {
	if opts.ID == "" {
		return nil, fmt.Errorf("participant id is empty")
	}
	if opts.Subscribe == SubscribeDynamic && opts.Signals == nil {
		return nil, fmt.Errorf("dynamic subscription needs Signals")
	}
	p := newParticipant(r, opts)
	if opts.Subscribe == SubscribeDynamic {
		taps := newTapSet()
		pc, err := r.sfu.apis.newPeerConnection(p.videoCodecs(), taps)
		if err != nil {
			return nil, err
		}
		p.sub, p.subTaps = pc, taps
		p.watchConnection(pc, "sub")
	}
	r.mu.Lock()
	switch {
	case r.closed:
		r.mu.Unlock()
		p.shutdown()
		return nil, ErrClosed
	case r.participants[opts.ID] != nil:
		r.mu.Unlock()
		p.shutdown()
		return nil, ErrDuplicateID
	case len(r.participants) >= r.sfu.cfg.MaxParticipantsPerRoom:
		r.mu.Unlock()
		p.shutdown()
		return nil, ErrRoomFull
	}
	r.participants[opts.ID] = p
	pubs := slices.Clone(r.publications)
	r.mu.Unlock()

	r.sfu.metrics.participantsJoined.Add(1)
	r.sfu.addParticipant(p)
	if opts.Subscribe == SubscribeDynamic {
		for _, pub := range pubs {
			if pub.owner != p {
				p.subscribe(pub)
			}
		}
	}
	r.log.Info("participant joined", "participant", opts.ID)
	return p, nil
}

// Participant returns a participant by id, or nil.
func (r *Room) Participant(id string) *Participant {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.participants[id]
}

// Participants returns the ids of everyone in the room.
func (r *Room) Participants() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := make([]string, 0, len(r.participants))
	for id := range r.participants {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func (r *Room) publish(pub *Publication) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.publications = append(r.publications, pub)
	others := r.othersLocked(pub.owner)
	r.mu.Unlock()
	for _, p := range others {
		switch p.opts.Subscribe {
		case SubscribeDynamic:
			p.subscribe(pub)
		case SubscribeSlots:
			r.assignSlots(p)
		}
	}
}

func (r *Room) unpublish(pub *Publication) {
	r.mu.Lock()
	r.publications = slices.DeleteFunc(r.publications, func(x *Publication) bool { return x == pub })
	others := r.othersLocked(pub.owner)
	r.mu.Unlock()
	for _, p := range others {
		switch p.opts.Subscribe {
		case SubscribeDynamic:
			p.unsubscribe(pub)
		case SubscribeSlots:
			r.assignSlots(p)
		}
	}
}

func (r *Room) othersLocked(except *Participant) []*Participant {
	out := make([]*Participant, 0, len(r.participants))
	for _, p := range r.participants {
		if p != except {
			out = append(out, p)
		}
	}
	return out
}

// assignSlots feeds each receiving slot of a player with the newest live
// publication of its kind from someone else; a change of publisher becomes
// a seamless source switch on the same track.
func (r *Room) assignSlots(p *Participant) {
	r.mu.Lock()
	var newest [3]*Publication // by webrtc.RTPCodecType
	for _, pub := range r.publications {
		if pub.owner != p && !pub.closed.Load() && int(pub.kind) < len(newest) {
			newest[pub.kind] = pub
		}
	}
	r.mu.Unlock()
	p.mu.Lock()
	slots := slices.Clone(p.slots)
	p.mu.Unlock()
	used := map[webrtc.RTPCodecType]bool{}
	for _, dt := range slots {
		if used[dt.kind] {
			continue // further slots of a kind stay idle in a 1:1 room
		}
		used[dt.kind] = true
		dt.setSource(newest[dt.kind])
	}
}

// leave removes a participant and everything it published.
func (r *Room) leave(p *Participant) {
	r.mu.Lock()
	if r.participants[p.id] != p {
		r.mu.Unlock()
		p.shutdown()
		return
	}
	delete(r.participants, p.id)
	var gone []*Publication
	r.publications = slices.DeleteFunc(r.publications, func(x *Publication) bool {
		if x.owner == p {
			gone = append(gone, x)
			return true
		}
		return false
	})
	others := r.othersLocked(p)
	r.mu.Unlock()

	r.sfu.removeParticipant(p)
	p.shutdown()
	for _, pub := range gone {
		pub.closed.Store(true)
		for _, o := range others {
			switch o.opts.Subscribe {
			case SubscribeDynamic:
				o.unsubscribe(pub)
			case SubscribeSlots:
				r.assignSlots(o)
			}
		}
	}
	r.sfu.metrics.participantsLeft.Add(1)
	r.sfu.retire(p)
	r.log.Info("participant left", "participant", p.id)
	if r.opts.AutoClose {
		r.sfu.removeIfEmpty(r)
	}
}

// ActiveSpeaker is the participant with the loudest recent audio, or "".
func (r *Room) ActiveSpeaker() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.speaker
}

// updateSpeaker picks the loudest publication above the voice threshold and
// reports whether the active speaker changed.
func (r *Room) updateSpeaker() (string, bool) {
	const voiceThreshold = 60 // -dBov; quieter is background noise
	r.mu.Lock()
	defer r.mu.Unlock()
	best, bestLevel := "", int32(voiceThreshold)
	for _, pub := range r.publications {
		if pub.kind != webrtc.RTPCodecTypeAudio {
			continue
		}
		if lvl := pub.audioLevel.Load(); lvl < bestLevel {
			best, bestLevel = pub.owner.id, lvl
		}
	}
	if best == "" || best == r.speaker {
		return r.speaker, false
	}
	r.speaker = best
	return best, true
}

func (r *Room) close() []*Participant {
	r.mu.Lock()
	r.closed = true
	ps := make([]*Participant, 0, len(r.participants))
	for _, p := range r.participants {
		ps = append(ps, p)
	}
	r.mu.Unlock()
	return ps
}
