//! Protocol control messages (RTMP 1.0 §5.4) and user control events
//! (RTMP 1.0 §6.2, §7.1.7): parsing and encoding.
//!
//! They travel on chunk stream 2 and message stream 0 with timestamp 0
//! (RTMP 1.0 §5.4, §6.2).

use bytes::BytesMut;

use super::chunk::encode_message;
use super::msg_type;

/// Chunk stream id reserved for protocol control messages (RTMP 1.0 §5.4).
pub const CONTROL_CSID: u32 = 2;

/// Limit type of Set Peer Bandwidth (RTMP 1.0 §5.4.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitType {
    Hard,
    Soft,
    Dynamic,
}

impl LimitType {
    fn to_byte(self) -> u8 {
        match self {
            LimitType::Hard => 0,
            LimitType::Soft => 1,
            LimitType::Dynamic => 2,
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(LimitType::Hard),
            1 => Some(LimitType::Soft),
            2 => Some(LimitType::Dynamic),
            _ => None,
        }
    }
}

/// A user control event (RTMP 1.0 §7.1.7; event type 2 bytes, then data).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserControlEvent {
    /// 0: the stream became functional (sent before media on a stream).
    StreamBegin(u32),
    /// 1: playback of the stream is over (the publisher is gone).
    StreamEof(u32),
    /// 2: no more data on the stream for now.
    StreamDry(u32),
    /// 3: the client's buffer length in milliseconds, sent after `play`.
    SetBufferLength { stream_id: u32, buffer_ms: u32 },
    /// 4: the stream is recorded.
    StreamIsRecorded(u32),
    /// 6: ping request with the sender's timestamp.
    PingRequest(u32),
    /// 7: ping response echoing the request's timestamp.
    PingResponse(u32),
    /// Any other event type (e.g. FMS's buffer empty/ready 31/32); data not
    /// kept.
    Other { event_type: u16 },
}

impl UserControlEvent {
    /// Parses a user control message payload; `None` if it is too short.
    pub fn parse(payload: &[u8]) -> Option<Self> {
        let event_type = u16::from_be_bytes(payload.get(..2)?.try_into().ok()?);
        let data = payload.get(2..).unwrap_or_default();
        let word = |at: usize| -> Option<u32> {
            let end = at.checked_add(4)?;
            Some(u32::from_be_bytes(data.get(at..end)?.try_into().ok()?))
        };
        Some(match event_type {
            0 => UserControlEvent::StreamBegin(word(0)?),
            1 => UserControlEvent::StreamEof(word(0)?),
            2 => UserControlEvent::StreamDry(word(0)?),
            3 => UserControlEvent::SetBufferLength {
                stream_id: word(0)?,
                buffer_ms: word(4)?,
            },
            4 => UserControlEvent::StreamIsRecorded(word(0)?),
            6 => UserControlEvent::PingRequest(word(0)?),
            7 => UserControlEvent::PingResponse(word(0)?),
            other => UserControlEvent::Other { event_type: other },
        })
    }

    /// The message payload.
    pub fn to_payload(&self) -> Vec<u8> {
        let (event_type, words): (u16, &[u32]) = match self {
            UserControlEvent::StreamBegin(id) => (0, std::slice::from_ref(id)),
            UserControlEvent::StreamEof(id) => (1, std::slice::from_ref(id)),
            UserControlEvent::StreamDry(id) => (2, std::slice::from_ref(id)),
            UserControlEvent::SetBufferLength {
                stream_id,
                buffer_ms,
            } => {
                let mut v = Vec::with_capacity(10);
                v.extend_from_slice(&3u16.to_be_bytes());
                v.extend_from_slice(&stream_id.to_be_bytes());
                v.extend_from_slice(&buffer_ms.to_be_bytes());
                return v;
            }
            UserControlEvent::StreamIsRecorded(id) => (4, std::slice::from_ref(id)),
            UserControlEvent::PingRequest(ts) => (6, std::slice::from_ref(ts)),
            UserControlEvent::PingResponse(ts) => (7, std::slice::from_ref(ts)),
            UserControlEvent::Other { event_type } => (*event_type, &[]),
        };
        let mut v = Vec::with_capacity(6);
        v.extend_from_slice(&event_type.to_be_bytes());
        for w in words {
            v.extend_from_slice(&w.to_be_bytes());
        }
        v
    }
}

/// A protocol control message (RTMP 1.0 §5.4) or user control message
/// (§6.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlMessage {
    /// §5.4.1: maximum chunk size of the sender's chunks from now on.
    SetChunkSize(u32),
    /// §5.4.2: discard the partial message on this chunk stream id.
    Abort(u32),
    /// §5.4.3: total bytes received so far (mod 2^32).
    Ack(u32),
    /// §5.4.4: send an Ack after this many bytes.
    WindowAckSize(u32),
    /// §5.4.5: limit the peer's output bandwidth.
    SetPeerBandwidth { size: u32, limit: LimitType },
    /// §6.2, §7.1.7.
    UserControl(UserControlEvent),
}

