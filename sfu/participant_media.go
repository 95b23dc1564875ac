package sfu

import (
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// onTrack registers a track (or one simulcast layer of it) that the client
// started publishing, and starts its reader. taps are the connection's.
func (p *Participant) onTrack(pc *webrtc.PeerConnection, taps *tapSet, track *webrtc.TrackRemote, receiver *webrtc.RTPReceiver) {
	if track.Kind() == webrtc.RTPCodecTypeVideo && p.videoCodecs() == nil {
		// voiceOnly: video that arrives anyway is neither forwarded nor counted.
		return
	}
	codec := track.Codec()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	pub, existed := p.publications[track.ID()]
	if !existed {
		if len(p.publications) >= p.room.sfu.cfg.MaxTracksPerParticipant {
			p.mu.Unlock()
			p.log.Warn("track refused: too many tracks", "track", track.ID())
			return
		}
		pub = newPublication(p, track.ID(), track.StreamID(), track.Kind(), codec)
		for _, ext := range receiver.GetParameters().HeaderExtensions {
			switch ext.URI {
			case audioLevelURI:
				pub.levelExtID = uint8(ext.ID)
			case sdp.TransportCCURI:
				pub.twccExtID = uint8(ext.ID)
			}
		}
		pub.requestFrame = func(ssrc uint32) {
			_ = pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}})
		}
		p.publications[track.ID()] = pub
	}
	quality := qualityOfRID(track.RID(), 0)
	if track.RID() == "" {
		quality = 0
	}
	l := pub.addLayer(quality, track.RID(), uint32(track.SSRC()))
	p.wg.Add(1)
	p.mu.Unlock()

	p.log.Info("track published", "track", track.ID(), "kind", track.Kind().String(), "codec", codec.MimeType, "rid", track.RID())
	taps.handleRTCP(l.ssrc, func(pkt []byte) { p.handlePublisherRTCP(l, pkt) })
	go func() {
		defer p.wg.Done()
		pub.readRTP(l, track, taps.find(l.ssrc))
		p.layerEnded(pub, l)
	}()
	if !existed {
		p.room.publish(pub)
	}
	pub.RequestKeyframe(quality)
}

// layerEnded drops a layer whose reader stopped and unpublishes the track
// when it was the last.
func (p *Participant) layerEnded(pub *Publication, l *layer) {
	pub.layers[l.quality].CompareAndSwap(l, nil)
	for q := range maxLayers {
		if pub.layer(q) != nil {
			return
		}
	}
	p.mu.Lock()
	if p.publications[pub.id] == pub {
		delete(p.publications, pub.id)
	}
	p.mu.Unlock()
	pub.closed.Store(true)
	p.room.unpublish(pub)
}

// handlePublisherRTCP takes the publisher's sender reports for one layer.
func (p *Participant) handlePublisherRTCP(l *layer, pkt []byte) {
	pkts, err := rtcp.Unmarshal(pkt)
	if err != nil {
		p.room.sfu.metrics.malformedRTCP.Add(1)
		return
	}
	now := time.Now()
	for _, pkt := range pkts {
		if sr, ok := pkt.(*rtcp.SenderReport); ok && sr.SSRC == l.ssrc {
			l.stats.SenderReport(sr.NTPTime, now)
		}
	}
}

// startSenderRTCP hands what a subscriber says about one of its tracks
// (keyframe requests, NACKs, receiver reports, transport-wide feedback)
// to handleSubscriberRTCP, from the goroutine that decrypts it.
func (p *Participant) startSenderRTCP(sender *webrtc.RTPSender, dt *DownTrack) {
	p.mu.Lock()
	taps := p.subTaps
	p.mu.Unlock()
	if taps == nil {
		return
	}
	for _, enc := range sender.GetParameters().Encodings {
		taps.handleRTCP(uint32(enc.SSRC), func(pkt []byte) {
			pkts, err := rtcp.Unmarshal(pkt)
			if err != nil {
				p.room.sfu.metrics.malformedRTCP.Add(1)
				return
			}
			p.handleSubscriberRTCP(dt, pkts)
		})
	}
}

