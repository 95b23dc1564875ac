package packetcache

import (
	"bytes"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// packet returns n bytes that depend on seq and n, so that bytes from another
// packet or another store are detected.
func packet(seq uint16, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(int(seq) + i*7 + n)
	}
	return b
}

const ms = int64(time.Millisecond)

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
		{"index slot reused across wrap", 16, []uint16{65535, 15}, 65535, false},
		{"size rounds up", 20, []uint16{0, 31}, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := New(tt.size, time.Second)
			for i, s := range tt.stored {
				if !c.Store(s, packet(s, 100+int(s%7)), int64(i)*ms) {
					t.Fatalf("Store(%d) refused", s)
				}
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

func TestSize(t *testing.T) {
	for _, tt := range []struct{ in, want int }{
		{0, 16}, {16, 16}, {17, 32}, {1000, 1024}, {1 << 15, 1 << 15}, {1 << 20, 1 << 15},
	} {
		if got := New(tt.in, 0).Size(); got != tt.want {
			t.Errorf("New(%d).Size() = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestRejectsOversizedAndShortDestination(t *testing.T) {
	c := New(16, time.Second)
	if c.Store(1, make([]byte, MaxPacketSize+1), 0) {
		t.Fatal("stored a packet larger than MaxPacketSize")
	}
	if c.Store(2, nil, 0) {
		t.Fatal("stored an empty packet")
	}
	if !c.Store(3, packet(3, MaxPacketSize), 0) {
		t.Fatal("refused a MaxPacketSize packet")
	}
	c.Store(4, packet(4, 200), 0)
	if _, ok := c.Get(4, make([]byte, 199)); ok {
		t.Fatal("Get wrote past a short destination")
	}
	if n, ok := c.Get(4, make([]byte, 200)); !ok || n != 200 {
		t.Fatalf("Get into an exact destination = %d, %v", n, ok)
	}
}

// With history 0 the arena never grows, so large packets overwrite the bytes
// of older ones whose index entries still carry their sequence numbers.
func TestOverwrittenBytesAreAMiss(t *testing.T) {
	c := New(1024, 0)
	initial := c.Bytes()
	const n, size = 100, 1400 // 140 kB through a 16 KiB arena
	for i := range n {
		c.Store(uint16(i), packet(uint16(i), size), int64(i)*ms)
	}
	if c.Bytes() != initial {
		t.Fatalf("arena grew from %d to %d with history 0", initial, c.Bytes())
	}
	dst := make([]byte, MaxPacketSize)
	fit := initial / size
	for i := range n {
		got, ok := c.Get(uint16(i), dst)
		switch {
		case i < n-fit:
			if ok {
				t.Errorf("Get(%d) hit although its bytes were overwritten", i)
			}
		case i >= n-fit+1: // one packet of slack for the skipped tail
			if !ok || !bytes.Equal(dst[:got], packet(uint16(i), size)) {
				t.Errorf("Get(%d) = %v, want the stored bytes", i, ok)
			}
		}
	}
}

func TestGrowthFollowsBitrate(t *testing.T) {
	tests := []struct {
		name       string
		maxPackets int
		history    time.Duration
		size       int
		perSecond  int
		seconds    int
		maxBytes   int
		mustHit    int // the newest packets that must hit
	}{
		// 100 packets of 1100 bytes a second: 880 kbit/s.
		{"800 kbit/s keeps 1 s", 1024, time.Second, 1100, 100, 3, 256 << 10, 100},
		{"2.4 Mbit/s keeps 1 s", 1024, time.Second, 1200, 250, 3, 512 << 10, 250},
		{"audio stays small", 1024, time.Second, 100, 50, 3, 16 << 10, 50},
		{"capped by maxPackets", 64, 10 * time.Second, 1100, 100, 3, 64 * MaxPacketSize, 64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := New(tt.maxPackets, tt.history)
			total := tt.perSecond * tt.seconds
			step := int64(time.Second) / int64(tt.perSecond)
			for i := range total {
				c.Store(uint16(i), packet(uint16(i), tt.size), int64(i)*step)
			}
			if c.Bytes() > tt.maxBytes {
				t.Errorf("Bytes() = %d, want <= %d", c.Bytes(), tt.maxBytes)
			}
			dst := make([]byte, MaxPacketSize)
			for i := total - tt.mustHit; i < total; i++ {
				n, ok := c.Get(uint16(i), dst)
				if !ok || !bytes.Equal(dst[:n], packet(uint16(i), tt.size)) {
					t.Fatalf("Get(%d) = %v, want the stored bytes (Bytes() = %d)", i, ok, c.Bytes())
				}
			}
		})
	}
}

func TestResetKeepsArena(t *testing.T) {
	c := New(1024, time.Second)
	for i := range 300 {
		c.Store(uint16(i), packet(uint16(i), 1200), int64(i)*10*ms)
	}
	grown := c.Bytes()
	if grown <= initialArena {
		t.Fatalf("arena did not grow: %d", grown)
	}
	c.Reset()
	dst := make([]byte, MaxPacketSize)
	for i := range 300 {
		if _, ok := c.Get(uint16(i), dst); ok {
			t.Fatalf("Get(%d) hit after Reset", i)
		}
	}
	if c.Bytes() != grown {
		t.Fatalf("Reset changed Bytes() from %d to %d", grown, c.Bytes())
	}
	for i := range 300 {
		s := uint16(1000 + i)
		c.Store(s, packet(s, 900), int64(3000+i*10)*ms)
	}
	for i := 200; i < 300; i++ { // the last second
		s := uint16(1000 + i)
		n, ok := c.Get(s, dst)
		if !ok || !bytes.Equal(dst[:n], packet(s, 900)) {
			t.Fatalf("Get(%d) after Reset and Store = %v", s, ok)
		}
	}
}

// stored is what the reference model remembers of one Store.
type stored struct {
	seq     uint16
	pkt     []byte
	arrival int64
}

// checkRing replays the skip rule over the fifo, as makeRoom does, and
// checks that it lands on every live entry's position and ends at the head:
// a drift would make the writer misjudge which packets it overwrites.
func checkRing(t testing.TB, c *Cache) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	pos, off := c.tail, c.tailOff
	oldest := c.head
	for i := range c.count {
		r := c.fifo[(c.first+i)&int(c.mask)]
		if off+int(r.n) > len(c.arena) {
			pos += uint64(len(c.arena) - off)
			off = 0
		}
		if i == 0 {
			oldest = pos
		}
		if e := c.index[r.seq&c.mask]; e.n != 0 && e.seq == r.seq && e.start == pos && int(e.off) != off {
			t.Fatalf("record %d (seq %d) replays to offset %d, entry says %d", i, r.seq, off, e.off)
		}
		pos += uint64(r.n)
		off += int(r.n)
	}
	if pos != c.head || off != c.headOff {
		t.Fatalf("fifo replays to %d/%d, head is %d/%d", pos, off, c.head, c.headOff)
	}
	if c.head-oldest > uint64(len(c.arena)) {
		t.Fatalf("fifo spans %d bytes, arena has %d", c.head-oldest, len(c.arena))
	}
}

// model checks a Cache against the log of its Stores.
type model struct {
	log []stored
	dst []byte
	// Generation stamps stand for per-check sets, so that checking after
	// every Store stays cheap.
	gen       uint32
	seen      [1 << 16]uint32
	slotTaken []uint32
}

func newModel(c *Cache) *model {
	return &model{dst: make([]byte, MaxPacketSize), slotTaken: make([]uint32, c.Size())}
}

// check verifies every sequence number of the recent stores against c: a hit
// must return the bytes last stored for it, and a miss is allowed only when
// the packet was replaced in the index, is not among the last Size() stores,
// or is both older than the history and not guaranteed to fit the arena.
func (m *model) check(t testing.TB, c *Cache, history int64) {
	t.Helper()
	checkRing(t, c)
	m.gen++
	mask := c.Size() - 1
	last := m.log[len(m.log)-1]
	bytesSince := 0
	for i := len(m.log) - 1; i >= 0 && i >= len(m.log)-2*c.Size(); i-- {
		s := m.log[i]
		bytesSince += len(s.pkt)
		if m.seen[s.seq] == m.gen {
			continue
		}
		m.seen[s.seq] = m.gen
		n, ok := c.Get(s.seq, m.dst)
		slot := int(s.seq) & mask
		replaced := m.slotTaken[slot] == m.gen
		m.slotTaken[slot] = m.gen
		if ok && (replaced || !bytes.Equal(m.dst[:n], s.pkt)) {
			t.Fatalf("Get(%d) returned wrong bytes (replaced=%v)", s.seq, replaced)
		}
		if ok || replaced || i < len(m.log)-c.Size() {
			continue
		}
		// At most one tail of less than MaxPacketSize is skipped
		// between a packet that is still intact and the head.
		span := bytesSince + MaxPacketSize - 1
		young := last.arrival-s.arrival < history
		if span <= c.Bytes() || young && span <= c.Size()*MaxPacketSize {
			t.Fatalf("Get(%d) missed: %d stores ago, %d bytes since, age %v, arena %d",
				s.seq, len(m.log)-1-i, bytesSince, time.Duration(last.arrival-s.arrival), c.Bytes())
		}
	}
}

func TestAgainstModel(t *testing.T) {
	tests := []struct {
		name       string
		maxPackets int
		history    time.Duration
		maxSize    int
		maxStep    time.Duration
		reorder    bool
	}{
		{"no history", 64, 0, MaxPacketSize, 10 * time.Millisecond, false},
		{"small cap", 16, time.Second, MaxPacketSize, 10 * time.Millisecond, false},
		{"video", 512, time.Second, MaxPacketSize, 5 * time.Millisecond, false},
		{"small packets", 256, 500 * time.Millisecond, 200, 2 * time.Millisecond, false},
		{"bursts and gaps", 128, 300 * time.Millisecond, MaxPacketSize, 100 * time.Millisecond, true},
		{"long history", 1024, 20 * time.Second, MaxPacketSize, 20 * time.Millisecond, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, uint64(tt.maxPackets)))
			c := New(tt.maxPackets, tt.history)
			m := newModel(c)
			var seq uint16 = 65000 // crosses 65535 -> 0
			var now int64
			for i := range 6000 {
				s := seq
				if tt.reorder && rng.IntN(8) == 0 {
					s = seq - uint16(rng.IntN(40)) // late or duplicate
				} else {
					seq++
				}
				if rng.IntN(50) == 0 {
					seq += uint16(rng.IntN(300)) // loss
				}
				now += rng.Int64N(int64(tt.maxStep) + 1)
				p := make([]byte, 1+rng.IntN(tt.maxSize))
				for j := range p {
					p[j] = byte(rng.Uint32())
				}
				if !c.Store(s, p, now) {
					t.Fatalf("Store(%d, %d bytes) refused", s, len(p))
				}
				m.log = append(m.log, stored{s, p, now})
				if i%2000 == 1999 && tt.reorder {
					c.Reset()
					m.log = m.log[:0]
					continue
				}
				// Every check reads up to 2*Size() packets; large caches are
				// checked less often to keep the race detector's run short.
				if i%max(1, c.Size()/64) == 0 {
					m.check(t, c, int64(tt.history))
				}
			}
			if c.Bytes() > c.Size()*MaxPacketSize {
				t.Fatalf("Bytes() = %d above the cap %d", c.Bytes(), c.Size()*MaxPacketSize)
			}
		})
	}
}

