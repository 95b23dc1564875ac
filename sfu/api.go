package sfu

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/logging"
	"github.com/pion/sdp/v3"
	piontransport "github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"
	"github.com/pion/webrtc/v4"

	"github.com/avs/avs/sfu/fastpath"
	"github.com/avs/avs/sfu/udpconn"
)

const (
	mimeOpus = webrtc.MimeTypeOpus
	mimeVP8  = webrtc.MimeTypeVP8
	mimeVP9  = webrtc.MimeTypeVP9
	mimeH264 = webrtc.MimeTypeH264

	audioLevelURI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
)

var videoFeedback = []webrtc.RTCPFeedback{
	{Type: webrtc.TypeRTCPFBNACK},
	{Type: webrtc.TypeRTCPFBNACK, Parameter: "pli"},
	{Type: webrtc.TypeRTCPFBCCM, Parameter: "fir"},
	{Type: webrtc.TypeRTCPFBTransportCC},
}

// videoCodecs are the registrations for each codec name of the config, with
// fixed payload types so that every PeerConnection the server offers agrees.
func videoCodecs(name string) []webrtc.RTPCodecParameters {
	c := func(pt uint8, mime, fmtp string) webrtc.RTPCodecParameters {
		return webrtc.RTPCodecParameters{
			PayloadType: webrtc.PayloadType(pt),
			RTPCodecCapability: webrtc.RTPCodecCapability{
				MimeType: mime, ClockRate: 90000, SDPFmtpLine: fmtp, RTCPFeedback: videoFeedback,
			},
		}
	}
	switch strings.ToUpper(name) {
	case "VP8":
		return []webrtc.RTPCodecParameters{c(96, mimeVP8, "")}
	case "VP9":
		return []webrtc.RTPCodecParameters{c(98, mimeVP9, "profile-id=0")}
	case "H264":
		// Constrained baseline and baseline, packetization mode 1, as Safari,
		// iOS web-views and the mini-program's encoder produce.
		return []webrtc.RTPCodecParameters{
			c(102, mimeH264, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"),
			c(104, mimeH264, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f"),
			c(106, mimeH264, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640c1f"),
		}
	}
	return nil
}

// apiSet holds one webrtc.API per codec set: the audio-only API rejects every
// video section, and a room limited to one video codec gets an API that knows
// only that codec. They share one setting engine and so one UDP and TCP mux.
type apiSet struct {
	settings    webrtc.SettingEngine
	cfg         Config
	log         *slog.Logger
	mu          sync.Mutex
	apis        map[string]*builtAPI
	udpMux      ice.UDPMux
	udpAddr     *net.UDPAddr
	tcpListener net.Listener
	fast        *fastpath.Router // nil when sfu.fast_path is off
	std         piontransport.Net
}

type builtAPI struct {
	api   *webrtc.API
	media *webrtc.MediaEngine
}

// socketBuffer is the kernel buffer asked for on media sockets, so that a
// burst of keyframes from many publishers is not dropped by the kernel.
const socketBuffer = 4 << 20

func newAPISet(cfg Config, log *slog.Logger) (*apiSet, error) {
	std, err := stdnet.NewNet()
	if err != nil {
		return nil, fmt.Errorf("network interfaces: %w", err)
	}
	s := &apiSet{cfg: cfg, log: log, apis: map[string]*builtAPI{}, std: std}
	if cfg.FastPath {
		s.fast = fastpath.NewRouter()
	}
	loggerFactory := newPionLoggerFactory(log)
	s.settings.LoggerFactory = loggerFactory
	if err := s.listenUDP(loggerFactory); err != nil {
		return nil, err
	}
	networks := []webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6}
	if cfg.TCPListen != "" {
		tcp, err := net.Listen("tcp", cfg.TCPListen)
		if err != nil {
			s.closeUDP()
			return nil, fmt.Errorf("sfu.tcp_listen %s: %w", cfg.TCPListen, err)
		}
		s.tcpListener = tcp
		s.settings.SetICETCPMux(webrtc.NewICETCPMux(loggerFactory.NewLogger("tcpmux"), tcp, 64))
		networks = append(networks, webrtc.NetworkTypeTCP4, webrtc.NetworkTypeTCP6)
	}
	s.settings.SetNetworkTypes(networks)
	s.settings.SetIPFilter(reachableIP)
	if s.udpAddr.IP.IsLoopback() {
		s.settings.SetIncludeLoopbackCandidate(true)
	}
	if len(cfg.PublicIPs) > 0 {
		err := s.settings.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{
			External: cfg.PublicIPs, AsCandidateType: webrtc.ICECandidateTypeHost, Mode: webrtc.ICEAddressRewriteReplace,
		})
		if err != nil {
			s.closeUDP()
			if s.tcpListener != nil {
				_ = s.tcpListener.Close()
			}
			return nil, fmt.Errorf("sfu.public_ips: %w", err)
		}
	}
	s.settings.SetICETimeouts(cfg.ICEDisconnectedTimeout, cfg.ICEFailedTimeout, 0)
	s.settings.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled) // mDNS is useless on a server and costs sockets per connection
	return s, nil
}

