//! Origin/edge: an edge relay pulls a path from an origin relay over RTMP
//! (`source = "rtmp://origin/live/src"`): pulled from start or on demand,
//! reconnecting when the origin's publisher goes away, errors of the origin
//! in the API, and readers of the edge staying connected across it.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use mediarelay::app::App;
use mediarelay::hub::{Protocol, Role};
use serde_json::Value;

const FIXTURE: &str = "baseline_aac44_mono.mp4";

async fn path_json(app: &App, name: &str) -> Value {
    let r = http("GET", app.api_addr, &format!("/v1/paths/{name}"), b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

async fn source_state(app: &App, name: &str) -> String {
    path_json(app, name).await["source"]["state"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The origin: its publisher's stream ends at once when the publisher goes.
async fn origin() -> App {
    start("[paths.\"live/src\"]\npublisher_grace = \"0s\"\n").await
}

fn edge_toml(origin: &App, key: &str, extra: &str) -> String {
    format!(
        "[hls]\nidle_timeout = \"1s\"\n[paths.\"edge/cam\"]\nsource = \"rtmp://{}/live/{key}\"\n{extra}",
        origin.rtmp_addr
    )
}

/// RTMP readers of `path` on `app`.
fn rtmp_readers(app: &App, path: &str) -> usize {
    app.hub
        .sessions()
        .iter()
        .filter(|s| s.path == path && s.role == Role::Reader && s.protocol == Protocol::Rtmp)
        .count()
}

fn codec_names(streams: &[Value]) -> Vec<String> {
    let mut c: Vec<String> = streams
        .iter()
        .filter_map(|s| s["codec_name"].as_str().map(str::to_string))
        .collect();
    c.sort();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_pulls_from_the_origin_at_start_and_serves_hls_and_rtmp() {
    let origin = origin().await;
    let _push = push(FIXTURE, &rtmp_url(&origin, "live/src"), true);
    wait_published(&origin, "live/src").await;
    let edge = start(&edge_toml(&origin, "src", "on_demand = false\n")).await;
    wait_published(&edge, "edge/cam").await;

    let p = path_json(&edge, "edge/cam").await;
    assert_eq!(p["source"]["type"], "rtmp", "{p}");
    assert_eq!(p["source"]["state"], "ready", "{p}");
    assert_eq!(
        p["source"]["url"],
        format!("rtmp://{}/live/src", origin.rtmp_addr)
    );
    // The edge is one RTMP player of the origin.
    assert_eq!(rtmp_readers(&origin, "live/src"), 1);

    for url in [hls_url(&edge, "edge/cam"), rtmp_url(&edge, "edge/cam")] {
        let streams = probe_streams(&url).await;
        assert_eq!(codec_names(&streams), vec!["aac", "h264"], "{url}");
    }
    edge.shutdown().await;
    origin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_reconnects_when_the_origin_publisher_comes_back_and_its_readers_stay() {
    let origin = origin().await;
    let push_url = rtmp_url(&origin, "live/src");
    let pushing = push(FIXTURE, &push_url, true);
    wait_published(&origin, "live/src").await;
    let edge = start(&edge_toml(&origin, "src", "on_demand = false\n")).await;
    wait_published(&edge, "edge/cam").await;
    let stream = edge.hub.stream("edge/cam").unwrap();

    // An RTMP player of the edge, read all along by a task of its own.
    let player = RtmpClient::play(edge.rtmp_addr, "edge", "cam")
        .await
        .unwrap();
    let video = Arc::new(Mutex::new(Vec::<u32>::new()));
    let stop = tokio_util::sync::CancellationToken::new();
    let reading = {
        let video = Arc::clone(&video);
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut player = player;
            loop {
                let (ts, open) = player.video_for(Duration::from_millis(200)).await;
                video.lock().unwrap().extend(ts);
                if !open || stop.is_cancelled() {
                    return open;
                }
            }
        })
    };
    eventually(Duration::from_secs(10), "video at the player", || async {
        (video.lock().unwrap().len() > 10).then_some(())
    })
    .await;

    // The origin's publisher goes away: the edge retries and says why.
    drop(pushing);
    let p = eventually(
        Duration::from_secs(10),
        "the edge to retry with the origin's error",
        || async {
            let p = path_json(&edge, "edge/cam").await;
            let error = p["source"]["last_error"].as_str().unwrap_or_default();
            (p["source"]["state"] == "retrying" && error.contains("from origin")).then_some(p)
        },
    )
    .await;
    let error = p["source"]["last_error"].as_str().unwrap().to_string();
    assert!(
        error.starts_with("NetStream.Play.UnpublishNotify from origin")
            || error.starts_with("NetStream.Play.StreamNotFound from origin"),
        "{error}"
    );
    let before = video.lock().unwrap().len();

    // It comes back: the edge is ready again, on the same stream.
    let _pushing = push(FIXTURE, &push_url, true);
    eventually(
        Duration::from_secs(15),
        "the edge to be ready again",
        || async { (source_state(&edge, "edge/cam").await == "ready").then_some(()) },
    )
    .await;
    assert!(Arc::ptr_eq(&stream, &edge.hub.stream("edge/cam").unwrap()));
    assert_eq!(path_json(&edge, "edge/cam").await["source"]["retries"], 0);
    eventually(
        Duration::from_secs(10),
        "video after the reconnect",
        || async { (video.lock().unwrap().len() > before + 20).then_some(()) },
    )
    .await;
    stop.cancel();
    assert!(reading.await.unwrap(), "the player stayed connected");
    let ts = video.lock().unwrap().clone();
    assert!(
        ts.windows(2).all(|w| w[1] >= w[0]),
        "video timestamps went backwards: {ts:?}"
    );
    edge.shutdown().await;
    origin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_on_demand_edge_connects_only_while_someone_reads() {
    let origin = origin().await;
    let _push = push(FIXTURE, &rtmp_url(&origin, "live/src"), true);
    wait_published(&origin, "live/src").await;
    let edge = start(&edge_toml(
        &origin,
        "src",
        "on_demand = true\non_demand_close_after = \"1s\"\n",
    ))
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rtmp_readers(&origin, "live/src"), 0, "nothing pulled yet");
    assert_eq!(source_state(&edge, "edge/cam").await, "idle");

    // The first HLS request waits for the origin and gets a playlist.
    let r = http("GET", edge.http_addr, "/edge/cam/index.m3u8", b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(rtmp_readers(&origin, "live/src"), 1);
    assert_eq!(source_state(&edge, "edge/cam").await, "ready");

    // Nobody reads any more: the HLS muxer idles out, then the pull stops
    // and the origin loses its player.
    eventually(Duration::from_secs(15), "the pull to stop", || async {
        (edge.hub.stream("edge/cam").is_none()
            && rtmp_readers(&origin, "live/src") == 0
            && source_state(&edge, "edge/cam").await == "idle")
            .then_some(())
    })
    .await;
    edge.shutdown().await;
    origin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_stream_key_shows_retrying_and_the_origin_error() {
    let origin = origin().await;
    let edge = start(&edge_toml(
        &origin,
        "nosuch?token=sekrit",
        "on_demand = false\n",
    ))
    .await;
    let p = eventually(Duration::from_secs(10), "the edge to retry", || async {
        let p = path_json(&edge, "edge/cam").await;
        (p["source"]["state"] == "retrying").then_some(p)
    })
    .await;
    let error = p["source"]["last_error"].as_str().unwrap();
    assert!(
        error.starts_with("NetStream.Play.StreamNotFound from origin"),
        "{p}"
    );
    assert!(p["source"]["retries"].as_u64().unwrap() >= 1, "{p}");
    // The credentials in the URL's query are not shown.
    assert!(!p.to_string().contains("sekrit"), "{p}");
    assert_eq!(
        p["source"]["url"],
        format!("rtmp://{}/live/nosuch?token=***", origin.rtmp_addr)
    );
    edge.shutdown().await;
    origin.shutdown().await;
}

/// `rtmps://`: the edge verifies the origin's certificate against the
/// platform's roots (here a self-signed one given by `SSL_CERT_FILE`, which
/// the platform verifier honours on Linux; each test runs in a process of its
/// own under nextest).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_pulls_over_rtmps() {
    let dir = std::env::temp_dir().join(format!("mediarelay-rtmp-pull-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let generated = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    // SAFETY: set before any thread of this test reads the environment for
    // certificates (the edge's first rtmps:// attempt).
    unsafe { std::env::set_var("SSL_CERT_FILE", &cert) };

    let origin = start(&format!(
        "rtmps_listen = \"127.0.0.1:0\"\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    ))
    .await;
    let _push = push(FIXTURE, &rtmp_url(&origin, "live/src"), true);
    wait_published(&origin, "live/src").await;
    let edge = start(&format!(
        "[paths.\"edge/cam\"]\nsource = \"rtmps://{}/live/src\"\non_demand = false\n",
        origin.rtmps_addr.unwrap()
    ))
    .await;
    wait_published(&edge, "edge/cam").await;
    assert_eq!(source_state(&edge, "edge/cam").await, "ready");
    let streams = probe_streams(&rtmp_url(&edge, "edge/cam")).await;
    assert_eq!(codec_names(&streams), vec!["aac", "h264"]);
    edge.shutdown().await;
    origin.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The URL's query string reaches the origin in the play key: right
/// credentials play, wrong ones are the origin's refusal in the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_the_query_are_passed_to_the_origin() {
    let origin = start(
        "[[users]]\nuser = \"pub\"\npass = \"plain:pubpass\"\npermissions = [{ action = \"publish\" }]\n\
         [[users]]\nuser = \"edge\"\npass = \"plain:edgepass\"\npermissions = [{ action = \"read\" }]\n",
    )
    .await;
    let _push = push(
        FIXTURE,
        &format!("{}?user=pub&pass=pubpass", rtmp_url(&origin, "live/src")),
        true,
    );
    wait_published(&origin, "live/src").await;
    let edge = start(&format!(
        "[paths.\"edge/good\"]\nsource = \"rtmp://{o}/live/src?user=edge&pass=edgepass\"\n\
         [paths.\"edge/bad\"]\nsource = \"rtmp://edge:wr0ngpw@{o}/live/src\"\n",
        o = origin.rtmp_addr
    ))
    .await;
    wait_published(&edge, "edge/good").await;
    let p = eventually(Duration::from_secs(10), "the refusal", || async {
        let p = path_json(&edge, "edge/bad").await;
        (p["source"]["state"] == "retrying").then_some(p)
    })
    .await;
    assert_eq!(
        p["source"]["last_error"]
            .as_str()
            .unwrap()
            .split(':')
            .next(),
        Some("NetStream.Play.Unauthorized from origin"),
        "{p}"
    );
    let shown = path_json(&edge, "edge/good").await.to_string();
    assert!(!shown.contains("edgepass"), "{shown}");
    assert!(!p.to_string().contains("wr0ngpw"), "{p}");
    edge.shutdown().await;
    origin.shutdown().await;
}
