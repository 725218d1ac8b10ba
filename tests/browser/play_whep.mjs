// Plays a WHEP endpoint in headless Chromium with a plain RTCPeerConnection
// and prints what the browser saw as one JSON line.
//   node play_whep.mjs WHEP_URL [seconds]
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [url, seconds = '5'] = process.argv.slice(2);
const profile = mkdtempSync(join(tmpdir(), 'mediarelay-chromium-'));
let context;
let result = { ok: false };
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--autoplay-policy=no-user-gesture-required', '--allow-loopback-in-peer-connection'],
  });
  const page = await context.newPage();
  await page.setContent('<video id="v" muted autoplay playsinline></video>');
  result = await page.evaluate(async ({ url, seconds }) => {
    const video = document.getElementById('v');
    const pc = new RTCPeerConnection();
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    const stream = new MediaStream();
    pc.ontrack = (e) => { stream.addTrack(e.track); video.srcObject = stream; };
    await pc.setLocalDescription(await pc.createOffer());
    const t0 = performance.now();
    const res = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp });
    if (res.status !== 201) return { ok: false, error: `POST ${res.status}: ${await res.text()}` };
    const location = res.headers.get('Location');
    await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
    let firstFrameMs = null;
    const end = performance.now() + seconds * 1000 + 10000;
    let started = null;
    while (performance.now() < end) {
      await new Promise(r => setTimeout(r, 100));
      const stats = await pc.getStats();
      let frames = 0;
      stats.forEach(s => { if (s.type === 'inbound-rtp' && s.kind === 'video') frames = s.framesDecoded || 0; });
      if (frames > 0 && firstFrameMs === null) { firstFrameMs = performance.now() - t0; started = performance.now(); }
      if (started !== null && performance.now() - started > seconds * 1000) break;
    }
    const stats = await pc.getStats();
    const codecs = {};
    stats.forEach(s => { if (s.type === 'codec') codecs[s.id] = s.mimeType; });
    const out = { ok: firstFrameMs !== null, location, firstFrameMs, state: pc.connectionState, currentTime: video.currentTime };
    // What the server's sender reports told Chromium (RTCP SR, decrypted
    // and parsed by the browser).
    stats.forEach(s => {
      if (s.type !== 'remote-outbound-rtp') return;
      out[s.kind + 'SenderReports'] = s.reportsSent;
      out[s.kind + 'ReportedPackets'] = s.packetsSent;
    });
    stats.forEach(s => {
      if (s.type !== 'inbound-rtp') return;
      if (s.kind === 'video') {
        Object.assign(out, { framesDecoded: s.framesDecoded, framesDropped: s.framesDropped, width: s.frameWidth, height: s.frameHeight, videoCodec: codecs[s.codecId], keyFramesDecoded: s.keyFramesDecoded, packetsLost: s.packetsLost });
      } else {
        Object.assign(out, { audioCodec: codecs[s.codecId], audioPackets: s.packetsReceived, audioSamples: s.totalSamplesReceived, audioLevel: s.audioLevel, audioEnergy: s.totalAudioEnergy, concealed: s.concealedSamples });
      }
    });
    const del = await fetch(new URL(location, url), { method: 'DELETE' });
    out.deleteStatus = del.status;
    pc.close();
    return out;
  }, { url, seconds: Number(seconds) });
} catch (e) {
  result = { ok: false, error: String(e) };
} finally {
  if (context) await context.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(result));
