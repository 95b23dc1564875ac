// Package dtlssrtp recovers the SRTP keys of a DTLS-SRTP handshake from what
// the SFU can see of it, so that incoming SRTP can be decrypted in the
// socket's read goroutine instead of behind pion's goroutine chain.
//
// pion/webrtc keeps the keys it derives to itself, but two things it does
// not hide are enough to derive them again. The DTLS key log (see
// webrtc.SettingEngine.SetDTLSKeyLogWriter) gives the client random and the
// master secret of each DTLS 1.2 handshake, one line per handshake; the
// hellos travel in clear (epoch 0) over the very socket the SFU reads, and
// give the server random, the cipher suite (which picks the PRF hash) and
// the SRTP protection profile (which picks the key and salt lengths).
//
// The intended use is: pass every DTLS datagram of an association to Scan
// until both hellos were seen, pair the ClientHello's random with the
// matching line given to ParseKeyLog, and call Derive. The result is the
// RFC 5705 exporter output for the label "EXTRACTOR-dtls_srtp", split as
// RFC 5764 §4.2 lays it out, which is what pion itself feeds to its SRTP
// contexts.
//
// Only DTLS 1.2 is handled: DTLS 1.3 hides the ServerHello's extensions
// and logs different secrets, and pion does not speak DTLS 1.0.
package dtlssrtp

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/pion/dtls/v3/pkg/crypto/prf"
	"github.com/pion/srtp/v3"
)

// Sentinel errors a caller may want to tell apart.
var (
	// ErrCipherSuite is returned by Derive for a suite whose PRF hash is not known.
	ErrCipherSuite = errors.New("dtlssrtp: unknown cipher suite")
	// ErrProfile is returned by Derive for profile 0 or an unknown profile.
	ErrProfile = errors.New("dtlssrtp: no usable SRTP protection profile")
	// ErrMasterSecret is returned by Derive when the master secret is not 48 bytes.
	ErrMasterSecret = errors.New("dtlssrtp: master secret must be 48 bytes")
	// ErrKeyLogLabel is returned by ParseKeyLog for a line that is not a
	// DTLS 1.2 CLIENT_RANDOM line; such lines are not errors of the writer.
	ErrKeyLogLabel = errors.New("dtlssrtp: key log line is not CLIENT_RANDOM")
	// ErrKeyLogFormat is returned by ParseKeyLog for a malformed line.
	ErrKeyLogFormat = errors.New("dtlssrtp: malformed key log line")
)

const (
	exporterLabel    = "EXTRACTOR-dtls_srtp"
	keyLogLabel      = "CLIENT_RANDOM"
	masterSecretSize = 48

	contentHandshake   = 22
	recordHeaderSize   = 13
	handshakeHeadSize  = 12
	msgClientHello     = 1
	msgServerHello     = 2
	versionDTLS12      = 0xfefd
	extensionUseSRTP   = 14
	helloFixedPrefix   = 2 + 32 // version, random
	serverHelloMinBody = helloFixedPrefix + 1 + 2 + 1
)

// Hello is what one datagram's handshake records show.
type Hello struct {
	HasClientHello bool
	ClientRandom   [32]byte // of a ClientHello
	HasServerHello bool
	ServerRandom   [32]byte
	CipherSuite    uint16
	Profile        srtp.ProtectionProfile // 0 when the ServerHello has no usable use_srtp (absent, or with an MKI)
}

// Scan reads the DTLS records of one datagram (a datagram may hold several
// records) and reports the ClientHello and ServerHello found in epoch-0,
// unfragmented handshake records (fragment_offset 0 and fragment_length ==
// length). It never panics on any input and does not retain datagram. ok is
// false when neither hello is found.
//
// Fragmented hellos are not reassembled: pion and browsers send them whole
// at WebRTC MTUs, and a miss only costs the fast path, not correctness.
// Only the first hello of each kind counts. A ServerHello is only reported
// for DTLS 1.2, the only version Derive's arithmetic is right for. Walking
// stops at a record whose header is not the plain DTLS 1.2 one (a
// connection-ID or DTLS 1.3 record), since its length cannot be found;
// such records are never in epoch 0.
func Scan(datagram []byte) (h Hello, ok bool) {
	rest := datagram
	for len(rest) >= recordHeaderSize {
		contentType := rest[0]
		if contentType < 20 || contentType > 24 {
			break
		}
		epoch := binary.BigEndian.Uint16(rest[3:5])
		n := int(binary.BigEndian.Uint16(rest[11:13]))
		if len(rest)-recordHeaderSize < n {
			break
		}
		fragment := rest[recordHeaderSize : recordHeaderSize+n]
		rest = rest[recordHeaderSize+n:]
		if contentType == contentHandshake && epoch == 0 {
			scanHandshakes(fragment, &h)
		}
	}
	return h, h.HasClientHello || h.HasServerHello
}

