// Package fastpath decrypts incoming SRTP in the goroutine that reads the
// media socket and hands it straight to the SFU, for the streams the SFU
// has taken over; everything else goes on to pion as before.
//
// Through pion a media packet passes four goroutines before the SFU sees
// it: the UDP mux's reader, the ICE candidate's reader, the DTLS/SRTP
// demultiplexer and the SRTP session, each behind a buffer with a lock, a
// copy and a wake-up. At 40 calls that chain cost a third of the server's
// CPU. Pion keeps its SRTP keys to itself, so this package recovers them
// the way a packet analyser does: pion writes each handshake's master
// secret to the key-log writer the SFU gives it (a Session, one per
// PeerConnection), and the server random, cipher suite and SRTP profile
// come from the ServerHello, which crosses the socket in clear. Package
// dtlssrtp turns these into the SRTP keys.
//
// The shortcut is strictly an optimisation: a packet it cannot decrypt
// (no keys yet, an unknown stream, a rollover counter it guessed wrong)
// goes to pion untouched, and pion handles it as if this package did not
// exist; a stream that fails 16 times in a row is left to pion for good,
// so forged packets can do no more than make a stream cost what it costs
// without the shortcut. Only RTP is taken; RTCP, STUN and DTLS always go to pion. Nothing
// is ever encrypted here, so no key is used for sending by two parties.
package fastpath