// listenUDP opens the media port. On a wildcard address with a fixed
// port it opens one socket per local address (pion's multi mux), so that
// replies leave from the address the client reached; otherwise one socket.
func (s *apiSet) listenUDP(lf logging.LoggerFactory) error {
	addr, err := net.ResolveUDPAddr("udp", s.cfg.UDPListen)
	if err != nil {
		return fmt.Errorf("sfu.udp_listen %s: %w", s.cfg.UDPListen, err)
	}
	if (addr.IP == nil || addr.IP.IsUnspecified()) && addr.Port != 0 {
		mux, err := ice.NewMultiUDPMuxFromPort(addr.Port,
			ice.UDPMuxFromPortWithNet(s.media()),
			ice.UDPMuxFromPortWithIPFilter(reachableIP),
			ice.UDPMuxFromPortWithLogger(lf.NewLogger("udpmux")),
			ice.UDPMuxFromPortWithReadBufferSize(socketBuffer),
			ice.UDPMuxFromPortWithWriteBufferSize(socketBuffer),
			ice.UDPMuxFromPortWithNetworks(ice.NetworkTypeUDP4, ice.NetworkTypeUDP6))
		if err != nil {
			return fmt.Errorf("sfu.udp_listen %s: %w", s.cfg.UDPListen, err)
		}
		s.udpMux, s.udpAddr = mux, &net.UDPAddr{IP: net.IPv4zero, Port: addr.Port}
		s.settings.SetICEUDPMux(mux)
		return nil
	}
	media, err := s.media().ListenUDP("udp", addr)
	if err != nil {
		return fmt.Errorf("sfu.udp_listen %s: %w", s.cfg.UDPListen, err)
	}
	_ = media.SetReadBuffer(socketBuffer)
	_ = media.SetWriteBuffer(socketBuffer)
	mux := webrtc.NewICEUDPMux(lf.NewLogger("udpmux"), media)
	s.udpMux, s.udpAddr = mux, media.LocalAddr().(*net.UDPAddr)
	s.settings.SetICEUDPMux(mux)
	return nil
}

func (s *apiSet) closeUDP() { _ = s.udpMux.Close() }

// reachableIP keeps the addresses worth offering as candidates: a
// link-local IPv6 address reaches only hosts on the server's own link,
// and each candidate costs every connection a socket reader and buffers.
func reachableIP(ip net.IP) bool { return !ip.IsLinkLocalUnicast() }

// mediaNet opens the media port's sockets with direct system calls on the
// forwarding path (package udpconn), read through the fast path when it
// is on, in a group of readers sharing each address; the rest is the
// standard network.
type mediaNet struct {
	piontransport.Net
	fast    *fastpath.Router
	readers int
}

func (s *apiSet) media() mediaNet {
	readers := s.cfg.UDPReaders
	if readers == 0 {
		readers = runtime.GOMAXPROCS(0)
	}
	if s.fast == nil {
		readers = 1 // without the fast path one reader feeds pion's goroutines anyway
	}
	return mediaNet{Net: s.std, fast: s.fast, readers: readers}
}

func (n mediaNet) ListenUDP(network string, laddr *net.UDPAddr) (piontransport.UDPConn, error) {
	group, err := udpconn.ListenGroup(network, laddr, n.readers)
	if err != nil {
		return nil, err
	}
	if n.fast == nil {
		return group[0], nil
	}
	sockets := make([]fastpath.UDPConn, len(group))
	for i, c := range group {
		sockets[i] = c
	}
	return n.fast.WrapGroup(sockets), nil
}

// UDPAddr is where media arrives (the wildcard address with the port when
// listening on every local address).
func (s *apiSet) UDPAddr() *net.UDPAddr { return s.udpAddr }

