package sfu

import "testing"

func TestIsKeyframe(t *testing.T) {
	tests := []struct {
		name    string
		mime    string
		payload []byte
		want    bool
	}{
		{"vp8 key, no extension", mimeVP8, []byte{0x10, 0x00, 0x9d}, true},
		{"vp8 inter frame", mimeVP8, []byte{0x10, 0x01, 0x9d}, false},
		{"vp8 continuation", mimeVP8, []byte{0x00, 0x00}, false},
		{"vp8 key with 15-bit picture id", mimeVP8, []byte{0x90, 0x80, 0x81, 0x23, 0x00}, true},
		{"vp8 inter with picture id and tl0", mimeVP8, []byte{0x90, 0xc0, 0x05, 0x01, 0x01}, false},
		{"vp8 truncated", mimeVP8, []byte{0x90, 0x80}, false},
		{"vp9 key", mimeVP9, []byte{0x88}, true},
		{"vp9 inter", mimeVP9, []byte{0xc8}, false},
		{"vp9 key spatial layer 1", mimeVP9, []byte{0xa8, 0x02}, false},
		{"h264 idr", mimeH264, []byte{0x65, 0x88}, true},
		{"h264 sps", mimeH264, []byte{0x67, 0x42}, true},
		{"h264 non-idr", mimeH264, []byte{0x41, 0x9a}, false},
		{"h264 stap-a with sps", mimeH264, []byte{0x18, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce}, true},
		{"h264 stap-a truncated", mimeH264, []byte{0x18, 0x00, 0x09, 0x67}, false},
		{"h264 fu-a idr start", mimeH264, []byte{0x7c, 0x85}, true},
		{"h264 fu-a idr middle", mimeH264, []byte{0x7c, 0x05}, false},
		{"opus never", mimeOpus, []byte{0xfc}, false},
		{"empty", mimeVP8, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := isKeyframe(tt.mime, tt.payload); got != tt.want {
				t.Fatalf("isKeyframe = %v, want %v", got, tt.want)
			}
		})
	}
}

func FuzzIsKeyframe(f *testing.F) {
	f.Add([]byte{0x18, 0x00, 0x02, 0x67, 0x42})
	f.Add([]byte{0x90, 0xe0, 0x81, 0x23, 0x00})
	f.Fuzz(func(t *testing.T, p []byte) {
		for _, m := range []string{mimeVP8, mimeVP9, mimeH264} {
			isKeyframe(m, p)
		}
	})
}
