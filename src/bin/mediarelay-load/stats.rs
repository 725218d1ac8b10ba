//! What viewers got (shared counters, summaries) and what the server
//! process costs (CPU and RSS from /proc, proc(5)).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// What one viewer got.
#[derive(Default)]
pub struct ViewerStats {
    pub bytes: AtomicU64,
    /// Video frames (RTMP, WHEP decode viewers), parts (HLS) or RTP packets
    /// (WHEP counting viewers).
    pub units: AtomicU64,
    /// Gaps: RTMP video timestamps jumping by more than a second, HLS
    /// parts that failed, WHEP frames not contiguous (decode viewers) or
    /// RTP sequence numbers skipped (counting viewers).
    pub lost: AtomicU64,
    /// Time from start (WHEP: from the POST) to the first video frame /
    /// part / RTP packet, in microseconds (0: none yet).
    pub first_us: AtomicU64,
    pub failed: AtomicU64,
    /// WHEP: RTP and RTCP packets received once connected.
    pub packets: AtomicU64,
    /// WHEP decode viewers: whole video frames (str0m `MediaData`).
    pub frames: AtomicU64,
    /// WHEP: time from the POST to its answer, and to ICE + DTLS done
    /// (str0m's `Connected`), in microseconds (0: not yet): where a slow
    /// first frame went.
    pub answered_us: AtomicU64,
    pub connected_us: AtomicU64,
}

impl ViewerStats {
    pub fn first(&self, since: Instant) {
        Self::mark(&self.first_us, since);
    }

    /// Records the time since `since` in `at` unless one is there.
    pub fn mark(at: &AtomicU64, since: Instant) {
        let us = since.elapsed().as_micros().max(1) as u64;
        let _ = at.compare_exchange(0, us, Ordering::Relaxed, Ordering::Relaxed);
    }
}

/// Percentiles (ms) of a per-viewer time in microseconds, over the viewers
/// that have one.
fn percentiles_ms(
    viewers: &[Arc<ViewerStats>],
    f: impl Fn(&ViewerStats) -> &AtomicU64,
) -> impl Fn(f64) -> Option<f64> {
    let mut us: Vec<u64> = viewers
        .iter()
        .map(|s| f(s).load(Ordering::Relaxed))
        .filter(|us| *us > 0)
        .collect();
    us.sort_unstable();
    move |p: f64| {
        us.get(((us.len() as f64 - 1.0) * p).round() as usize)
            .map(|us| *us as f64 / 1000.0)
    }
}

pub fn total(viewers: &[Arc<ViewerStats>]) -> u64 {
    viewers
        .iter()
        .map(|s| s.bytes.load(Ordering::Relaxed))
        .sum()
}

fn sum(viewers: &[Arc<ViewerStats>], f: impl Fn(&ViewerStats) -> &AtomicU64) -> u64 {
    viewers.iter().map(|s| f(s).load(Ordering::Relaxed)).sum()
}

/// The JSON summary of one protocol's viewers over `seconds`.
pub fn summarize(viewers: &[Arc<ViewerStats>], seconds: u64) -> serde_json::Value {
    let pct = percentiles_ms(viewers, |s| &s.first_us);
    let bytes = total(viewers);
    serde_json::json!({
        "viewers": viewers.len(),
        "with_media": viewers.iter().filter(|s| s.units.load(Ordering::Relaxed) > 0).count(),
        "failed": sum(viewers, |s| &s.failed),
        "bytes": bytes,
        "units": sum(viewers, |s| &s.units),
        "lost": sum(viewers, |s| &s.lost),
        "first_media_ms_p50": pct(0.5),
        "first_media_ms_p99": pct(0.99),
        "first_media_ms_max": pct(1.0),
        "kbit_s_per_viewer": bytes as f64 * 8.0 / 1000.0 / seconds.max(1) as f64 / viewers.len().max(1) as f64,
    })
}

