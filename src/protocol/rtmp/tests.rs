//! Session-level tests: the server driven like OBS, ffmpeg and rtmpdump (hand-
//! built streams and captured ones from `fixtures/rtmp/`), the rml_rtmp panic
//! cases, Acks, client ⇄ server round trips, and a seeded mutation test.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use rand::{Rng, SeedableRng, rngs::StdRng};

use super::chunk::{ChunkDecoder, RawMessage, encode_message};
use super::command::{Command, Writer};
use super::control::{ControlMessage, UserControlEvent};
use super::*;

const HANDSHAKE_LEN: usize = 1 + 1536 + 1536;

fn fixture(name: &str) -> Option<Vec<u8>> {
    let path = crate::repo_dir().join("fixtures/rtmp").join(name);
    std::fs::read(path).ok()
}

/// C0 + C1 + C2 of an old-style (non-digest) handshake: rml_rtmp's server
/// answers it by echo and accepts any C2.
fn client_handshake() -> Vec<u8> {
    let mut v = vec![3u8];
    v.extend(std::iter::repeat_n(0u8, 1536 * 2));
    v
}

fn amf(values: Vec<Amf0Value>) -> Vec<u8> {
    rml_amf0::serialize(&values).unwrap()
}

fn s(v: &str) -> Amf0Value {
    Amf0Value::Utf8String(v.to_owned())
}

fn n(v: f64) -> Amf0Value {
    Amf0Value::Number(v)
}

fn obj(pairs: &[(&str, Amf0Value)]) -> Amf0Value {
    Amf0Value::Object(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect::<HashMap<_, _>>(),
    )
}

/// What a client writes: chunk-encoded messages at its current chunk size.
struct Wire {
    out: BytesMut,
    chunk_size: u32,
}

impl Wire {
    fn new() -> Self {
        Wire {
            out: BytesMut::new(),
            chunk_size: 128,
        }
    }

    fn msg(&mut self, csid: u32, ts: u32, type_id: u8, stream_id: u32, payload: &[u8]) {
        encode_message(
            &mut self.out,
            csid,
            ts,
            type_id,
            stream_id,
            &[payload],
            self.chunk_size,
        );
    }

    fn set_chunk_size(&mut self, size: u32) {
        self.msg(2, 0, msg_type::SET_CHUNK_SIZE, 0, &size.to_be_bytes());
        self.chunk_size = size;
    }

    fn command(&mut self, stream_id: u32, values: Vec<Amf0Value>) {
        self.msg(3, 0, msg_type::COMMAND_AMF0, stream_id, &amf(values));
    }

    fn take(&mut self) -> Vec<u8> {
        self.out.split().to_vec()
    }
}

/// Decodes what the server sends (after S0+S1+S2).
struct Observer {
    skip: usize,
    dec: ChunkDecoder,
}

impl Observer {
    fn new() -> Self {
        Observer {
            skip: HANDSHAKE_LEN,
            dec: ChunkDecoder::new(),
        }
    }

    fn read(&mut self, server: &mut ServerSession) -> Vec<RawMessage> {
        let Some(out) = server.take_output() else {
            return vec![];
        };
        let skip = self.skip.min(out.len());
        self.skip -= skip;
        self.dec.push(&out[skip..]);
        let mut v = vec![];
        while let Some(m) = self.dec.next_message().unwrap() {
            v.push(m);
        }
        v
    }
}

fn events(server: &mut ServerSession) -> Vec<ServerEvent> {
    std::iter::from_fn(|| server.poll_event()).collect()
}

fn command_of(m: &RawMessage) -> Command {
    assert_eq!(m.type_id, msg_type::COMMAND_AMF0, "{m:?}");
    Command::parse(&m.payload).unwrap().unwrap()
}

fn status_code(c: &Command) -> String {
    command::property_str(&c.args[0], "code")
        .unwrap()
        .to_owned()
}

fn control_of(m: &RawMessage) -> ControlMessage {
    ControlMessage::parse(m.type_id, &m.payload).unwrap()
}

/// A server past the handshake and an accepted connect.
fn connected_server() -> (ServerSession, Observer, Wire) {
    let mut server = ServerSession::new(ServerConfig::default());
    let mut obs = Observer::new();
    let mut wire = Wire::new();
    server.handle_input(&client_handshake()).unwrap();
    assert_eq!(server.take_output().unwrap().len(), HANDSHAKE_LEN);
    obs.skip = 0;
    wire.command(0, vec![s("connect"), n(1.0), obj(&[("app", s("live"))])]);
    server.handle_input(&wire.take()).unwrap();
    assert!(matches!(
        events(&mut server)[..],
        [ServerEvent::ConnectRequested { .. }]
    ));
    server.accept_connect();
    assert_eq!(obs.read(&mut server).len(), 4);
    (server, obs, wire)
}

