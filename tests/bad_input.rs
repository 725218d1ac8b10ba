//! Bad input ends only its own session, with a clear log line, and nothing a
//! peer sends makes the server panic.
//!
//! Every test starts a server with a GOOD publisher (ffmpeg, looping
//! `baseline_aac44_mono.mp4` to `live/good`), inflicts one kind of bad input
//! on separate connections, and then checks that:
//! (a) the bad connection is closed by the server (or, for input that is
//!     harmless, ignored while the session goes on), with a log line that
//!     names the reason, tied to the peer's address;
//! (b) the good stream is still the same stream, still advancing, and its
//!     HLS playlist still answers 200;
//! (c) a new publish after the bad input works;
//! and that no server task panicked (a panic hook records every panic on a
//! tokio worker thread; a stack overflow would abort this test binary).
//!
//! Logs are captured (in addition to the usual test output) with the filter
//! `mediarelay=info,mediarelay::server=debug`; `RUST_LOG` is not used here.

mod common;

use std::sync::{Mutex, Once};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::*;
use mediarelay::app::App;
use mediarelay::container::flv_file::{FlvFile, TAG_AUDIO, TAG_SCRIPT, TAG_VIDEO};
use mediarelay::protocol::rtmp::chunk::encode_message;
use mediarelay::protocol::rtmp::command::Writer;
use mediarelay::protocol::rtmp::{ClientEvent, ClientSession, msg_type};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

const GOOD: &str = "live/good";
/// Media frames (not sequence headers) in `res_a_320x240.flv`: 60 video + 95 audio.
const RES_A_FRAMES: u64 = 155;

// ---------------------------------------------------------------------------
// Process-wide guards: server panics and captured logs.

static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());
static LOGS: Mutex<String> = Mutex::new(String::new());

struct Capture;

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_str(&String::from_utf8_lossy(buf));
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn guards() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with("tokio"))
            {
                PANICS
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(info.to_string());
            }
            default(info);
        }));
        use tracing_subscriber::fmt::writer::{MakeWriterExt, TestWriter};
        // Installed before `common::start` calls `init_logs`, whose
        // `try_init` then leaves this one in place.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "mediarelay=info,mediarelay::server=debug",
            ))
            .with_ansi(false)
            .with_writer(TestWriter::new().and(|| Capture))
            .try_init();
    });
}

fn assert_no_server_panic() {
    let panics = PANICS.lock().unwrap_or_else(|e| e.into_inner());
    assert!(panics.is_empty(), "server tasks panicked: {panics:#?}");
}

/// Where the captured logs stood when the connection from each local port
/// was opened (a port can be reused by a later connection).
static MARKS: Mutex<Vec<(u16, usize)>> = Mutex::new(Vec::new());

/// The local port of a connection to the server; log lines of that port
/// from now on belong to this connection.
fn local_port(s: &TcpStream) -> u16 {
    let port = s.local_addr().unwrap().port();
    let mark = LOGS.lock().unwrap_or_else(|e| e.into_inner()).len();
    let mut marks = MARKS.lock().unwrap_or_else(|e| e.into_inner());
    marks.retain(|(p, _)| *p != port);
    marks.push((port, mark));
    port
}

/// Captured log lines of the RTMP connection from local port `port`.
fn logs_of(port: u16) -> Vec<String> {
    let needle = format!("peer=127.0.0.1:{port}}}");
    let mark = MARKS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find(|(p, _)| *p == port)
        .map_or(0, |(_, m)| *m);
    LOGS.lock().unwrap_or_else(|e| e.into_inner())[mark..]
        .lines()
        .filter(|l| l.contains(&needle))
        .map(str::to_owned)
        .collect()
}

/// Waits for a log line of the connection from `port` that contains every
/// one of `needles`.
async fn expect_log(port: u16, needles: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(l) = logs_of(port)
            .into_iter()
            .find(|l| needles.iter().all(|n| l.contains(n)))
        {
            return l;
        }
        if Instant::now() > deadline {
            panic!(
                "no log line with {needles:?} for the connection from port {port}; its lines: {:#?}",
                logs_of(port)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------
// The bench: a server with a good publisher.

struct Bench {
    app: App,
    good: Proc,
    good_stream_id: u64,
    started: Instant,
}

async fn bench(toml: &str) -> Bench {
    guards();
    let started = Instant::now();
    let app = start(toml).await;
    let good = push("baseline_aac44_mono.mp4", &rtmp_url(&app, GOOD), true);
    wait_published(&app, GOOD).await;
    let good_stream_id = app.hub.stream(GOOD).unwrap().id;
    Bench {
        app,
        good,
        good_stream_id,
        started,
    }
}

impl Bench {
    fn rtmp(&self) -> std::net::SocketAddr {
        self.app.rtmp_addr
    }

    /// (b) and (c): the good stream is the same stream, still advancing, its
    /// playlist answers 200; a new publish to `live/{key}` works.
    async fn assert_still_serving(&self, key: &str) {
        let stream = self
            .app
            .hub
            .stream(GOOD)
            .expect("the good stream is still published");
        assert_eq!(
            stream.id, self.good_stream_id,
            "the good stream was not restarted"
        );
        let before = stream.frames_in();
        eventually(Duration::from_secs(5), "the good stream to advance", || {
            let s = stream.clone();
            async move { (s.frames_in() > before + 10).then_some(()) }
        })
        .await;
        let r = http(
            "GET",
            self.app.http_addr,
            &format!("/{GOOD}/index.m3u8"),
            b"",
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.text().starts_with("#EXTM3U"), "{}", r.text());
        assert_new_publish_works(&self.app, key).await;
        assert_no_server_panic();
    }

    async fn finish(self, name: &str) {
        assert_no_server_panic();
        drop(self.good);
        self.app.shutdown().await;
        eprintln!("{name}: {:.1} s", self.started.elapsed().as_secs_f64());
    }
}

/// A fresh RTMP publish of `res_a_320x240.flv` (sent as fast as possible) to
/// `live/{key}` is accepted and every frame reaches the hub.
async fn assert_new_publish_works(app: &App, key: &str) {
    let mut c = RtmpClient::publish(app.rtmp_addr, "live", key)
        .await
        .unwrap_or_else(|e| panic!("new publish to live/{key} refused: {e:?}"));
    c.send_flv("res_a_320x240.flv", 0, false).await;
    let path = format!("live/{key}");
    wait_published(app, &path).await;
    let stream = app.hub.stream(&path).unwrap();
    eventually(
        Duration::from_secs(5),
        "every frame of the new publish",
        || {
            let s = stream.clone();
            async move { (s.frames_in() == RES_A_FRAMES).then_some(()) }
        },
    )
    .await;
    let tracks: Vec<&str> = stream.tracks().iter().map(|t| t.params.name()).collect();
    assert_eq!(tracks, ["h264", "aac"]);
}

// ---------------------------------------------------------------------------
// Connections.

/// Reads (and discards) until the server closes the connection; panics if it
/// does not within `limit`. Returns how long it took.
async fn closed_by_server(socket: &mut TcpStream, limit: Duration) -> Duration {
    let t0 = Instant::now();
    let mut buf = vec![0u8; 65536];
    let closed = tokio::time::timeout(limit, async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the server did not close the connection within {limit:?}"
    );
    t0.elapsed()
}

/// Events an RTMP client receives until the server closes the connection
/// (panics if it does not within `limit`).
async fn events_until_closed(c: &mut RtmpClient, limit: Duration) -> Vec<ClientEvent> {
    let mut events = Vec::new();
    let closed = tokio::time::timeout(limit, async {
        loop {
            while let Some(e) = c.session.poll_event() {
                events.push(e);
            }
            if !c.read().await {
                return;
            }
        }
    })
    .await;
    while let Some(e) = c.session.poll_event() {
        events.push(e);
    }
    assert!(
        closed.is_ok(),
        "the server did not close the connection within {limit:?}; events {events:?}"
    );
    events
}

/// A connection that has done the RTMP handshake (by our client session) and
/// nothing else.
struct Raw {
    socket: TcpStream,
    session: ClientSession,
}

impl Raw {
    async fn open(addr: std::net::SocketAddr) -> Raw {
        let mut socket = TcpStream::connect(addr).await.unwrap();
        let mut session = ClientSession::new();
        let mut buf = vec![0u8; 16384];
        while let Some(b) = session.take_output() {
            socket.write_all(&b).await.unwrap();
        }
        while !session.handshake_done() {
            let n = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf))
                .await
                .expect("handshake answer in time")
                .unwrap();
            assert!(n > 0, "server closed during the handshake");
            session.handle_input(&buf[..n]).unwrap();
        }
        let mut raw = Raw { socket, session };
        raw.flush().await;
        raw
    }

    async fn flush(&mut self) {
        while let Some(b) = self.session.take_output() {
            self.socket.write_all(&b).await.unwrap();
        }
    }

    /// Sends bytes as they are (our chunk stream, hand made); a write error
    /// (the server already closed) is fine.
    async fn send_bytes(&mut self, bytes: &[u8]) {
        let _ = self.socket.write_all(bytes).await;
    }

    fn port(&self) -> u16 {
        local_port(&self.socket)
    }
}

/// One RTMP message as a type-0 chunk and type-3 continuations.
fn message(
    csid: u32,
    ts: u32,
    type_id: u8,
    stream_id: u32,
    payload: &[u8],
    chunk_size: u32,
) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_message(
        &mut out,
        csid,
        ts,
        type_id,
        stream_id,
        &[payload],
        chunk_size,
    );
    out.to_vec()
}

