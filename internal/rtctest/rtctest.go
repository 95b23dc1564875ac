// Package rtctest builds browser-like pion peers for tests that exercise
// the media plane over real loopback UDP: a client PeerConnection with the
// default codecs and interceptors, an optional lossy link, and helpers to
// publish synthetic VP8 and Opus and to collect what arrives.
package rtctest

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Timeout bounds every wait in these helpers; generous, for a loaded machine.
const Timeout = 30 * time.Second

// AudioLevelURI is the RFC 6464 header extension browsers send with audio.
const AudioLevelURI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"

// Options shape a client peer.
type Options struct {
	// Drop, when set, loses on the wire each RTP packet it selects, once:
	// arriving packets of a receiver, departing ones of a sender.
	Drop func(seq uint16) bool
	// Wire, with Drop, sees each RTP datagram as it crosses the wire,
	// still encrypted, and whether Drop lost it.
	Wire func(datagram []byte, dropped bool)
	// Conn, when set, carries the client's media, so a test can cut it.
	Conn net.PacketConn
	// ICEServers and relay-only policy, for TURN tests.
	ICEServers []webrtc.ICEServer
	RelayOnly  bool
	// TCPOnly makes the client use ICE over TCP alone, as behind a
	// firewall that blocks UDP.
	TCPOnly bool
}

// NewPeer builds a client PeerConnection closed at the end of the test.
func NewPeer(t testing.TB, o Options) *webrtc.PeerConnection {
	t.Helper()
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	for _, uri := range []string{sdp.SDESMidURI, sdp.SDESRTPStreamIDURI, sdp.SDESRepairRTPStreamIDURI} {
		if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: uri}, webrtc.RTPCodecTypeVideo); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: AudioLevelURI}, webrtc.RTPCodecTypeAudio); err != nil {
		t.Fatal(err)
	}
	reg := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, reg); err != nil {
		t.Fatal(err)
	}
	// Browsers number every packet for transport-wide feedback.
	if err := webrtc.ConfigureTWCCHeaderExtensionSender(m, reg); err != nil {
		t.Fatal(err)
	}
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	if o.TCPOnly {
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeTCP4})
	} else {
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	}
	se.SetICEMulticastDNSMode(0)
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	conn := o.Conn
	if o.Drop != nil {
		if conn == nil {
			raw, err := net.ListenPacket("udp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = raw.Close() })
			conn = raw
		}
		conn = &lossyConn{PacketConn: conn, drop: o.Drop, wire: o.Wire, dropped: map[uint64]bool{}}
	}
	if conn != nil {
		se.SetICEUDPMux(webrtc.NewICEUDPMux(nil, conn))
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(se))
	cfg := webrtc.Configuration{ICEServers: o.ICEServers}
	if o.RelayOnly {
		cfg.ICETransportPolicy = webrtc.ICETransportPolicyRelay
	}
	pc, err := api.NewPeerConnection(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	return pc
}

// Offer makes an offer and returns it once the client's candidates are in.
func Offer(t testing.TB, pc *webrtc.PeerConnection, opts *webrtc.OfferOptions) string {
	t.Helper()
	offer, err := pc.CreateOffer(opts)
	if err != nil {
		t.Fatal(err)
	}
	done := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-done
	return pc.LocalDescription().SDP
}

// Answer answers a server offer, with the client's candidates.
func Answer(t testing.TB, pc *webrtc.PeerConnection, offer string) (string, error) {
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", err
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", err
	}
	done := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(ans); err != nil {
		return "", err
	}
	<-done
	return pc.LocalDescription().SDP, nil
}

// SetAnswer applies the server's answer.
func SetAnswer(t testing.TB, pc *webrtc.PeerConnection, answer string) {
	t.Helper()
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatalf("set answer: %v", err)
	}
}

