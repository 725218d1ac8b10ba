//! `mediarelay-load`: drives one server with an RTMP publisher (an FLV file
//! at real-time pace, looped), N RTMP players, N LL-HLS viewers that behave
//! like real players (blocking playlist reloads, preload-hinted parts) and N
//! WHEP viewers (full ICE, DTLS and SRTP on str0m), and reports per second
//! what the viewers got and what the server process costs (CPU and RSS from
//! /proc). The publisher stamps its send time into every video frame (an
//! H.264 SEI, see [`latency`]) and viewers report ingest → egress latency.
//! Everything stays on the given addresses, is bounded in count and time,
//! and stops by itself.
//!
//! ```text
//! mediarelay-load --rtmp 127.0.0.1:1935 --http 127.0.0.1:8080 \
//!     --publish fixtures/media/res_a_320x240.flv --rtmp-players 100 \
//!     --hls-viewers 100 --whep-viewers 100 --seconds 30 \
//!     --server-pid $(pidof mediarelay)
//! ```
//!
//! `--smoke` checks correctness only (every viewer got media) and exits
//! non-zero otherwise; the test suite runs it. Results are printed as one
//! JSON object at the end (`--json` for nothing else).

mod hls;
mod latency;
mod rtmp;
mod stats;
mod whep;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::Parser;

use latency::Latencies;
use stats::{
    ViewerStats, proc_cpu_seconds, proc_rss_anon_bytes, proc_rss_bytes, summarize, summarize_whep,
    total,
};

#[derive(Parser, Debug, Clone)]
#[command(version, about = "Load and latency driver for a mediarelay server")]
struct Args {
    /// The server's RTMP listener.
    #[arg(long, default_value = "127.0.0.1:1935")]
    rtmp: SocketAddr,
    /// The server's HTTP listener (HLS and WHEP).
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// The path to publish to and read.
    #[arg(long, default_value = "live/load")]
    path: String,
    /// An FLV file to publish at real-time pace, looped; without it the
    /// path must already be published (and latency is not measured unless
    /// that publisher stamps frames the same way).
    #[arg(long)]
    publish: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    rtmp_players: usize,
    #[arg(long, default_value_t = 0)]
    hls_viewers: usize,
    /// WHEP viewers (POST to http://HTTP/PATH/whep, ICE + DTLS + SRTP).
    #[arg(long, default_value_t = 0)]
    whep_viewers: usize,
    /// How many of the WHEP viewers decrypt and depacketize (whole frames,
    /// latency); the others only count packets. Default: min(N, 5). They
    /// are spread evenly over the viewers' start order (see
    /// `is_decode_viewer`).
    #[arg(long)]
    whep_decode: Option<usize>,
    /// Read WHEP datagrams one by one even where the server sent them as
    /// one segmented run (by default the viewers' sockets take such a run
    /// in one read, `UDP_GRO`; see whep.rs).
    #[arg(long)]
    whep_no_gro: bool,
    /// Seconds between the publisher's start and the viewers' (with
    /// --publish); the server's RSS just before viewers come is reported as
    /// `server_rss_base_bytes`.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// How long viewers watch.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// The server's process id, for CPU and RSS.
    #[arg(long)]
    server_pid: Option<u32>,
    /// 10 RTMP players and 10 HLS viewers for 5 s (unless set otherwise);
    /// exit code 1 unless every viewer got media.
    #[arg(long)]
    smoke: bool,
    /// With --smoke: 10 WHEP viewers too (the server must have WebRTC on).
    #[arg(long)]
    smoke_whep: bool,
    /// Print only the final JSON summary.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    if args.smoke {
        if args.rtmp_players == 0 && args.hls_viewers == 0 && args.whep_viewers == 0 {
            args.rtmp_players = 10;
            args.hls_viewers = 10;
            if args.smoke_whep {
                args.whep_viewers = 10;
            }
        }
        if args.seconds == 10 {
            args.seconds = 5;
        }
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mediarelay-load: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(args))
}

fn viewers(n: usize) -> Vec<Arc<ViewerStats>> {
    (0..n).map(|_| Arc::new(ViewerStats::default())).collect()
}

/// Latency samples per protocol.
#[derive(Default)]
struct Probes {
    rtmp: Latencies,
    hls: Latencies,
    whep: Latencies,
}