fn res_a_tags() -> Vec<mediarelay::container::flv_file::Tag> {
    let data = Bytes::from(std::fs::read(fixture("res_a_320x240.flv")).unwrap());
    FlvFile::new(data).unwrap().map(Result::unwrap).collect()
}

/// The AVC and AAC sequence header bodies of `res_a_320x240.flv`.
fn res_a_headers() -> (Bytes, Bytes) {
    let tags = res_a_tags();
    let find = |ty: u8| {
        tags.iter()
            .find(|t| t.tag_type == ty && t.body.get(1) == Some(&0))
            .unwrap()
            .body
            .clone()
    };
    (find(TAG_VIDEO), find(TAG_AUDIO))
}

// ---------------------------------------------------------------------------
// 1. Garbage on the RTMP port.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_rtmp_port() {
    let b = bench("read_timeout = \"2s\"\n").await;
    let mut rng = StdRng::seed_from_u64(1);

    // Random bytes (not starting with RTMP version 3).
    for i in 0..3 {
        let mut data: Vec<u8> = (0..4096).map(|_| rng.r#gen()).collect();
        if data[0] == 3 {
            data[0] = 0x47;
        }
        let mut s = TcpStream::connect(b.rtmp()).await.unwrap();
        let port = local_port(&s);
        let _ = s.write_all(&data).await;
        let took = closed_by_server(&mut s, Duration::from_secs(5)).await;
        assert!(
            took < Duration::from_secs(1),
            "garbage {i}: closed only after {took:?}"
        );
        expect_log(port, &["connection ended", "handshake"]).await;
    }

    // An HTTP request sent to the RTMP port.
    let mut s = TcpStream::connect(b.rtmp()).await.unwrap();
    let port = local_port(&s);
    s.write_all(b"GET /live/good/index.m3u8 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let took = closed_by_server(&mut s, Duration::from_secs(5)).await;
    assert!(
        took < Duration::from_secs(1),
        "HTTP request: closed only after {took:?}"
    );
    expect_log(port, &["connection ended", "handshake"]).await;

    // A valid version byte, then random handshake and random "chunks": the
    // handshake passes (rml_rtmp does not check C2), the chunks do not.
    for _ in 0..3 {
        let mut data = vec![3u8];
        data.extend((0..1536 * 2 + 2000).map(|_| rng.r#gen::<u8>()));
        let mut s = TcpStream::connect(b.rtmp()).await.unwrap();
        let port = local_port(&s);
        let _ = s.write_all(&data).await;
        closed_by_server(&mut s, Duration::from_secs(5)).await;
        expect_log(port, &["connection ended", "RTMP chunk stream"]).await;
    }

    b.assert_still_serving("after_garbage").await;
    b.finish("garbage_on_the_rtmp_port").await;
}

// ---------------------------------------------------------------------------
// 2. Truncated handshake.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_handshake() {
    let b = bench("read_timeout = \"1s\"\n").await;
    let mut c0c1 = vec![3u8];
    c0c1.extend(std::iter::repeat_n(0x5a, 1536 / 2));

    // C0 + half of C1, then close: the server just ends the connection.
    let mut s = TcpStream::connect(b.rtmp()).await.unwrap();
    let port = local_port(&s);
    s.write_all(&c0c1).await.unwrap();
    drop(s);
    expect_log(port, &["connection closed"]).await;

    // C0 + half of C1, then silence: closed after the 1 s read timeout.
    let mut s = TcpStream::connect(b.rtmp()).await.unwrap();
    let port = local_port(&s);
    s.write_all(&c0c1).await.unwrap();
    let took = closed_by_server(&mut s, Duration::from_secs(4)).await;
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "closed after {took:?}, read_timeout is 1 s"
    );
    expect_log(port, &["connection ended", "nothing received for 1s"]).await;

    // A connection that sends nothing at all is closed the same way.
    let mut s = TcpStream::connect(b.rtmp()).await.unwrap();
    let took = closed_by_server(&mut s, Duration::from_secs(4)).await;
    assert!(took >= Duration::from_millis(900), "closed after {took:?}");

    b.assert_still_serving("after_truncated_handshake").await;
    b.finish("truncated_handshake").await;
}

/// Slowloris on RTMP: bytes that trickle in, each well within read_timeout,
/// never get the connection past handshake_timeout — in the handshake, or
/// after it in the commands before publish/play.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_bytes_are_cut_off_at_the_handshake_timeout() {
    let b = bench("read_timeout = \"5s\"\nhandshake_timeout = \"2s\"\n").await;
    let trickle = |mut s: TcpStream, bytes: Vec<u8>| async move {
        let port = local_port(&s);
        let t0 = Instant::now();
        for byte in bytes {
            if s.write_all(&[byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            if t0.elapsed() > Duration::from_secs(6) {
                break;
            }
        }
        (port, t0.elapsed())
    };
    // In the handshake: C0 + C1, one byte every 300 ms.
    let s = TcpStream::connect(b.rtmp()).await.unwrap();
    let (port, took) = trickle(s, std::iter::once(3u8).chain([0x5a; 1536]).collect()).await;
    assert!(took < Duration::from_secs(4), "still open after {took:?}");
    expect_log(port, &["connection ended", "handshake_timeout"]).await;
    // After the handshake: a connect command, one byte every 300 ms.
    let raw = Raw::open(b.rtmp()).await;
    let connect = message(3, 0, msg_type::COMMAND_AMF0, 0, &name_only("connect"), 128);
    let (port, took) = trickle(raw.socket, connect.repeat(20)).await;
    assert!(took < Duration::from_secs(4), "still open after {took:?}");
    expect_log(port, &["connection ended", "handshake_timeout"]).await;
    b.assert_still_serving("after_trickled_bytes").await;
    b.finish("trickled_bytes_are_cut_off_at_the_handshake_timeout")
        .await;
}

// ---------------------------------------------------------------------------
// 3. A video tag whose NAL length prefix lies.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nal_length_bigger_than_the_tag() {
    let b = bench("read_timeout = \"2s\"\n").await;
    let (avc, aac) = res_a_headers();
    let tags = res_a_tags();
    let lying = |len: u32, key: bool| {
        let mut t = vec![if key { 0x17 } else { 0x27 }, 0x01, 0, 0, 0];
        t.extend(len.to_be_bytes());
        t.extend([0x65, 0x88, 0x84, 0x00, 0x10]);
        t
    };
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        // Right after the sequence headers, before the stream started.
        ("bad3a", lying(4096, true), false),
        // In the middle of a started stream.
        ("bad3b", lying(4096, false), true),
        // A length of 2^32 - 1.
        ("bad3c", lying(u32::MAX, true), true),
        // A tag too short to hold the AVC packet header.
        ("bad3d", vec![0x17, 0x01, 0x00], true),
    ];
    for (key, bad, started) in cases {
        let mut c = RtmpClient::publish(b.rtmp(), "live", key).await.unwrap();
        let port = local_port(&c.socket);
        c.session.send_video(0, &avc);
        c.session.send_audio(0, &aac);
        if started {
            // Real frames first, until the stream is running.
            for t in tags.iter().filter(|t| t.body.get(1) == Some(&1)).take(12) {
                match t.tag_type {
                    TAG_VIDEO => c.session.send_video(t.timestamp, &t.body),
                    _ => c.session.send_audio(t.timestamp, &t.body),
                }
            }
            c.flush().await;
            wait_published(&b.app, &format!("live/{key}")).await;
        }
        c.session.send_video(500, &bad);
        c.flush().await;
        let took = closed_by_server(&mut c.socket, Duration::from_secs(5)).await;
        assert!(
            took < Duration::from_secs(1),
            "{key}: closed only after {took:?}"
        );
        let line = expect_log(port, &["publishing ended"]).await;
        assert!(
            line.contains("bad H.264 frame") || line.contains("bad FLV tag"),
            "{key}: {line}"
        );
    }
    b.assert_still_serving("after_lying_nal").await;
    b.finish("nal_length_bigger_than_the_tag").await;
}