// scanHandshakes walks the handshake messages of one record's fragment.
func scanHandshakes(b []byte, h *Hello) {
	for len(b) >= handshakeHeadSize {
		msgType := b[0]
		length := uint24(b[1:4])
		offset := uint24(b[6:9])
		fragLen := uint24(b[9:12])
		if len(b)-handshakeHeadSize < fragLen {
			return
		}
		body := b[handshakeHeadSize : handshakeHeadSize+fragLen]
		b = b[handshakeHeadSize+fragLen:]
		if offset != 0 || fragLen != length {
			continue
		}
		switch {
		case msgType == msgClientHello && !h.HasClientHello:
			if len(body) >= helloFixedPrefix {
				copy(h.ClientRandom[:], body[2:helloFixedPrefix])
				h.HasClientHello = true
			}
		case msgType == msgServerHello && !h.HasServerHello:
			parseServerHello(body, h)
		}
	}
}

func parseServerHello(body []byte, h *Hello) {
	if len(body) < serverHelloMinBody || binary.BigEndian.Uint16(body) != versionDTLS12 {
		return
	}
	sessionIDLen := int(body[helloFixedPrefix])
	p := helloFixedPrefix + 1 + sessionIDLen
	if len(body) < p+3 {
		return
	}
	h.HasServerHello = true
	copy(h.ServerRandom[:], body[2:helloFixedPrefix])
	h.CipherSuite = binary.BigEndian.Uint16(body[p:])
	h.Profile = useSRTPProfile(body[p+3:])
}

// useSRTPProfile finds the profile in a ServerHello's extensions block
// (which may be absent). Anything malformed counts as no use_srtp: pion
// would have failed the handshake on it anyway.
func useSRTPProfile(b []byte) srtp.ProtectionProfile {
	if len(b) < 2 {
		return 0
	}
	total := int(binary.BigEndian.Uint16(b))
	if len(b)-2 < total {
		return 0
	}
	exts := b[2 : 2+total]
	for len(exts) >= 4 {
		typ := binary.BigEndian.Uint16(exts)
		n := int(binary.BigEndian.Uint16(exts[2:]))
		if len(exts)-4 < n {
			return 0
		}
		data := exts[4 : 4+n]
		exts = exts[4+n:]
		if typ != extensionUseSRTP {
			continue
		}
		// profiles length (always 2 in a ServerHello), profile, empty MKI.
		// A non-empty MKI would prefix every SRTP packet's tag, which the
		// keys alone do not cover.
		if len(data) != 5 || binary.BigEndian.Uint16(data) != 2 || data[4] != 0 {
			return 0
		}
		return srtp.ProtectionProfile(binary.BigEndian.Uint16(data[2:]))
	}
	return 0
}

func uint24(b []byte) int {
	return int(b[0])<<16 | int(b[1])<<8 | int(b[2])
}

// ParseKeyLog parses one key-log line as pion writes it ("CLIENT_RANDOM
// <64 hex> <96 hex>\n", trailing newline optional). Other labels or
// malformed lines return an error.
//
// Other labels get ErrKeyLogLabel so that a caller reading a shared log can
// skip them quietly while still noticing corrupted CLIENT_RANDOM lines.
func ParseKeyLog(line []byte) (clientRandom [32]byte, masterSecret []byte, err error) {
	line = bytes.TrimSuffix(line, []byte("\n"))
	fields := bytes.Split(line, []byte(" "))
	if len(line) == 0 {
		return clientRandom, nil, fmt.Errorf("%w: empty line", ErrKeyLogFormat)
	}
	if string(fields[0]) != keyLogLabel {
		return clientRandom, nil, ErrKeyLogLabel
	}
	if len(fields) != 3 {
		return clientRandom, nil, fmt.Errorf("%w: %d fields, want 3", ErrKeyLogFormat, len(fields))
	}
	if len(fields[1]) != 2*len(clientRandom) {
		return clientRandom, nil, fmt.Errorf("%w: client random is %d hex digits, want %d",
			ErrKeyLogFormat, len(fields[1]), 2*len(clientRandom))
	}
	if len(fields[2]) != 2*masterSecretSize {
		return clientRandom, nil, fmt.Errorf("%w: master secret is %d hex digits, want %d",
			ErrKeyLogFormat, len(fields[2]), 2*masterSecretSize)
	}
	if _, err := hex.Decode(clientRandom[:], fields[1]); err != nil {
		return [32]byte{}, nil, fmt.Errorf("%w: client random: %w", ErrKeyLogFormat, err)
	}
	masterSecret = make([]byte, masterSecretSize)
	if _, err := hex.Decode(masterSecret, fields[2]); err != nil {
		return [32]byte{}, nil, fmt.Errorf("%w: master secret: %w", ErrKeyLogFormat, err)
	}
	return clientRandom, masterSecret, nil
}

