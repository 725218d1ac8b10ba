//! The RTSP server against real readers: ffmpeg/ffprobe and GStreamer's
//! rtspsrc read an RTMP-pushed stream and a camera path over TCP and UDP;
//! twenty readers of one camera pull it once; auth (Digest from ffmpeg,
//! Basic by hand) refused and accepted; bad requests get their status and
//! end only their connection; a reader that stops reading is dropped
//! without disturbing another.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::camera::Camera;
use common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// ffmpeg pushing the 320x240 H.264 + AAC fixture over RTMP to `path`,
/// once it is published.
async fn publish_fixture(app: &mediarelay::app::App, path: &str) -> Proc {
    let p = push(
        fixture("res_a_320x240.flv").to_str().unwrap(),
        &rtmp_url(app, path),
        true,
    );
    wait_published(app, path).await;
    p
}

/// The session id of a `SETUP` answer.
fn session_of(answer: &str) -> String {
    answer
        .lines()
        .find_map(|l| l.strip_prefix("Session: "))
        .and_then(|v| v.split(';').next())
        .unwrap_or_else(|| panic!("no session in {answer}"))
        .to_string()
}

/// An RTSP/1.0 request's text: method, URI, CSeq and the given headers.
fn msg(method: &str, uri: &str, cseq: u32, headers: &[(&str, &str)]) -> String {
    let mut m = format!("{method} {uri} RTSP/1.0\r\nCSeq: {cseq}\r\n");
    for (k, v) in headers {
        m.push_str(&format!("{k}: {v}\r\n"));
    }
    m + "\r\n"
}

/// `SETUP` of `url`'s track `track` with `transport` (in `session`, if
/// any): the answer.
async fn setup(
    s: &mut TcpStream,
    url: &str,
    track: u32,
    transport: &str,
    session: Option<&str>,
    cseq: u32,
) -> String {
    let mut headers = vec![("Transport", transport)];
    if let Some(id) = session {
        headers.push(("Session", id));
    }
    request(
        s,
        &msg("SETUP", &format!("{url}/trackID={track}"), cseq, &headers),
    )
    .await
}

/// The interleaved TCP transport on channels `rtp` and `rtp + 1`.
fn tcp_channels(rtp: u8) -> String {
    format!("RTP/AVP/TCP;unicast;interleaved={rtp}-{}", rtp + 1)
}

fn rtsp_url(app: &mediarelay::app::App, path: &str) -> String {
    format!(
        "rtsp://{}/{path}",
        app.rtsp_addr.expect("the RTSP listener is on")
    )
}

async fn rtsp_streams(url: &str, transport: &str) -> Vec<String> {
    let v = ffprobe(url, &["-rtsp_transport", transport, "-show_streams"]).await;
    codec_names(
        v["streams"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default(),
    )
}

/// Decodes `secs` of `url` over `transport`; the error lines ffmpeg printed.
async fn rtsp_decode_errors(url: &str, transport: &str, secs: u32) -> Vec<String> {
    let t = secs.to_string();
    let (ok, _, err) = run(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-rtsp_transport",
            transport,
            "-i",
            url,
            "-t",
            &t,
            "-f",
            "null",
            "-",
        ],
        Duration::from_secs(60),
    )
    .await;
    assert!(ok, "ffmpeg could not read {url} over {transport}: {err}");
    err.lines().map(str::to_string).collect()
}

/// GStreamer's rtspsrc decodes `frames` video frames and `frames` audio
/// buffers of `url` over `protocols` (`tcp` or `udp`).
async fn gstreamer_decodes(url: &str, protocols: &str, frames: u32) {
    let pipeline = format!(
        "rtspsrc location={url} protocols={protocols} latency=0 name=s \
         s. ! queue ! rtph264depay ! h264parse ! avdec_h264 ! identity eos-after={frames} ! fakesink \
         s. ! queue ! rtpmp4gdepay ! aacparse ! avdec_aac ! identity eos-after={frames} ! fakesink"
    );
    let args: Vec<&str> = pipeline.split_whitespace().collect();
    let (ok, out, err) = run("gst-launch-1.0", &args, Duration::from_secs(60)).await;
    assert!(
        ok && out.contains("Got EOS"),
        "GStreamer could not play {url} over {protocols}: {out}\n{err}"
    );
}

