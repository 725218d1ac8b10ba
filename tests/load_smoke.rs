//! The load tool's smoke mode against a running server: an FLV publisher at
//! real-time pace, 10 RTMP players and 10 LL-HLS viewers (and with
//! `--smoke-whep` 10 WHEP viewers) for 5 s; it checks only that every viewer
//! got media and that the latency probe found its stamps (benchmarks are not
//! tests: no timing is asserted here, see BENCHMARKS.md).

mod common;

use std::time::Duration;

use common::*;
use mediarelay::app::App;

/// Runs the smoke mode against `app` with `extra` flags; the JSON summary
/// and the whole output.
async fn smoke(app: &App, extra: &[&str]) -> (serde_json::Value, String) {
    let rtmp = app.rtmp_addr.to_string();
    let http = app.http_addr.to_string();
    let pid = std::process::id().to_string();
    let fixture = fixture("res_a_320x240.flv");
    let mut args = vec![
        "--rtmp",
        &rtmp,
        "--http",
        &http,
        "--path",
        "live/load",
        "--publish",
        fixture.to_str().unwrap(),
        "--server-pid",
        &pid,
        "--smoke",
    ];
    args.extend_from_slice(extra);
    let (ok, out, err) = run(
        env!("CARGO_BIN_EXE_mediarelay-load"),
        &args,
        Duration::from_secs(40),
    )
    .await;
    assert!(ok, "mediarelay-load failed: {err}\n{out}");
    let summary: serde_json::Value =
        serde_json::from_str(out.lines().last().unwrap_or_default()).unwrap();
    eprintln!("{out}");
    (summary, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_tool_s_whep_viewers_all_get_media_and_latency_stamps() {
    let app = start("").await;
    let (summary, _) = smoke(&app, &["--smoke-whep", "--whep-decode", "3"]).await;
    for protocol in ["rtmp", "hls", "whep"] {
        let s = &summary[protocol];
        assert_eq!(s["viewers"], 10, "{summary}");
        assert_eq!(s["with_media"], 10, "{summary}");
        assert_eq!(s["failed"], 0, "{summary}");
        // Every protocol's viewers found the publisher's SEI stamps.
        let latency = &summary["latency_ms"][protocol];
        assert!(latency["samples"].as_u64().unwrap() > 10, "{summary}");
        assert!(latency["p50"].as_f64().unwrap() >= 0.0, "{summary}");
    }
    let whep = &summary["whep"];
    assert_eq!(whep["decode_viewers"], 3, "{summary}");
    // 3 decode viewers × ~5 s of 25-30 fps video.
    assert!(whep["frames"].as_u64().unwrap() > 3 * 50, "{summary}");
    assert!(whep["packets"].as_u64().unwrap() > 10 * 100, "{summary}");
    assert!(whep["bytes"].as_u64().unwrap() > 10 * 20_000, "{summary}");
    assert!(whep["first_media_ms_p50"].as_f64().is_some(), "{summary}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_tool_s_viewers_all_get_media() {
    let app = start("").await;
    let (summary, out) = smoke(&app, &[]).await;
    for protocol in ["rtmp", "hls"] {
        let s = &summary[protocol];
        assert_eq!(s["viewers"], 10, "{summary}");
        assert_eq!(s["with_media"], 10, "{summary}");
        assert_eq!(s["failed"], 0, "{summary}");
        assert!(s["bytes"].as_u64().unwrap() > 10 * 20_000, "{summary}");
    }
    // No WHEP viewers unless asked for.
    assert_eq!(summary["whep"]["viewers"], 0, "{summary}");
    // The tool's per-second lines read the server's CPU and memory.
    assert!(out.contains("server cpu"), "{out}");
    assert!(summary["server_rss_max_bytes"].as_u64().unwrap() > 1 << 20);
    app.shutdown().await;
}
