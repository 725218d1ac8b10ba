//! The RTMP chunk stream (RTMP 1.0 §5.3): messages cut into chunks, chunks of
//! different chunk streams interleaved on one connection.
//!
//! [`ChunkDecoder`] keeps, per chunk stream id, the last message header (for
//! the compressed header types 1, 2 and 3 of §5.3.1.2) and the partial payload
//! of the message in progress, so interleaved chunk streams reassemble
//! correctly. It is bounded: at most [`ChunkLimits::max_chunk_streams`] chunk
//! streams with state and [`ChunkLimits::max_partial_bytes`] of partial
//! payloads in all. It applies Set Chunk Size and Abort (§5.4.1, §5.4.2) as
//! soon as it decodes them, because they change how the next chunks parse.
//!
//! [`encode_message`] writes a message as one type-0 chunk followed by type-3
//! continuation chunks: every message we send stands on its own, which is
//! what lets one serialisation serve many players.

use std::collections::HashMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::msg_type;

/// Chunk size at the start of every connection (RTMP 1.0 §5.4.1).
pub const DEFAULT_CHUNK_SIZE: u32 = 128;
/// Chunk sizes above this are treated as this: no message is longer than
/// [`MAX_MESSAGE_LENGTH`], so a larger chunk size changes nothing.
pub const MAX_EFFECTIVE_CHUNK_SIZE: u32 = 16 * 1024 * 1024;
/// Largest message the 3-byte length field can carry (RTMP 1.0 §5.3.1.2.1).
pub const MAX_MESSAGE_LENGTH: u32 = 0x00FF_FFFF;
/// Smallest chunk stream id a message can use (0 and 1 select the 2- and
/// 3-byte basic header forms, RTMP 1.0 §5.3.1.1).
pub const MIN_CSID: u32 = 2;
/// Largest chunk stream id (3-byte basic header form, RTMP 1.0 §5.3.1.1).
pub const MAX_CSID: u32 = 65_599;
/// Value of the 3-byte timestamp field that says "see the extended timestamp"
/// (RTMP 1.0 §5.3.1.3).
const EXTENDED_MARK: u32 = 0x00FF_FFFF;

/// One complete RTMP message (RTMP 1.0 §6.1), as reassembled from its chunks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawMessage {
    /// Chunk stream id it arrived on.
    pub csid: u32,
    /// Absolute timestamp in milliseconds, after applying header deltas
    /// (wraps at 2^32).
    pub timestamp: u32,
    /// Message type id, see [`super::msg_type`].
    pub type_id: u8,
    /// Message stream id.
    pub stream_id: u32,
    /// Message payload: a slice of the received buffer for a single-chunk
    /// message, one assembled buffer otherwise.
    pub payload: Bytes,
}

/// Resource limits of a [`ChunkDecoder`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkLimits {
    /// Sum of the declared lengths of all messages in progress (their buffers
    /// are allocated at full length when their first chunk arrives).
    pub max_partial_bytes: usize,
    /// Number of chunk stream ids with state.
    pub max_chunk_streams: usize,
    /// Declared length of one message (an FLV tag body: one video frame is
    /// the largest); `limits.max_frame_bytes` plus room for the tag header.
    pub max_message_bytes: usize,
}

impl ChunkLimits {
    /// Limits for messages of at most `max_message_bytes`: incomplete
    /// messages may total four of them (audio, video, data and a command
    /// interleaved on their chunk streams).
    pub fn for_message_size(max_message_bytes: usize) -> ChunkLimits {
        ChunkLimits {
            max_partial_bytes: max_message_bytes.saturating_mul(4),
            max_message_bytes,
            ..ChunkLimits::default()
        }
    }
}

impl Default for ChunkLimits {
    fn default() -> Self {
        ChunkLimits {
            max_partial_bytes: 32 * 1024 * 1024,
            max_chunk_streams: 64,
            // The length field has 24 bits: no bound beyond the format's.
            max_message_bytes: 0xFF_FFFF,
        }
    }
}

/// Why the chunk stream cannot be decoded. `offset` is the position in the
/// chunk stream (bytes after the handshake) where the offending chunk starts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error(
        "chunk of type {fmt} on chunk stream {csid} at byte {offset} has no previous header to refer to"
    )]
    NoPreviousHeader { csid: u32, fmt: u8, offset: u64 },
    #[error(
        "chunk of type {fmt} on chunk stream {csid} at byte {offset} starts a new message while the message of {length} bytes begun at byte {message_offset} is incomplete ({missing} missing)"
    )]
    HeaderInsideMessage {
        csid: u32,
        fmt: u8,
        length: u32,
        missing: u32,
        offset: u64,
        message_offset: u64,
    },
    #[error("more than {limit} chunk streams in use (new chunk stream {csid} at byte {offset})")]
    TooManyChunkStreams {
        csid: u32,
        limit: usize,
        offset: u64,
    },
    #[error(
        "message of {length} bytes on chunk stream {csid} at byte {offset} would raise incomplete messages to {total} bytes (limit {limit})"
    )]
    PartialTooLarge {
        csid: u32,
        length: u32,
        total: usize,
        limit: usize,
        offset: u64,
    },
    #[error(
        "message of {length} bytes on chunk stream {csid} at byte {offset} is over the limit of {limit} (limits.max_frame_bytes)"
    )]
    MessageTooLarge {
        csid: u32,
        length: u32,
        limit: usize,
        offset: u64,
    },
    #[error("invalid chunk size {size} on chunk stream {csid} at byte {offset}")]
    InvalidChunkSize { size: u32, csid: u32, offset: u64 },
    #[error(
        "control message type {type_id} on chunk stream {csid} at byte {offset} has {length} bytes, needs 4"
    )]
    ShortControlMessage {
        type_id: u8,
        csid: u32,
        length: usize,
        offset: u64,
    },
    #[error("chunk stream already failed")]
    Failed,
}