#[test]
fn obs_like_publish() {
    let mut server = ServerSession::new(ServerConfig::default());
    let mut obs = Observer::new();
    let mut wire = Wire::new();

    // Handshake, possibly split anywhere.
    let hs = client_handshake();
    server.handle_input(&hs[..1000]).unwrap();
    server.handle_input(&hs[1000..]).unwrap();
    assert!(server.handshake_done());
    assert!(obs.read(&mut server).is_empty());
    assert_eq!(obs.skip, 0);

    // SetChunkSize 4096 before connect, then connect (OBS 29).
    wire.set_chunk_size(4096);
    wire.command(
        0,
        vec![
            s("connect"),
            n(1.0),
            obj(&[
                ("app", s("live")),
                ("type", s("nonprivate")),
                ("supportsGoAway", Amf0Value::Boolean(true)),
                ("flashVer", s("FMLE/3.0 (compatible; FMSc/1.0)")),
                ("swfUrl", s("rtmp://localhost/live")),
                ("tcUrl", s("rtmp://localhost/live")),
            ]),
        ],
    );
    server.handle_input(&wire.take()).unwrap();
    assert_eq!(
        events(&mut server),
        vec![ServerEvent::ConnectRequested {
            app: "live".into(),
            tc_url: Some("rtmp://localhost/live".into())
        }]
    );
    server.accept_connect();
    let out = obs.read(&mut server);
    assert_eq!(out.len(), 4);
    assert_eq!(
        control_of(&out[0]),
        ControlMessage::WindowAckSize(2_500_000)
    );
    assert!(matches!(
        control_of(&out[1]),
        ControlMessage::SetPeerBandwidth {
            size: 2_500_000,
            ..
        }
    ));
    assert_eq!(
        control_of(&out[2]),
        ControlMessage::SetChunkSize(PLAYER_CHUNK_SIZE)
    );
    let result = command_of(&out[3]);
    assert_eq!(
        (result.name.as_str(), result.transaction_id),
        ("_result", 1.0)
    );
    assert_eq!(
        command::property_str(&result.object, "fmsVer"),
        Some("FMS/3,0,1,123")
    );
    assert_eq!(status_code(&result), "NetConnection.Connect.Success");
    assert_eq!(
        Command::parse(&out[3].payload).unwrap().unwrap().args[0],
        obj(&[
            ("level", s("status")),
            ("code", s("NetConnection.Connect.Success")),
            ("description", s("Connection succeeded.")),
            ("objectEncoding", n(0.0)),
        ])
    );
    assert_eq!(server.out_chunk_size(), PLAYER_CHUNK_SIZE);

    // releaseStream, FCPublish, createStream in one write.
    wire.command(
        0,
        vec![s("releaseStream"), n(2.0), Amf0Value::Null, s("cam1")],
    );
    wire.command(0, vec![s("FCPublish"), n(3.0), Amf0Value::Null, s("cam1")]);
    wire.command(0, vec![s("createStream"), n(4.0), Amf0Value::Null]);
    server.handle_input(&wire.take()).unwrap();
    assert!(events(&mut server).is_empty());
    let out = obs.read(&mut server);
    assert_eq!(out.len(), 1);
    let result = command_of(&out[0]);
    assert_eq!(
        (result.name.as_str(), result.transaction_id),
        ("_result", 4.0)
    );
    assert_eq!(result.args, vec![n(1.0)]);

    // publish on message stream 1.
    wire.command(
        1,
        vec![s("publish"), n(5.0), Amf0Value::Null, s("cam1"), s("live")],
    );
    server.handle_input(&wire.take()).unwrap();
    assert_eq!(
        events(&mut server),
        vec![ServerEvent::PublishRequested {
            stream_key: "cam1".into(),
            mode: "live".into()
        }]
    );
    assert_eq!(server.publish_stream_id(), Some(1));
    assert!(!server.is_publishing());
    server.accept_publish();
    let out = obs.read(&mut server);
    assert_eq!(out.len(), 2);
    assert_eq!(
        control_of(&out[0]),
        ControlMessage::UserControl(UserControlEvent::StreamBegin(1))
    );
    let status = command_of(&out[1]);
    assert_eq!(out[1].stream_id, 1);
    assert_eq!(
        (status.name.as_str(), status_code(&status)),
        ("onStatus", "NetStream.Publish.Start".to_owned())
    );

    // @setDataFrame onMetaData (ECMA array), sequence headers at 0, media.
    let meta = Writer::default()
        .string("@setDataFrame")
        .string("onMetaData")
        .ecma_array(&[
            ("width", n(1280.0)),
            ("height", n(720.0)),
            ("videocodecid", n(7.0)),
            ("audiocodecid", n(10.0)),
            ("encoder", s("obs-output module (libobs version 29.1.2)")),
        ])
        .finish();
    wire.msg(4, 0, msg_type::DATA_AMF0, 1, &meta);
    let avc_seq = [
        0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1F, 0xFF, 0xE1, 0, 4, 0x67, 0x64, 0, 0x1F,
    ];
    let aac_seq = [0xAF, 0, 0x12, 0x10];
    wire.msg(6, 0, msg_type::VIDEO, 1, &avc_seq);
    wire.msg(4, 0, msg_type::AUDIO, 1, &aac_seq);
    let mut frame = vec![0x17, 1, 0, 0, 0x21];
    frame.extend((0..9000).map(|i| (i % 251) as u8));
    wire.msg(6, 33, msg_type::VIDEO, 1, &frame);
    wire.msg(4, 23, msg_type::AUDIO, 1, &[0xAF, 1, 0x21, 0x22]);
    server.handle_input(&wire.take()).unwrap();
    let got = events(&mut server);
    assert_eq!(got.len(), 5);
    let ServerEvent::Metadata { properties } = &got[0] else {
        panic!("{:?}", got[0]);
    };
    let keys: Vec<&str> = properties.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        ["width", "height", "videocodecid", "audiocodecid", "encoder"]
    );
    assert_eq!(
        got[1..],
        [
            ServerEvent::Video {
                timestamp: 0,
                payload: Bytes::copy_from_slice(&avc_seq)
            },
            ServerEvent::Audio {
                timestamp: 0,
                payload: Bytes::copy_from_slice(&aac_seq)
            },
            ServerEvent::Video {
                timestamp: 33,
                payload: Bytes::from(frame)
            },
            ServerEvent::Audio {
                timestamp: 23,
                payload: Bytes::from_static(&[0xAF, 1, 0x21, 0x22])
            },
        ]
    );

    // Stop: FCUnpublish, no deleteStream.
    wire.command(
        0,
        vec![s("FCUnpublish"), n(6.0), Amf0Value::Null, s("cam1")],
    );
    server.handle_input(&wire.take()).unwrap();
    assert_eq!(events(&mut server), vec![ServerEvent::PublishFinished]);
    assert_eq!(server.publish_stream_id(), None);
    let out = obs.read(&mut server);
    assert_eq!(
        status_code(&command_of(&out[0])),
        "NetStream.Unpublish.Success"
    );
    // Media after that is dropped.
    wire.msg(4, 50, msg_type::AUDIO, 1, &[0xAF, 1, 0]);
    server.handle_input(&wire.take()).unwrap();
    assert!(events(&mut server).is_empty());
}

