// Package turn is avs-server's built-in TURN server (RFC 8656) for clients
// whose NAT or firewall blocks direct media: UDP and TCP listeners, TLS
// when a certificate is configured, time-limited credentials shared with
// signaling through a secret, and the safety limits an Internet-facing
// relay needs (a peer filter that keeps clients out of the operator's
// network, quotas, a bandwidth cap, allocation age, and rate-limited
// authentication failures). The protocol engine is pion/turn.
package turn

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	pionturn "github.com/pion/turn/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// closeTimeout bounds how long Close waits for pion to tear down
// allocations after their sockets closed.
const closeTimeout = 10 * time.Second

// udpSocketBuffer is the requested kernel buffer of the UDP listener.
const udpSocketBuffer = 4 << 20

// Params are New's inputs.
type Params struct {
	Config Config
	// Logger receives the server's and pion's logs; nil discards them.
	Logger *slog.Logger
	// Registerer receives the metrics; nil keeps them in a private registry.
	Registerer prometheus.Registerer

	// PacketConn and Listener, when set, replace the listen_udp and
	// listen_tcp sockets (tests, socket activation). New takes ownership:
	// they are closed by Close, or by New itself when it fails.
	PacketConn net.PacketConn
	Listener   net.Listener

	// AllowedPeers are added to turn.allowed_peers. The peer filter
	// refuses the server's own addresses, which includes the SFU in this
	// same process; main passes the SFU's media ports here (an
	// unspecified address such as 0.0.0.0:7882 means that port on every
	// own address) so that relayed clients can reach it.
	AllowedPeers []netip.AddrPort
}

// Addrs are the addresses the server listens on; nil when disabled.
type Addrs struct {
	UDP, TCP, TLS net.Addr
}

// Server is a running TURN server.
type Server struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	limiter *failureLimiter
	relays  *relays
	addrs   Addrs
	pion    *pionturn.Server

	closeOnce sync.Once
	closeErr  error
}

// New validates the configuration, opens the listeners and starts serving.
func New(p Params) (_ *Server, err error) {
	defer func() {
		if err != nil && p.PacketConn != nil {
			_ = p.PacketConn.Close()
		}
		if err != nil && p.Listener != nil {
			_ = p.Listener.Close()
		}
	}()
	cfg := p.Config
	if !cfg.Enabled {
		return nil, errors.New("turn: not enabled (turn.enabled = false)")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := p.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := p.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			m.unregister(reg)
		}
	}()
	bindIP := netip.MustParseAddr(cfg.RelayBindIP).Unmap()
	public, err := publicAddr(cfg, bindIP)
	if err != nil {
		return nil, err
	}
	own := append(localAddrs(), public, bindIP)
	filter, err := newPeerFilter(cfg, own, p.AllowedPeers)
	if err != nil {
		return nil, fmt.Errorf("turn: %w", err)
	}
	s := &Server{
		cfg:     cfg,
		log:     log,
		metrics: m,
		limiter: newFailureLimiter(cfg.AuthFailureLimit, cfg.AuthFailureWindow),
		relays: &relays{
			cfg: cfg, bindIP: bindIP, public: public, filter: filter, metrics: m,
			perUser: map[string]int{},
		},
	}
	if err := s.start(p, filter); err != nil {
		return nil, err
	}
	if cfg.PublicIP == "" && bindIP.IsUnspecified() && (public.IsPrivate() || public.IsLoopback()) {
		log.Warn("turn: detected relay address is not public; clients outside this network cannot use it: set turn.public_ip",
			"relay_ip", public)
	}
	log.Info("turn server started", "udp", s.addrs.UDP, "tcp", s.addrs.TCP, "tls", s.addrs.TLS,
		"relay_ip", public, "relay_ports", fmt.Sprintf("%d-%d", cfg.RelayPortMin, cfg.RelayPortMax))
	return s, nil
}

// start opens the sockets and hands them to pion; on error it closes
// whatever it opened.
func (s *Server) start(p Params, filter *peerFilter) (err error) {
	var conns []net.PacketConn
	var listeners []net.Listener
	defer func() {
		if err != nil {
			for _, c := range conns {
				_ = c.Close()
			}
			for _, l := range listeners {
				_ = l.Close()
			}
		}
	}()
	if conns, err = s.openPacketConns(p); err != nil {
		return err
	}
	if listeners, err = s.openListeners(p); err != nil {
		return err
	}
	permit := func(client net.Addr, peer net.IP) bool {
		ip, ok := netip.AddrFromSlice(peer)
		if ok && filter.permitIP(ip) {
			return true
		}
		s.metrics.permissionsNo.Inc()
		s.log.Debug("turn peer refused", "client", client, "peer", peer)
		return false
	}
	sc := pionturn.ServerConfig{
		LoggerFactory:      newSlogFactory(s.log),
		Realm:              s.cfg.Realm,
		AuthHandler:        s.authenticate,
		QuotaHandler:       s.relays.quotaOK,
		EventHandler:       pionturn.EventHandler{OnAuth: s.onAuth},
		AllocationLifetime: s.cfg.AllocationLifetime,
		// Relays are of the public address's family only. Strict RFC 6156
		// defaulting (IPv4 when the client does not ask) keeps IPv6
		// clients on an IPv4 relay instead of failing their Allocate.
		StrictAddressFamily: s.relays.public.Is4(),
	}
	for _, c := range conns {
		sc.PacketConnConfigs = append(sc.PacketConnConfigs, pionturn.PacketConnConfig{
			PacketConn: c, RelayAddressGenerator: s.relays, PermissionHandler: permit,
		})
	}
	for _, l := range listeners {
		sc.ListenerConfigs = append(sc.ListenerConfigs, pionturn.ListenerConfig{
			Listener: l, RelayAddressGenerator: s.relays, PermissionHandler: permit,
		})
	}
	if s.pion, err = pionturn.NewServer(sc); err != nil {
		return fmt.Errorf("turn: start: %w", err)
	}
	return nil
}