// ---------------------------------------------------------------------------
// 4. An AVC sequence header with a broken SPS.

/// Bits, MSB first, with Exp-Golomb codes (ITU-T H.264 §9.1).
#[derive(Default)]
struct Bits(Vec<bool>);

impl Bits {
    fn u(mut self, n: u32, v: u64) -> Self {
        for i in (0..n).rev() {
            self.0.push((v >> i) & 1 == 1);
        }
        self
    }
    fn ue(self, v: u64) -> Self {
        let x = v + 1;
        let len = 64 - x.leading_zeros();
        self.u(len - 1, 0).u(len, x)
    }
    /// rbsp_trailing_bits, then bytes; emulation prevention is checked, not
    /// inserted (the values used here never need it).
    fn finish(self) -> Vec<u8> {
        let mut bits = self.u(1, 1).0;
        while !bits.len().is_multiple_of(8) {
            bits.push(false);
        }
        let bytes: Vec<u8> = bits
            .chunks(8)
            .map(|c| c.iter().fold(0u8, |acc, &b| (acc << 1) | u8::from(b)))
            .collect();
        assert!(
            !bytes
                .windows(3)
                .any(|w| w[0] == 0 && w[1] == 0 && w[2] <= 3),
            "needs emulation prevention"
        );
        bytes
    }
}

/// A Baseline SPS (NAL header included) with these fields.
fn baseline_sps(poc_type: u64, width_mbs_minus1: u64, height_mbs_minus1: u64) -> Vec<u8> {
    let mut sps = vec![0x67];
    sps.extend(
        Bits::default()
            .u(8, 66) // profile_idc
            .u(8, 0xC0) // constraint flags
            .u(8, 30) // level_idc
            .ue(0) // seq_parameter_set_id
            .ue(0) // log2_max_frame_num_minus4
            .ue(poc_type)
            .ue(0) // log2_max_pic_order_cnt_lsb_minus4 (when poc_type 0)
            .ue(1) // max_num_ref_frames
            .u(1, 0) // gaps_in_frame_num_value_allowed_flag
            .ue(width_mbs_minus1)
            .ue(height_mbs_minus1)
            .u(1, 1) // frame_mbs_only_flag
            .u(1, 1) // direct_8x8_inference_flag
            .u(1, 0) // frame_cropping_flag
            .u(1, 0) // vui_parameters_present_flag
            .finish(),
    );
    sps
}

/// An AVCDecoderConfigurationRecord holding these SPS and PPS (4-byte NAL lengths).
fn avc_record(sps: &[&[u8]], pps: &[u8]) -> Vec<u8> {
    let first = sps.first().copied().unwrap_or(&[0x67, 66, 0xC0, 30]);
    let mut r = vec![
        1,
        first.get(1).copied().unwrap_or(66),
        0xC0,
        30,
        0xFF,
        0xE0 | sps.len() as u8,
    ];
    for s in sps {
        r.extend((s.len() as u16).to_be_bytes());
        r.extend(*s);
    }
    r.push(1);
    r.extend((pps.len() as u16).to_be_bytes());
    r.extend(pps);
    r
}

