//! `mediarelay-load`: drives one server with an RTMP publisher (an FLV file
//! at real-time pace, looped), N RTMP players and N LL-HLS viewers that
//! behave like real players (blocking playlist reloads, preload-hinted
//! parts), and reports per second what the viewers got and what the server
//! process costs (CPU and RSS from /proc). Everything stays on the given
//! addresses, is bounded in count and time, and stops by itself.
//!
//! ```text
//! mediarelay-load --rtmp 127.0.0.1:1935 --http 127.0.0.1:8080 \
//!     --publish fixtures/media/res_a_320x240.flv --rtmp-players 100 \
//!     --hls-viewers 100 --seconds 30 --server-pid $(pidof mediarelay)
//! ```
//!
//! `--smoke` checks correctness only (every viewer got media) and exits
//! non-zero otherwise; the test suite runs it. Results are printed as one
//! JSON object at the end (`--json` for nothing else).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use mediarelay::container::flv_file::{FlvFile, TAG_AUDIO, TAG_VIDEO};
use mediarelay::protocol::rtmp::{ClientEvent, ClientSession};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Parser, Debug, Clone)]
#[command(version, about = "Load and latency driver for a mediarelay server")]
struct Args {
    /// The server's RTMP listener.
    #[arg(long, default_value = "127.0.0.1:1935")]
    rtmp: SocketAddr,
    /// The server's HTTP listener (HLS).
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// The path to publish to and read.
    #[arg(long, default_value = "live/load")]
    path: String,
    /// An FLV file to publish at real-time pace, looped; without it the
    /// path must already be published.
    #[arg(long)]
    publish: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    rtmp_players: usize,
    #[arg(long, default_value_t = 0)]
    hls_viewers: usize,
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
    /// Print only the final JSON summary.
    #[arg(long)]
    json: bool,
}

/// What one viewer got.
#[derive(Default)]
struct ViewerStats {
    bytes: AtomicU64,
    /// Video frames (RTMP) or parts (HLS).
    units: AtomicU64,
    /// Gaps: RTMP video timestamps jumping by more than a second, HLS
    /// parts that failed.
    lost: AtomicU64,
    /// Time from start to the first video frame / part, in microseconds
    /// (0: none yet).
    first_us: AtomicU64,
    failed: AtomicU64,
}