async fn path_json(app: &mediarelay::app::App, path: &str) -> Value {
    let r = http("GET", app.api_addr, &format!("/v1/paths/{path}"), b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_and_gstreamer_read_a_pushed_stream_over_tcp_and_udp() {
    let app = start("").await;
    let _push = publish_fixture(&app, "live/cam").await;
    let url = rtsp_url(&app, "live/cam");
    for transport in ["tcp", "udp"] {
        assert_eq!(
            rtsp_streams(&url, transport).await,
            vec!["aac/48000", "h264/320x240"],
            "{transport}"
        );
        let errors = rtsp_decode_errors(&url, transport, 3).await;
        assert!(errors.is_empty(), "{transport}: {errors:?}");
        gstreamer_decodes(&url, transport, 40).await;
    }
    // While a reader plays, the API lists it as an RTSP reader.
    let reader = tokio::spawn({
        let url = url.clone();
        async move { rtsp_decode_errors(&url, "tcp", 4).await }
    });
    let readers = eventually(Duration::from_secs(10), "an RTSP reader", || async {
        let p = path_json(&app, "live/cam").await;
        (p["readers_by_protocol"]["rtsp"] == 1).then_some(p)
    })
    .await;
    assert_eq!(readers["readers"][0]["protocol"], "rtsp", "{readers}");
    assert!(reader.await.unwrap().is_empty());
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_readers_of_one_camera_pull_it_once() {
    let cam = Camera::start().await;
    let app = start(&format!(
        "[paths.\"door\"]\nsource = \"{}\"\n",
        cam.url("h264_aac")
    ))
    .await;
    wait_published(&app, "door").await;
    let url = rtsp_url(&app, "door");
    let readers: Vec<_> = (0..20)
        .map(|i| {
            let url = url.clone();
            let transport = if i % 2 == 0 { "tcp" } else { "udp" };
            tokio::spawn(async move {
                let (ok, _, err) = run(
                    "ffmpeg",
                    &[
                        "-v",
                        "error",
                        "-rtsp_transport",
                        transport,
                        "-i",
                        &url,
                        "-t",
                        "4",
                        "-c",
                        "copy",
                        "-f",
                        "null",
                        "-",
                    ],
                    Duration::from_secs(90),
                )
                .await;
                (ok, transport, err)
            })
        })
        .collect();
    let peak = eventually(
        Duration::from_secs(30),
        "20 RTSP readers at once",
        || async {
            let p = path_json(&app, "door").await;
            (p["readers_by_protocol"]["rtsp"].as_u64() >= Some(18)).then_some(p)
        },
    )
    .await;
    for r in readers {
        let (ok, transport, err) = r.await.unwrap();
        assert!(ok, "a reader over {transport} failed: {err}");
    }
    let source = &peak["source"];
    assert_eq!(source["connects"], 1, "the camera is pulled once: {source}");
    assert_eq!(source["retries"], 0, "{source}");
    app.shutdown().await;
    cam.stop().await;
}

/// One request on a connection: the status line and headers of the answer.
async fn request(stream: &mut TcpStream, text: &str) -> String {
    stream.write_all(text.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_string();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                return String::from_utf8_lossy(&got[..end + 4 + length]).to_string();
            }
        }
    }
    String::from_utf8_lossy(&got).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_is_asked_for_and_digest_and_basic_are_accepted() {
    let app = start(
        "[[users]]\nuser = \"viewer\"\npass = \"plain:secret\"\npermissions = [{ action = \"read\" }]\n\
         [[users]]\nuser = \"pub\"\npass = \"plain:pubpass\"\npermissions = [{ action = \"publish\" }]\n",
    )
    .await;
    let _push = push(
        fixture("res_a_320x240.flv").to_str().unwrap(),
        &format!("{}?user=pub&pass=pubpass", rtmp_url(&app, "live/cam")),
        true,
    );
    wait_published(&app, "live/cam").await;
    let addr = app.rtsp_addr.unwrap();
    // No credentials: 401 with a Digest and a Basic challenge.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let answer = request(
        &mut s,
        &format!("DESCRIBE rtsp://{addr}/live/cam RTSP/1.0\r\nCSeq: 1\r\n\r\n"),
    )
    .await;
    assert!(answer.starts_with("RTSP/1.0 401"), "{answer}");
    assert!(
        answer.contains("WWW-Authenticate: Digest realm=\"mediarelay\""),
        "{answer}"
    );
    assert!(
        answer.contains("WWW-Authenticate: Basic realm=\"mediarelay\""),
        "{answer}"
    );
    assert!(answer.contains("CSeq: 1"), "{answer}");
    // Basic with the right password: the SDP.
    let basic = base64::engine::general_purpose::STANDARD.encode("viewer:secret");
    let answer = request(
        &mut s,
        &format!("DESCRIBE rtsp://{addr}/live/cam RTSP/1.0\r\nCSeq: 2\r\nAuthorization: Basic {basic}\r\n\r\n"),
    )
    .await;
    assert!(answer.starts_with("RTSP/1.0 200"), "{answer}");
    assert!(answer.contains("m=video 0 RTP/AVP 96"), "{answer}");
    // A user who may only publish is forbidden.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let basic = base64::engine::general_purpose::STANDARD.encode("pub:pubpass");
    let answer = request(
        &mut s,
        &format!("DESCRIBE rtsp://{addr}/live/cam RTSP/1.0\r\nCSeq: 1\r\nAuthorization: Basic {basic}\r\n\r\n"),
    )
    .await;
    assert!(answer.starts_with("RTSP/1.0 403"), "{answer}");
    // ffmpeg answers the Digest challenge (it prefers Digest to Basic).
    let url = format!("rtsp://viewer:secret@{addr}/live/cam");
    assert_eq!(
        rtsp_streams(&url, "tcp").await,
        vec!["aac/48000", "h264/320x240"]
    );
    let (ok, _, err) = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-rtsp_transport",
            "tcp",
            &format!("rtsp://viewer:wrong@{addr}/live/cam"),
        ],
        Duration::from_secs(30),
    )
    .await;
    assert!(
        !ok && err.contains("401"),
        "a wrong password is refused: {err}"
    );
    // Credentials in the query string, as for RTMP and HLS.
    let url = format!("rtsp://{addr}/live/cam?user=viewer&pass=secret");
    assert_eq!(
        rtsp_streams(&url, "tcp").await,
        vec!["aac/48000", "h264/320x240"]
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_their_status_and_end_only_their_connection() {
    let app = start("write_timeout = \"2s\"\n").await;
    let _push = publish_fixture(&app, "live/cam").await;
    let addr = app.rtsp_addr.unwrap();
    let url = rtsp_url(&app, "live/cam");
    // A healthy reader throughout.
    let healthy = tokio::spawn({
        let url = url.clone();
        async move { rtsp_decode_errors(&url, "tcp", 8).await }
    });
    eventually(Duration::from_secs(10), "the healthy reader", || async {
        (path_json(&app, "live/cam").await["readers_by_protocol"]["rtsp"] == 1).then_some(())
    })
    .await;

    // Not RTSP at all: 400, then the connection is closed.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let answer = request(&mut s, "\x16\x03\x01 garbage \r\n\r\n").await;
    assert!(answer.starts_with("RTSP/1.0 400"), "{answer:?}");
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    // A request head that never ends: 413 after the bound.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let huge = format!(
        "DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\nX-Pad: {}",
        "a".repeat(100 * 1024)
    );
    let answer = request(&mut s, &huge).await;
    assert!(answer.starts_with("RTSP/1.0 413"), "{answer:?}");
    // SETUP of a track the path does not have, a path that does not exist,
    // an unsupported transport, a session that is not this one.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let answer = setup(&mut s, &url, 9, &tcp_channels(0), None, 1).await;
    assert!(answer.starts_with("RTSP/1.0 404"), "{answer}");
    let answer = request(
        &mut s,
        &format!("DESCRIBE rtsp://{addr}/no/such RTSP/1.0\r\nCSeq: 2\r\n\r\n"),
    )
    .await;
    assert!(answer.starts_with("RTSP/1.0 404"), "{answer}");
    let answer = request(
        &mut s,
        &format!(
            "SETUP {url}/trackID=0 RTSP/1.0\r\nCSeq: 3\r\nTransport: RTP/AVP;multicast\r\n\r\n"
        ),
    )
    .await;
    assert!(answer.starts_with("RTSP/1.0 461"), "{answer}");
    let answer = request(&mut s, &msg("PLAY", &url, 4, &[("Session", "nosuch")])).await;
    assert!(answer.starts_with("RTSP/1.0 454"), "{answer}");
    // Publishing: an SDP with nothing the relay can carry, RECORD before
    // SETUP, a method it does not serve.
    let mut p = TcpStream::connect(addr).await.unwrap();
    let sdp = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n";
    let answer = request(
        &mut p,
        &format!(
            "ANNOUNCE rtsp://{addr}/live/in RTSP/1.0\r\nCSeq: 1\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        ),
    )
    .await;
    assert!(answer.starts_with("RTSP/1.0 415"), "{answer}");
    let answer = request(
        &mut p,
        &format!("RECORD rtsp://{addr}/live/in RTSP/1.0\r\nCSeq: 2\r\n\r\n"),
    )
    .await;
    assert!(answer.starts_with("RTSP/1.0 455"), "{answer}");
    let answer = request(
        &mut p,
        &format!("REDIRECT rtsp://{addr}/live/in RTSP/1.0\r\nCSeq: 3\r\n\r\n"),
    )
    .await;
    assert!(answer.starts_with("RTSP/1.0 501"), "{answer}");
    // An interleaved frame whose length lies: the connection waits for
    // bytes that never come and is closed by the idle timeout; others go on.
    let mut liar = TcpStream::connect(addr).await.unwrap();
    liar.write_all(b"$\x00\xff\xffshort").await.unwrap();

    // A reader that stops reading: set up over TCP, PLAY, never read. It
    // is dropped after write_timeout; the healthy reader is not disturbed.
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    let answer = setup(&mut stalled, &url, 0, &tcp_channels(0), None, 1).await;
    assert!(answer.starts_with("RTSP/1.0 200"), "{answer}");
    let session = session_of(&answer);
    stalled
        .write_all(msg("PLAY", &url, 2, &[("Session", &session)]).as_bytes())
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "two RTSP readers", || async {
        (path_json(&app, "live/cam").await["readers_by_protocol"]["rtsp"] == 2).then_some(())
    })
    .await;
    eventually(
        Duration::from_secs(30),
        "the stalled reader dropped",
        || async {
            (path_json(&app, "live/cam").await["readers_by_protocol"]["rtsp"].as_u64() < Some(2))
                .then_some(())
        },
    )
    .await;
    let errors = healthy.await.unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    drop((stalled, liar));
    // And the server still answers.
    assert_eq!(
        rtsp_streams(&url, "udp").await,
        vec!["aac/48000", "h264/320x240"]
    );
    app.shutdown().await;
}