/// Feeds `data` in pieces, accepting connect/publish/play as they come;
/// returns the events and the first error.
fn drive(
    server: &mut ServerSession,
    data: &[u8],
    mut piece: impl FnMut() -> usize,
) -> (Vec<ServerEvent>, Option<RtmpError>) {
    let mut all = vec![];
    let mut pos = 0;
    while pos < data.len() {
        let end = (pos + piece().max(1)).min(data.len());
        let mut result = server.handle_input(&data[pos..end]);
        pos = end;
        loop {
            while let Some(ev) = server.poll_event() {
                match &ev {
                    ServerEvent::ConnectRequested { .. } => server.accept_connect(),
                    ServerEvent::PublishRequested { .. } => server.accept_publish(),
                    ServerEvent::PlayRequested { .. } => server.accept_play(),
                    _ => {}
                }
                all.push(ev);
            }
            if result.is_err() {
                break;
            }
            match server.resume() {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        while server.poll_output().is_some() {}
        if let Err(e) = result {
            return (all, Some(e));
        }
    }
    (all, None)
}

/// Messages of a captured client stream, decoded by the bare chunk decoder.
fn raw_messages(capture: &[u8]) -> Vec<RawMessage> {
    let mut dec = ChunkDecoder::new();
    dec.push(&capture[HANDSHAKE_LEN..]);
    std::iter::from_fn(|| dec.next_message().unwrap()).collect()
}

#[test]
fn captured_ffmpeg_publish() {
    let Some(capture) = fixture("ffmpeg_publish_c2s.bin") else {
        eprintln!("fixture missing, skipped");
        return;
    };
    // ffmpeg waited for our answers; feed byte by byte so each command is
    // handled before the next arrives.
    let mut server = ServerSession::new(ServerConfig::default());
    let (got, err) = drive(&mut server, &capture, || 1);
    assert!(err.is_none(), "{err:?}");
    let ServerEvent::ConnectRequested { app, tc_url } = &got[0] else {
        panic!("{:?}", got[0]);
    };
    assert_eq!(app, "live");
    assert!(tc_url.as_deref().unwrap().ends_with("/live"));
    assert_eq!(
        got[1],
        ServerEvent::PublishRequested {
            stream_key: "cap".into(),
            mode: "live".into()
        }
    );
    let ServerEvent::Metadata { properties } = &got[2] else {
        panic!("{:?}", got[2]);
    };
    assert_eq!(properties[0].0, "duration");
    assert!(properties.contains(&("width".to_owned(), n(320.0))));
    assert!(properties.contains(&("encoder".to_owned(), s("Lavf59.27.100"))));
    assert_eq!(got.last(), Some(&ServerEvent::PublishFinished));
    assert_eq!(
        got.iter()
            .filter(|e| **e == ServerEvent::PublishFinished)
            .count(),
        1,
        "FCUnpublish then deleteStream finish once"
    );

    // Every media message, in order, exactly as the bare decoder sees it.
    let media: Vec<ServerEvent> = raw_messages(&capture)
        .into_iter()
        .filter_map(|m| match m.type_id {
            msg_type::AUDIO => Some(ServerEvent::Audio {
                timestamp: m.timestamp,
                payload: m.payload,
            }),
            msg_type::VIDEO => Some(ServerEvent::Video {
                timestamp: m.timestamp,
                payload: m.payload,
            }),
            _ => None,
        })
        .collect();
    let ours: Vec<ServerEvent> = got[3..got.len() - 1].to_vec();
    assert!(media.len() > 50);
    assert_eq!(ours, media);
    // AVC then AAC sequence headers first.
    assert!(
        matches!(&ours[0], ServerEvent::Video { timestamp: 0, payload } if payload[..2] == [0x17, 0])
    );
    assert!(
        matches!(&ours[1], ServerEvent::Audio { timestamp: 0, payload } if payload[..2] == [0xAF, 0])
    );

    // Byte by byte up to the publish, which ffmpeg sends and then waits
    // for its answer, bigger pieces after it: the same events.
    let mut server = ServerSession::new(ServerConfig::default());
    let mut again = vec![];
    let mut pos = 0;
    while !again
        .iter()
        .any(|e| matches!(e, ServerEvent::PublishRequested { .. }))
    {
        let (events, err) = drive(&mut server, &capture[pos..pos + 1], || 1);
        assert!(err.is_none());
        again.extend(events);
        pos += 1;
    }
    let split_at = capture.len() / 2;
    let (rest, err) = drive(&mut server, &capture[pos..split_at], || 4096);
    assert!(err.is_none());
    again.extend(rest);
    let (rest, err) = drive(&mut server, &capture[split_at..], || usize::MAX);
    assert!(err.is_none());
    again.extend(rest);
    assert_eq!(again, got);

    // All of it in one piece, as a client that does not wait for answers
    // sends it: the same events.
    let mut server = ServerSession::new(ServerConfig::default());
    let (at_once, err) = drive(&mut server, &capture, || usize::MAX);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(at_once, got);
}

#[test]
fn captured_ffmpeg_and_rtmpdump_play() {
    for name in ["ffmpeg_play_c2s.bin", "rtmpdump_play_c2s.bin"] {
        let Some(capture) = fixture(name) else {
            continue;
        };
        let mut server = ServerSession::new(ServerConfig::default());
        let mut obs = Observer::new();
        let mut got = vec![];
        let mut statuses = vec![];
        for byte in &capture {
            server.handle_input(std::slice::from_ref(byte)).unwrap();
            while let Some(ev) = server.poll_event() {
                match &ev {
                    ServerEvent::ConnectRequested { .. } => server.accept_connect(),
                    ServerEvent::PlayRequested { .. } => server.accept_play(),
                    _ => {}
                }
                got.push(ev);
            }
            for m in obs.read(&mut server) {
                // No data messages (|RtmpSampleAccess, onStatus as data).
                assert_ne!(m.type_id, msg_type::DATA_AMF0, "{name}");
                if m.type_id == msg_type::COMMAND_AMF0 {
                    let c = command_of(&m);
                    if c.name == "onStatus" {
                        statuses.push((m.stream_id, status_code(&c)));
                    }
                }
            }
        }
        assert!(matches!(&got[0], ServerEvent::ConnectRequested { app, .. } if app == "live"));
        assert_eq!(
            got[1],
            ServerEvent::PlayRequested {
                stream_key: "cap".into()
            },
            "{name}"
        );
        assert_eq!(
            statuses,
            vec![
                (1, "NetStream.Play.Reset".to_owned()),
                (1, "NetStream.Play.Start".to_owned())
            ]
        );
        if name.starts_with("ffmpeg") {
            assert_eq!(got.len(), 3);
            assert_eq!(got[2], ServerEvent::PlayFinished);
        }
    }
}

#[test]
fn ffmpeg_like_play_and_shared_media() {
    let (mut server, mut obs, mut wire) = connected_server();
    wire.command(0, vec![s("createStream"), n(2.0), Amf0Value::Null]);
    wire.command(
        0,
        vec![s("getStreamLength"), n(3.0), Amf0Value::Null, s("cam1")],
    );
    wire.command(
        1,
        vec![s("play"), n(4.0), Amf0Value::Null, s("cam1"), n(-2000.0)],
    );
    let buffer = ControlMessage::UserControl(UserControlEvent::SetBufferLength {
        stream_id: 1,
        buffer_ms: 3000,
    });
    wire.msg(2, 0, msg_type::USER_CONTROL, 0, &buffer.to_payload());
    server.handle_input(&wire.take()).unwrap();
    assert_eq!(
        events(&mut server),
        vec![ServerEvent::PlayRequested {
            stream_key: "cam1".into()
        }]
    );
    assert_eq!(obs.read(&mut server).len(), 1); // createStream _result
    server.accept_play();
    let out = obs.read(&mut server);
    assert_eq!(out.len(), 3);
    assert_eq!(
        control_of(&out[0]),
        ControlMessage::UserControl(UserControlEvent::StreamBegin(PLAY_STREAM_ID))
    );
    assert_eq!(status_code(&command_of(&out[1])), "NetStream.Play.Reset");
    assert_eq!(status_code(&command_of(&out[2])), "NetStream.Play.Start");

    server.send_play_metadata(&[("width", n(640.0)), ("height", n(360.0))]);
    let video_header = [0x17u8, 1, 0, 0, 0];
    let nals: Vec<u8> = (0..10_000).map(|i| (i % 253) as u8).collect();
    let shared_video = encode_media_message(MediaKind::Video, 0x0100_0000, &[&video_header, &nals]);
    let shared_audio = encode_media_message(MediaKind::Audio, 40, &[&[0xAF, 1, 9]]);
    server.queue_encoded(shared_video.clone());
    server.queue_encoded(shared_audio.clone());
    // poll_output hands the shared bytes out without copying.
    let pieces: Vec<Bytes> = std::iter::from_fn(|| server.poll_output()).collect();
    assert_eq!(pieces.len(), 3);
    assert_eq!(pieces[1].as_ptr(), shared_video.as_ptr());
    assert_eq!(pieces[2].as_ptr(), shared_audio.as_ptr());
    for p in &pieces {
        obs.dec.push(p);
    }
    let out: Vec<RawMessage> = std::iter::from_fn(|| obs.dec.next_message().unwrap()).collect();
    assert_eq!(out.len(), 3);
    assert_eq!(
        (out[0].csid, out[0].type_id, out[0].stream_id),
        (DATA_CSID, 18, 1)
    );
    let mut r = amf::Reader::new(&out[0].payload);
    assert_eq!(r.read_value().unwrap(), Some(s("onMetaData")));
    assert_eq!(
        r.read_properties().unwrap().unwrap(),
        vec![
            ("width".to_owned(), n(640.0)),
            ("height".to_owned(), n(360.0))
        ]
    );
    assert_eq!(
        (
            out[1].csid,
            out[1].type_id,
            out[1].stream_id,
            out[1].timestamp
        ),
        (VIDEO_CSID, 9, 1, 0x0100_0000)
    );
    assert_eq!(&out[1].payload[..5], &video_header);
    assert_eq!(&out[1].payload[5..], &nals[..]);
    assert_eq!(
        (
            out[2].csid,
            out[2].type_id,
            out[2].timestamp,
            &out[2].payload[..]
        ),
        (AUDIO_CSID, 8, 40, &[0xAF, 1, 9][..])
    );

    server.notify_unpublished();
    let out = obs.read(&mut server);
    assert_eq!(
        control_of(&out[0]),
        ControlMessage::UserControl(UserControlEvent::StreamEof(1))
    );
    assert_eq!(
        status_code(&command_of(&out[1])),
        "NetStream.Play.UnpublishNotify"
    );

    wire.command(0, vec![s("deleteStream"), n(5.0), Amf0Value::Null, n(1.0)]);
    server.handle_input(&wire.take()).unwrap();
    assert_eq!(events(&mut server), vec![ServerEvent::PlayFinished]);
}

#[test]
fn encode_media_message_layout() {
    // A timestamp below 0xFFFFFF, exact multiple of the chunk size.
    let payload = vec![7u8; 2 * PLAYER_CHUNK_SIZE as usize];
    let b = encode_media_message(MediaKind::Audio, 1234, &[&payload]);
    assert_eq!(b[0], AUDIO_CSID as u8); // type 0
    assert_eq!(b.len(), 12 + 1 + payload.len());
    assert_eq!(b[12 + 4096], 0xC0 | AUDIO_CSID as u8);
    // Extended: 4 more bytes on the header and on each continuation.
    let b = encode_media_message(MediaKind::Data, 0xFFFFFF, &[&payload[..5000]]);
    assert_eq!(b.len(), 12 + 4 + 1 + 4 + 5000);
    assert_eq!(&b[1..4], &[0xFF, 0xFF, 0xFF]);
    assert_eq!(&b[12..16], &[0, 0xFF, 0xFF, 0xFF]);
    assert_eq!(&b[16 + 4096..16 + 4096 + 5], &[0xC5, 0, 0xFF, 0xFF, 0xFF]);
}

#[test]
fn rml_rtmp_panic_cases_are_harmless() {
    // AMF0 commands with 0, 1 and 2 values.
    let (mut server, mut obs, mut wire) = connected_server();
    wire.msg(3, 0, msg_type::COMMAND_AMF0, 0, &[]);
    wire.command(0, vec![s("createStream")]);
    wire.command(0, vec![s("releaseStream"), n(2.0)]);
    wire.command(1, vec![s("publish"), n(3.0)]);
    wire.command(0, vec![n(1.0), n(2.0), n(3.0)]);
    server.handle_input(&wire.take()).unwrap();
    assert!(events(&mut server).is_empty());
    let out = obs.read(&mut server);
    assert_eq!(out.len(), 2);
    assert_eq!(command_of(&out[0]).transaction_id, 0.0); // createStream answered
    assert_eq!(
        status_code(&command_of(&out[1])),
        "NetStream.Publish.BadName"
    );

    // A connect with nothing but its name.
    let mut server = ServerSession::new(ServerConfig::default());
    let mut wire = Wire::new();
    server.handle_input(&client_handshake()).unwrap();
    wire.command(0, vec![s("connect")]);
    server.handle_input(&wire.take()).unwrap();
    assert_eq!(
        events(&mut server),
        vec![ServerEvent::ConnectRequested {
            app: String::new(),
            tc_url: None
        }]
    );

    // @setDataFrame with no payload after it, or without properties.
    let (mut server, _obs, mut wire) = connected_server();
    wire.command(0, vec![s("createStream"), n(2.0), Amf0Value::Null]);
    wire.command(1, vec![s("publish"), n(3.0), Amf0Value::Null, s("k")]);
    server.handle_input(&wire.take()).unwrap();
    events(&mut server);
    server.accept_publish();
    wire.msg(4, 0, msg_type::DATA_AMF0, 1, &amf(vec![s("@setDataFrame")]));
    wire.msg(
        4,
        0,
        msg_type::DATA_AMF0,
        1,
        &amf(vec![s("@setDataFrame"), s("onMetaData")]),
    );
    wire.msg(4, 0, msg_type::DATA_AMF0, 1, &[]);
    wire.msg(4, 0, msg_type::DATA_AMF3, 1, &[]);
    wire.msg(4, 0, msg_type::DATA_AMF0, 1, &[0x02, 0xFF]);
    // Bare onMetaData with an AMF3 format byte in front.
    let mut meta = vec![0];
    meta.extend(amf(vec![s("onMetaData"), obj(&[("width", n(2.0))])]));
    wire.msg(4, 0, msg_type::DATA_AMF3, 1, &meta);
    server.handle_input(&wire.take()).unwrap();
    assert_eq!(
        events(&mut server),
        vec![ServerEvent::Metadata {
            properties: vec![("width".into(), n(2.0))]
        }]
    );
    assert!(server.handle_input(&[]).is_ok());

    // Chunk headers whose lengths would underflow a naive reader.
    let (mut server, _obs, mut wire) = connected_server();
    let mut b = vec![0x06, 0, 0, 0, 0, 1, 0x2C, 9, 1, 0, 0, 0]; // 300 bytes announced
    b.extend([0u8; 128]);
    b.extend([0x46, 0, 0, 0, 0, 0, 10, 9]); // type 1 inside it: 10 bytes
    wire.out.extend_from_slice(&b);
    let err = server.handle_input(&wire.take()).unwrap_err();
    assert!(matches!(
        err,
        RtmpError::Chunk(chunk::ChunkError::HeaderInsideMessage { csid: 6, .. })
    ));
    assert!(matches!(server.handle_input(&[0]), Err(RtmpError::Failed)));

    // Deeply nested AMF0 in a command is an error, in a data message ignored.
    let mut deep = amf(vec![s("connect"), n(1.0)]);
    for _ in 0..50_000 {
        deep.extend([0x03, 0, 1, b'a']);
    }
    let mut server = ServerSession::new(ServerConfig::default());
    let mut wire = Wire::new();
    wire.set_chunk_size(1 << 20);
    server.handle_input(&client_handshake()).unwrap();
    wire.msg(3, 0, msg_type::COMMAND_AMF0, 0, &deep);
    let err = server.handle_input(&wire.take()).unwrap_err();
    assert!(matches!(
        err,
        RtmpError::Amf0 {
            source: amf::AmfError::TooDeep { .. },
            ..
        }
    ));
    let (mut server, _obs, mut wire) = connected_server();
    wire.set_chunk_size(1 << 20);
    wire.msg(4, 0, msg_type::DATA_AMF0, 0, &deep);
    server.handle_input(&wire.take()).unwrap();
}

#[test]
fn protocol_order_errors() {
    // createStream right behind connect waits until the connect is decided.
    let mut server = ServerSession::new(ServerConfig::default());
    let mut wire = Wire::new();
    server.handle_input(&client_handshake()).unwrap();
    wire.command(0, vec![s("connect"), n(1.0), obj(&[("app", s("a"))])]);
    wire.command(0, vec![s("createStream"), n(2.0), Amf0Value::Null]);
    wire.command(1, vec![s("publish"), n(3.0), Amf0Value::Null, s("k")]);
    server.handle_input(&wire.take()).unwrap();
    assert!(matches!(
        events(&mut server)[..],
        [ServerEvent::ConnectRequested { .. }]
    ));
    server.accept_connect();
    assert!(server.resume().unwrap());
    assert!(matches!(
        events(&mut server)[..],
        [ServerEvent::PublishRequested { .. }]
    ));
    // A rejected connect ends what came behind it.
    let mut server = ServerSession::new(ServerConfig::default());
    server.handle_input(&client_handshake()).unwrap();
    wire.command(0, vec![s("connect"), n(1.0), obj(&[("app", s("a"))])]);
    wire.command(0, vec![s("createStream"), n(2.0), Amf0Value::Null]);
    server.handle_input(&wire.take()).unwrap();
    server.reject_connect("no");
    assert!(matches!(server.resume(), Err(RtmpError::Protocol(_))));
    // Rejected connect.
    let mut server = ServerSession::new(ServerConfig::default());
    let mut obs = Observer::new();
    server.handle_input(&client_handshake()).unwrap();
    wire.command(0, vec![s("connect"), n(1.0), obj(&[("app", s("a"))])]);
    server.handle_input(&wire.take()).unwrap();
    server.reject_connect("no such app");
    let out = obs.read(&mut server);
    let c = command_of(&out[0]);
    assert_eq!((c.name.as_str(), c.transaction_id), ("_error", 1.0));
    assert_eq!(status_code(&c), "NetConnection.Connect.Rejected");
    // Rejected publish, then media is dropped.
    let (mut server, mut obs, mut wire) = connected_server();
    wire.command(
        1,
        vec![s("publish"), n(0.0), Amf0Value::Null, s("k?x=1"), s("live")],
    );
    wire.msg(6, 0, msg_type::VIDEO, 1, &[0x17, 0]);
    server.handle_input(&wire.take()).unwrap();
    assert_eq!(
        events(&mut server),
        vec![ServerEvent::PublishRequested {
            stream_key: "k?x=1".into(),
            mode: "live".into()
        }]
    );
    server.reject_publish("NetStream.Publish.BadName", "taken");
    let out = obs.read(&mut server);
    let c = command_of(&out[0]);
    assert_eq!(status_code(&c), "NetStream.Publish.BadName");
    assert_eq!(command::property_str(&c.args[0], "level"), Some("error"));
    // Accepting afterwards does nothing.
    server.accept_publish();
    assert!(obs.read(&mut server).is_empty());
    // Rejected play.
    wire.command(1, vec![s("play"), n(0.0), Amf0Value::Null, s("nope")]);
    server.handle_input(&wire.take()).unwrap();
    events(&mut server);
    server.reject_play("NetStream.Play.StreamNotFound", "no");
    let out = obs.read(&mut server);
    assert_eq!(
        status_code(&command_of(&out[0])),
        "NetStream.Play.StreamNotFound"
    );
}

#[test]
fn ack_carries_the_total_and_ping_is_answered() {
    let (mut server, mut obs, mut wire) = connected_server();
    let mut total = HANDSHAKE_LEN as u64;
    // Bytes fed so far: handshake + connect.
    let connect_len = {
        let mut w = Wire::new();
        w.command(0, vec![s("connect"), n(1.0), obj(&[("app", s("live"))])]);
        w.take().len() as u64
    };
    total += connect_len;
    wire.msg(2, 0, msg_type::WINDOW_ACK_SIZE, 0, &1000u32.to_be_bytes());
    let ping = ControlMessage::UserControl(UserControlEvent::PingRequest(77));
    wire.msg(2, 0, msg_type::USER_CONTROL, 0, &ping.to_payload());
    let first = wire.take();
    total += first.len() as u64;
    server.handle_input(&first).unwrap();
    let out = obs.read(&mut server);
    // Already more than 1000 bytes since the start: an Ack with the total.
    assert_eq!(
        out.iter().map(control_of).collect::<Vec<_>>(),
        vec![
            ControlMessage::UserControl(UserControlEvent::PingResponse(77)),
            ControlMessage::Ack(total as u32),
        ]
    );
    let mut acks = vec![];
    let mut last_ack = total;
    for _ in 0..20 {
        wire.msg(4, 0, msg_type::AUDIO, 1, &[0xAF; 300]);
        let bytes = wire.take();
        total += bytes.len() as u64;
        server.handle_input(&bytes).unwrap();
        for m in obs.read(&mut server) {
            let ControlMessage::Ack(v) = control_of(&m) else {
                panic!("{m:?}");
            };
            assert_eq!(u64::from(v), total);
            assert!(total - last_ack >= 1000);
            last_ack = total;
            acks.push(v);
        }
    }
    assert!(acks.len() >= 4, "{acks:?}");
}

#[test]
fn aggregate_messages_are_split() {
    let (mut server, _obs, mut wire) = connected_server();
    wire.command(1, vec![s("publish"), n(0.0), Amf0Value::Null, s("k")]);
    server.handle_input(&wire.take()).unwrap();
    events(&mut server);
    server.accept_publish();
    let mut agg = vec![];
    for (type_id, ts, body) in [
        (9u8, 1000u32, &[0x17u8, 1, 2][..]),
        (8, 1010, &[0xAF, 1]),
        (9, 1040, &[0x27, 1]),
    ] {
        agg.push(type_id);
        agg.extend(&(body.len() as u32).to_be_bytes()[1..]);
        agg.extend(&ts.to_be_bytes()[1..]);
        agg.push((ts >> 24) as u8);
        agg.extend([0, 0, 1]);
        agg.extend(body);
        agg.extend((11 + body.len() as u32).to_be_bytes());
    }
    agg.extend([9, 0, 0, 50]); // truncated tail
    wire.msg(4, 5000, msg_type::AGGREGATE, 1, &agg);
    server.handle_input(&wire.take()).unwrap();
    assert_eq!(
        events(&mut server),
        vec![
            ServerEvent::Video {
                timestamp: 5000,
                payload: Bytes::from_static(&[0x17, 1, 2])
            },
            ServerEvent::Audio {
                timestamp: 5010,
                payload: Bytes::from_static(&[0xAF, 1])
            },
            ServerEvent::Video {
                timestamp: 5040,
                payload: Bytes::from_static(&[0x27, 1])
            },
        ]
    );
}

#[test]
fn amf3_connect_command() {
    let mut server = ServerSession::new(ServerConfig::default());
    let mut wire = Wire::new();
    server.handle_input(&client_handshake()).unwrap();
    let mut payload = vec![0u8];
    payload.extend(amf(vec![s("connect"), n(1.0), obj(&[("app", s("x"))])]));
    wire.msg(3, 0, msg_type::COMMAND_AMF3, 0, &payload);
    server.handle_input(&wire.take()).unwrap();
    assert_eq!(
        events(&mut server),
        vec![ServerEvent::ConnectRequested {
            app: "x".into(),
            tc_url: None
        }]
    );
}

#[test]
fn interleaved_publish_into_server() {
    let (mut server, _obs, mut wire) = connected_server();
    wire.command(1, vec![s("publish"), n(0.0), Amf0Value::Null, s("k")]);
    server.handle_input(&wire.take()).unwrap();
    events(&mut server);
    server.accept_publish();
    let audio: Vec<u8> = (0..400).map(|i| i as u8).collect();
    let video: Vec<u8> = (0..700).map(|i| (i * 3) as u8).collect();
    let mut a = BytesMut::new();
    encode_message(&mut a, 4, 10, 8, 1, &[&audio], 128);
    let mut v = BytesMut::new();
    encode_message(&mut v, 6, 20, 9, 1, &[&video], 128);
    // First chunks are 12 + 128 bytes, continuations 1 + 128.
    let mut stream = vec![];
    stream.extend(&a[..140]);
    stream.extend(&v[..140]);
    let (mut pa, mut pv) = (140, 140);
    while pa < a.len() || pv < v.len() {
        let ea = (pa + 129).min(a.len());
        stream.extend(&a[pa..ea]);
        pa = ea;
        let ev = (pv + 129).min(v.len());
        stream.extend(&v[pv..ev]);
        pv = ev;
    }
    server.handle_input(&stream).unwrap();
    assert_eq!(
        events(&mut server),
        vec![
            ServerEvent::Audio {
                timestamp: 10,
                payload: Bytes::from(audio)
            },
            ServerEvent::Video {
                timestamp: 20,
                payload: Bytes::from(video)
            },
        ]
    );
}

/// Moves bytes both ways until neither side has output.
fn pump(
    client: &mut ClientSession,
    server: &mut ServerSession,
    transcript: &mut Vec<u8>,
) -> (Vec<ClientEvent>, Vec<ServerEvent>) {
    let (mut ce, mut se) = (vec![], vec![]);
    loop {
        let mut moved = false;
        if let Some(b) = client.take_output() {
            transcript.extend_from_slice(&b);
            server.handle_input(&b).unwrap();
            moved = true;
        }
        se.extend(std::iter::from_fn(|| server.poll_event()));
        if let Some(b) = server.take_output() {
            client.handle_input(&b).unwrap();
            moved = true;
        }
        ce.extend(std::iter::from_fn(|| client.poll_event()));
        if !moved {
            return (ce, se);
        }
    }
}

/// A realistic publish session made by our client; returns the client's
/// bytes.
fn client_publish_transcript() -> Vec<u8> {
    let mut client = ClientSession::new();
    let mut server = ServerSession::new(ServerConfig::default());
    let mut t = vec![];
    client.set_chunk_size(4096);
    client.connect("live", "rtmp://localhost/live");
    let (ce, se) = pump(&mut client, &mut server, &mut t);
    assert!(ce.is_empty());
    assert_eq!(
        se,
        vec![ServerEvent::ConnectRequested {
            app: "live".into(),
            tc_url: Some("rtmp://localhost/live".into())
        }]
    );
    server.accept_connect();
    client.create_stream();
    let (ce, _) = pump(&mut client, &mut server, &mut t);
    assert_eq!(
        ce,
        vec![
            ClientEvent::Connected,
            ClientEvent::StreamCreated { stream_id: 1 }
        ]
    );
    client.publish("cam1");
    let (_, se) = pump(&mut client, &mut server, &mut t);
    assert_eq!(
        se,
        vec![ServerEvent::PublishRequested {
            stream_key: "cam1".into(),
            mode: "live".into()
        }]
    );
    server.accept_publish();
    let (ce, _) = pump(&mut client, &mut server, &mut t);
    assert_eq!(ce, vec![ClientEvent::PublishStarted]);
    client.send_metadata(&[("width", n(640.0)), ("framerate", n(30.0))]);
    client.send_video(0, &[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1F, 0xFF]);
    client.send_audio(0, &[0xAF, 0, 0x12, 0x10]);
    let mut expected = vec![
        ServerEvent::Metadata {
            properties: vec![("width".into(), n(640.0)), ("framerate".into(), n(30.0))],
        },
        ServerEvent::Video {
            timestamp: 0,
            payload: Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1F, 0xFF]),
        },
        ServerEvent::Audio {
            timestamp: 0,
            payload: Bytes::from_static(&[0xAF, 0, 0x12, 0x10]),
        },
    ];
    for i in 0..30u32 {
        // Mostly single-chunk frames, a few of several chunks.
        let len = if i % 10 == 9 { 9000 } else { 100 + i * 20 };
        let frame: Vec<u8> = (0..len).map(|b| (b ^ i) as u8).collect();
        client.send_video(i * 33, &frame);
        client.send_audio(i * 23, &[0xAF, 1, i as u8]);
        expected.push(ServerEvent::Video {
            timestamp: i * 33,
            payload: Bytes::from(frame),
        });
        expected.push(ServerEvent::Audio {
            timestamp: i * 23,
            payload: Bytes::from(vec![0xAF, 1, i as u8]),
        });
    }
    let (_, se) = pump(&mut client, &mut server, &mut t);
    assert_eq!(se, expected);
    client.send_raw(
        msg_type::COMMAND_AMF0,
        0,
        &Writer::command("FCUnpublish", 9.0)
            .null()
            .string("cam1")
            .finish(),
    );
    client.delete_stream();
    let (ce, se) = pump(&mut client, &mut server, &mut t);
    assert_eq!(se, vec![ServerEvent::PublishFinished]);
    assert!(
        matches!(&ce[..], [ClientEvent::Status { code, .. }] if code == "NetStream.Unpublish.Success")
    );
    t
}

