//! The client side of one RTMP connection (sans-IO), for publishing and
//! playing: our integration tests drive the server with it, and it pulls
//! `rtmp://` sources.
//!
//! Typical use: [`ClientSession::new`] (queues C0+C1), write
//! [`take_output`](ClientSession::take_output), feed received bytes to
//! [`handle_input`](ClientSession::handle_input), call
//! [`connect`](ClientSession::connect) right away (it is held until the
//! handshake is done), wait for [`ClientEvent::Connected`],
//! [`create_stream`](ClientSession::create_stream), wait for
//! [`ClientEvent::StreamCreated`], then [`publish`](ClientSession::publish)
//! or [`play`](ClientSession::play).

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use rml_amf0::Amf0Value;
use rml_rtmp::handshake::{Handshake, PeerType};

use super::chunk::RawMessage;
use super::command::{Command, Writer, property_str};
use super::conn::{Connection, split_aggregate};
use super::control::{ControlMessage, UserControlEvent};
use super::server::{RtmpError, parse_metadata};
use super::{AUDIO_CSID, DATA_CSID, PLAY_STREAM_ID, VIDEO_CSID, msg_type};

/// What the server answered or sent, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum ClientEvent {
    /// `_result` of `connect`.
    Connected,
    /// `_result` of `createStream`.
    StreamCreated { stream_id: u32 },
    /// onStatus `NetStream.Publish.Start`.
    PublishStarted,
    /// onStatus `NetStream.Play.Start`.
    PlayStarted,
    /// Any other onStatus (e.g. `NetStream.Play.Reset`,
    /// `NetStream.Play.UnpublishNotify`, errors such as
    /// `NetStream.Publish.BadName`).
    Status {
        level: String,
        code: String,
        description: String,
    },
    /// Stream EOF user control event (RTMP 1.0 §7.1.7).
    StreamEof { stream_id: u32 },
    /// An FLV audio tag body.
    Audio { timestamp: u32, payload: Bytes },
    /// An FLV video tag body.
    Video { timestamp: u32, payload: Bytes },
    /// `onMetaData` (with or without `@setDataFrame`).
    Metadata {
        properties: Vec<(String, Amf0Value)>,
    },
    /// `_error` answer to one of our commands (e.g.
    /// `NetConnection.Connect.Rejected`).
    Error {
        command: String,
        code: String,
        description: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pending {
    Connect,
    CreateStream,
}

impl Pending {
    fn name(self) -> &'static str {
        match self {
            Pending::Connect => "connect",
            Pending::CreateStream => "createStream",
        }
    }
}

/// Client side of one RTMP connection (sans-IO).
pub struct ClientSession {
    handshake: Option<Box<Handshake>>,
    /// Handshake bytes to send; chunk output waits in `conn` until the
    /// handshake is done.
    hs_out: BytesMut,
    conn: Connection,
    events: VecDeque<ClientEvent>,
    next_transaction_id: f64,
    pending: Vec<(f64, Pending)>,
    stream_id: u32,
    failed: bool,
}

