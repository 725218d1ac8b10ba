//! What the server and client sessions share: the chunk decoder, the output
//! queue, our chunk size, and Acknowledgements (RTMP 1.0 §5.4.3).

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use rml_rtmp::handshake::{Handshake, HandshakeError, HandshakeProcessResult};

use super::chunk::{ChunkDecoder, ChunkLimits, DEFAULT_CHUNK_SIZE, RawMessage, encode_message};
use super::control::{ControlMessage, UserControlEvent};
use super::msg_type;

/// Chunk stream id we send command messages on.
pub(crate) const COMMAND_CSID: u32 = 3;

#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) decoder: ChunkDecoder,
    /// Messages being written; moved to `queue` before anything is queued
    /// after them.
    out: BytesMut,
    /// Output ready to send, in order.
    queue: VecDeque<Bytes>,
    out_chunk_size: u32,
    /// Every byte received on the connection, handshake included.
    received: u64,
    /// The peer's Window Acknowledgement Size (0: none announced, no Acks).
    peer_window: u32,
    /// `received` when we last sent an Ack.
    acked_at: u64,
    /// The last Window Acknowledgement Size we sent.
    our_window: Option<u32>,
}

impl Connection {
    /// Takes received bytes: through the handshake (RTMP 1.0 §5.2, by
    /// rml_rtmp) while it lasts, then into the chunk decoder. Returns the
    /// handshake bytes to send back, and whether chunk data may now be decoded.
    pub(crate) fn receive(
        &mut self,
        handshake: &mut Option<Box<Handshake>>,
        data: &[u8],
    ) -> Result<(Vec<u8>, bool), HandshakeError> {
        self.count_received(data.len());
        let Some(hs) = handshake.as_mut() else {
            self.decoder.push(data);
            return Ok((Vec::new(), true));
        };
        match hs.process_bytes(data)? {
            HandshakeProcessResult::InProgress { response_bytes } => Ok((response_bytes, false)),
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => {
                *handshake = None;
                self.decoder.push(&remaining_bytes);
                Ok((response_bytes, true))
            }
        }
    }

    pub(crate) fn new() -> Self {
        Self::with_limits(ChunkLimits::default())
    }

    pub(crate) fn with_limits(limits: ChunkLimits) -> Self {
        Connection {
            decoder: ChunkDecoder::with_limits(limits),
            out: BytesMut::new(),
            queue: VecDeque::new(),
            out_chunk_size: DEFAULT_CHUNK_SIZE,
            received: 0,
            peer_window: 0,
            acked_at: 0,
            our_window: None,
        }
    }

    pub(crate) fn count_received(&mut self, n: usize) {
        self.received = self.received.wrapping_add(n as u64);
    }

    pub(crate) fn out_chunk_size(&self) -> u32 {
        self.out_chunk_size
    }

