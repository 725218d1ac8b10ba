//! The control plane against a running server: live configuration through
//! the API and by reloading the file.

mod common;

use std::time::Duration;

use common::camera::Camera;
use common::*;
use mediarelay::app::App;
use mediarelay::protocol::rtmp::ClientEvent;
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
    app.shutdown().await;
}

/// RTMP video timestamps a player receives over `d`, and whether it is
/// still connected.
async fn play_for(c: &mut RtmpClient, d: Duration) -> (Vec<u32>, bool) {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + d;
    let mut open = true;
    while open {
        match tokio::time::timeout_at(deadline, c.read()).await {
            Ok(still_open) => open = still_open,
            Err(_) => break,
        }
        while let Some(e) = c.session.poll_event() {
            if let ClientEvent::Video { timestamp, .. } = e {
                out.push(timestamp);
            }
        }
    }
    (out, open)
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
    let (before, open) = play_for(&mut player, Duration::from_secs(1)).await;
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
    let (during, open) = play_for(&mut player, Duration::from_secs(2)).await;
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