fn avc_sequence_header(record: &[u8]) -> Vec<u8> {
    let mut t = vec![0x17, 0x00, 0, 0, 0];
    t.extend(record);
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avc_sequence_header_with_a_broken_sps() {
    let b = bench("read_timeout = \"2s\"\n").await;
    let pps = [0x68, 0xCE, 0x3C, 0x80];
    // The SPS writer is right: the unbroken one parses to 320x240.
    let good = avc_record(&[&baseline_sps(0, 19, 14)], &pps);
    let (params, _) = mediarelay::codec::h264::h264_params(&Bytes::from(good)).unwrap();
    assert_eq!((params.width, params.height), (320, 240));

    let too_wide = baseline_sps(0, 4095, 14); // 65536 pixels wide
    let bad_poc = baseline_sps(3, 19, 14); // pic_order_cnt_type 3 does not exist
    let mut zeros = vec![0x67, 100, 0, 30];
    zeros.extend([0u8; 3]); // Exp-Golomb code that never ends
    let truncated = [0x67, 100, 0];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("too_wide", avc_record(&[&too_wide], &pps)),
        ("bad_poc", avc_record(&[&bad_poc], &pps)),
        ("zeros", avc_record(&[&zeros], &pps)),
        ("truncated", avc_record(&[&truncated], &pps)),
        ("pps_as_sps", avc_record(&[&pps], &pps)),
        ("no_sps", avc_record(&[], &pps)),
        ("sps_length_lies", {
            let mut r = avc_record(&[&baseline_sps(0, 19, 14)], &pps);
            r[6] = 0xFF;
            r
        }),
    ];
    for (i, (name, record)) in cases.into_iter().enumerate() {
        let record = Bytes::from(record);
        assert!(
            mediarelay::codec::h264::h264_params(&record).is_err(),
            "{name} is not broken"
        );
        let mut c = RtmpClient::publish(b.rtmp(), "live", &format!("bad4_{i}"))
            .await
            .unwrap();
        let port = local_port(&c.socket);
        c.session.send_video(0, &avc_sequence_header(&record));
        c.flush().await;
        let took = closed_by_server(&mut c.socket, Duration::from_secs(5)).await;
        assert!(
            took < Duration::from_secs(1),
            "{name}: closed only after {took:?}"
        );
        expect_log(port, &["publishing ended", "bad AVC sequence header"]).await;
        assert!(
            b.app.hub.stream(&format!("live/bad4_{i}")).is_none(),
            "{name}: a stream started"
        );
    }
    b.assert_still_serving("after_broken_sps").await;
    b.finish("avc_sequence_header_with_a_broken_sps").await;
}

// ---------------------------------------------------------------------------
// 5. AMF0 commands with too few values (rml_rtmp panicked on these).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amf0_commands_with_too_few_values() {
    let b = bench("read_timeout = \"2s\"\n").await;
    let name_only = |n: &str| Writer::default().string(n).finish();
    let name_and_id = |n: &str| Writer::command(n, 1.0).finish();

    // Before connect, right after the handshake.
    let before_connect: Vec<(&str, Vec<u8>, &str)> = vec![
        ("connect, name only", name_only("connect"), ""),
        ("connect, name + transaction id", name_and_id("connect"), ""),
        (
            "connect, no object",
            Writer::command("connect", 1.0).null().finish(),
            "",
        ),
        (
            "createStream, name only",
            name_only("createStream"),
            "createStream before connect",
        ),
        (
            "publish, name only",
            name_only("publish"),
            "publish before connect",
        ),
        (
            "play, name + id",
            name_and_id("play"),
            "play before connect",
        ),
        ("no name", Writer::default().number(1.0).finish(), ""),
        ("empty", Vec::new(), ""),
    ];
    let addr = b.rtmp();
    // Every case on its own connection, all at once (the harmless ones wait
    // for the read timeout).
    let before = before_connect
        .into_iter()
        .map(|(what, payload, reason)| async move {
            let mut raw = Raw::open(addr).await;
            let port = raw.port();
            raw.session.send_raw(msg_type::COMMAND_AMF0, 0, &payload);
            raw.flush().await;
            let took = closed_by_server(&mut raw.socket, Duration::from_secs(5)).await;
            let line = expect_log(port, &["connection ended"]).await;
            if reason.is_empty() {
                // Harmless: answered or ignored; the idle connection then times out.
                assert!(line.contains("nothing received for 2s"), "{what}: {line}");
            } else {
                assert!(
                    took < Duration::from_secs(1),
                    "{what}: closed only after {took:?}"
                );
                assert!(line.contains(reason), "{what}: {line}");
            }
        });

    // After a real connect.
    let after_connect: Vec<(&str, Vec<u8>, u32, Option<&str>)> = vec![
        (
            "createStream, name only",
            name_only("createStream"),
            0,
            None,
        ),
        (
            "publish, name only",
            name_only("publish"),
            1,
            Some("NetStream.Publish.BadName"),
        ),
        (
            "publish, name + id",
            name_and_id("publish"),
            1,
            Some("NetStream.Publish.BadName"),
        ),
        (
            "publish, no stream name",
            Writer::command("publish", 1.0).null().finish(),
            1,
            Some("NetStream.Publish.BadName"),
        ),
        (
            "play, name only",
            name_only("play"),
            1,
            Some("NetStream.Play.StreamNotFound"),
        ),
        (
            "deleteStream, name only",
            name_only("deleteStream"),
            0,
            None,
        ),
        ("FCUnpublish, name only", name_only("FCUnpublish"), 0, None),
        (
            "releaseStream, name only",
            name_only("releaseStream"),
            0,
            None,
        ),
        ("_result, name only", name_only("_result"), 0, None),
        ("onStatus, name only", name_only("onStatus"), 0, None),
        ("second connect, name only", name_only("connect"), 0, None),
    ];
    let after = after_connect.into_iter().map(|(what, payload, stream_id, status)| async move {
        let mut c = RtmpClient::connect(addr, "live").await;
        let port = local_port(&c.socket);
        c.session
            .send_raw(msg_type::COMMAND_AMF0, stream_id, &payload);
        c.flush().await;
        let events = events_until_closed(&mut c, Duration::from_secs(5)).await;
        if let Some(code) = status {
            assert!(
                events.iter().any(|e| matches!(e, ClientEvent::Status { level, code: c, .. } if level == "error" && c == code)),
                "{what}: expected {code}, got {events:?}"
            );
        }
        let line = expect_log(port, &["connection ended"]).await;
        if what.starts_with("second connect") {
            assert!(line.contains("second connect"), "{what}: {line}");
        }
    });
    futures_util::future::join(
        futures_util::future::join_all(before),
        futures_util::future::join_all(after),
    )
    .await;

    b.assert_still_serving("after_short_commands").await;
    b.finish("amf0_commands_with_too_few_values").await;
}

