package dtlssrtp_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/pion/srtp/v3"

	"github.com/avs/avs/sfu/dtlssrtp"
)

// Builders for hand-made DTLS 1.2 datagrams.

func record(contentType byte, epoch uint16, fragment []byte) []byte {
	b := []byte{contentType, 0xfe, 0xfd}
	b = binary.BigEndian.AppendUint16(b, epoch)
	b = append(b, 0, 0, 0, 0, 0, 1) // sequence number
	b = binary.BigEndian.AppendUint16(b, uint16(len(fragment)))
	return append(b, fragment...)
}

func u24(b []byte, v int) []byte { return append(b, byte(v>>16), byte(v>>8), byte(v)) }

// message is a whole handshake message in one fragment.
func message(msgType byte, body []byte) []byte {
	return fragment(msgType, body, len(body), 0)
}

func fragment(msgType byte, part []byte, total, offset int) []byte {
	b := u24([]byte{msgType}, total)
	b = append(b, 0, 0) // message_seq
	b = u24(b, offset)
	b = u24(b, len(part))
	return append(b, part...)
}

func random(seed byte) (r [32]byte) {
	for i := range r {
		r[i] = seed + byte(i)
	}
	return r
}

func clientHello(r [32]byte) []byte {
	b := append([]byte{0xfe, 0xfd}, r[:]...)
	b = append(b, 0)                // session id
	b = append(b, 0)                // cookie
	b = append(b, 0, 2, 0xc0, 0x2b) // cipher suites
	b = append(b, 1, 0)             // compression methods
	return append(b, 0, 0)          // no extensions
}

// serverHello builds a ServerHello body; exts == nil omits the extensions block.
func serverHello(version uint16, r [32]byte, suite uint16, exts ...[]byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, version)
	b = append(b, r[:]...)
	b = append(b, 4, 9, 9, 9, 9) // session id
	b = binary.BigEndian.AppendUint16(b, suite)
	b = append(b, 0) // compression
	if exts == nil {
		return b
	}
	all := bytes.Join(exts, nil)
	b = binary.BigEndian.AppendUint16(b, uint16(len(all)))
	return append(b, all...)
}

func extension(typ uint16, data []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, typ)
	b = binary.BigEndian.AppendUint16(b, uint16(len(data)))
	return append(b, data...)
}

func useSRTP(mki []byte, profiles ...uint16) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(2*len(profiles)))
	for _, p := range profiles {
		b = binary.BigEndian.AppendUint16(b, p)
	}
	b = append(b, byte(len(mki)))
	return extension(14, append(b, mki...))
}

