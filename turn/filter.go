package turn

import (
	"net"
	"net/netip"
)

// neverRelay are ranges no legitimate WebRTC peer lives in, or that lead
// back into infrastructure (cloud metadata at 169.254.169.254, NAT64 and
// 6to4 prefixes that embed an IPv4 address of any kind).
var neverRelay = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("::/128"),
	netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("100::/64"),
	netip.MustParsePrefix("2001:db8::/32"),
	netip.MustParsePrefix("2002::/16"),
	netip.MustParsePrefix("fe80::/10"),
	netip.MustParsePrefix("fec0::/10"),
	netip.MustParsePrefix("ff00::/8"),
}

var neverRelay4, neverRelay6 = splitFamilies(neverRelay)

func splitFamilies(prefixes []netip.Prefix) (v4, v6 []netip.Prefix) {
	for _, p := range prefixes {
		if p.Addr().Is4() {
			v4 = append(v4, p)
		} else {
			v6 = append(v6, p)
		}
	}
	return v4, v6
}

// neverRelayFor halves the prefixes checked per datagram.
func neverRelayFor(ip netip.Addr) []netip.Prefix {
	if ip.Is4() {
		return neverRelay4
	}
	return neverRelay6
}

// sharedAddressSpace is RFC 6598 carrier-grade NAT space: private to an
// operator's network although netip does not call it private.
var sharedAddressSpace = netip.MustParsePrefix("100.64.0.0/10")

// peerFilter decides which peers a client may relay to. Permissions in
// TURN are per IP, so the permission handler asks permitIP, and the relay
// socket asks permitAddr for every datagram so that an "ip:port" rule in
// allowed_peers opens that one port and nothing else on the host.
type peerFilter struct {
	allowLoopback bool
	allowPrivate  bool
	own           map[netip.Addr]struct{}
	allowed       peerRules
	portOnlyIPs   map[netip.Addr]struct{}
	ownPorts      map[uint16]struct{} // "0.0.0.0:port" rules: this port on any own address
	denied        peerRules
}

func newPeerFilter(c Config, own []netip.Addr, extra []netip.AddrPort) (*peerFilter, error) {
	allowed, err := parsePeerRules(c.AllowedPeers)
	if err != nil {
		return nil, err
	}
	for _, ap := range extra {
		allowed.addrPorts[netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())] = struct{}{}
	}
	denied, err := parsePeerRules(c.DeniedPeers)
	if err != nil {
		return nil, err
	}
	f := &peerFilter{
		allowLoopback: c.AllowLoopbackPeers,
		allowPrivate:  c.AllowPrivatePeers,
		own:           map[netip.Addr]struct{}{},
		allowed:       allowed,
		portOnlyIPs:   map[netip.Addr]struct{}{},
		ownPorts:      map[uint16]struct{}{},
		denied:        denied,
	}
	for _, a := range own {
		f.own[a.Unmap()] = struct{}{}
	}
	for ap := range allowed.addrPorts {
		if ap.Addr().IsUnspecified() {
			f.ownPorts[ap.Port()] = struct{}{}
			continue
		}
		f.portOnlyIPs[ap.Addr()] = struct{}{}
	}
	return f, nil
}

// ipAllowed reports whether every port of ip may be relayed to.
func (f *peerFilter) ipAllowed(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsValid() {
		return false
	}
	if containsAddr(f.allowed.prefixes, ip) {
		return true
	}
	if containsAddr(f.denied.prefixes, ip) || containsAddr(neverRelayFor(ip), ip) {
		return false
	}
	if ip.IsLoopback() {
		// Checked before own addresses: loopback is always "own", and
		// allow_loopback_peers exists precisely to allow it.
		return f.allowLoopback
	}
	if _, ok := f.own[ip]; ok {
		return false
	}
	if ip.IsUnspecified() || ip.IsMulticast() || ip.IsLinkLocalUnicast() || ip.IsInterfaceLocalMulticast() {
		return false
	}
	if ip.IsPrivate() || sharedAddressSpace.Contains(ip) {
		return f.allowPrivate
	}
	return ip.IsGlobalUnicast()
}

// permitIP is the permission check: true if some port of ip is allowed.
func (f *peerFilter) permitIP(ip netip.Addr) bool {
	if f.ipAllowed(ip) {
		return true
	}
	ip = ip.Unmap()
	if _, ok := f.portOnlyIPs[ip]; ok {
		return true
	}
	return len(f.ownPorts) > 0 && f.isOwn(ip)
}

// isOwn reports a non-loopback address of this host; loopback stays
// under allow_loopback_peers.
func (f *peerFilter) isOwn(ip netip.Addr) bool {
	_, ok := f.own[ip]
	return ok && !ip.IsLoopback()
}

// permitAddr is the per-datagram check on the relay socket.
func (f *peerFilter) permitAddr(ap netip.AddrPort) bool {
	if f.ipAllowed(ap.Addr()) {
		return true
	}
	ip := ap.Addr().Unmap()
	if _, ok := f.allowed.addrPorts[netip.AddrPortFrom(ip, ap.Port())]; ok {
		return true
	}
	_, ok := f.ownPorts[ap.Port()]
	return ok && f.isOwn(ip)
}

func containsAddr(prefixes []netip.Prefix, ip netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// netAddrPort converts the addresses pion hands us; the zero AddrPort for
// anything else, which every filter check refuses.
func netAddrPort(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort()
	case *net.TCPAddr:
		return a.AddrPort()
	}
	return netip.AddrPort{}
}

// localAddrs lists the host's interface addresses, so that clients cannot
// relay to the server itself (its admin ports, metrics, the SFU).
func localAddrs() []netip.Addr {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, p.Addr().Unmap())
		}
	}
	return out
}
