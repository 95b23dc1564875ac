package turn

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
)

// maxRequestableLifetime is the longest lifetime pion/turn grants when a
// client asks for one (RFC 8656 recommends an hour); a longer default
// would silently be ignored for clients that ask.
const maxRequestableLifetime = time.Hour

// Config is the [turn] section of config.toml.
type Config struct {
	// Enabled starts the TURN server inside avs-server.
	Enabled bool `toml:"enabled"`
	// Realm is the long-term credential realm sent to clients.
	Realm string `toml:"realm"`

	// ListenUDP, ListenTCP and ListenTLS are listen addresses; an empty
	// string disables that listener. TLS runs only when TLSCertFile and
	// TLSKeyFile are both set.
	ListenUDP   string `toml:"listen_udp"`
	ListenTCP   string `toml:"listen_tcp"`
	ListenTLS   string `toml:"listen_tls"`
	TLSCertFile string `toml:"tls_cert_file"`
	TLSKeyFile  string `toml:"tls_key_file"`

	// PublicIP is the relay address announced to clients
	// (XOR-RELAYED-ADDRESS). Empty means: detect the host's outbound IP.
	PublicIP string `toml:"public_ip"`
	// PublicHost is the host name put into the turn: URLs handed to
	// clients; it must match the TLS certificate. Empty means PublicIP.
	PublicHost string `toml:"public_host"`
	// RelayBindIP is the local address relay sockets bind to.
	RelayBindIP string `toml:"relay_bind_ip"`
	// RelayPortMin and RelayPortMax bound the relay ports (inclusive);
	// both 0 lets the kernel choose (tests).
	RelayPortMin int `toml:"relay_port_min"`
	RelayPortMax int `toml:"relay_port_max"`

	// AuthSecret is the shared secret of the time-limited credentials
	// (coturn's use-auth-secret). Empty disables them.
	AuthSecret string `toml:"auth_secret"`
	// CredentialTTL is how long credentials handed out by ICEServer stay valid.
	CredentialTTL time.Duration `toml:"credential_ttl"`
	// StaticUsers are long-term users, name to password.
	StaticUsers map[string]string `toml:"static_users"`

	// MaxAllocations caps the allocations of the whole server, and
	// MaxAllocationsPerUser those of one user id; 0 means no cap.
	MaxAllocations        int `toml:"max_allocations"`
	MaxAllocationsPerUser int `toml:"max_allocations_per_user"`
	// MaxBitrateKbps caps each allocation, per direction; 0 means no cap.
	MaxBitrateKbps int `toml:"max_bitrate_kbps"`
	// AllocationLifetime is the lifetime granted when a client does not
	// ask for one; refreshes extend it.
	AllocationLifetime time.Duration `toml:"allocation_lifetime"`
	// MaxAllocationAge ends an allocation this long after its creation,
	// however often it was refreshed; 0 means no limit.
	MaxAllocationAge time.Duration `toml:"max_allocation_age"`

	// AuthFailureLimit failed authentications from one IP address within
	// AuthFailureWindow block that address until the window ends; 0
	// disables the limit.
	AuthFailureLimit  int           `toml:"auth_failure_limit"`
	AuthFailureWindow time.Duration `toml:"auth_failure_window"`

	// AllowLoopbackPeers and AllowPrivatePeers let clients relay to
	// loopback and to private (RFC 1918, RFC 6598, unique-local) peers.
	AllowLoopbackPeers bool `toml:"allow_loopback_peers"`
	AllowPrivatePeers  bool `toml:"allow_private_peers"`
	// AllowedPeers are peers always allowed ("10.0.0.0/8", "10.1.2.3",
	// "203.0.113.7:7882"); "0.0.0.0:7882" means port 7882 on any of this
	// host's own addresses, e.g. the SFU's media port.
	AllowedPeers []string `toml:"allowed_peers"`
	// DeniedPeers are extra networks never relayed to ("192.0.2.0/24").
	DeniedPeers []string `toml:"denied_peers"`
}

// DefaultConfig returns the configuration used when config.toml is silent.
func DefaultConfig() Config {
	return Config{
		Enabled:               true,
		Realm:                 "avs",
		ListenUDP:             ":3478",
		ListenTCP:             ":3478",
		ListenTLS:             ":5349",
		RelayBindIP:           "0.0.0.0",
		RelayPortMin:          49160,
		RelayPortMax:          49200,
		CredentialTTL:         24 * time.Hour,
		MaxAllocations:        1000,
		MaxAllocationsPerUser: 10,
		MaxBitrateKbps:        10000,
		AllocationLifetime:    10 * time.Minute,
		MaxAllocationAge:      12 * time.Hour,
		AuthFailureLimit:      20,
		AuthFailureWindow:     time.Minute,
	}
}

