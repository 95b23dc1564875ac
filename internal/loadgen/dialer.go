package loadgen

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/pion/webrtc/v4"
)

// Role is what a generator peer does in a room.
type Role int

// Roles.
const (
	RolePublish Role = iota // sends audio and video
	RolePlay                // receives the room's audio and video
)

func (r Role) String() string {
	if r == RolePublish {
		return "publish"
	}
	return "play"
}

// Dialer negotiates a generator peer with the server. The peer already has
// its transceivers; the dialer carries the session descriptions between it
// and the server and returns once both are applied. WHIP/WHEP is one way,
// where the generator always offers; the signaling WebSocket can be another,
// where the server offers to a subscriber, without changes to how calls are
// run or measured. A call names two rooms, load-<i>-a and load-<i>-b, one per
// publisher; a dialer whose server puts both participants in one room maps
// the pair onto it.
type Dialer interface {
	Dial(ctx context.Context, role Role, room string, pc *webrtc.PeerConnection) (Session, error)
}

// Session is a negotiated peer's server-side resource.
type Session interface {
	// Hangup tells the server the session is over.
	Hangup(ctx context.Context) error
}

// WHIPDialer publishes with WHIP (POST {base}/whip/{room}) and plays with
// WHEP (POST {base}/whep/{room}). It gathers all ICE candidates before it
// posts the offer, so it needs no trickle ICE.
type WHIPDialer struct {
	Base   *url.URL
	Token  string
	Client *http.Client
}

// maxAnswer bounds the SDP answer read from the server.
const maxAnswer = 64 << 10

// Dial implements Dialer.
func (d *WHIPDialer) Dial(ctx context.Context, role Role, room string, pc *webrtc.PeerConnection) (Session, error) {
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return nil, fmt.Errorf("create offer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return nil, fmt.Errorf("set local description: %w", err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return nil, fmt.Errorf("gather ICE candidates: %w", ctx.Err())
	}
	path := "whip"
	if role == RolePlay {
		path = "whep"
	}
	endpoint := d.Base.JoinPath(path, room)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint.String(),
		strings.NewReader(pc.LocalDescription().SDP))
	if err != nil {
		return nil, fmt.Errorf("build %s request: %w", path, err)
	}
	req.Header.Set("Content-Type", "application/sdp")
	if d.Token != "" {
		req.Header.Set("Authorization", "Bearer "+d.Token)
	}
	resp, err := d.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", path, room, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, fmt.Errorf("read %s answer: %w", path, err)
	}
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s %s: %s: %s", path, room, resp.Status, bytes.TrimSpace(body[:min(len(body), 200)]))
	}
	sess := &whipSession{client: d.Client, token: d.Token}
	if loc := resp.Header.Get("Location"); loc != "" {
		u, err := endpoint.Parse(loc)
		if err != nil {
			return nil, fmt.Errorf("%s Location %q: %w", path, loc, err)
		}
		sess.location = u.String()
	}
	answer := webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(body)}
	if err := pc.SetRemoteDescription(answer); err != nil {
		_ = sess.Hangup(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("set %s answer: %w", path, err)
	}
	return sess, nil
}

type whipSession struct {
	client   *http.Client
	token    string
	location string
}

// Hangup deletes the WHIP or WHEP resource.
func (s *whipSession) Hangup(ctx context.Context) error {
	if s.location == "" {
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, s.location, nil)
	if err != nil {
		return fmt.Errorf("build DELETE: %w", err)
	}
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("DELETE %s: %w", s.location, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode >= 300 {
		return fmt.Errorf("DELETE %s: %s", s.location, resp.Status)
	}
	return nil
}
