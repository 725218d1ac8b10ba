//! OBS Studio is not ffmpeg: this client replays the command sequence OBS 29
//! sends when it streams (see DESIGN.md, "What OBS Studio 29 sends"), over a
//! raw TCP connection. Our `ClientSession` does the handshake (version 3) and
//! the chunking; every command and data message is built here with
//! `command::Writer` and sent with `send_raw`, exactly as OBS orders them:
//!
//! SetChunkSize 4096 BEFORE `connect`; `connect` {app, type 'nonprivate',
//! supportsGoAway, flashVer 'FMLE/3.0 (compatible; FMSc/1.0)', swfUrl, tcUrl}
//! without codec fields; after its `_result`: `releaseStream`, `FCPublish`,
//! `createStream`; after that `_result`: `publish(key, 'live')` on message
//! stream 1; after `NetStream.Publish.Start`: `@setDataFrame onMetaData`
//! (ECMA array), AVC and AAC sequence headers at timestamp 0, then media in
//! real time. On stop: `FCUnpublish`, no `deleteStream`, then a TCP reset.
//!
//! The server's answers are read with the project's chunk decoder (after the
//! 3073 handshake bytes), so the test sees every command the server sends.

mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use mediarelay::app::App;
use mediarelay::container::flv_file::{FlvFile, TAG_AUDIO, TAG_VIDEO, Tag};
use mediarelay::protocol::rtmp::chunk::ChunkDecoder;
use mediarelay::protocol::rtmp::command::{Command, Writer, property_str};
use mediarelay::protocol::rtmp::{Amf0Value, ClientEvent, ClientSession, msg_type};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const APP: &str = "live";
const KEY: &str = "obs";
const PATH: &str = "live/obs";
/// S0 + S1 + S2.
const SERVER_HANDSHAKE: usize = 1 + 1536 * 2;
/// Timestamps of the fixture run to 2051 ms; each loop starts this much later.
const LOOP_MS: u32 = 2100;

/// One OBS streaming session.
struct Obs {
    socket: TcpStream,
    session: ClientSession,
    /// The server's chunk stream, decoded independently of `session`.
    decoder: ChunkDecoder,
    /// Handshake bytes still to come before the chunk stream starts.
    skip: usize,
    /// Commands the server sent, in order.
    commands: VecDeque<Command>,
    buf: Vec<u8>,
    stream_id: u32,
    next_transaction: f64,
}

impl Obs {
    /// Connects and publishes `live/{key}` as OBS does; `Err` carries the
    /// server's onStatus if the publish is refused.
    async fn publish(addr: std::net::SocketAddr, key: &str) -> Result<Obs, Command> {
        let socket = TcpStream::connect(addr).await.unwrap();
        let tc_url = format!("rtmp://{addr}/{APP}");
        let mut obs = Obs {
            socket,
            session: ClientSession::new(),
            decoder: ChunkDecoder::new(),
            skip: SERVER_HANDSHAKE,
            commands: VecDeque::new(),
            buf: vec![0; 65536],
            stream_id: 0,
            next_transaction: 1.0,
        };
        // Queued until the handshake is done, then sent in this order.
        obs.session.set_chunk_size(4096);
        let connect = Writer::command("connect", obs.transaction())
            .object(&[
                ("app", Amf0Value::Utf8String(APP.into())),
                ("type", Amf0Value::Utf8String("nonprivate".into())),
                ("supportsGoAway", Amf0Value::Boolean(true)),
                (
                    "flashVer",
                    Amf0Value::Utf8String("FMLE/3.0 (compatible; FMSc/1.0)".into()),
                ),
                ("swfUrl", Amf0Value::Utf8String(tc_url.clone())),
                ("tcUrl", Amf0Value::Utf8String(tc_url)),
            ])
            .finish();
        obs.session.send_raw(msg_type::COMMAND_AMF0, 0, &connect);
        obs.flush().await;
        while !obs.session.handshake_done() {
            assert!(obs.read().await, "server closed during the handshake");
        }
        // C2, Set Chunk Size 4096, connect.
        obs.flush().await;

        let result = obs.wait_command(|c| c.transaction_id == 1.0).await;
        assert_eq!(result.name, "_result", "{result:?}");
        assert_eq!(info_code(&result), "NetConnection.Connect.Success");
        assert_eq!(obs.decoder.chunk_size(), 4096, "the server's chunk size");

        let release = Writer::command("releaseStream", obs.transaction())
            .null()
            .string(key)
            .finish();
        let fc_publish = Writer::command("FCPublish", obs.transaction())
            .null()
            .string(key)
            .finish();
        let create_id = obs.transaction();
        let create = Writer::command("createStream", create_id).null().finish();
        for c in [release, fc_publish, create] {
            obs.session.send_raw(msg_type::COMMAND_AMF0, 0, &c);
        }
        obs.flush().await;
        let created = obs
            .wait_command(|c| c.name == "_result" && c.transaction_id == create_id)
            .await;
        obs.stream_id = match created.args.first() {
            Some(Amf0Value::Number(n)) => *n as u32,
            other => panic!("createStream _result without a stream id: {other:?}"),
        };
        assert_eq!(obs.stream_id, 1, "OBS publishes on message stream 1");

        let publish = Writer::command("publish", obs.transaction())
            .null()
            .string(key)
            .string("live")
            .finish();
        obs.session
            .send_raw(msg_type::COMMAND_AMF0, obs.stream_id, &publish);
        obs.flush().await;
        let status = obs.wait_command(|c| c.name == "onStatus").await;
        if info_code(&status) != "NetStream.Publish.Start" {
            return Err(status);
        }
        Ok(obs)
    }

