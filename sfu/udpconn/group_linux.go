package udpconn

import (
	"context"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// ListenGroup opens n sockets on one address, bound with SO_REUSEPORT so
// that the kernel spreads peers over them by address (a peer stays on one
// socket). Binding a plain socket first makes sure the address is not
// already in use, by another process's group among others: a group is
// never joined by accident. With n of 1 it is one plain socket.
func ListenGroup(network string, laddr *net.UDPAddr, n int) ([]*Conn, error) {
	probe, err := net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	if n <= 1 {
		c, err := Wrap(probe)
		if err != nil {
			_ = probe.Close()
			return nil, err
		}
		return []*Conn{c}, nil
	}
	bound := probe.LocalAddr().String() // with the port the kernel chose
	if err := probe.Close(); err != nil {
		return nil, fmt.Errorf("udpconn: %w", err)
	}
	lc := net.ListenConfig{Control: reusePort}
	group := make([]*Conn, 0, n)
	closeAll := func() {
		for _, c := range group {
			_ = c.Close()
		}
	}
	for range n {
		pc, err := lc.ListenPacket(context.Background(), network, bound)
		if err != nil {
			closeAll()
			return nil, err
		}
		c, err := Wrap(pc.(*net.UDPConn))
		if err != nil {
			_ = pc.Close()
			closeAll()
			return nil, err
		}
		group = append(group, c)
	}
	return group, nil
}

func reusePort(_, _ string, raw syscall.RawConn) error {
	var sockErr error
	if err := raw.Control(func(fd uintptr) {
		sockErr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}); err != nil {
		return err
	}
	if sockErr != nil {
		return fmt.Errorf("SO_REUSEPORT: %w", sockErr)
	}
	return nil
}