impl ViewerStats {
    fn first(&self, since: Instant) {
        let us = since.elapsed().as_micros().max(1) as u64;
        let _ = self
            .first_us
            .compare_exchange(0, us, Ordering::Relaxed, Ordering::Relaxed);
    }
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    if args.smoke {
        if args.rtmp_players == 0 && args.hls_viewers == 0 {
            args.rtmp_players = 10;
            args.hls_viewers = 10;
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

async fn run(args: Args) -> ExitCode {
    let deadline = Instant::now() + Duration::from_secs(args.seconds + 5);
    if let Some(file) = args.publish.clone() {
        let (rtmp, path) = (args.rtmp, args.path.clone());
        tokio::spawn(async move {
            if let Err(e) = publish(rtmp, &path, &file, deadline).await {
                eprintln!("publisher: {e}");
            }
        });
        // Let the stream start before viewers come.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let start = Instant::now();
    let watch_until = start + Duration::from_secs(args.seconds);
    let rtmp: Vec<Arc<ViewerStats>> = (0..args.rtmp_players)
        .map(|_| Arc::new(ViewerStats::default()))
        .collect();
    let hls: Vec<Arc<ViewerStats>> = (0..args.hls_viewers)
        .map(|_| Arc::new(ViewerStats::default()))
        .collect();
    let mut tasks = Vec::new();
    for s in &rtmp {
        let (s, addr, path) = (Arc::clone(s), args.rtmp, args.path.clone());
        tasks.push(tokio::spawn(async move {
            if rtmp_player(addr, &path, &s, start, watch_until)
                .await
                .is_err()
            {
                s.failed.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.hls_viewers.max(1))
        .timeout(Duration::from_secs(10))
        .build();
    let Ok(client) = client else {
        eprintln!("mediarelay-load: no HTTP client");
        return ExitCode::FAILURE;
    };
    for s in &hls {
        let (s, base, client) = (
            Arc::clone(s),
            format!("http://{}/{}", args.http, args.path),
            client.clone(),
        );
        tasks.push(tokio::spawn(async move {
            if hls_viewer(&client, &base, &s, start, watch_until)
                .await
                .is_err()
            {
                s.failed.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }

    // Once a second: what the viewers got, what the server costs.
    let mut cpu_before = args.server_pid.and_then(proc_cpu_seconds);
    let cpu_at_start = cpu_before;
    let (mut rtmp_before, mut hls_before) = (total(&rtmp), total(&hls));
    let mut rss_max = 0u64;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    while Instant::now() < watch_until {
        tick.tick().await;
        let (r, h) = (total(&rtmp), total(&hls));
        let cpu_now = args.server_pid.and_then(proc_cpu_seconds);
        let cpu = match (cpu_before, cpu_now) {
            (Some(a), Some(b)) => format!("{:.0}%", (b - a) * 100.0),
            _ => "-".into(),
        };
        let rss = args.server_pid.and_then(proc_rss_bytes).unwrap_or(0);
        rss_max = rss_max.max(rss);
        if !args.json {
            let per = |now: u64, before: u64, n: usize| {
                (now - before) as f64 * 8.0 / 1000.0 / n.max(1) as f64
            };
            println!(
                "t={:>3}s rtmp {:>7.0} kbit/s/viewer  hls {:>7.0} kbit/s/viewer  server cpu {cpu} rss {} MiB",
                start.elapsed().as_secs(),
                per(r, rtmp_before, rtmp.len()),
                per(h, hls_before, hls.len()),
                rss >> 20
            );
        }
        (rtmp_before, hls_before, cpu_before) = (r, h, cpu_now);
    }
    // The server's CPU over the watching window (not the tail below).
    let server_cpu_seconds = match (cpu_at_start, args.server_pid.and_then(proc_cpu_seconds)) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    let summary = serde_json::json!({
        "seconds": args.seconds,
        "server_cpu_seconds": server_cpu_seconds,
        "rtmp": summarize(&rtmp),
        "hls": summarize(&hls),
        "server_rss_max_bytes": rss_max,
    });
    println!("{summary}");
    let all_got_media = rtmp
        .iter()
        .chain(&hls)
        .all(|s| s.units.load(Ordering::Relaxed) > 0);
    if args.smoke && !all_got_media {
        eprintln!("mediarelay-load: some viewers got no media");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn total(viewers: &[Arc<ViewerStats>]) -> u64 {
    viewers
        .iter()
        .map(|s| s.bytes.load(Ordering::Relaxed))
        .sum()
}

fn summarize(viewers: &[Arc<ViewerStats>]) -> serde_json::Value {
    let mut first: Vec<u64> = viewers
        .iter()
        .map(|s| s.first_us.load(Ordering::Relaxed))
        .filter(|us| *us > 0)
        .collect();
    first.sort_unstable();
    let pct = |p: f64| {
        first
            .get(((first.len() as f64 - 1.0) * p).round() as usize)
            .map(|us| *us as f64 / 1000.0)
    };
    serde_json::json!({
        "viewers": viewers.len(),
        "with_media": viewers.iter().filter(|s| s.units.load(Ordering::Relaxed) > 0).count(),
        "failed": viewers.iter().map(|s| s.failed.load(Ordering::Relaxed)).sum::<u64>(),
        "bytes": total(viewers),
        "units": viewers.iter().map(|s| s.units.load(Ordering::Relaxed)).sum::<u64>(),
        "lost": viewers.iter().map(|s| s.lost.load(Ordering::Relaxed)).sum::<u64>(),
        "first_media_ms_p50": pct(0.5),
        "first_media_ms_p99": pct(0.99),
    })
}

type Error = Box<dyn std::error::Error + Send + Sync>;

/// An RTMP connection driven by the project's sans-IO client.
struct Rtmp {
    socket: TcpStream,
    session: ClientSession,
    buf: Vec<u8>,
}

impl Rtmp {
    async fn connect(addr: SocketAddr, app: &str) -> Result<Rtmp, Error> {
        let socket = TcpStream::connect(addr).await?;
        socket.set_nodelay(true)?;
        let mut c = Rtmp {
            socket,
            session: ClientSession::new(),
            buf: vec![0; 64 * 1024],
        };
        c.session.connect(app, &format!("rtmp://{addr}/{app}"));
        c.wait_for(|e| matches!(e, ClientEvent::Connected)).await?;
        c.session.create_stream();
        c.wait_for(|e| matches!(e, ClientEvent::StreamCreated { .. }))
            .await?;
        Ok(c)
    }

    async fn flush(&mut self) -> Result<(), Error> {
        while let Some(b) = self.session.take_output() {
            self.socket.write_all(&b).await?;
        }
        Ok(())
    }

    /// Reads once into the session; `false` at the end of the stream.
    async fn read(&mut self) -> Result<bool, Error> {
        let n = self.socket.read(&mut self.buf).await?;
        if n == 0 {
            return Ok(false);
        }
        self.session.handle_input(&self.buf[..n])?;
        self.flush().await?;
        Ok(true)
    }

    async fn wait_for(
        &mut self,
        want: impl Fn(&ClientEvent) -> bool,
    ) -> Result<ClientEvent, Error> {
        self.flush().await?;
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                while let Some(e) = self.session.poll_event() {
                    if want(&e) {
                        return Ok(e);
                    }
                    if let ClientEvent::Status { level, code, .. } = &e
                        && level == "error"
                    {
                        return Err(format!("refused: {code}").into());
                    }
                }
                if !self.read().await? {
                    return Err("connection closed".into());
                }
            }
        })
        .await
        .map_err(|_| Error::from("no answer in 10 s"))?
    }
}

fn split(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("live", path))
}

/// Publishes `file`'s tags at their own pace, looped, until `deadline`.
async fn publish(
    addr: SocketAddr,
    path: &str,
    file: &PathBuf,
    deadline: Instant,
) -> Result<(), Error> {
    let data = Bytes::from(std::fs::read(file)?);
    let (app, key) = split(path);
    let mut c = Rtmp::connect(addr, app).await?;
    c.session.publish(key);
    c.wait_for(|e| matches!(e, ClientEvent::PublishStarted))
        .await?;
    let started = Instant::now();
    let mut offset = 0u32;
    while Instant::now() < deadline {
        let mut reader = FlvFile::new(data.clone())?;
        let mut last = 0u32;
        while let Some(tag) = reader.next_tag() {
            let tag = tag?;
            let ts = offset.wrapping_add(tag.timestamp);
            last = last.max(tag.timestamp);
            let due = started + Duration::from_millis(u64::from(ts));
            tokio::time::sleep_until(due.into()).await;
            match tag.tag_type {
                TAG_VIDEO => c.session.send_video(ts, &tag.body),
                TAG_AUDIO => c.session.send_audio(ts, &tag.body),
                _ => continue,
            }
            c.flush().await?;
            if Instant::now() >= deadline {
                break;
            }
        }
        offset = offset.wrapping_add(last + 40);
    }
    Ok(())
}

async fn rtmp_player(
    addr: SocketAddr,
    path: &str,
    s: &ViewerStats,
    start: Instant,
    until: Instant,
) -> Result<(), Error> {
    let (app, key) = split(path);
    let mut c = Rtmp::connect(addr, app).await?;
    c.session.play(key);
    c.wait_for(|e| matches!(e, ClientEvent::PlayStarted))
        .await?;
    let mut last_video: Option<u32> = None;
    while Instant::now() < until {
        let more = tokio::time::timeout_at(until.into(), c.read()).await;
        match more {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) | Ok(Err(_)) => return Err("the server closed the connection".into()),
            Err(_) => break,
        }
        while let Some(e) = c.session.poll_event() {
            match e {
                ClientEvent::Video { timestamp, payload } => {
                    s.bytes.fetch_add(payload.len() as u64, Ordering::Relaxed);
                    s.units.fetch_add(1, Ordering::Relaxed);
                    s.first(start);
                    if let Some(last) = last_video
                        && timestamp.wrapping_sub(last) > 1000
                        && timestamp > last
                    {
                        s.lost.fetch_add(1, Ordering::Relaxed);
                    }
                    last_video = Some(timestamp);
                }
                ClientEvent::Audio { payload, .. } => {
                    s.bytes.fetch_add(payload.len() as u64, Ordering::Relaxed);
                }
                _ => {}
            }
        }
    }
    Ok(())
}

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
async fn hls_viewer(
    client: &reqwest::Client,
    base: &str,
    s: &ViewerStats,
    start: Instant,
    until: Instant,
) -> Result<(), Error> {
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

/// User + system CPU seconds of a process (proc(5): fields 14 and 15 of
/// /proc/PID/stat, in clock ticks of 1/100 s).
fn proc_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Resident set size of a process (`VmRSS` of /proc/PID/status).
fn proc_rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}
