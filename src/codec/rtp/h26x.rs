//! H.264 (RFC 6184) and H.265 (RFC 7798) depacketization: NAL units from
//! single NAL unit packets, aggregation packets (STAP-A, AP) and
//! fragmentation units (FU-A, FU), gathered into access units.
//!
//! An access unit ends at the marker bit (RFC 6184 §5.1, RFC 7798 §4.1) or,
//! when a sender forgets it, where the RTP timestamp changes. A lost packet
//! drops the access unit it belongs to: after a loss, packets are skipped up
//! to the marker or the next timestamp, unless the packet plainly starts an
//! access unit (an access unit delimiter, a parameter set, SEI, or the first
//! slice of a picture). In-band H.264 SPS/PPS that differ from the current
//! ones give new parameters with the unit ([`super::Unit::new_params`]); for
//! H.265 the parameter sets stay in-band only (the SDP's are kept).

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::{DepacketizeError, Packet, Unit, push_ready};
use crate::codec::{h264, h265};
use crate::media::CodecParams;

/// Largest access unit assembled (bytes); beyond it the unit is dropped.
const MAX_ACCESS_UNIT: usize = 8 << 20;
/// Most NAL units in one access unit.
const MAX_NALS: usize = 1024;

/// Which of the two codecs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    H264,
    H265,
}

impl Codec {
    /// Length of the NAL unit header (H.264 §7.3.1: 1; H.265 §7.3.1.2: 2).
    fn header_len(self) -> usize {
        match self {
            Codec::H264 => 1,
            Codec::H265 => 2,
        }
    }

    fn nal_type(self, nal: &[u8]) -> Option<u8> {
        match self {
            Codec::H264 => h264::nal_type(nal),
            Codec::H265 => h265::nal_type(nal),
        }
    }

    /// Whether a NAL unit can only be the first of an access unit's data:
    /// AUD, parameter sets, SEI, or a slice with first_mb_in_slice 0 (H.264,
    /// `ue(v)` 0 is a single 1 bit) or first_slice_segment_in_pic_flag
    /// (H.265).
    fn starts_access_unit(self, nal: &[u8]) -> bool {
        let first_body_bit = nal.get(self.header_len()).is_some_and(|b| b & 0x80 != 0);
        match (self, self.nal_type(nal)) {
            (Codec::H264, Some(6..=9)) => true,
            (Codec::H264, Some(1 | 5)) => first_body_bit,
            (Codec::H265, Some(32..=35 | 39)) => true,
            (Codec::H265, Some(0..=31)) => first_body_bit,
            _ => false,
        }
    }
}

/// A fragmented NAL unit being put together.
#[derive(Debug)]
struct Fragment {
    nal: BytesMut,
}

/// Depacketizer of one H.264 or H.265 stream.
#[derive(Debug)]
pub struct H26xDepacketizer {
    codec: Codec,
    params: Option<CodecParams>,
    /// NAL units of the access unit in progress (slices of packet payloads).
    nals: Vec<Bytes>,
    size: usize,
    /// RTP time of the access unit in progress.
    timestamp: Option<i64>,
    fragment: Option<Fragment>,
    /// After a loss: skip packets up to the end of this access unit.
    skipping: Option<i64>,
    loss: u16,
    ready: VecDeque<Unit>,
    /// Bytes one access unit may reach (`limits.max_frame_bytes`).
    max_access_unit: usize,
}

impl H26xDepacketizer {
    /// An H.264 depacketizer; `params` are the SDP's (`sprop-parameter-sets`).
    pub fn h264(params: Option<CodecParams>) -> Self {
        Self::new(Codec::H264, params)
    }

    /// An H.265 depacketizer; `params` are the SDP's (`sprop-vps/sps/pps`).
    pub fn h265(params: Option<CodecParams>) -> Self {
        Self::new(Codec::H265, params)
    }

    fn new(codec: Codec, params: Option<CodecParams>) -> Self {
        H26xDepacketizer {
            codec,
            params,
            nals: Vec::new(),
            size: 0,
            timestamp: None,
            fragment: None,
            skipping: None,
            loss: 0,
            ready: VecDeque::new(),
            max_access_unit: MAX_ACCESS_UNIT,
        }
    }

    /// Sets the bytes one access unit may reach; a bigger one is dropped
    /// with an error (the stream goes on at the next access unit).
    pub fn set_max_access_unit(&mut self, bytes: usize) {
        self.max_access_unit = bytes;
    }

    /// The current parameters (the SDP's, or the last in-band ones).
    pub fn params(&self) -> Option<&CodecParams> {
        self.params.as_ref()
    }

    /// See [`super::Depacketizer::pull`].
    pub fn pull(&mut self) -> Option<Unit> {
        self.ready.pop_front()
    }

