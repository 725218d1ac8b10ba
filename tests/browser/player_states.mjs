// Opens the embedded player page of a path in headless Chromium for a fixed
// time and prints every state it shows (with the time since the page was
// opened, in ms) as one JSON line, so a test can stop and restart the
// publisher meanwhile and see the page follow.
//   node player_states.mjs PAGE_URL seconds
// Prints "ready MS" on its own line once the page is open (MS since start).
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [url, seconds = '20'] = process.argv.slice(2);
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
  const t0 = Date.now();
  await page.goto(url);
  console.log(`ready ${Date.now() - t0}`);
  const states = [];
  const deadline = t0 + Number(seconds) * 1000;
  while (Date.now() < deadline) {
    const s = await page.evaluate(() => {
      const p = window.__mediarelay;
      const v = document.getElementById('video');
      return { state: p.state, mode: p.mode, time: v.currentTime };
    });
    const last = states[states.length - 1];
    if (!last || last.state !== s.state || last.mode !== s.mode) {
      states.push({ at: Date.now() - t0, state: s.state, mode: s.mode, time: s.time });
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const final = await page.evaluate(() => {
    const v = document.getElementById('video');
    return { state: window.__mediarelay.state, mode: window.__mediarelay.mode,
      time: v.currentTime, frames: v.getVideoPlaybackQuality().totalVideoFrames };
  });
  result = { ok: true, states, final };
} catch (e) {
  result = { ok: false, error: String(e) };
} finally {
  if (context) await context.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(result));
