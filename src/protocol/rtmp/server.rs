//! The server side of one RTMP connection, handshake included: decodes what a
//! publisher or player sends into [`ServerEvent`]s and writes our answers.
//!
//! Flow (RTMP 1.0 §7.2.1.1, §7.3.1 publish, §7.3.2 play): handshake →
//! `connect` ([`ServerEvent::ConnectRequested`], answered by
//! [`ServerSession::accept_connect`] or [`ServerSession::reject_connect`]) →
//! `createStream` (answered here, always stream [`PLAY_STREAM_ID`]) →
//! `publish` or `play` (events again, answered by the `accept_*`/`reject_*`
//! methods) → media.
//!
//! Choices:
//! - Audio, video and metadata received while no publish is accepted are
//!   dropped (counted, logged once at debug): a compliant publisher waits for
//!   `NetStream.Publish.Start`, and dropping keeps a confused one harmless.
//!   Empty audio/video messages are dropped too.
//! - Commands the relay does not need (`releaseStream`, `FCPublish`,
//!   `_checkbw`, `getStreamLength`, `receiveAudio`, `receiveVideo`, `pause`,
//!   unknown ones) are ignored. Commands without a name string are ignored;
//!   commands with missing arguments get a clear error status or are ignored;
//!   none panics. Undecodable AMF0 in a command is an [`RtmpError::Amf0`];
//!   in a data message it is logged and ignored.
//! - `createStream`, `publish` and `play` before the connect was accepted are
//!   protocol errors (clients wait for the connect `_result`).
//! - Aggregate messages (RTMP 1.0 §7.1.6) are split into their sub-messages
//!   (zero copy).
//! - After an error the session stays failed; close the connection.

use std::collections::VecDeque;

use bytes::Bytes;
use rml_amf0::Amf0Value;
use rml_rtmp::handshake::{Handshake, HandshakeError, PeerType};

use super::amf::{AmfError, Reader};
use super::chunk::{ChunkError, ChunkLimits, RawMessage};
use super::command::{Command, Writer, on_status};
use super::conn::{Connection, split_aggregate};
use super::control::{ControlMessage, LimitType, UserControlEvent};
use super::{
    DATA_CSID, MediaKind, PLAY_STREAM_ID, PLAYER_CHUNK_SIZE, encode_media_message, msg_type,
};

/// Settings of a [`ServerSession`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// Window Acknowledgement Size we announce (RTMP 1.0 §5.4.4).
    pub window_ack_size: u32,
    /// Set Peer Bandwidth we send, limit type dynamic (RTMP 1.0 §5.4.5).
    pub peer_bandwidth: u32,
    /// Bounds of the chunk decoder (message size, chunk streams).
    pub limits: ChunkLimits,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            window_ack_size: 2_500_000,
            peer_bandwidth: 2_500_000,
            limits: ChunkLimits::default(),
        }
    }
}

/// What the peer asked for or sent, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum ServerEvent {
    /// `connect` (RTMP 1.0 §7.2.1.1). `app` as sent (ffmpeg puts every path
    /// segment but the last into it: `rtmp://h/live/sub/cam1` → `live/sub`).
    ConnectRequested { app: String, tc_url: Option<String> },
    /// `publish` (RTMP 1.0 §7.2.2.6); `stream_key` as sent, query string
    /// included; `mode` is `live`, `record` or `append` (`live` if absent).
    PublishRequested { stream_key: String, mode: String },
    /// `play` (RTMP 1.0 §7.2.2.1).
    PlayRequested { stream_key: String },
    /// `@setDataFrame onMetaData {..}` or a bare `onMetaData {..}`, properties
    /// in the order sent.
    Metadata {
        properties: Vec<(String, Amf0Value)>,
    },
    /// An FLV audio tag body (RTMP 1.0 §7.1.5), a slice of what was received.
    Audio { timestamp: u32, payload: Bytes },
    /// An FLV video tag body (RTMP 1.0 §7.1.5; Enhanced RTMP bodies too).
    Video { timestamp: u32, payload: Bytes },
    /// `FCUnpublish`, `deleteStream` or `closeStream` from a publisher.
    PublishFinished,
    /// `deleteStream` or `closeStream` from a player.
    PlayFinished,
}