var (
	extRenegotiation = extension(0xff01, []byte{0})
	extEMS           = extension(23, nil)
)

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestScan(t *testing.T) {
	cr, sr := random(1), random(100)
	goodSH := serverHello(0xfefd, sr, 0xc02c, extRenegotiation, useSRTP(nil, 7), extEMS)
	goodSHRecord := record(22, 0, message(2, goodSH))
	ccs := record(20, 1, []byte{1})
	encrypted := record(22, 1, bytes.Repeat([]byte{0xa5}, 40))

	serverOnly := func(profile srtp.ProtectionProfile, suite uint16) dtlssrtp.Hello {
		return dtlssrtp.Hello{HasServerHello: true, ServerRandom: sr, CipherSuite: suite, Profile: profile}
	}
	tests := []struct {
		name     string
		datagram []byte
		want     dtlssrtp.Hello
		wantOK   bool
	}{
		{name: "nil", datagram: nil},
		{name: "garbage", datagram: []byte("GET / HTTP/1.1\r\nHost: example\r\n\r\n")},
		{name: "RTP-looking", datagram: bytes.Repeat([]byte{0x80}, 200)},
		{name: "short header", datagram: goodSHRecord[:12]},
		{name: "record truncated", datagram: goodSHRecord[:len(goodSHRecord)-1]},
		{name: "handshake header truncated", datagram: record(22, 0, message(2, goodSH)[:11])},
		{name: "body shorter than fragment_length", datagram: record(22, 0, message(2, goodSH)[:40])},
		{name: "ServerHello body too short", datagram: record(22, 0, message(2, goodSH[:36]))},
		{name: "session id runs past body", datagram: record(22, 0, message(2, goodSH[:40]))},
		{name: "ClientHello body too short", datagram: record(22, 0, message(1, clientHello(cr)[:33]))},
		{name: "epoch 1 ServerHello", datagram: record(22, 1, message(2, goodSH))},
		{name: "epoch 1 garbage", datagram: encrypted},
		{name: "not handshake content", datagram: record(23, 0, message(2, goodSH))},
		{name: "fragmented ServerHello, first part", datagram: record(22, 0, fragment(2, goodSH[:50], len(goodSH), 0))},
		{name: "fragmented ServerHello, second part", datagram: record(22, 0, fragment(2, goodSH[50:], len(goodSH), 50))},
		{name: "DTLS 1.0 ServerHello", datagram: record(22, 0, message(2, serverHello(0xfeff, sr, 0xc02b, useSRTP(nil, 1))))},
		{name: "connection-ID record stops the walk", datagram: cat(record(25, 1, []byte{1, 2, 3}), goodSHRecord)},
		{
			name:     "ClientHello",
			datagram: record(22, 0, message(1, clientHello(cr))),
			want:     dtlssrtp.Hello{HasClientHello: true, ClientRandom: cr},
			wantOK:   true,
		},
		{name: "ServerHello", datagram: goodSHRecord, want: serverOnly(7, 0xc02c), wantOK: true},
		{
			name:     "ServerHello with MKI",
			datagram: record(22, 0, message(2, serverHello(0xfefd, sr, 0xc02b, useSRTP([]byte{1, 2, 3, 4}, 1)))),
			want:     serverOnly(0, 0xc02b), wantOK: true,
		},
		{
			name:     "ServerHello without extensions",
			datagram: record(22, 0, message(2, serverHello(0xfefd, sr, 0xc02b))),
			want:     serverOnly(0, 0xc02b), wantOK: true,
		},
		{
			name:     "ServerHello without use_srtp",
			datagram: record(22, 0, message(2, serverHello(0xfefd, sr, 0xc02b, extEMS))),
			want:     serverOnly(0, 0xc02b), wantOK: true,
		},
		{
			name:     "ServerHello with two profiles",
			datagram: record(22, 0, message(2, serverHello(0xfefd, sr, 0xc02b, useSRTP(nil, 1, 7)))),
			want:     serverOnly(0, 0xc02b), wantOK: true,
		},
		{
			name:     "ServerHello with truncated extension",
			datagram: record(22, 0, message(2, serverHello(0xfefd, sr, 0xc02b, useSRTP(nil, 8)[:6]))),
			want:     serverOnly(0, 0xc02b), wantOK: true,
		},
		{
			name:     "hello in second record",
			datagram: cat(encrypted, goodSHRecord),
			want:     serverOnly(7, 0xc02c), wantOK: true,
		},
		{
			name:     "hello after change_cipher_spec and before encrypted record",
			datagram: cat(ccs, goodSHRecord, encrypted),
			want:     serverOnly(7, 0xc02c), wantOK: true,
		},
		{
			name: "ServerHello after another message in the same record",
			datagram: record(22, 0, cat(
				message(11, bytes.Repeat([]byte{3}, 30)), // certificate
				message(2, goodSH),
				message(14, nil), // server_hello_done
			)),
			want: serverOnly(7, 0xc02c), wantOK: true,
		},
		{
			name: "both hellos, first of each kind wins",
			datagram: cat(
				record(22, 0, cat(message(1, clientHello(cr)), message(1, clientHello(random(50))))),
				goodSHRecord,
				record(22, 0, message(2, serverHello(0xfefd, random(9), 0xc02b, useSRTP(nil, 1)))),
			),
			want: dtlssrtp.Hello{
				HasClientHello: true, ClientRandom: cr,
				HasServerHello: true, ServerRandom: sr, CipherSuite: 0xc02c, Profile: 7,
			},
			wantOK: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := bytes.Clone(tc.datagram)
			got, ok := dtlssrtp.Scan(tc.datagram)
			if ok != tc.wantOK || got != tc.want {
				t.Fatalf("Scan = %+v, %v; want %+v, %v", got, ok, tc.want, tc.wantOK)
			}
			if !bytes.Equal(before, tc.datagram) {
				t.Fatal("Scan modified its input")
			}
		})
	}
}

