package sfu

import (
	"time"

	"github.com/pion/webrtc/v4"
)

// currentLayer is the simulcast layer being forwarded (0 when none yet).
func (d *DownTrack) currentLayer() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return max(d.current, 0)
}

// chooseLayers picks for each video track the best simulcast layer that is
// being published and that the subscriber's bandwidth estimate can carry
// next to its audio. Tracks of a single-layer source keep layer 0.
func (p *Participant) chooseLayers(dts []*DownTrack, budget int, now time.Time) {
	var video []*DownTrack
	for _, dt := range dts {
		src := dt.Source()
		if src == nil {
			continue
		}
		if src.kind == webrtc.RTPCodecTypeAudio {
			if l := src.layer(0); l != nil {
				budget -= int(l.bitrate.Load())
			}
			continue
		}
		video = append(video, dt)
	}
	if len(video) == 0 {
		return
	}
	share := budget / len(video)
	for _, dt := range video {
		dt.setTarget(pickLayer(dt.Source(), share, now))
	}
}

// pickLayer returns the highest active layer whose measured bitrate fits
// the budget, or the lowest active one when none fits.
func pickLayer(src *Publication, budget int, now time.Time) int {
	if src == nil {
		return 0
	}
	active := src.activeLayers(now)
	lowest := -1
	for q := range maxLayers {
		if active[q] {
			lowest = q
			break
		}
	}
	if lowest < 0 {
		return 0
	}
	best := lowest
	for q := lowest; q < maxLayers; q++ {
		l := src.layer(q)
		if active[q] && l != nil && int(l.bitrate.Load()) <= budget {
			best = q
		}
	}
	return best
}
