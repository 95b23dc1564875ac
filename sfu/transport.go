package sfu

import (
	"encoding/binary"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"

	"github.com/avs/avs/sfu/bwe"
)

// minBitrate is the floor of a subscriber's estimate: audio and the lowest
// simulcast layer.
const minBitrate = 50_000

// transport is what the down tracks of one subscribing connection share:
// the transport-wide sequence numbers they stamp on every packet, and the
// bandwidth estimate the subscriber's feedback on them drives.
type transport struct {
	seq      atomic.Uint32
	estimate *bwe.Estimator
}

// stamp gives the header the next transport-wide sequence number. The
// extension's storage is the down track's own, so this allocates nothing.
func (d *DownTrack) stamp(h *rtp.Header) (uint16, bool) {
	if d.transport == nil || d.twccID == 0 {
		return 0, false
	}
	seq := uint16(d.transport.seq.Add(1))
	binary.BigEndian.PutUint16(d.twccBytes[:], seq)
	h.Extensions = d.extensions[:0]
	if err := h.SetExtension(d.twccID, d.twccBytes[:]); err != nil {
		return 0, false
	}
	return seq, true
}

// sent tells the estimate about a packet that went out.
func (d *DownTrack) sent(seq uint16, stamped bool, size int, now time.Time) {
	if stamped {
		d.transport.estimate.Sent(seq, size, now)
	}
}