#[test]
fn client_publish_round_trip() {
    let t = client_publish_transcript();
    assert!(t.len() > 30_000);
}

#[test]
fn client_play_round_trip() {
    let mut client = ClientSession::new();
    let mut server = ServerSession::new(ServerConfig::default());
    let mut t = vec![];
    client.connect("live", "rtmp://localhost/live");
    pump(&mut client, &mut server, &mut t);
    server.accept_connect();
    client.create_stream();
    client.play("cam1");
    let (ce, se) = pump(&mut client, &mut server, &mut t);
    assert_eq!(
        ce,
        vec![
            ClientEvent::Connected,
            ClientEvent::StreamCreated { stream_id: 1 }
        ]
    );
    assert_eq!(
        se,
        vec![ServerEvent::PlayRequested {
            stream_key: "cam1".into()
        }]
    );
    server.accept_play();
    server.send_play_metadata(&[("width", n(640.0))]);
    let big: Vec<u8> = (0..20_000).map(|i| i as u8).collect();
    server.queue_encoded(encode_media_message(
        MediaKind::Video,
        0,
        &[&[0x17, 0], &big[..100]],
    ));
    server.queue_encoded(encode_media_message(MediaKind::Video, 0x0123_4567, &[&big]));
    server.send_media(MediaKind::Audio, 5, &[&[0xAF, 1, 2]]);
    let (ce, _) = pump(&mut client, &mut server, &mut t);
    let mut v0 = vec![0x17, 0];
    v0.extend(&big[..100]);
    assert_eq!(
        ce,
        vec![
            ClientEvent::Status {
                level: "status".into(),
                code: "NetStream.Play.Reset".into(),
                description: "Playing and resetting stream.".into()
            },
            ClientEvent::PlayStarted,
            ClientEvent::Metadata {
                properties: vec![("width".into(), n(640.0))]
            },
            ClientEvent::Video {
                timestamp: 0,
                payload: Bytes::from(v0)
            },
            ClientEvent::Video {
                timestamp: 0x0123_4567,
                payload: Bytes::from(big)
            },
            ClientEvent::Audio {
                timestamp: 5,
                payload: Bytes::from_static(&[0xAF, 1, 2])
            },
        ]
    );
    server.notify_unpublished();
    let (ce, _) = pump(&mut client, &mut server, &mut t);
    assert_eq!(ce[0], ClientEvent::StreamEof { stream_id: 1 });
    assert!(
        matches!(&ce[1], ClientEvent::Status { code, .. } if code == "NetStream.Play.UnpublishNotify")
    );
}