/// Why a session cannot go on; close the connection.
#[derive(Debug, thiserror::Error)]
pub enum RtmpError {
    #[error("RTMP handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    #[error("RTMP chunk stream: {0}")]
    Chunk(#[from] ChunkError),
    #[error("undecodable AMF0 in message type {type_id} on chunk stream {csid}: {source}")]
    Amf0 {
        type_id: u8,
        csid: u32,
        #[source]
        source: AmfError,
    },
    #[error("RTMP protocol error: {0}")]
    Protocol(String),
    #[error("RTMP session already failed")]
    Failed,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum ConnectState {
    Waiting,
    Requested { transaction_id: f64 },
    Accepted,
    Rejected,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StreamState {
    Idle,
    PublishRequested { stream_id: u32 },
    Publishing { stream_id: u32 },
    PlayRequested,
    Playing,
}

/// Server side of one RTMP connection (sans-IO).
///
/// Feed every received byte to [`handle_input`](Self::handle_input), then
/// drain [`poll_event`](Self::poll_event) and write
/// [`take_output`](Self::take_output) to the socket.
pub struct ServerSession {
    config: ServerConfig,
    handshake: Option<Box<Handshake>>,
    conn: Connection,
    events: VecDeque<ServerEvent>,
    connect: ConnectState,
    stream: StreamState,
    failed: bool,
    dropped_media: u64,
}

impl std::fmt::Debug for ServerSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSession")
            .field("handshake_done", &self.handshake.is_none())
            .field("connect", &self.connect)
            .field("stream", &self.stream)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl ServerSession {
    pub fn new(config: ServerConfig) -> Self {
        let conn = Connection::with_limits(config.limits);
        ServerSession {
            config,
            handshake: Some(Box::new(Handshake::new(PeerType::Server))),
            conn,
            events: VecDeque::new(),
            connect: ConnectState::Waiting,
            stream: StreamState::Idle,
            failed: false,
            dropped_media: 0,
        }
    }

    /// A session whose handshake was done elsewhere: the first byte given to
    /// [`handle_input`](Self::handle_input) is the first chunk byte. For
    /// fuzzing and tests (the handshake costs ~0.5 ms in debug builds).
    pub fn new_after_handshake(config: ServerConfig) -> Self {
        let mut session = Self::new(config);
        session.handshake = None;
        session
    }

    /// Bytes from the socket, from the first handshake byte on.
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
        self.conn.send_raw(&reply);
        if !chunks {
            return Ok(());
        }
        self.decode_until_decision()?;
        self.conn.maybe_ack();
        Ok(())
    }

    /// Whether a `connect`, `publish` or `play` waits for the application's
    /// accept or reject.
    fn awaiting_decision(&self) -> bool {
        matches!(self.connect, ConnectState::Requested { .. })
            || matches!(
                self.stream,
                StreamState::PublishRequested { .. } | StreamState::PlayRequested
            )
    }

    /// Decodes buffered messages until one needs a decision. What a client
    /// sent after it (clients that pipeline `connect`, `createStream` and
    /// `publish` without waiting for the answers, as nginx-rtmp allows) stays
    /// buffered until [`resume`](Self::resume).
    fn decode_until_decision(&mut self) -> Result<(), RtmpError> {
        while !self.awaiting_decision() {
            match self.conn.decoder.next_message()? {
                Some(msg) => self.on_message(msg)?,
                None => break,
            }
        }
        Ok(())
    }

    /// Continues with the buffered input after an `accept_*`/`reject_*`;
    /// returns whether that produced events.
    pub fn resume(&mut self) -> Result<bool, RtmpError> {
        if self.failed {
            return Err(RtmpError::Failed);
        }
        let before = self.events.len();
        let result = self.decode_until_decision();
        if result.is_err() {
            self.failed = true;
        }
        result?;
        Ok(self.events.len() > before)
    }

    /// The next event, in the order received.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// Everything to write to the socket, in order, as one buffer; `None` if
    /// nothing is pending. If shared messages were queued with
    /// [`queue_encoded`](Self::queue_encoded), use
    /// [`poll_output`](Self::poll_output) instead to avoid copying them.
    pub fn take_output(&mut self) -> Option<Bytes> {
        self.conn.take_output()
    }

    /// The next piece of output (our own messages, or one queued shared
    /// message), never copied. Call until `None`.
    pub fn poll_output(&mut self) -> Option<Bytes> {
        self.conn.poll_output()
    }

    /// Whether output is pending.
    pub fn has_output(&self) -> bool {
        self.conn.has_output()
    }

    /// Queues a message encoded by [`encode_media_message`] (shared by every
    /// player of a path) after the output written so far, without copying.
    /// Only valid after [`accept_connect`](Self::accept_connect), which sets
    /// our chunk size to [`PLAYER_CHUNK_SIZE`].
    pub fn queue_encoded(&mut self, message: Bytes) {
        self.conn.queue_encoded(message);
    }

    /// Encodes and queues one media message for this player only (for shared
    /// fan-out use [`encode_media_message`] once and
    /// [`queue_encoded`](Self::queue_encoded)).
    pub fn send_media(&mut self, kind: MediaKind, timestamp_ms: u32, payload: &[&[u8]]) {
        let message = encode_media_message(kind, timestamp_ms, payload);
        self.conn.queue_encoded(message);
    }

    /// Our current chunk size.
    pub fn out_chunk_size(&self) -> u32 {
        self.conn.out_chunk_size()
    }

    /// Whether the handshake is over.
    pub fn handshake_done(&self) -> bool {
        self.handshake.is_none()
    }

    /// Message stream id of the requested or accepted publish.
    pub fn publish_stream_id(&self) -> Option<u32> {
        match self.stream {
            StreamState::PublishRequested { stream_id } | StreamState::Publishing { stream_id } => {
                Some(stream_id)
            }
            _ => None,
        }
    }

    /// Whether a publish was accepted and not finished.
    pub fn is_publishing(&self) -> bool {
        matches!(self.stream, StreamState::Publishing { .. })
    }

    /// Whether a play was accepted and not finished.
    pub fn is_playing(&self) -> bool {
        self.stream == StreamState::Playing
    }

    /// Accepts the pending `connect`: Window Acknowledgement Size, Set Peer
    /// Bandwidth, Set Chunk Size ([`PLAYER_CHUNK_SIZE`]) and the `_result`
    /// with `NetConnection.Connect.Success` (RTMP 1.0 §7.2.1.1).
    pub fn accept_connect(&mut self) {
        let ConnectState::Requested { transaction_id } = self.connect else {
            tracing::debug!(state = ?self.connect, "accept_connect without a pending connect");
            return;
        };
        self.connect = ConnectState::Accepted;
        self.conn
            .send_control(ControlMessage::WindowAckSize(self.config.window_ack_size));
        self.conn.send_control(ControlMessage::SetPeerBandwidth {
            size: self.config.peer_bandwidth,
            limit: LimitType::Dynamic,
        });
        self.conn
            .send_control(ControlMessage::SetChunkSize(PLAYER_CHUNK_SIZE));
        let payload = Writer::command("_result", transaction_id)
            .object(&[
                ("fmsVer", Amf0Value::Utf8String("FMS/3,0,1,123".into())),
                ("capabilities", Amf0Value::Number(31.0)),
            ])
            .object(&[
                ("level", Amf0Value::Utf8String("status".into())),
                (
                    "code",
                    Amf0Value::Utf8String("NetConnection.Connect.Success".into()),
                ),
                (
                    "description",
                    Amf0Value::Utf8String("Connection succeeded.".into()),
                ),
                ("objectEncoding", Amf0Value::Number(0.0)),
            ])
            .finish();
        self.conn.send_command(0, &payload);
    }

    /// Rejects the pending `connect` with `_error`
    /// `NetConnection.Connect.Rejected`.
    pub fn reject_connect(&mut self, description: &str) {
        let ConnectState::Requested { transaction_id } = self.connect else {
            tracing::debug!(state = ?self.connect, "reject_connect without a pending connect");
            return;
        };
        self.connect = ConnectState::Rejected;
        let payload = Writer::command("_error", transaction_id)
            .null()
            .object(&[
                ("level", Amf0Value::Utf8String("error".into())),
                (
                    "code",
                    Amf0Value::Utf8String("NetConnection.Connect.Rejected".into()),
                ),
                ("description", Amf0Value::Utf8String(description.into())),
            ])
            .finish();
        self.conn.send_command(0, &payload);
    }

    /// Accepts the pending `publish`: Stream Begin and onStatus
    /// `NetStream.Publish.Start` (RTMP 1.0 §7.3.1).
    pub fn accept_publish(&mut self) {
        let StreamState::PublishRequested { stream_id } = self.stream else {
            tracing::debug!(state = ?self.stream, "accept_publish without a pending publish");
            return;
        };
        self.stream = StreamState::Publishing { stream_id };
        self.conn
            .send_control(ControlMessage::UserControl(UserControlEvent::StreamBegin(
                stream_id,
            )));
        let status = on_status("status", "NetStream.Publish.Start", "Start publishing");
        self.conn.send_command(stream_id, &status);
    }

    /// Rejects the pending `publish` with an onStatus of level `error` and
    /// this `code` (e.g. `NetStream.Publish.BadName`).
    pub fn reject_publish(&mut self, code: &str, description: &str) {
        let StreamState::PublishRequested { stream_id } = self.stream else {
            tracing::debug!(state = ?self.stream, "reject_publish without a pending publish");
            return;
        };
        self.stream = StreamState::Idle;
        self.conn
            .send_command(stream_id, &on_status("error", code, description));
    }

    /// Accepts the pending `play`: Stream Begin(1), onStatus
    /// `NetStream.Play.Reset` and `NetStream.Play.Start` (RTMP 1.0 §7.3.2).
    /// No `|RtmpSampleAccess` or data-message onStatus (ffprobe shows those
    /// as extra streams).
    pub fn accept_play(&mut self) {
        if self.stream != StreamState::PlayRequested {
            tracing::debug!(state = ?self.stream, "accept_play without a pending play");
            return;
        }
        self.stream = StreamState::Playing;
        self.conn
            .send_control(ControlMessage::UserControl(UserControlEvent::StreamBegin(
                PLAY_STREAM_ID,
            )));
        self.conn.send_command(
            PLAY_STREAM_ID,
            &on_status(
                "status",
                "NetStream.Play.Reset",
                "Playing and resetting stream.",
            ),
        );
        self.conn.send_command(
            PLAY_STREAM_ID,
            &on_status("status", "NetStream.Play.Start", "Started playing stream."),
        );
    }

    /// Rejects the pending `play` with an onStatus of level `error` (e.g.
    /// `NetStream.Play.StreamNotFound`).
    pub fn reject_play(&mut self, code: &str, description: &str) {
        if self.stream != StreamState::PlayRequested {
            tracing::debug!(state = ?self.stream, "reject_play without a pending play");
            return;
        }
        self.stream = StreamState::Idle;
        self.conn
            .send_command(PLAY_STREAM_ID, &on_status("error", code, description));
    }

    /// Sends `onMetaData` (data message, type 18) on [`DATA_CSID`] and
    /// [`PLAY_STREAM_ID`] to this player; no `@setDataFrame` prefix.
    pub fn send_play_metadata(&mut self, properties: &[(&str, Amf0Value)]) {
        let payload = Writer::default()
            .string("onMetaData")
            .ecma_array(properties)
            .finish();
        self.conn.send_message(
            DATA_CSID,
            0,
            msg_type::DATA_AMF0,
            PLAY_STREAM_ID,
            &[&payload],
        );
    }

    /// Tells a player the publisher is gone: Stream EOF (RTMP 1.0 §7.1.7)
    /// and onStatus `NetStream.Play.UnpublishNotify`.
    pub fn notify_unpublished(&mut self) {
        self.conn
            .send_control(ControlMessage::UserControl(UserControlEvent::StreamEof(
                PLAY_STREAM_ID,
            )));
        self.conn.send_command(
            PLAY_STREAM_ID,
            &on_status(
                "status",
                "NetStream.Play.UnpublishNotify",
                "The stream is no longer published.",
            ),
        );
    }

    fn on_message(&mut self, msg: RawMessage) -> Result<(), RtmpError> {
        match msg.type_id {
            msg_type::SET_CHUNK_SIZE..=msg_type::SET_PEER_BANDWIDTH => {
                if let Some(event) = self.conn.on_control(&msg) {
                    tracing::trace!(?event, "user control");
                }
                Ok(())
            }
            msg_type::AUDIO => {
                self.on_media(MediaKind::Audio, msg.timestamp, msg.payload);
                Ok(())
            }
            msg_type::VIDEO => {
                self.on_media(MediaKind::Video, msg.timestamp, msg.payload);
                Ok(())
            }
            msg_type::DATA_AMF0 => {
                self.on_data(&msg.payload);
                Ok(())
            }
            msg_type::DATA_AMF3 => {
                // AMF3 data/command messages start with a format byte, then
                // AMF0 (what Flash sends with objectEncoding 3).
                self.on_data(msg.payload.get(1..).unwrap_or_default());
                Ok(())
            }
            msg_type::COMMAND_AMF0 => self.on_command(&msg, &msg.payload),
            msg_type::COMMAND_AMF3 => {
                self.on_command(&msg, msg.payload.get(1..).unwrap_or_default())
            }
            msg_type::AGGREGATE => {
                self.on_aggregate(&msg);
                Ok(())
            }
            other => {
                tracing::debug!(type_id = other, "ignoring message type");
                Ok(())
            }
        }
    }

    fn on_media(&mut self, kind: MediaKind, timestamp: u32, payload: Bytes) {
        if !self.is_publishing() || payload.is_empty() {
            if self.dropped_media == 0 {
                tracing::debug!(
                    ?kind,
                    len = payload.len(),
                    "dropping media (empty, or no publish accepted)"
                );
            }
            self.dropped_media = self.dropped_media.saturating_add(1);
            return;
        }
        self.events.push_back(match kind {
            MediaKind::Audio => ServerEvent::Audio { timestamp, payload },
            _ => ServerEvent::Video { timestamp, payload },
        });
    }

    /// Data messages (RTMP 1.0 §7.1.2): only metadata matters.
    fn on_data(&mut self, payload: &[u8]) {
        match parse_metadata(payload) {
            Ok(Some(properties)) => {
                if self.is_publishing() {
                    self.events.push_back(ServerEvent::Metadata { properties });
                } else {
                    tracing::debug!("dropping metadata: no publish accepted");
                }
            }
            Ok(None) => tracing::debug!("ignoring data message"),
            Err(error) => tracing::debug!(%error, "ignoring undecodable data message"),
        }
    }

    /// Aggregate message (RTMP 1.0 §7.1.6): split into its sub-messages.
    fn on_aggregate(&mut self, msg: &RawMessage) {
        for part in split_aggregate(msg) {
            match part.type_id {
                msg_type::AUDIO => self.on_media(MediaKind::Audio, part.timestamp, part.payload),
                msg_type::VIDEO => self.on_media(MediaKind::Video, part.timestamp, part.payload),
                msg_type::DATA_AMF0 => self.on_data(&part.payload),
                other => tracing::debug!(type_id = other, "ignoring aggregate sub-message"),
            }
        }
    }

    fn on_command(&mut self, msg: &RawMessage, payload: &[u8]) -> Result<(), RtmpError> {
        let command = match Command::parse(payload) {
            Ok(Some(command)) => command,
            Ok(None) => {
                tracing::debug!("ignoring command without a name");
                return Ok(());
            }
            Err(source) => {
                return Err(RtmpError::Amf0 {
                    type_id: msg.type_id,
                    csid: msg.csid,
                    source,
                });
            }
        };
        tracing::debug!(name = %command.name, stream_id = msg.stream_id, "command");
        match command.name.as_str() {
            "connect" => self.on_connect(&command),
            "createStream" => self.on_create_stream(&command),
            "publish" => self.on_publish(msg.stream_id, &command),
            "play" => self.on_play(&command),
            "FCUnpublish" => {
                self.finish_publish(msg.stream_id);
                Ok(())
            }
            "deleteStream" | "closeStream" => {
                if self.publish_stream_id().is_some() {
                    self.finish_publish(msg.stream_id);
                } else if matches!(
                    self.stream,
                    StreamState::PlayRequested | StreamState::Playing
                ) {
                    self.stream = StreamState::Idle;
                    self.events.push_back(ServerEvent::PlayFinished);
                }
                Ok(())
            }
            // releaseStream, FCPublish, _checkbw, getStreamLength,
            // receiveAudio, receiveVideo, pause, _result, onStatus, ...
            _ => Ok(()),
        }
    }

    fn on_connect(&mut self, command: &Command) -> Result<(), RtmpError> {
        if self.connect != ConnectState::Waiting {
            return Err(RtmpError::Protocol(format!(
                "second connect (state {:?})",
                self.connect
            )));
        }
        let app = command.object_str("app").unwrap_or_default().to_owned();
        let tc_url = command.object_str("tcUrl").map(str::to_owned);
        self.connect = ConnectState::Requested {
            transaction_id: command.transaction_id,
        };
        self.events
            .push_back(ServerEvent::ConnectRequested { app, tc_url });
        Ok(())
    }

    fn require_connected(&self, what: &str) -> Result<(), RtmpError> {
        if self.connect == ConnectState::Accepted {
            Ok(())
        } else {
            Err(RtmpError::Protocol(format!(
                "{what} before connect was accepted (state {:?})",
                self.connect
            )))
        }
    }

    /// `createStream` (RTMP 1.0 §7.2.1.3): always stream 1.
    fn on_create_stream(&mut self, command: &Command) -> Result<(), RtmpError> {
        self.require_connected("createStream")?;
        let payload = Writer::command("_result", command.transaction_id)
            .null()
            .number(f64::from(PLAY_STREAM_ID))
            .finish();
        self.conn.send_command(0, &payload);
        Ok(())
    }

    /// `publish(null, name, type)` (RTMP 1.0 §7.2.2.6).
    fn on_publish(&mut self, stream_id: u32, command: &Command) -> Result<(), RtmpError> {
        self.require_connected("publish")?;
        if self.stream != StreamState::Idle {
            return Err(RtmpError::Protocol(format!(
                "publish while the connection is busy ({:?})",
                self.stream
            )));
        }
        let Some(stream_key) = command.arg_str(0) else {
            self.conn.send_command(
                stream_id,
                &on_status(
                    "error",
                    "NetStream.Publish.BadName",
                    "publish without a stream name",
                ),
            );
            return Ok(());
        };
        let mode = command.arg_str(1).unwrap_or("live").to_owned();
        self.stream = StreamState::PublishRequested { stream_id };
        self.events.push_back(ServerEvent::PublishRequested {
            stream_key: stream_key.to_owned(),
            mode,
        });
        Ok(())
    }

    /// `play(null, name, start, duration, reset)` (RTMP 1.0 §7.2.2.1).
    fn on_play(&mut self, command: &Command) -> Result<(), RtmpError> {
        self.require_connected("play")?;
        if self.stream != StreamState::Idle {
            return Err(RtmpError::Protocol(format!(
                "play while the connection is busy ({:?})",
                self.stream
            )));
        }
        let Some(stream_key) = command.arg_str(0) else {
            self.conn.send_command(
                PLAY_STREAM_ID,
                &on_status(
                    "error",
                    "NetStream.Play.StreamNotFound",
                    "play without a stream name",
                ),
            );
            return Ok(());
        };
        self.stream = StreamState::PlayRequested;
        self.events.push_back(ServerEvent::PlayRequested {
            stream_key: stream_key.to_owned(),
        });
        Ok(())
    }

    /// `FCUnpublish`, or `deleteStream`/`closeStream` while publishing: one
    /// [`ServerEvent::PublishFinished`] and, if the publish had been
    /// accepted, onStatus `NetStream.Unpublish.Success` (as nginx-rtmp).
    fn finish_publish(&mut self, msg_stream_id: u32) {
        let was = self.stream;
        let stream_id = match was {
            StreamState::PublishRequested { stream_id } | StreamState::Publishing { stream_id } => {
                stream_id
            }
            _ => {
                tracing::debug!(msg_stream_id, "unpublish without a publish");
                return;
            }
        };
        self.stream = StreamState::Idle;
        if matches!(was, StreamState::Publishing { .. }) {
            self.conn.send_command(
                stream_id,
                &on_status("status", "NetStream.Unpublish.Success", "Stop publishing"),
            );
        }
        self.events.push_back(ServerEvent::PublishFinished);
    }
}

/// Properties of `@setDataFrame onMetaData {..}` or `onMetaData {..}`;
/// `Ok(None)` for other data messages and for metadata without properties
/// (rml_rtmp panicked on a lone `@setDataFrame`).
pub fn parse_metadata(payload: &[u8]) -> Result<Option<Vec<(String, Amf0Value)>>, AmfError> {
    let mut reader = Reader::new(payload);
    let mut name = reader.read_value()?;
    if matches!(&name, Some(Amf0Value::Utf8String(s)) if s == "@setDataFrame") {
        name = reader.read_value()?;
    }
    match name {
        Some(Amf0Value::Utf8String(s)) if s == "onMetaData" => reader.read_properties(),
        _ => Ok(None),
    }
}
