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

/// The `name=value` of a `Set-Cookie` header (RFC 6265 §4.1.1), to send
/// back as `Cookie`.
fn cookie_pair(set_cookie: &str) -> Option<&str> {
    let pair = set_cookie.split(';').next()?.trim();
    pair.contains('=').then_some(pair)
}

/// Starts the path's HLS muxer (it starts with the first request), so that
/// the GOP cache and segment window are in place before viewers come.
pub async fn prime(client: &reqwest::Client, base: &str) {
    let _ = client.get(format!("{base}/index.m3u8")).send().await;
}

/// An LL-HLS viewer: the playlist, then for ever the preload-hinted part
/// and a blocking reload for the one after it (RFC 8216bis §6.2.5.2). It
/// keeps the session cookie the first playlist sets, as a browser does, so
/// the server sees one viewer per load-tool viewer.
pub async fn hls_viewer(
    client: &reqwest::Client,
    base: &str,
    s: &ViewerStats,
    latencies: &Latencies,
    start: Instant,
    until: Instant,
) -> Result<(), Error> {
    let joined_us = latency::unix_us_now();
    let first = client
        .get(format!("{base}/index.m3u8"))
        .send()
        .await?
        .error_for_status()?;
    let cookie = first
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(cookie_pair)
        .unwrap_or_default()
        .to_string();
    let get = |url: String| {
        client
            .get(url)
            .header(reqwest::header::COOKIE, cookie.as_str())
    };
    let mut playlist = first.text().await?;
    while Instant::now() < until {
        let Some((hint, (msn, part))) = preload_hint(&playlist) else {
            return Err("no preload hint".into());
        };
        let answer = get(format!("{base}/{hint}")).send().await?;
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
        playlist = get(format!("{base}/index.m3u8?_HLS_msn={msn}&_HLS_part={part}"))
            .send()
            .await?
            .text()
            .await?;
        if !playlist.starts_with("#EXTM3U") {
            // 400 for a part that moved to the next segment: plain reload.
            playlist = get(format!("{base}/index.m3u8"))
                .send()
                .await?
                .text()
                .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_sent_back_is_the_name_and_value_only() {
        assert_eq!(
            cookie_pair("mediarelay_hls=abc123; Path=/; HttpOnly; SameSite=Lax"),
            Some("mediarelay_hls=abc123")
        );
        assert_eq!(cookie_pair("mediarelay_hls=x"), Some("mediarelay_hls=x"));
        assert_eq!(cookie_pair("garbage; Path=/"), None);
    }

    #[test]
    fn the_preload_hint_names_the_next_part() {
        let text = "#EXTM3U\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part_12_3.m4s\"\n";
        assert_eq!(
            preload_hint(text),
            Some(("part_12_3.m4s".to_string(), (12, 3)))
        );
        assert_eq!(preload_hint("#EXTM3U\n"), None);
    }
}