// ---------------------------------------------------------------------------
// 6. `@setDataFrame` with no payload after it.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_data_frame_without_payload() {
    let b = bench("read_timeout = \"2s\"\n").await;
    let bare: Vec<Vec<u8>> = vec![
        Writer::default().string("@setDataFrame").finish(),
        Writer::default()
            .string("@setDataFrame")
            .string("onMetaData")
            .finish(),
        Writer::default().string("onMetaData").finish(),
        Writer::default()
            .string("@setDataFrame")
            .string("onMetaData")
            .number(1.0)
            .finish(),
        Writer::default().string("@setDataFrame").null().finish(),
        Vec::new(),
        // Undecodable AMF0 after the name (0xFF is no marker).
        {
            let mut p = Writer::default()
                .string("@setDataFrame")
                .string("onMetaData")
                .finish();
            p.push(0xFF);
            p
        },
    ];

    // Before publish (after connect): ignored.
    let mut c = RtmpClient::connect(b.rtmp(), "live").await;
    for p in &bare {
        c.session.send_raw(msg_type::DATA_AMF0, 0, p);
    }
    c.flush().await;
    // Then the same connection publishes; while publishing, ignored too: the
    // session goes on and its media arrives.
    c.session.create_stream();
    c.flush().await;
    c.wait_for(|e| matches!(e, ClientEvent::StreamCreated { .. }))
        .await;
    c.session.publish("bad6");
    c.flush().await;
    c.wait_for(|e| matches!(e, ClientEvent::PublishStarted))
        .await;
    for p in &bare {
        c.session.send_raw(msg_type::DATA_AMF0, 1, p);
        c.session
            .send_raw(msg_type::DATA_AMF3, 1, &[&[0u8][..], &p[..]].concat());
    }
    c.flush().await;
    c.send_flv("res_a_320x240.flv", 0, false).await;
    wait_published(&b.app, "live/bad6").await;
    let stream = b.app.hub.stream("live/bad6").unwrap();
    eventually(
        Duration::from_secs(5),
        "every frame after the bare metadata",
        || {
            let s = stream.clone();
            async move { (s.frames_in() == RES_A_FRAMES).then_some(()) }
        },
    )
    .await;
    assert_no_server_panic();
    // The publisher ends normally.
    c.session.delete_stream();
    c.flush().await;
    closed_by_server(&mut c.socket, Duration::from_secs(5)).await;

    b.assert_still_serving("after_bare_set_data_frame").await;
    b.finish("set_data_frame_without_payload").await;
}

// ---------------------------------------------------------------------------
// 7. Chunk headers that lie about lengths, and Set Chunk Size 0.

/// Set Chunk Size (type 1) on chunk stream 2 with this raw 4-byte value.
fn set_chunk_size(value: u32) -> Vec<u8> {
    message(2, 0, msg_type::SET_CHUNK_SIZE, 0, &value.to_be_bytes(), 128)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lying_chunk_headers_and_chunk_size_zero() {
    // Messages up to 1 MiB + 1 KiB (the tag header's room).
    let b = bench("read_timeout = \"2s\"\n[limits]\nmax_frame_bytes = 1048576\n").await;
    let video_300 = message(6, 0, msg_type::VIDEO, 1, &[0x27; 300], 128);
    let mut huge_header = vec![0x06, 0, 0, 0, 0xFF, 0xFF, 0xFF, msg_type::VIDEO, 1, 0, 0, 0];
    huge_header.extend([0u8; 128]);
    let mut mib_header = vec![0x06, 0, 0, 0, 0x10, 0, 0, msg_type::VIDEO, 1, 0, 0, 0];
    mib_header.extend([0u8; 128]);
    // Expected: (what, bytes, log text; "" = stays harmless until the read timeout).
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "Set Chunk Size 0",
            set_chunk_size(0),
            "invalid chunk size 0",
        ),
        (
            "Set Chunk Size 2^31",
            set_chunk_size(0x8000_0000),
            "invalid chunk size",
        ),
        (
            "Set Chunk Size, 2 bytes",
            message(2, 0, msg_type::SET_CHUNK_SIZE, 0, &[0, 0], 128),
            "needs 4",
        ),
        (
            // A new, shorter message header while 172 bytes of the first are
            // missing: the "remaining length" would underflow.
            "type-1 header inside a message",
            {
                let mut v = video_300[..12 + 128].to_vec();
                v.extend([0x46, 0, 0, 10, 0, 0, 10, msg_type::VIDEO]);
                v.extend([0u8; 10]);
                v
            },
            "starts a new message",
        ),
        (
            "type-0 header inside a message",
            {
                let mut v = video_300[..12 + 128].to_vec();
                v.extend(message(6, 5, msg_type::VIDEO, 1, b"xyz", 128));
                v
            },
            "starts a new message",
        ),
        (
            "type-3 chunk on a fresh chunk stream",
            vec![0xC7, 1, 2, 3],
            "no previous header",
        ),
        (
            "type-2 chunk on a fresh chunk stream",
            vec![0x87, 0, 0, 1, 1, 2, 3],
            "no previous header",
        ),
        (
            "a 16 MiB message, over limits.max_frame_bytes",
            huge_header.clone(),
            "is over the limit of 1049600 (limits.max_frame_bytes)",
        ),
        (
            // Each within the limit, together over four of them.
            "five 1 MiB messages in progress",
            (3u8..8)
                .flat_map(|csid| {
                    let mut h = mib_header.clone();
                    h[0] = csid;
                    h
                })
                .collect(),
            "would raise incomplete messages",
        ),
        (
            "more than 64 chunk streams",
            (3u32..=80)
                .flat_map(|csid| message(csid, 0, msg_type::VIDEO, 1, b"a", 128))
                .collect(),
            "chunk streams in use",
        ),
        // A declared 1 MiB message that never completes: harmless until the
        // read timeout.
        ("one 1 MiB message, then silence", mib_header.clone(), ""),
        (
            // Chunk size changed while a message is in progress: valid, the
            // rest arrives in smaller chunks.
            "chunk size lowered mid-message",
            {
                let mut v = video_300[..12 + 128].to_vec();
                v.extend(set_chunk_size(1));
                for byte in &[0x27u8; 172] {
                    v.extend([0xC6, *byte]);
                }
                v
            },
            "",
        ),
        (
            // csid 64 + 65535 (3-byte basic header form) is the largest.
            "largest chunk stream ids",
            {
                let mut v = message(65_599, 0, msg_type::COMMAND_AMF0, 0, &name_only("x"), 128);
                v.extend(message(
                    319,
                    0,
                    msg_type::COMMAND_AMF0,
                    0,
                    &name_only("y"),
                    128,
                ));
                v
            },
            "",
        ),
        (
            "extended timestamp, nothing after it",
            vec![0x06, 0xFF, 0xFF, 0xFF, 0, 1, 0, 9, 1, 0, 0, 0, 0xFF],
            "",
        ),
    ];
    let addr = b.rtmp();
    let cases = cases.into_iter().map(|(what, bytes, reason)| async move {
        let mut raw = Raw::open(addr).await;
        let port = raw.port();
        raw.send_bytes(&bytes).await;
        let took = closed_by_server(&mut raw.socket, Duration::from_secs(5)).await;
        let line = expect_log(port, &["connection ended"]).await;
        if reason.is_empty() {
            assert!(line.contains("nothing received for 2s"), "{what}: {line}");
        } else {
            assert!(
                took < Duration::from_secs(1),
                "{what}: closed only after {took:?}"
            );
            assert!(line.contains(reason), "{what}: {line}");
        }
    });
    futures_util::future::join_all(cases).await;
    b.assert_still_serving("after_lying_chunks").await;
    b.finish("lying_chunk_headers_and_chunk_size_zero").await;
}

fn name_only(n: &str) -> Vec<u8> {
    Writer::default().string(n).finish()
}

