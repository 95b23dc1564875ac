//go:build !linux

package udpconn

import "net"

// Conn is the standard library's socket where direct system calls are not
// implemented.
type Conn = net.UDPConn

// Wrap returns c itself: the direct system calls are Linux only.
func Wrap(c *net.UDPConn) (*Conn, error) { return c, nil }