// TestScanEveryTruncation feeds every prefix of a realistic flight-2 style
// datagram; no prefix may panic or report a hello it does not fully hold.
func TestScanEveryTruncation(t *testing.T) {
	full := cat(
		record(22, 0, message(2, serverHello(0xfefd, random(3), 0xc02b, extRenegotiation, useSRTP(nil, 1)))),
		record(22, 0, message(11, bytes.Repeat([]byte{3}, 60))),
	)
	firstLen := len(full) - (13 + 12 + 60)
	for n := range len(full) {
		h, ok := dtlssrtp.Scan(full[:n])
		if wantOK := n >= firstLen; ok != wantOK {
			t.Fatalf("prefix %d: ok = %v (%+v), want %v", n, ok, h, wantOK)
		}
	}
}

func TestParseKeyLog(t *testing.T) {
	cr := random(0x40)
	secret := bytes.Repeat([]byte{0xab}, 48)
	good := "CLIENT_RANDOM 404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f " +
		strings.Repeat("ab", 48)

	tests := []struct {
		name    string
		line    string
		wantErr error
	}{
		{name: "good with newline", line: good + "\n"},
		{name: "good without newline", line: good},
		{name: "upper-case hex", line: "CLIENT_RANDOM" + strings.ToUpper(good[len("CLIENT_RANDOM"):]) + "\n"},
		{name: "TLS 1.3 label", line: "CLIENT_HANDSHAKE_TRAFFIC_SECRET" + good[len("CLIENT_RANDOM"):], wantErr: dtlssrtp.ErrKeyLogLabel},
		{name: "lower-case label", line: "client_random" + good[len("CLIENT_RANDOM"):], wantErr: dtlssrtp.ErrKeyLogLabel},
		{name: "empty", line: "", wantErr: dtlssrtp.ErrKeyLogFormat},
		{name: "label only", line: "CLIENT_RANDOM\n", wantErr: dtlssrtp.ErrKeyLogFormat},
		{name: "bad hex in random", line: "CLIENT_RANDOM zz" + good[len("CLIENT_RANDOM 40"):], wantErr: dtlssrtp.ErrKeyLogFormat},
		{name: "bad hex in secret", line: good[:len(good)-2] + "g0", wantErr: dtlssrtp.ErrKeyLogFormat},
		{name: "short random", line: "CLIENT_RANDOM 4041 " + strings.Repeat("ab", 48), wantErr: dtlssrtp.ErrKeyLogFormat},
		{name: "long secret", line: good + "abab", wantErr: dtlssrtp.ErrKeyLogFormat},
		{name: "short secret", line: good[:len(good)-2], wantErr: dtlssrtp.ErrKeyLogFormat},
		{name: "extra field", line: good + " x", wantErr: dtlssrtp.ErrKeyLogFormat},
		{name: "double space", line: strings.Replace(good, " ", "  ", 1), wantErr: dtlssrtp.ErrKeyLogFormat},
		{name: "two lines", line: good + "\n" + good + "\n", wantErr: dtlssrtp.ErrKeyLogFormat},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			gotRandom, gotSecret, err := dtlssrtp.ParseKeyLog([]byte(tc.line))
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if gotRandom != cr || !bytes.Equal(gotSecret, secret) {
				t.Fatalf("got %x %x, want %x %x", gotRandom, gotSecret, cr, secret)
			}
		})
	}
}

