package sfu

import (
	"encoding/binary"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

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

// How many outgoing packets' transport-wide numbers a down track
// remembers for retransmissions, by kind: twice the default packet cache
// ceilings (sfu.video_cache_packets, sfu.audio_cache_packets). A packet
// further back is not sent again.
const (
	videoStampHistory = 1024
	audioStampHistory = 64
)

// stamp is the transport-wide number one outgoing packet was sent with.
type stamp struct {
	seq, tseq uint16
	set       bool
}

// remember notes the number a packet went out with; under the track's mu.
func (d *DownTrack) remember(seq, tseq uint16) {
	if d.stamps == nil {
		n := videoStampHistory
		if d.kind == webrtc.RTPCodecTypeAudio {
			n = audioStampHistory
		}
		d.stamps = make([]stamp, n)
	}
	d.stamps[int(seq)%len(d.stamps)] = stamp{seq: seq, tseq: tseq, set: true}
}

// firstStamp puts on d.out the transport-wide number the packet seq first
// went out with, if it had one. found is false when it had one that is no
// longer known: the packet cannot be sent again unchanged.
func (d *DownTrack) firstStamp(seq uint16) (tseq uint16, stamped, found bool) {
	if d.transport == nil || d.twccID == 0 {
		return 0, false, true
	}
	if d.stamps == nil {
		return 0, false, false
	}
	st := d.stamps[int(seq)%len(d.stamps)]
	if !st.set || st.seq != seq {
		return 0, false, false
	}
	binary.BigEndian.PutUint16(d.twccBytes[:], st.tseq)
	d.out.Extensions = d.extensions[:0]
	if err := d.out.SetExtension(d.twccID, d.twccBytes[:]); err != nil {
		return 0, false, false
	}
	return st.tseq, true, true
}

// sent tells the estimate about a packet that went out.
func (d *DownTrack) sent(seq uint16, stamped bool, size int, now time.Time) {
	if stamped {
		d.transport.estimate.Sent(seq, size, now)
	}
}