impl std::fmt::Debug for ClientSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSession")
            .field("handshake_done", &self.handshake.is_none())
            .field("stream_id", &self.stream_id)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl Default for ClientSession {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientSession {
    /// A new session with C0+C1 queued for sending.
    pub fn new() -> Self {
        let mut handshake = Box::new(Handshake::new(PeerType::Client));
        let mut hs_out = BytesMut::new();
        let mut failed = false;
        match handshake.generate_outbound_p0_and_p1() {
            Ok(bytes) => hs_out.extend_from_slice(&bytes),
            Err(error) => {
                tracing::warn!(%error, "cannot start RTMP handshake");
                failed = true;
            }
        }
        ClientSession {
            handshake: Some(handshake),
            hs_out,
            conn: Connection::new(),
            events: VecDeque::new(),
            next_transaction_id: 1.0,
            pending: Vec::new(),
            stream_id: PLAY_STREAM_ID,
            failed,
        }
    }

    /// Bytes from the socket.
    pub fn handle_input(&mut self, data: &[u8]) -> Result<(), RtmpError> {
        if self.failed {
            return Err(RtmpError::Failed);
        }
        let result = self.handle_input_inner(data);
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    fn handle_input_inner(&mut self, data: &[u8]) -> Result<(), RtmpError> {
        let (reply, chunks) = self.conn.receive(&mut self.handshake, data)?;
        self.hs_out.extend_from_slice(&reply);
        if !chunks {
            return Ok(());
        }
        while let Some(msg) = self.conn.decoder.next_message()? {
            self.on_message(msg)?;
        }
        self.conn.maybe_ack();
        Ok(())
    }

    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// Everything to write to the socket, in order; `None` if nothing is
    /// pending. Chunk output is held back until the handshake is done.
    pub fn take_output(&mut self) -> Option<Bytes> {
        let chunks = if self.handshake.is_none() {
            self.conn.take_output()
        } else {
            None
        };
        match (self.hs_out.is_empty(), chunks) {
            (true, chunks) => chunks,
            (false, None) => Some(self.hs_out.split().freeze()),
            (false, Some(chunks)) => {
                self.hs_out.extend_from_slice(&chunks);
                Some(self.hs_out.split().freeze())
            }
        }
    }

    /// Whether the handshake is over.
    pub fn handshake_done(&self) -> bool {
        self.handshake.is_none()
    }

    /// Message stream id for publish/play/media: the `createStream` answer
    /// (1 until then).
    pub fn stream_id(&self) -> u32 {
        self.stream_id
    }

    fn transaction_id(&mut self) -> f64 {
        let id = self.next_transaction_id;
        self.next_transaction_id += 1.0;
        id
    }

    /// `connect` (RTMP 1.0 §7.2.1.1) to `app`; `tc_url` is the full URL up to
    /// the app (`rtmp://host:1935/live`).
    pub fn connect(&mut self, app: &str, tc_url: &str) {
        let id = self.transaction_id();
        self.pending.push((id, Pending::Connect));
        let payload = Writer::command("connect", id)
            .object(&[
                ("app", Amf0Value::Utf8String(app.to_owned())),
                ("type", Amf0Value::Utf8String("nonprivate".into())),
                (
                    "flashVer",
                    Amf0Value::Utf8String("FMLE/3.0 (compatible; mediarelay)".into()),
                ),
                ("tcUrl", Amf0Value::Utf8String(tc_url.to_owned())),
                ("fpad", Amf0Value::Boolean(false)),
                ("capabilities", Amf0Value::Number(15.0)),
                ("audioCodecs", Amf0Value::Number(3191.0)),
                ("videoCodecs", Amf0Value::Number(252.0)),
                ("videoFunction", Amf0Value::Number(1.0)),
            ])
            .finish();
        self.conn.send_command(0, &payload);
    }

    /// `createStream` (RTMP 1.0 §7.2.1.3).
    pub fn create_stream(&mut self) {
        let id = self.transaction_id();
        self.pending.push((id, Pending::CreateStream));
        let payload = Writer::command("createStream", id).null().finish();
        self.conn.send_command(0, &payload);
    }

    /// `publish(null, key, "live")` (RTMP 1.0 §7.2.2.6).
    pub fn publish(&mut self, key: &str) {
        let id = self.transaction_id();
        let payload = Writer::command("publish", id)
            .null()
            .string(key)
            .string("live")
            .finish();
        self.conn.send_command(self.stream_id, &payload);
    }

    /// `play(null, key, -2)` (RTMP 1.0 §7.2.2.1: live, else recorded) and a
    /// Set Buffer Length of 3 s, as ffmpeg does.
    pub fn play(&mut self, key: &str) {
        let id = self.transaction_id();
        let payload = Writer::command("play", id)
            .null()
            .string(key)
            .number(-2.0)
            .finish();
        self.conn.send_command(self.stream_id, &payload);
        self.conn.send_control(ControlMessage::UserControl(
            UserControlEvent::SetBufferLength {
                stream_id: self.stream_id,
                buffer_ms: 3000,
            },
        ));
    }

    /// `deleteStream(null, stream id)` (RTMP 1.0 §7.2.2.3).
    pub fn delete_stream(&mut self) {
        let id = self.transaction_id();
        let payload = Writer::command("deleteStream", id)
            .null()
            .number(f64::from(self.stream_id))
            .finish();
        self.conn.send_command(0, &payload);
    }

    /// Any command or data payload (built with [`Writer`]) as a message of
    /// `type_id` on `stream_id`.
    pub fn send_raw(&mut self, type_id: u8, stream_id: u32, payload: &[u8]) {
        self.conn
            .send_message(super::conn::COMMAND_CSID, 0, type_id, stream_id, &[payload]);
    }

    /// `@setDataFrame onMetaData {..}` (data message) with the properties in
    /// this order.
    pub fn send_metadata(&mut self, properties: &[(&str, Amf0Value)]) {
        let payload = Writer::default()
            .string("@setDataFrame")
            .string("onMetaData")
            .ecma_array(properties)
            .finish();
        self.conn.send_message(
            DATA_CSID,
            0,
            msg_type::DATA_AMF0,
            self.stream_id,
            &[&payload],
        );
    }

    /// An audio message: an FLV audio tag body.
    pub fn send_audio(&mut self, timestamp: u32, payload: &[u8]) {
        self.conn.send_message(
            AUDIO_CSID,
            timestamp,
            msg_type::AUDIO,
            self.stream_id,
            &[payload],
        );
    }

    /// A video message: an FLV video tag body.
    pub fn send_video(&mut self, timestamp: u32, payload: &[u8]) {
        self.conn.send_message(
            VIDEO_CSID,
            timestamp,
            msg_type::VIDEO,
            self.stream_id,
            &[payload],
        );
    }

    /// Set Chunk Size (RTMP 1.0 §5.4.1) for what we send from now on (clamped
    /// to `1..=0x7FFFFFFF`).
    pub fn set_chunk_size(&mut self, size: u32) {
        self.conn
            .send_control(ControlMessage::SetChunkSize(size.clamp(1, 0x7FFF_FFFF)));
    }

    fn on_message(&mut self, msg: RawMessage) -> Result<(), RtmpError> {
        match msg.type_id {
            msg_type::SET_CHUNK_SIZE..=msg_type::SET_PEER_BANDWIDTH => {
                if let Some(UserControlEvent::StreamEof(stream_id)) = self.conn.on_control(&msg) {
                    self.events.push_back(ClientEvent::StreamEof { stream_id });
                }
            }
            msg_type::AUDIO if !msg.payload.is_empty() => {
                self.events.push_back(ClientEvent::Audio {
                    timestamp: msg.timestamp,
                    payload: msg.payload,
                });
            }
            msg_type::VIDEO if !msg.payload.is_empty() => {
                self.events.push_back(ClientEvent::Video {
                    timestamp: msg.timestamp,
                    payload: msg.payload,
                });
            }
            msg_type::DATA_AMF0 => self.on_data(&msg.payload),
            msg_type::DATA_AMF3 => self.on_data(msg.payload.get(1..).unwrap_or_default()),
            msg_type::COMMAND_AMF0 => self.on_command(&msg, &msg.payload)?,
            msg_type::COMMAND_AMF3 => {
                self.on_command(&msg, msg.payload.get(1..).unwrap_or_default())?
            }
            msg_type::AGGREGATE => {
                for part in split_aggregate(&msg) {
                    if part.type_id != msg_type::AGGREGATE {
                        self.on_message(part)?;
                    }
                }
            }
            other => tracing::debug!(type_id = other, "client ignoring message"),
        }
        Ok(())
    }

    fn on_data(&mut self, payload: &[u8]) {
        match parse_metadata(payload) {
            Ok(Some(properties)) => self.events.push_back(ClientEvent::Metadata { properties }),
            Ok(None) => tracing::debug!("client ignoring data message"),
            Err(error) => tracing::debug!(%error, "client ignoring undecodable data message"),
        }
    }

    fn on_command(&mut self, msg: &RawMessage, payload: &[u8]) -> Result<(), RtmpError> {
        let command = match Command::parse(payload) {
            Ok(Some(command)) => command,
            Ok(None) => return Ok(()),
            Err(source) => {
                return Err(RtmpError::Amf0 {
                    type_id: msg.type_id,
                    csid: msg.csid,
                    source,
                });
            }
        };
        // The info object is the first argument (after a null command
        // object); some servers put it in the command object's place.
        let info = command
            .args
            .first()
            .filter(|v| matches!(v, Amf0Value::Object(_)))
            .unwrap_or(&command.object);
        let text = |key: &str| property_str(info, key).unwrap_or_default().to_owned();
        match command.name.as_str() {
            "_result" | "_error" => {
                let Some(index) = self
                    .pending
                    .iter()
                    .position(|(id, _)| *id == command.transaction_id)
                else {
                    tracing::debug!(id = command.transaction_id, "answer to no pending command");
                    return Ok(());
                };
                let (_, pending) = self.pending.swap_remove(index);
                if command.name == "_error" {
                    self.events.push_back(ClientEvent::Error {
                        command: pending.name().to_owned(),
                        code: text("code"),
                        description: text("description"),
                    });
                    return Ok(());
                }
                match pending {
                    Pending::Connect => self.events.push_back(ClientEvent::Connected),
                    Pending::CreateStream => {
                        let id = command
                            .args
                            .first()
                            .and_then(|v| match v {
                                Amf0Value::Number(n) if *n >= 0.0 && *n <= f64::from(u32::MAX) => {
                                    Some(*n as u32)
                                }
                                _ => None,
                            })
                            .ok_or_else(|| {
                                RtmpError::Protocol(
                                    "createStream _result without a stream id".into(),
                                )
                            })?;
                        self.stream_id = id;
                        self.events
                            .push_back(ClientEvent::StreamCreated { stream_id: id });
                    }
                }
            }
            "onStatus" => {
                let code = text("code");
                let event = match code.as_str() {
                    "NetStream.Publish.Start" => ClientEvent::PublishStarted,
                    "NetStream.Play.Start" => ClientEvent::PlayStarted,
                    _ => ClientEvent::Status {
                        level: text("level"),
                        code,
                        description: text("description"),
                    },
                };
                self.events.push_back(event);
            }
            other => tracing::debug!(name = other, "client ignoring command"),
        }
        Ok(())
    }
}
