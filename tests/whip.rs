//! WHIP ingest: Chromium publishes its fake camera and microphone (H.264 +
//! Opus) and every egress reads it: HLS and RTMP with the Opus transcoded to
//! AAC, WebRTC with the Opus as is.

mod common;

use std::time::Duration;

use common::whep::WhepClient;
use common::*;

fn script(name: &str) -> String {
    common::repo_dir()
        .join("tests/browser")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_publishes_over_whip_and_every_egress_plays_it() {
    let app = start("[path_defaults]\npublisher_grace = \"0s\"\n").await;
    let url = format!("http://{}/live/browser/whip", app.http_addr);
    let publisher = tokio::spawn(async move {
        run(
            "node",
            &[&script("publish_whip.mjs"), &url, "16"],
            Duration::from_secs(90),
        )
        .await
    });
    wait_published(&app, "live/browser").await;

    // The publisher's token is kept with its session (for auth).
    let session = app
        .hub
        .sessions()
        .into_iter()
        .find(|s| s.path == "live/browser")
        .unwrap();
    assert_eq!(session.token.as_deref(), Some("test-token"));
    let api = http("GET", app.api_addr, "/v1/paths/live/browser", b"")
        .await
        .json();
    assert_eq!(api["source"]["type"], "webrtc", "{api}");
    let codecs: Vec<&str> = api["stream"]["tracks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["codec"].as_str().unwrap())
        .collect();
    assert_eq!(codecs, vec!["h264", "opus", "aac"], "{api}");

    // HLS and RTMP: H.264 and the Opus as AAC.
    for url in [
        hls_url(&app, "live/browser"),
        rtmp_url(&app, "live/browser"),
    ] {
        let streams = probe_streams(&url).await;
        let mut names: Vec<&str> = streams
            .iter()
            .map(|s| s["codec_name"].as_str().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, vec!["aac", "h264"], "{url}");
    }
    // WebRTC: the Opus passes through.
    let viewer = WhepClient::connect(app.http_addr, "live/browser")
        .await
        .unwrap();
    viewer.wait_video(Duration::from_secs(10)).await.unwrap();
    let got = viewer.run_for(Duration::from_secs(2)).await;
    assert!(got.video.len() > 20, "{} video frames", got.video.len());
    assert!(got.audio.len() > 50, "{} audio packets", got.audio.len());

    let (ok, out, err) = publisher.await.unwrap();
    assert!(ok, "{err}");
    let r: serde_json::Value =
        serde_json::from_str(out.lines().last().unwrap_or_default()).unwrap();
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["deleteStatus"], 200, "{r}");
    // DELETE ended the publisher: the path goes away (grace 0).
    eventually(Duration::from_secs(5), "the stream to end", || async {
        app.hub.stream("live/browser").is_none().then_some(())
    })
    .await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whip_refusals() {
    let app = start("[paths.\"cam\"]\nsource = \"rtsp://127.0.0.1:9/x\"\non_demand = true\n").await;
    let sdp = [("Content-Type", "application/sdp")];
    let r = http_with("POST", app.http_addr, "/live/x/whip", &sdp, b"garbage").await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        !r.text().contains("0x"),
        "no parser internals: {}",
        r.text()
    );
    let r = http_with(
        "POST",
        app.http_addr,
        "/live/x/whip",
        &[("Content-Type", "text/plain")],
        b"v=0",
    )
    .await;
    assert_eq!(r.status, 415);
    // An offer that made str0m assert (found by fuzzing): a payload type
    // mapped twice in a media section. WHIP and WHEP answer 400; the server
    // goes on.
    let twice =
        include_bytes!("../fuzz/regressions/sdp_offer/payload_type_mapped_twice_str0m_assert");
    for target in ["/live/x/whip", "/live/x/whep"] {
        let r = http_with("POST", app.http_addr, target, &sdp, twice).await;
        assert_eq!(r.status, 400, "{target}: {}", r.text());
        assert!(
            r.text().contains("payload type 102 is mapped twice"),
            "{target}: {}",
            r.text()
        );
    }
    // A path that pulls a camera takes no publisher.
    let offerer = common::whep::Offerer::new(common::whep::Offer::H264Opus).await;
    let offer = offerer.sdp.clone();
    let r = http_with("POST", app.http_addr, "/cam/whip", &sdp, offer.as_bytes()).await;
    assert_eq!(r.status, 403, "{}", r.text());
    // A path with a publisher refuses a second one.
    let _push = push(
        "baseline_aac44_mono.mp4",
        &rtmp_url(&app, "live/busy"),
        true,
    );
    wait_published(&app, "live/busy").await;
    let r = http_with(
        "POST",
        app.http_addr,
        "/live/busy/whip",
        &sdp,
        offer.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 409, "{}", r.text());
    let r = http("DELETE", app.http_addr, "/live/busy/whip/12345", b"").await;
    assert_eq!(r.status, 404);
    app.shutdown().await;
}