#[test]
fn client_sees_rejections() {
    let mut client = ClientSession::new();
    let mut server = ServerSession::new(ServerConfig::default());
    let mut t = vec![];
    client.connect("nope", "rtmp://localhost/nope");
    pump(&mut client, &mut server, &mut t);
    server.reject_connect("go away");
    let (ce, _) = pump(&mut client, &mut server, &mut t);
    assert_eq!(
        ce,
        vec![ClientEvent::Error {
            command: "connect".into(),
            code: "NetConnection.Connect.Rejected".into(),
            description: "go away".into()
        }]
    );
}

/// nginx-rtmp's answers to real players, fed to our client.
#[test]
fn client_reads_captured_nginx_play() {
    for name in ["ffmpeg_play_s2c.bin", "rtmpdump_play_s2c.bin"] {
        let Some(capture) = fixture(name) else {
            continue;
        };
        // Our client's transaction ids must match the captured client's:
        // connect 1, createStream 2.
        let mut client = ClientSession::new();
        client.connect("live", "rtmp://127.0.0.1/live");
        client.create_stream();
        let mut got = vec![];
        for piece in capture.chunks(1000) {
            client.handle_input(piece).unwrap();
            got.extend(std::iter::from_fn(|| client.poll_event()));
        }
        // Acks went out (nginx announced a 5 MB window; the capture is
        // smaller, so none needed) and C2 was sent.
        assert!(client.take_output().is_some());
        assert_eq!(got[0], ClientEvent::Connected, "{name}");
        assert_eq!(got[1], ClientEvent::StreamCreated { stream_id: 1 });
        assert!(got.contains(&ClientEvent::PlayStarted), "{name}");
        let meta = got
            .iter()
            .find_map(|e| match e {
                ClientEvent::Metadata { properties } => Some(properties),
                _ => None,
            })
            .unwrap();
        assert!(meta.contains(&("width".to_owned(), n(640.0))));
        // Every media message the bare decoder finds, in order.
        let mut dec = ChunkDecoder::new();
        dec.push(&capture[HANDSHAKE_LEN..]);
        let media: Vec<ClientEvent> = std::iter::from_fn(|| dec.next_message().unwrap())
            .filter(|m| !m.payload.is_empty())
            .filter_map(|m| match m.type_id {
                8 => Some(ClientEvent::Audio {
                    timestamp: m.timestamp,
                    payload: m.payload,
                }),
                9 => Some(ClientEvent::Video {
                    timestamp: m.timestamp,
                    payload: m.payload,
                }),
                _ => None,
            })
            .collect();
        let ours: Vec<ClientEvent> = got
            .into_iter()
            .filter(|e| matches!(e, ClientEvent::Audio { .. } | ClientEvent::Video { .. }))
            .collect();
        assert!(media.len() > 50, "{name}");
        assert_eq!(ours, media, "{name}");
    }
}

