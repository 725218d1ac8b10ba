//! The embedded player page: `GET /{path}/` plays the path with WebRTC
//! (WHEP) first and LL-HLS as the fallback, showing its state.

/// The page (same for every path: it reads the path from its own URL).
pub const PLAYER_HTML: &str = include_str!("../../web/player.html");

/// The player page's workaround for an hls.js LL-HLS freeze.
pub const HLS_WATCHDOG_JS: &str = include_str!("../../web/hls_watchdog.js");

/// hls.js, from the npm dependency in web/package.json, embedded at build
/// time (see build.rs).
pub const HLS_JS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hls.min.js"));

/// Whether the embedded hls.js is the real library (it was installed when
/// the binary was built).
pub fn has_hls_js() -> bool {
    HLS_JS.len() > 10_000
}
