package loadgen

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// echoServer is a minimal WHIP/WHEP forwarder for testing the generator
// without avs-server: one publisher per room, any number of players, media
// copied from the one to the others with pion's static tracks.
type echoServer struct {
	t     *testing.T
	api   *webrtc.API
	codec webrtc.RTPCodecCapability

	mu       sync.Mutex
	rooms    map[string]*echoRoom
	sessions map[string]*webrtc.PeerConnection
	next     int
}

type echoRoom struct {
	audio, video *webrtc.TrackLocalStaticRTP
	mu           sync.Mutex
	publisher    *webrtc.PeerConnection
	videoSSRC    uint32
}

func newEchoServer(t *testing.T, codec webrtc.RTPCodecCapability) *echoServer {
	var se webrtc.SettingEngine
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	if err := webrtc.ConfigureSimulcastExtensionHeaders(me); err != nil {
		t.Fatal(err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.ConfigureNack(me, ir); err != nil {
		t.Fatal(err)
	}
	return &echoServer{
		t:        t,
		api:      webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir)),
		codec:    codec,
		rooms:    map[string]*echoRoom{},
		sessions: map[string]*webrtc.PeerConnection{},
	}
}

func (s *echoServer) room(name string) *echoRoom {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.rooms[name]
	if !ok {
		a, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", name)
		if err != nil {
			s.t.Error(err)
		}
		v, err := webrtc.NewTrackLocalStaticRTP(s.codec, "video", name)
		if err != nil {
			s.t.Error(err)
		}
		r = &echoRoom{audio: a, video: v}
		s.rooms[name] = r
	}
	return r
}

func (s *echoServer) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	parts := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
	if req.Header.Get("Authorization") != "Bearer test-token" {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	switch {
	case req.Method == http.MethodPost && len(parts) == 2 && (parts[0] == "whip" || parts[0] == "whep"):
		s.negotiate(w, req, parts[0] == "whip", parts[1])
	case req.Method == http.MethodDelete && len(parts) == 3:
		s.mu.Lock()
		pc := s.sessions[parts[2]]
		delete(s.sessions, parts[2])
		s.mu.Unlock()
		if pc == nil {
			http.NotFound(w, req)
			return
		}
		_ = pc.Close()
		w.WriteHeader(http.StatusOK)
	default:
		http.NotFound(w, req)
	}
}

func (s *echoServer) negotiate(w http.ResponseWriter, req *http.Request, publish bool, roomName string) {
	offer, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	pc, err := s.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	room := s.room(roomName)
	if publish {
		s.setupPublisher(pc, room)
	} else if err := s.setupPlayer(pc, room); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: string(offer)}); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	<-gathered
	s.mu.Lock()
	s.next++
	id := fmt.Sprint(s.next)
	s.sessions[id] = pc
	s.mu.Unlock()
	kind := "whep"
	if publish {
		kind = "whip"
	}
	w.Header().Set("Content-Type", "application/sdp")
	w.Header().Set("Location", "/"+kind+"/"+roomName+"/"+id)
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, pc.LocalDescription().SDP)
}

func (s *echoServer) setupPublisher(pc *webrtc.PeerConnection, room *echoRoom) {
	room.mu.Lock()
	room.publisher = pc
	room.mu.Unlock()
	pc.OnTrack(func(track *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		out := room.audio
		if track.Kind() == webrtc.RTPCodecTypeVideo {
			if track.RID() != "" && track.RID() != "h" {
				for { // drain the layers this server does not forward
					if _, _, err := track.ReadRTP(); err != nil {
						return
					}
				}
			}
			out = room.video
			room.mu.Lock()
			room.videoSSRC = uint32(track.SSRC())
			room.mu.Unlock()
			room.requestKeyframe()
		}
		buf := make([]byte, 1500)
		for {
			n, _, err := track.Read(buf)
			if err != nil {
				return
			}
			if _, err := out.Write(buf[:n]); err != nil {
				return
			}
		}
	})
}

func (r *echoRoom) requestKeyframe() {
	r.mu.Lock()
	pc, ssrc := r.publisher, r.videoSSRC
	r.mu.Unlock()
	if pc != nil && ssrc != 0 {
		_ = pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}})
	}
}

func (s *echoServer) setupPlayer(pc *webrtc.PeerConnection, room *echoRoom) error {
	for _, track := range []*webrtc.TrackLocalStaticRTP{room.audio, room.video} {
		sender, err := pc.AddTrack(track)
		if err != nil {
			return err
		}
		go func() {
			for {
				pkts, _, err := sender.ReadRTCP()
				if err != nil {
					return
				}
				for _, p := range pkts {
					if _, ok := p.(*rtcp.PictureLossIndication); ok {
						room.requestKeyframe()
					}
				}
			}
		}()
	}
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		if st == webrtc.PeerConnectionStateConnected {
			room.requestKeyframe()
		}
	})
	return nil
}

func (s *echoServer) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, pc := range s.sessions {
		_ = pc.Close()
		delete(s.sessions, id)
	}
}

func startEcho(t *testing.T, codec webrtc.RTPCodecCapability) string {
	t.Helper()
	echo := newEchoServer(t, codec)
	srv := httptest.NewServer(echo)
	t.Cleanup(func() { srv.Close(); echo.close() })
	return srv.URL
}