// WaitConnected waits until the peer is connected.
func WaitConnected(t testing.TB, pc *webrtc.PeerConnection) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	for pc.ConnectionState() != webrtc.PeerConnectionStateConnected {
		select {
		case <-ctx.Done():
			t.Fatalf("peer did not connect: %s", pc.ConnectionState())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// WaitFor polls cond until it holds, or fails the test after Timeout.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// VP8Payload is a minimal VP8 payload: a descriptor with the start bit,
// a frame header byte whose low bit tells a keyframe (0) from an inter
// frame (1), the frame number and the packet's index in the frame.
func VP8Payload(key bool, frame, part int) []byte {
	b := []byte{0x10, 0x01, byte(frame >> 8), byte(frame), byte(part), 0}
	if key {
		b[1] = 0x00
	}
	if part > 0 {
		b[0] = 0x00
	}
	return append(b, make([]byte, 200)...)
}

// IsVP8Keyframe tells the first packet of a keyframe made by VP8Payload.
func IsVP8Keyframe(p *rtp.Packet) bool {
	return len(p.Payload) > 1 && p.Payload[0]&0x10 != 0 && p.Payload[1]&0x01 == 0
}

// Frame and Part read back what VP8Payload wrote.
func Frame(p *rtp.Packet) int { return int(p.Payload[2])<<8 | int(p.Payload[3]) }
func Part(p *rtp.Packet) int  { return int(p.Payload[4]) }

// SendVideo writes frames of synthetic VP8 starting at seq, a keyframe every
// keyEvery frames (never when 0), and returns the next sequence number.
func SendVideo(t testing.TB, track *webrtc.TrackLocalStaticRTP, seq uint16, frames, perFrame, keyEvery int) uint16 {
	t.Helper()
	for f := range frames {
		for part := range perFrame {
			pkt := &rtp.Packet{
				Header:  rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(seq) * 1000, Marker: part == perFrame-1},
				Payload: VP8Payload(keyEvery > 0 && f%keyEvery == 0, f, part),
			}
			if err := track.WriteRTP(pkt); err != nil {
				t.Fatalf("write rtp: %v", err)
			}
			seq++
		}
		time.Sleep(5 * time.Millisecond)
	}
	return seq
}

// SendAudio writes n Opus-like packets starting at seq.
func SendAudio(t testing.TB, track *webrtc.TrackLocalStaticRTP, seq uint16, n int) uint16 {
	t.Helper()
	for range n {
		pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(seq) * 960}, Payload: []byte{0xfc, byte(seq), 0xff, 0xfe}}
		if err := track.WriteRTP(pkt); err != nil {
			t.Fatalf("write rtp: %v", err)
		}
		seq++
	}
	return seq
}

// Collector records the packets a client receives, by kind.
type Collector struct {
	mu      sync.Mutex
	packets map[webrtc.RTPCodecType][]*rtp.Packet
	Tracks  chan *webrtc.TrackRemote
}

// Collect reads every track that arrives on pc.
func Collect(pc *webrtc.PeerConnection) *Collector {
	c := &Collector{packets: map[webrtc.RTPCodecType][]*rtp.Packet{}, Tracks: make(chan *webrtc.TrackRemote, 16)}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		select {
		case c.Tracks <- tr:
		default:
		}
		for {
			pkt, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			c.mu.Lock()
			c.packets[tr.Kind()] = append(c.packets[tr.Kind()], pkt)
			c.mu.Unlock()
		}
	})
	return c
}

// Packets returns a copy of what arrived of a kind.
func (c *Collector) Packets(kind webrtc.RTPCodecType) []*rtp.Packet {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*rtp.Packet(nil), c.packets[kind]...)
}

// Count is how many packets of a kind arrived.
func (c *Collector) Count(kind webrtc.RTPCodecType) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.packets[kind])
}

// VanishingConn is a client socket that can stop sending without a word,
// as a phone does when it loses its network.
type VanishingConn struct {
	net.PacketConn
	Gone atomic.Bool
}

func (c *VanishingConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if c.Gone.Load() {
		return len(b), nil
	}
	return c.PacketConn.WriteTo(b, addr)
}

// lossyConn loses chosen RTP packets on the wire, in both directions, each
// once: their retransmissions get through. The RTP header is not encrypted
// by SRTP, so the sequence number can be read here, below DTLS and SRTP.
type lossyConn struct {
	net.PacketConn
	drop    func(seq uint16) bool
	wire    func(datagram []byte, dropped bool)
	mu      sync.Mutex
	dropped map[uint64]bool
}

func (c *lossyConn) lose(b []byte) bool {
	// RTP, not RTCP (payload types 192..223 with the marker bit) nor
	// STUN or DTLS.
	if len(b) < 12 || b[0]>>6 != 2 || (b[1] >= 192 && b[1] <= 223) {
		return false
	}
	seq := uint16(b[2])<<8 | uint16(b[3])
	key := uint64(b[8])<<56 | uint64(b[9])<<48 | uint64(b[10])<<40 | uint64(b[11])<<32 | uint64(seq)
	c.mu.Lock()
	defer c.mu.Unlock()
	lost := !c.dropped[key] && c.drop(seq)
	if lost {
		c.dropped[key] = true
	}
	if c.wire != nil {
		c.wire(b, lost)
	}
	return lost
}

func (c *lossyConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(b)
		if err != nil || !c.lose(b[:n]) {
			return n, addr, err
		}
	}
}

func (c *lossyConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if c.lose(b) {
		return len(b), nil
	}
	return c.PacketConn.WriteTo(b, addr)
}