impl ControlMessage {
    /// Parses a message of type 1 to 6; `None` for other types and payloads
    /// that are too short or invalid.
    pub fn parse(type_id: u8, payload: &[u8]) -> Option<Self> {
        let word =
            || -> Option<u32> { Some(u32::from_be_bytes(payload.get(..4)?.try_into().ok()?)) };
        Some(match type_id {
            msg_type::SET_CHUNK_SIZE => ControlMessage::SetChunkSize(word()?),
            msg_type::ABORT => ControlMessage::Abort(word()?),
            msg_type::ACK => ControlMessage::Ack(word()?),
            msg_type::WINDOW_ACK_SIZE => ControlMessage::WindowAckSize(word()?),
            msg_type::SET_PEER_BANDWIDTH => ControlMessage::SetPeerBandwidth {
                size: word()?,
                // Unknown limit types are read as dynamic.
                limit: LimitType::from_byte(payload.get(4).copied().unwrap_or(2))
                    .unwrap_or(LimitType::Dynamic),
            },
            msg_type::USER_CONTROL => {
                ControlMessage::UserControl(UserControlEvent::parse(payload)?)
            }
            _ => return None,
        })
    }

    pub fn type_id(&self) -> u8 {
        match self {
            ControlMessage::SetChunkSize(_) => msg_type::SET_CHUNK_SIZE,
            ControlMessage::Abort(_) => msg_type::ABORT,
            ControlMessage::Ack(_) => msg_type::ACK,
            ControlMessage::WindowAckSize(_) => msg_type::WINDOW_ACK_SIZE,
            ControlMessage::SetPeerBandwidth { .. } => msg_type::SET_PEER_BANDWIDTH,
            ControlMessage::UserControl(_) => msg_type::USER_CONTROL,
        }
    }

    /// The message payload.
    pub fn to_payload(&self) -> Vec<u8> {
        match self {
            ControlMessage::SetChunkSize(v)
            | ControlMessage::Abort(v)
            | ControlMessage::Ack(v)
            | ControlMessage::WindowAckSize(v) => v.to_be_bytes().to_vec(),
            ControlMessage::SetPeerBandwidth { size, limit } => {
                let mut p = size.to_be_bytes().to_vec();
                p.push(limit.to_byte());
                p
            }
            ControlMessage::UserControl(ev) => ev.to_payload(),
        }
    }

    /// Writes the message on chunk stream 2, message stream 0, timestamp 0,
    /// cut into chunks of `chunk_size` (the sender's current chunk size).
    pub fn encode(&self, out: &mut BytesMut, chunk_size: u32) {
        let payload = self.to_payload();
        encode_message(
            out,
            CONTROL_CSID,
            0,
            self.type_id(),
            0,
            &[&payload],
            chunk_size,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::rtmp::chunk::ChunkDecoder;

    #[test]
    fn round_trips() {
        let all = [
            ControlMessage::SetChunkSize(4096),
            ControlMessage::Abort(6),
            ControlMessage::Ack(0xFFFF_FFFF),
            ControlMessage::WindowAckSize(2_500_000),
            ControlMessage::SetPeerBandwidth {
                size: 2_500_000,
                limit: LimitType::Dynamic,
            },
            ControlMessage::UserControl(UserControlEvent::StreamBegin(1)),
            ControlMessage::UserControl(UserControlEvent::StreamEof(1)),
            ControlMessage::UserControl(UserControlEvent::StreamDry(1)),
            ControlMessage::UserControl(UserControlEvent::SetBufferLength {
                stream_id: 1,
                buffer_ms: 3000,
            }),
            ControlMessage::UserControl(UserControlEvent::StreamIsRecorded(1)),
            ControlMessage::UserControl(UserControlEvent::PingRequest(123)),
            ControlMessage::UserControl(UserControlEvent::PingResponse(123)),
            ControlMessage::UserControl(UserControlEvent::Other { event_type: 31 }),
        ];
        let mut out = BytesMut::new();
        for m in &all {
            m.encode(&mut out, 128);
        }
        let mut dec = ChunkDecoder::new();
        // Our SetChunkSize(4096) applies to the decoder too; messages are
        // short, so it does not matter here.
        dec.push(&out);
        let mut got = vec![];
        while let Some(m) = dec.next_message().unwrap() {
            assert_eq!((m.csid, m.stream_id, m.timestamp), (2, 0, 0));
            got.push(ControlMessage::parse(m.type_id, &m.payload).unwrap());
        }
        assert_eq!(got, all);
    }

    #[test]
    fn wire_format() {
        assert_eq!(
            ControlMessage::UserControl(UserControlEvent::SetBufferLength {
                stream_id: 1,
                buffer_ms: 3000
            })
            .to_payload(),
            [0, 3, 0, 0, 0, 1, 0, 0, 0x0B, 0xB8]
        );
        assert_eq!(
            ControlMessage::SetPeerBandwidth {
                size: 5,
                limit: LimitType::Dynamic
            }
            .to_payload(),
            [0, 0, 0, 5, 2]
        );
    }

    #[test]
    fn short_payloads_are_none() {
        assert_eq!(ControlMessage::parse(msg_type::ACK, &[0, 0, 1]), None);
        assert_eq!(ControlMessage::parse(msg_type::USER_CONTROL, &[0]), None);
        assert_eq!(
            ControlMessage::parse(msg_type::USER_CONTROL, &[0, 6, 1]),
            None
        );
        assert_eq!(ControlMessage::parse(msg_type::AUDIO, &[0, 0, 0, 0]), None);
        // Set Peer Bandwidth without the limit byte reads as dynamic.
        assert_eq!(
            ControlMessage::parse(msg_type::SET_PEER_BANDWIDTH, &[0, 0, 0, 9]),
            Some(ControlMessage::SetPeerBandwidth {
                size: 9,
                limit: LimitType::Dynamic
            })
        );
    }
}