/// Header state of one chunk stream id (RTMP 1.0 §5.3.1.2).
#[derive(Debug, Default)]
struct ChunkStream {
    /// Absolute timestamp of the last message started on this chunk stream.
    timestamp: u32,
    /// Timestamp delta reused by a type-3 chunk that starts a new message.
    /// A type-0 header stores its absolute timestamp here, as ffmpeg, SRS and
    /// FMLE do (RTMP 1.0 leaves type 3 after type 0 unspecified).
    delta: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// Whether the last type 0/1/2 header used the extended timestamp field.
    extended: bool,
    /// Value of the extended timestamp field of the chunk that started the
    /// current message: continuation chunks may repeat it.
    extended_value: u32,
    /// The message in progress, if its first chunk did not hold all of it.
    partial: Option<Partial>,
}

#[derive(Debug)]
struct Partial {
    buf: BytesMut,
    /// Payload bytes still to come.
    missing: u32,
    /// Chunk-stream offset of the message's first chunk.
    offset: u64,
}

/// A chunk header as read, before it is applied.
struct Header {
    fmt: u8,
    csid: u32,
    /// Basic + message header + extended timestamp.
    len: usize,
    /// Timestamp or delta field value (extended value if present).
    time: u32,
    extended: bool,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// Whether this chunk continues the message in progress.
    continuation: bool,
    /// Payload bytes this chunk carries.
    payload_len: u32,
}

enum Step {
    NeedMore,
    Chunk,
    Message(RawMessage),
}

/// Reassembles RTMP messages from a received byte stream (RTMP 1.0 §5.3).
///
/// Feed bytes with [`push`](Self::push) and take messages with
/// [`next_message`](Self::next_message) until it returns `Ok(None)`. Memory:
/// the undecoded input (at most one chunk plus what was pushed since) plus
/// incomplete messages (bounded by [`ChunkLimits`]). After an error the
/// decoder stays failed.
#[derive(Debug)]
pub struct ChunkDecoder {
    buf: BytesMut,
    chunk_size: u32,
    streams: HashMap<u32, ChunkStream>,
    partial_bytes: usize,
    limits: ChunkLimits,
    received: u64,
    consumed: u64,
    failed: bool,
}

impl Default for ChunkDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkDecoder {
    pub fn new() -> Self {
        Self::with_limits(ChunkLimits::default())
    }

