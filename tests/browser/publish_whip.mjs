// Publishes Chromium's fake camera and microphone to a WHIP endpoint (H.264 +
// Opus) for a while, then DELETEs the session; prints one JSON line.
//   node publish_whip.mjs WHIP_URL [seconds]
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [url, seconds = '8'] = process.argv.slice(2);
const profile = mkdtempSync(join(tmpdir(), 'mediarelay-chromium-'));
let context;
let result = { ok: false };
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--allow-loopback-in-peer-connection', '--use-fake-device-for-media-stream',
      '--use-fake-ui-for-media-stream'],
  });
  const page = await context.newPage();
  // A page of the server's own origin: getUserMedia needs a secure context
  // (loopback origins are one).
  await page.goto(new URL('/', url).href);
  result = await page.evaluate(async ({ url, seconds }) => {
    const media = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 360, frameRate: 30 }, audio: true });
    const pc = new RTCPeerConnection();
    const caps = RTCRtpSender.getCapabilities('video').codecs;
    const h264 = caps.filter((c) => c.mimeType === 'video/H264');
    if (!h264.length) return { ok: false, error: 'no H.264 encoder in this browser' };
    for (const track of media.getTracks()) {
      const t = pc.addTransceiver(track, { direction: 'sendonly' });
      if (track.kind === 'video') t.setCodecPreferences(h264);
    }
    await pc.setLocalDescription(await pc.createOffer());
    const res = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/sdp', Authorization: 'Bearer test-token' }, body: pc.localDescription.sdp });
    if (res.status !== 201) return { ok: false, error: `POST ${res.status}: ${await res.text()}` };
    const location = new URL(res.headers.get('Location'), url).href;
    await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const stats = await pc.getStats();
    const out = { ok: true, location, state: pc.connectionState };
    stats.forEach((s) => {
      if (s.type === 'outbound-rtp' && s.kind === 'video') Object.assign(out, { framesEncoded: s.framesEncoded, encoder: s.encoderImplementation });
      if (s.type === 'outbound-rtp' && s.kind === 'audio') out.audioPackets = s.packetsSent;
    });
    const del = await fetch(location, { method: 'DELETE' });
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
