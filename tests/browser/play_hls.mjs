// Plays an HLS URL with hls.js in headless Chromium and prints what the
// browser saw as one JSON line: {ok, currentTime, frames, width, height, error}.
//   node play_hls.mjs URL [seconds]
import { chromium } from 'playwright-core';
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const [url, seconds = '6'] = process.argv.slice(2);
const hlsPath = require.resolve('hls.js/dist/hls.min.js');
const profile = mkdtempSync(join(tmpdir(), 'mediarelay-chromium-'));
let context;
let result = { ok: false };
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--autoplay-policy=no-user-gesture-required'],
  });
  const page = await context.newPage();
  await page.setContent('<video id="v" muted playsinline></video>');
  await page.addScriptTag({ path: hlsPath });
  await page.addScriptTag({ path: fileURLToPath(new URL('../../web/hls_watchdog.js', import.meta.url)) });
  result = await page.evaluate(async ({ url, seconds }) => {
    const video = document.getElementById('v');
    if (!Hls.isSupported()) return { ok: false, error: 'hls.js: MSE not supported' };
    const errors = [];
    const hls = new Hls({ lowLatencyMode: true });
    hls.on(Hls.Events.ERROR, (_, d) => { if (d.fatal) errors.push(`${d.type}/${d.details}`); });
    // The player page's workaround for hls.js's LL-HLS freeze, as any page
    // embedding hls.js needs it (web/hls_watchdog.js).
    let jumps = 0;
    mediarelayHlsWatchdog(hls, video, () => { jumps += 1; });
    hls.loadSource(url);
    hls.attachMedia(video);
    await video.play().catch(e => errors.push(String(e)));
    const start = performance.now();
    let started = null;
    while (performance.now() - start < seconds * 1000 + 10000) {
      await new Promise(r => setTimeout(r, 200));
      if (started === null && video.currentTime > 0) started = performance.now();
      if (started !== null && performance.now() - started > seconds * 1000) break;
      if (errors.length) break;
    }
    const q = video.getVideoPlaybackQuality();
    const live = hls.latency;
    return {
      ok: errors.length === 0 && started !== null,
      currentTime: video.currentTime,
      frames: q.totalVideoFrames,
      dropped: q.droppedVideoFrames,
      width: video.videoWidth,
      height: video.videoHeight,
      latency: live,
      lowLatency: hls.lowLatencyMode,
      jumps,
      error: errors.join('; ') || null,
    };
  }, { url, seconds: Number(seconds) });
} catch (e) {
  result = { ok: false, error: String(e) };
} finally {
  if (context) await context.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(result));