    /// Bytes outside the chunk stream (handshake), as a buffer of their own:
    /// written into `out`, the 3 KiB handshake reply's allocation stayed
    /// with the connection for its life (`out` keeps writing into the rest
    /// of it after each split), ~3 KiB per RTMP player (heaptrack).
    pub(crate) fn send_raw(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.flush();
            self.queue.push_back(Bytes::copy_from_slice(bytes));
        }
    }

    pub(crate) fn send_message(
        &mut self,
        csid: u32,
        timestamp: u32,
        type_id: u8,
        stream_id: u32,
        payload: &[&[u8]],
    ) {
        encode_message(
            &mut self.out,
            csid,
            timestamp,
            type_id,
            stream_id,
            payload,
            self.out_chunk_size,
        );
    }

    /// Sends a protocol control or user control message; a Set Chunk Size
    /// takes effect for the messages after it.
    pub(crate) fn send_control(&mut self, msg: ControlMessage) {
        msg.encode(&mut self.out, self.out_chunk_size);
        match msg {
            ControlMessage::SetChunkSize(n) => {
                self.out_chunk_size = n.clamp(1, super::chunk::MAX_EFFECTIVE_CHUNK_SIZE);
            }
            ControlMessage::WindowAckSize(n) => self.our_window = Some(n),
            _ => {}
        }
    }

    /// An AMF0 command message (type 20) on the command chunk stream.
    pub(crate) fn send_command(&mut self, stream_id: u32, payload: &[u8]) {
        self.send_message(
            COMMAND_CSID,
            0,
            msg_type::COMMAND_AMF0,
            stream_id,
            &[payload],
        );
    }

    /// Queues an already encoded message (shared with other sessions) after
    /// everything written so far, without copying it.
    pub(crate) fn queue_encoded(&mut self, bytes: Bytes) {
        self.flush();
        if !bytes.is_empty() {
            self.queue.push_back(bytes);
        }
    }

    fn flush(&mut self) {
        if !self.out.is_empty() {
            self.queue.push_back(self.out.split().freeze());
        }
    }

    pub(crate) fn has_output(&self) -> bool {
        !self.out.is_empty() || !self.queue.is_empty()
    }

    /// All pending output as one buffer (copies only when shared messages
    /// were queued between our own).
    pub(crate) fn take_output(&mut self) -> Option<Bytes> {
        self.flush();
        match self.queue.len() {
            0 => None,
            1 => self.queue.pop_front(),
            _ => {
                let total = self
                    .queue
                    .iter()
                    .fold(0usize, |acc, b| acc.saturating_add(b.len()));
                let mut all = BytesMut::with_capacity(total);
                for b in self.queue.drain(..) {
                    all.extend_from_slice(&b);
                }
                Some(all.freeze())
            }
        }
    }

    /// The next pending piece of output, never copied.
    pub(crate) fn poll_output(&mut self) -> Option<Bytes> {
        self.flush();
        let next = self.queue.pop_front();
        if next.is_none() && self.queue.capacity() > 64 {
            // A player's first batch (the cached GOP) is a hundred messages
            // or more, later ones a few: give the room back once.
            self.queue.shrink_to(16);
        }
        next
    }

    /// Handles a protocol control or user control message (types 1 to 6):
    /// records the peer's window, answers pings (RTMP 1.0 §7.1.7) and Set
    /// Peer Bandwidth (§5.4.5). Returns the user control event, if any, for
    /// the session. Malformed ones are ignored.
    pub(crate) fn on_control(&mut self, msg: &RawMessage) -> Option<UserControlEvent> {
        let Some(control) = ControlMessage::parse(msg.type_id, &msg.payload) else {
            tracing::debug!(
                type_id = msg.type_id,
                len = msg.payload.len(),
                "ignoring malformed control message"
            );
            return None;
        };
        match control {
            // Applied by the chunk decoder already.
            ControlMessage::SetChunkSize(_) | ControlMessage::Abort(_) => None,
            ControlMessage::Ack(sequence) => {
                tracing::trace!(sequence, "peer acknowledged");
                None
            }
            ControlMessage::WindowAckSize(size) => {
                self.peer_window = size;
                None
            }
            ControlMessage::SetPeerBandwidth { size, .. } => {
                // "The peer receiving this message SHOULD respond with a
                // Window Acknowledgement Size message if the window size is
                // different from the last one sent" (§5.4.5).
                if self.our_window != Some(size) {
                    self.send_control(ControlMessage::WindowAckSize(size));
                }
                None
            }
            ControlMessage::UserControl(event) => {
                if let UserControlEvent::PingRequest(ts) = event {
                    self.send_control(ControlMessage::UserControl(UserControlEvent::PingResponse(
                        ts,
                    )));
                }
                Some(event)
            }
        }
    }

    /// Sends an Acknowledgement carrying the total bytes received (mod 2^32)
    /// once a window's worth arrived since the last one (RTMP 1.0 §5.4.3).
    pub(crate) fn maybe_ack(&mut self) {
        if self.peer_window == 0 {
            return;
        }
        if self.received.wrapping_sub(self.acked_at) >= u64::from(self.peer_window) {
            self.acked_at = self.received;
            self.send_control(ControlMessage::Ack(self.received as u32));
        }
    }
}