func FuzzAgainstModel(f *testing.F) {
	f.Add(uint8(16), uint16(100), []byte{1, 200, 3, 255, 0, 17})
	f.Add(uint8(64), uint16(0), []byte{255, 255, 255, 1, 1, 1})
	f.Fuzz(func(t *testing.T, maxPackets uint8, historyMs uint16, ops []byte) {
		history := int64(historyMs) * ms
		c := New(int(maxPackets), time.Duration(history))
		m := newModel(c)
		var now int64
		var seq uint16
		for i := 0; i+1 < len(ops); i += 2 {
			// Each pair of bytes is one Store: size and arrival step,
			// with a low size value meaning a reordered sequence number.
			size := 1 + int(ops[i])*MaxPacketSize/256
			s := seq
			if ops[i+1]&7 == 0 {
				s -= uint16(ops[i+1] >> 3)
			} else {
				seq++
			}
			now += int64(ops[i+1]) * ms
			p := packet(s, size)
			p[0] = byte(i)
			c.Store(s, p, now)
			m.log = append(m.log, stored{s, p, now})
			m.check(t, c, history)
		}
	})
}

// One writer and several readers that ask for recent packets, as NACKs do;
// every hit must carry the bytes of the packet asked for, whatever the
// interleaving with Stores and growths.
func TestConcurrentReaders(t *testing.T) {
	c := New(256, 200*time.Millisecond)
	const stores = 20000
	size := func(s uint16) int { return 1 + int(s)*37%MaxPacketSize }
	var written atomic.Int64
	var wg sync.WaitGroup
	var hits [4]int
	for r := range hits {
		wg.Go(func() {
			dst := make([]byte, MaxPacketSize)
			for i := range stores {
				s := uint16(written.Load() - int64(i%300))
				if n, ok := c.Get(s, dst); ok {
					if !bytes.Equal(dst[:n], packet(s, size(s))) {
						t.Errorf("Get(%d) returned wrong bytes", s)
						return
					}
					hits[r]++
				}
			}
		})
	}
	for i := range stores {
		s := uint16(i)
		c.Store(s, packet(s, size(s)), int64(i)*ms)
		written.Store(int64(i))
	}
	wg.Wait()
	t.Logf("reader hits: %v", hits)
}

