//! hls.js in Debian's headless Chromium plays the LL-HLS stream (the player
//! people embed in web pages; needs `npm ci` in tests/browser, done by
//! scripts/test.sh).

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_js_in_chromium_plays_the_stream_in_low_latency_mode() {
    let dir = common::repo_dir().join("tests/browser");
    assert!(
        dir.join("node_modules/hls.js").exists(),
        "run `npm ci` in tests/browser (scripts/test.sh does)"
    );
    let app = start("").await;
    let _push = push("high_bframes_aac48.mp4", &rtmp_url(&app, "live/web"), true);
    wait_published(&app, "live/web").await;
    let script = dir.join("play_hls.mjs");
    let (ok, out, err) = run(
        "node",
        &[script.to_str().unwrap(), &hls_url(&app, "live/web"), "6"],
        Duration::from_secs(90),
    )
    .await;
    assert!(ok, "node failed: {err}");
    let line = out.lines().last().unwrap_or_default();
    let r: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {out} {err}"));
    eprintln!("hls.js saw: {r}");
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["lowLatency"], true, "{r}");
    assert!(r["currentTime"].as_f64().unwrap() >= 5.0, "{r}");
    assert!(r["frames"].as_u64().unwrap() >= 120, "{r}");
    assert_eq!(
        (r["width"].as_u64(), r["height"].as_u64()),
        (Some(640), Some(360)),
        "{r}"
    );
    let latency = r["latency"].as_f64().unwrap();
    assert!(latency < 4.0, "hls.js latency {latency} s: {r}");
    app.shutdown().await;
}
