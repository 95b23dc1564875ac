// Publishes the fake camera and microphone of one headless Chromium context
// over WHIP and plays them in a second context over WHEP, until the
// player's getStats() shows decoded video frames and received audio.
// Prints one JSON line with what the player measured.
//
//   AVS_URL=http://127.0.0.1:8080 PAGE_URL=http://127.0.0.1:9000/ TOKEN=... ROOM=r node whip-whep.mjs
import { chromium } from 'playwright-core';

const { AVS_URL, PAGE_URL, TOKEN, ROOM } = process.env;
const TIMEOUT_MS = Number(process.env.TIMEOUT_MS || 60000);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
    '--allow-loopback-in-peer-connection',
    '--disable-features=WebRtcHideLocalIpsWithMdns',
  ],
});

// negotiate runs in the page: offer, wait for candidates, POST, answer.
async function negotiate(page, kind) {
  return page.evaluate(async ({ avs, token, room, kind }) => {
    const pc = new RTCPeerConnection();
    window.pc = pc;
    if (kind === 'whip') {
      const media = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 480 } });
      for (const track of media.getTracks()) pc.addTransceiver(track, { direction: 'sendonly' });
    } else {
      pc.addTransceiver('audio', { direction: 'recvonly' });
      pc.addTransceiver('video', { direction: 'recvonly' });
    }
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((resolve) => {
      if (pc.iceGatheringState === 'complete') return resolve();
      pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && resolve());
      setTimeout(resolve, 3000);
    });
    const resp = await fetch(`${avs}/${kind}/${room}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${token}` },
      body: pc.localDescription.sdp,
    });
    if (resp.status !== 201) throw new Error(`${kind} POST answered ${resp.status}: ${await resp.text()}`);
    await pc.setRemoteDescription({ type: 'answer', sdp: await resp.text() });
    return resp.headers.get('Location');
  }, { avs: AVS_URL, token: TOKEN, room: ROOM, kind });
}

async function playerStats(page) {
  return page.evaluate(async () => {
    const out = { framesDecoded: 0, audioPacketsReceived: 0, videoCodec: '', connectionState: window.pc.connectionState };
    const stats = await window.pc.getStats();
    const codecs = {};
    stats.forEach((s) => { if (s.type === 'codec') codecs[s.id] = s.mimeType; });
    stats.forEach((s) => {
      if (s.type !== 'inbound-rtp') return;
      if (s.kind === 'video') { out.framesDecoded = s.framesDecoded || 0; out.videoCodec = codecs[s.codecId] || ''; out.frameWidth = s.frameWidth || 0; }
      if (s.kind === 'audio') out.audioPacketsReceived = s.packetsReceived || 0;
    });
    return out;
  });
}

let result = { ok: false };
try {
  const publisher = await (await browser.newContext()).newPage();
  const player = await (await browser.newContext()).newPage();
  await publisher.goto(PAGE_URL);
  await player.goto(PAGE_URL);
  // The player comes first, as a viewer waiting for the camera would.
  const playerLocation = await negotiate(player, 'whep');
  const publisherLocation = await negotiate(publisher, 'whip');
  const deadline = Date.now() + TIMEOUT_MS;
  let stats;
  do {
    await new Promise((r) => setTimeout(r, 250));
    stats = await playerStats(player);
  } while ((stats.framesDecoded < 10 || stats.audioPacketsReceived < 10) && Date.now() < deadline);
  result = { ok: stats.framesDecoded >= 10 && stats.audioPacketsReceived >= 10, ...stats, playerLocation, publisherLocation };
} catch (err) {
  result = { ok: false, error: String(err) };
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