// TCPAddr is the ICE-TCP address, nil when disabled.
func (s *apiSet) TCPAddr() net.Addr {
	if s.tcpListener == nil {
		return nil
	}
	return s.tcpListener.Addr()
}

func (s *apiSet) close() {
	if s.tcpListener != nil {
		_ = s.tcpListener.Close()
	}
	s.closeUDP()
}

// newPeerConnection builds a PeerConnection that knows Opus and the given
// video codecs (none for audio-only), whose incoming streams are read
// through taps.
func (s *apiSet) newPeerConnection(video []string, taps *tapSet) (*webrtc.PeerConnection, error) {
	key := strings.Join(video, ",")
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.apis[key]
	if !ok {
		var err error
		if b, err = s.buildAPI(video); err != nil {
			return nil, err
		}
		s.apis[key] = b
	}
	// The buffer factory is a setting, so a connection with its own taps
	// needs its own API; the media engine is shared (pion copies it per
	// connection anyway).
	settings := s.settings
	settings.BufferFactory = taps.bufferFactory
	if s.fast != nil {
		taps.direct = s.fast.NewSession()
		settings.SetDTLSKeyLogWriter(taps.direct)
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(b.media), webrtc.WithInterceptorRegistry(&interceptor.Registry{}), webrtc.WithSettingEngine(settings))
	pc, err := api.NewPeerConnection(webrtc.Configuration{
		SDPSemantics: webrtc.SDPSemanticsUnifiedPlanWithFallback,
		BundlePolicy: webrtc.BundlePolicyMaxBundle,
	})
	if err != nil {
		if taps.direct != nil {
			taps.direct.Close()
		}
		return nil, fmt.Errorf("new peer connection: %w", err)
	}
	if direct := taps.direct; direct != nil {
		dtls := pc.SCTP().Transport()
		dtls.OnStateChange(func(state webrtc.DTLSTransportState) {
			if state == webrtc.DTLSTransportStateClosed || state == webrtc.DTLSTransportStateFailed {
				direct.Close()
			}
		})
		dtls.ICETransport().OnSelectedCandidatePairChange(func(pair *webrtc.ICECandidatePair) {
			if addr, err := netip.ParseAddr(pair.Remote.Address); err == nil && pair.Remote.Protocol == webrtc.ICEProtocolUDP {
				direct.Follow(netip.AddrPortFrom(addr, pair.Remote.Port))
			}
		})
	}
	return pc, nil
}

func (s *apiSet) buildAPI(video []string) (*builtAPI, error) {
	m := &webrtc.MediaEngine{}
	err := m.RegisterCodec(webrtc.RTPCodecParameters{
		PayloadType: 111,
		RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: mimeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1",
			RTCPFeedback: []webrtc.RTCPFeedback{{Type: webrtc.TypeRTCPFBTransportCC}},
		},
	}, webrtc.RTPCodecTypeAudio)
	if err != nil {
		return nil, fmt.Errorf("register opus: %w", err)
	}
	for _, name := range video {
		for _, c := range videoCodecs(name) {
			if err := m.RegisterCodec(c, webrtc.RTPCodecTypeVideo); err != nil {
				return nil, fmt.Errorf("register %s: %w", name, err)
			}
		}
	}
	exts := []struct {
		uri  string
		kind webrtc.RTPCodecType
	}{
		{sdp.SDESMidURI, webrtc.RTPCodecTypeAudio},
		{sdp.SDESMidURI, webrtc.RTPCodecTypeVideo},
		{sdp.SDESRTPStreamIDURI, webrtc.RTPCodecTypeVideo},
		{sdp.SDESRepairRTPStreamIDURI, webrtc.RTPCodecTypeVideo},
		{audioLevelURI, webrtc.RTPCodecTypeAudio},
		{sdp.TransportCCURI, webrtc.RTPCodecTypeAudio},
		{sdp.TransportCCURI, webrtc.RTPCodecTypeVideo},
	}
	for _, e := range exts {
		if len(video) == 0 && e.kind == webrtc.RTPCodecTypeVideo {
			continue
		}
		if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: e.uri}, e.kind); err != nil {
			return nil, fmt.Errorf("register header extension %s: %w", e.uri, err)
		}
	}

	b := &builtAPI{media: m}
	// No interceptors: NACKs, keyframe requests, RTCP reports, transport-wide
	// numbering and feedback, and the bandwidth estimate are the SFU's own
	// work, done where it touches each packet anyway.
	reg := &interceptor.Registry{}
	b.api = webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(s.settings))
	return b, nil
}
