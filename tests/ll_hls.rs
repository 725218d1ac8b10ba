//! LL-HLS as RFC 8216bis describes it: tags, blocking playlist reload, part
//! preload hints, delta updates, headers; long GOPs, parameter changes,
//! single-track streams.

mod common;

use std::time::{Duration, Instant, SystemTime};

use common::*;
use mediarelay::protocol::rtmp::ClientEvent;

/// Attribute value of `NAME=` in a tag line.
fn attr<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!("{name}="))? + name.len() + 1;
    let rest = &line[start..];
    let rest = rest.strip_prefix('"').map_or(rest, |r| r);
    let end = rest.find(['"', ',']).unwrap_or(rest.len());
    Some(&rest[..end])
}

fn lines<'a>(playlist: &'a str, tag: &str) -> Vec<&'a str> {
    playlist.lines().filter(|l| l.starts_with(tag)).collect()
}

/// (msn, part) of the preload hint.
fn hint(playlist: &str) -> (u64, u64) {
    let line = lines(playlist, "#EXT-X-PRELOAD-HINT")[0];
    let uri = attr(line, "URI").unwrap();
    let mut it = uri
        .trim_start_matches("part_")
        .trim_end_matches(".m4s")
        .split('_');
    (
        it.next().unwrap().parse().unwrap(),
        it.next().unwrap().parse().unwrap(),
    )
}

