// Opens the embedded player page of a path in headless Chromium and prints
// what it played as one JSON line.
//   node player_page.mjs PAGE_URL [seconds]
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
  await page.goto(url);
  const states = [];
  const deadline = Date.now() + 20000;
  let state = '';
  while (Date.now() < deadline) {
    state = await page.evaluate(() => document.body.dataset.state);
    if (states[states.length - 1] !== state) states.push(state);
    if (state === 'playing') break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const t0 = await page.evaluate(() => document.getElementById('video').currentTime);
  await new Promise((r) => setTimeout(r, Number(seconds) * 1000));
  result = await page.evaluate(async ({ t0 }) => {
    const p = window.__mediarelay;
    const video = document.getElementById('video');
    const out = { mode: p.mode, state: p.state, advanced: video.currentTime - t0,
      width: video.videoWidth, height: video.videoHeight,
      totalVideoFrames: video.getVideoPlaybackQuality().totalVideoFrames };
    if (p.pc) {
      const stats = await p.pc.getStats();
      const codecs = {};
      stats.forEach((s) => { if (s.type === 'codec') codecs[s.id] = s.mimeType; });
      stats.forEach((s) => {
        if (s.type !== 'inbound-rtp') return;
        if (s.kind === 'video') Object.assign(out, { framesDecoded: s.framesDecoded, videoCodec: codecs[s.codecId] });
        else Object.assign(out, { audioCodec: codecs[s.codecId], audioPackets: s.packetsReceived });
      });
    }
    return out;
  }, { t0 });
  result.states = states;
  result.ok = state === 'playing';
} catch (e) {
  result = { ok: false, error: String(e) };
} finally {
  if (context) await context.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(result));