    fn transaction(&mut self) -> f64 {
        let id = self.next_transaction;
        self.next_transaction += 1.0;
        id
    }

    async fn flush(&mut self) {
        while let Some(b) = self.session.take_output() {
            self.socket.write_all(&b).await.unwrap();
        }
    }

    /// Reads once; false when the server closed the connection.
    async fn read(&mut self) -> bool {
        let n = self.socket.read(&mut self.buf).await.unwrap_or(0);
        if n == 0 {
            return false;
        }
        let data = &self.buf[..n];
        // The session does the handshake and the acknowledgements.
        self.session.handle_input(data).unwrap();
        while self.session.poll_event().is_some() {}
        let skip = self.skip.min(n);
        self.skip -= skip;
        self.decoder.push(&data[skip..]);
        while let Some(m) = self.decoder.next_message().unwrap() {
            if m.type_id == msg_type::COMMAND_AMF0
                && let Some(c) = Command::parse(&m.payload).unwrap()
            {
                self.commands.push_back(c);
            }
        }
        // Acknowledgements, if any are due.
        while let Some(b) = self.session.take_output() {
            let _ = self.socket.write_all(&b).await;
        }
        true
    }

    /// The first command from the server that matches (earlier ones are
    /// dropped); waits at most 10 s.
    async fn wait_command(&mut self, pred: impl Fn(&Command) -> bool) -> Command {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                while let Some(c) = self.commands.pop_front() {
                    if pred(&c) {
                        return c;
                    }
                }
                assert!(self.read().await, "server closed the connection");
            }
        })
        .await
        .expect("the server's answer in time")
    }

    /// `@setDataFrame onMetaData` as OBS 29 writes it (an ECMA array).
    async fn send_metadata(&mut self) {
        let n = Amf0Value::Number;
        let b = Amf0Value::Boolean;
        let payload = Writer::default()
            .string("@setDataFrame")
            .string("onMetaData")
            .ecma_array(&[
                ("duration", n(0.0)),
                ("fileSize", n(0.0)),
                ("width", n(320.0)),
                ("height", n(240.0)),
                ("videocodecid", n(7.0)),
                ("videodatarate", n(300.0)),
                ("framerate", n(30.0)),
                ("audiocodecid", n(10.0)),
                ("audiodatarate", n(64.0)),
                ("audiosamplerate", n(48000.0)),
                ("audiosamplesize", n(16.0)),
                ("audiochannels", n(2.0)),
                ("stereo", b(true)),
                ("2.1", b(false)),
                ("3.1", b(false)),
                ("4.0", b(false)),
                ("4.1", b(false)),
                ("5.1", b(false)),
                ("7.1", b(false)),
                (
                    "encoder",
                    Amf0Value::Utf8String("obs-output module (libobs version 29.1.3)".into()),
                ),
            ])
            .finish();
        self.session
            .send_raw(msg_type::DATA_AMF0, self.stream_id, &payload);
        self.flush().await;
    }

    /// Metadata, the AVC and AAC sequence headers at timestamp 0, then the
    /// media of the fixture `loops` times, in real time, timestamps from 0.
    /// Returns the number of media frames sent.
    async fn stream(&mut self, media: &Media, loops: u32) -> u64 {
        self.send_metadata().await;
        self.session.send_video(0, &media.avc_header);
        self.session.send_audio(0, &media.aac_header);
        self.flush().await;
        let start = Instant::now();
        let mut frames = 0;
        for round in 0..loops {
            for t in &media.frames {
                let ts = t.timestamp + round * LOOP_MS;
                tokio::time::sleep_until(start + Duration::from_millis(u64::from(ts))).await;
                match t.tag_type {
                    TAG_VIDEO => self.session.send_video(ts, &t.body),
                    _ => self.session.send_audio(ts, &t.body),
                }
                self.flush().await;
                frames += 1;
            }
        }
        frames
    }

    /// How OBS stops: `FCUnpublish`, no `deleteStream`, then a TCP reset
    /// (SO_LINGER 0 and close). On loopback the reset usually overtakes the
    /// `FCUnpublish` (the kernel drops unread data on a reset); with
    /// `wait_for_answer` the reset waits for the server's
    /// `NetStream.Unpublish.Success`, as when the network is slower.
    async fn stop_and_reset(mut self, wait_for_answer: bool) {
        let fc_unpublish = Writer::command("FCUnpublish", self.transaction())
            .null()
            .string(KEY)
            .finish();
        self.session
            .send_raw(msg_type::COMMAND_AMF0, 0, &fc_unpublish);
        self.flush().await;
        if wait_for_answer {
            let status = self.wait_command(|c| c.name == "onStatus").await;
            assert_eq!(info_code(&status), "NetStream.Unpublish.Success");
        }
        socket2::SockRef::from(&self.socket)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(self.socket);
    }
}