func TestDeriveErrors(t *testing.T) {
	secret := make([]byte, 48)
	var cr, sr [32]byte
	tests := []struct {
		name    string
		secret  []byte
		suite   uint16
		profile srtp.ProtectionProfile
		wantErr error
	}{
		{name: "unknown suite", secret: secret, suite: 0x1301, profile: 1, wantErr: dtlssrtp.ErrCipherSuite},
		{name: "null suite", secret: secret, suite: 0, profile: 1, wantErr: dtlssrtp.ErrCipherSuite},
		{name: "profile 0", secret: secret, suite: 0xc02b, profile: 0, wantErr: dtlssrtp.ErrProfile},
		{name: "unknown profile", secret: secret, suite: 0xc02b, profile: 0x0042, wantErr: dtlssrtp.ErrProfile},
		{name: "short secret", secret: secret[:47], suite: 0xc02b, profile: 1, wantErr: dtlssrtp.ErrMasterSecret},
		{name: "no secret", secret: nil, suite: 0xc02b, profile: 1, wantErr: dtlssrtp.ErrMasterSecret},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			keys, err := dtlssrtp.Derive(tc.secret, cr, sr, tc.suite, tc.profile)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if keys.ClientKey != nil || keys.Profile != 0 {
				t.Fatalf("keys returned with an error: %+v", keys)
			}
		})
	}
}

// TestDeriveSlicesIndependent guards the documented promise that appending
// to one returned slice leaves the others alone.
func TestDeriveSlicesIndependent(t *testing.T) {
	keys, err := dtlssrtp.Derive(make([]byte, 48), random(1), random(2), 0xc02b, srtp.ProtectionProfileAeadAes128Gcm)
	if err != nil {
		t.Fatal(err)
	}
	serverKey, clientSalt := bytes.Clone(keys.ServerKey), bytes.Clone(keys.ClientSalt)
	_ = append(keys.ClientKey, 0xff, 0xff)
	_ = append(keys.ServerKey, bytes.Repeat([]byte{0xff}, 12)...)
	if !bytes.Equal(serverKey, keys.ServerKey) || !bytes.Equal(clientSalt, keys.ClientSalt) {
		t.Fatal("appending to one slice overwrote another")
	}
}

func FuzzScan(f *testing.F) {
	sh := serverHello(0xfefd, random(1), 0xc02b, extRenegotiation, useSRTP(nil, 1), extEMS)
	f.Add([]byte{})
	f.Add(record(22, 0, message(1, clientHello(random(5)))))
	f.Add(record(22, 0, message(2, sh)))
	f.Add(cat(record(20, 1, []byte{1}), record(22, 0, cat(message(11, []byte{1, 2}), message(2, sh)))))
	f.Add(record(22, 0, message(2, serverHello(0xfefd, random(1), 0xc02c, useSRTP([]byte{9}, 8)))))
	f.Add(record(22, 0, fragment(2, sh[:20], len(sh), 0)))
	f.Fuzz(func(t *testing.T, datagram []byte) {
		before := bytes.Clone(datagram)
		h, ok := dtlssrtp.Scan(datagram)
		if ok != (h.HasClientHello || h.HasServerHello) {
			t.Fatalf("ok = %v for %+v", ok, h)
		}
		if !h.HasServerHello && (h.CipherSuite != 0 || h.Profile != 0 || h.ServerRandom != [32]byte{}) {
			t.Fatalf("ServerHello fields set without a ServerHello: %+v", h)
		}
		if !h.HasClientHello && h.ClientRandom != [32]byte{} {
			t.Fatalf("ClientRandom set without a ClientHello: %+v", h)
		}
		if !bytes.Equal(before, datagram) {
			t.Fatal("Scan modified its input")
		}
	})
}