async fn get(app: &mediarelay::app::App, target: &str) -> HttpResponse {
    http("GET", app.http_addr, target, b"").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playlist_tags_headers_and_files() {
    let app = start("").await;
    let _push = push("high_bframes_aac48.mp4", &rtmp_url(&app, "live/tags"), true);
    wait_published(&app, "live/tags").await;
    let r = http_with(
        "GET",
        app.http_addr,
        "/live/tags/index.m3u8",
        &[("Origin", "http://example.com")],
        b"",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.apple.mpegurl")
    );
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    let p = r.text();
    assert!(p.starts_with("#EXTM3U\n"), "{p}");
    assert_eq!(lines(&p, "#EXT-X-TARGETDURATION:4").len(), 1, "{p}");
    assert!(p.contains("#EXT-X-MAP:URI=\"init_1.mp4\""));
    let control = lines(&p, "#EXT-X-SERVER-CONTROL")[0];
    assert_eq!(attr(control, "CAN-BLOCK-RELOAD"), Some("YES"));
    let part_target: f64 = attr(lines(&p, "#EXT-X-PART-INF")[0], "PART-TARGET")
        .unwrap()
        .parse()
        .unwrap();
    assert!((part_target - 0.2).abs() < 1e-9);
    let hold_back: f64 = attr(control, "PART-HOLD-BACK").unwrap().parse().unwrap();
    assert!(hold_back >= 3.0 * part_target - 1e-9);
    // Parts: none longer than PART-TARGET; the first of each segment independent.
    let parts = lines(&p, "#EXT-X-PART:");
    assert!(!parts.is_empty(), "{p}");
    for part in &parts {
        let d: f64 = attr(part, "DURATION").unwrap().parse().unwrap();
        assert!(d <= part_target + 1e-9, "{part}");
        if attr(part, "URI").unwrap().ends_with("_0.m4s") {
            assert!(part.contains("INDEPENDENT=YES"), "{part}");
        }
    }
    // Program date time is wall-clock time, close to now.
    let pdt =
        lines(&p, "#EXT-X-PROGRAM-DATE-TIME:")[0].trim_start_matches("#EXT-X-PROGRAM-DATE-TIME:");
    let pdt = humantime::parse_rfc3339(pdt).unwrap();
    let age = SystemTime::now().duration_since(pdt).unwrap_or_default();
    assert!(age < Duration::from_secs(15), "PDT {age:?} old");
    assert_eq!(lines(&p, "#EXT-X-PRELOAD-HINT").len(), 1);

    // The files.
    let init = get(&app, "/live/tags/init_1.mp4").await;
    assert_eq!(init.status, 200);
    assert_eq!(init.header("content-type"), Some("video/mp4"));
    assert!(init.header("cache-control").unwrap().contains("max-age"));
    assert_eq!(&init.body[4..8], b"ftyp");
    let seg_line = p.lines().find(|l| l.starts_with("seg_")).unwrap();
    let seg = get(&app, &format!("/live/tags/{seg_line}")).await;
    assert_eq!(seg.status, 200);
    assert_eq!(&seg.body[4..8], b"moof");
    assert_eq!(
        seg.header("content-length")
            .unwrap()
            .parse::<usize>()
            .unwrap(),
        seg.body.len()
    );
    let part_uri = attr(parts[0], "URI").unwrap();
    let part = get(&app, &format!("/live/tags/{part_uri}")).await;
    assert_eq!(part.status, 200);
    assert_eq!(&part.body[4..8], b"moof");
    // A segment is its parts, byte for byte.
    let seg_msn: u64 = seg_line
        .trim_start_matches("seg_")
        .trim_end_matches(".m4s")
        .parse()
        .unwrap();
    let mut joined = Vec::new();
    for i in 0.. {
        let r = get(&app, &format!("/live/tags/part_{seg_msn}_{i}.m4s")).await;
        if r.status != 200 {
            break;
        }
        joined.extend_from_slice(&r.body);
    }
    assert_eq!(joined, seg.body.to_vec());

    // CORS preflight for players on other origins.
    let pre = http_with(
        "OPTIONS",
        app.http_addr,
        "/live/tags/index.m3u8",
        &[
            ("Origin", "http://example.com"),
            ("Access-Control-Request-Method", "GET"),
        ],
        b"",
    )
    .await;
    assert!(pre.status == 200 || pre.status == 204, "{}", pre.status);
    assert_eq!(pre.header("access-control-allow-origin"), Some("*"));
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_reload_and_preload_hints() {
    let app = start("").await;
    let _push = push(
        "high_bframes_aac48.mp4",
        &rtmp_url(&app, "live/block"),
        true,
    );
    wait_published(&app, "live/block").await;
    let p = get(&app, "/live/block/index.m3u8").await.text();
    let (msn, part) = hint(&p);

    // A request for the hinted part blocks until the playlist has it.
    let t = Instant::now();
    let r = get(
        &app,
        &format!("/live/block/index.m3u8?_HLS_msn={msn}&_HLS_part={part}"),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(
        r.text().contains(&format!("URI=\"part_{msn}_{part}.m4s\""))
            || r.text().contains(&format!("seg_{msn}.m4s")),
        "{}",
        r.text()
    );
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "answered once the part existed"
    );

    // The preload-hinted part itself is waited for, not answered with 404.
    let (msn, part) = hint(&r.text());
    let r = get(&app, &format!("/live/block/part_{msn}_{part}.m4s")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(&r.body[4..8], b"moof");

    // A whole next segment can be waited for too.
    let r = get(
        &app,
        &format!("/live/block/index.m3u8?_HLS_msn={}", msn + 1),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains(&format!("seg_{}.m4s", msn + 1)));

    // More than two segments ahead of the playlist: 400 at once.
    let t = Instant::now();
    let r = get(
        &app,
        &format!("/live/block/index.m3u8?_HLS_msn={}", msn + 10),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(t.elapsed() < Duration::from_secs(1));
    assert!(r.json()["error"].as_str().unwrap().contains("ahead"));
    // Malformed directives.
    assert_eq!(
        get(&app, "/live/block/index.m3u8?_HLS_part=1").await.status,
        400
    );
    assert_eq!(
        get(&app, "/live/block/index.m3u8?_HLS_msn=x").await.status,
        400
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_request_gives_up_after_three_target_durations() {
    let app = start("[hls]\nsegment_duration = \"1s\"\ntarget_duration = \"1s\"\n").await;
    // A publisher that sends two seconds of media, then nothing (but stays).
    let mut client = RtmpClient::publish(app.rtmp_addr, "live", "stall")
        .await
        .unwrap();
    client.send_flv("res_a_320x240.flv", 0, false).await;
    wait_published(&app, "live/stall").await;
    let p = get(&app, "/live/stall/index.m3u8").await.text();
    let (msn, _) = hint(&p);
    let t = Instant::now();
    let r = get(
        &app,
        &format!("/live/stall/index.m3u8?_HLS_msn={}", msn + 1),
    )
    .await;
    let waited = t.elapsed();
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        waited >= Duration::from_millis(2900) && waited < Duration::from_secs(6),
        "{waited:?}"
    );
    drop(client);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_gop_source_keeps_a_fixed_target_duration() {
    let app = start("[path_defaults]\npublisher_grace = \"0s\"\n[hls]\nsegment_count = 10\n").await;
    let mut pusher = push_with(
        "long_gop.mp4",
        &rtmp_url(&app, "live/gop"),
        &["-readrate", "4"],
    );
    wait_published(&app, "live/gop").await;
    assert_eq!(get(&app, "/live/gop/index.m3u8").await.status, 200);
    tokio::time::timeout(Duration::from_secs(30), pusher.0.wait())
        .await
        .unwrap()
        .unwrap();
    let p = eventually(Duration::from_secs(10), "ENDLIST", || async {
        let t = get(&app, "/live/gop/index.m3u8").await.text();
        t.contains("#EXT-X-ENDLIST").then_some(t)
    })
    .await;
    assert_eq!(lines(&p, "#EXT-X-TARGETDURATION:").len(), 1);
    assert!(p.contains("#EXT-X-TARGETDURATION:4\n"), "{p}");
    let durations: Vec<f64> = lines(&p, "#EXTINF:")
        .iter()
        .map(|l| {
            l.trim_start_matches("#EXTINF:")
                .trim_end_matches(',')
                .parse()
                .unwrap()
        })
        .collect();
    // Keyframes at 0, 8 and 16 s: segments are cut there and nowhere else.
    assert_eq!(durations.len(), 3, "{p}");
    assert!(
        (durations[0] - 8.0).abs() < 0.05 && (durations[1] - 8.0).abs() < 0.05,
        "{durations:?}"
    );
    for part in lines(&p, "#EXT-X-PART:") {
        let d: f64 = attr(part, "DURATION").unwrap().parse().unwrap();
        assert!(d <= 0.2 + 1e-9, "{part}");
    }
    let errors = decode_errors(&hls_url(&app, "live/gop"), 20).await;
    assert!(errors.is_empty(), "{errors:?}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolution_change_mid_stream_reaches_hls_and_rtmp_players() {
    let app = start("[path_defaults]\npublisher_grace = \"0s\"\n").await;
    let mut publisher = RtmpClient::publish(app.rtmp_addr, "live", "res")
        .await
        .unwrap();
    let first_half = publisher.send_flv("res_a_320x240.flv", 0, false).await;
    wait_published(&app, "live/res").await;
    assert_eq!(get(&app, "/live/res/index.m3u8").await.status, 200);
    let mut player = RtmpClient::play(app.rtmp_addr, "live", "res")
        .await
        .unwrap();
    publisher
        .send_flv("res_b_640x360.flv", first_half + 40, false)
        .await;

    // The RTMP player gets a second, different AVC sequence header.
    let mut headers = Vec::new();
    while headers.len() < 2 {
        if let ClientEvent::Video { payload, .. } = player
            .wait_for(|e| matches!(e, ClientEvent::Video { .. }))
            .await
            && payload.get(..2) == Some(&[0x17, 0x00])
        {
            headers.push(payload);
        }
    }
    assert_ne!(headers[0], headers[1]);

    publisher.session.delete_stream();
    publisher.flush().await;
    drop(publisher);
    let p = eventually(Duration::from_secs(10), "ENDLIST", || async {
        let t = get(&app, "/live/res/index.m3u8").await.text();
        t.contains("#EXT-X-ENDLIST").then_some(t)
    })
    .await;
    assert!(
        p.contains("#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"init_2.mp4\""),
        "{p}"
    );
    let frames = ffprobe(
        &hls_url(&app, "live/res"),
        &[
            "-select_streams",
            "v",
            "-show_entries",
            "frame=width,height",
        ],
    )
    .await;
    let sizes: Vec<(u64, u64)> = frames["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["width"].as_u64().unwrap(), f["height"].as_u64().unwrap()))
        .collect();
    assert!(sizes.contains(&(320, 240)), "{sizes:?}");
    assert!(sizes.contains(&(640, 360)), "{sizes:?}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_only_and_video_only_streams() {
    let app = start("").await;
    let _a = push("audio_only.mp4", &rtmp_url(&app, "live/audio"), true);
    let _v = push("video_only.mp4", &rtmp_url(&app, "live/video"), true);
    wait_published(&app, "live/audio").await;
    wait_published(&app, "live/video").await;
    for (path, kind) in [("live/audio", "audio"), ("live/video", "video")] {
        for url in [hls_url(&app, path), rtmp_url(&app, path)] {
            let streams = probe_streams(&url).await;
            assert_eq!(streams.len(), 1, "{url}: {streams:?}");
            assert_eq!(streams[0]["codec_type"], kind, "{url}");
        }
        let errors = decode_errors(&hls_url(&app, path), 2).await;
        assert!(errors.is_empty(), "{path}: {errors:?}");
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_updates_skip_old_segments() {
    let app =
        start("[hls]\nsegment_duration = \"1s\"\ntarget_duration = \"1s\"\nsegment_count = 20\n")
            .await;
    let _push = push_with(
        "high_bframes_aac48.mp4",
        &rtmp_url(&app, "live/delta"),
        &["-readrate", "4", "-stream_loop", "-1"],
    );
    wait_published(&app, "live/delta").await;
    let full = eventually(Duration::from_secs(20), "12 segments", || async {
        let t = get(&app, "/live/delta/index.m3u8").await.text();
        (lines(&t, "#EXTINF").len() >= 12).then_some(t)
    })
    .await;
    assert!(full.contains("CAN-SKIP-UNTIL=6.0"));
    let delta = get(&app, "/live/delta/index.m3u8?_HLS_skip=YES")
        .await
        .text();
    let skip = lines(&delta, "#EXT-X-SKIP:SKIPPED-SEGMENTS=");
    assert_eq!(skip.len(), 1, "{delta}");
    let skipped: usize = skip[0].rsplit('=').next().unwrap().parse().unwrap();
    assert!(skipped >= 4, "{delta}");
    assert!(delta.len() < full.len());
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_muxer_starts_on_request_and_stops_when_idle() {
    let app = start("[hls]\nidle_timeout = \"1s\"\n").await;
    let _push = push(
        "baseline_aac44_mono.mp4",
        &rtmp_url(&app, "live/idle"),
        true,
    );
    wait_published(&app, "live/idle").await;
    let stream = app.hub.stream("live/idle").unwrap();
    assert_eq!(stream.reader_count(), 0, "no muxer before a request");
    let t = Instant::now();
    assert_eq!(get(&app, "/live/idle/index.m3u8").await.status, 200);
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "first playlist from the GOP cache"
    );
    assert_eq!(stream.reader_count(), 1);
    eventually(Duration::from_secs(5), "muxer to stop", || async {
        (stream.reader_count() == 0).then_some(())
    })
    .await;
    // And it comes back on the next request.
    assert_eq!(get(&app, "/live/idle/index.m3u8").await.status, 200);
    app.shutdown().await;
}