    /// See [`super::Depacketizer::push`].
    pub fn push(&mut self, pkt: Packet) -> Result<(), DepacketizeError> {
        if pkt.loss > 0 {
            self.loss = self.loss.saturating_add(pkt.loss);
            // The unit in progress misses packets (at its end, at least);
            // the one this packet is in may miss its start.
            self.discard();
            if !self.packet_starts_access_unit(&pkt.payload) {
                self.skipping = Some(pkt.timestamp);
            }
        }
        if let Some(ts) = self.skipping {
            if ts == pkt.timestamp {
                if pkt.mark {
                    self.skipping = None;
                }
                return Ok(());
            }
            self.skipping = None;
        }
        if self.timestamp.is_some_and(|ts| ts != pkt.timestamp) {
            // The previous access unit had no marker bit.
            if self.fragment.is_some() {
                self.discard();
                self.skip_rest_of(&pkt);
                return Err(DepacketizeError::new(
                    &pkt,
                    "new RTP timestamp in the middle of a fragmented NAL unit",
                ));
            }
            self.finish();
        }
        self.timestamp = Some(pkt.timestamp);
        if let Err(description) = self.take_payload(&pkt.payload) {
            self.discard();
            self.skip_rest_of(&pkt);
            return Err(DepacketizeError::new(&pkt, description));
        }
        if pkt.mark {
            if self.fragment.is_some() {
                self.discard();
                return Err(DepacketizeError::new(
                    &pkt,
                    "marker bit in the middle of a fragmented NAL unit",
                ));
            }
            self.finish();
        }
        Ok(())
    }

    /// After an error, the rest of that access unit is dropped too.
    fn skip_rest_of(&mut self, pkt: &Packet) {
        if !pkt.mark {
            self.skipping = Some(pkt.timestamp);
        }
    }

    fn packet_starts_access_unit(&self, payload: &[u8]) -> bool {
        let c = self.codec;
        let h = c.header_len();
        match (c, c.nal_type(payload)) {
            // STAP-A / AP: the first aggregated NAL unit.
            (Codec::H264, Some(24)) | (Codec::H265, Some(48)) => payload
                .get(h + 2..)
                .is_some_and(|nal| c.starts_access_unit(nal)),
            // FU-A / FU with the start bit: the NAL header is rebuilt.
            (Codec::H264, Some(28)) => match (payload.first(), payload.get(1)) {
                (Some(&ind), Some(&fu)) if fu & 0x80 != 0 => {
                    let mut nal = vec![(ind & 0xe0) | (fu & 0x1f)];
                    nal.extend(payload.get(2..3).unwrap_or_default());
                    c.starts_access_unit(&nal)
                }
                _ => false,
            },
            (Codec::H265, Some(49)) => match (payload.first(), payload.get(1), payload.get(2)) {
                (Some(&b0), Some(&b1), Some(&fu)) if fu & 0x80 != 0 => {
                    let mut nal = vec![(b0 & 0x81) | ((fu & 0x3f) << 1), b1];
                    nal.extend(payload.get(3..4).unwrap_or_default());
                    c.starts_access_unit(&nal)
                }
                _ => false,
            },
            _ => c.starts_access_unit(payload),
        }
    }