// tlsEnabled reports whether the TLS listener runs.
func (c Config) tlsEnabled() bool {
	return c.ListenTLS != "" && c.TLSCertFile != "" && c.TLSKeyFile != ""
}

// Validate checks the configuration; its errors name the config.toml key.
func (c Config) Validate() error {
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("turn.%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if c.Realm == "" {
		add("realm", "must not be empty")
	}
	for _, l := range []struct{ key, addr string }{
		{"listen_udp", c.ListenUDP}, {"listen_tcp", c.ListenTCP}, {"listen_tls", c.ListenTLS},
	} {
		if l.addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(l.addr); err != nil {
			add(l.key, "%q is not host:port: %v", l.addr, err)
		}
	}
	if c.ListenUDP == "" && c.ListenTCP == "" && !c.tlsEnabled() {
		add("listen_udp", "no listener: set listen_udp, listen_tcp or listen_tls with a certificate")
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		add("tls_cert_file", "tls_cert_file and tls_key_file must be set together")
	}
	if c.PublicIP != "" {
		if ip, err := netip.ParseAddr(c.PublicIP); err != nil || ip.IsUnspecified() {
			add("public_ip", "%q is not a unicast IP address", c.PublicIP)
		}
	}
	if _, err := netip.ParseAddr(c.RelayBindIP); err != nil {
		add("relay_bind_ip", "%q is not an IP address", c.RelayBindIP)
	}
	c.validatePorts(add)
	if c.AuthSecret == "" && len(c.StaticUsers) == 0 {
		add("auth_secret", "must be set (or static_users given): a TURN server without credentials is an open relay")
	}
	for name, pw := range c.StaticUsers {
		if name == "" || pw == "" {
			add("static_users", "user %q needs a non-empty name and password", name)
		}
	}
	if c.CredentialTTL <= 0 {
		add("credential_ttl", "must be > 0")
	}
	for _, q := range []struct {
		key string
		v   int
	}{
		{"max_allocations", c.MaxAllocations}, {"max_allocations_per_user", c.MaxAllocationsPerUser},
		{"max_bitrate_kbps", c.MaxBitrateKbps}, {"auth_failure_limit", c.AuthFailureLimit},
	} {
		if q.v < 0 {
			add(q.key, "must be ≥ 0")
		}
	}
	if c.AllocationLifetime < time.Minute || c.AllocationLifetime > maxRequestableLifetime {
		add("allocation_lifetime", "must be between 1m and 1h, is %s", c.AllocationLifetime)
	}
	if c.MaxAllocationAge < 0 {
		add("max_allocation_age", "must be ≥ 0")
	}
	if c.AuthFailureLimit > 0 && c.AuthFailureWindow <= 0 {
		add("auth_failure_window", "must be > 0 when auth_failure_limit is set")
	}
	if _, err := parsePeerRules(c.AllowedPeers); err != nil {
		add("allowed_peers", "%v", err)
	}
	if rules, err := parsePeerRules(c.DeniedPeers); err != nil {
		add("denied_peers", "%v", err)
	} else if len(rules.addrPorts) > 0 {
		add("denied_peers", "takes networks or addresses, not address:port")
	}
	return errors.Join(errs...)
}

func (c Config) validatePorts(add func(key, format string, args ...any)) {
	lo, hi := c.RelayPortMin, c.RelayPortMax
	switch {
	case lo == 0 && hi == 0:
		// The kernel picks ephemeral ports.
	case lo < 1 || lo > 65535:
		add("relay_port_min", "must be in 1..65535 (or 0 together with relay_port_max)")
	case hi < 1 || hi > 65535:
		add("relay_port_max", "must be in 1..65535 (or 0 together with relay_port_min)")
	case lo > hi:
		add("relay_port_min", "must be ≤ relay_port_max")
	}
}

// peerRules is a parsed allowed_peers or denied_peers list.
type peerRules struct {
	prefixes  []netip.Prefix
	addrPorts map[netip.AddrPort]struct{}
}

func parsePeerRules(list []string) (peerRules, error) {
	r := peerRules{addrPorts: map[netip.AddrPort]struct{}{}}
	for _, s := range list {
		s = strings.TrimSpace(s)
		if p, err := netip.ParsePrefix(s); err == nil {
			r.prefixes = append(r.prefixes, p.Masked())
			continue
		}
		if a, err := netip.ParseAddr(s); err == nil {
			a = a.Unmap()
			r.prefixes = append(r.prefixes, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		if ap, err := netip.ParseAddrPort(s); err == nil {
			r.addrPorts[netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())] = struct{}{}
			continue
		}
		return peerRules{}, fmt.Errorf("%q is not a network, address or address:port", s)
	}
	return r, nil
}
