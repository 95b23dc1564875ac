// Package packetcache keeps the most recent RTP packets of one track, indexed
// by sequence number, so that the SFU can answer a subscriber's NACK without
// asking the publisher again.
//
// Packets are copied into a byte arena used as a ring, so a cache costs
// about what its track's recent traffic weighs rather than a full-size slot
// per packet. The arena starts at 16 KiB and doubles, up to one
// MaxPacketSize per packet, only when keeping the configured history (the
// packets that arrived less than that long ago) demands it; it never
// shrinks. Once the arena is at that cap the oldest packets are overwritten
// even if they are younger than the history. Storing and fetching copy bytes
// and do not allocate, except for the rare Store that grows the arena.
//
// A Cache is safe for one writer (the goroutine forwarding the track) and
// any number of concurrent readers (those answering subscribers' NACKs).
package packetcache

import (
	"sync"
	"time"
)

// MaxPacketSize is the largest packet the cache holds. Larger packets are
// not cached; they would not fit a path MTU either.
const MaxPacketSize = 1500

// initialArena is small enough that an audio track never grows past it and
// large enough that a video track reaches its size in a few doublings.
const initialArena = 16 << 10

// entry locates the packet last stored under a sequence number.
type entry struct {
	start   uint64 // absolute arena position: bytes ever written or skipped
	arrival int64  // nanoseconds on the caller's clock
	off     uint32 // start's offset in the arena, kept to avoid a division
	seq     uint16
	n       uint16 // length; 0 marks an empty entry
}

// record is one Store in write order, which is arena order. Its start is
// not kept: replaying the skip rule from the tail recovers it.
type record struct {
	seq uint16
	n   uint16
}

// Cache keeps packets addressed by sequence number modulo its size; their
// bytes live in a ring arena that grows with the track's bitrate.
type Cache struct {
	mu      sync.Mutex
	mask    uint16
	history int64
	maxSize int // arena cap: one MaxPacketSize per index entry

	index []entry
	arena []byte

	// head is where the next packet goes, tail where the oldest recorded
	// packet (or the skipped tail before it) begins, both as absolute
	// positions with their arena offsets alongside.
	head, tail       uint64
	headOff, tailOff int

	// fifo holds the last len(index) Stores, oldest at first; it lets the
	// writer find which packets a write is about to overwrite.
	fifo         []record
	first, count int
}

// New returns a cache that keeps up to maxPackets packets (rounded up to a
// power of two between 16 and 32768) and at least the ones that arrived less
// than history before the newest, as long as maxPackets full-size packets
// would fit.
func New(maxPackets int, history time.Duration) *Cache {
	n := 16
	for n < maxPackets && n < 1<<15 {
		n <<= 1
	}
	maxSize := n * MaxPacketSize
	return &Cache{
		mask:    uint16(n - 1),
		history: int64(history),
		maxSize: maxSize,
		index:   make([]entry, n),
		arena:   make([]byte, min(initialArena, maxSize)),
		fifo:    make([]record, n),
	}
}

// Size is the number of index entries, the most packets the cache holds.
func (c *Cache) Size() int { return len(c.index) }

// Bytes is the current capacity of the arena.
func (c *Cache) Bytes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.arena)
}

// Store copies pkt, which arrived at arrival (nanoseconds on a monotonic
// clock of the caller's), under seq, replacing whatever seq's entry held.
// It reports false for empty packets and packets too large to cache.
func (c *Cache) Store(seq uint16, pkt []byte, arrival int64) bool {
	n := len(pkt)
	if n == 0 || n > MaxPacketSize {
		return false
	}
	c.mu.Lock()
	c.makeRoom(n, arrival)
	if c.headOff+n > len(c.arena) {
		// Packets are contiguous so that Get is a single copy; the
		// skipped tail still counts in absolute positions, which keeps
		// the intact test in Get a plain subtraction.
		c.head += uint64(len(c.arena) - c.headOff)
		c.headOff = 0
	}
	copy(c.arena[c.headOff:], pkt)
	c.index[seq&c.mask] = entry{
		start:   c.head,
		arrival: arrival,
		off:     uint32(c.headOff),
		seq:     seq,
		n:       uint16(n),
	}
	c.head += uint64(n)
	c.headOff += n
	c.fifo[(c.first+c.count)&int(c.mask)] = record{seq: seq, n: uint16(n)}
	c.count++
	c.mu.Unlock()
	return true
}

