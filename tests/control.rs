//! The control plane against a running server: live configuration through
//! the API and by reloading the file.

mod common;

use std::time::Duration;

use common::camera::Camera;
use common::*;
use mediarelay::app::App;
use serde_json::{Value, json};

async fn api(app: &App, method: &str, target: &str, body: Option<Value>) -> HttpResponse {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    http_with(
        method,
        app.api_addr,
        target,
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .await
}

/// The state of `path` in the API, or `None` for a 404.
async fn path_state(app: &App, path: &str) -> Option<Value> {
    let r = api(app, "GET", &format!("/v1/paths/{path}"), None).await;
    (r.status == 200).then(|| r.json())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_config_is_shown_with_secrets_redacted_and_bad_changes_are_refused() {
    let app = start(
        r#"
[paths."door"]
source = "rtsp://admin:hunter2@127.0.0.1:9/ch1"
source_pass = "other"
on_demand = true
"#,
    )
    .await;
    let r = api(&app, "GET", "/v1/config", None).await;
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(
        !text.contains("hunter2") && !text.contains("other"),
        "{text}"
    );
    let c = r.json();
    assert_eq!(
        c["paths"]["door"]["source"],
        "rtsp://admin:***@127.0.0.1:9/ch1"
    );
    assert_eq!(c["hls"]["segment_count"], 7);

    // A global change: applied, shown, and in effect.
    let r = api(
        &app,
        "PATCH",
        "/v1/config",
        Some(json!({"hls": {"segment_count": 9}})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["hls"]["segment_count"], 9);
    assert_eq!(app.hub.config().hls.segment_count, 9);

    // Refusals name the field; the running config stays as it was.
    for (method, target, body, field) in [
        (
            "PATCH",
            "/v1/config",
            json!({"hls": {"segment_count": 1}}),
            "hls.segment_count",
        ),
        (
            "PATCH",
            "/v1/config",
            json!({"hls": {"part_duration": "soon"}}),
            "hls.part_duration",
        ),
        (
            "PATCH",
            "/v1/config",
            json!({"rtmp_listen": ":1999"}),
            "rtmp_listen",
        ),
        ("PATCH", "/v1/config", json!([1, 2]), ""),
        (
            "PUT",
            "/v1/config/paths/cam",
            json!({"source": "ftp://x"}),
            "paths.\"cam\".source",
        ),
        (
            "PUT",
            "/v1/config/paths/cam",
            json!({"on_demand": "yes"}),
            "paths.\"cam\".on_demand",
        ),
        (
            "PUT",
            "/v1/config/paths/cam",
            json!({"no_such_key": 1}),
            "paths.\"cam\".no_such_key",
        ),
        (
            "PUT",
            "/v1/config/paths/a/%2e%2e/b",
            json!({}),
            "paths.\"a/../b\"",
        ),
    ] {
        let r = api(&app, method, target, Some(body.clone())).await;
        assert_eq!(r.status, 400, "{method} {target} {body}: {}", r.text());
        let e = r.json();
        assert_eq!(e["field"], field, "{method} {target} {body}: {e}");
        assert!(e["error"].as_str().is_some_and(|s| !s.is_empty()));
    }
    let r = http_with(
        "PATCH",
        app.api_addr,
        "/v1/config",
        &[("Content-Type", "application/json")],
        b"{not json",
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(app.hub.config().hls.segment_count, 9);
    assert!(!app.hub.config().paths.contains_key("cam"));

    // Path rules: create (201), read, replace (200), patch, delete (204), 404s.
    let r = api(
        &app,
        "PUT",
        "/v1/config/paths/live/cam1",
        Some(json!({"takeover": true})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = api(&app, "GET", "/v1/config/paths/live/cam1", None).await;
    assert_eq!(r.json(), json!({"takeover": true}));
    let r = api(
        &app,
        "PATCH",
        "/v1/config/paths/live/cam1",
        Some(json!({"publisher_grace": "2s"})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"takeover": true, "publisher_grace": "2s"}));
    assert_eq!(
        app.hub.config().path_settings("live/cam1").publisher_grace,
        Duration::from_secs(2)
    );
    // Sent back as shown, the redacted camera password is kept.
    let shown = api(&app, "GET", "/v1/config/paths/door", None).await.json();
    let r = api(&app, "PUT", "/v1/config/paths/door", Some(shown)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        app.hub.config().paths["door"].source.as_deref(),
        Some("rtsp://admin:hunter2@127.0.0.1:9/ch1")
    );
    assert_eq!(
        api(&app, "DELETE", "/v1/config/paths/live/cam1", None)
            .await
            .status,
        204
    );
    for (method, target) in [
        ("DELETE", "/v1/config/paths/live/cam1"),
        ("GET", "/v1/config/paths/live/cam1"),
        ("PATCH", "/v1/config/paths/live/cam1"),
    ] {
        let r = api(&app, method, target, Some(json!({}))).await;
        assert_eq!(r.status, 404, "{method} {target}");
    }
    // Server info.
    let info = api(&app, "GET", "/v1/info", None).await.json();
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    assert!(info["uptime_seconds"].is_u64());
    assert_eq!(info["listeners"]["rtmp_listen"], app.rtmp_addr.to_string());
    assert_eq!(info["listeners"]["api_listen"], app.api_addr.to_string());
    assert!(info["listeners"].get("https_listen").is_none());
    app.shutdown().await;
}

/// The issue's case: through the API a camera path is added and another
/// removed while a third path keeps playing, without a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_is_added_and_another_removed_while_a_third_path_plays_on() {
    let cam = Camera::start().await;
    let app = start(&format!(
        r#"
[paths."old_cam"]
source = "{}"
rtsp_transport = "tcp"
publisher_grace = "500ms"
"#,
        cam.url("h264_aac")
    ))
    .await;
    wait_published(&app, "old_cam").await;
    let _push = push(
        "baseline_aac44_mono.mp4",
        &rtmp_url(&app, "live/third"),
        true,
    );
    wait_published(&app, "live/third").await;
    let mut player = RtmpClient::play(app.rtmp_addr, "live", "third")
        .await
        .unwrap_or_else(|e| panic!("play refused: {e:?}"));
    let (before, open) = player.video_for(Duration::from_secs(1)).await;
    assert!(open && !before.is_empty());
    let sessions_before = app.hub.sessions().len();

    let r = api(
        &app,
        "PUT",
        "/v1/config/paths/new_cam",
        Some(json!({"source": cam.url("video_only"), "rtsp_transport": "tcp"})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = api(&app, "DELETE", "/v1/config/paths/old_cam", None).await;
    assert_eq!(r.status, 204, "{}", r.text());

    // The new camera comes up by itself (not on demand) ...
    eventually(Duration::from_secs(15), "new_cam ready", || async {
        let p = path_state(&app, "new_cam").await?;
        (p["source"]["state"] == "ready").then_some(())
    })
    .await;
    let probe = probe_streams(&rtmp_url(&app, "new_cam")).await;
    assert_eq!(probe[0]["codec_name"], "h264");
    // ... the removed one is gone ...
    eventually(Duration::from_secs(10), "old_cam gone", || async {
        path_state(&app, "old_cam").await.is_none().then_some(())
    })
    .await;
    assert!(
        !app.hub.sessions().iter().any(|s| s.path == "old_cam"),
        "old_cam's source session ended"
    );
    // ... and the third path's player never noticed.
    let (during, open) = player.video_for(Duration::from_secs(2)).await;
    assert!(open, "the player of the third path stays connected");
    let all: Vec<u32> = before.iter().chain(&during).copied().collect();
    let gaps: Vec<i64> = all
        .windows(2)
        .map(|w| i64::from(w[1]) - i64::from(w[0]))
        .collect();
    assert!(
        gaps.iter().all(|g| (0..=200).contains(g)),
        "video timestamps go on without a jump: {gaps:?}"
    );
    assert!(
        app.hub
            .sessions()
            .iter()
            .filter(|s| s.path == "live/third")
            .count()
            == 2,
        "publisher and player of live/third are the same sessions ({sessions_before} before)"
    );
    drop(player);
    app.shutdown().await;
    cam.stop().await;
}

/// A metric sample: name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

/// Samples of a Prometheus text page: (name, labels, value). Panics on a
/// line that is not in the text format, or a sample before its family's
/// `# TYPE`.
fn parse_metrics(text: &str) -> Vec<Sample> {
    let mut typed = std::collections::HashSet::new();
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().unwrap();
            let kind = parts.next().unwrap();
            assert!(["counter", "gauge"].contains(&kind), "{line}");
            assert!(typed.insert(name.to_string()), "family twice: {line}");
            continue;
        }
        if line.starts_with("# HELP ") || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value in {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.strip_suffix('}').unwrap_or_else(|| panic!("{line}"))),
            None => (series, ""),
        };
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
        assert!(typed.contains(name), "sample before # TYPE: {line}");
        let labels = labels
            .split("\",")
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (k, v) = l.split_once("=\"").unwrap_or_else(|| panic!("{line}"));
                (k.to_string(), v.trim_end_matches('"').to_string())
            })
            .collect();
        out.push((name.to_string(), labels, value));
    }
    out
}

fn metric(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|s| s.2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_paths_readers_bitrates_requests_and_the_process() {
    let app = start("").await;
    let _push = push("baseline_aac44_mono.mp4", &rtmp_url(&app, "live/m"), true);
    wait_published(&app, "live/m").await;
    let mut player = RtmpClient::play(app.rtmp_addr, "live", "m")
        .await
        .unwrap_or_else(|e| panic!("play refused: {e:?}"));
    let _ = player.video_for(Duration::from_millis(2500)).await;
    assert_eq!(api(&app, "GET", "/v1/nope", None).await.status, 404);

    let r = api(&app, "GET", "/metrics", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let m = parse_metrics(&r.text());
    let path = [("path", "live/m")];
    assert_eq!(metric(&m, "mediarelay_path_publishing", &path), Some(1.0));
    assert!(metric(&m, "mediarelay_path_bytes_in_total", &path).unwrap() > 50_000.0);
    assert!(metric(&m, "mediarelay_path_bytes_out_total", &path).unwrap() > 10_000.0);
    assert_eq!(
        metric(
            &m,
            "mediarelay_path_readers",
            &[("path", "live/m"), ("protocol", "rtmp")]
        ),
        Some(1.0)
    );
    // The fixture's video is ~250 kbit/s.
    let video = metric(
        &m,
        "mediarelay_track_bitrate_bits_per_second",
        &[("path", "live/m"), ("codec", "h264")],
    )
    .expect("video bitrate");
    assert!((100_000.0..600_000.0).contains(&video), "{video}");
    assert_eq!(
        metric(
            &m,
            "mediarelay_sessions",
            &[("protocol", "rtmp"), ("role", "reader")]
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &m,
            "mediarelay_http_requests_total",
            &[("listener", "api"), ("status", "404")]
        ),
        Some(1.0)
    );
    assert!(metric(&m, "mediarelay_events_total", &[]).unwrap() >= 2.0);
    assert!(metric(&m, "process_resident_memory_bytes", &[]).unwrap() > 1e6);
    assert!(metric(&m, "process_open_fds", &[]).unwrap() > 3.0);
    // Every metric the Grafana dashboard in the repository queries exists.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_dir().join("config/grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    let families: std::collections::HashSet<&str> = r
        .text()
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(|n| &*Box::leak(n.to_string().into_boxed_str()))
        .collect();
    let mut queried = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for name in expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("mediarelay_") || w.starts_with("process_"))
            {
                queried += 1;
                // Webhook families appear once a webhook is configured.
                assert!(
                    families.contains(name) || name.starts_with("mediarelay_webhook_"),
                    "the dashboard queries {name}, which /metrics does not have"
                );
            }
        }
    }
    assert!(queried >= 15, "{queried}");
    // The API shows the same measurements.
    let p = api(&app, "GET", "/v1/paths/live/m", None).await.json();
    assert_eq!(p["readers_by_protocol"]["rtmp"], 1);
    let t = &p["stream"]["tracks"][0];
    assert!(t["bitrate"].as_u64().unwrap() > 100_000, "{t}");
    assert_eq!(t["fps"], 25.0, "{t}");
    drop(player);
    app.shutdown().await;
}
