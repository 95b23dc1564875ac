package loadgen

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
)

// layer is one video encoding a publisher sends: the only one, or one
// simulcast layer named by its RID.
type layer struct {
	rid  string
	clip *Clip
}

// Simulcast's lower layers, as browsers send them for a 640x480 camera.
var simulcastLower = []struct {
	rid, size string
	kbps      int
}{
	{"h", "320x240", 250},
	{"q", "160x120", 100},
}

// loadMedia loads the clips a run sends and cuts them into payloads.
func loadMedia(ctx context.Context, cfg *Config, seed maphash.Seed) (*Clip, []layer, error) {
	audio, err := LoadOgg(filepath.Join(cfg.MediaDir, "opus-48k.ogg"), NewPayloadHasher(seed, "audio/opus"))
	if err != nil {
		return nil, nil, err
	}
	if cfg.VoiceOnly {
		return audio, nil, nil
	}
	top, err := loadVideo(ctx, cfg, "640x480", cfg.Bitrate, seed)
	if err != nil {
		return nil, nil, err
	}
	if !cfg.Simulcast {
		return audio, []layer{{clip: top}}, nil
	}
	layers := []layer{{rid: "f", clip: top}}
	for _, l := range simulcastLower {
		c, err := loadVideo(ctx, cfg, l.size, l.kbps, seed)
		if err != nil {
			return nil, nil, err
		}
		layers = append(layers, layer{rid: l.rid, clip: c})
	}
	return audio, layers, nil
}

func loadVideo(ctx context.Context, cfg *Config, size string, kbps int, seed maphash.Seed) (*Clip, error) {
	ext := "ivf"
	if cfg.Codec == "h264" {
		ext = "h264"
	}
	name := fmt.Sprintf("%s-%s-%dk.%s", cfg.Codec, size, kbps, ext)
	path := filepath.Join(cfg.MediaDir, name)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		if path, err = encodeClip(ctx, cfg.Codec, size, kbps, name); err != nil {
			return nil, err
		}
	}
	if cfg.Codec == "h264" {
		return LoadH264(path, 30, NewPayloadHasher(seed, "video/h264"))
	}
	return LoadIVF(path, NewPayloadHasher(seed, "video/vp8"))
}

// encodeClip makes a clip at a bitrate that testdata/media does not hold,
// with the same ffmpeg settings as testdata/media/README.md, once, into the
// user's cache directory.
func encodeClip(ctx context.Context, codec, size string, kbps int, name string) (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	dir = filepath.Join(dir, "avs-loadtest")
	path := filepath.Join(dir, name)
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("clip cache: %w", err)
	}
	rate := strconv.Itoa(kbps) + "k"
	buf := strconv.Itoa(max(kbps/2, 100)) + "k"
	args := []string{"-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
		"-i", "testsrc2=size=" + size + ":rate=30", "-t", "6"}
	if codec == "h264" {
		args = append(args, "-c:v", "libx264", "-threads", "1", "-profile:v", "baseline", "-level", "3.1",
			"-pix_fmt", "yuv420p", "-preset", "veryfast", "-tune", "zerolatency", "-b:v", rate, "-maxrate", rate,
			"-bufsize", buf, "-g", "90", "-keyint_min", "90", "-sc_threshold", "0", "-bf", "0",
			"-x264-params", "repeat-headers=1", "-f", "h264")
	} else {
		args = append(args, "-c:v", "libvpx", "-b:v", rate, "-minrate", rate, "-maxrate", rate, "-bufsize", buf,
			"-g", "90", "-keyint_min", "90", "-deadline", "realtime", "-cpu-used", "8", "-lag-in-frames", "0",
			"-auto-alt-ref", "0", "-error-resilient", "1", "-pix_fmt", "yuv420p", "-f", "ivf")
	}
	tmp := path + ".tmp"
	args = append(args, tmp)
	if out, err := exec.CommandContext(ctx, "ffmpeg", args...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("encode %s with ffmpeg (is it installed?): %w: %s", name, err, out)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("clip cache: %w", err)
	}
	return path, nil
}