/// The WHEP summary: [`summarize`] plus packets and decoded frames.
pub fn summarize_whep(
    viewers: &[Arc<ViewerStats>],
    decode: usize,
    seconds: u64,
) -> serde_json::Value {
    let mut s = summarize(viewers, seconds);
    if let Some(o) = s.as_object_mut() {
        o.insert("decode_viewers".into(), decode.min(viewers.len()).into());
        o.insert("packets".into(), sum(viewers, |s| &s.packets).into());
        o.insert("frames".into(), sum(viewers, |s| &s.frames).into());
        let answered = percentiles_ms(viewers, |s| &s.answered_us);
        let connected = percentiles_ms(viewers, |s| &s.connected_us);
        o.insert("answer_ms_p50".into(), answered(0.5).into());
        o.insert("answer_ms_p99".into(), answered(0.99).into());
        o.insert("connected_ms_p50".into(), connected(0.5).into());
        o.insert("connected_ms_p99".into(), connected(0.99).into());
        // Video frames per second per viewer from its first media to the
        // end of the window (the source's rate when nothing is lost).
        let mut fps: Vec<f64> = viewers
            .iter()
            .filter_map(|v| {
                let first = v.first_us.load(Ordering::Relaxed) as f64 / 1e6;
                let watched = seconds as f64 - first;
                (first > 0.0 && watched > 1.0)
                    .then(|| v.frames.load(Ordering::Relaxed) as f64 / watched)
            })
            .collect();
        fps.sort_by(f64::total_cmp);
        let mean = fps.iter().sum::<f64>() / fps.len().max(1) as f64;
        o.insert(
            "video_fps_mean".into(),
            (!fps.is_empty()).then_some(mean).into(),
        );
        o.insert("video_fps_min".into(), fps.first().copied().into());
    }
    s
}

/// User + system CPU seconds of a process (proc(5): fields 14 and 15 of
/// /proc/PID/stat, in clock ticks of 1/100 s).
pub fn proc_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Resident set size of a process (`VmRSS` of /proc/PID/status).
pub fn proc_rss_bytes(pid: u32) -> Option<u64> {
    proc_status_bytes(pid, "VmRSS:")
}

/// Its anonymous part (`RssAnon`: heap, stacks; not the pages of the
/// binary and its libraries, which code run for the first time — the
/// first WebRTC viewer's str0m and crypto — pulls in once, not per viewer).
pub fn proc_rss_anon_bytes(pid: u32) -> Option<u64> {
    proc_status_bytes(pid, "RssAnon:")
}

/// A `kB` field of /proc/PID/status, in bytes.
fn proc_status_bytes(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Viewers without a time yet are left out; the percentile is the
    /// nearest rank; 1.0 is the largest.
    #[test]
    fn percentiles_are_over_the_viewers_that_have_a_time() {
        let viewers: Vec<Arc<ViewerStats>> = [0u64, 3000, 1000, 2000, 0, 4000]
            .into_iter()
            .map(|us| {
                let s = ViewerStats::default();
                s.connected_us.store(us, Ordering::Relaxed);
                Arc::new(s)
            })
            .collect();
        let pct = percentiles_ms(&viewers, |s| &s.connected_us);
        assert_eq!(pct(0.0), Some(1.0));
        assert_eq!(pct(0.5), Some(3.0));
        assert_eq!(pct(1.0), Some(4.0));
        assert_eq!(percentiles_ms(&viewers, |s| &s.answered_us)(0.5), None);
    }

    #[test]
    fn a_time_is_recorded_once() {
        let s = ViewerStats::default();
        let since = Instant::now();
        ViewerStats::mark(&s.answered_us, since);
        let first = s.answered_us.load(Ordering::Relaxed);
        assert!(first > 0);
        std::thread::sleep(std::time::Duration::from_millis(2));
        ViewerStats::mark(&s.answered_us, since);
        assert_eq!(s.answered_us.load(Ordering::Relaxed), first);
    }
}
