package udpconn

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Conn is a UDP socket with direct system calls on its hot path.
type Conn struct {
	*net.UDPConn
	raw   syscall.RawConn
	inet6 bool // the socket is AF_INET6 (IPv4 peers appear mapped)

	readMu sync.Mutex
	read   readOp

	writes sync.Pool // *writeOp

	zones sync.Map // interface index (int) -> name, for link-local peers
}

// Wrap takes over c; use the returned Conn from then on.
func Wrap(c *net.UDPConn) (*Conn, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("udpconn: %w", err)
	}
	var domain int
	var sockErr error
	if err := raw.Control(func(fd uintptr) {
		domain, sockErr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_DOMAIN)
		if sockErr == nil {
			// The kernel stamps each datagram's arrival for ReadFromAddrPortAt.
			sockErr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
		}
	}); err != nil {
		return nil, fmt.Errorf("udpconn: %w", err)
	}
	if sockErr != nil {
		return nil, fmt.Errorf("udpconn: socket domain: %w", sockErr)
	}
	u := &Conn{UDPConn: c, raw: raw, inet6: domain == syscall.AF_INET6}
	u.read.fn = u.read.do
	u.read.msg.Name = (*byte)(unsafe.Pointer(&u.read.from))
	u.read.msg.Iov = &u.read.iov
	u.read.msg.Iovlen = 1
	u.read.msg.Control = &u.read.control[0]
	u.writes.New = func() any {
		op := &writeOp{}
		op.fn = op.do
		return op
	}
	return u, nil
}

// readOp holds one recvmsg's arguments and results, so that the callback
// handed to RawConn.Read is made once and nothing escapes per packet.
type readOp struct {
	buf     []byte
	from    syscall.RawSockaddrAny
	msg     syscall.Msghdr
	iov     syscall.Iovec
	control [64]byte // room for one SCM_TIMESTAMPNS message
	n       int
	arrival int64
	errno   syscall.Errno
	fn      func(fd uintptr) bool
}

func (op *readOp) do(fd uintptr) bool {
	if len(op.buf) > 0 {
		op.iov.Base = &op.buf[0]
	}
	op.iov.SetLen(len(op.buf))
	for {
		op.msg.Namelen = syscall.SizeofSockaddrAny
		op.msg.SetControllen(len(op.control))
		op.msg.Flags = 0
		r, _, e := syscall.RawSyscall(unix.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&op.msg)), 0)
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // park on the poller until readable
		}
		op.n, op.errno = int(r), e
		op.arrival = 0
		if e == 0 {
			op.arrival = arrivalTime(op.control[:op.msg.Controllen])
		}
		op.iov.Base = nil
		return true
	}
}

// arrivalTime finds the SCM_TIMESTAMPNS message among control messages.
func arrivalTime(control []byte) int64 {
	const hdr = syscall.SizeofCmsghdr
	for len(control) >= hdr {
		h := (*syscall.Cmsghdr)(unsafe.Pointer(&control[0]))
		if h.Len < hdr || int(h.Len) > len(control) {
			return 0
		}
		if h.Level == syscall.SOL_SOCKET && h.Type == unix.SCM_TIMESTAMPNS && int(h.Len) >= hdr+int(unsafe.Sizeof(syscall.Timespec{})) {
			ts := (*syscall.Timespec)(unsafe.Pointer(&control[hdr]))
			return ts.Nano()
		}
		const align = int(unsafe.Sizeof(uintptr(0)))
		next := (int(h.Len) + align - 1) &^ (align - 1)
		if next > len(control) {
			return 0
		}
		control = control[next:]
	}
	return 0
}

// ReadFromAddrPort reads one datagram, as net.UDPConn's method of that name.
func (c *Conn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	n, from, _, err := c.ReadFromAddrPortAt(b)
	return n, from, err
}

// ReadFromAddrPortAt is ReadFromAddrPort that also tells when the kernel
// received the datagram, in Unix nanoseconds (0 if it did not say).
func (c *Conn) ReadFromAddrPortAt(b []byte) (int, netip.AddrPort, int64, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	op := &c.read
	op.buf = b
	err := c.raw.Read(op.fn)
	op.buf = nil
	if err == nil && op.errno != 0 {
		err = os.NewSyscallError("recvmsg", op.errno)
	}
	if err != nil {
		return 0, netip.AddrPort{}, 0, &net.OpError{Op: "read", Net: "udp", Source: c.LocalAddr(), Err: err}
	}
	return op.n, c.addrPort(&op.from), op.arrival, nil
}

