package signaling

import (
	"context"
	"encoding/json"
	"strconv"
	"sync/atomic"

	"github.com/pion/webrtc/v4"
)

// Media is the SFU as signaling sees it: a participant joins a room and
// negotiates two PeerConnections, "pub" (the client offers, to publish) and
// "sub" (the server offers, to deliver the room's other tracks).
type Media interface {
	Join(ctx context.Context, room, participantID string, voiceOnly bool, sig MediaSignals) (MediaSession, error)
}

// MediaSession is one participant in a room.
type MediaSession interface {
	// Offer takes the client's offer on its publishing PeerConnection
	// (first offer, renegotiation, ICE restart) and returns the answer.
	Offer(sdp string) (answer string, err error)
	// Answer takes the client's answer to a server offer on its subscribing
	// PeerConnection.
	Answer(sdp string) error
	// Candidate adds a trickled client candidate; target is "pub" or "sub".
	Candidate(target string, c webrtc.ICECandidateInit) error
	Close() error
}

// MediaSignals is how the SFU reaches the client.
type MediaSignals interface {
	// ServerOffer asks the client to (re)negotiate the subscribing PC.
	ServerOffer(sdp string)
	// ServerCandidate trickles a server candidate; target is "pub" or "sub".
	ServerCandidate(target string, c webrtc.ICECandidateInit)
}

// MediaEnder is implemented by the MediaSignals that signaling passes to
// Media.Join. An SFU adapter calls MediaEnded when the participant left on
// its own (ICE failed, room closed), so the client is told with a
// media.ended push and may join again.
type MediaEnder interface {
	MediaEnded()
}

// ParticipantID is the id a party has in an SFU room; the role prefix
// tells a customer's tracks from an agent's.
func ParticipantID(p Party) string {
	return p.Role + "-" + strconv.FormatInt(p.ID, 10)
}

type mediaBinding struct {
	room      string
	voiceOnly bool
	ms        MediaSession
	sig       *sessionSignals
}

// sessionSignals turns SFU callbacks into pushes on the session, so they
// reach the client now or on resume. Once its media session is closed it
// drops late callbacks.
type sessionSignals struct {
	s      *Session
	closed atomic.Bool
}

type sdpData struct {
	SDP string `json:"sdp"`
}

type candidateData struct {
	Target    string                  `json:"target"`
	Candidate webrtc.ICECandidateInit `json:"candidate"`
}

func (g *sessionSignals) ServerOffer(sdp string) {
	if !g.closed.Load() {
		_ = g.s.Push("media.offer", sdpData{SDP: sdp})
	}
}

func (g *sessionSignals) ServerCandidate(target string, c webrtc.ICECandidateInit) {
	if !g.closed.Load() {
		_ = g.s.Push("media.candidate", candidateData{Target: target, Candidate: c})
	}
}

// MediaEnded implements MediaEnder.
func (g *sessionSignals) MediaEnded() {
	if g.closed.Load() {
		return // signaling closed it itself
	}
	s := g.s
	// The SFU may call this from inside a media operation that holds
	// mediaMu; never wait for it here.
	s.srv.goSafe(func() {
		s.mediaMu.Lock()
		mb := s.media
		if mb == nil || mb.sig != g {
			s.mediaMu.Unlock()
			return
		}
		s.media = nil
		s.mediaMu.Unlock()
		s.srv.closeBinding(mb)
		_ = s.Push("media.ended", mediaEndedData{Room: mb.room})
	})
}

type mediaEndedData struct {
	Room string `json:"room"`
}

// SetMediaRoom says which SFU room the session may join with media.join,
// and whether the call is audio only. The business binding calls it when a
// call is placed or answered, which may be while the customer still waits
// in the queue so media is ready the moment the agent answers. A media
// session open in another room is closed. An empty room forbids media.
func (s *Session) SetMediaRoom(room string, voiceOnly bool) {
	s.mu.Lock()
	s.room, s.voiceOnly = room, voiceOnly
	s.mu.Unlock()
	// Closing may wait for a slow Join; callers (notifiers) must not block.
	s.srv.goSafe(func() { s.closeMediaUnless(room) })
}

// SetMediaRoom sets the media room of every live session of p.
func (srv *Server) SetMediaRoom(p Party, room string, voiceOnly bool) {
	for _, s := range srv.sessionsOf(p) {
		s.SetMediaRoom(room, voiceOnly)
	}
}

func (s *Session) mediaRoom() (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.room, s.voiceOnly
}

func (s *Session) closeMediaUnless(room string) {
	s.mediaMu.Lock()
	mb := s.media
	if mb == nil || (room != "" && mb.room == room) {
		s.mediaMu.Unlock()
		return
	}
	s.media = nil
	s.mediaMu.Unlock()
	s.srv.closeBinding(mb)
}

func (s *Session) closeMedia() { s.closeMediaUnless("") }