/// The `code` of a `_result`/`onStatus` info object (the first argument).
fn info_code(c: &Command) -> String {
    c.args
        .first()
        .and_then(|o| property_str(o, "code"))
        .unwrap_or_default()
        .to_owned()
}

/// `res_a_320x240.flv` (H.264 High 320x240, AAC-LC 48 kHz stereo; 2 s).
struct Media {
    avc_header: Bytes,
    aac_header: Bytes,
    /// Audio and video frames, without sequence headers, in file order.
    frames: Vec<Tag>,
}

fn media() -> Media {
    let data = Bytes::from(std::fs::read(fixture("res_a_320x240.flv")).unwrap());
    let tags: Vec<Tag> = FlvFile::new(data).unwrap().map(Result::unwrap).collect();
    let header = |ty: u8| {
        tags.iter()
            .find(|t| t.tag_type == ty && t.body.get(1) == Some(&0))
            .unwrap()
            .body
            .clone()
    };
    Media {
        avc_header: header(TAG_VIDEO),
        aac_header: header(TAG_AUDIO),
        frames: tags
            .iter()
            .filter(|t| matches!(t.tag_type, TAG_AUDIO | TAG_VIDEO) && t.body.get(1) == Some(&1))
            .cloned()
            .collect(),
    }
}

/// `GET /v1/paths/live/obs`: None when the path does not exist (404).
async fn api_path(app: &App) -> Option<Value> {
    let r = http("GET", app.api_addr, &format!("/v1/paths/{PATH}"), b"").await;
    match r.status {
        200 => Some(r.json()),
        404 => None,
        other => panic!("API answered {other}: {}", r.text()),
    }
}