/// `ffmpeg -f rtsp` publishing (RTP over TCP after its UDP offer is
/// refused with 461).
fn rtsp_push(file: &str, url: &str, transport: Option<&str>) -> Proc {
    let mut args = vec![
        "-v",
        "error",
        "-re",
        "-stream_loop",
        "-1",
        "-i",
        file,
        "-c",
        "copy",
        "-f",
        "rtsp",
    ];
    if let Some(t) = transport {
        args.extend(["-rtsp_transport", t]);
    }
    args.push(url);
    Proc(
        tokio::process::Command::new("ffmpeg")
            .args(&args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("ffmpeg must be installed (see README)"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_and_gstreamer_publish_over_rtsp_and_every_egress_plays_it() {
    let app = start("").await;
    let addr = app.rtsp_addr.unwrap();
    let file = fixture("res_a_320x240.flv");
    // ffmpeg, TCP asked for, and with its default (UDP first, then TCP).
    let _tcp = rtsp_push(
        file.to_str().unwrap(),
        &format!("rtsp://{addr}/live/ff"),
        Some("tcp"),
    );
    let _dflt = rtsp_push(
        file.to_str().unwrap(),
        &format!("rtsp://{addr}/live/ff2"),
        None,
    );
    for path in ["live/ff", "live/ff2"] {
        wait_published(&app, path).await;
        let hls = codec_names(&probe_streams(&hls_url(&app, path)).await);
        assert_eq!(hls, vec!["aac/48000", "h264/320x240"], "{path} over HLS");
        let rtmp = codec_names(&probe_streams(&rtmp_url(&app, path)).await);
        assert_eq!(rtmp, vec!["aac/48000", "h264/320x240"], "{path} over RTMP");
        assert_eq!(
            rtsp_streams(&rtsp_url(&app, path), "tcp").await,
            vec!["aac/48000", "h264/320x240"],
            "{path} over RTSP"
        );
    }
    let errors = decode_errors(&hls_url(&app, "live/ff"), 3).await;
    assert!(errors.is_empty(), "{errors:?}");
    let p = path_json(&app, "live/ff").await;
    assert_eq!(p["source"]["type"], "rtsp", "{p}");

    // GStreamer's rtspclientsink: H.264 and Opus (AAC for HLS made from it).
    let pipeline = format!(
        "rtspclientsink name=s location=rtsp://{addr}/live/gst protocols=tcp \
         videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=15/1 \
         ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15 bitrate=300 \
         ! video/x-h264,profile=baseline ! s. \
         audiotestsrc is-live=true ! audioconvert ! opusenc ! s."
    );
    let _gst = Proc(
        tokio::process::Command::new("gst-launch-1.0")
            .args(pipeline.split_whitespace())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("gst-launch-1.0 must be installed (see README)"),
    );
    wait_published(&app, "live/gst").await;
    let hls = codec_names(&probe_streams(&hls_url(&app, "live/gst")).await);
    assert_eq!(hls, vec!["aac/48000", "h264/320x240"], "GStreamer over HLS");
    let errors = decode_errors(&hls_url(&app, "live/gst"), 3).await;
    assert!(errors.is_empty(), "{errors:?}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_over_rtsp_needs_the_publish_permission() {
    let app = start(
        "[[users]]\nuser = \"pub\"\npass = \"plain:pubpass\"\npermissions = [{ action = \"publish\" }]\n\
         [[users]]\nuser = \"any\"\npermissions = [{ action = \"read\" }]\n",
    )
    .await;
    let addr = app.rtsp_addr.unwrap();
    let file = fixture("res_a_320x240.flv");
    let (ok, _, err) = run(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-re",
            "-i",
            file.to_str().unwrap(),
            "-t",
            "2",
            "-c",
            "copy",
            "-f",
            "rtsp",
            "-rtsp_transport",
            "tcp",
            &format!("rtsp://{addr}/live/x"),
        ],
        Duration::from_secs(30),
    )
    .await;
    assert!(
        !ok && err.contains("401"),
        "publishing without credentials: {err}"
    );
    assert!(app.hub.stream("live/x").is_none());
    let _push = rtsp_push(
        file.to_str().unwrap(),
        &format!("rtsp://pub:pubpass@{addr}/live/x"),
        Some("tcp"),
    );
    wait_published(&app, "live/x").await;
    // Anyone may read it.
    assert_eq!(
        rtsp_streams(&rtsp_url(&app, "live/x"), "udp").await,
        vec!["aac/48000", "h264/320x240"]
    );
    app.shutdown().await;
}

/// What an RTSP reader gets over TCP: every track's first interleaved frame
/// is an RTCP sender report (RFC 3550 §6.4.1) with the SSRC of the track's
/// RTP, mapping RTP time to a wall clock near now; both tracks map onto one
/// clock (their first packets' wall times are close), so players can sync
/// audio and video from the first frame. Video RTP time runs at 90 kHz.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_reports_come_first_and_put_both_tracks_on_one_clock() {
    let app = start("").await;
    let _push = publish_fixture(&app, "live/cam").await;
    let url = rtsp_url(&app, "live/cam");
    let mut s = TcpStream::connect(app.rtsp_addr.unwrap()).await.unwrap();
    let answer = setup(&mut s, &url, 0, &tcp_channels(0), None, 1).await;
    assert!(answer.starts_with("RTSP/1.0 200"), "{answer}");
    let session = session_of(&answer);
    let answer = setup(&mut s, &url, 1, &tcp_channels(2), Some(&session), 2).await;
    assert!(answer.starts_with("RTSP/1.0 200"), "{answer}");
    // PLAY: its answer, then interleaved frames on the same bytes.
    s.write_all(msg("PLAY", &format!("{url}/"), 3, &[("Session", &session)]).as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(2500);
    let mut chunk = vec![0u8; 65536];
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let answer = String::from_utf8_lossy(&buf[..head_end]).to_string();
    assert!(answer.starts_with("RTSP/1.0 200"), "{answer}");
    assert!(answer.contains("RTP-Info: url="), "{answer}");
    let mut frames: Vec<(u8, Vec<u8>)> = Vec::new();
    let mut at = head_end;
    while at + 4 <= buf.len() && buf[at] == b'$' {
        let len = u16::from_be_bytes([buf[at + 2], buf[at + 3]]) as usize;
        if at + 4 + len > buf.len() {
            break;
        }
        frames.push((buf[at + 1], buf[at + 4..at + 4 + len].to_vec()));
        at += 4 + len;
    }
    assert!(frames.len() > 50, "{} frames", frames.len());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let mut first_wall = Vec::new();
    for (rtp_ch, rtcp_ch, clock) in [(0u8, 1u8, 90_000f64), (2, 3, 48_000f64)] {
        let first = frames
            .iter()
            .position(|(c, _)| *c == rtp_ch || *c == rtcp_ch)
            .unwrap();
        let (c, sr) = &frames[first];
        assert_eq!(
            *c, rtcp_ch,
            "a sender report before channel {rtp_ch}'s first RTP"
        );
        assert_eq!(sr[1], 200, "RTCP SR");
        let ntp = u64::from_be_bytes(sr[8..16].try_into().unwrap());
        let wall =
            (ntp >> 32) as f64 - 2_208_988_800.0 + (ntp & 0xffff_ffff) as f64 / 4_294_967_296.0;
        assert!(
            (wall - now).abs() < 30.0,
            "SR wall clock {wall} vs now {now}"
        );
        let sr_rtp = u32::from_be_bytes(sr[16..20].try_into().unwrap());
        let rtp: Vec<&Vec<u8>> = frames
            .iter()
            .filter(|(c, _)| *c == rtp_ch)
            .map(|(_, d)| d)
            .collect();
        assert!(rtp.len() > 10, "channel {rtp_ch}: {} packets", rtp.len());
        assert_eq!(rtp[0][0] >> 6, 2, "RTP version 2");
        assert_eq!(&rtp[0][8..12], &sr[4..8], "the SR's SSRC is the RTP's");
        let ts = |p: &Vec<u8>| u32::from_be_bytes(p[4..8].try_into().unwrap());
        // The first packet's wall time by the SR's mapping.
        first_wall.push(wall + f64::from(ts(rtp[0]).wrapping_sub(sr_rtp) as i32) / clock);
        if rtp_ch == 0 {
            let span = ts(rtp.last().unwrap()).wrapping_sub(ts(rtp[0])) as f64 / clock;
            assert!((0.3..10.0).contains(&span), "video RTP time spans {span} s");
        }
    }
    assert!(
        (first_wall[0] - first_wall[1]).abs() < 1.0,
        "video and audio start on one clock: {first_wall:?}"
    );
    app.shutdown().await;
}

/// Liveness: a connection that sends nothing before PLAY is closed after
/// `handshake_timeout`; a UDP reader that plays and sends nothing is closed
/// after `rtsp_session_timeout`, and one that sends RTCP receiver reports
/// to the server's RTCP port (and nothing on its RTSP connection) is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_sessions_time_out_and_rtcp_over_udp_keeps_one_alive() {
    let app = start("handshake_timeout = \"2s\"\nrtsp_session_timeout = \"3s\"\n").await;
    let _push = publish_fixture(&app, "live/cam").await;
    let url = rtsp_url(&app, "live/cam");
    let addr = app.rtsp_addr.unwrap();
    let (_, rtcp_port) = app.rtsp_udp_addrs.unwrap();
    let closed_within = |mut s: TcpStream, limit: Duration| async move {
        let mut sink = vec![0u8; 65536];
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, s.read(&mut sink)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    };
    // Silent before PLAY.
    let quiet = TcpStream::connect(addr).await.unwrap();
    assert!(
        closed_within(quiet, Duration::from_secs(8)).await,
        "closed by handshake_timeout"
    );
    // A paused session lives by the session timeout, not handshake_timeout.
    let mut paused = TcpStream::connect(addr).await.unwrap();
    let answer = setup(&mut paused, &url, 0, &tcp_channels(0), None, 1).await;
    let session = session_of(&answer);
    let answer = request(
        &mut paused,
        &msg("PAUSE", &format!("{url}/"), 2, &[("Session", &session)]),
    )
    .await;
    assert!(answer.starts_with("RTSP/1.0 200"), "{answer}");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let answer = request(
        &mut paused,
        &msg(
            "GET_PARAMETER",
            &format!("{url}/"),
            3,
            &[("Session", &session)],
        ),
    )
    .await;
    assert!(
        answer.starts_with("RTSP/1.0 200"),
        "paused past handshake_timeout: {answer:?}"
    );

    // Two UDP readers; one sends receiver reports from its RTCP port.
    let mut readers = Vec::new();
    for _ in 0..2 {
        let rtp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let rtcp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (p1, p2) = (
            rtp.local_addr().unwrap().port(),
            rtcp.local_addr().unwrap().port(),
        );
        let mut s = TcpStream::connect(addr).await.unwrap();
        let answer = request(
            &mut s,
            &msg(
                "SETUP",
                &format!("{url}/trackID=0"),
                1,
                &[(
                    "Transport",
                    &format!("RTP/AVP;unicast;client_port={p1}-{p2}"),
                )],
            ),
        )
        .await;
        assert!(answer.starts_with("RTSP/1.0 200"), "{answer}");
        assert!(answer.contains(";timeout=3"), "{answer}");
        let session = session_of(&answer);
        let answer = request(
            &mut s,
            &msg("PLAY", &format!("{url}/"), 2, &[("Session", &session)]),
        )
        .await;
        assert!(answer.starts_with("RTSP/1.0 200"), "{answer}");
        let mut datagram = vec![0u8; 2048];
        let n = tokio::time::timeout(Duration::from_secs(5), rtp.recv(&mut datagram))
            .await
            .expect("RTP over UDP")
            .unwrap();
        assert!(n > 12 && datagram[0] >> 6 == 2);
        readers.push((s, rtp, rtcp));
    }
    let (kept, _kept_rtp, kept_rtcp) = readers.remove(0);
    let (silent, _silent_rtp, _silent_rtcp) = readers.remove(0);
    let keepalive = tokio::spawn(async move {
        // An empty receiver report (RFC 3550 §6.4.2), every 500 ms.
        let rr = [0x80u8, 201, 0, 1, 0, 0, 0, 7];
        loop {
            let _ = kept_rtcp.send_to(&rr, rtcp_port).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    assert!(
        closed_within(silent, Duration::from_secs(10)).await,
        "closed by rtsp_session_timeout"
    );
    // The one sending RTCP is still open well past the timeout.
    assert!(
        !closed_within(kept, Duration::from_secs(5)).await,
        "kept by its RTCP"
    );
    keepalive.abort();
    app.shutdown().await;
}