fn mutate(rng: &mut StdRng, base: &[u8]) -> Vec<u8> {
    let mut data = base.to_vec();
    let ops = rng.gen_range(1..=4);
    for _ in 0..ops {
        if data.is_empty() {
            break;
        }
        // Mostly after the handshake, where the chunk and command layers are.
        let pos = if data.len() > HANDSHAKE_LEN && rng.gen_bool(0.9) {
            rng.gen_range(HANDSHAKE_LEN..data.len())
        } else {
            rng.gen_range(0..data.len())
        };
        match rng.gen_range(0..6) {
            0 => data[pos] = rng.r#gen(),
            1 => data[pos] ^= 1 << rng.gen_range(0..8),
            2 => {
                let v = [0x00, 0xFF, 0xC3, 0x03, 0x7F, 0x80, 0x09][rng.gen_range(0..7)];
                data[pos] = v;
            }
            3 => data.truncate(pos),
            4 => {
                let len = rng.gen_range(1..64).min(data.len() - pos);
                let copy = data[pos..pos + len].to_vec();
                let at = rng.gen_range(0..=data.len());
                data.splice(at..at, copy);
            }
            _ => {
                let len = rng.gen_range(1..32).min(data.len() - pos);
                data.drain(pos..pos + len);
            }
        }
    }
    data
}