    /// Takes the NAL units of one packet's payload.
    fn take_payload(&mut self, payload: &Bytes) -> Result<(), String> {
        let c = self.codec;
        let h = c.header_len();
        if payload.len() < h {
            return Err(format!("payload of {} bytes", payload.len()));
        }
        if payload.first().is_some_and(|b| b & 0x80 != 0) {
            return Err("forbidden_zero_bit set".into());
        }
        let Some(t) = c.nal_type(payload) else {
            return Err("empty payload".into());
        };
        match (c, t) {
            (Codec::H264, 1..=23) | (Codec::H265, 0..=47) => {
                self.no_fragment(t)?;
                self.add_nal(payload.clone())
            }
            (Codec::H264, 24) | (Codec::H265, 48) => {
                self.no_fragment(t)?;
                let mut at = h;
                let mut count = 0;
                while at < payload.len() {
                    let len = match (payload.get(at), payload.get(at + 1)) {
                        (Some(&a), Some(&b)) => usize::from(u16::from_be_bytes([a, b])),
                        _ => return Err("aggregation packet: truncated NAL unit size".into()),
                    };
                    let start = at + 2;
                    let end = start + len;
                    if len < h || end > payload.len() {
                        return Err(format!(
                            "aggregation packet: NAL unit of {len} bytes at offset {at} does not fit"
                        ));
                    }
                    self.add_nal(payload.slice(start..end))?;
                    at = end;
                    count += 1;
                }
                if count == 0 {
                    return Err("aggregation packet without NAL units".into());
                }
                Ok(())
            }
            (Codec::H264, 28) | (Codec::H265, 49) => {
                let (header, fu) = match c {
                    Codec::H264 => {
                        let (Some(&ind), Some(&fu)) = (payload.first(), payload.get(1)) else {
                            return Err("FU-A of 1 byte".into());
                        };
                        (vec![(ind & 0xe0) | (fu & 0x1f)], fu)
                    }
                    Codec::H265 => {
                        let (Some(&b0), Some(&b1), Some(&fu)) =
                            (payload.first(), payload.get(1), payload.get(2))
                        else {
                            return Err("FU shorter than its headers".into());
                        };
                        (vec![(b0 & 0x81) | ((fu & 0x3f) << 1), b1], fu)
                    }
                };
                let body = payload.get(h + 1..).unwrap_or_default();
                let (start, end) = (fu & 0x80 != 0, fu & 0x40 != 0);
                if start && end {
                    return Err("fragmentation unit with both start and end bits".into());
                }
                if start {
                    if self.fragment.is_some() {
                        return Err("fragmentation unit start before the previous one ended".into());
                    }
                    let mut nal = BytesMut::with_capacity(header.len() + body.len() * 4);
                    nal.extend_from_slice(&header);
                    nal.extend_from_slice(body);
                    self.fragment = Some(Fragment { nal });
                } else {
                    let Some(f) = self.fragment.as_mut() else {
                        return Err(
                            "fragmentation unit continues a NAL unit that never started".into()
                        );
                    };
                    if f.nal.first() != header.first() {
                        return Err("fragmentation unit of another NAL unit type".into());
                    }
                    if self.size + f.nal.len() + body.len() > self.max_access_unit {
                        return Err(format!(
                            "access unit over {} bytes (limits.max_frame_bytes)",
                            self.max_access_unit
                        ));
                    }
                    f.nal.extend_from_slice(body);
                }
                if end && let Some(f) = self.fragment.take() {
                    self.add_nal(f.nal.freeze())?;
                }
                Ok(())
            }
            _ => Err(format!("unsupported NAL unit type {t}")),
        }
    }

    fn no_fragment(&self, t: u8) -> Result<(), String> {
        if self.fragment.is_some() {
            return Err(format!(
                "NAL unit type {t} in the middle of a fragmented NAL unit"
            ));
        }
        Ok(())
    }

    fn add_nal(&mut self, nal: Bytes) -> Result<(), String> {
        if self.nals.len() >= MAX_NALS {
            return Err(format!("more than {MAX_NALS} NAL units in an access unit"));
        }
        self.size += 4 + nal.len();
        if self.size > self.max_access_unit {
            return Err(format!(
                "access unit over {} bytes (limits.max_frame_bytes)",
                self.max_access_unit
            ));
        }
        self.nals.push(nal);
        Ok(())
    }

    /// Drops the access unit in progress.
    fn discard(&mut self) {
        self.nals.clear();
        self.size = 0;
        self.fragment = None;
        self.timestamp = None;
    }

    /// Completes the access unit in progress.
    fn finish(&mut self) {
        let Some(timestamp) = self.timestamp.take() else {
            return;
        };
        let nals = std::mem::take(&mut self.nals);
        self.size = 0;
        if nals.is_empty() {
            return;
        }
        let mut data = BytesMut::with_capacity(nals.iter().map(|n| 4 + n.len()).sum());
        for nal in &nals {
            data.extend_from_slice(&(nal.len() as u32).to_be_bytes());
            data.extend_from_slice(nal);
        }
        let data = data.freeze();
        let (keyframe, new_params) = match self.codec {
            Codec::H264 => (
                nals.iter().any(|n| h264::nal_type(n) == Some(5)),
                self.h264_params(&nals),
            ),
            Codec::H265 => (h265::is_irap(&data), None),
        };
        if let Some(p) = &new_params {
            self.params = Some(p.clone());
        }
        push_ready(
            &mut self.ready,
            Unit {
                timestamp,
                keyframe,
                loss: std::mem::take(&mut self.loss),
                data,
                new_params,
            },
        );
    }

    /// New parameters when the access unit's SPS/PPS differ from the current.
    fn h264_params(&self, nals: &[Bytes]) -> Option<CodecParams> {
        // Encoders and payloaders may both insert them: each set once.
        let sets = |t: u8| {
            let mut out: Vec<Bytes> = Vec::new();
            for n in nals.iter().filter(|n| h264::nal_type(n) == Some(t)) {
                if !out.contains(n) {
                    out.push(n.clone());
                }
            }
            out
        };
        let (sps, pps) = (sets(7), sets(8));
        if sps.is_empty() || pps.is_empty() {
            return None;
        }
        if let Some(CodecParams::H264(cur)) = &self.params
            && cur.sps == sps
            && cur.pps == pps
        {
            return None;
        }
        let record = h264::record_from_parameter_sets(&sps, &pps)?;
        match h264::h264_params(&record) {
            Ok((p, _)) => Some(CodecParams::H264(p)),
            Err(e) => {
                tracing::debug!(error = %e, "in-band H.264 parameter sets do not parse");
                None
            }
        }
    }
}