func TestNoAllocations(t *testing.T) {
	c := New(512, time.Second)
	p := packet(0, 1200)
	var i int64
	store := func() { c.Store(uint16(i), p, i*4*ms); i++ }
	for range 5000 { // grow to steady state first
		store()
	}
	if a := testing.AllocsPerRun(1000, store); a != 0 {
		t.Errorf("Store allocates %v times", a)
	}
	dst := make([]byte, MaxPacketSize)
	if a := testing.AllocsPerRun(1000, func() { c.Get(uint16(i-10), dst) }); a != 0 {
		t.Errorf("Get allocates %v times", a)
	}
}

func BenchmarkStore(b *testing.B) {
	c := New(512, time.Second)
	p := packet(0, 1200)
	var now int64
	for i := range 5000 { // reach the arena size of 1.2 MB/s
		c.Store(uint16(i), p, now)
		now += ms
	}
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		c.Store(uint16(i), p, now)
		now += ms
	}
}

func BenchmarkGet(b *testing.B) {
	c := New(512, time.Second)
	for i := range 512 {
		c.Store(uint16(i), packet(uint16(i), 1200), int64(i)*ms)
	}
	dst := make([]byte, MaxPacketSize)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, ok := c.Get(uint16(i&511), dst); !ok {
			b.Fatal("miss")
		}
	}
}
