// Opens the embedded player page of a path in headless Chromium and prints
// what it played as one JSON line.
//   node player_page.mjs PAGE_URL [seconds] [hold_ms]
// hold_ms > 0 holds back the first media part the page asks for once it
// plays, for that long: a stalled network, to see the page recover.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [url, seconds = '5', holdMs = '0'] = process.argv.slice(2);
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
  // Requests of the page with when they started and ended (ms since the
  // page opened): the last of them are printed when playback stalls.
  const opened = Date.now();
  const requests = [];
  const since = () => Date.now() - opened;
  page.on('request', (r) => { r.startedAt = since(); });
  const done = (how) => (r) => {
    const u = new URL(r.url());
    requests.push(`${r.startedAt}-${since()}ms ${how} ${u.pathname.split('/').pop()}${u.search}`);
  };
  const playlists = [];
  page.on('requestfinished', async (r) => {
    done('ok')(r);
    if (r.url().includes('.m3u8')) {
      try { playlists.push(`${r.url()}\n${await (await r.response()).text()}`); } catch (e) { /* gone */ }
    }
  });
  page.on('requestfailed', done('failed'));
  const consoleLog = [];
  page.on('console', (m) => { consoleLog.push(`${since()}ms ${m.text()}`); if (consoleLog.length > 400) consoleLog.shift(); });
  let hold = false;
  if (Number(holdMs) > 0) {
    await page.route('**/*.m4s', async (route) => {
      if (hold && route.request().url().includes('/part_')) {
        hold = false;
        await new Promise((r) => setTimeout(r, Number(holdMs)));
      }
      await route.continue().catch(() => {});
    });
  }
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
  // What the element and hls.js went through while measured: stalls
  // ('waiting'), hls.js's non-fatal errors and the buffered ranges, so a
  // short `advanced` explains itself.
  const t0 = await page.evaluate(() => {
    const video = document.getElementById('video');
    const log = [];
    window.__diag = log;
    const start = performance.now();
    const at = () => Math.round(performance.now() - start);
    for (const e of ['waiting', 'stalled', 'seeking', 'playing']) {
      video.addEventListener(e, () => log.push(`${at()}ms ${e} t=${video.currentTime.toFixed(2)}`));
    }
    const hls = window.__mediarelay && window.__mediarelay.hls;
    if (hls) hls.on('hlsError', (_, d) => log.push(`${at()}ms hls ${d.details}${d.fatal ? ' fatal' : ''}`));
    return video.currentTime;
  });
  hold = true;
  await new Promise((r) => setTimeout(r, Number(seconds) * 1000));
  result = await page.evaluate(async ({ t0 }) => {
    const p = window.__mediarelay;
    const video = document.getElementById('video');
    const out = { mode: p.mode, state: p.state, advanced: video.currentTime - t0,
      width: video.videoWidth, height: video.videoHeight,
      totalVideoFrames: video.getVideoPlaybackQuality().totalVideoFrames };
    out.events = window.__diag;
    if (p.jumps) out.jumps = p.jumps;
    const b = video.buffered;
    out.buffered = Array.from({ length: b.length }, (_, i) => `${b.start(i).toFixed(2)}-${b.end(i).toFixed(2)}`);
    out.currentTime = video.currentTime;
    if (p.hls) {
      out.hlsLatency = p.hls.latency;
      const d = p.hls.levels[0] && p.hls.levels[0].details;
      if (d) out.hlsDetails = { frags: d.fragments.length, parts: d.partList && d.partList.length, start: d.fragments[0].start, end: d.edge, sn: d.endSN, part: d.endPart };
    }
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
  if (result.advanced < Number(seconds) - 0.5) {
    result.requests = requests.slice(-40);
    result.console = consoleLog;
    result.playlists = playlists.slice(0, 3).concat(playlists.slice(-1));
  }
  result.ok = state === 'playing';
} catch (e) {
  result = { ok: false, error: String(e) };
} finally {
  if (context) await context.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(result));