func (srv *Server) closeBinding(mb *mediaBinding) {
	mb.sig.closed.Store(true)
	if err := mb.ms.Close(); err != nil {
		srv.log.Debug("media close", "room", mb.room, "err", err)
	}
	srv.mu.Lock()
	srv.inMedia--
	if srv.inMedia == 0 {
		close(srv.idle)
		srv.idle = make(chan struct{})
	}
	srv.mu.Unlock()
}

type joinReply struct {
	Room          string `json:"room"`
	ParticipantID string `json:"participantId"`
	VoiceOnly     bool   `json:"voiceOnly"`
}

// handleMedia answers the media.* requests.
func (c *conn) handleMedia(ctx context.Context, s *Session, typ string, data json.RawMessage) (any, error) {
	p, ok := s.Party()
	if !ok {
		return nil, Errorf(CodeUnauthenticated, "sign in first")
	}
	s.mediaMu.Lock()
	defer s.mediaMu.Unlock()
	if typ == "media.join" {
		return c.join(ctx, s, p)
	}
	if typ == "media.leave" {
		if mb := s.media; mb != nil {
			s.media = nil
			c.srv.closeBinding(mb)
		}
		return nil, nil
	}
	mb := s.media
	if mb == nil {
		return nil, Errorf(CodeNoCall, "no media session; send media.join first")
	}
	switch typ {
	case "media.offer":
		var d sdpData
		if err := decodeData(typ, data, &d); err != nil {
			return nil, err
		}
		answer, err := mb.ms.Offer(d.SDP)
		if err != nil {
			return nil, mediaErr(err)
		}
		return sdpData{SDP: answer}, nil
	case "media.answer":
		var d sdpData
		if err := decodeData(typ, data, &d); err != nil {
			return nil, err
		}
		return nil, mediaErr(mb.ms.Answer(d.SDP))
	default: // media.candidate
		var d candidateData
		if err := decodeData(typ, data, &d); err != nil {
			return nil, err
		}
		if d.Target != "pub" && d.Target != "sub" {
			return nil, Errorf(CodeBadRequest, `media.candidate: target must be "pub" or "sub"`)
		}
		if d.Candidate.Candidate == "" {
			// Browsers signal end-of-candidates this way; the SFU does not
			// need it.
			return nil, nil
		}
		return nil, mediaErr(mb.ms.Candidate(d.Target, d.Candidate))
	}
}

// join opens the media session for the room the business layer assigned;
// s.mediaMu is held.
func (c *conn) join(ctx context.Context, s *Session, p Party) (any, error) {
	room, voiceOnly := s.mediaRoom()
	if room == "" {
		return nil, Errorf(CodeNoCall, "no call to join")
	}
	pid := ParticipantID(p)
	if mb := s.media; mb != nil {
		if mb.room == room {
			return joinReply{Room: room, ParticipantID: pid, VoiceOnly: mb.voiceOnly}, nil
		}
		s.media = nil
		c.srv.closeBinding(mb)
	}
	if c.srv.media == nil {
		return nil, Errorf(CodeMediaFailed, "media is not available")
	}
	sig := &sessionSignals{s: s}
	ms, err := c.srv.media.Join(ctx, room, pid, voiceOnly, sig)
	if err != nil {
		return nil, mediaErr(err)
	}
	c.srv.mu.Lock()
	c.srv.inMedia++
	c.srv.mu.Unlock()
	mb := &mediaBinding{room: room, voiceOnly: voiceOnly, ms: ms, sig: sig}
	s.mu.Lock()
	ended := s.ended
	s.mu.Unlock()
	if ended {
		// endSession's closeMedia ran before we held mediaMu.
		c.srv.closeBinding(mb)
		return nil, ErrSessionEnded
	}
	s.media = mb
	return joinReply{Room: room, ParticipantID: pid, VoiceOnly: voiceOnly}, nil
}

func mediaErr(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := asError(err); ok {
		return err
	}
	return &Error{Code: CodeMediaFailed, Message: err.Error()}
}

func decodeData(typ string, data json.RawMessage, v any) error {
	if len(data) == 0 {
		return Errorf(CodeBadRequest, "%s: missing data", typ)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return Errorf(CodeBadRequest, "%s: invalid data: %v", typ, err)
	}
	return nil
}

// clearMediaRoom forbids media if the session's room is still room; a
// later call's room is left alone.
func (s *Session) clearMediaRoom(room string) {
	s.mu.Lock()
	if s.room != room {
		s.mu.Unlock()
		return
	}
	s.room, s.voiceOnly = "", false
	s.mu.Unlock()
	s.srv.goSafe(func() { s.closeMediaIn(room) })
}

// closeMediaIn closes the media session if it is in room.
func (s *Session) closeMediaIn(room string) {
	s.mediaMu.Lock()
	mb := s.media
	if mb == nil || mb.room != room {
		s.mediaMu.Unlock()
		return
	}
	s.media = nil
	s.mediaMu.Unlock()
	s.srv.closeBinding(mb)
}
