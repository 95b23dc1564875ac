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
	// How many outgoing packets' numbers a down track remembers, by kind.
	videoStamps, audioStamps int
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

// stampHistory is how many outgoing packets' transport-wide numbers a
// down track remembers, for a packet cache of cacheSize: twice as many,
// so that what the cache answers is nearly always within them (a track
// that switched from a low simulcast layer may be asked for older ones,
// which firstStamp refuses).
func stampHistory(cacheSize int) int { return min(2*cacheSize, 1<<15) }

// stamp is the transport-wide number one outgoing packet was sent with.
type stamp struct {
	seq, tseq uint16
	set       bool
}

// remember notes the number a packet went out with; under the track's mu.
func (d *DownTrack) remember(seq, tseq uint16) {
	if d.stamps == nil {
		n := d.transport.videoStamps
		if d.kind == webrtc.RTPCodecTypeAudio {
			n = d.transport.audioStamps
		}
		d.stamps = make([]stamp, max(n, 1))
	}
	d.stamps[int(seq)%len(d.stamps)] = stamp{seq: seq, tseq: tseq, set: true}
}

// firstStamp puts on d.out the transport-wide number the packet seq first
// went out with. A packet within the remembered span that is not
// remembered never went out, so it gets a new number; one further back
// may have gone out with a number now forgotten, and ok is false: it is
// not sent again.
func (d *DownTrack) firstStamp(seq uint16) (tseq uint16, stamped, ok bool) {
	if d.transport == nil || d.twccID == 0 {
		return 0, false, true
	}
	if d.stamps != nil {
		if st := d.stamps[int(seq)%len(d.stamps)]; st.set && st.seq == seq {
			binary.BigEndian.PutUint16(d.twccBytes[:], st.tseq)
			d.out.Extensions = d.extensions[:0]
			if err := d.out.SetExtension(d.twccID, d.twccBytes[:]); err != nil {
				return 0, false, false
			}
			return st.tseq, true, true
		}
		if back := d.lastSeq - seq; back >= uint16(len(d.stamps)) && back < 1<<15 {
			return 0, false, false
		}
	}
	tseq, stamped = d.stamp(&d.out)
	if stamped {
		d.remember(seq, tseq)
	}
	return tseq, stamped, true
}

// sent tells the estimate about a packet that went out.
func (d *DownTrack) sent(seq uint16, stamped bool, size int, now time.Time) {
	if stamped {
		d.transport.estimate.Sent(seq, size, now)
	}
}
