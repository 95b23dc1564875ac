package sfu

import (
	"encoding/binary"
	"testing"

	"github.com/pion/webrtc/v4"

	"github.com/avs/avs/sfu/bwe"
)

func TestRetransmissionKeepsItsFirstTransportNumber(t *testing.T) {
	newTrack := func() *DownTrack {
		d := newDownTrack(webrtc.RTPCodecTypeVideo, "v", "s")
		d.transport = &transport{estimate: bwe.New(1_000_000, minBitrate, 4_000_000), videoStamps: 8, audioStamps: 8}
		d.twccID = 3
		return d
	}
	sentTwice := newTrack()
	sentTwice.transport.seq.Store(41)
	sentTwice.remember(100, 7)
	sentTwice.lastSeq = 100

	tests := []struct {
		name     string
		track    *DownTrack
		seq      uint16
		wantTseq uint16
		wantOK   bool
	}{
		{"sent before: the same number", sentTwice, 100, 7, true},
		{"never sent, within the remembered span: a new number", sentTwice, 99, 42, true},
		{"further back than remembered: not sent again", sentTwice, 90, 0, false},
		{"nothing sent yet: a new number", newTrack(), 5, 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.track
			d.out.Extensions = nil
			tseq, stamped, ok := d.firstStamp(tt.seq)
			if ok != tt.wantOK || (ok && (!stamped || tseq != tt.wantTseq)) {
				t.Fatalf("firstStamp(%d) = %d, %v, %v; want %d, ok %v", tt.seq, tseq, stamped, ok, tt.wantTseq, tt.wantOK)
			}
			if !ok {
				return
			}
			if ext := d.out.GetExtension(d.twccID); len(ext) != 2 || binary.BigEndian.Uint16(ext) != tt.wantTseq {
				t.Fatalf("header carries %v, want transport number %d", ext, tt.wantTseq)
			}
		})
	}
}