/// Whether WHEP viewer `i` of `n` is one of the `decode` that decrypt and
/// measure latency: every `n / decode`-th from the first, so they sit
/// across the order in which the viewers start. The server writes a frame
/// to its viewers one after the other, roughly in the order they came;
/// decoding the first few only would measure its luckiest viewers.
fn is_decode_viewer(i: usize, n: usize, decode: usize) -> bool {
    if decode == 0 {
        return false;
    }
    let stride = (n / decode).max(1);
    i.is_multiple_of(stride) && i / stride < decode
}

async fn run(args: Args) -> ExitCode {
    let deadline = Instant::now() + Duration::from_secs(args.warmup + args.seconds + 5);
    if let Some(file) = args.publish.clone() {
        let (addr, path) = (args.rtmp, args.path.clone());
        tokio::spawn(async move {
            if let Err(e) = rtmp::publish(addr, &path, &file, deadline).await {
                eprintln!("publisher: {e}");
            }
        });
        // With HLS viewers, start the path's muxer (it starts with the first
        // request) 1 s in, so its segments exist before viewers come.
        if args.hls_viewers > 0 {
            let base = format!("http://{}/{}", args.http, args.path);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build();
                if let Ok(client) = client {
                    hls::prime(&client, &base).await;
                }
            });
        }
        // Let the stream start before viewers come.
        tokio::time::sleep(Duration::from_secs(args.warmup)).await;
    }
    let rss_base = args.server_pid.and_then(proc_rss_bytes);
    let rss_anon_base = args.server_pid.and_then(proc_rss_anon_bytes);
    let start = Instant::now();
    let watch_until = start + Duration::from_secs(args.seconds);
    let probes = Arc::new(Probes::default());
    let (rtmp, hls, whep) = (
        viewers(args.rtmp_players),
        viewers(args.hls_viewers),
        viewers(args.whep_viewers),
    );
    let whep_decode = args.whep_decode.unwrap_or(5).min(args.whep_viewers);
    let mut tasks = Vec::new();
    for s in &rtmp {
        let (s, addr, path, probes) = (
            Arc::clone(s),
            args.rtmp,
            args.path.clone(),
            Arc::clone(&probes),
        );
        tasks.push(tokio::spawn(async move {
            if rtmp::rtmp_player(addr, &path, &s, &probes.rtmp, start, watch_until)
                .await
                .is_err()
            {
                s.failed.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host((args.hls_viewers + args.whep_viewers).max(1))
        .timeout(Duration::from_secs(10))
        .build();
    let Ok(client) = client else {
        eprintln!("mediarelay-load: no HTTP client");
        return ExitCode::FAILURE;
    };
    for s in &hls {
        let (s, base, client, probes) = (
            Arc::clone(s),
            format!("http://{}/{}", args.http, args.path),
            client.clone(),
            Arc::clone(&probes),
        );
        tasks.push(tokio::spawn(async move {
            if hls::hls_viewer(&client, &base, &s, &probes.hls, start, watch_until)
                .await
                .is_err()
            {
                s.failed.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let quiet = args.json;
    for (i, s) in whep.iter().enumerate() {
        let (s, http, path, client, probes) = (
            Arc::clone(s),
            args.http,
            args.path.clone(),
            client.clone(),
            Arc::clone(&probes),
        );
        let decode = is_decode_viewer(i, args.whep_viewers, whep_decode);
        let how = whep::Viewing {
            decode,
            gro: !args.whep_no_gro,
        };
        tasks.push(tokio::spawn(async move {
            let r =
                whep::whep_viewer(&client, http, &path, how, &s, &probes.whep, watch_until).await;
            if let Err(e) = r {
                if !quiet {
                    eprintln!("whep viewer {i}: {e}");
                }
                s.failed.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }

    // Once a second: what the viewers got, what the server costs.
    let mut cpu_before = args.server_pid.and_then(proc_cpu_seconds);
    let cpu_at_start = cpu_before;
    let load_cpu_at_start = proc_cpu_seconds(std::process::id());
    let (mut rtmp_before, mut hls_before, mut whep_before) =
        (total(&rtmp), total(&hls), total(&whep));
    let mut rss_max = 0u64;
    let mut rss_last = 0u64;
    let mut rss_anon_last = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    // Bytes at half time: the rate of the second half is the steady one
    // (after every viewer's start).
    let half = start + Duration::from_secs(args.seconds / 2);
    let half_unix_us = latency::unix_us_now() + args.seconds * 1_000_000 / 2;
    let mut at_half = None;
    while Instant::now() < watch_until {
        tick.tick().await;
        let (r, h, w) = (total(&rtmp), total(&hls), total(&whep));
        let cpu_now = args.server_pid.and_then(proc_cpu_seconds);
        let cpu = match (cpu_before, cpu_now) {
            (Some(a), Some(b)) => format!("{:.0}%", (b - a) * 100.0),
            _ => "-".into(),
        };
        let rss = args.server_pid.and_then(proc_rss_bytes).unwrap_or(0);
        rss_max = rss_max.max(rss);
        rss_last = rss;
        rss_anon_last = args.server_pid.and_then(proc_rss_anon_bytes);
        if !args.json {
            let per = |now: u64, before: u64, n: usize| {
                (now - before) as f64 * 8.0 / 1000.0 / n.max(1) as f64
            };
            println!(
                "t={:>3}s rtmp {:>7.0} kbit/s/viewer  hls {:>7.0} kbit/s/viewer  whep {:>7.0} kbit/s/viewer  server cpu {cpu} rss {} MiB",
                start.elapsed().as_secs(),
                per(r, rtmp_before, rtmp.len()),
                per(h, hls_before, hls.len()),
                per(w, whep_before, whep.len()),
                rss >> 20
            );
        }
        (rtmp_before, hls_before, whep_before, cpu_before) = (r, h, w, cpu_now);
        if at_half.is_none() && Instant::now() >= half {
            at_half = Some((Instant::now(), [r, h, w]));
        }
    }
    // The server's CPU over the watching window (not the tail below).
    let server_cpu_seconds = match (cpu_at_start, args.server_pid.and_then(proc_cpu_seconds)) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let second_half = at_half.map(|(at, bytes)| {
        let secs = at.elapsed().as_secs_f64().max(0.001);
        let now = [total(&rtmp), total(&hls), total(&whep)];
        let n = [rtmp.len(), hls.len(), whep.len()];
        let rate = |i: usize| (now[i] - bytes[i]) as f64 * 8.0 / 1000.0 / secs / n[i].max(1) as f64;
        [rate(0), rate(1), rate(2)]
    });
    let load_cpu_seconds = match (load_cpu_at_start, proc_cpu_seconds(std::process::id())) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    let mut summaries = [
        summarize(&rtmp, args.seconds),
        summarize(&hls, args.seconds),
        summarize_whep(&whep, whep_decode, args.seconds),
    ];
    for (i, s) in summaries.iter_mut().enumerate() {
        if let (Some(o), Some(rates)) = (s.as_object_mut(), second_half) {
            o.insert("kbit_s_per_viewer_second_half".into(), rates[i].into());
        }
    }
    let [rtmp_summary, hls_summary, whep_summary] = summaries;
    let summary = serde_json::json!({
        "seconds": args.seconds,
        "server_cpu_seconds": server_cpu_seconds,
        "load_cpu_seconds": load_cpu_seconds,
        "rtmp": rtmp_summary,
        "hls": hls_summary,
        "whep": whep_summary,
        "latency_ms": {
            "rtmp": probes.rtmp.summary(half_unix_us),
            "hls": probes.hls.summary(half_unix_us),
            "whep": probes.whep.summary(half_unix_us),
        },
        "server_rss_max_bytes": rss_max,
        "server_rss_base_bytes": rss_base,
        "server_rss_end_bytes": rss_last,
        "server_rss_anon_base_bytes": rss_anon_base,
        "server_rss_anon_end_bytes": rss_anon_last,
    });
    println!("{summary}");
    let all_got_media = rtmp
        .iter()
        .chain(&hls)
        .chain(&whep)
        .all(|s| s.units.load(Ordering::Relaxed) > 0);
    if args.smoke && !all_got_media {
        eprintln!("mediarelay-load: some viewers got no media");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

type Error = Box<dyn std::error::Error + Send + Sync>;

#[cfg(test)]
mod tests {
    use super::is_decode_viewer;

    #[test]
    fn decode_viewers_are_spread_over_the_start_order() {
        let chosen = |n, d| {
            (0..n)
                .filter(|&i| is_decode_viewer(i, n, d))
                .collect::<Vec<_>>()
        };
        assert_eq!(chosen(100, 5), vec![0, 20, 40, 60, 80]);
        assert_eq!(chosen(10, 10), (0..10).collect::<Vec<_>>());
        assert_eq!(chosen(7, 3), vec![0, 2, 4]);
        assert_eq!(chosen(3, 5), vec![0, 1, 2], "at most n");
        assert!(chosen(50, 0).is_empty());
    }
}
