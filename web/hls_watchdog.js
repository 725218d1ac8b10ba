// Works around an hls.js (1.7.4) LL-HLS freeze; used by the player page and
// by the browser test that plays bare hls.js (tests/browser/play_hls.mjs).
//
// hls.js can mark a segment as fully buffered when only its first parts
// are: a part parsed after the playlist update that completed its segment (a
// slow first append, a busy machine) is taken for the whole segment, and the
// parts after it are never fetched while the playlist keeps moving. A viewer
// stalled for over a second after playback began (waiting for data, or in a
// seek that found none), while the live edge is ahead, is moved to hls.js's
// live sync position, where nothing is marked buffered, so it loads again: a
// short jump instead of a frozen player. Still stalled a second later (the
// jump landed in the same segment), it jumps again, further, as the edge has
// moved on.
//
//   const stop = mediarelayHlsWatchdog(hls, video, onJump);  // stop() ends it
window.mediarelayHlsWatchdog = function (hls, video, onJump) {
  let started = false;
  let stalledSince = 0;
  const onPlaying = () => { started = true; };
  video.addEventListener('playing', onPlaying, { once: true });
  const timer = setInterval(() => {
    if (!started) return;
    const stalled = !video.paused && video.readyState < 3;
    if (!stalled) { stalledSince = 0; return; }
    const now = performance.now();
    if (!stalledSince) { stalledSince = now; return; }
    const target = hls.liveSyncPosition;
    if (now - stalledSince >= 1000 && target !== null && target - video.currentTime > 0.5) {
      stalledSince = now;
      video.currentTime = target;
      if (onJump) onJump();
    }
  }, 500);
  return () => { clearInterval(timer); video.removeEventListener('playing', onPlaying); };
};