// Keys is the SRTP keying material of one association.
type Keys struct {
	Profile               srtp.ProtectionProfile
	ClientKey, ClientSalt []byte
	ServerKey, ServerSalt []byte
}

// Derive computes the keying material. Errors: unknown cipher suite,
// profile 0 / unknown profile, master secret not 48 bytes.
//
// The four slices share one backing array but are capped, so appending to
// one cannot overwrite another.
func Derive(masterSecret []byte, clientRandom, serverRandom [32]byte, cipherSuite uint16, profile srtp.ProtectionProfile) (Keys, error) {
	if len(masterSecret) != masterSecretSize {
		return Keys{}, fmt.Errorf("%w: got %d", ErrMasterSecret, len(masterSecret))
	}
	hash, err := prfHash(cipherSuite)
	if err != nil {
		return Keys{}, err
	}
	if profile == 0 {
		return Keys{}, ErrProfile
	}
	keyLen, err := profile.KeyLen()
	if err != nil {
		return Keys{}, fmt.Errorf("%w: %w", ErrProfile, err)
	}
	saltLen, err := profile.SaltLen()
	if err != nil {
		return Keys{}, fmt.Errorf("%w: %w", ErrProfile, err)
	}

	seed := make([]byte, 0, len(exporterLabel)+2*32)
	seed = append(seed, exporterLabel...)
	seed = append(seed, clientRandom[:]...)
	seed = append(seed, serverRandom[:]...)
	m, err := prf.PHash(masterSecret, seed, 2*(keyLen+saltLen), hash)
	if err != nil {
		return Keys{}, fmt.Errorf("dtlssrtp: exporter: %w", err)
	}

	k1, k2, s1 := keyLen, 2*keyLen, 2*keyLen+saltLen
	return Keys{
		Profile:    profile,
		ClientKey:  m[0:k1:k1],
		ServerKey:  m[k1:k2:k2],
		ClientSalt: m[k2:s1:s1],
		ServerSalt: m[s1:],
	}, nil
}

// prfHash maps the TLS 1.2 suites pion/dtls implements to their PRF hash.
// The list is closed on purpose: a suite added to pion later may bring a
// different hash, and guessing SHA-256 would give wrong keys silently.
func prfHash(suite uint16) (prf.HashFunc, error) {
	switch suite {
	case 0xc02c, // TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
		0xc030: // TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
		return sha512.New384, nil
	case 0xc02b, // TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
		0xc02f, // TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
		0xc00a, // TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA
		0xc014, // TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA
		0xcca9, // TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
		0xcca8, // TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
		0xccab, // TLS_PSK_WITH_CHACHA20_POLY1305_SHA256
		0xccac, // TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256
		0xc0ac, // TLS_ECDHE_ECDSA_WITH_AES_128_CCM
		0xc0ae, // TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8
		0xc0a4, // TLS_PSK_WITH_AES_128_CCM
		0xc0a8, // TLS_PSK_WITH_AES_128_CCM_8
		0xc0a9, // TLS_PSK_WITH_AES_256_CCM_8
		0x00a8, // TLS_PSK_WITH_AES_128_GCM_SHA256
		0x00ae, // TLS_PSK_WITH_AES_128_CBC_SHA256
		0xc037: // TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256
		return sha256.New, nil
	}
	return nil, fmt.Errorf("%w: %#04x", ErrCipherSuite, suite)
}