func (p *Participant) handleSubscriberRTCP(dt *DownTrack, pkts []rtcp.Packet) {
	m := p.room.sfu.metrics
	for _, pkt := range pkts {
		switch pkt := pkt.(type) {
		case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
			m.plisReceived.Add(1)
			dt.plis.Add(1)
			if src := dt.Source(); src != nil {
				src.RequestKeyframe(dt.currentLayer())
			}
		case *rtcp.TransportLayerNack:
			p.answerNACK(dt, pkt)
		case *rtcp.TransportLayerCC:
			if p.transport != nil {
				p.transport.estimate.Feedback(pkt, time.Now())
			}
		case *rtcp.ReceiverReport:
			for _, r := range pkt.Reports {
				if r.SSRC == dt.SSRC() {
					p.room.sfu.metrics.observeReport(dt, r, time.Now())
				}
			}
		}
	}
}

// answerNACK resends what the cache holds and asks the publisher for the
// rest, once per NACK packet.
func (p *Participant) answerNACK(dt *DownTrack, nack *rtcp.TransportLayerNack) {
	m := p.room.sfu.metrics
	var upstream []uint16
	var upSrc *Publication
	var upQuality int
	for _, pair := range nack.Nacks {
		// The pair is a sequence number and a bitmask of the 16 after it.
		for i := 0; i <= 16; i++ {
			if i > 0 && pair.LostPackets&(1<<(i-1)) == 0 {
				continue
			}
			seq := pair.PacketID + uint16(i)
			m.nacksReceived.Add(1)
			src, q, srcSeq, ok := dt.retransmit(seq)
			if ok {
				m.retransmits.Add(1)
				continue
			}
			if src != nil && (upSrc == nil || upSrc == src && upQuality == q) {
				upSrc, upQuality = src, q
				upstream = append(upstream, srcSeq)
			}
		}
	}
	if upSrc != nil && len(upstream) > 0 {
		if l := upSrc.layer(upQuality); l != nil {
			upSrc.owner.sendRTCP(&rtcp.TransportLayerNack{MediaSSRC: l.ssrc, Nacks: rtcp.NackPairsFromSequenceNumbers(upstream)})
			m.nacksSent.Add(uint64(len(upstream)))
		}
	}
}

// sendTransportFeedback tells the publisher when its packets arrived.
func (p *Participant) sendTransportFeedback() {
	if pkts := p.feedback.packets(); len(pkts) > 0 {
		p.sendRTCP(pkts...)
	}
}

// sendRTCP writes to the publishing PeerConnection.
func (p *Participant) sendRTCP(pkts ...rtcp.Packet) {
	p.mu.Lock()
	pc := p.pub
	p.mu.Unlock()
	if pc != nil {
		_ = pc.WriteRTCP(pkts)
	}
}

// subscribe gives this participant a track of pub (dynamic mode).
func (p *Participant) subscribe(pub *Publication) {
	if pub.kind == webrtc.RTPCodecTypeVideo && p.videoCodecs() == nil {
		return
	}
	p.mu.Lock()
	if p.closed || p.sub == nil || p.downTracks[pub] != nil {
		p.mu.Unlock()
		return
	}
	pc := p.sub
	dt := newDownTrack(pub.kind, pub.id, pub.owner.id)
	dt.transport = p.transport
	tr, err := pc.AddTransceiverFromTrack(dt, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		p.mu.Unlock()
		p.log.Warn("subscribe failed", "track", pub.id, "err", err)
		return
	}
	p.downTracks[pub] = dt
	p.senders[dt] = tr.Sender()
	p.mu.Unlock()
	// Before the offer, so that Bind sees the source's codec.
	dt.setSource(pub)
	p.startSenderRTCP(tr.Sender(), dt)
	p.negotiate()
}

// unsubscribe removes the track of a publication that ended (dynamic mode).
func (p *Participant) unsubscribe(pub *Publication) {
	p.mu.Lock()
	dt := p.downTracks[pub]
	var sender *webrtc.RTPSender
	if dt != nil {
		delete(p.downTracks, pub)
		sender = p.senders[dt]
		delete(p.senders, dt)
	}
	pc := p.sub
	closed := p.closed
	p.mu.Unlock()
	if dt == nil {
		return
	}
	dt.setSource(nil)
	if pc != nil && sender != nil && !closed {
		_ = pc.RemoveTrack(sender)
		p.negotiate()
	}
}

