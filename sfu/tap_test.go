package sfu

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/pion/transport/v5/packetio"
)

func TestStreamTapClaim(t *testing.T) {
	tests := []struct {
		name      string
		queued    int    // packets written before the claim
		readAhead int    // of those, taken out by pion before the reader saw them
		delivered uint64 // packets the reader has handled
		closed    bool
		wantClaim bool
		wantOrder []byte // first bytes the handler sees, queued ones then a later write
	}{
		{name: "nothing queued", wantClaim: true, wantOrder: []byte{100}},
		{name: "queued packets go first", queued: 3, wantClaim: true, wantOrder: []byte{0, 1, 2, 100}},
		{name: "read-ahead not yet delivered", queued: 3, readAhead: 1, delivered: 0, wantClaim: false},
		{name: "read-ahead delivered", queued: 3, readAhead: 2, delivered: 2, wantClaim: true, wantOrder: []byte{2, 100}},
		{name: "closed", closed: true, wantClaim: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tap := newStreamTap(rtpQueueLimit)
			for i := range tt.queued {
				if _, err := tap.Write([]byte{byte(i), 0xaa}); err != nil {
					t.Fatal(err)
				}
			}
			buf := make([]byte, 16)
			for range tt.readAhead {
				if _, err := tap.Read(buf); err != nil {
					t.Fatal(err)
				}
			}
			if tt.closed {
				_ = tap.Close()
			}
			var got []byte
			claimed := tap.claim(tt.delivered, func(pkt []byte) { got = append(got, pkt[0]) })
			if claimed != tt.wantClaim {
				t.Fatalf("claim = %v, want %v", claimed, tt.wantClaim)
			}
			if !claimed {
				return
			}
			if _, err := tap.Write([]byte{100, 0xaa}); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.wantOrder) {
				t.Fatalf("handler saw %v, want %v", got, tt.wantOrder)
			}
		})
	}
}

func TestStreamTapQueueCopiesAndEnds(t *testing.T) {
	tap := newStreamTap(rtpQueueLimit)
	pkt := []byte{1, 2, 3}
	if _, err := tap.Write(pkt); err != nil {
		t.Fatal(err)
	}
	pkt[0] = 9 // the session reuses its buffer after Write
	if _, err := tap.Read(make([]byte, 2)); !errors.Is(err, io.ErrShortBuffer) {
		t.Fatalf("short read: %v, want io.ErrShortBuffer", err)
	}
	buf := make([]byte, 8)
	n, err := tap.Read(buf)
	if err != nil || !bytes.Equal(buf[:n], []byte{1, 2, 3}) {
		t.Fatalf("Read = %v %v, want the bytes as written", buf[:n], err)
	}

	read := make(chan error, 1)
	go func() {
		_, err := tap.Read(buf)
		read <- err
	}()
	_ = tap.Close()
	if err := <-read; !errors.Is(err, io.EOF) {
		t.Fatalf("Read after Close: %v, want io.EOF", err)
	}
	select {
	case <-tap.Done():
	default:
		t.Fatal("Done not closed")
	}
	if _, err := tap.Write(pkt); err == nil {
		t.Fatal("Write after Close succeeded")
	}
	if err := tap.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestStreamTapQueueLimit(t *testing.T) {
	tap := newStreamTap(rtpQueueLimit)
	pkt := make([]byte, 1200)
	var err error
	for i := 0; i <= rtpQueueLimit/len(pkt) && err == nil; i++ {
		_, err = tap.Write(pkt)
	}
	if !errors.Is(err, packetio.ErrFull) {
		t.Fatalf("writing past the limit: %v, want packetio.ErrFull", err)
	}
}

func TestTapSetFindsOwnStreams(t *testing.T) {
	s := newTapSet()
	rtp := s.bufferFactory(packetio.RTPBufferPacket, 42)
	if s.find(42) != rtp {
		t.Fatal("RTP stream's tap not found by SSRC")
	}
	_ = rtp.Close()
	if s.find(42) != nil {
		t.Fatal("closed tap still found")
	}
}

func TestTapSetRTCPHandlers(t *testing.T) {
	tests := []struct {
		name          string
		handlerFirst  bool // the handler is known before pion opens the stream
		queuedEarlier int  // RTCP that arrived between the stream's opening and the handler
	}{
		{name: "handler before the stream", handlerFirst: true},
		{name: "stream before the handler", queuedEarlier: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTapSet()
			var got []byte
			handler := func(pkt []byte) { got = append(got, pkt[0]) }
			if tt.handlerFirst {
				s.handleRTCP(7, handler)
			}
			stream := s.bufferFactory(packetio.RTCPBufferPacket, 7)
			if s.find(7) != nil {
				t.Fatal("an RTCP tap was taken for the RTP stream of the same SSRC")
			}
			for i := range tt.queuedEarlier {
				_, _ = stream.Write([]byte{byte(i)})
			}
			if !tt.handlerFirst {
				s.handleRTCP(7, handler)
			}
			_, _ = stream.Write([]byte{9})
			want := []byte{}
			for i := range tt.queuedEarlier {
				want = append(want, byte(i))
			}
			want = append(want, 9)
			if !bytes.Equal(got, want) {
				t.Fatalf("handler saw %v, want %v", got, want)
			}
			other := s.bufferFactory(packetio.RTCPBufferPacket, 8)
			_, _ = other.Write([]byte{1})
			if len(got) != len(want) {
				t.Fatal("the handler of SSRC 7 saw RTCP of SSRC 8")
			}
		})
	}
}
