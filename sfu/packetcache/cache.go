// Package packetcache keeps the most recent RTP packets of one track, indexed
// by sequence number, so that the SFU can answer a subscriber's NACK without
// asking the publisher again.
//
// The cache owns fixed slots allocated once; storing and fetching copy bytes
// and never allocate. It is safe for one writer (the track's reader) and any
// number of concurrent readers (the subscribers' RTCP loops).
package packetcache

import "sync"

// MaxPacketSize is the largest packet a slot holds. Larger packets are not
// cached; they would not fit a path MTU either.
const MaxPacketSize = 1500

type slot struct {
	seq   uint16
	size  uint16 // 0 marks an empty slot
	bytes [MaxPacketSize]byte
}

// Cache is a ring of packets addressed by sequence number modulo its size.
type Cache struct {
	mu    sync.Mutex
	mask  uint16
	slots []slot
}

// New returns a cache holding up to size packets; size is rounded up to a
// power of two between 16 and 32768.
func New(size int) *Cache {
	n := 16
	for n < size && n < 1<<15 {
		n <<= 1
	}
	return &Cache{mask: uint16(n - 1), slots: make([]slot, n)}
}

// Size is the number of slots.
func (c *Cache) Size() int { return len(c.slots) }

// Store copies pkt into the slot of seq, replacing whatever was there. It
// reports false for packets too large to cache.
func (c *Cache) Store(seq uint16, pkt []byte) bool {
	if len(pkt) == 0 || len(pkt) > MaxPacketSize {
		return false
	}
	c.mu.Lock()
	s := &c.slots[seq&c.mask]
	s.seq = seq
	s.size = uint16(len(pkt))
	copy(s.bytes[:], pkt)
	c.mu.Unlock()
	return true
}

// Get copies the packet with sequence number seq into dst and returns its
// length. It reports false when the packet was never stored, has been
// overwritten by a newer one, or does not fit dst.
func (c *Cache) Get(seq uint16, dst []byte) (int, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := &c.slots[seq&c.mask]
	if s.size == 0 || s.seq != seq || int(s.size) > len(dst) {
		return 0, false
	}
	return copy(dst, s.bytes[:s.size]), true
}

// Reset forgets every packet, for instance when the publisher's SSRC changes.
func (c *Cache) Reset() {
	c.mu.Lock()
	for i := range c.slots {
		c.slots[i].size = 0
	}
	c.mu.Unlock()
}
