package loadgen

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"net/url"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/rtcp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// peerFactory makes the generator's peer connections. Publishers and players
// each share one webrtc.API (codecs, interceptors, ICE settings) and all
// share one DTLS certificate, so a new peer costs no key generation.
//
// The peers do not share one UDP socket: the server listens on one UDP port
// for all sessions, so if the generator did too, every session would have
// the same 5-tuple and neither end could tell their packets apart after ICE.
type peerFactory struct {
	publish, play *webrtc.API
	cert          webrtc.Certificate
}

func newPeerFactory(serverURL string, codec string, simulcast, nackGen, twccOn bool, c *Counters,
	log *slog.Logger) (*peerFactory, error) {
	localIP, err := localIPFor(serverURL)
	if err != nil {
		return nil, err
	}
	logs := pionLogs{log: log}
	var se webrtc.SettingEngine
	se.LoggerFactory = logs
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetIncludeLoopbackCandidate(localIP.IsLoopback())
	// One candidate per peer: the address that routes to the server. Host
	// candidates on every interface would only add ICE checks.
	se.SetIPFilter(func(ip net.IP) bool { return ip.Equal(localIP) })

	pubME, err := newMediaEngine(codec, simulcast, twccOn)
	if err != nil {
		return nil, err
	}
	pubIR := &interceptor.Registry{}
	responder, err := nack.NewResponderInterceptor(nack.ResponderSize(512), nack.WithResponderLoggerFactory(logs))
	if err != nil {
		return nil, fmt.Errorf("nack responder: %w", err)
	}
	pubIR.Add(responder)

	playME, err := newMediaEngine(codec, false, twccOn)
	if err != nil {
		return nil, err
	}
	playIR := &interceptor.Registry{}
	// Added first so that it wraps the raw RTCP writer and sees what the
	// NACK generator and the players write.
	playIR.Add(&rtcpCounterFactory{c: c})
	if nackGen {
		gen, err := nack.NewGeneratorInterceptor(nack.WithGeneratorLoggerFactory(logs))
		if err != nil {
			return nil, fmt.Errorf("nack generator: %w", err)
		}
		playIR.Add(gen)
	}
	if twccOn {
		// The server's bandwidth estimate for each player runs on this
		// feedback, as it does for a browser.
		fb, err := twcc.NewSenderInterceptor(twcc.WithLoggerFactory(logs))
		if err != nil {
			return nil, fmt.Errorf("twcc feedback: %w", err)
		}
		playIR.Add(fb)
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("dtls key: %w", err)
	}
	cert, err := webrtc.GenerateCertificate(key)
	if err != nil {
		return nil, fmt.Errorf("dtls certificate: %w", err)
	}
	return &peerFactory{
		publish: webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(pubME),
			webrtc.WithInterceptorRegistry(pubIR)),
		play: webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(playME),
			webrtc.WithInterceptorRegistry(playIR)),
		cert: *cert,
	}, nil
}

func (f *peerFactory) newPeer(publish bool) (*webrtc.PeerConnection, error) {
	api := f.play
	if publish {
		api = f.publish
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{
		Certificates: []webrtc.Certificate{f.cert},
		BundlePolicy: webrtc.BundlePolicyMaxBundle,
	})
	if err != nil {
		return nil, fmt.Errorf("new peer connection: %w", err)
	}
	return pc, nil
}

const (
	ptOpus = 111
	ptVP8  = 96
	ptH264 = 102
)

// newMediaEngine registers only the codecs the run uses, so the server's
// answer cannot pick another one.
func newMediaEngine(codec string, simulcast, twccOn bool) (*webrtc.MediaEngine, error) {
	me := &webrtc.MediaEngine{}
	videoFB := []webrtc.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}, {Type: "ccm", Parameter: "fir"}}
	var audioFB []webrtc.RTCPFeedback
	if twccOn {
		videoFB = append(videoFB, webrtc.RTCPFeedback{Type: webrtc.TypeRTCPFBTransportCC})
		audioFB = append(audioFB, webrtc.RTCPFeedback{Type: webrtc.TypeRTCPFBTransportCC})
	}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2,
			SDPFmtpLine: "minptime=10;useinbandfec=1", RTCPFeedback: audioFB},
		PayloadType: ptOpus,
	}, webrtc.RTPCodecTypeAudio); err != nil {
		return nil, fmt.Errorf("register opus: %w", err)
	}
	video := webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000, RTCPFeedback: videoFB},
		PayloadType:        ptVP8,
	}
	if codec == "h264" {
		video = webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
				SDPFmtpLine:  "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
				RTCPFeedback: videoFB},
			PayloadType: ptH264,
		}
	}
	if err := me.RegisterCodec(video, webrtc.RTPCodecTypeVideo); err != nil {
		return nil, fmt.Errorf("register video codec: %w", err)
	}
	exts := []string{sdp.SDESMidURI}
	if twccOn {
		exts = append(exts, sdp.TransportCCURI)
	}
	if simulcast {
		exts = append(exts, sdp.SDESRTPStreamIDURI, sdp.SDESRepairRTPStreamIDURI)
	}
	for _, uri := range exts {
		for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
			if (uri == sdp.SDESRTPStreamIDURI || uri == sdp.SDESRepairRTPStreamIDURI) && kind == webrtc.RTPCodecTypeAudio {
				continue
			}
			if err := me.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: uri}, kind); err != nil {
				return nil, fmt.Errorf("register header extension %s: %w", uri, err)
			}
		}
	}
	return me, nil
}

// localIPFor returns the local address the generator's peers use: the one
// the kernel would use to reach the server (connecting a UDP socket sends
// nothing). For a server on loopback it is the host's first non-loopback
// IPv4 address instead, when there is one, because servers (pion's default)
// do not offer loopback candidates: checks from 127.0.0.1 to the host's
// address then only succeed as peer-reflexive, about a second later.
func localIPFor(serverURL string) (net.IP, error) {
	u, err := url.Parse(serverURL)
	if err != nil {
		return nil, fmt.Errorf("server URL: %w", err)
	}
	port := u.Port()
	if port == "" {
		port = "443"
	}
	conn, err := net.Dial("udp4", net.JoinHostPort(u.Hostname(), port))
	if err != nil {
		return nil, fmt.Errorf("find local address for %s: %w", u.Host, err)
	}
	defer conn.Close()
	ip := conn.LocalAddr().(*net.UDPAddr).IP
	if !ip.IsLoopback() {
		return ip, nil
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return ip, nil
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			return n.IP.To4(), nil
		}
	}
	return ip, nil
}

// rtcpCounterFactory counts the feedback players send: the NACK generator
// writes its NACKs below the application, so they can only be seen here.
type rtcpCounterFactory struct{ c *Counters }

func (f *rtcpCounterFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &rtcpCounter{c: f.c}, nil
}

type rtcpCounter struct {
	interceptor.NoOp
	c *Counters
}

func (r *rtcpCounter) BindRTCPWriter(w interceptor.RTCPWriter) interceptor.RTCPWriter {
	return interceptor.RTCPWriterFunc(func(pkts []rtcp.Packet, a interceptor.Attributes) (int, error) {
		for _, p := range pkts {
			switch p.(type) {
			case *rtcp.TransportLayerNack:
				r.c.NACKsFromPlayers.Add(1)
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				r.c.PLIsFromPlayers.Add(1)
			}
		}
		return w.Write(pkts, a)
	})
}
