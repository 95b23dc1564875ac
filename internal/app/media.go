package app

import (
	"context"

	"github.com/avs/avs/sfu"
	"github.com/avs/avs/signaling"
)

// media lets signaling put a call's parties into SFU rooms.
type media struct{ sfu *sfu.SFU }

func (m media) Join(_ context.Context, room, participantID string, voiceOnly bool, sig signaling.MediaSignals) (signaling.MediaSession, error) {
	// A customer joins while still queued; if no agent ever answers, the
	// call center never opens the room, so it must close by itself.
	r, err := m.sfu.Room(room, sfu.RoomOptions{VoiceOnly: voiceOnly, AutoClose: true})
	if err != nil {
		return nil, err
	}
	var onClose func()
	if e, ok := sig.(signaling.MediaEnder); ok {
		onClose = e.MediaEnded
	}
	return r.Join(sfu.ParticipantOptions{
		ID: participantID, VoiceOnly: voiceOnly, Subscribe: sfu.SubscribeDynamic, Signals: sig, OnClose: onClose,
	})
}