#[test]
fn mutated_publish_streams_never_panic() {
    // (bytes, how often it is picked)
    let mut bases: Vec<(Vec<u8>, u32)> = vec![(client_publish_transcript(), 40)];
    if let Some(capture) = fixture("ffmpeg_publish_c2s.bin") {
        // The start (commands, metadata, sequence headers, first frames)
        // often, the whole 86 KB now and then.
        bases.push((capture[..capture.len().min(20_000)].to_vec(), 40));
        bases.push((capture, 2));
    }
    for name in [
        "ffmpeg_play_c2s.bin",
        "rtmpdump_play_c2s.bin",
        "ffmpeg_publish_s2c.bin",
    ] {
        // Server bytes sent to a server are nonsense, but must not panic
        // either.
        if let Some(capture) = fixture(name) {
            bases.push((capture, 6));
        }
    }
    let weights: u32 = bases.iter().map(|(_, w)| w).sum();
    let mut rng = StdRng::seed_from_u64(0x5EED_2026);
    let (mut failed, mut media_events) = (0u32, 0usize);
    const SESSIONS: u32 = 6000;
    for i in 0..SESSIONS {
        let mut pick = rng.gen_range(0..weights);
        let base = &bases
            .iter()
            .find(|(_, w)| {
                let hit = pick < *w;
                pick = pick.saturating_sub(*w);
                hit
            })
            .unwrap()
            .0;
        let data = mutate(&mut rng, base);
        let max_piece = match rng.gen_range(0..100) {
            0..=2 => 1,
            3..=10 => 16,
            11..=40 => 700,
            _ => 65_536,
        };
        // Piece sizes from a xorshift (StdRng is slow in debug builds).
        let mut x: u64 = rng.r#gen::<u64>() | 1;
        let mut next_piece = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % max_piece as u64) as usize + 1
        };
        // The handshake (rml_rtmp, ~0.5 ms in debug) in every fifth
        // session; the others start at the first chunk.
        let (mut server, data) = if i % 5 == 0 {
            (ServerSession::new(ServerConfig::default()), &data[..])
        } else {
            (
                ServerSession::new_after_handshake(ServerConfig::default()),
                data.get(HANDSHAKE_LEN..).unwrap_or_default(),
            )
        };
        let (events, err) = drive(&mut server, data, &mut next_piece);
        failed += u32::from(err.is_some());
        media_events += events
            .iter()
            .filter(|e| matches!(e, ServerEvent::Audio { .. } | ServerEvent::Video { .. }))
            .count();
        // A failed session stays failed.
        if err.is_some() {
            assert!(matches!(server.handle_input(&[0]), Err(RtmpError::Failed)));
        }
    }
    // The mutations reach the media layer and some sessions survive them.
    assert!(media_events > 10_000, "{media_events}");
    assert!(failed > 100 && failed < SESSIONS, "{failed} of {SESSIONS}");
}

#[test]
fn sessions_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<ServerSession>();
    check::<ClientSession>();
    check::<chunk::ChunkDecoder>();
}
