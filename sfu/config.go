package sfu

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Config is the [sfu] section of config.toml.
type Config struct {
	// UDPListen is the one UDP address that carries all WebRTC media (ICE UDP mux).
	UDPListen string `toml:"udp_listen"`
	// TCPListen is the ICE-TCP address for clients whose UDP is blocked; empty disables it.
	TCPListen string `toml:"tcp_listen"`
	// PublicIPs are announced as host candidates instead of the local
	// addresses, for a server behind 1:1 NAT.
	PublicIPs []string `toml:"public_ips"`
	// VideoCodecs lists the video codecs offered, in order of preference.
	VideoCodecs []string `toml:"video_codecs"`
	// PLIInterval is the least time between two keyframe requests sent to one publisher layer.
	PLIInterval time.Duration `toml:"pli_interval"`
	// MaxTracksPerParticipant bounds the media sections a participant may publish.
	MaxTracksPerParticipant int `toml:"max_tracks_per_participant"`
	// MaxParticipantsPerRoom bounds a room.
	MaxParticipantsPerRoom int `toml:"max_participants_per_room"`
	// NACKHistory is how much of each track is kept to answer NACKs; the
	// memory it takes follows the track's bitrate.
	NACKHistory time.Duration `toml:"nack_history"`
	// VideoCacheSize and AudioCacheSize bound the packets kept per track.
	// Browsers do not NACK Opus (no nack feedback is offered for it), so
	// the audio cache only serves clients that do.
	VideoCacheSize int `toml:"video_cache_packets"`
	AudioCacheSize int `toml:"audio_cache_packets"`
	// ICEDisconnectedTimeout and ICEFailedTimeout decide when a silent peer is
	// given up; between them a client can still restart ICE.
	ICEDisconnectedTimeout time.Duration `toml:"ice_disconnected_timeout"`
	ICEFailedTimeout       time.Duration `toml:"ice_failed_timeout"`
	// InitialBitrate and MaxBitrate bound each subscriber's bandwidth estimate, in bit/s.
	InitialBitrate int `toml:"initial_bitrate"`
	MaxBitrate     int `toml:"max_bitrate"`
	// FastPath decrypts publishers' RTP in the media socket's reader and
	// forwards it from there (package fastpath) instead of passing it
	// through pion's chain of goroutines. Off, pion does it all.
	FastPath bool `toml:"fast_path"`
	// UDPReaders is how many sockets, each with its own reader, share each
	// media address (SO_REUSEPORT, Linux only) when the fast path is on:
	// the fast path forwards in the reader, so this is how many cores
	// forwarding can use. 0 is one per CPU the process may use.
	UDPReaders int `toml:"udp_readers"`
}

// DefaultConfig returns the settings used when config.toml says nothing.
func DefaultConfig() Config {
	return Config{
		UDPListen:               ":7882",
		TCPListen:               ":7881",
		VideoCodecs:             []string{"VP8", "H264", "VP9"},
		PLIInterval:             500 * time.Millisecond,
		MaxTracksPerParticipant: 8,
		MaxParticipantsPerRoom:  16,
		NACKHistory:             time.Second,
		VideoCacheSize:          512,
		AudioCacheSize:          16,
		ICEDisconnectedTimeout:  5 * time.Second,
		ICEFailedTimeout:        25 * time.Second,
		InitialBitrate:          1_000_000,
		MaxBitrate:              4_000_000,
		FastPath:                true,
	}
}

var knownVideoCodecs = []string{"VP8", "VP9", "H264"}

// Validate reports the first invalid setting, named as in config.toml.
func (c Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.UDPListen); err != nil {
		return fmt.Errorf("sfu.udp_listen: %q is not host:port: %w", c.UDPListen, err)
	}
	if c.TCPListen != "" {
		if _, _, err := net.SplitHostPort(c.TCPListen); err != nil {
			return fmt.Errorf("sfu.tcp_listen: %q is not host:port: %w", c.TCPListen, err)
		}
	}
	for _, ip := range c.PublicIPs {
		if _, err := netip.ParseAddr(ip); err != nil {
			return fmt.Errorf("sfu.public_ips: %q is not an IP address", ip)
		}
	}
	if len(c.VideoCodecs) == 0 {
		return fmt.Errorf("sfu.video_codecs: at least one of %s is needed", strings.Join(knownVideoCodecs, ", "))
	}
	for _, name := range c.VideoCodecs {
		if !slices.Contains(knownVideoCodecs, strings.ToUpper(name)) {
			return fmt.Errorf("sfu.video_codecs: unknown codec %q (known: %s)", name, strings.Join(knownVideoCodecs, ", "))
		}
	}
	switch {
	case c.PLIInterval < 50*time.Millisecond:
		return fmt.Errorf("sfu.pli_interval: %s is below 50ms", c.PLIInterval)
	case c.MaxTracksPerParticipant < 1 || c.MaxTracksPerParticipant > 32:
		return fmt.Errorf("sfu.max_tracks_per_participant: %d is outside 1..32", c.MaxTracksPerParticipant)
	case c.MaxParticipantsPerRoom < 2:
		return fmt.Errorf("sfu.max_participants_per_room: %d is below 2", c.MaxParticipantsPerRoom)
	case c.UDPReaders < 0 || c.UDPReaders > 256:
		return fmt.Errorf("sfu.udp_readers: %d is outside 0..256", c.UDPReaders)
	case c.NACKHistory < 100*time.Millisecond || c.NACKHistory > 10*time.Second:
		return fmt.Errorf("sfu.nack_history: %s is outside 100ms..10s", c.NACKHistory)
	case c.VideoCacheSize < 16 || c.VideoCacheSize > 32768:
		return fmt.Errorf("sfu.video_cache_packets: %d is outside 16..32768", c.VideoCacheSize)
	case c.AudioCacheSize < 16 || c.AudioCacheSize > 32768:
		return fmt.Errorf("sfu.audio_cache_packets: %d is outside 16..32768", c.AudioCacheSize)
	case c.ICEDisconnectedTimeout <= 0:
		return fmt.Errorf("sfu.ice_disconnected_timeout: must be > 0")
	case c.ICEFailedTimeout <= c.ICEDisconnectedTimeout:
		return fmt.Errorf("sfu.ice_failed_timeout: must be longer than ice_disconnected_timeout")
	case c.InitialBitrate < 30_000 || c.InitialBitrate > c.MaxBitrate:
		return fmt.Errorf("sfu.initial_bitrate: %d must be between 30000 and max_bitrate", c.InitialBitrate)
	}
	return nil
}