    pub fn with_limits(limits: ChunkLimits) -> Self {
        ChunkDecoder {
            buf: BytesMut::new(),
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: HashMap::new(),
            partial_bytes: 0,
            limits,
            received: 0,
            consumed: 0,
            failed: false,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        self.received = self.received.wrapping_add(data.len() as u64);
    }

    /// Total bytes pushed so far.
    pub fn bytes_received(&self) -> u64 {
        self.received
    }

    /// Bytes pushed but not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The peer's current chunk size (after clamping to
    /// [`MAX_EFFECTIVE_CHUNK_SIZE`]).
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Decodes the next complete message, or `Ok(None)` if more bytes are
    /// needed. Set Chunk Size and Abort are applied here and still returned.
    pub fn next_message(&mut self) -> Result<Option<RawMessage>, ChunkError> {
        if self.failed {
            return Err(ChunkError::Failed);
        }
        let result = self.next_message_inner();
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    fn next_message_inner(&mut self) -> Result<Option<RawMessage>, ChunkError> {
        loop {
            match self.step()? {
                Step::NeedMore => return Ok(None),
                Step::Chunk => continue,
                Step::Message(msg) => {
                    self.apply_control(&msg)?;
                    return Ok(Some(msg));
                }
            }
        }
    }

    /// Set Chunk Size (RTMP 1.0 §5.4.1) and Abort (§5.4.2) act on the chunk
    /// layer itself.
    fn apply_control(&mut self, msg: &RawMessage) -> Result<(), ChunkError> {
        if msg.type_id != msg_type::SET_CHUNK_SIZE && msg.type_id != msg_type::ABORT {
            return Ok(());
        }
        let Some(value) = read_u32(&msg.payload) else {
            return Err(ChunkError::ShortControlMessage {
                type_id: msg.type_id,
                csid: msg.csid,
                length: msg.payload.len(),
                offset: self.consumed,
            });
        };
        if msg.type_id == msg_type::SET_CHUNK_SIZE {
            // "The maximum chunk size is 65536 bytes" in §5.4.1 is not what
            // peers do; the top bit must be 0 and the size at least 1.
            if value == 0 || value & 0x8000_0000 != 0 {
                return Err(ChunkError::InvalidChunkSize {
                    size: value,
                    csid: msg.csid,
                    offset: self.consumed,
                });
            }
            self.chunk_size = value.min(MAX_EFFECTIVE_CHUNK_SIZE);
        } else if let Some(stream) = self.streams.get_mut(&value)
            && let Some(partial) = stream.partial.take()
        {
            self.partial_bytes = self.partial_bytes.saturating_sub(partial.buf.capacity());
        }
        Ok(())
    }

    /// Reads one chunk if it is complete in the buffer.
    fn step(&mut self) -> Result<Step, ChunkError> {
        let Some(header) = self.peek_header()? else {
            return Ok(Step::NeedMore);
        };
        let offset = self.consumed;
        let n = header.payload_len;
        let Some(total) = header.len.checked_add(n as usize) else {
            return Ok(Step::NeedMore);
        };
        if self.buf.len() < total {
            return Ok(Step::NeedMore);
        }
        let is_new_stream = !self.streams.contains_key(&header.csid);
        if is_new_stream && self.streams.len() >= self.limits.max_chunk_streams {
            return Err(ChunkError::TooManyChunkStreams {
                csid: header.csid,
                limit: self.limits.max_chunk_streams,
                offset,
            });
        }
        if !header.continuation && header.length as usize > self.limits.max_message_bytes {
            return Err(ChunkError::MessageTooLarge {
                csid: header.csid,
                length: header.length,
                limit: self.limits.max_message_bytes,
                offset,
            });
        }
        let multi_chunk = header.continuation || n < header.length;
        if multi_chunk && !header.continuation {
            let want = self.partial_bytes.saturating_add(header.length as usize);
            if want > self.limits.max_partial_bytes {
                return Err(ChunkError::PartialTooLarge {
                    csid: header.csid,
                    length: header.length,
                    total: want,
                    limit: self.limits.max_partial_bytes,
                    offset,
                });
            }
        }
        let stream = self.streams.entry(header.csid).or_default();

        if let Some(partial) = stream.partial.as_mut() {
            // Continuation chunk (type 3 only, checked in peek_header).
            self.buf.advance(header.len);
            partial
                .buf
                .extend_from_slice(&self.buf.split_to(n as usize));
            partial.missing = partial.missing.saturating_sub(n);
            self.consumed = self.consumed.wrapping_add(total as u64);
            if partial.missing > 0 {
                return Ok(Step::Chunk);
            }
            let Some(done) = stream.partial.take() else {
                return Ok(Step::Chunk);
            };
            self.partial_bytes = self.partial_bytes.saturating_sub(done.buf.capacity());
            return Ok(Step::Message(RawMessage {
                csid: header.csid,
                timestamp: stream.timestamp,
                type_id: stream.type_id,
                stream_id: stream.stream_id,
                payload: done.buf.freeze(),
            }));
        }

        // First chunk of a new message: apply its header (RTMP 1.0
        // §5.3.1.2.1 - §5.3.1.2.4). Types 1, 2 and 3 add a delta (type 3
        // repeats the previous one, read in peek_header).
        stream.delta = header.time;
        if header.fmt == 0 {
            stream.timestamp = header.time;
        } else {
            stream.timestamp = stream.timestamp.wrapping_add(header.time);
        }
        if header.fmt < 3 {
            stream.extended = header.extended;
        }
        stream.extended_value = header.time;
        stream.length = header.length;
        stream.type_id = header.type_id;
        stream.stream_id = header.stream_id;

        self.buf.advance(header.len);
        self.consumed = self.consumed.wrapping_add(total as u64);
        if !multi_chunk {
            // Zero copy: the payload is a slice of the receive buffer.
            let payload = self.buf.split_to(n as usize).freeze();
            return Ok(Step::Message(RawMessage {
                csid: header.csid,
                timestamp: stream.timestamp,
                type_id: stream.type_id,
                stream_id: stream.stream_id,
                payload,
            }));
        }
        let mut buf = BytesMut::with_capacity(header.length as usize);
        buf.extend_from_slice(&self.buf.split_to(n as usize));
        self.partial_bytes = self.partial_bytes.saturating_add(buf.capacity());
        stream.partial = Some(Partial {
            buf,
            missing: header.length.saturating_sub(n),
            offset,
        });
        Ok(Step::Chunk)
    }

    /// Parses the chunk header at the front of the buffer without consuming
    /// it (RTMP 1.0 §5.3.1). `Ok(None)`: not all of it has arrived.
    fn peek_header(&self) -> Result<Option<Header>, ChunkError> {
        let data: &[u8] = &self.buf;
        let offset = self.consumed;
        let Some(&b0) = data.first() else {
            return Ok(None);
        };
        let fmt = b0 >> 6;
        // Basic header (RTMP 1.0 §5.3.1.1).
        let (csid, mut pos) = match b0 & 0x3F {
            0 => match data.get(1) {
                Some(&b1) => (u32::from(b1).saturating_add(64), 2usize),
                None => return Ok(None),
            },
            1 => match (data.get(1), data.get(2)) {
                (Some(&b1), Some(&b2)) => {
                    // 64 + b1 + 256 * b2 <= 65599: no overflow.
                    let id = u32::from(b1) | (u32::from(b2) << 8);
                    (id.saturating_add(64), 3usize)
                }
                _ => return Ok(None),
            },
            id => (u32::from(id), 1usize),
        };
        let prev = self.streams.get(&csid);
        let in_progress = prev.and_then(|s| s.partial.as_ref());

        if fmt < 3
            && let (Some(stream), Some(partial)) = (prev, in_progress)
        {
            return Err(ChunkError::HeaderInsideMessage {
                csid,
                fmt,
                length: stream.length,
                missing: partial.missing,
                offset,
                message_offset: partial.offset,
            });
        }

        let mut header = Header {
            fmt,
            csid,
            len: 0,
            time: 0,
            extended: false,
            length: 0,
            type_id: 0,
            stream_id: 0,
            continuation: in_progress.is_some(),
            payload_len: 0,
        };
        // Message header (RTMP 1.0 §5.3.1.2).
        match fmt {
            0 => {
                let Some(h) = data.get(pos..pos.saturating_add(11)) else {
                    return Ok(None);
                };
                header.time = be24(h, 0);
                header.length = be24(h, 3);
                header.type_id = h.get(6).copied().unwrap_or(0);
                header.stream_id = h
                    .get(7..11)
                    .and_then(|s| s.try_into().ok())
                    .map(u32::from_le_bytes)
                    .unwrap_or(0);
                pos = pos.saturating_add(11);
            }
            1 => {
                let Some(h) = data.get(pos..pos.saturating_add(7)) else {
                    return Ok(None);
                };
                header.time = be24(h, 0);
                header.length = be24(h, 3);
                header.type_id = h.get(6).copied().unwrap_or(0);
                // A type-1 chunk on a fresh chunk stream keeps message stream
                // 0 (librtmp sends its first ping like that; SRS accepts it).
                header.stream_id = prev.map_or(0, |s| s.stream_id);
                pos = pos.saturating_add(7);
            }
            2 => {
                let Some(stream) = prev else {
                    return Err(ChunkError::NoPreviousHeader { csid, fmt, offset });
                };
                let Some(h) = data.get(pos..pos.saturating_add(3)) else {
                    return Ok(None);
                };
                header.time = be24(h, 0);
                header.length = stream.length;
                header.type_id = stream.type_id;
                header.stream_id = stream.stream_id;
                pos = pos.saturating_add(3);
            }
            _ => {
                let Some(stream) = prev else {
                    return Err(ChunkError::NoPreviousHeader { csid, fmt, offset });
                };
                header.length = stream.length;
                header.type_id = stream.type_id;
                header.stream_id = stream.stream_id;
                header.time = stream.delta;
                header.extended = stream.extended;
                if stream.extended {
                    // Extended timestamp on type-3 chunks (RTMP 1.0 §5.3.1.3):
                    // a type-3 chunk that starts a message carries it; on a
                    // continuation chunk some peers repeat it and some do not,
                    // so consume 4 bytes only if they equal the value of the
                    // message's first chunk (what SRS does). Until 4 bytes
                    // are there we wait: more chunks always follow.
                    let Some(ext) = data.get(pos..pos.saturating_add(4)) else {
                        return Ok(None);
                    };
                    let value = be32(ext);
                    match in_progress {
                        None => {
                            header.time = value;
                            pos = pos.saturating_add(4);
                        }
                        Some(_) if value == stream.extended_value => {
                            pos = pos.saturating_add(4);
                        }
                        Some(_) => {}
                    }
                }
                header.len = pos;
                header.payload_len = match in_progress {
                    Some(partial) => partial.missing.min(self.chunk_size),
                    None => header.length.min(self.chunk_size),
                };
                return Ok(Some(header));
            }
        }
        if header.time == EXTENDED_MARK {
            let Some(ext) = data.get(pos..pos.saturating_add(4)) else {
                return Ok(None);
            };
            header.time = be32(ext);
            header.extended = true;
            pos = pos.saturating_add(4);
        }
        header.len = pos;
        header.payload_len = header.length.min(self.chunk_size);
        Ok(Some(header))
    }
}

fn be24(data: &[u8], at: usize) -> u32 {
    match data.get(at..at.saturating_add(3)) {
        Some(&[a, b, c]) => u32::from_be_bytes([0, a, b, c]),
        _ => 0,
    }
}

fn be32(data: &[u8]) -> u32 {
    match data.get(..4) {
        Some(&[a, b, c, d]) => u32::from_be_bytes([a, b, c, d]),
        _ => 0,
    }
}

/// The first four bytes as a big-endian u32.
pub(crate) fn read_u32(data: &[u8]) -> Option<u32> {
    match data.get(..4) {
        Some(&[a, b, c, d]) => Some(u32::from_be_bytes([a, b, c, d])),
        _ => None,
    }
}

/// Writes a basic header (RTMP 1.0 §5.3.1.1) in its shortest form; `csid` is
/// clamped to `2..=65599`.
fn put_basic_header(out: &mut BytesMut, fmt: u8, csid: u32) {
    let csid = csid.clamp(MIN_CSID, MAX_CSID);
    let fmt = (fmt & 3) << 6;
    if csid < 64 {
        out.put_u8(fmt | csid as u8);
    } else if csid < 320 {
        out.put_u8(fmt);
        out.put_u8(csid.saturating_sub(64) as u8);
    } else {
        let id = csid.saturating_sub(64);
        out.put_u8(fmt | 1);
        out.put_u8((id & 0xFF) as u8);
        out.put_u8((id >> 8) as u8);
    }
}

fn basic_header_len(csid: u32) -> usize {
    match csid.clamp(MIN_CSID, MAX_CSID) {
        0..=63 => 1,
        64..=319 => 2,
        _ => 3,
    }
}

/// Exact number of bytes [`encode_message`] writes for a payload of
/// `payload_len` bytes.
pub fn encoded_len(csid: u32, timestamp: u32, payload_len: usize, chunk_size: u32) -> usize {
    let len = payload_len.min(MAX_MESSAGE_LENGTH as usize);
    let chunk_size = chunk_size.clamp(1, MAX_EFFECTIVE_CHUNK_SIZE) as usize;
    let ext = if timestamp >= EXTENDED_MARK { 4 } else { 0 };
    let basic = basic_header_len(csid);
    let continuations = len.saturating_sub(1).checked_div(chunk_size).unwrap_or(0);
    let first = basic.saturating_add(11).saturating_add(ext);
    let per_continuation = basic.saturating_add(ext);
    first
        .saturating_add(continuations.saturating_mul(per_continuation))
        .saturating_add(len)
}

/// Writes one message as a type-0 chunk and type-3 continuation chunks
/// (RTMP 1.0 §5.3.1.2.1, §5.3.1.2.4).
///
/// `payload` is given in pieces and copied once into `out`. A timestamp
/// `>= 0xFFFFFF` goes into the extended timestamp field, which is repeated on
/// every continuation chunk (RTMP 1.0 §5.3.1.3; what FMS, SRS and ffmpeg
/// send, and what every decoder accepts). A payload longer than
/// [`MAX_MESSAGE_LENGTH`] is cut there; `csid` is clamped to `2..=65599` and
/// `chunk_size` to `1..=`[`MAX_EFFECTIVE_CHUNK_SIZE`].
pub fn encode_message(
    out: &mut BytesMut,
    csid: u32,
    timestamp: u32,
    type_id: u8,
    stream_id: u32,
    payload: &[&[u8]],
    chunk_size: u32,
) {
    let total = payload
        .iter()
        .fold(0usize, |acc, p| acc.saturating_add(p.len()));
    let length = total.min(MAX_MESSAGE_LENGTH as usize);
    let chunk_size = chunk_size.clamp(1, MAX_EFFECTIVE_CHUNK_SIZE) as usize;
    let extended = timestamp >= EXTENDED_MARK;
    out.reserve(encoded_len(csid, timestamp, length, chunk_size as u32));

    put_basic_header(out, 0, csid);
    out.put_uint(u64::from(timestamp.min(EXTENDED_MARK)), 3);
    out.put_uint(length as u64, 3);
    out.put_u8(type_id);
    out.put_u32_le(stream_id);
    if extended {
        out.put_u32(timestamp);
    }

    let mut left = length;
    let mut in_chunk = 0usize;
    for piece in payload {
        let mut piece = piece.get(..piece.len().min(left)).unwrap_or_default();
        while !piece.is_empty() {
            if in_chunk == chunk_size {
                put_basic_header(out, 3, csid);
                if extended {
                    out.put_u32(timestamp);
                }
                in_chunk = 0;
            }
            let n = chunk_size.saturating_sub(in_chunk).min(piece.len());
            let (now, rest) = piece.split_at_checked(n).unwrap_or((piece, &[]));
            out.put_slice(now);
            piece = rest;
            in_chunk = in_chunk.saturating_add(now.len());
            left = left.saturating_sub(now.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(csid: u32, ts: u32, type_id: u8, sid: u32, payload: &[u8], cs: u32) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode_message(&mut out, csid, ts, type_id, sid, &[payload], cs);
        out.to_vec()
    }

    fn decode_all(dec: &mut ChunkDecoder) -> Vec<RawMessage> {
        let mut v = Vec::new();
        while let Some(m) = dec.next_message().unwrap() {
            v.push(m);
        }
        v
    }

    fn decode_bytes(data: &[u8]) -> Vec<RawMessage> {
        let mut dec = ChunkDecoder::new();
        dec.push(data);
        decode_all(&mut dec)
    }

    fn msg(csid: u32, timestamp: u32, type_id: u8, stream_id: u32, payload: &[u8]) -> RawMessage {
        RawMessage {
            csid,
            timestamp,
            type_id,
            stream_id,
            payload: Bytes::copy_from_slice(payload),
        }
    }

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + 3) as u8).collect()
    }

    #[test]
    fn type0_single_chunk_layout_and_decode() {
        let bytes = encode(3, 1000, 20, 0x0102_0304, b"hello", 128);
        assert_eq!(
            bytes,
            [
                0x03, 0x00, 0x03, 0xE8, 0x00, 0x00, 0x05, 20, 0x04, 0x03, 0x02, 0x01, b'h', b'e',
                b'l', b'l', b'o'
            ]
        );
        assert_eq!(bytes.len(), encoded_len(3, 1000, 5, 128));
        assert_eq!(
            decode_bytes(&bytes),
            vec![msg(3, 1000, 20, 0x0102_0304, b"hello")]
        );
    }

    #[test]
    fn csid_encodings() {
        for (csid, first) in [
            (2u32, vec![0x02]),
            (63, vec![0x3F]),
            (64, vec![0x00, 0x00]),
            (319, vec![0x00, 0xFF]),
            (320, vec![0x01, 0x00, 0x01]),
            (65_599, vec![0x01, 0xFF, 0xFF]),
        ] {
            let bytes = encode(csid, 5, 9, 1, &pattern(300), 128);
            assert_eq!(&bytes[..first.len()], &first[..], "csid {csid}");
            assert_eq!(bytes.len(), encoded_len(csid, 5, 300, 128));
            // Continuation headers use the same form with fmt 3.
            let cont = first.len() + 11 + 128;
            assert_eq!(bytes[cont] & 0xC0, 0xC0);
            assert_eq!(bytes[cont] & 0x3F, first[0] & 0x3F);
            assert_eq!(
                decode_bytes(&bytes),
                vec![msg(csid, 5, 9, 1, &pattern(300))],
                "csid {csid}"
            );
        }
    }

    #[test]
    fn compressed_header_types_1_2_3() {
        // Hand-built like RTMP 1.0 §5.3.2.1 (audio, constant size and delta).
        let mut b = vec![];
        // type 0: csid 4, ts 1000, len 3, type 8, stream 1
        b.extend([0x04, 0x00, 0x03, 0xE8, 0x00, 0x00, 0x03, 0x08, 1, 0, 0, 0]);
        b.extend([1, 2, 3]);
        // type 2: delta 20
        b.extend([0x84, 0x00, 0x00, 0x14]);
        b.extend([4, 5, 6]);
        // type 3: reuses length and delta 20
        b.extend([0xC4]);
        b.extend([7, 8, 9]);
        // type 1: delta 40, len 2, type 9 (stream id kept)
        b.extend([0x44, 0x00, 0x00, 0x28, 0x00, 0x00, 0x02, 0x09]);
        b.extend([10, 11]);
        // type 3 again: delta 40
        b.extend([0xC4, 12, 13]);
        assert_eq!(
            decode_bytes(&b),
            vec![
                msg(4, 1000, 8, 1, &[1, 2, 3]),
                msg(4, 1020, 8, 1, &[4, 5, 6]),
                msg(4, 1040, 8, 1, &[7, 8, 9]),
                msg(4, 1080, 9, 1, &[10, 11]),
                msg(4, 1120, 9, 1, &[12, 13]),
            ]
        );
    }

    #[test]
    fn type3_after_type0_adds_the_type0_timestamp() {
        // FMLE/ffmpeg/SRS behaviour: 26 + 26 = 52.
        let mut b = vec![
            0x04, 0x00, 0x00, 0x1A, 0x00, 0x00, 0x01, 0x08, 1, 0, 0, 0, 0xAA,
        ];
        b.extend([0xC4, 0xBB]);
        let got = decode_bytes(&b);
        assert_eq!(got[1].timestamp, 52);
        assert_eq!(&got[1].payload[..], &[0xBB]);
    }

    #[test]
    fn fresh_type1_is_accepted_fresh_type2_3_are_errors() {
        // librtmp's first ping: fmt 1 on a fresh csid 2.
        let b = [0x42, 0, 0, 0, 0, 0, 6, 4, 0, 6, 0, 0, 0x0D, 0x0F];
        assert_eq!(
            decode_bytes(&b),
            vec![msg(2, 0, 4, 0, &[0, 6, 0, 0, 0x0D, 0x0F])]
        );
        for b in [vec![0x82u8, 0, 0, 1], vec![0xC2u8, 1]] {
            let mut dec = ChunkDecoder::new();
            dec.push(&b);
            assert!(matches!(
                dec.next_message(),
                Err(ChunkError::NoPreviousHeader { csid: 2, .. })
            ));
            assert!(matches!(dec.next_message(), Err(ChunkError::Failed)));
        }
    }

    #[test]
    fn multi_chunk_message_and_exact_multiple() {
        for len in [0usize, 1, 127, 128, 129, 256, 1000] {
            let p = pattern(len);
            let bytes = encode(6, 77, 9, 1, &p, 128);
            assert_eq!(bytes.len(), encoded_len(6, 77, len, 128));
            assert_eq!(
                decode_bytes(&bytes),
                vec![msg(6, 77, 9, 1, &p)],
                "len {len}"
            );
        }
    }

    #[test]
    fn pieces_are_concatenated() {
        let mut out = BytesMut::new();
        let a = pattern(5);
        let b = pattern(300);
        encode_message(&mut out, 6, 0, 9, 1, &[&a, &[], &b], 100);
        let mut whole = a.clone();
        whole.extend(&b);
        let mut dec = ChunkDecoder::new();
        dec.push(&[0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 0, 100]);
        dec.push(&out);
        let got = decode_all(&mut dec);
        assert_eq!(got[1], msg(6, 0, 9, 1, &whole));
    }

    #[test]
    fn interleaved_chunk_streams() {
        // Two multi-chunk messages on csid 4 (audio) and 6 (video), chunk size
        // 128, interleaved chunk by chunk (RTMP 1.0 §5.3: chunks of different
        // chunk streams may interleave).
        let audio = pattern(300);
        let video: Vec<u8> = pattern(500).iter().map(|b| b ^ 0x5A).collect();
        let a = encode(4, 10, 8, 1, &audio, 128);
        let v = encode(6, 20, 9, 1, &video, 128);
        let split = |bytes: &[u8]| -> Vec<Vec<u8>> {
            let mut chunks = vec![bytes[..12 + 128].to_vec()];
            let mut pos = 12 + 128;
            while pos < bytes.len() {
                let end = (pos + 1 + 128).min(bytes.len());
                chunks.push(bytes[pos..end].to_vec());
                pos = end;
            }
            chunks
        };
        let (ca, cv) = (split(&a), split(&v));
        assert_eq!((ca.len(), cv.len()), (3, 4));
        let mut stream = vec![];
        for i in 0..4 {
            if let Some(c) = cv.get(i) {
                stream.extend(c);
            }
            if let Some(c) = ca.get(i) {
                stream.extend(c);
            }
        }
        let got = decode_bytes(&stream);
        assert_eq!(
            got,
            vec![msg(4, 10, 8, 1, &audio), msg(6, 20, 9, 1, &video)]
        );
    }

    #[test]
    fn extended_timestamp_repeated_on_continuations() {
        let p = pattern(300);
        let ts: u32 = 0x0100_0000;
        let bytes = encode(6, ts, 9, 1, &p, 128);
        // type-0 header has 0xFFFFFF then the 4-byte value
        assert_eq!(&bytes[1..4], &[0xFF, 0xFF, 0xFF]);
        assert_eq!(&bytes[12..16], &ts.to_be_bytes());
        // continuation: c6 + ext
        assert_eq!(bytes[16 + 128], 0xC6);
        assert_eq!(&bytes[17 + 128..21 + 128], &ts.to_be_bytes());
        assert_eq!(bytes.len(), encoded_len(6, ts, 300, 128));
        assert_eq!(decode_bytes(&bytes), vec![msg(6, ts, 9, 1, &p)]);
    }

    #[test]
    fn extended_timestamp_not_repeated_on_continuations() {
        let p = pattern(300);
        let ts: u32 = 0xFFFF_FFF0;
        let mut b = vec![0x06, 0xFF, 0xFF, 0xFF, 0x00, 0x01, 0x2C, 9, 1, 0, 0, 0];
        b.extend(ts.to_be_bytes());
        b.extend(&p[..128]);
        b.push(0xC6);
        b.extend(&p[128..256]);
        b.push(0xC6);
        b.extend(&p[256..]);
        assert_eq!(decode_bytes(&b), vec![msg(6, ts, 9, 1, &p)]);
    }

    #[test]
    fn extended_delta_on_type3_new_message() {
        // type 1 with an extended delta, then a type-3 chunk starting a new
        // message carries the delta in its extended field.
        let mut b = vec![0x04, 0, 0, 10, 0, 0, 1, 8, 1, 0, 0, 0, 0xAA];
        b.extend([0x44, 0xFF, 0xFF, 0xFF, 0, 0, 1, 8]);
        b.extend(0x0100_0000u32.to_be_bytes());
        b.push(0xBB);
        b.push(0xC4);
        b.extend(0x0100_0000u32.to_be_bytes());
        b.push(0xCC);
        let got = decode_bytes(&b);
        assert_eq!(
            got.iter().map(|m| m.timestamp).collect::<Vec<_>>(),
            vec![10, 10 + 0x0100_0000, 10 + 0x0200_0000]
        );
        assert_eq!(&got[2].payload[..], &[0xCC]);
    }

    #[test]
    fn set_chunk_size_mid_stream() {
        let p = pattern(1000);
        let mut b = encode(6, 0, 9, 1, &p, 128);
        b.extend(encode(2, 0, 1, 0, &4096u32.to_be_bytes(), 128));
        b.extend(encode(6, 40, 9, 1, &p, 4096));
        let mut dec = ChunkDecoder::new();
        dec.push(&b);
        let got = decode_all(&mut dec);
        assert_eq!(got.len(), 3);
        assert_eq!(got[1].type_id, msg_type::SET_CHUNK_SIZE);
        assert_eq!(got[2], msg(6, 40, 9, 1, &p));
        assert_eq!(dec.chunk_size(), 4096);
    }

    #[test]
    fn chunk_size_limits() {
        let huge = encode(2, 0, 1, 0, &0x7FFF_FFFFu32.to_be_bytes(), 128);
        let mut dec = ChunkDecoder::new();
        dec.push(&huge);
        decode_all(&mut dec);
        assert_eq!(dec.chunk_size(), MAX_EFFECTIVE_CHUNK_SIZE);
        for bad in [0u32, 0x8000_0000, 0xFFFF_FFFF] {
            let mut dec = ChunkDecoder::new();
            dec.push(&encode(2, 0, 1, 0, &bad.to_be_bytes(), 128));
            assert!(matches!(
                dec.next_message(),
                Err(ChunkError::InvalidChunkSize { .. })
            ));
        }
        let mut dec = ChunkDecoder::new();
        dec.push(&encode(2, 0, 1, 0, &[0, 1], 128));
        assert!(matches!(
            dec.next_message(),
            Err(ChunkError::ShortControlMessage { type_id: 1, .. })
        ));
    }

    #[test]
    fn abort_discards_partial_message() {
        let p = pattern(300);
        let full = encode(6, 0, 9, 1, &p, 128);
        let mut b = full[..12 + 128].to_vec(); // first chunk only
        b.extend(encode(2, 0, 2, 0, &6u32.to_be_bytes(), 128));
        // A new message on csid 6 now starts with a fresh header.
        b.extend(encode(6, 5, 9, 1, b"xyz", 128));
        let mut dec = ChunkDecoder::new();
        dec.push(&b);
        let got = decode_all(&mut dec);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].type_id, msg_type::ABORT);
        assert_eq!(got[1], msg(6, 5, 9, 1, b"xyz"));
        assert_eq!(dec.partial_bytes, 0);
    }

    #[test]
    fn new_header_inside_message_is_an_error() {
        let p = pattern(300);
        let full = encode(6, 0, 9, 1, &p, 128);
        let mut b = full[..12 + 128].to_vec();
        b.extend(encode(6, 5, 9, 1, b"xyz", 128));
        let mut dec = ChunkDecoder::new();
        dec.push(&b);
        assert!(matches!(
            dec.next_message(),
            Err(ChunkError::HeaderInsideMessage {
                csid: 6,
                fmt: 0,
                length: 300,
                missing: 172,
                offset: 140,
                message_offset: 0
            })
        ));
    }

    #[test]
    fn limits_are_errors() {
        // Too many chunk streams.
        let limits = ChunkLimits {
            max_partial_bytes: 1000,
            max_chunk_streams: 3,
            max_message_bytes: 1000,
        };
        let mut dec = ChunkDecoder::with_limits(limits);
        for csid in 3..6 {
            dec.push(&encode(csid, 0, 8, 1, b"a", 128));
        }
        dec.push(&encode(9, 0, 8, 1, b"a", 128));
        assert_eq!(decode_all_until_err(&mut dec).0, 3);
        // Partial bytes: two 600-byte messages in progress exceed 1000.
        let mut dec = ChunkDecoder::with_limits(limits);
        dec.push(&encode(4, 0, 8, 1, &pattern(600), 128)[..12 + 128]);
        dec.push(&encode(6, 0, 9, 1, &pattern(600), 128)[..12 + 128]);
        let (n, err) = decode_all_until_err(&mut dec);
        assert_eq!(n, 0);
        assert!(matches!(
            err,
            Some(ChunkError::PartialTooLarge {
                csid: 6,
                length: 600,
                total: 1200,
                ..
            })
        ));
        // A declared 16 MiB message in 128-byte chunks is fine within limits.
        let mut dec = ChunkDecoder::new();
        dec.push(&[0x06, 0, 0, 0, 0xFF, 0xFF, 0xFF, 9, 1, 0, 0, 0]);
        dec.push(&[0u8; 128]);
        assert_eq!(dec.next_message(), Ok(None));
        assert_eq!(dec.partial_bytes, 0xFF_FFFF);
    }

    #[test]
    fn a_message_over_the_size_limit_is_an_error_before_its_buffer_exists() {
        let limits = ChunkLimits::for_message_size(1000);
        assert_eq!(limits.max_partial_bytes, 4000);
        // 1000 bytes pass, in one chunk or in many.
        let mut dec = ChunkDecoder::with_limits(limits);
        dec.push(&encode(4, 0, 9, 1, &pattern(1000), 128));
        assert_eq!(decode_all_until_err(&mut dec), (1, None));
        // 1001 declared: refused at the first chunk's header, nothing kept.
        let mut dec = ChunkDecoder::with_limits(limits);
        dec.push(&encode(4, 0, 9, 1, &pattern(1001), 128)[..12 + 128]);
        let (n, err) = decode_all_until_err(&mut dec);
        assert_eq!(n, 0);
        assert_eq!(
            err,
            Some(ChunkError::MessageTooLarge {
                csid: 4,
                length: 1001,
                limit: 1000,
                offset: 0
            })
        );
        assert_eq!(dec.partial_bytes, 0);
        assert!(err.unwrap().to_string().contains("limits.max_frame_bytes"));
    }

    fn decode_all_until_err(dec: &mut ChunkDecoder) -> (usize, Option<ChunkError>) {
        let mut n = 0;
        loop {
            match dec.next_message() {
                Ok(Some(_)) => n += 1,
                Ok(None) => return (n, None),
                Err(e) => return (n, Some(e)),
            }
        }
    }

    #[test]
    fn zero_length_messages() {
        let b = encode(3, 0, 20, 0, &[], 128);
        assert_eq!(b.len(), 12);
        let mut two = b.clone();
        two.push(0xC3); // type 3 -> another zero-length message, +0 delta
        assert_eq!(
            decode_bytes(&two),
            vec![msg(3, 0, 20, 0, &[]), msg(3, 0, 20, 0, &[])]
        );
    }

    #[test]
    fn byte_by_byte_equals_one_push() {
        let mut b = vec![];
        b.extend(encode(2, 0, 1, 0, &200u32.to_be_bytes(), 128));
        b.extend(encode(4, 10, 8, 1, &pattern(450), 200));
        b.extend(encode(6, 0x0123_4567, 9, 1, &pattern(999), 200));
        b.extend(encode(70, 1, 20, 0, &pattern(3), 200));
        b.extend(encode(400, 1, 20, 0, &pattern(201), 200));
        let whole = decode_bytes(&b);
        assert_eq!(whole.len(), 5);
        let mut dec = ChunkDecoder::new();
        let mut got = vec![];
        for byte in &b {
            dec.push(std::slice::from_ref(byte));
            got.extend(decode_all(&mut dec));
        }
        assert_eq!(got, whole);
        assert_eq!(dec.bytes_received(), b.len() as u64);
        assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn single_chunk_payload_is_zero_copy() {
        let b = encode(4, 0, 8, 1, &pattern(50), 128);
        let mut dec = ChunkDecoder::new();
        dec.push(&b);
        let base = dec.buf.as_ptr() as usize;
        let m = dec.next_message().unwrap().unwrap();
        assert_eq!(m.payload.as_ptr() as usize, base + 12);
    }

    #[test]
    fn garbage_never_panics() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..2000 {
            let n = rng.gen_range(0..600);
            let data: Vec<u8> = (0..n).map(|_| rng.r#gen()).collect();
            let mut dec = ChunkDecoder::new();
            dec.push(&data);
            while let Ok(Some(_)) = dec.next_message() {}
        }
    }
}