// makeRoom forgets the recorded packets that a write of n bytes will
// overwrite, first growing the arena if one of them is still indexed and
// younger than the history.
func (c *Cache) makeRoom(n int, arrival int64) {
	if c.count == len(c.fifo) {
		c.pop()
	}
	for c.count > 0 {
		size := len(c.arena)
		end := c.head + uint64(n)
		if c.headOff+n > size {
			end += uint64(size - c.headOff)
		}
		for {
			r := c.fifo[c.first]
			start, off := c.oldestStart(r)
			if end-start <= uint64(size) {
				return // the oldest survives, hence all newer ones too
			}
			if size < c.maxSize && c.isLive(r, start) && arrival-c.index[r.seq&c.mask].arrival < c.history {
				c.grow()
				break
			}
			c.tail, c.tailOff = start+uint64(r.n), off+int(r.n)
			c.first = (c.first + 1) & int(c.mask)
			if c.count--; c.count == 0 {
				return
			}
		}
	}
}

// oldestStart replays for the oldest record the skip rule Store applied
// when writing it.
func (c *Cache) oldestStart(r record) (uint64, int) {
	if c.tailOff+int(r.n) > len(c.arena) {
		return c.tail + uint64(len(c.arena)-c.tailOff), 0
	}
	return c.tail, c.tailOff
}

// isLive reports whether seq's entry still points at the record's bytes,
// rather than at a newer packet with the same index slot.
func (c *Cache) isLive(r record, start uint64) bool {
	e := &c.index[r.seq&c.mask]
	return e.n != 0 && e.seq == r.seq && e.start == start
}

func (c *Cache) pop() {
	r := c.fifo[c.first]
	start, off := c.oldestStart(r)
	c.tail = start + uint64(r.n)
	c.tailOff = off + int(r.n)
	c.first = (c.first + 1) & int(c.mask)
	c.count--
}

// grow moves the live recorded packets, oldest first, to the start of a
// larger arena. Their new positions begin at the old head so that positions
// stay monotonic; entries left pointing below it (packets already dropped
// from the fifo) would be meaningless in the new arena and are emptied.
func (c *Cache) grow() {
	arena := make([]byte, min(2*len(c.arena), c.maxSize))
	base := c.head
	pos, off := base, 0
	first, kept := c.first, 0
	for total := c.count; total > 0; total-- {
		r := c.fifo[c.first]
		if start, from := c.oldestStart(r); c.isLive(r, start) {
			e := &c.index[r.seq&c.mask]
			copy(arena[off:], c.arena[from:from+int(r.n)])
			e.start, e.off = pos, uint32(off)
			pos += uint64(r.n)
			off += int(r.n)
			// kept never passes the record being read, so the
			// fifo compacts in place.
			c.fifo[(first+kept)&int(c.mask)] = r
			kept++
		}
		c.pop()
	}
	c.first, c.count = first, kept
	for i := range c.index {
		if c.index[i].n != 0 && c.index[i].start < base {
			c.index[i].n = 0
		}
	}
	c.arena = arena
	c.tail, c.tailOff = base, 0
	c.head, c.headOff = pos, off
}

// Get copies the packet with sequence number seq into dst and returns its
// length. It reports false when the packet was never stored, has been
// replaced by a newer one in the index or overwritten in the arena, or does
// not fit dst.
func (c *Cache) Get(seq uint16, dst []byte) (int, bool) {
	c.mu.Lock()
	e := &c.index[seq&c.mask]
	// Every byte written since the packet lies in [start+n, head); the
	// first position that maps onto the packet's own offsets again is
	// start+len(arena), so head-start <= len(arena) means nothing has
	// been written over it. Across a skipped tail this is conservative:
	// skipped bytes count but are not written.
	if e.n == 0 || e.seq != seq || c.head-e.start > uint64(len(c.arena)) || int(e.n) > len(dst) {
		c.mu.Unlock()
		return 0, false
	}
	n := copy(dst, c.arena[e.off:int(e.off)+int(e.n)])
	c.mu.Unlock()
	return n, true
}

// Reset forgets every packet, for instance when the publisher's SSRC
// changes. The arena keeps its size: the track's bitrate is unlikely to have
// changed.
func (c *Cache) Reset() {
	c.mu.Lock()
	for i := range c.index {
		c.index[i].n = 0
	}
	c.first, c.count = 0, 0
	c.tail, c.tailOff = c.head, c.headOff
	c.mu.Unlock()
}
