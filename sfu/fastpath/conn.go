package fastpath

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/transport/v5"
)

// UDPConn is a socket a Router wraps: pion's UDP mux reads and writes
// through the netip methods when a socket has them.
type UDPConn interface {
	transport.UDPConn
	ReadFromAddrPort(b []byte) (int, netip.AddrPort, error)
	WriteToAddrPort(b []byte, addr netip.AddrPort) (int, error)
}

// Conn is a media socket, or a group of sockets sharing one address, whose
// reads pass through the router. It is what pion's UDP mux is given; the
// methods the mux uses are the ones that route (ReadFromAddrPort,
// ReadFrom) and watch handshakes (WriteToAddrPort, WriteTo). Everything
// else is the first socket's, which also sends.
//
// With one socket, pion's reader reads it through ReadFromAddrPort and the
// fast path runs in that reader. With several (bound with SO_REUSEPORT,
// so the kernel spreads peers over them by address and keeps each peer on
// one), each has a goroutine of its own running the fast path, and what
// is left for pion waits in a queue for ReadFromAddrPort: forwarding
// then uses as many cores as there are sockets. A group's reads ignore
// read deadlines (pion's mux sets none); Close ends them.
type Conn struct {
	UDPConn
	router  *Router
	sockets []UDPConn
	readers []*reader

	readMu sync.Mutex // one caller of ReadFromAddrPort at a time (one socket)

	// Several sockets only.
	passed    chan datagram
	buffers   sync.Pool // *[]byte of maxPacket
	overflow  atomic.Uint64
	running   sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// reader is the state of one socket's reading goroutine.
type reader struct {
	plain     []byte
	header    rtp.Header
	count     connCounts
	residence residenceHistogram
}

// timedReader is a socket that tells when each datagram arrived, in Unix
// nanoseconds, as package udpconn's does.
type timedReader interface {
	ReadFromAddrPortAt(b []byte) (int, netip.AddrPort, int64, error)
}

// readAt reads one datagram from socket with its arrival time, 0 when the
// socket cannot tell.
func readAt(socket UDPConn, b []byte) (int, netip.AddrPort, int64, error) {
	if t, ok := socket.(timedReader); ok {
		return t.ReadFromAddrPortAt(b)
	}
	n, from, err := socket.ReadFromAddrPort(b)
	return n, from, 0, err
}

// connCounts are one reader's packet counts, kept per reader so that each
// is written by one goroutine only.
type connCounts struct{ direct, fallback, dropped atomic.Uint64 }

type datagram struct {
	buf  *[]byte
	n    int
	from netip.AddrPort
}

// maxPacket is the largest datagram decrypted without allocating.
const maxPacket = 1500

// passedQueue bounds the datagrams waiting for pion's reader with several
// sockets, as a socket's receive buffer would.
const passedQueue = 4096

// Wrap returns c reading through r.
func (r *Router) Wrap(c UDPConn) *Conn { return r.WrapGroup([]UDPConn{c}) }

// WrapGroup returns sockets bound to one address, read through r, as one
// Conn, starting a reader per socket when there are several. Closing the
// Conn closes them all and stops the readers.
func (r *Router) WrapGroup(sockets []UDPConn) *Conn {
	c := &Conn{UDPConn: sockets[0], router: r, sockets: sockets}
	for range sockets {
		c.readers = append(c.readers, &reader{plain: make([]byte, maxPacket)})
	}
	if len(sockets) > 1 {
		c.passed = make(chan datagram, passedQueue)
		c.buffers.New = func() any { b := make([]byte, maxPacket); return &b }
		c.running.Add(len(sockets))
		for i := range sockets {
			go c.read(sockets[i], c.readers[i])
		}
	}
	r.mu.Lock()
	r.conns = append(r.conns, c)
	r.mu.Unlock()
	return c
}

// filter runs the fast path on one datagram that arrived at the given
// time and reports whether it was taken; DTLS handshakes are noted on the
// way.
func (c *Conn) filter(pkt []byte, from netip.AddrPort, arrival int64, rd *reader) bool {
	switch first := pkt[0]; {
	case first >= 128 && first <= 191: // RTP or RTCP (RFC 7983)
		if s, ok := c.router.sessions.Load(unmap(from)); ok && s.(*Session).receive(pkt, rd.plain, &rd.header, &rd.count) {
			if arrival != 0 {
				rd.residence.observe(time.Duration(time.Now().UnixNano() - arrival))
			}
			return true
		}
	case first == dtlsHandshake:
		c.router.sniff(pkt, from, false)
	}
	return false
}

// read is the goroutine of one socket of a group; it ends when the
// socket is closed.
func (c *Conn) read(socket UDPConn, rd *reader) {
	defer c.running.Done()
	for {
		bp := c.buffers.Get().(*[]byte)
		n, from, arrival, err := readAt(socket, *bp)
		if err != nil {
			c.buffers.Put(bp)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // an ICMP error reported on the socket, say
		}
		if n == 0 || c.filter((*bp)[:n], from, arrival, rd) {
			c.buffers.Put(bp)
			continue
		}
		select {
		case c.passed <- datagram{buf: bp, n: n, from: from}:
		default:
			c.overflow.Add(1)
			c.buffers.Put(bp)
		}
	}
}

// ReadFromAddrPort returns the next datagram that the fast path did not
// take.
func (c *Conn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	if c.passed != nil {
		d, ok := <-c.passed
		if !ok {
			return 0, netip.AddrPort{}, &net.OpError{Op: "read", Net: "udp", Source: c.LocalAddr(), Err: net.ErrClosed}
		}
		n := copy(b, (*d.buf)[:d.n])
		c.buffers.Put(d.buf)
		return n, d.from, nil
	}
	c.readMu.Lock()
	defer c.readMu.Unlock()
	for {
		n, from, arrival, err := readAt(c.UDPConn, b)
		if err != nil || n == 0 || !c.filter(b[:n], from, arrival, c.readers[0]) {
			return n, from, err
		}
	}
}

// ReadFrom is ReadFromAddrPort for callers that want a net.Addr.
func (c *Conn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, from, err := c.ReadFromAddrPort(b)
	if err != nil {
		return n, nil, err
	}
	return n, net.UDPAddrFromAddrPort(from), nil
}

// WriteToAddrPort sends a datagram, noting a ServerHello on its way out.
func (c *Conn) WriteToAddrPort(b []byte, to netip.AddrPort) (int, error) {
	if len(b) > 0 && b[0] == dtlsHandshake {
		c.router.sniff(b, to, true)
	}
	return c.UDPConn.WriteToAddrPort(b, to)
}

// WriteTo is WriteToAddrPort for callers with a net.Addr.
func (c *Conn) WriteTo(b []byte, to net.Addr) (int, error) {
	if ua, ok := to.(*net.UDPAddr); ok && len(b) > 0 && b[0] == dtlsHandshake {
		c.router.sniff(b, ua.AddrPort(), true)
	}
	return c.UDPConn.WriteTo(b, to)
}

// SetReadBuffer sizes every socket's receive buffer.
func (c *Conn) SetReadBuffer(bytes int) error {
	var errs []error
	for _, s := range c.sockets {
		errs = append(errs, s.SetReadBuffer(bytes))
	}
	return errors.Join(errs...)
}

// SetWriteBuffer sizes every socket's send buffer.
func (c *Conn) SetWriteBuffer(bytes int) error {
	var errs []error
	for _, s := range c.sockets {
		errs = append(errs, s.SetWriteBuffer(bytes))
	}
	return errors.Join(errs...)
}

// Close closes every socket and waits for their readers.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		var errs []error
		for _, s := range c.sockets {
			errs = append(errs, s.Close())
		}
		if c.passed != nil {
			c.running.Wait()
			close(c.passed)
		}
		if err := errors.Join(errs...); err != nil {
			c.closeErr = fmt.Errorf("fastpath: close: %w", err)
		}
	})
	return c.closeErr
}