func (s *Server) openPacketConns(p Params) ([]net.PacketConn, error) {
	conn := p.PacketConn
	if conn == nil && s.cfg.ListenUDP != "" {
		var err error
		if conn, err = net.ListenPacket("udp", s.cfg.ListenUDP); err != nil {
			return nil, fmt.Errorf("turn.listen_udp: %w", err)
		}
		// Every client shares this socket and one pion goroutine reads
		// it; a burst from many clients overflows the kernel's default
		// buffer (about 200 KiB) and is lost. The kernel caps the size at
		// net.core.rmem_max / wmem_max, so failure is harmless.
		if uc, ok := conn.(*net.UDPConn); ok {
			_ = uc.SetReadBuffer(udpSocketBuffer)
			_ = uc.SetWriteBuffer(udpSocketBuffer)
		}
	}
	if conn == nil {
		return nil, nil
	}
	s.addrs.UDP = conn.LocalAddr()
	return []net.PacketConn{conn}, nil
}

func (s *Server) openListeners(p Params) (out []net.Listener, err error) {
	defer func() {
		if err != nil {
			for _, l := range out {
				_ = l.Close()
			}
			out = nil
		}
	}()
	l := p.Listener
	if l == nil && s.cfg.ListenTCP != "" {
		if l, err = net.Listen("tcp", s.cfg.ListenTCP); err != nil {
			return out, fmt.Errorf("turn.listen_tcp: %w", err)
		}
	}
	if l != nil {
		s.addrs.TCP = l.Addr()
		out = append(out, newTrackingListener(l))
	}
	if !s.cfg.tlsEnabled() {
		return out, nil
	}
	cert, err := tls.LoadX509KeyPair(s.cfg.TLSCertFile, s.cfg.TLSKeyFile)
	if err != nil {
		return out, fmt.Errorf("turn.tls_cert_file: %w", err)
	}
	tl, err := net.Listen("tcp", s.cfg.ListenTLS)
	if err != nil {
		return out, fmt.Errorf("turn.listen_tls: %w", err)
	}
	s.addrs.TLS = tl.Addr()
	// The tracking listener sits under TLS: pion looks for a *tls.Conn
	// to learn the TLS state, and closing the raw connection ends both.
	out = append(out, tls.NewListener(newTrackingListener(tl), &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
	}))
	return out, nil
}

// Close stops the server: listeners, client connections, allocations.
// It returns once pion has released every allocation (or after
// closeTimeout); later calls return the first call's result.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		if err := s.pion.Close(); err != nil {
			s.closeErr = fmt.Errorf("turn: close: %w", err)
		}
		if !s.relays.waitIdle(closeTimeout) {
			s.log.Warn("turn: allocations still open after close", "count", s.relays.active())
		}
	})
	return s.closeErr
}

// Addrs returns the bound listen addresses (useful with port 0).
func (s *Server) Addrs() Addrs { return s.addrs }

// AllocationCount returns the number of open allocations.
func (s *Server) AllocationCount() int { return s.relays.active() }

// RelayIP is the address announced in relayed candidates.
func (s *Server) RelayIP() netip.Addr { return s.relays.public }

// URLs returns the turn: and turns: URLs clients should use, with the
// configured public_host (or the relay IP) and the bound ports.
func (s *Server) URLs() []string {
	host := s.cfg.PublicHost
	if host == "" {
		host = s.relays.public.String()
	}
	var urls []string
	if port := addrPort(s.addrs.UDP); port != 0 {
		urls = append(urls, "turn:"+net.JoinHostPort(host, strconv.Itoa(port))+"?transport=udp")
	}
	if port := addrPort(s.addrs.TCP); port != 0 {
		urls = append(urls, "turn:"+net.JoinHostPort(host, strconv.Itoa(port))+"?transport=tcp")
	}
	if port := addrPort(s.addrs.TLS); port != 0 {
		urls = append(urls, "turns:"+net.JoinHostPort(host, strconv.Itoa(port))+"?transport=tcp")
	}
	return urls
}

// ICEServer returns the server's URLs with fresh time-limited credentials
// for id (a customer, an agent, a WHIP/WHEP session), valid for
// credential_ttl from now.
func (s *Server) ICEServer(id string, now time.Time) ICEServer {
	user, pass := Credentials(s.cfg.AuthSecret, id, s.cfg.CredentialTTL, now)
	return ICEServer{URLs: s.URLs(), Username: user, Credential: pass}
}

func addrPort(a net.Addr) int {
	return int(netAddrPort(a).Port())
}

// publicAddr picks the relay address announced to clients.
func publicAddr(cfg Config, bindIP netip.Addr) (netip.Addr, error) {
	if cfg.PublicIP != "" {
		return netip.MustParseAddr(cfg.PublicIP).Unmap(), nil
	}
	if !bindIP.IsUnspecified() {
		return bindIP, nil
	}
	// Connecting a UDP socket sends nothing; it asks the kernel which
	// source address its routes would use.
	if c, err := net.Dial("udp4", "192.0.2.1:9"); err == nil {
		defer c.Close()
		if ap := netAddrPort(c.LocalAddr()); ap.IsValid() {
			return ap.Addr().Unmap(), nil
		}
	}
	for _, a := range localAddrs() {
		if a.Is4() && a.IsGlobalUnicast() {
			return a, nil
		}
	}
	return netip.Addr{}, errors.New("turn.public_ip: cannot detect the host's address; set it")
}
