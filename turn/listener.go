package turn

import (
	"net"
	"sync"
	"time"
)

// tcpIdleTimeout closes a client connection that sent nothing for longer
// than the longest allocation lifetime: a live client refreshes before
// that, and an idle connection only holds a descriptor and a goroutine.
const tcpIdleTimeout = maxRequestableLifetime + time.Minute

// trackingListener remembers the connections it accepted. pion's Close
// closes only the listener, and each accepted TURN-over-TCP connection
// keeps a reading goroutine until the client hangs up; closing them here
// is what lets Server.Close stop every goroutine.
type trackingListener struct {
	net.Listener

	mu     sync.Mutex
	conns  map[*trackedConn]struct{}
	closed bool
}

func newTrackingListener(l net.Listener) *trackingListener {
	return &trackingListener{Listener: l, conns: map[*trackedConn]struct{}{}}
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, l: l}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		_ = c.Close()
		return nil, net.ErrClosed
	}
	l.conns[tc] = struct{}{}
	return tc, nil
}

// Close closes the listener and every connection it accepted.
func (l *trackingListener) Close() error {
	err := l.Listener.Close()
	l.mu.Lock()
	l.closed = true
	conns := make([]*trackedConn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
	return err
}

type trackedConn struct {
	net.Conn
	l    *trackingListener
	once sync.Once
}

func (c *trackedConn) Read(b []byte) (int, error) {
	if err := c.Conn.SetReadDeadline(time.Now().Add(tcpIdleTimeout)); err != nil {
		return 0, err
	}
	return c.Conn.Read(b)
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
	})
	return err
}
