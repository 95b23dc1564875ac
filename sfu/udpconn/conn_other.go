//go:build !linux

package udpconn

import (
	"net"
	"net/netip"
	"time"
)

// Conn is the standard library's socket where direct system calls are not
// implemented, with the method names the Linux Conn has.
type Conn struct{ *net.UDPConn }

// Wrap takes over c; use the returned Conn from then on.
func Wrap(c *net.UDPConn) (*Conn, error) { return &Conn{c}, nil }

// ReadFromAddrPort reads one datagram.
func (c *Conn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	return c.ReadFromUDPAddrPort(b)
}

// WriteToAddrPort sends one datagram.
func (c *Conn) WriteToAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	return c.WriteToUDPAddrPort(b, addr)
}

// ReadFromAddrPortAt is ReadFromAddrPort with the time it returned as the
// arrival time: the kernel's own stamp is read on Linux only.
func (c *Conn) ReadFromAddrPortAt(b []byte) (int, netip.AddrPort, int64, error) {
	n, from, err := c.ReadFromUDPAddrPort(b)
	return n, from, time.Now().UnixNano(), err
}
