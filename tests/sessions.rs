//! Publishers and readers as sessions: one publisher per path, takeover,
//! reconnect within the grace period, slow readers, kicks, and the API that
//! shows them.

mod common;

use std::time::Duration;

use common::*;
use mediarelay::protocol::rtmp::ClientEvent;

fn video_timestamps(events: &[ClientEvent]) -> Vec<u32> {
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Video { timestamp, payload } if payload.get(1) == Some(&1) => {
                Some(*timestamp)
            }
            _ => None,
        })
        .collect()
}

async fn collect(c: &mut RtmpClient, d: Duration) -> (Vec<ClientEvent>, bool) {
    c.events_for(d).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_publisher_is_refused_and_the_first_continues() {
    let app = start("").await;
    let _first = push("baseline_aac44_mono.mp4", &rtmp_url(&app, "live/one"), true);
    wait_published(&app, "live/one").await;
    let stream = app.hub.stream("live/one").unwrap();
    let refused = RtmpClient::publish(app.rtmp_addr, "live", "one").await;
    match refused {
        Err(ClientEvent::Status {
            level,
            code,
            description,
        }) => {
            assert_eq!(level, "error");
            assert_eq!(code, "NetStream.Publish.BadName");
            assert!(
                description.contains("already has a publisher"),
                "{description}"
            );
        }
        other => panic!("second publisher not refused: {:?}", other.map(|_| ())),
    }
    // ffmpeg as the second publisher gives up too.
    let (ok, _, _) = run(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-re",
            "-i",
            fixture("baseline_aac44_mono.mp4").to_str().unwrap(),
            "-c",
            "copy",
            "-t",
            "2",
            "-f",
            "flv",
            &rtmp_url(&app, "live/one"),
        ],
        Duration::from_secs(20),
    )
    .await;
    assert!(!ok, "the second ffmpeg publisher must fail");
    let before = stream.frames_in();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        stream.frames_in() > before,
        "the first publisher is undisturbed"
    );
    assert!(std::sync::Arc::ptr_eq(
        &stream,
        &app.hub.stream("live/one").unwrap()
    ));
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_replaces_the_publisher_when_configured() {
    let app = start("[paths.\"live/*\"]\ntakeover = true\n").await;
    let mut first = RtmpClient::publish(app.rtmp_addr, "live", "take")
        .await
        .unwrap();
    first.send_flv("res_a_320x240.flv", 0, false).await;
    wait_published(&app, "live/take").await;
    let stream = app.hub.stream("live/take").unwrap();
    let mut second = RtmpClient::publish(app.rtmp_addr, "live", "take")
        .await
        .unwrap();
    let (_, open) = collect(&mut first, Duration::from_secs(3)).await;
    assert!(!open, "the first publisher is disconnected");
    second.send_flv("res_a_320x240.flv", 0, false).await;
    assert!(
        std::sync::Arc::ptr_eq(&stream, &app.hub.stream("live/take").unwrap()),
        "same stream continues"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_that_reconnects_within_grace_keeps_its_readers() {
    let app = start("[path_defaults]\npublisher_grace = \"2s\"\n").await;
    let mut publisher = RtmpClient::publish(app.rtmp_addr, "live", "grace")
        .await
        .unwrap();
    publisher.send_flv("res_a_320x240.flv", 0, false).await;
    wait_published(&app, "live/grace").await;
    let mut reader = RtmpClient::play(app.rtmp_addr, "live", "grace")
        .await
        .unwrap();
    let (mut events, _) = collect(&mut reader, Duration::from_millis(300)).await;

    // A network blip: the publisher drops and comes back, its clock at 0 again.
    drop(publisher);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut publisher = RtmpClient::publish(app.rtmp_addr, "live", "grace")
        .await
        .unwrap();
    publisher.send_flv("res_a_320x240.flv", 0, true).await;
    let (more, open) = collect(&mut reader, Duration::from_millis(500)).await;
    events.extend(more);
    assert!(open, "the reader stayed connected");
    let ts = video_timestamps(&events);
    assert!(ts.len() > 60, "{} frames", ts.len());
    assert!(
        ts.windows(2).all(|w| w[1] >= w[0]),
        "timestamps continue: {ts:?}"
    );

    // Gone for good: after the grace period readers are told and let go.
    drop(publisher);
    let (events, open) = collect(&mut reader, Duration::from_secs(5)).await;
    assert!(
        !open
            || events
                .iter()
                .any(|e| matches!(e, ClientEvent::StreamEof { .. })
                    || matches!(e, ClientEvent::Status { code, .. } if code.contains("Unpublish"))),
        "{events:?}"
    );
    assert!(app.hub.stream("live/grace").is_none());
    app.shutdown().await;
}

/// A publisher to `live/{key}` at ten times real time (so that a stalled
/// reader's socket buffers, which loopback lets grow past a megabyte, fill
/// within a test), a player that never reads (small receive buffer) and
/// one that does.
async fn stalled_and_reading_players(
    app: &mediarelay::app::App,
    key: &str,
) -> (Proc, RtmpClient, RtmpClient) {
    let push = push_with(
        "high_bframes_aac48.mp4",
        &rtmp_url(app, &format!("live/{key}")),
        &["-readrate", "10", "-stream_loop", "-1"],
    );
    wait_published(app, &format!("live/{key}")).await;
    let stalled = RtmpClient::connect_small_buffer(app.rtmp_addr, "live").await;
    let stalled = stalled.start_play(key).await.unwrap();
    let reading = RtmpClient::play(app.rtmp_addr, "live", key).await.unwrap();
    (push, stalled, reading)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_reading_loses_frames_and_nobody_else_does() {
    let app = start("reader_queue_frames = 16\nwrite_timeout = \"30s\"\n").await;
    let (_push, slow, mut fast) = stalled_and_reading_players(&app, "slow").await;
    // The slow reader never reads again; the fast one reads for 6 s.
    let (events, open) = collect(&mut fast, Duration::from_secs(6)).await;
    assert!(open);
    let frames = video_timestamps(&events).len();
    assert!(
        frames >= 150,
        "the fast reader got {frames} video frames in 6 s"
    );

    let sessions = http("GET", app.api_addr, "/v1/sessions", b"").await.json();
    let readers: Vec<&serde_json::Value> = sessions["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["role"] == "reader")
        .collect();
    assert_eq!(readers.len(), 2);
    let dropped: Vec<u64> = readers
        .iter()
        .map(|s| s["frames_dropped"].as_u64().unwrap())
        .collect();
    // Sessions are listed in id order: slow first.
    assert!(
        dropped[0] > 0,
        "the slow reader's drop counter: {dropped:?}"
    );
    assert_eq!(dropped[1], 0, "the fast reader lost nothing: {dropped:?}");
    drop(slow);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_lists_paths_and_sessions_and_kicks() {
    let app = start("[path_defaults]\npublisher_grace = \"0s\"\n").await;
    let mut pusher = push(
        "baseline_aac44_mono.mp4",
        &rtmp_url(&app, "a/b/cam?token=s3cret"),
        true,
    );
    wait_published(&app, "a/b/cam").await;
    let mut reader = RtmpClient::play(app.rtmp_addr, "a/b", "cam").await.unwrap();
    collect(&mut reader, Duration::from_millis(500)).await;
    assert_eq!(
        http("GET", app.http_addr, "/a/b/cam/index.m3u8", b"")
            .await
            .status,
        200
    );

    let health = http("GET", app.api_addr, "/healthz", b"").await;
    assert_eq!(health.status, 200);
    assert_eq!(http("GET", app.api_addr, "/readyz", b"").await.status, 200);

    let paths = http("GET", app.api_addr, "/v1/paths", b"").await.json();
    assert_eq!(paths["item_count"], 1);
    let path = http("GET", app.api_addr, "/v1/paths/a/b/cam", b"")
        .await
        .json();
    assert_eq!(path["name"], "a/b/cam");
    assert_eq!(path["state"], "publishing");
    assert_eq!(path["source"]["type"], "rtmp");
    assert!(
        path["source"]["remote_addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    let tracks = path["stream"]["tracks"].as_array().unwrap();
    assert_eq!(tracks[0]["codec"], "h264");
    assert_eq!(tracks[0]["width"], 320);
    assert_eq!(tracks[1]["codec"], "aac");
    assert_eq!(tracks[1]["sample_rate"], 44100);
    assert_eq!(tracks[1]["channels"], 1);
    // The RTMP player and the HLS viewer (one playlist request so far).
    assert_eq!(path["readers"].as_array().unwrap().len(), 2);
    assert_eq!(path["readers_by_protocol"]["rtmp"], 1);
    assert_eq!(path["readers_by_protocol"]["hls"], 1);
    assert!(path["bytes_in"].as_u64().unwrap() > 0);
    assert!(path["bytes_out"].as_u64().unwrap() > 0);
    assert!(path["created"].as_str().unwrap().ends_with('Z'));
    // The query string is kept with the session (for auth), not in the path.
    let publisher = app
        .hub
        .sessions()
        .into_iter()
        .find(|s| s.path == "a/b/cam" && s.role == mediarelay::hub::Role::Publisher)
        .unwrap();
    assert_eq!(publisher.query, "token=s3cret");

    // Errors are JSON with the right status.
    let missing = http("GET", app.api_addr, "/v1/paths/no/such", b"").await;
    assert_eq!(missing.status, 404);
    assert!(
        missing.json()["error"]
            .as_str()
            .unwrap()
            .contains("no/such")
    );
    assert_eq!(
        http("GET", app.api_addr, "/v1/paths?items_per_page=0", b"")
            .await
            .status,
        400
    );
    assert_eq!(
        http("POST", app.api_addr, "/v1/sessions/abc/kick", b"")
            .await
            .status,
        400
    );
    assert_eq!(
        http("POST", app.api_addr, "/v1/sessions/999999/kick", b"")
            .await
            .status,
        404
    );
    assert_eq!(
        http("GET", app.api_addr, "/v1/nothing", b"").await.status,
        404
    );
    assert_eq!(
        http("DELETE", app.api_addr, "/v1/paths", b"").await.status,
        405
    );

    // HLS viewers are sessions by cookie, not by connection: requests with
    // the cookie the first playlist set stay one session; a kicked viewer's
    // next request is refused.
    let first = http_with(
        "GET",
        app.http_addr,
        "/a/b/cam/index.m3u8",
        &[("User-Agent", "one")],
        b"",
    )
    .await;
    let cookie = first
        .header("set-cookie")
        .expect("a viewer cookie")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert!(cookie.starts_with("mediarelay_hls="), "{cookie}");
    let hls_sessions = || {
        app.hub
            .sessions()
            .into_iter()
            .filter(|s| s.protocol == mediarelay::hub::Protocol::Hls)
            .collect::<Vec<_>>()
    };
    let before = hls_sessions().len();
    for _ in 0..3 {
        let r = http_with(
            "GET",
            app.http_addr,
            "/a/b/cam/index.m3u8",
            &[("User-Agent", "one"), ("Cookie", &cookie)],
            b"",
        )
        .await;
        assert_eq!(r.status, 200);
        assert!(r.header("set-cookie").is_none());
    }
    assert_eq!(hls_sessions().len(), before, "the same viewer");
    let listed = http("GET", app.api_addr, "/v1/sessions", b"").await.json();
    let viewer_id = cookie.split('=').nth(1).unwrap().to_string();
    let hls: Vec<&serde_json::Value> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["protocol"] == "hls")
        .collect();
    assert_eq!(hls.len(), before);
    let newest = hls_sessions().into_iter().max_by_key(|s| s.id).unwrap();
    assert!(
        newest
            .counters
            .bytes_out
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
    let kicked = http(
        "POST",
        app.api_addr,
        &format!("/v1/sessions/{}/kick", newest.id),
        b"",
    )
    .await;
    assert_eq!(kicked.status, 200);
    let refused = http_with(
        "GET",
        app.http_addr,
        "/a/b/cam/index.m3u8",
        &[("User-Agent", "one"), ("Cookie", &cookie)],
        b"",
    )
    .await;
    assert_eq!(refused.status, 403, "viewer {viewer_id} was kicked");

    // Kick the publisher: ffmpeg is disconnected and the path ends.
    let kicked = http(
        "POST",
        app.api_addr,
        &format!("/v1/sessions/{}/kick", publisher.id),
        b"",
    )
    .await;
    assert_eq!(kicked.status, 200, "{}", kicked.text());
    tokio::time::timeout(Duration::from_secs(10), pusher.0.wait())
        .await
        .expect("ffmpeg exits")
        .unwrap();
    eventually(Duration::from_secs(5), "path to end", || async {
        app.hub.stream("a/b/cam").is_none().then_some(())
    })
    .await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_and_invalid_path_names_are_refused() {
    let app = start("").await;
    for (app_name, key) in [
        ("live", "index.m3u8"),
        ("live", "whep"),
        ("live", "seg_1.m4s"),
        ("", ""),
    ] {
        match RtmpClient::publish(app.rtmp_addr, app_name, key).await {
            Err(ClientEvent::Status { code, .. }) => assert_eq!(code, "NetStream.Publish.BadName"),
            other => panic!("{app_name}/{key} accepted: {:?}", other.map(|_| ())),
        }
    }
    match RtmpClient::play(app.rtmp_addr, "live", "nothing").await {
        Err(ClientEvent::Status { code, .. }) => assert_eq!(code, "NetStream.Play.StreamNotFound"),
        other => panic!("play of a missing path: {:?}", other.map(|_| ())),
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtmp_timestamps_crossing_two_to_the_32_keep_playing() {
    let app = start("[path_defaults]\npublisher_grace = \"0s\"\n").await;
    let mut publisher = RtmpClient::publish(app.rtmp_addr, "live", "wrap")
        .await
        .unwrap();
    // Start 1 s before the 32-bit millisecond clock wraps.
    let head = publisher
        .send_flv("res_a_320x240.flv", u32::MAX - 1000, false)
        .await;
    wait_published(&app, "live/wrap").await;
    assert_eq!(
        http("GET", app.http_addr, "/live/wrap/index.m3u8", b"")
            .await
            .status,
        200
    );
    publisher
        .send_flv(
            "res_a_320x240.flv",
            (u32::MAX - 1000).wrapping_add(head + 40),
            false,
        )
        .await;
    drop(publisher);
    eventually(Duration::from_secs(10), "ENDLIST", || async {
        let r = http("GET", app.http_addr, "/live/wrap/index.m3u8", b"").await;
        r.text().contains("#EXT-X-ENDLIST").then_some(())
    })
    .await;
    let probe = ffprobe(
        &hls_url(&app, "live/wrap"),
        &["-show_packets", "-select_streams", "v"],
    )
    .await;
    let dts: Vec<f64> = probe["packets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["dts_time"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(dts.len(), 120);
    assert!(
        dts.windows(2).all(|w| w[1] > w[0] && w[1] - w[0] < 0.1),
        "continuous across the wrap"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_over_max_paths_is_refused_and_allowed_once_a_path_closes() {
    let app = start("[limits]\nmax_paths = 1\n[path_defaults]\npublisher_grace = \"0s\"\n").await;
    let first = push("baseline_aac44_mono.mp4", &rtmp_url(&app, "live/one"), true);
    wait_published(&app, "live/one").await;
    let stream = app.hub.stream("live/one").unwrap();
    match RtmpClient::publish(app.rtmp_addr, "live", "two").await {
        Err(ClientEvent::Status {
            level, description, ..
        }) => {
            assert_eq!(level, "error");
            assert!(description.contains("limits.max_paths"), "{description}");
        }
        other => panic!("a second path was opened: {:?}", other.map(|_| ())),
    }
    // A WHIP publisher is refused the same way, with 503.
    let r = http_with(
        "POST",
        app.http_addr,
        "/live/three/whip",
        &[("Content-Type", "application/sdp")],
        include_bytes!("../fuzz/seeds/sdp_offer/whip_offer"),
    )
    .await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("limits.max_paths"), "{}", r.text());
    let before = stream.frames_in();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(stream.frames_in() > before, "the first path is undisturbed");
    // Once the first path closes, another may open.
    drop(first);
    eventually(Duration::from_secs(5), "live/one to close", || async {
        app.hub.stream("live/one").is_none().then_some(())
    })
    .await;
    let mut c = RtmpClient::publish(app.rtmp_addr, "live", "two")
        .await
        .unwrap_or_else(|e| panic!("live/two refused after live/one closed: {e:?}"));
    c.send_flv("res_a_320x240.flv", 0, false).await;
    wait_published(&app, "live/two").await;
    app.shutdown().await;
}

/// A publisher killed mid-GOP (SIGKILL: no FCUnpublish, no deleteStream):
/// with no grace period its player is told the stream is gone, the path is
/// freed, and a new publisher takes it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_killed_mid_gop_frees_the_path_and_tells_its_players() {
    let app = start("[path_defaults]\npublisher_grace = \"0s\"\n").await;
    let publisher = push("baseline_aac44_mono.mp4", &rtmp_url(&app, "live/k"), true);
    wait_published(&app, "live/k").await;
    let mut player = RtmpClient::play(app.rtmp_addr, "live", "k").await.unwrap();
    let (events, _) = collect(&mut player, Duration::from_millis(1300)).await;
    assert!(!video_timestamps(&events).is_empty());
    drop(publisher); // SIGKILL, somewhere inside a GOP
    let (events, open) = collect(&mut player, Duration::from_secs(5)).await;
    assert!(!open, "the player's connection ends");
    assert!(
        events.iter().any(|e| matches!(e, ClientEvent::Status { code, .. } if code == "NetStream.Play.UnpublishNotify")),
        "the player is told: {events:?}"
    );
    assert!(app.hub.stream("live/k").is_none(), "the path is freed");
    let mut again = RtmpClient::publish(app.rtmp_addr, "live", "k")
        .await
        .unwrap_or_else(|e| panic!("republish refused: {e:?}"));
    again.send_flv("res_a_320x240.flv", 0, false).await;
    wait_published(&app, "live/k").await;
    app.shutdown().await;
}

/// A player that stops reading (its TCP window fills) is dropped once a
/// write has waited write_timeout, its session and queue freed; the other
/// player is not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_that_stops_reading_is_dropped_after_the_write_timeout() {
    let app = start("reader_queue_frames = 16\nwrite_timeout = \"2s\"\n").await;
    let (_push, _stalled, mut reading) = stalled_and_reading_players(&app, "stall").await;
    let readers = |app: &mediarelay::app::App| {
        app.hub
            .sessions()
            .iter()
            .filter(|s| s.role == mediarelay::hub::Role::Reader)
            .count()
    };
    assert_eq!(readers(&app), 2);
    let t0 = std::time::Instant::now();
    let (events, open) = collect(&mut reading, Duration::from_secs(8)).await;
    assert!(open, "the reading player stays");
    assert!(video_timestamps(&events).len() >= 150);
    eventually(
        Duration::from_secs(10),
        "the stalled player to be dropped",
        || async { (readers(&app) == 1).then_some(()) },
    )
    .await;
    eprintln!("stalled player dropped within {:?}", t0.elapsed());
    app.shutdown().await;
}
