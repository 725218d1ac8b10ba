//! The load tool's smoke mode against a running server: an FLV publisher at
//! real-time pace, 10 RTMP players and 10 LL-HLS viewers for 5 s; it checks
//! only that every viewer got media (benchmarks are not tests: no timing is
//! asserted here, see BENCHMARKS.md).

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_tool_s_viewers_all_get_media() {
    let app = start("").await;
    let (ok, out, err) = run(
        env!("CARGO_BIN_EXE_mediarelay-load"),
        &[
            "--rtmp",
            &app.rtmp_addr.to_string(),
            "--http",
            &app.http_addr.to_string(),
            "--path",
            "live/load",
            "--publish",
            fixture("res_a_320x240.flv").to_str().unwrap(),
            "--server-pid",
            &std::process::id().to_string(),
            "--smoke",
        ],
        Duration::from_secs(40),
    )
    .await;
    assert!(ok, "mediarelay-load failed: {err}\n{out}");
    let summary: serde_json::Value =
        serde_json::from_str(out.lines().last().unwrap_or_default()).unwrap();
    eprintln!("{out}");
    for protocol in ["rtmp", "hls"] {
        let s = &summary[protocol];
        assert_eq!(s["viewers"], 10, "{summary}");
        assert_eq!(s["with_media"], 10, "{summary}");
        assert_eq!(s["failed"], 0, "{summary}");
        assert!(s["bytes"].as_u64().unwrap() > 10 * 20_000, "{summary}");
    }
    // The tool's per-second lines read the server's CPU and memory.
    assert!(out.contains("server cpu"), "{out}");
    assert!(summary["server_rss_max_bytes"].as_u64().unwrap() > 1 << 20);
    app.shutdown().await;
}