// ---------------------------------------------------------------------------
// 8. Deeply nested AMF0.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_amf0_does_not_overflow_the_stack() {
    let b = bench("read_timeout = \"2s\"\n").await;
    const N: usize = 100_000;
    let connect = || Writer::command("connect", 1.0).finish();
    let nested: Vec<(&str, Vec<u8>)> = vec![
        ("object markers", [connect(), vec![0x03; N]].concat()),
        (
            "objects with a key",
            [connect(), [0x03, 0x00, 0x01, b'a'].repeat(N)].concat(),
        ),
        (
            "strict arrays",
            [connect(), [0x0A, 0, 0, 0, 1].repeat(N)].concat(),
        ),
        (
            "ECMA arrays",
            [connect(), [0x08, 0, 0, 0, 1, 0x00, 0x01, b'a'].repeat(N)].concat(),
        ),
        (
            "inside the connect object",
            [
                Writer::command("connect", 1.0).finish(),
                vec![0x03, 0x00, 0x03],
                b"app".to_vec(),
                vec![0x02, 0x00, 0x04],
                b"live".to_vec(),
                vec![0x00, 0x01, b'x'],
                [0x03, 0x00, 0x01, b'a'].repeat(N),
            ]
            .concat(),
        ),
    ];
    for (what, payload) in nested {
        let mut raw = Raw::open(b.rtmp()).await;
        let port = raw.port();
        raw.session.set_chunk_size(65536);
        raw.session.send_raw(msg_type::COMMAND_AMF0, 0, &payload);
        raw.flush().await;
        let took = closed_by_server(&mut raw.socket, Duration::from_secs(5)).await;
        assert!(
            took < Duration::from_secs(1),
            "{what}: closed only after {took:?}"
        );
        expect_log(port, &["connection ended", "nested deeper"]).await;
    }

    // As metadata of a publishing session: ignored, the session goes on.
    let mut c = RtmpClient::publish(b.rtmp(), "live", "bad8").await.unwrap();
    c.session.set_chunk_size(65536);
    let deep = [
        Writer::default()
            .string("@setDataFrame")
            .string("onMetaData")
            .finish(),
        [0x08, 0, 0, 0, 1, 0x00, 0x01, b'a'].repeat(N),
    ]
    .concat();
    c.session.send_raw(msg_type::DATA_AMF0, 1, &deep);
    c.flush().await;
    c.send_flv("res_a_320x240.flv", 0, false).await;
    wait_published(&b.app, "live/bad8").await;
    let stream = b.app.hub.stream("live/bad8").unwrap();
    eventually(
        Duration::from_secs(5),
        "every frame after the deep metadata",
        || {
            let s = stream.clone();
            async move { (s.frames_in() == RES_A_FRAMES).then_some(()) }
        },
    )
    .await;
    drop(c);

    b.assert_still_serving("after_deep_amf0").await;
    b.finish("deeply_nested_amf0_does_not_overflow_the_stack")
        .await;
}

// ---------------------------------------------------------------------------
// 9. Interleaved audio and video chunks: valid RTMP, must be demuxed.

/// One message cut into its chunks (type 0, then type 3), csid < 64 and a
/// timestamp below the extended range.
fn chunks_of(
    csid: u8,
    ts: u32,
    type_id: u8,
    stream_id: u32,
    payload: &[u8],
    chunk_size: usize,
) -> Vec<Vec<u8>> {
    assert!((2..64).contains(&csid) && ts < 0xFF_FFFF);
    let mut first = vec![csid];
    first.extend(&ts.to_be_bytes()[1..]);
    first.extend(&(payload.len() as u32).to_be_bytes()[1..]);
    first.push(type_id);
    first.extend(stream_id.to_le_bytes());
    let mut pieces = payload.chunks(chunk_size);
    first.extend(pieces.next().unwrap_or(&[]));
    let mut chunks = vec![first];
    for p in pieces {
        chunks.push([&[0xC0 | csid][..], p].concat());
    }
    // Same bytes as the project's encoder, only cut apart.
    assert_eq!(
        chunks.concat(),
        message(
            u32::from(csid),
            ts,
            type_id,
            stream_id,
            payload,
            chunk_size as u32
        )
    );
    chunks
}

/// Publishes `res_a_320x240.flv` to `live/{key}` in real time with the
/// chunks of audio (csid 4) and video (csid 6) messages interleaved, checks
/// that the hub received every frame, ends the publish (the path must have a
/// grace of 0 s) and returns ffprobe's streams and packets of the HLS output.
async fn publish_interleaved(b: &Bench, key: &str) -> serde_json::Value {
    use std::collections::VecDeque;
    let path = format!("live/{key}");
    let tags: Vec<_> = res_a_tags()
        .into_iter()
        .filter(|t| t.tag_type != TAG_SCRIPT)
        .collect();
    let frames = tags.iter().filter(|t| t.body.get(1) == Some(&1)).count() as u64;
    assert_eq!(frames, RES_A_FRAMES);

    let mut c = RtmpClient::publish(b.rtmp(), "live", key).await.unwrap();
    let sid = c.session.stream_id();
    const CHUNK: usize = 128; // nobody changed it: the default
    let sender = tokio::spawn(async move {
        // Tags in 100 ms windows; within a window the chunks of the audio
        // messages and of the video messages alternate, one by one.
        let start = Instant::now();
        let mut interleavings = 0usize;
        let mut sent = 0usize;
        let mut i = 0;
        while i < tags.len() {
            let window = tags[i].timestamp / 100;
            let mut audio = VecDeque::new();
            let mut video = VecDeque::new();
            while i < tags.len() && tags[i].timestamp / 100 == window {
                let t = &tags[i];
                let (queue, csid) = if t.tag_type == TAG_AUDIO {
                    (&mut audio, 4)
                } else {
                    (&mut video, 6)
                };
                queue.push_back(VecDeque::from(chunks_of(
                    csid,
                    t.timestamp,
                    t.tag_type,
                    sid,
                    &t.body,
                    CHUNK,
                )));
                i += 1;
                sent += 1;
            }
            tokio::time::sleep_until(start + Duration::from_millis(u64::from(window) * 100)).await;
            let mut out = Vec::new();
            // Whether the message at the front of the audio (0) / video (1)
            // queue is half-way through.
            let mut open = [false, false];
            let mut turn = 0;
            while !audio.is_empty() || !video.is_empty() {
                let queue = if turn == 0 { &mut audio } else { &mut video };
                if let Some(msg) = queue.front_mut() {
                    out.extend(msg.pop_front().unwrap());
                    if open[1 - turn] {
                        // This chunk sits between two chunks of one message
                        // of the other kind.
                        interleavings += 1;
                    }
                    open[turn] = !msg.is_empty();
                    if msg.is_empty() {
                        queue.pop_front();
                    }
                }
                turn = 1 - turn;
            }
            c.socket.write_all(&out).await.unwrap();
        }
        (c, interleavings, sent)
    });

    wait_published(&b.app, &path).await;
    let stream = b.app.hub.stream(&path).unwrap();
    // Start the HLS muxer while the first GOP is in the cache.
    let first = http("GET", b.app.http_addr, &format!("/{path}/index.m3u8"), b"").await;
    assert_eq!(first.status, 200, "{}", first.text());
    let (mut c, interleavings, sent) = sender.await.unwrap();
    assert!(
        interleavings > 100,
        "only {interleavings} interleaved chunks"
    );
    eventually(
        Duration::from_secs(5),
        "every interleaved frame in the hub",
        || {
            let s = stream.clone();
            async move { (s.frames_in() == frames).then_some(()) }
        },
    )
    .await;
    assert_eq!(
        stream.frames_in(),
        frames,
        "{sent} tags sent, {frames} of them frames"
    );
    let tracks: Vec<&str> = stream.tracks().iter().map(|t| t.params.name()).collect();
    assert_eq!(tracks, ["h264", "aac"]);
    c.session.delete_stream();
    c.flush().await;
    closed_by_server(&mut c.socket, Duration::from_secs(5)).await;
    eventually(Duration::from_secs(10), "ENDLIST", || async {
        let r = http("GET", b.app.http_addr, &format!("/{path}/index.m3u8"), b"").await;
        r.text().contains("#EXT-X-ENDLIST").then_some(())
    })
    .await;
    ffprobe(&hls_url(&b.app, &path), &["-show_streams", "-show_packets"]).await
}

