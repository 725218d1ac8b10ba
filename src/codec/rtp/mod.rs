#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]
//! RTP depacketizers (pure): RTP payloads of one stream in, access units out;
//! and the packetizers the WebRTC egress shares among viewers ([`packetize`]).
//!
//! retina depacketizes what it knows (H.264, H.265, AAC, G.711) but has no
//! Opus depacketizer, and its `Depacketizer::push` is not public, so a camera
//! session with an Opus stream is read in retina's raw packet mode and every
//! stream of that session goes through these instead:
//!
//! - H.264, RFC 6184 (packetization mode 1): single NAL unit packets, STAP-A,
//!   FU-A ([`h26x`]);
//! - H.265, RFC 7798: single NAL unit packets, aggregation packets, FUs
//!   ([`h26x`]);
//! - AAC, RFC 3640 `AAC-hbr` (AU-headers-length in bits, 13-bit AU-size,
//!   3-bit AU-Index/-Delta), fragmented AUs included ([`aac`]);
//! - G.711 (RFC 3551 §4.5.14) and Opus (RFC 7587 §4.2: one RTP payload is one
//!   Opus packet): passed through ([`Passthrough`]).
//!
//! Like retina's: [`Depacketizer::push`] one packet, then [`Depacketizer::pull`]
//! every completed unit. Payload bytes stay [`Bytes`] slices of the packets
//! until an access unit is assembled (video gets 4-byte NAL lengths, which
//! needs one copy, as retina's does). Errors carry the sequence number of the
//! packet and say what was wrong; the unit in progress is dropped and the
//! depacketizer goes on with the next packet. Nothing here panics on any
//! input.

pub mod aac;
pub mod h26x;
pub mod packetize;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;

use bytes::Bytes;

use crate::media::CodecParams;

/// Completed units a depacketizer holds at most before the oldest is dropped
/// (callers pull after every push, so this is never reached in practice).
const MAX_READY: usize = 64;

/// One received RTP packet of a stream (RFC 3550 §5.1), as retina hands it
/// over: header fields already checked, the timestamp extended past wraps.
#[derive(Debug, Clone)]
pub struct Packet {
    pub sequence_number: u16,
    /// RTP time in the stream's clock rate, extended to 64 bits (relative to
    /// the stream's start).
    pub timestamp: i64,
    /// The marker bit: the last packet of a video access unit, or of a
    /// fragmented AAC access unit.
    pub mark: bool,
    /// Packets lost just before this one (a sequence number gap).
    pub loss: u16,
    /// The payload, without RTP header, CSRCs, extension or padding.
    pub payload: Bytes,
}

/// One depacketized access unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// RTP time of the unit (presentation time), in the stream's clock rate.
    pub timestamp: i64,
    /// Video: a random access point (H.264 IDR; H.265 IRAP). Audio: always.
    pub keyframe: bool,
    /// Packets lost since the previous unit came out.
    pub loss: u16,
    /// Video: NAL units with 4-byte big-endian lengths (in-band parameter
    /// sets included). Audio: one raw AAC frame, one Opus packet, or G.711
    /// samples.
    pub data: Bytes,
    /// The stream's parameters changed with this unit (in-band SPS/PPS).
    pub new_params: Option<CodecParams>,
}

/// A packet that could not be depacketized.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("RTP packet {sequence_number}: {description}")]
pub struct DepacketizeError {
    pub sequence_number: u16,
    pub description: String,
}

impl DepacketizeError {
    fn new(pkt: &Packet, description: impl Into<String>) -> Self {
        DepacketizeError {
            sequence_number: pkt.sequence_number,
            description: description.into(),
        }
    }
}

/// The depacketizer of one stream.
#[derive(Debug)]
pub enum Depacketizer {
    H26x(h26x::H26xDepacketizer),
    Aac(aac::AacDepacketizer),
    Passthrough(Passthrough),
}

impl Depacketizer {
    /// A depacketizer for a stream with these parameters (from the SDP).
    /// H.264 parameters may be replaced by in-band ones later (see
    /// [`Unit::new_params`]); a stream whose SDP has none starts with
    /// [`h26x::H26xDepacketizer::h264`]`(None)`.
    pub fn new(params: &CodecParams) -> Self {
        match params {
            CodecParams::H264(_) => {
                Depacketizer::H26x(h26x::H26xDepacketizer::h264(Some(params.clone())))
            }
            CodecParams::H265(_) => {
                Depacketizer::H26x(h26x::H26xDepacketizer::h265(Some(params.clone())))
            }
            CodecParams::Aac(a) => {
                Depacketizer::Aac(aac::AacDepacketizer::new(a.samples_per_frame))
            }
            CodecParams::G711(_) | CodecParams::Opus(_) => {
                Depacketizer::Passthrough(Passthrough::default())
            }
        }
    }

    /// Sets the bytes one access unit may reach (`limits.max_frame_bytes`;
    /// audio frames are far below any allowed value).
    pub fn set_max_access_unit(&mut self, bytes: usize) {
        if let Depacketizer::H26x(d) = self {
            d.set_max_access_unit(bytes);
        }
    }

    /// Takes one packet of the stream, in sequence order.
    pub fn push(&mut self, pkt: Packet) -> Result<(), DepacketizeError> {
        match self {
            Depacketizer::H26x(d) => d.push(pkt),
            Depacketizer::Aac(d) => d.push(pkt),
            Depacketizer::Passthrough(d) => d.push(pkt),
        }
    }

    /// The next completed unit, oldest first.
    pub fn pull(&mut self) -> Option<Unit> {
        match self {
            Depacketizer::H26x(d) => d.pull(),
            Depacketizer::Aac(d) => d.pull(),
            Depacketizer::Passthrough(d) => d.pull(),
        }
    }
}

/// Codecs whose RTP payload is one unit as it is: G.711 (RFC 3551 §4.5.14)
/// and Opus (RFC 7587 §4.2). The unit is the payload itself (no copy).
#[derive(Debug, Default)]
pub struct Passthrough {
    ready: VecDeque<Unit>,
    loss: u16,
}

impl Passthrough {
    /// See [`Depacketizer::push`].
    pub fn push(&mut self, pkt: Packet) -> Result<(), DepacketizeError> {
        self.loss = self.loss.saturating_add(pkt.loss);
        if pkt.payload.is_empty() {
            return Err(DepacketizeError::new(&pkt, "empty payload"));
        }
        push_ready(
            &mut self.ready,
            Unit {
                timestamp: pkt.timestamp,
                keyframe: true,
                loss: std::mem::take(&mut self.loss),
                data: pkt.payload,
                new_params: None,
            },
        );
        Ok(())
    }

    /// See [`Depacketizer::pull`].
    pub fn pull(&mut self) -> Option<Unit> {
        self.ready.pop_front()
    }
}

/// Queues a unit, dropping the oldest beyond [`MAX_READY`].
fn push_ready(ready: &mut VecDeque<Unit>, unit: Unit) {
    if ready.len() >= MAX_READY {
        ready.pop_front();
    }
    ready.push_back(unit);
}
