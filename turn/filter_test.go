package turn

import (
	"net/netip"
	"testing"
)

func TestPeerFilter(t *testing.T) {
	own := []netip.Addr{netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("8.8.4.4")}
	tests := []struct {
		peer    string
		change  func(*Config)
		wantIP  bool // permitIP: may a permission be created
		wantDgm bool // permitAddr: may a datagram go to this ip:port
	}{
		{"93.184.216.34:5000", nil, true, true},
		{"[2606:4700::1111]:5000", nil, true, true},
		{"127.0.0.1:5000", nil, false, false},
		{"[::1]:5000", nil, false, false},
		{"[::ffff:127.0.0.1]:5000", nil, false, false},
		{"127.0.0.1:5000", func(c *Config) { c.AllowLoopbackPeers = true }, true, true},
		{"10.1.2.3:5000", nil, false, false},
		{"172.16.0.1:5000", nil, false, false},
		{"192.168.1.1:5000", nil, false, false},
		{"100.64.0.1:5000", nil, false, false},
		{"[fd00::1]:5000", nil, false, false},
		{"10.1.2.3:5000", func(c *Config) { c.AllowPrivatePeers = true }, true, true},
		{"169.254.169.254:80", nil, false, false},
		{"169.254.169.254:80", func(c *Config) { c.AllowPrivatePeers = true }, false, false},
		{"[fe80::1]:5000", nil, false, false},
		{"224.0.0.1:5000", nil, false, false},
		{"[ff02::1]:5000", nil, false, false},
		{"255.255.255.255:5000", nil, false, false},
		{"0.0.0.0:5000", nil, false, false},
		{"[::]:5000", nil, false, false},
		{"[64:ff9b::a00:1]:5000", nil, false, false},
		{"8.8.4.4:5000", nil, false, false}, // the server's own address
		{"8.8.4.4:7882", func(c *Config) { c.AllowedPeers = []string{"8.8.4.4:7882"} }, true, true},
		{"8.8.4.4:22", func(c *Config) { c.AllowedPeers = []string{"8.8.4.4:7882"} }, true, false},
		{"10.9.9.9:22", func(c *Config) { c.AllowedPeers = []string{"10.9.0.0/16"} }, true, true},
		{"93.184.216.34:5000", func(c *Config) { c.DeniedPeers = []string{"93.184.216.0/24"} }, false, false},
		{"8.8.4.4:7882", func(c *Config) { c.AllowedPeers = []string{"0.0.0.0:7882"} }, true, true},
		{"198.51.100.7:7882", func(c *Config) { c.AllowedPeers = []string{"0.0.0.0:7882"} }, true, true},
		{"198.51.100.7:7883", func(c *Config) { c.AllowedPeers = []string{"0.0.0.0:7882"} }, true, false},
		{"93.184.216.34:7882", func(c *Config) { c.AllowedPeers = []string{"0.0.0.0:7882"} }, true, true},
		{"10.0.0.1:7882", func(c *Config) { c.AllowedPeers = []string{"0.0.0.0:7882"} }, false, false},
		{"127.0.0.1:7882", func(c *Config) { c.AllowedPeers = []string{"0.0.0.0:7882"} }, false, false},
	}
	for _, tt := range tests {
		c := DefaultConfig()
		if tt.change != nil {
			tt.change(&c)
		}
		f, err := newPeerFilter(c, own, nil)
		if err != nil {
			t.Fatal(err)
		}
		ap := netip.MustParseAddrPort(tt.peer)
		if got := f.permitIP(ap.Addr()); got != tt.wantIP {
			t.Errorf("%s %+v: permitIP = %v, want %v", tt.peer, c.AllowedPeers, got, tt.wantIP)
		}
		if got := f.permitAddr(ap); got != tt.wantDgm {
			t.Errorf("%s %+v: permitAddr = %v, want %v", tt.peer, c.AllowedPeers, got, tt.wantDgm)
		}
	}
}