/// (pts, dts) in seconds of every packet of one kind, in decode order.
fn packets(probe: &serde_json::Value, kind: &str) -> Vec<(f64, f64)> {
    probe["packets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["codec_type"] == kind)
        .map(|p| {
            let t = |k: &str| p[k].as_str().and_then(|s| s.parse::<f64>().ok()).unwrap();
            (t("pts_time"), t("dts_time"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interleaved_audio_and_video_chunks_are_demuxed() {
    let b =
        bench("read_timeout = \"2s\"\n[paths.\"live/interleaved\"]\npublisher_grace = \"0s\"\n")
            .await;
    let probe = publish_interleaved(&b, "interleaved").await;
    let streams = probe["streams"].as_array().unwrap();
    let v = streams
        .iter()
        .find(|s| s["codec_type"] == "video")
        .expect("video stream");
    assert_eq!(v["codec_name"], "h264");
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(320), Some(240))
    );
    let a = streams
        .iter()
        .find(|s| s["codec_type"] == "audio")
        .expect("audio stream");
    assert_eq!(a["codec_name"], "aac");
    assert_eq!(a["sample_rate"], "48000");
    assert_eq!(
        packets(&probe, "video").len(),
        60,
        "every video frame comes out of HLS"
    );
    assert_eq!(
        packets(&probe, "audio").len(),
        95,
        "every audio frame comes out of HLS"
    );
    // Payloads were reassembled right: they decode without errors.
    let errors = decode_errors(&hls_url(&b.app, "live/interleaved"), 3).await;
    assert!(errors.is_empty(), "decode errors {errors:?}");

    b.assert_still_serving("after_interleaved").await;
    b.finish("interleaved_audio_and_video_chunks_are_demuxed")
        .await;
}

/// With interleaved chunks the small audio messages sent alongside the first
/// keyframe complete before it. Every frame must still keep its timestamp
/// (no clamping to the first frame that completed) and every audio frame must
/// reach HLS (audio that overtakes a keyframe belongs to its GOP).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interleaved_publish_keeps_every_frame_and_timestamp() {
    let b =
        bench("read_timeout = \"2s\"\n[paths.\"live/interleaved2\"]\npublisher_grace = \"0s\"\n")
            .await;
    let output = publish_interleaved(&b, "interleaved2").await;
    let source = ffprobe(
        fixture("res_a_320x240.flv").to_str().unwrap(),
        &["-show_packets"],
    )
    .await;
    let (sv, ov) = (packets(&source, "video"), packets(&output, "video"));
    let (sa, oa) = (packets(&source, "audio"), packets(&output, "audio"));
    assert_eq!(ov.len(), sv.len(), "every video frame arrives");
    assert!(
        ov.windows(2).all(|w| w[1].1 > w[0].1),
        "video DTS increases: {:?}",
        &ov[..4]
    );
    let cv = ov[0].0 - sv[0].0;
    for (i, (o, s)) in ov.iter().zip(&sv).enumerate() {
        assert!(
            (o.0 - s.0 - cv).abs() < 0.0015,
            "video pts {i}: {o:?} vs {s:?}; first (pts, dts) out {:?}, source {:?}",
            &ov[..4],
            &sv[..4]
        );
        assert!(
            ((o.0 - o.1) - (s.0 - s.1)).abs() < 0.0015,
            "composition time {i}: {o:?} vs {s:?}"
        );
    }
    assert_eq!(
        oa.len(),
        sa.len(),
        "every audio frame arrives; first ones {:?}",
        &oa[..3]
    );
    let ca = oa[0].0 - sa[0].0;
    assert!(
        (ca - cv).abs() < 0.002,
        "A/V offset moved by {:.4} s",
        ca - cv
    );
    b.finish("interleaved_publish_keeps_every_frame_and_timestamp")
        .await;
}

// ---------------------------------------------------------------------------
// 10. The HTTP side.

/// A raw HTTP request; returns the status, or None if the server closed
/// without an answer.
async fn raw_http(addr: std::net::SocketAddr, request: &[u8]) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .expect("HTTP answer or close in time")
        .ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    Some((status, text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_bad_requests_are_4xx_json() {
    let b = bench("read_timeout = \"2s\"\n").await;
    let h = b.app.http_addr;
    // (target, allowed statuses)
    let cases: Vec<(String, &[u16])> = vec![
        ("/nope/index.m3u8".into(), &[404]),
        ("/a/../b/index.m3u8".into(), &[400, 404]),
        ("/live/../good/index.m3u8".into(), &[400, 404]),
        ("/a/%01b/index.m3u8".into(), &[400, 404]),
        ("/live/%00/index.m3u8".into(), &[400, 404]),
        (
            "/live/x%0d%0aSet-Cookie:%20a/index.m3u8".into(),
            &[400, 404],
        ),
        ("//index.m3u8".into(), &[400, 404]),
        ("/index.m3u8".into(), &[400, 404]),
        ("/live/x/seg_99999999999999999999.m4s".into(), &[404]),
        (format!("/{GOOD}/seg_99999999999999999999.m4s"), &[404]),
        (format!("/{GOOD}/seg_18446744073709551615.m4s"), &[404]),
        (
            format!("/{GOOD}/part_18446744073709551615_18446744073709551615.m4s"),
            &[404],
        ),
        (format!("/{GOOD}/part_0_99999999999999999999.m4s"), &[404]),
        (format!("/{GOOD}/init_4294967295.mp4"), &[404]),
        (format!("/{GOOD}/init_-1.mp4"), &[404]),
        (format!("/{GOOD}/index.m3u8?_HLS_msn=abc"), &[400]),
        (format!("/{GOOD}/index.m3u8?_HLS_msn=-1"), &[400]),
        (
            format!("/{GOOD}/index.m3u8?_HLS_msn=99999999999999999999"),
            &[400],
        ),
        (
            format!("/{GOOD}/index.m3u8?_HLS_msn=18446744073709551615"),
            &[400],
        ),
        (
            format!(
                "/{GOOD}/index.m3u8?_HLS_msn=18446744073709551615&_HLS_part=18446744073709551615"
            ),
            &[400],
        ),
        (format!("/{GOOD}/index.m3u8?_HLS_part=1"), &[400]),
        (
            format!("/{GOOD}/index.m3u8?_HLS_msn=0&_HLS_part=abc"),
            &[400],
        ),
        (format!("/{}/index.m3u8", "a/".repeat(3000)), &[400, 404]),
    ];
    for (target, allowed) in &cases {
        let r = http("GET", h, target, b"").await;
        assert!(
            allowed.contains(&r.status),
            "GET {target}: {} {}",
            r.status,
            r.text()
        );
        let body = r.json();
        assert!(body["error"].is_string(), "GET {target}: {body}");
    }
    let r = http("POST", h, &format!("/{GOOD}/index.m3u8"), b"x").await;
    assert_eq!(r.status, 405, "{}", r.text());
    assert!(r.json()["error"].is_string());

    // Raw control characters in the request line: hyper answers 400 (or
    // closes); never 500.
    for req in [
        &b"GET /a\x01b/index.m3u8 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"[..],
        &b"GET /a\x7fb/index.m3u8 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"[..],
        &b"GET /live/good/index.m3u8?_HLS_msn=\x00 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"[..],
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage"[..],
    ] {
        if let Some((status, text)) = raw_http(h, req).await {
            assert!((400..500).contains(&status), "{:?}: {text}", String::from_utf8_lossy(req));
        }
    }

    // The control API.
    let api = b.app.api_addr;
    for (target, allowed) in [
        ("/v1/paths/nope", &[404][..]),
        ("/v1/paths/%00", &[400, 404]),
        ("/v1/sessions/abc", &[400]),
        ("/v1/sessions/99999999999999999999", &[400, 404]),
        ("/v1/paths?page=abc", &[400]),
        ("/v1/paths?items_per_page=0", &[400]),
        ("/v1/paths?page=18446744073709551615", &[200]),
        ("/v1/nothing", &[404]),
    ] {
        let r = http("GET", api, target, b"").await;
        assert!(
            allowed.contains(&r.status),
            "API GET {target}: {} {}",
            r.status,
            r.text()
        );
        if r.status != 200 {
            assert!(
                r.json()["error"].is_string(),
                "API GET {target}: {}",
                r.text()
            );
        }
    }

    b.assert_still_serving("after_http").await;
    b.finish("http_bad_requests_are_4xx_json").await;
}

// ---------------------------------------------------------------------------
// 11. A real publish, mutated, 200 times.

fn mutate(rng: &mut StdRng, original: &[u8]) -> Vec<u8> {
    const HANDSHAKE: usize = 1 + 1536 * 2;
    let mut data = original.to_vec();
    // Mostly mutate the chunk stream; sometimes the handshake too.
    let from = if rng.gen_bool(0.1) { 0 } else { HANDSHAKE };
    for _ in 0..rng.gen_range(1..=8) {
        if data.len() <= from + 1 {
            break;
        }
        let at = rng.gen_range(from..data.len());
        match rng.gen_range(0..7) {
            0 => data[at] ^= 1 << rng.gen_range(0..8),
            1 => data[at] = rng.r#gen(),
            2 => {
                let end = (at + rng.gen_range(1..64)).min(data.len());
                rng.fill(&mut data[at..end]);
            }
            3 => {
                let end = (at + rng.gen_range(1..256)).min(data.len());
                data.drain(at..end);
            }
            4 => {
                let end = (at + rng.gen_range(1..256)).min(data.len());
                let copy = data[at..end].to_vec();
                let to = rng.gen_range(from..data.len());
                data.splice(to..to, copy);
            }
            5 => {
                let n = rng.gen_range(1..32);
                let bytes: Vec<u8> = (0..n).map(|_| rng.r#gen()).collect();
                data.splice(at..at, bytes);
            }
            _ => data.truncate(at),
        }
    }
    data
}

/// Where the capture's `connect`, `createStream` and `publish` commands end:
/// ffmpeg waited for the server's answer after each (and the server relies
/// on that: a command that arrives before `connect` was accepted is a
/// protocol error, media before `publish` was accepted is dropped).
fn answer_points(capture: &[u8]) -> Vec<usize> {
    use mediarelay::protocol::rtmp::chunk::ChunkDecoder;
    use mediarelay::protocol::rtmp::command::Command;
    const HANDSHAKE: usize = 1 + 1536 * 2;
    let mut decoder = ChunkDecoder::new();
    decoder.push(&capture[HANDSHAKE..]);
    let total = capture.len() - HANDSHAKE;
    let mut points = Vec::new();
    while let Ok(Some(m)) = decoder.next_message() {
        if m.type_id == msg_type::COMMAND_AMF0
            && let Ok(Some(c)) = Command::parse(&m.payload)
            && matches!(c.name.as_str(), "connect" | "createStream" | "publish")
        {
            points.push(HANDSHAKE + total - decoder.buffered());
        }
    }
    assert_eq!(
        points.len(),
        3,
        "connect, createStream, publish in the capture"
    );
    points
}

/// Sends `data` as ffmpeg did: up to each of `points`, then waits (at most
/// 300 ms) for the server to answer; then the rest, then half-closes.
/// Returns once the server closed the connection (it must, within 10 s).
async fn replay(addr: std::net::SocketAddr, data: Vec<u8>, points: Vec<usize>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let s = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let received = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&received);
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    counter.fetch_add(n, Ordering::Relaxed);
                }
            }
        }
    });
    let mut from = 0;
    for point in points {
        let to = point.clamp(from, data.len());
        let before = received.load(Ordering::Relaxed);
        if wr.write_all(&data[from..to]).await.is_err() {
            break;
        }
        from = to;
        let deadline = Instant::now() + Duration::from_millis(300);
        while received.load(Ordering::Relaxed) == before
            && !reader.is_finished()
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if reader.is_finished() {
            break;
        }
    }
    if !reader.is_finished() {
        let _ = wr.write_all(&data[from..]).await;
    }
    let _ = wr.shutdown().await;
    tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .expect("the server closes a replayed connection after EOF")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_replays_of_a_real_publish() {
    let b = bench("read_timeout = \"2s\"\n").await;
    let original =
        std::fs::read(common::repo_dir().join("fixtures/rtmp/ffmpeg_publish_c2s.bin")).unwrap();

    // The capture as it is publishes `live/cap` (the replay does exercise
    // the publish path).
    let points = answer_points(&original);
    replay(b.rtmp(), original.clone(), points.clone()).await;
    let cap = b
        .app
        .hub
        .stream("live/cap")
        .expect("the verbatim replay published live/cap");
    assert!(
        cap.frames_in() > 100,
        "{} frames from the verbatim replay",
        cap.frames_in()
    );

    let mut rng = StdRng::seed_from_u64(0x5EED);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let data = mutate(&mut rng, &original);
        if !set.is_empty() {
            set.join_next().await.unwrap().unwrap();
        }
        set.spawn(replay(b.rtmp(), data, points.clone()));
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    assert_no_server_panic();
    // Every replayed session is gone: only the good publisher is left.
    eventually(
        Duration::from_secs(5),
        "replayed sessions to end",
        || async {
            let sessions = b.app.hub.sessions();
            (sessions.len() == 1 && sessions[0].path == GOOD).then_some(())
        },
    )
    .await;

    b.assert_still_serving("after_mutations").await;
    b.finish("mutated_replays_of_a_real_publish").await;
}
