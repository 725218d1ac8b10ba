//! Events against a running server: signed webhooks with retries and a
//! circuit breaker (while media plays on), and the SSE stream with
//! `Last-Event-ID` resumption.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use common::*;
use hmac::{Hmac, Mac};
use mediarelay::app::App;
use serde_json::Value;
use sha2::Sha256;

const SECRET: &str = "s3cret";

/// What the test receiver got: (event kind, verified body).
#[derive(Default)]
struct Receiver {
    /// Answer 500 to everything while set.
    failing: bool,
    requests: u64,
    events: Vec<Value>,
    bad_signatures: u64,
}

async fn hook(
    State(r): State<Arc<Mutex<Receiver>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let mut r = r.lock().unwrap();
    r.requests += 1;
    if r.failing {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let header = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let ts = header("x-mediarelay-timestamp");
    let sig = header("x-mediarelay-signature");
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(&body);
    let expected = format!(
        "sha256={}",
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let age = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        - ts.parse::<i64>().unwrap_or(0);
    if sig != expected || !(-5..60).contains(&age) {
        r.bad_signatures += 1;
        return StatusCode::UNAUTHORIZED;
    }
    let event: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        header("x-mediarelay-event"),
        event["event"].as_str().unwrap()
    );
    r.events.push(event);
    StatusCode::NO_CONTENT
}

async fn start_receiver() -> (std::net::SocketAddr, Arc<Mutex<Receiver>>) {
    let state = Arc::new(Mutex::new(Receiver::default()));
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(Arc::clone(&state));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, state)
}

fn kinds(r: &Mutex<Receiver>) -> Vec<String> {
    r.lock()
        .unwrap()
        .events
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect()
}