// negotiate sends a new server offer on the subscribing PeerConnection, or
// remembers to once the pending one is answered.
func (p *Participant) negotiate() {
	p.mu.Lock()
	pc, sig := p.sub, p.opts.Signals
	if pc == nil || sig == nil || p.closed {
		p.mu.Unlock()
		return
	}
	if p.negotiating {
		p.renegotiate = true
		p.mu.Unlock()
		return
	}
	p.negotiating, p.renegotiate = true, false
	restart := p.iceRestart
	p.iceRestart = false
	p.mu.Unlock()

	offer, err := pc.CreateOffer(&webrtc.OfferOptions{ICERestart: restart})
	if err == nil {
		gathered := webrtc.GatheringCompletePromise(pc)
		if err = pc.SetLocalDescription(offer); err == nil {
			select {
			case <-gathered:
			case <-time.After(5 * time.Second):
			case <-p.ctx.Done():
				return
			}
			sig.ServerOffer(pc.LocalDescription().SDP)
			return
		}
	}
	if p.ctx.Err() == nil {
		p.log.Warn("server offer failed", "err", err)
	}
	p.mu.Lock()
	p.negotiating = false
	p.mu.Unlock()
}

// tick runs the participant's periodic RTCP: NACKs to its publishers at
// every call, and each second receiver reports, sender reports, bitrates
// and layer choice.
func (p *Participant) tick(now time.Time, second bool) {
	// Between full passes only participants with lost packets or held-back
	// keyframe requests are visited: most ticks of most participants end
	// here, on one atomic swap.
	if !second && !p.attention.Swap(false) {
		return
	}
	// The scratch slices belong to the one goroutine that calls tick.
	p.mu.Lock()
	pubs := p.tickPubs[:0]
	for _, pub := range p.publications {
		pubs = append(pubs, pub)
	}
	p.tickPubs = pubs
	pubPC, subPC := p.pub, p.sub
	dts := p.tickDownTracks[:0]
	if second {
		for _, dt := range p.downTracks {
			dts = append(dts, dt)
		}
		dts = append(dts, p.slots...)
		p.tickDownTracks = dts
	}
	p.mu.Unlock()

	var out []rtcp.Packet
	again := false
	for _, pub := range pubs {
		pub.flushKeyframeRequests()
		out = pub.upstreamNACKs(now, 0, out)
		again = again || pub.needsAttention()
	}
	if again {
		p.attention.Store(true) // retries and held-back requests are due later
	}
	if second && pubPC != nil {
		rr := &rtcp.ReceiverReport{}
		for _, pub := range pubs {
			pub.updateBitrates(now)
			rr.Reports = append(rr.Reports, p.room.sfu.metrics.receptionReports(pub, now)...)
		}
		if len(rr.Reports) > 0 {
			out = append(out, rr)
		}
	}
	if len(out) > 0 && pubPC != nil {
		_ = pubPC.WriteRTCP(out)
	}
	if second && subPC != nil {
		p.sendSenderReports(subPC, dts, now)
		p.chooseLayers(dts, p.transport.estimate.Estimate(), now) // subPC implies a transport
		for _, dt := range dts {
			dt.askAgainForKeyframe()
		}
	}
}

func (p *Participant) sendSenderReports(pc *webrtc.PeerConnection, dts []*DownTrack, now time.Time) {
	var out []rtcp.Packet
	ntp := toNTP(now)
	for _, dt := range dts {
		ssrc, ts, ok := dt.senderReportState(now)
		if !ok {
			continue
		}
		dt.srNTPMid.Store(uint32(ntp >> 16))
		dt.srSentAt.Store(now.UnixNano())
		out = append(out, &rtcp.SenderReport{
			SSRC: ssrc, NTPTime: ntp, RTPTime: ts,
			PacketCount: uint32(dt.packets.Load()), OctetCount: uint32(dt.bytes.Load()),
		})
	}
	if len(out) > 0 {
		_ = pc.WriteRTCP(out)
	}
}

// toNTP converts a wall-clock time to the 64-bit NTP format of RTCP.
func toNTP(t time.Time) uint64 {
	const ntpEpochOffset = 2208988800
	secs := uint64(t.Unix()) + ntpEpochOffset
	frac := uint64(t.Nanosecond()) * (1 << 32) / 1e9
	return secs<<32 | frac
}