/// The path is published by RTMP with tracks h264 320x240 and aac 48000 Hz.
async fn assert_published_with_obs_tracks(app: &App) {
    let p = api_path(app).await.expect("the path exists");
    assert_eq!(p["state"], "publishing", "{p}");
    assert_eq!(p["source"]["type"], "rtmp", "{p}");
    let tracks = p["stream"]["tracks"].as_array().expect("tracks").clone();
    assert_eq!(tracks.len(), 2, "{p}");
    assert_eq!(tracks[0]["codec"], "h264", "{p}");
    assert_eq!(
        (tracks[0]["width"].as_u64(), tracks[0]["height"].as_u64()),
        (Some(320), Some(240)),
        "{p}"
    );
    assert_eq!(tracks[1]["codec"], "aac", "{p}");
    assert_eq!(tracks[1]["sample_rate"], 48000, "{p}");
    assert_eq!(tracks[1]["channels"], 2, "{p}");
}

/// Waits until the API no longer shows a publisher on the path.
async fn wait_not_publishing(app: &App, expect_state: Option<&str>) {
    eventually(
        Duration::from_secs(5),
        "the server to notice the reset",
        || async {
            let p = api_path(app).await;
            let state = p
                .as_ref()
                .map(|p| p["state"].as_str().unwrap_or("").to_owned());
            let no_source = p.as_ref().is_none_or(|p| p["source"].is_null());
            match (expect_state, state.as_deref()) {
                (Some(want), Some(s)) if s == want && no_source => Some(()),
                (None, None) => Some(()),
                (None, Some(s)) if s != "publishing" && no_source => Some(()),
                _ => None,
            }
        },
    )
    .await
}

/// What a background player received, each with the time it arrived.
type PlayerLog = Arc<Mutex<Vec<(Instant, Got)>>>;

/// What an RTMP player received, with the time it arrived.
#[derive(Debug, Clone)]
enum Got {
    Video {
        ts: u32,
        payload: Bytes,
    },
    Audio {
        ts: u32,
        payload: Bytes,
    },
    /// StreamEof, UnpublishNotify, or the connection closed.
    End(String),
}

/// Runs an RTMP player in the background until `stop` or the end of the
/// stream; the log is shared.
fn spawn_player(
    mut c: RtmpClient,
    stop: CancellationToken,
) -> (PlayerLog, tokio::task::JoinHandle<()>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let shared = Arc::clone(&log);
    let task = tokio::spawn(async move {
        loop {
            let alive = tokio::select! {
                _ = stop.cancelled() => return,
                alive = c.read() => alive,
            };
            let now = Instant::now();
            let mut log = shared.lock().unwrap();
            while let Some(e) = c.session.poll_event() {
                let got = match e {
                    ClientEvent::Video { timestamp, payload } => Got::Video {
                        ts: timestamp,
                        payload,
                    },
                    ClientEvent::Audio { timestamp, payload } => Got::Audio {
                        ts: timestamp,
                        payload,
                    },
                    ClientEvent::StreamEof { .. } => Got::End("StreamEof".into()),
                    ClientEvent::Status { code, .. }
                        if code == "NetStream.Play.UnpublishNotify" =>
                    {
                        Got::End(code)
                    }
                    _ => continue,
                };
                log.push((now, got));
            }
            if !alive {
                log.push((now, Got::End("connection closed".into())));
                return;
            }
        }
    });
    (log, task)
}

fn is_sequence_header(payload: &Bytes) -> bool {
    payload.get(1) == Some(&0)
}

/// Media timestamps (sequence headers left out) of one kind, with arrival times.
fn timestamps(log: &[(Instant, Got)], video: bool) -> Vec<(Instant, u32)> {
    log.iter()
        .filter_map(|(at, g)| match g {
            Got::Video { ts, payload } if video && !is_sequence_header(payload) => Some((*at, *ts)),
            Got::Audio { ts, payload } if !video && !is_sequence_header(payload) => {
                Some((*at, *ts))
            }
            _ => None,
        })
        .collect()
}