/// Splits an Aggregate message (RTMP 1.0 §7.1.6) into its sub-messages: each
/// is FLV-tag-like (type 1, size 3, timestamp 3 + extension 1, stream id 3,
/// body, back pointer 4), with timestamps relative to the first sub-message
/// and offset by the aggregate's own timestamp. Bodies are slices (zero
/// copy); a truncated tail is dropped.
pub(crate) fn split_aggregate(msg: &RawMessage) -> Vec<RawMessage> {
    let data = &msg.payload;
    let mut parts = Vec::new();
    let mut pos = 0usize;
    let mut first_ts: Option<u32> = None;
    while let Some(start) = pos.checked_add(11) {
        let Some(&[type_id, s0, s1, s2, t0, t1, t2, t3, i0, i1, i2]) = data.get(pos..start) else {
            break;
        };
        let size = u32::from_be_bytes([0, s0, s1, s2]) as usize;
        let ts = u32::from_be_bytes([t3, t0, t1, t2]);
        let Some(end) = start.checked_add(size).filter(|&e| e <= data.len()) else {
            tracing::debug!(len = data.len(), "truncated aggregate message");
            break;
        };
        let first = *first_ts.get_or_insert(ts);
        parts.push(RawMessage {
            csid: msg.csid,
            timestamp: msg.timestamp.wrapping_add(ts.wrapping_sub(first)),
            type_id,
            stream_id: u32::from_be_bytes([0, i0, i1, i2]),
            payload: data.slice(start..end),
        });
        pos = end.saturating_add(4);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acks(conn: &mut Connection) -> Vec<u32> {
        let mut dec = ChunkDecoder::new();
        if let Some(out) = conn.take_output() {
            dec.push(&out);
        }
        std::iter::from_fn(|| dec.next_message().unwrap())
            .filter_map(|m| match ControlMessage::parse(m.type_id, &m.payload) {
                Some(ControlMessage::Ack(v)) => Some(v),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn ack_total_wraps_mod_2_32() {
        let mut conn = Connection::new();
        conn.peer_window = 1_000_000;
        conn.count_received(u32::MAX as usize - 10);
        conn.maybe_ack();
        assert_eq!(acks(&mut conn), vec![u32::MAX - 10]);
        conn.count_received(999_999);
        conn.maybe_ack();
        assert!(acks(&mut conn).is_empty());
        conn.count_received(1);
        conn.maybe_ack();
        // (2^32 - 11) + 1_000_000, mod 2^32.
        assert_eq!(acks(&mut conn), vec![1_000_000 - 11]);
    }

    #[test]
    fn no_acks_without_a_window() {
        let mut conn = Connection::new();
        conn.count_received(10_000_000);
        conn.maybe_ack();
        assert!(acks(&mut conn).is_empty());
    }

    /// The handshake reply (3 KiB) is not kept by the connection once it
    /// has been taken for writing.
    #[test]
    fn the_handshake_reply_is_not_kept_after_it_is_sent() {
        let mut conn = Connection::new();
        conn.send_raw(&[3u8; 3073]);
        let reply = conn.poll_output().unwrap();
        assert_eq!(reply.len(), 3073);
        // Written to the socket and dropped: a later message must not take
        // the reply's allocation back.
        drop(reply);
        conn.send_command(0, b"small");
        assert!(conn.out.capacity() < 1024, "{}", conn.out.capacity());
    }

    #[test]
    fn output_pieces_keep_order_and_shared_bytes() {
        let mut conn = Connection::new();
        conn.send_raw(b"ab");
        let shared = Bytes::from_static(b"SHARED");
        conn.queue_encoded(shared.clone());
        conn.send_raw(b"cd");
        assert!(conn.has_output());
        assert_eq!(conn.poll_output().unwrap(), Bytes::from_static(b"ab"));
        let piece = conn.poll_output().unwrap();
        assert_eq!(piece.as_ptr(), shared.as_ptr());
        assert_eq!(conn.poll_output().unwrap(), Bytes::from_static(b"cd"));
        assert_eq!(conn.poll_output(), None);
        conn.send_raw(b"x");
        conn.queue_encoded(shared);
        assert_eq!(conn.take_output().unwrap(), Bytes::from_static(b"xSHARED"));
        assert_eq!(conn.take_output(), None);
    }
}
