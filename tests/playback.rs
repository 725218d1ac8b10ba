//! A publisher pushes exactly as OBS does (ffmpeg `-re … -c copy -f flv`);
//! real players (ffprobe, ffmpeg) read it back over LL-HLS and RTMP.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

fn stream<'a>(streams: &'a [Value], kind: &str) -> &'a Value {
    streams
        .iter()
        .find(|s| s["codec_type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} stream in {streams:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn obs_like_push_plays_over_hls_and_rtmp() {
    let app = start("").await;
    let _push = push("high_bframes_aac48.mp4", &rtmp_url(&app, "live/cam1"), true);
    wait_published(&app, "live/cam1").await;

    for url in [hls_url(&app, "live/cam1"), rtmp_url(&app, "live/cam1")] {
        let streams = probe_streams(&url).await;
        let v = stream(&streams, "video");
        assert_eq!(v["codec_name"], "h264", "{url}");
        assert_eq!(v["profile"], "High", "{url}");
        assert_eq!(
            (v["width"].as_u64(), v["height"].as_u64()),
            (Some(640), Some(360)),
            "{url}"
        );
        let a = stream(&streams, "audio");
        assert_eq!(a["codec_name"], "aac", "{url}");
        assert_eq!(a["sample_rate"], "48000", "{url}");
        assert_eq!(a["channels"], 2, "{url}");
        let errors = decode_errors(&url, 3).await;
        assert!(errors.is_empty(), "{url}: decode errors {errors:?}");
    }
    app.shutdown().await;
}

/// (pts, dts) in seconds of every packet of one stream, in decode order.
fn packets(probe: &Value, kind: &str) -> Vec<(f64, f64, bool)> {
    probe["packets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["codec_type"] == kind)
        .map(|p| {
            let t = |k: &str| p[k].as_str().and_then(|s| s.parse::<f64>().ok()).unwrap();
            (
                t("pts_time"),
                t("dts_time"),
                p["flags"].as_str().unwrap_or("").contains('K'),
            )
        })
        .collect()
}

/// Everything the publisher sent comes out of HLS: every frame, B-frame
/// composition times, and audio/video alignment (the offset between the
/// tracks at the output equals the source's, to well under one frame).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_output_matches_the_source_frame_for_frame() {
    let app = start("[path_defaults]\npublisher_grace = \"0s\"\n[hls]\nsegment_count = 20\n").await;
    let mut pusher = push(
        "high_bframes_aac48.mp4",
        &rtmp_url(&app, "live/exact"),
        false,
    );
    wait_published(&app, "live/exact").await;
    // Start the muxer while the first GOP is still in the cache.
    let first = http("GET", app.http_addr, "/live/exact/index.m3u8", b"").await;
    assert_eq!(first.status, 200, "{}", first.text());
    tokio::time::timeout(Duration::from_secs(30), pusher.0.wait())
        .await
        .unwrap()
        .unwrap();
    // The publisher is gone (grace 0): the playlist ends.
    eventually(Duration::from_secs(10), "ENDLIST", || async {
        let r = http("GET", app.http_addr, "/live/exact/index.m3u8", b"").await;
        r.text().contains("#EXT-X-ENDLIST").then_some(())
    })
    .await;

    let source = ffprobe(
        fixture("high_bframes_aac48.mp4").to_str().unwrap(),
        &["-show_packets"],
    )
    .await;
    let output = ffprobe(&hls_url(&app, "live/exact"), &["-show_packets"]).await;
    let (sv, ov) = (packets(&source, "video"), packets(&output, "video"));
    let (sa, oa) = (packets(&source, "audio"), packets(&output, "audio"));
    assert_eq!(ov.len(), sv.len(), "every video frame arrives");
    assert_eq!(oa.len(), sa.len(), "every audio frame arrives");

    // Video: same composition offsets (B-frames), same spacing.
    let cv = ov[0].0 - sv[0].0;
    for (i, (o, s)) in ov.iter().zip(&sv).enumerate() {
        assert!(
            (o.0 - s.0 - cv).abs() < 0.0015,
            "video pts {i}: {o:?} vs {s:?}"
        );
        assert!(
            ((o.0 - o.1) - (s.0 - s.1)).abs() < 0.0015,
            "composition time {i}"
        );
        assert_eq!(o.2, s.2, "keyframe flag {i}");
    }
    // Audio: the same offset to video as in the source.
    let ca = oa[0].0 - sa[0].0;
    assert!(
        (ca - cv).abs() < 0.002,
        "A/V offset moved by {:.4} s",
        ca - cv
    );
    for (i, (o, s)) in oa.iter().zip(&sa).enumerate() {
        assert!(
            (o.0 - s.0 - ca).abs() < 0.0015,
            "audio pts {i}: {o:?} vs {s:?}"
        );
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtmp_playback_keeps_b_frames_and_starts_on_a_keyframe() {
    let app = start("").await;
    let _push = push("high_bframes_aac48.mp4", &rtmp_url(&app, "live/b"), true);
    wait_published(&app, "live/b").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let probe = ffprobe(
        &rtmp_url(&app, "live/b"),
        &["-show_packets", "-read_intervals", "%+3"],
    )
    .await;
    let video = packets(&probe, "video");
    assert!(video.len() >= 60, "{} video packets in 3 s", video.len());
    assert!(video[0].2, "the first video packet is a keyframe");
    assert!(
        video.iter().any(|p| p.0 != p.1),
        "pts != dts survives (B-frames)"
    );
    assert!(video.windows(2).all(|w| w[1].1 > w[0].1), "dts increases");
    app.shutdown().await;
}

/// With `rtmp_merge_writes` a player gets its frames in batches (one write
/// per 300 ms of media): ffprobe still reads both tracks, gap-free and in
/// decoding order. (Audio between video frames waiting for the next video
/// frame, the default, is what every other RTMP playback test exercises.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtmp_players_with_merged_writes_get_every_track_in_order() {
    let app = start("rtmp_merge_writes = \"300ms\"\n").await;
    let _push = push(
        "high_bframes_aac48.mp4",
        &rtmp_url(&app, "live/merged"),
        true,
    );
    wait_published(&app, "live/merged").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let probe = ffprobe(
        &rtmp_url(&app, "live/merged"),
        &["-show_packets", "-read_intervals", "%+3"],
    )
    .await;
    let (video, audio) = (packets(&probe, "video"), packets(&probe, "audio"));
    assert!(video.len() >= 60, "{} video packets in 3 s", video.len());
    assert!(audio.len() >= 100, "{} audio packets in 3 s", audio.len());
    assert!(video[0].2, "the first video packet is a keyframe");
    for (kind, p) in [("video", &video), ("audio", &audio)] {
        assert!(
            p.windows(2).all(|w| w[1].1 > w[0].1),
            "{kind} dts increases"
        );
        // 30 fps video, 48 kHz AAC (21 ms): no step near a second.
        let gap = p.windows(2).map(|w| w[1].1 - w[0].1).fold(0.0, f64::max);
        assert!(gap < 0.1, "{kind}: a {gap:.3} s gap");
    }
    app.shutdown().await;
}

/// VLC (3.0, the adaptive demuxer) reads the LL-HLS stream: what it reads is
/// remuxed to a file and counted with ffprobe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vlc_plays_the_hls_stream() {
    let app = start("").await;
    let _push = push("high_bframes_aac48.mp4", &rtmp_url(&app, "live/vlc"), true);
    wait_published(&app, "live/vlc").await;
    let dir = std::env::temp_dir().join(format!("mediarelay-vlc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // VLC refuses to run as root; run it as nobody where we are root.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let out = dir.join("vlc.ts");
    let sout = format!("#std{{access=file,mux=ts,dst={}}}", out.display());
    let url = hls_url(&app, "live/vlc");
    let mut args = vec![
        "-I",
        "dummy",
        "--run-time",
        "6",
        "--play-and-exit",
        &url,
        "--sout",
        &sout,
    ];
    let root = run("id", &["-u"], Duration::from_secs(5)).await.1.trim() == "0";
    let mut program = "cvlc";
    if root {
        args.splice(
            0..0,
            [
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
                "cvlc",
            ],
        );
        program = "setpriv";
    }
    let (ok, _, err) = run(program, &args, Duration::from_secs(40)).await;
    assert!(ok, "vlc failed: {err}");
    let probe = ffprobe(out.to_str().unwrap(), &["-count_frames", "-show_streams"]).await;
    let _ = std::fs::remove_dir_all(&dir);
    let streams = probe["streams"].as_array().unwrap();
    let frames = |kind: &str| {
        streams
            .iter()
            .find(|s| s["codec_type"] == kind)
            .and_then(|s| s["nb_read_frames"].as_str()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert!(frames("video") >= 100, "{probe}");
    assert!(frames("audio") >= 150, "{probe}");
    app.shutdown().await;
}