func (c *Conn) addrPort(sa *syscall.RawSockaddrAny) netip.AddrPort {
	switch sa.Addr.Family {
	case syscall.AF_INET:
		in := (*syscall.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(in.Addr), port(in.Port))
	case syscall.AF_INET6:
		in := (*syscall.RawSockaddrInet6)(unsafe.Pointer(sa))
		addr := netip.AddrFrom16(in.Addr)
		if in.Scope_id != 0 {
			addr = addr.WithZone(c.zoneName(int(in.Scope_id)))
		}
		return netip.AddrPortFrom(addr, port(in.Port))
	}
	return netip.AddrPort{}
}

// port converts a sockaddr port, stored in network byte order.
func port(raw uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&raw))
	return uint16(b[0])<<8 | uint16(b[1])
}

func (c *Conn) zoneName(index int) string {
	if name, ok := c.zones.Load(index); ok {
		return name.(string)
	}
	name := fmt.Sprint(index)
	if ifi, err := net.InterfaceByIndex(index); err == nil {
		name = ifi.Name
	}
	c.zones.Store(index, name)
	return name
}

// writeOp is readOp's counterpart for sendto; writers are many, so each
// write takes one from a pool.
type writeOp struct {
	buf   []byte
	to    syscall.RawSockaddrInet6 // large enough for either family
	toLen uint32
	n     int
	errno syscall.Errno
	fn    func(fd uintptr) bool
}

func (op *writeOp) do(fd uintptr) bool {
	for {
		var p unsafe.Pointer
		if len(op.buf) > 0 {
			p = unsafe.Pointer(&op.buf[0])
		}
		r, _, e := syscall.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(p), uintptr(len(op.buf)), 0,
			uintptr(unsafe.Pointer(&op.to)), uintptr(op.toLen))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // park on the poller until writable
		}
		op.n, op.errno = int(r), e
		return true
	}
}

var errAddressFamily = errors.New("IPv6 destination on an IPv4 socket")

// WriteToAddrPort sends one datagram, as net.UDPConn's method of that name.
func (c *Conn) WriteToAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	if addr.Addr().Zone() != "" {
		return c.UDPConn.WriteToUDPAddrPort(b, addr) // link-local: let the library map the zone
	}
	op := c.writes.Get().(*writeOp)
	defer c.writes.Put(op)
	if err := c.fillSockaddr(op, addr); err != nil {
		return 0, &net.OpError{Op: "write", Net: "udp", Source: c.LocalAddr(), Addr: net.UDPAddrFromAddrPort(addr), Err: err}
	}
	op.buf = b
	err := c.raw.Write(op.fn)
	op.buf = nil
	if err == nil && op.errno != 0 {
		err = os.NewSyscallError("sendto", op.errno)
	}
	if err != nil {
		return 0, &net.OpError{Op: "write", Net: "udp", Source: c.LocalAddr(), Addr: net.UDPAddrFromAddrPort(addr), Err: err}
	}
	return op.n, nil
}

func (c *Conn) fillSockaddr(op *writeOp, addr netip.AddrPort) error {
	ip := addr.Addr()
	if !addr.IsValid() {
		return syscall.EINVAL
	}
	p := addr.Port()
	netPort := *(*uint16)(unsafe.Pointer(&[2]byte{byte(p >> 8), byte(p)}))
	if c.inet6 {
		op.to = syscall.RawSockaddrInet6{Family: syscall.AF_INET6, Port: netPort, Addr: ip.As16()}
		op.toLen = syscall.SizeofSockaddrInet6
		return nil
	}
	ip = ip.Unmap()
	if !ip.Is4() {
		return errAddressFamily
	}
	in := (*syscall.RawSockaddrInet4)(unsafe.Pointer(&op.to))
	*in = syscall.RawSockaddrInet4{Family: syscall.AF_INET, Port: netPort, Addr: ip.As4()}
	op.toLen = syscall.SizeofSockaddrInet4
	return nil
}

// ReadFrom is net.PacketConn's read, through ReadFromAddrPort.
func (c *Conn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, addr, err := c.ReadFromAddrPort(b)
	if err != nil {
		return n, nil, err
	}
	return n, net.UDPAddrFromAddrPort(addr), nil
}

// WriteTo is net.PacketConn's write, through WriteToAddrPort.
func (c *Conn) WriteTo(b []byte, addr net.Addr) (int, error) {
	udp, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, &net.OpError{Op: "write", Net: "udp", Source: c.LocalAddr(), Addr: addr, Err: syscall.EINVAL}
	}
	return c.WriteToAddrPort(b, udp.AddrPort())
}
