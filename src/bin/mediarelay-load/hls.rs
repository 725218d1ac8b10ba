//! LL-HLS viewers that behave like hls.js: preload-hinted parts and
//! blocking playlist reloads.

use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::Error;
use crate::latency::{self, Latencies};
use crate::stats::ViewerStats;

/// The `URI` of `#EXT-X-PRELOAD-HINT:TYPE=PART,URI="…"` and the position
/// (msn, part) it names (`part_{msn}_{part}.m4s`).
fn preload_hint(text: &str) -> Option<(String, (u64, usize))> {
    let uri = text
        .lines()
        .find(|l| l.starts_with("#EXT-X-PRELOAD-HINT") && l.contains("TYPE=PART"))?
        .split("URI=\"")
        .nth(1)?
        .split('"')
        .next()?;
    let rest = uri.strip_prefix("part_")?.strip_suffix(".m4s")?;
    let (msn, part) = rest.split_once('_')?;
    Some((uri.to_string(), (msn.parse().ok()?, part.parse().ok()?)))
}

/// An LL-HLS viewer: the playlist, then for ever the preload-hinted part
/// and a blocking reload for the one after it (RFC 8216bis §6.2.5.2).
pub async fn hls_viewer(
    client: &reqwest::Client,
    base: &str,
    s: &ViewerStats,
    latencies: &Latencies,
    start: Instant,
    until: Instant,
) -> Result<(), Error> {
    let joined_us = latency::unix_us_now();
    let mut playlist = client
        .get(format!("{base}/index.m3u8"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    while Instant::now() < until {
        let Some((hint, (msn, part))) = preload_hint(&playlist) else {
            return Err("no preload hint".into());
        };
        let answer = client.get(format!("{base}/{hint}")).send().await?;
        if answer.status().is_success() {
            let body = answer.bytes().await?;
            latencies.record(&body, latency::unix_us_now(), joined_us);
            s.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
            s.units.fetch_add(1, Ordering::Relaxed);
            s.first(start);
        } else {
            s.lost.fetch_add(1, Ordering::Relaxed);
        }
        // The playlist that has the part just fetched, and so hints the
        // next one.
        playlist = client
            .get(format!("{base}/index.m3u8?_HLS_msn={msn}&_HLS_part={part}"))
            .send()
            .await?
            .text()
            .await?;
        if !playlist.starts_with("#EXTM3U") {
            // 400 for a part that moved to the next segment: plain reload.
            playlist = client
                .get(format!("{base}/index.m3u8"))
                .send()
                .await?
                .text()
                .await?;
        }
    }
    Ok(())
}
