package sfu

import (
	"io"
	"sync"

	"github.com/pion/transport/v5/packetio"

	"github.com/avs/avs/sfu/fastpath"
)

// Taps take decrypted RTP and RTCP straight from the goroutine that
// decrypts them. Without them pion queues each packet in a buffer for a
// reader goroutine per stream, one more hand-off (a copy, a wake-up and a
// switch) per packet; with them the SRTP and SRTCP sessions' read loops
// run the forwarding and the feedback handling themselves, and the
// per-stream RTCP readers do not exist at all.
//
// An RTP tap starts as a queue, because pion reads the first packets of a
// stream itself (to find its payload type, mid and rid) before it
// announces the track. The track's reader goroutine drains what pion has
// read ahead and then claims the tap: from then on every packet goes to
// the handler, in order, and the reader only waits for the stream to end.
// Nothing in pion reads RTCP streams, so their handlers are set as soon as
// both the stream and the handler exist.

// Taps queue at most what pion's own buffers hold (1 MB of RTP, 100 kB of
// RTCP) before they are claimed; a queue that fills drops packets.
const (
	rtpQueueLimit  = 1 << 20
	rtcpQueueLimit = 100_000
)

// streamTap is the buffer of one incoming RTP or RTCP stream (one SSRC).
type streamTap struct {
	mu      sync.Mutex
	queue   [][]byte
	queued  int // bytes in queue
	limit   int // most bytes queued
	readOut uint64
	handler func(pkt []byte)
	closed  bool

	ready   chan struct{} // a packet was queued or the tap closed
	done    chan struct{} // closed with the tap
	release func()        // forgets the tap in its set

	// direct is the connection's fast path, which delivers the stream
	// itself once the tap is claimed; nil for RTCP or with it off.
	direct *fastpath.Session
	ssrc   uint32
}

func newStreamTap(limit int) *streamTap {
	return &streamTap{limit: limit, ready: make(chan struct{}, 1), done: make(chan struct{})}
}

// Write is called by the SRTP session's read loop with a decrypted packet
// in a buffer it reuses: the handler must be done with it on return.
func (t *streamTap) Write(pkt []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.closed:
		return 0, io.ErrClosedPipe
	case t.handler != nil:
		t.handler(pkt)
		return len(pkt), nil
	case t.queued+len(pkt) > t.limit:
		return 0, packetio.ErrFull
	}
	t.queue = append(t.queue, append([]byte(nil), pkt...))
	t.queued += len(pkt)
	select {
	case t.ready <- struct{}{}:
	default:
	}
	return len(pkt), nil
}

// Read returns the oldest queued packet, waiting for one. After the claim
// nothing is queued any more and Read waits for the close.
func (t *streamTap) Read(buf []byte) (int, error) {
	for {
		t.mu.Lock()
		if len(t.queue) > 0 {
			pkt := t.queue[0]
			if len(pkt) > len(buf) {
				t.mu.Unlock()
				return 0, io.ErrShortBuffer
			}
			t.queue[0] = nil
			t.queue = t.queue[1:]
			t.queued -= len(pkt)
			t.readOut++
			t.mu.Unlock()
			return copy(buf, pkt), nil
		}
		closed := t.closed
		t.mu.Unlock()
		if closed {
			return 0, io.EOF
		}
		<-t.ready
	}
}

// Close ends the stream; it is called by pion when the track or the
// connection goes away.
func (t *streamTap) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	t.queue = nil
	close(t.done)
	if t.direct != nil {
		t.direct.Unroute(t.ssrc)
	}
	if t.release != nil {
		t.release()
	}
	select {
	case t.ready <- struct{}{}:
	default:
	}
	return nil
}

// claim hands every later packet to handler, after the queued ones, once
// the reader has delivered all the packets taken out of the tap so far
// (pion may hold some it read ahead). It reports false when the reader
// must read on first. handler runs under the tap's lock, one packet at a
// time.
func (t *streamTap) claim(delivered uint64, handler func(pkt []byte)) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.readOut != delivered || t.closed {
		return false
	}
	for _, pkt := range t.queue {
		handler(pkt)
	}
	t.queue, t.queued = nil, 0
	t.handler = handler
	if t.direct != nil {
		t.direct.Route(t.ssrc, t.deliver)
	}
	return true
}

// deliver is the fast path's way in: a packet it decrypted, for the
// handler, in turn with those that still come through pion.
func (t *streamTap) deliver(pkt []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.handler != nil && !t.closed {
		t.handler(pkt)
	}
}

// Done is closed when the stream ends.
func (t *streamTap) Done() <-chan struct{} { return t.done }

// tapSet holds the taps of one PeerConnection by SSRC. It is that
// connection's buffer factory, so a tap is always found on the connection
// whose stream it is, whatever SSRCs other peers chose.
type tapSet struct {
	mu     sync.Mutex
	taps   map[tapKey]*streamTap
	onRTCP map[uint32]func(pkt []byte) // handlers of RTCP streams not open yet
	direct *fastpath.Session           // the connection's fast path, nil when off
}

type tapKey struct {
	rtcp bool
	ssrc uint32
}

func newTapSet() *tapSet {
	return &tapSet{taps: map[tapKey]*streamTap{}, onRTCP: map[uint32]func([]byte){}}
}

// bufferFactory is pion's SettingEngine.BufferFactory.
func (s *tapSet) bufferFactory(kind packetio.BufferPacketType, ssrc uint32) io.ReadWriteCloser {
	key := tapKey{rtcp: kind == packetio.RTCPBufferPacket, ssrc: ssrc}
	t := newStreamTap(rtpQueueLimit)
	if key.rtcp {
		t.limit = rtcpQueueLimit
	} else {
		t.direct, t.ssrc = s.direct, ssrc
	}
	t.release = func() {
		s.mu.Lock()
		if s.taps[key] == t {
			delete(s.taps, key)
		}
		s.mu.Unlock()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if h := s.onRTCP[ssrc]; key.rtcp && h != nil {
		t.handler = h
		delete(s.onRTCP, ssrc)
	}
	s.taps[key] = t
	return t
}

// find returns the open RTP tap of ssrc, or nil.
func (s *tapSet) find(ssrc uint32) *streamTap {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.taps[tapKey{ssrc: ssrc}]
}

// handleRTCP gives the RTCP about ssrc to handler, from now if the stream
// is open, else from when pion opens it.
func (s *tapSet) handleRTCP(ssrc uint32, handler func(pkt []byte)) {
	s.mu.Lock()
	t := s.taps[tapKey{rtcp: true, ssrc: ssrc}]
	if t == nil {
		s.onRTCP[ssrc] = handler
	}
	s.mu.Unlock()
	if t != nil {
		t.claim(0, handler)
	}
}