async fn webhook_stats(app: &App) -> Value {
    http("GET", app.api_addr, "/v1/webhooks", b"").await.json()["items"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_signed_retried_and_the_breaker_recovers_while_media_plays() {
    let (hook_addr, receiver) = start_receiver().await;
    let app = start(&format!(
        r#"
[[webhooks]]
url = "http://{hook_addr}/hook"
secret = "{SECRET}"

[webhook_settings]
timeout = "1s"
retry_initial = "50ms"
retry_max = "100ms"
max_attempts = 2
breaker_failures = 3
breaker_cooldown = "700ms"
"#
    ))
    .await;
    let _push = push("baseline_aac44_mono.mp4", &rtmp_url(&app, "live/w"), true);
    wait_published(&app, "live/w").await;
    let mut player = RtmpClient::play(app.rtmp_addr, "live", "w").await.unwrap();
    eventually(
        Duration::from_secs(5),
        "publish_start and read_start",
        || async {
            let k = kinds(&receiver);
            (k.contains(&"publish_start".into()) && k.contains(&"read_start".into())).then_some(())
        },
    )
    .await;
    {
        let r = receiver.lock().unwrap();
        let e = r
            .events
            .iter()
            .find(|e| e["event"] == "publish_start")
            .unwrap();
        assert_eq!(e["path"], "live/w");
        assert_eq!(e["protocol"], "rtmp");
        assert!(e["session_id"].is_u64());
        assert!(e["remote_addr"].as_str().unwrap().starts_with("127.0.0.1:"));
        assert!(e["time"].as_str().unwrap().ends_with('Z'));
        assert_eq!(r.bad_signatures, 0);
    }

    // The receiver fails: retries, then the breaker opens; media plays on.
    receiver.lock().unwrap().failing = true;
    let before = receiver.lock().unwrap().requests;
    for _ in 0..3 {
        let p = RtmpClient::play(app.rtmp_addr, "live", "w").await.unwrap();
        drop(p);
    }
    let stats = eventually(Duration::from_secs(10), "the breaker to open", || async {
        let s = webhook_stats(&app).await;
        (s["breaker"] == "open").then_some(s)
    })
    .await;
    assert!(stats["failed_attempts"].as_u64().unwrap() >= 3, "{stats}");
    assert!(receiver.lock().unwrap().requests > before);
    let video = player.video_for(Duration::from_secs(1)).await.0;
    assert!(
        video.len() >= 15,
        "the player keeps getting video: {video:?}"
    );
    // While open, nothing is sent.
    let while_open = receiver.lock().unwrap().requests;
    tokio::time::sleep(Duration::from_millis(300)).await;
    if webhook_stats(&app).await["breaker"] == "open" {
        assert_eq!(receiver.lock().unwrap().requests, while_open);
    }

    // The receiver is back: the half-open probe closes the breaker, and
    // later events are delivered.
    receiver.lock().unwrap().failing = false;
    let delivered_before = receiver.lock().unwrap().events.len();
    let p = RtmpClient::play(app.rtmp_addr, "live", "w").await.unwrap();
    drop(p);
    eventually(Duration::from_secs(10), "the breaker to close", || async {
        (webhook_stats(&app).await["breaker"] == "closed").then_some(())
    })
    .await;
    eventually(Duration::from_secs(10), "events after recovery", || async {
        (receiver.lock().unwrap().events.len() > delivered_before).then_some(())
    })
    .await;
    let stats = webhook_stats(&app).await;
    assert!(stats["breaker_opened"].as_u64().unwrap() >= 1);
    let metrics = http("GET", app.api_addr, "/metrics", b"").await.text();
    assert!(
        metrics.contains("mediarelay_webhook_breaker_opened_total{url=\"http://"),
        "{metrics}"
    );
    assert_eq!(receiver.lock().unwrap().bad_signatures, 0);
    let video = player.video_for(Duration::from_millis(500)).await.0;
    assert!(!video.is_empty());
    app.shutdown().await;
}

/// An SSE client over raw HTTP/1.1 (chunked): events as (id, kind, data).
struct Sse {
    resp: reqwest::Response,
    buf: String,
}

impl Sse {
    async fn connect(app: &App, last_event_id: Option<u64>) -> Sse {
        let mut req = reqwest::Client::new().get(format!("http://{}/v1/events", app.api_addr));
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id.to_string());
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        Sse {
            resp,
            buf: String::new(),
        }
    }

    /// The next event (comments skipped), within `limit`.
    async fn next(&mut self, limit: Duration) -> Option<(Option<u64>, String, Value)> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut id, mut kind, mut data) = (None, String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().parse().ok();
                    } else if let Some(v) = line.strip_prefix("event:") {
                        kind = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim());
                    }
                }
                if kind.is_empty() && data.is_empty() {
                    continue; // a keep-alive comment
                }
                return Some((id, kind, serde_json::from_str(&data).unwrap_or(Value::Null)));
            }
            let chunk = tokio::time::timeout_at(deadline, self.resp.chunk())
                .await
                .ok()?
                .ok()??;
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_streams_events_and_resumes_from_last_event_id() {
    let app = start("").await;
    let mut sse = Sse::connect(&app, None).await;
    let _push = push("baseline_aac44_mono.mp4", &rtmp_url(&app, "live/s"), true);
    let (id, kind, data) = sse.next(Duration::from_secs(10)).await.expect("an event");
    assert_eq!(kind, "publish_start");
    assert_eq!(data["path"], "live/s");
    let first = id.expect("an id");
    assert_eq!(data["id"], first);
    drop(sse);

    // While nobody listens: a player comes and goes.
    wait_published(&app, "live/s").await;
    let p = RtmpClient::play(app.rtmp_addr, "live", "s").await.unwrap();
    drop(p);
    eventually(Duration::from_secs(5), "read_stop", || async {
        (app.hub.events().next_id() >= first + 3).then_some(())
    })
    .await;

    // Resuming gets exactly what came after, in order, then live events.
    let mut sse = Sse::connect(&app, Some(first)).await;
    let (id, kind, _) = sse.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!((id, kind.as_str()), (Some(first + 1), "read_start"));
    let (id, kind, _) = sse.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!((id, kind.as_str()), (Some(first + 2), "read_stop"));
    let p = RtmpClient::play(app.rtmp_addr, "live", "s").await.unwrap();
    let (id, kind, data) = sse.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!((id, kind.as_str()), (Some(first + 3), "read_start"));
    assert_eq!(data["protocol"], "rtmp");
    drop(p);
    // A filter by kind, and a bad one.
    let r = http("GET", app.api_addr, "/v1/events?events=nope", b"").await;
    assert_eq!(r.status, 400);
    // A config change is an event too.
    let r = http_with(
        "PATCH",
        app.api_addr,
        "/v1/config",
        &[("Content-Type", "application/json")],
        br#"{"hls": {"segment_count": 8}}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    let mut seen = Vec::new();
    while let Some((_, kind, data)) = sse.next(Duration::from_secs(5)).await {
        if kind == "config_changed" {
            assert_eq!(data["detail"]["cause"], "api");
            assert_eq!(data["detail"]["global"][0], "hls");
            break;
        }
        seen.push(kind);
    }
    assert!(seen.iter().all(|k| k == "read_stop"), "{seen:?}");
    app.shutdown().await;
}
