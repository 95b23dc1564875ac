package packetcache

import (
	"bytes"
	"testing"
)

func packet(seq uint16, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(int(seq) + i)
	}
	return b
}

func TestStoreGet(t *testing.T) {
	tests := []struct {
		name    string
		size    int
		stored  []uint16
		get     uint16
		wantHit bool
	}{
		{"hit", 16, []uint16{1, 2, 3}, 2, true},
		{"never stored", 16, []uint16{1, 2, 3}, 4, false},
		{"overwritten by newer", 16, []uint16{5, 21}, 5, false},
		{"newest after overwrite", 16, []uint16{5, 21}, 21, true},
		{"wrap around 65535 to 0", 16, []uint16{65534, 65535, 0, 1}, 65535, true},
		{"after wrap", 16, []uint16{65534, 65535, 0, 1}, 0, true},
		{"size rounds up", 20, []uint16{0, 31}, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := New(tt.size)
			for _, s := range tt.stored {
				c.Store(s, packet(s, 100+int(s%7)))
			}
			dst := make([]byte, MaxPacketSize)
			n, ok := c.Get(tt.get, dst)
			if ok != tt.wantHit {
				t.Fatalf("Get(%d) hit=%v, want %v", tt.get, ok, tt.wantHit)
			}
			if ok && !bytes.Equal(dst[:n], packet(tt.get, 100+int(tt.get%7))) {
				t.Fatalf("Get(%d) returned other bytes", tt.get)
			}
		})
	}
}

func TestRejectsOversizedAndShortDestination(t *testing.T) {
	c := New(16)
	if c.Store(1, make([]byte, MaxPacketSize+1)) {
		t.Fatal("stored a packet larger than a slot")
	}
	if c.Store(2, nil) {
		t.Fatal("stored an empty packet")
	}
	c.Store(3, packet(3, 200))
	if _, ok := c.Get(3, make([]byte, 100)); ok {
		t.Fatal("Get wrote past a short destination")
	}
	c.Reset()
	if _, ok := c.Get(3, make([]byte, MaxPacketSize)); ok {
		t.Fatal("Reset kept a packet")
	}
}

func BenchmarkStore(b *testing.B) {
	c := New(512)
	p := packet(0, 1200)
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		c.Store(uint16(i), p)
	}
}

func BenchmarkGet(b *testing.B) {
	c := New(512)
	for i := range 512 {
		c.Store(uint16(i), packet(uint16(i), 1200))
	}
	dst := make([]byte, MaxPacketSize)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		c.Get(uint16(i&511), dst)
	}
}
