//go:build !linux

package udpconn

import "net"

// ListenGroup opens one socket whatever n is: SO_REUSEPORT spreads
// datagrams over a group only on Linux.
func ListenGroup(network string, laddr *net.UDPAddr, n int) ([]*Conn, error) {
	c, err := net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	w, _ := Wrap(c)
	return []*Conn{w}, nil
}
