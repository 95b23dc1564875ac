package rtpstats

import (
	"slices"
	"testing"
	"time"
)

func TestLossAndNACKs(t *testing.T) {
	tests := []struct {
		name      string
		seqs      []uint16
		wantLost  int64
		wantNACK  []uint16
		wantMaxEx uint32
	}{
		{"in order", []uint16{10, 11, 12, 13}, 0, nil, 13},
		{"one gap", []uint16{10, 11, 14, 15}, 2, []uint16{12, 13}, 15},
		{"gap repaired late", []uint16{10, 12, 11, 13}, 0, nil, 13},
		{"duplicate ignored", []uint16{10, 11, 11, 12}, 0, nil, 12},
		{"old duplicate ignored", []uint16{10, 11, 12, 13, 11}, 0, nil, 13},
		{"wrap around", []uint16{65534, 65535, 1, 2}, 1, []uint16{0}, 1<<16 | 2},
		{"restart after huge jump", []uint16{10, 11, 20000, 20001}, 0, nil, 20001},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReceiver(90000)
			now := time.Unix(1000, 0)
			for i, s := range tt.seqs {
				r.Update(s, uint32(i*3000), 1000, now.Add(time.Duration(i)*33*time.Millisecond))
			}
			_, snap, ok := r.Report(1, now.Add(time.Second))
			if !ok {
				t.Fatal("no report after packets")
			}
			if snap.Lost != tt.wantLost {
				t.Errorf("lost = %d, want %d", snap.Lost, tt.wantLost)
			}
			if snap.ExtendedMaxSeq != tt.wantMaxEx {
				t.Errorf("extended max = %d, want %d", snap.ExtendedMaxSeq, tt.wantMaxEx)
			}
			if r.HasMissing() != (len(tt.wantNACK) > 0) {
				t.Errorf("HasMissing = %v with %v missing", r.HasMissing(), tt.wantNACK)
			}
			got := r.MissingForNACK(nil, now.Add(time.Second), 10*time.Millisecond, 100*time.Millisecond, 3)
			if !slices.Equal(got, tt.wantNACK) {
				t.Errorf("NACK = %v, want %v", got, tt.wantNACK)
			}
		})
	}
}

func TestNACKRetriesThenGivesUp(t *testing.T) {
	r := NewReceiver(90000)
	now := time.Unix(1000, 0)
	r.Update(1, 0, 100, now)
	r.Update(3, 6000, 100, now)
	var asked int
	for i := range 10 {
		at := now.Add(time.Duration(i) * 200 * time.Millisecond)
		asked += len(r.MissingForNACK(nil, at, 0, 100*time.Millisecond, 3))
	}
	if asked != 3 {
		t.Fatalf("asked %d times for one missing packet, want 3", asked)
	}
}

func TestLatePacketIsForwardedOnceEvenAfterNACKsGaveUp(t *testing.T) {
	r := NewReceiver(90000)
	now := time.Unix(1000, 0)
	r.Update(1, 0, 100, now)
	r.Update(3, 0, 100, now)
	for i := range 10 { // NACK tries run out
		r.MissingForNACK(nil, now.Add(time.Duration(i)*time.Second), 0, 0, 3)
	}
	if !r.Update(2, 0, 100, now) {
		t.Fatal("the late retransmission was refused")
	}
	if r.Update(2, 0, 100, now) {
		t.Fatal("its duplicate was accepted")
	}
}

func TestFractionLostPerInterval(t *testing.T) {
	r := NewReceiver(48000)
	now := time.Unix(1000, 0)
	for s := uint16(0); s < 100; s++ {
		if s%4 == 1 {
			continue // lose one packet in four
		}
		r.Update(s, uint32(s)*960, 100, now)
	}
	rr, snap, _ := r.Report(7, now)
	if rr.FractionLost < 60 || rr.FractionLost > 68 { // 25% of 256
		t.Fatalf("fraction lost = %d/256, want about 64", rr.FractionLost)
	}
	if snap.Lost != 25 {
		t.Fatalf("lost = %d, want 25", snap.Lost)
	}
	for s := uint16(100); s < 200; s++ {
		r.Update(s, uint32(s)*960, 100, now)
	}
	if rr, _, _ = r.Report(7, now); rr.FractionLost != 0 {
		t.Fatalf("fraction lost in a clean interval = %d, want 0", rr.FractionLost)
	}
}

func BenchmarkUpdate(b *testing.B) {
	r := NewReceiver(90000)
	now := time.Now()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r.Update(uint16(i), uint32(i)*3000, 1200, now)
	}
}
