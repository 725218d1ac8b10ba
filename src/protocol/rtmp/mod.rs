//! RTMP as a sans-IO state machine of our own: chunk stream, protocol control,
//! commands. Bytes in, events and bytes out; no sockets, no clocks.
//!
//! References: Adobe "Real-Time Messaging Protocol (RTMP) Specification" 1.0
//! (cited as "RTMP 1.0 §x"), the Adobe AMF0 specification, and the Enhanced
//! RTMP specification (veovera, v1/v2) for what travels in audio/video
//! messages (we pass those bodies through untouched).
//!
//! Layers, bottom up:
//! - [`chunk`]: the chunk stream (RTMP 1.0 §5.3): [`chunk::ChunkDecoder`]
//!   reassembles messages per chunk stream id (interleaving is allowed),
//!   [`chunk::encode_message`] writes them.
//! - [`control`]: protocol control messages (RTMP 1.0 §5.4) and user control
//!   events (RTMP 1.0 §6.2, §7.1.7).
//! - [`amf`]: AMF0 values with a depth- and size-bounded decoder.
//! - [`command`]: command messages (RTMP 1.0 §7.1.1, §7.2) as name,
//!   transaction id, command object and arguments.
//! - [`server`] and [`client`]: one connection each, handshake included
//!   (the handshake itself is `rml_rtmp::handshake`, the only part of rml_rtmp
//!   we use).
//!
//! Media to players is serialised once per message with
//! [`encode_media_message`] and the same [`Bytes`] is written to every player:
//! this works because every player gets the same chunk size
//! ([`PLAYER_CHUNK_SIZE`]), message stream id ([`PLAY_STREAM_ID`]) and chunk
//! stream ids ([`AUDIO_CSID`], [`VIDEO_CSID`], [`DATA_CSID`]), and because
//! each such message starts with a type-0 chunk header, which depends on no
//! earlier message.
//!
//! Nothing here panics on peer input: the files deny `unwrap`, `expect`,
//! indexing, `panic!` and unchecked arithmetic outside tests, and a seeded
//! mutation test feeds thousands of damaged real streams to the server.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic,
        clippy::arithmetic_side_effects
    )
)]

pub mod amf;
pub mod chunk;
pub mod client;
pub mod command;
mod conn;
pub mod control;
pub mod server;

#[cfg(test)]
mod tests;

use bytes::{Bytes, BytesMut};

pub use client::{ClientEvent, ClientSession};
pub use rml_amf0::Amf0Value;
pub use server::{RtmpError, ServerConfig, ServerEvent, ServerSession};

/// Message type ids (RTMP 1.0 §5.4 protocol control, §6.2 user control,
/// §7.1 RTMP messages).
pub mod msg_type {
    /// Set Chunk Size (RTMP 1.0 §5.4.1).
    pub const SET_CHUNK_SIZE: u8 = 1;
    /// Abort Message (RTMP 1.0 §5.4.2).
    pub const ABORT: u8 = 2;
    /// Acknowledgement (RTMP 1.0 §5.4.3).
    pub const ACK: u8 = 3;
    /// User Control Message (RTMP 1.0 §6.2, §7.1.7).
    pub const USER_CONTROL: u8 = 4;
    /// Window Acknowledgement Size (RTMP 1.0 §5.4.4).
    pub const WINDOW_ACK_SIZE: u8 = 5;
    /// Set Peer Bandwidth (RTMP 1.0 §5.4.5).
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    /// Audio message (RTMP 1.0 §7.1.5): an FLV audio tag body.
    pub const AUDIO: u8 = 8;
    /// Video message (RTMP 1.0 §7.1.5): an FLV video tag body.
    pub const VIDEO: u8 = 9;
    /// Data message, AMF3 (RTMP 1.0 §7.1.2).
    pub const DATA_AMF3: u8 = 15;
    /// Shared object message, AMF3 (RTMP 1.0 §7.1.3).
    pub const SHARED_OBJECT_AMF3: u8 = 16;
    /// Command message, AMF3 (RTMP 1.0 §7.1.1).
    pub const COMMAND_AMF3: u8 = 17;
    /// Data message, AMF0 (RTMP 1.0 §7.1.2).
    pub const DATA_AMF0: u8 = 18;
    /// Shared object message, AMF0 (RTMP 1.0 §7.1.3).
    pub const SHARED_OBJECT_AMF0: u8 = 19;
    /// Command message, AMF0 (RTMP 1.0 §7.1.1).
    pub const COMMAND_AMF0: u8 = 20;
    /// Aggregate message (RTMP 1.0 §7.1.6).
    pub const AGGREGATE: u8 = 22;
}

/// Chunk size of everything we send after `connect` is accepted, to every
/// client: we send Set Chunk Size (RTMP 1.0 §5.4.1) with this value right
/// before the connect `_result`, so one serialisation of a media message
/// serves every player.
pub const PLAYER_CHUNK_SIZE: u32 = 4096;
/// `createStream` always answers 1, and media to players goes on message
/// stream 1.
pub const PLAY_STREAM_ID: u32 = 1;
/// Chunk stream id of audio messages to players.
pub const AUDIO_CSID: u32 = 4;
/// Chunk stream id of data messages (onMetaData) to players.
pub const DATA_CSID: u32 = 5;
/// Chunk stream id of video messages to players.
pub const VIDEO_CSID: u32 = 6;

/// Which media message [`encode_media_message`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaKind {
    Audio,
    Video,
    Data,
}

impl MediaKind {
    /// Message type id (RTMP 1.0 §7.1.2, §7.1.5).
    pub fn type_id(self) -> u8 {
        match self {
            MediaKind::Audio => msg_type::AUDIO,
            MediaKind::Video => msg_type::VIDEO,
            MediaKind::Data => msg_type::DATA_AMF0,
        }
    }

    /// The fixed chunk stream id this kind uses towards players.
    pub fn csid(self) -> u32 {
        match self {
            MediaKind::Audio => AUDIO_CSID,
            MediaKind::Video => VIDEO_CSID,
            MediaKind::Data => DATA_CSID,
        }
    }
}

/// Serialises one media message for ALL players of a path.
///
/// `payload` is the FLV tag body in pieces (for example a 5-byte video tag
/// header and then the NAL units); it is copied exactly once, into the
/// returned buffer. The message starts with a type-0 chunk (RTMP 1.0
/// §5.3.1.2.1), so a player can join between any two messages; it uses
/// [`PLAYER_CHUNK_SIZE`], message stream [`PLAY_STREAM_ID`] and the fixed
/// chunk stream id of its kind. A timestamp `>= 0xFFFFFF` goes into the
/// extended timestamp field, repeated on every type-3 continuation chunk
/// (RTMP 1.0 §5.3.1.3). A payload longer than the 24-bit message length field
/// allows (16 MiB - 1) is cut there.
pub fn encode_media_message(kind: MediaKind, timestamp_ms: u32, payload: &[&[u8]]) -> Bytes {
    let len = payload
        .iter()
        .fold(0usize, |acc, p| acc.saturating_add(p.len()));
    let mut out = BytesMut::with_capacity(chunk::encoded_len(
        kind.csid(),
        timestamp_ms,
        len,
        PLAYER_CHUNK_SIZE,
    ));
    chunk::encode_message(
        &mut out,
        kind.csid(),
        timestamp_ms,
        kind.type_id(),
        PLAY_STREAM_ID,
        payload,
        PLAYER_CHUNK_SIZE,
    );
    out.freeze()
}