fn ends(log: &[(Instant, Got)]) -> Vec<String> {
    log.iter()
        .filter_map(|(_, g)| match g {
            Got::End(why) => Some(why.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn obs_session_publishes_plays_and_ends_on_reset() {
    let t0 = std::time::Instant::now();
    let app = start("[path_defaults]\npublisher_grace = \"0s\"\n").await;
    let media = Arc::new(media());

    let mut obs = Obs::publish(app.rtmp_addr, KEY)
        .await
        .expect("publish accepted");
    let m = Arc::clone(&media);
    let sender = tokio::spawn(async move {
        let n = obs.stream(&m, 3).await;
        (obs, n)
    });
    wait_published(&app, PATH).await;
    assert_published_with_obs_tracks(&app).await;

    // An RTMP player gets the stream: sequence headers, then a keyframe.
    let player = RtmpClient::play(app.rtmp_addr, APP, KEY)
        .await
        .expect("play accepted");
    let stop = CancellationToken::new();
    let (log, player_task) = spawn_player(player, stop.clone());

    // ffprobe over LL-HLS gets the stream.
    let streams = probe_streams(&hls_url(&app, PATH)).await;
    let v = streams
        .iter()
        .find(|s| s["codec_type"] == "video")
        .expect("HLS video");
    assert_eq!(v["codec_name"], "h264");
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(320), Some(240))
    );
    let a = streams
        .iter()
        .find(|s| s["codec_type"] == "audio")
        .expect("HLS audio");
    assert_eq!(a["codec_name"], "aac");
    assert_eq!(a["sample_rate"], "48000");

    let (obs, sent) = sender.await.unwrap();
    let stream = app.hub.stream(PATH).expect("still published");
    eventually(Duration::from_secs(5), "every frame in the hub", || {
        let s = stream.clone();
        async move { (s.frames_in() == sent).then_some(()) }
    })
    .await;
    {
        let log = log.lock().unwrap();
        let first_video = log.iter().find_map(|(_, g)| match g {
            Got::Video { payload, .. } => Some(payload.clone()),
            _ => None,
        });
        let header = first_video.expect("the player got video");
        assert!(
            is_sequence_header(&header),
            "video starts with the AVC sequence header"
        );
        let (params, _) = mediarelay::codec::h264::h264_params(&header.slice(5..)).unwrap();
        assert_eq!((params.width, params.height), (320, 240));
        let video: Vec<&Bytes> = log
            .iter()
            .filter_map(|(_, g)| match g {
                Got::Video { payload, .. } if !is_sequence_header(payload) => Some(payload),
                _ => None,
            })
            .collect();
        assert_eq!(
            video.first().map(|p| p[0] >> 4),
            Some(1),
            "the first frame is a keyframe"
        );
        assert!(video.len() >= 60, "{} video frames played", video.len());
        assert!(
            log.iter().any(
                |(_, g)| matches!(g, Got::Audio { payload, .. } if payload[..2] == [0xAF, 0x00])
            ),
            "the AAC sequence header"
        );
        assert!(timestamps(&log, false).len() >= 90, "audio played");
        assert!(ends(&log).is_empty(), "{:?}", ends(&log));
    }

    // OBS stops: FCUnpublish, then a reset. The server notices; with a grace
    // of 0 s the stream ends and the player is told.
    obs.stop_and_reset(false).await;
    wait_not_publishing(&app, None).await;
    assert!(app.hub.stream(PATH).is_none(), "the stream ended");
    eventually(
        Duration::from_secs(5),
        "the player to learn the stream ended",
        || {
            let log = Arc::clone(&log);
            async move { (!ends(&log.lock().unwrap()).is_empty()).then_some(()) }
        },
    )
    .await;
    stop.cancel();
    player_task.await.unwrap();

    // A second OBS session on the same path right after works.
    let mut obs = Obs::publish(app.rtmp_addr, KEY)
        .await
        .expect("second publish accepted");
    let m = Arc::clone(&media);
    let sender = tokio::spawn(async move {
        let n = obs.stream(&m, 1).await;
        (obs, n)
    });
    wait_published(&app, PATH).await;
    assert_published_with_obs_tracks(&app).await;
    let (obs, sent) = sender.await.unwrap();
    let stream = app.hub.stream(PATH).expect("published again");
    eventually(
        Duration::from_secs(5),
        "every frame of the second session",
        || {
            let s = stream.clone();
            async move { (s.frames_in() == sent).then_some(()) }
        },
    )
    .await;
    // This time the server handles the FCUnpublish before the reset.
    obs.stop_and_reset(true).await;
    wait_not_publishing(&app, None).await;

    app.shutdown().await;
    eprintln!(
        "obs_session_publishes_plays_and_ends_on_reset: {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn obs_reconnect_within_grace_keeps_the_player_going() {
    let t0 = std::time::Instant::now();
    let app = start("[path_defaults]\npublisher_grace = \"3s\"\n").await;
    let media = Arc::new(media());

    let mut obs = Obs::publish(app.rtmp_addr, KEY)
        .await
        .expect("publish accepted");
    let m = Arc::clone(&media);
    let sender = tokio::spawn(async move {
        obs.stream(&m, 2).await;
        obs
    });
    wait_published(&app, PATH).await;
    let stream_id = app.hub.stream(PATH).unwrap().id;
    let player = RtmpClient::play(app.rtmp_addr, APP, KEY)
        .await
        .expect("play accepted");
    let stop = CancellationToken::new();
    let (log, player_task) = spawn_player(player, stop.clone());

    let obs = sender.await.unwrap();
    obs.stop_and_reset(false).await;
    // The server noticed: no publisher, the stream waits for one.
    wait_not_publishing(&app, Some("waiting_for_publisher")).await;
    let reconnect = Instant::now();

    // OBS reconnects (its timestamps start at 0 again) within the grace.
    let mut obs = Obs::publish(app.rtmp_addr, KEY)
        .await
        .expect("publish within the grace accepted");
    let m = Arc::clone(&media);
    let sender = tokio::spawn(async move {
        obs.stream(&m, 2).await;
        obs
    });
    eventually(
        Duration::from_secs(5),
        "the path to be published again",
        || async {
            let p = api_path(&app).await?;
            (p["state"] == "publishing").then_some(())
        },
    )
    .await;
    assert_published_with_obs_tracks(&app).await;
    assert_eq!(
        app.hub.stream(PATH).unwrap().id,
        stream_id,
        "the same stream continues"
    );
    let obs = sender.await.unwrap();
    // Let the last frames reach the player.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log_now = log.lock().unwrap().clone();
    assert!(
        ends(&log_now).is_empty(),
        "the player was not told the stream ended: {:?}",
        ends(&log_now)
    );
    for (kind, video) in [("video", true), ("audio", false)] {
        let ts = timestamps(&log_now, video);
        let before: Vec<u32> = ts
            .iter()
            .filter(|(at, _)| *at < reconnect)
            .map(|(_, t)| *t)
            .collect();
        let after: Vec<u32> = ts
            .iter()
            .filter(|(at, _)| *at >= reconnect)
            .map(|(_, t)| *t)
            .collect();
        let min = if video { 100 } else { 150 };
        assert!(
            before.len() >= min / 2,
            "{kind}: {} frames before the reconnect",
            before.len()
        );
        assert!(
            after.len() >= min,
            "{kind}: {} frames after the reconnect",
            after.len()
        );
        let all: Vec<u32> = ts.iter().map(|(_, t)| *t).collect();
        if let Some(i) = all.windows(2).position(|w| w[1] <= w[0]) {
            panic!(
                "{kind} timestamps do not keep increasing at {i}: {:?} (reconnect after {} frames)",
                &all[i.saturating_sub(3)..(i + 4).min(all.len())],
                before.len()
            );
        }
        assert!(
            after[0] > *before.last().unwrap(),
            "{kind}: {} then {}",
            before.last().unwrap(),
            after[0]
        );
    }

    // After the grace the stream ends and the player is told.
    obs.stop_and_reset(true).await;
    eventually(
        Duration::from_secs(8),
        "the player to learn the stream ended",
        || {
            let log = Arc::clone(&log);
            async move { (!ends(&log.lock().unwrap()).is_empty()).then_some(()) }
        },
    )
    .await;
    stop.cancel();
    player_task.await.unwrap();
    app.shutdown().await;
    eprintln!(
        "obs_reconnect_within_grace_keeps_the_player_going: {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}
