//! RTP packetizers (pure): one frame in, the payloads of its RTP packets out.
//!
//! The WebRTC egress packetizes each frame once per path and hands every
//! viewer's session the same payloads (`Arc<[u8]>`, shared by reference
//! count); only the RTP header and SRTP differ per viewer. So the payloads
//! here carry no per-viewer field: sequence numbers, SSRC and payload type
//! are the session's.
//!
//! - H.264, RFC 6184 packetization mode 1 (§6.3): a NAL unit that fits is a
//!   single NAL unit packet (§5.6), a larger one is split into FU-A
//!   fragments (§5.8); the parameter sets in front of a picture (the track's
//!   SPS and PPS for a keyframe, or the ones the frame carries) go together
//!   in one STAP-A (§5.7.1) when they fit. Access unit delimiters are
//!   dropped (what str0m's packetizer did before).
//! - H.265, RFC 7798 (`sprop-max-don-diff` 0, so no DONL fields): single
//!   NAL unit packets (§4.4.1), aggregation packets for VPS/SPS/PPS
//!   (§4.4.2), fragmentation units (§4.4.3).
//! - Opus, RFC 7587 §4.2: one Opus packet is one RTP payload.
//! - AAC, RFC 3640 AAC-hbr mode (§3.3.6) for RTSP readers: one access unit
//!   per packet with its AU-header, fragmented when it does not fit.
//! - G.711, RFC 3551 §4.5.14: one sample per byte; a frame longer than a
//!   packet is split, each part at its own RTP time.
//!
//! The RTP marker bit (RFC 3550 §5.1) is set on the last packet of a video
//! access unit (RFC 6184 §5.1, RFC 7798 §4.1) and of an AAC access unit (RFC
//! 3640 §3.2.3), never on other audio. Input is a
//! frame as the hub holds it (4-byte length-prefixed NAL units for video);
//! malformed trailing data ends the frame's NAL units, nothing panics.

use std::sync::Arc;

use bytes::Bytes;

use crate::codec::{h264, h265};
use crate::media::CodecParams;

/// Largest RTP payload written: str0m's own packetizer budget for its
/// default 1150-byte datagram (minus the 16-byte SRTP tag, rounded down to
/// the 16-byte SRTP block).
pub const MAX_PAYLOAD: usize = 1120;

/// H.264 NAL unit type of a STAP-A (RFC 6184 §5.7.1).
const H264_STAP_A: u8 = 24;
/// H.264 NAL unit type of an FU-A (RFC 6184 §5.8).
const H264_FU_A: u8 = 28;
/// H.265 NAL unit types (ITU-T H.265 Table 7-1; RFC 7798 §4.4.2, §4.4.3).
const H265_VPS: u8 = 32;
const H265_PPS: u8 = 34;
const H265_AUD: u8 = 35;
const H265_AP: u8 = 48;
const H265_FU: u8 = 49;

/// The payload of one RTP packet of a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// The RTP payload (no header), shared by every session that sends it.
    pub data: Arc<[u8]>,
    /// The RTP marker bit.
    pub marker: bool,
    /// RTP time of this packet after the frame's, in the codec's clock (G.711
    /// parts after the first; 0 otherwise).
    pub time_offset: u32,
    /// The same bytes as `data`, as `Bytes` for vectored socket writes
    /// (RTSP readers): made once per packet, shared like `data`.
    pub bytes: Bytes,
}

impl Payload {
    pub fn new(data: Arc<[u8]>, marker: bool, time_offset: u32) -> Payload {
        let bytes = Bytes::from_owner(Arc::clone(&data));
        Payload {
            data,
            marker,
            time_offset,
            bytes,
        }
    }
}

/// The RTP payloads of one frame, in sending order. Empty for a frame that
/// cannot be sent as RTP (video without any NAL unit, an oversized AAC
/// access unit).
pub fn packetize(params: &CodecParams, keyframe: bool, data: &Bytes, max: usize) -> Vec<Payload> {
    let max = max.max(8);
    let mut out = Vec::new();
    match params {
        CodecParams::H264(p) => {
            let sets: Vec<&[u8]> = p.sps.iter().chain(&p.pps).map(|b| b.as_ref()).collect();
            video::<H264>(keyframe, &sets, data, max, &mut out);
        }
        CodecParams::H265(p) => {
            let sets: Vec<&[u8]> = p.parameter_sets.iter().map(|b| b.as_ref()).collect();
            video::<H265>(keyframe, &sets, data, max, &mut out);
        }
        CodecParams::Opus(_) => {
            if !data.is_empty() {
                out.push(Payload::new(Arc::from(&data[..]), false, 0));
            }
        }
        CodecParams::G711(_) => {
            let mut offset = 0usize;
            for part in data.chunks(max) {
                out.push(Payload::new(Arc::from(part), false, offset as u32));
                offset += part.len();
            }
        }
        CodecParams::Aac(_) => aac(data, max, &mut out),
    }
    out
}

/// A hub frame's RTP payloads at [`MAX_PAYLOAD`], packetized by the first
/// reader that sends it (WebRTC viewer or RTSP reader) and memoised on the
/// frame for every other.
pub fn of_frame(frame: &crate::media::Frame) -> Arc<[Payload]> {
    frame.memo.rtp_packets(|| {
        packetize(
            &frame.track.params,
            frame.keyframe,
            &frame.data,
            MAX_PAYLOAD,
        )
    })
}

/// RFC 3640 AAC-hbr (§3.3.6: `sizeLength=13`, `indexLength=3`,
/// `indexDeltaLength=3`, what the SDP of `egress::rtsp::sdp` announces): one
/// access unit per packet behind a 16-bit AU-headers-length (§3.2.1) and
/// one AU-header (size, index 0). An access unit larger than a packet is
/// fragmented (§3.2.3): every fragment carries the same AU-header with the
/// whole unit's size, and the marker bit is set on the last one only (§3.2.3;
/// on a whole unit it is set too, §3.3.6). Units over 8191 bytes (the 13-bit
/// size) are not sent: AAC frames are at most 6144 bits per channel.
fn aac(data: &Bytes, max: usize, out: &mut Vec<Payload>) {
    const HEADERS: usize = 4;
    let size = data.len();
    if size == 0 || size > 0x1fff {
        return;
    }
    let header = [0x00, 0x10, (size >> 5) as u8, ((size & 0x1f) << 3) as u8];
    let room = max.saturating_sub(HEADERS).max(1);
    let count = size.div_ceil(room);
    for (i, part) in data.chunks(room).enumerate() {
        let mut packet = Vec::with_capacity(HEADERS + part.len());
        packet.extend_from_slice(&header);
        packet.extend_from_slice(part);
        out.push(Payload::new(packet.into(), i + 1 == count, 0));
    }
}

/// What differs between H.264 and H.265 packetization.
trait NalSyntax {
    /// Length of the NAL unit header.
    const HEADER: usize;
    /// Whether to drop this NAL unit (access unit delimiters).
    fn dropped(nal: &[u8]) -> bool;
    /// Whether this NAL unit is a parameter set (aggregated in front).
    fn parameter_set(nal: &[u8]) -> bool;
    /// The header of an aggregation packet holding `nals`.
    fn aggregate_header(nals: &[&[u8]]) -> Vec<u8>;
    /// The payload header and FU header of a fragment of `nal`.
    fn fragment_header(nal: &[u8], start: bool, end: bool) -> Vec<u8>;
}

struct H264;

impl NalSyntax for H264 {
    const HEADER: usize = 1;

    fn dropped(nal: &[u8]) -> bool {
        h264::nal_type(nal) == Some(h264::NAL_AUD)
    }

    fn parameter_set(nal: &[u8]) -> bool {
        matches!(h264::nal_type(nal), Some(h264::NAL_SPS | h264::NAL_PPS))
    }

    /// RFC 6184 §5.7.1: F is the OR of the units' F bits, NRI their maximum.
    fn aggregate_header(nals: &[&[u8]]) -> Vec<u8> {
        let first = |n: &&[u8]| n.first().copied().unwrap_or(0);
        let f = nals.iter().map(first).fold(0, |a, b| a | (b & 0x80));
        let nri = nals.iter().map(|n| first(n) & 0x60).max().unwrap_or(0);
        vec![f | nri | H264_STAP_A]
    }

    /// RFC 6184 §5.8: FU indicator (F, NRI of the unit, type 28), FU header
    /// (S, E, R = 0, the unit's type).
    fn fragment_header(nal: &[u8], start: bool, end: bool) -> Vec<u8> {
        let b0 = nal.first().copied().unwrap_or(0);
        vec![
            (b0 & 0xe0) | H264_FU_A,
            (u8::from(start) << 7) | (u8::from(end) << 6) | (b0 & 0x1f),
        ]
    }
}

struct H265;

impl H265 {
    /// (F, type, LayerId, TID) of a two-byte H.265 NAL unit header (§7.3.1.2).
    fn fields(nal: &[u8]) -> (u8, u8, u8, u8) {
        let b0 = nal.first().copied().unwrap_or(0);
        let b1 = nal.get(1).copied().unwrap_or(0);
        (
            b0 >> 7,
            (b0 >> 1) & 0x3f,
            ((b0 & 1) << 5) | (b1 >> 3),
            b1 & 7,
        )
    }

    fn header(f: u8, typ: u8, layer: u8, tid: u8) -> [u8; 2] {
        [
            (f << 7) | (typ << 1) | (layer >> 5),
            ((layer & 0x1f) << 3) | tid,
        ]
    }
}

impl NalSyntax for H265 {
    const HEADER: usize = 2;

    fn dropped(nal: &[u8]) -> bool {
        nal.len() < 2 || h265::nal_type(nal) == Some(H265_AUD)
    }

    fn parameter_set(nal: &[u8]) -> bool {
        matches!(h265::nal_type(nal), Some(H265_VPS..=H265_PPS))
    }

    /// RFC 7798 §4.4.2: F is the OR of the units' F bits, LayerId and TID
    /// their minimum.
    fn aggregate_header(nals: &[&[u8]]) -> Vec<u8> {
        let fields: Vec<_> = nals.iter().map(|n| H265::fields(n)).collect();
        let f = fields.iter().fold(0, |a, x| a | x.0);
        let layer = fields.iter().map(|x| x.2).min().unwrap_or(0);
        let tid = fields.iter().map(|x| x.3).min().unwrap_or(0);
        H265::header(f, H265_AP, layer, tid).to_vec()
    }

    /// RFC 7798 §4.4.3: the unit's header with type 49, then the FU header
    /// (S, E, the unit's type).
    fn fragment_header(nal: &[u8], start: bool, end: bool) -> Vec<u8> {
        let (f, typ, layer, tid) = H265::fields(nal);
        let [a, b] = H265::header(f, H265_FU, layer, tid);
        vec![a, b, (u8::from(start) << 7) | (u8::from(end) << 6) | typ]
    }
}

/// One access unit: parameter sets aggregated in front of the picture, then
/// every other NAL unit alone or in fragments; the marker on the last packet.
fn video<S: NalSyntax>(
    keyframe: bool,
    track_sets: &[&[u8]],
    data: &Bytes,
    max: usize,
    out: &mut Vec<Payload>,
) {
    let nals: Vec<Bytes> = h264::avcc_nal_units(data)
        .filter(|n| !S::dropped(n))
        .collect();
    let in_band = nals.iter().any(|n| S::parameter_set(n));
    let mut sets: Vec<&[u8]> = if keyframe && !in_band {
        track_sets.to_vec()
    } else {
        Vec::new()
    };
    for nal in &nals {
        if S::parameter_set(nal) {
            sets.push(nal);
            continue;
        }
        flush_sets::<S>(&mut sets, max, out);
        single_or_fragments::<S>(nal, max, out);
    }
    flush_sets::<S>(&mut sets, max, out);
    if let Some(last) = out.last_mut() {
        last.marker = true;
    }
}

/// The pending parameter sets as one aggregation packet if it fits, else
/// one by one.
fn flush_sets<S: NalSyntax>(sets: &mut Vec<&[u8]>, max: usize, out: &mut Vec<Payload>) {
    sets.retain(|s| s.len() >= S::HEADER);
    let size = S::HEADER + sets.iter().map(|s| 2 + s.len()).sum::<usize>();
    if sets.len() > 1 && size <= max.min(usize::from(u16::MAX)) {
        let mut packet = S::aggregate_header(sets);
        packet.reserve(size);
        for s in sets.iter() {
            // Each fits in a packet, so its length fits in 16 bits.
            packet.extend_from_slice(&(s.len() as u16).to_be_bytes());
            packet.extend_from_slice(s);
        }
        out.push(payload(packet));
    } else {
        for s in sets.iter() {
            single_or_fragments::<S>(s, max, out);
        }
    }
    sets.clear();
}

/// A NAL unit as a single NAL unit packet, or in fragments of at most `max`
/// bytes (its header goes into each fragment's headers, not its payload).
fn single_or_fragments<S: NalSyntax>(nal: &[u8], max: usize, out: &mut Vec<Payload>) {
    if nal.len() <= max {
        out.push(Payload::new(Arc::from(nal), false, 0));
        return;
    }
    let Some(body) = nal.get(S::HEADER..) else {
        return;
    };
    let room = max - S::HEADER - 1;
    let count = body.len().div_ceil(room);
    for (i, part) in body.chunks(room).enumerate() {
        let mut packet = S::fragment_header(nal, i == 0, i + 1 == count);
        packet.extend_from_slice(part);
        out.push(payload(packet));
    }
}

fn payload(packet: Vec<u8>) -> Payload {
    Payload::new(Arc::from(packet), false, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{G711Law, G711Params, H264Params, OpusParams, testing};

    fn avcc(nals: &[&[u8]]) -> Bytes {
        let mut out = Vec::new();
        for n in nals {
            out.extend_from_slice(&(n.len() as u32).to_be_bytes());
            out.extend_from_slice(n);
        }
        out.into()
    }

    /// A NAL unit of `len` bytes with header byte `header` and a counting body.
    fn nal(header: u8, len: usize) -> Vec<u8> {
        std::iter::once(header)
            .chain((1..len).map(|i| (i % 251) as u8))
            .collect()
    }

    fn h264_params() -> CodecParams {
        let CodecParams::H264(p) = testing::h264(640) else {
            unreachable!()
        };
        CodecParams::H264(H264Params {
            sps: vec![Bytes::from(nal(0x67, 26))],
            pps: vec![Bytes::from(nal(0x68, 4))],
            ..p
        })
    }

    #[test]
    fn a_keyframe_gets_a_stap_a_of_its_parameter_sets_then_fu_a_fragments() {
        let sei = nal(0x06, 24);
        let idr = nal(0x65, 3000);
        let aud = [0x09, 0xf0];
        let frame = avcc(&[&aud, &sei, &idr]);
        let packets = packetize(&h264_params(), true, &frame, MAX_PAYLOAD);
        // STAP-A, SEI alone, then the IDR's 2999 body bytes in fragments
        // of MAX_PAYLOAD - 2.
        let fragments = 2999usize.div_ceil(MAX_PAYLOAD - 2);
        assert_eq!(packets.len(), 2 + fragments);
        let stap = &packets[0].data;
        assert_eq!(stap[0], 0x60 | H264_STAP_A, "NRI is the largest (3)");
        assert_eq!(&stap[1..3], &26u16.to_be_bytes());
        assert_eq!(&stap[3..29], &nal(0x67, 26)[..]);
        assert_eq!(&stap[29..31], &4u16.to_be_bytes());
        assert_eq!(&stap[31..], &nal(0x68, 4)[..]);
        assert_eq!(&packets[1].data[..], &sei[..], "no AUD, SEI alone");
        let mut body = Vec::new();
        for (i, p) in packets[2..].iter().enumerate() {
            assert!(p.data.len() <= MAX_PAYLOAD);
            assert_eq!(p.data[0], 0x60 | H264_FU_A, "FU indicator keeps NRI");
            let (s, e) = (p.data[1] & 0x80 != 0, p.data[1] & 0x40 != 0);
            assert_eq!((s, e), (i == 0, i + 1 == fragments), "fragment {i}");
            assert_eq!(p.data[1] & 0x3f, 5, "FU header: IDR type, R = 0");
            body.extend_from_slice(&p.data[2..]);
        }
        assert_eq!(body, idr[1..]);
        let markers: Vec<bool> = packets.iter().map(|p| p.marker).collect();
        assert_eq!(markers.iter().filter(|m| **m).count(), 1);
        assert!(packets.last().unwrap().marker, "marker on the last packet");
        assert!(packets.iter().all(|p| p.time_offset == 0));
    }

    #[test]
    fn fragment_boundaries_are_exact() {
        let params = h264_params();
        let one = |len: usize| packetize(&params, false, &avcc(&[&nal(0x41, len)]), 100);
        assert_eq!(one(100).len(), 1, "a NAL unit of exactly max is single");
        assert_eq!(one(100)[0].data.len(), 100);
        // 100 bytes of body per... 98 per fragment: 101 bytes = 100 body = 98 + 2.
        let two = one(101);
        assert_eq!(two.len(), 2);
        assert_eq!(two[0].data.len(), 100);
        assert_eq!(two[1].data.len(), 2 + 2);
        assert_eq!((two[0].data[1] >> 6, two[1].data[1] >> 6), (0b10, 0b01));
        // 1 + 3 × 98 bytes: three full fragments, no empty fourth.
        let three = one(1 + 3 * 98);
        assert_eq!(three.len(), 3);
        assert!(three.iter().all(|p| p.data.len() == 100));
        assert_eq!(
            three.iter().map(|p| p.marker).collect::<Vec<_>>(),
            [false, false, true]
        );
    }

    #[test]
    fn in_band_parameter_sets_replace_the_tracks_and_p_frames_get_none() {
        let params = h264_params();
        let sps = nal(0x67, 12);
        let pps = nal(0x68, 5);
        let idr = nal(0x65, 50);
        let packets = packetize(&params, true, &avcc(&[&sps, &pps, &idr]), MAX_PAYLOAD);
        assert_eq!(packets.len(), 2);
        assert_eq!(
            packets[0].data.len(),
            1 + 2 + 12 + 2 + 5,
            "in-band sets only"
        );
        assert_eq!(&packets[1].data[..], &idr[..]);
        let p = nal(0x41, 50);
        let packets = packetize(&params, false, &avcc(&[&p]), MAX_PAYLOAD);
        assert_eq!(packets.len(), 1, "no parameter sets before a P-frame");
        assert!(packets[0].marker);
        // Sets that do not fit one packet together go one by one.
        let packets = packetize(&params, true, &avcc(&[&idr]), 30);
        assert_eq!(packets[0].data.len(), 26);
        assert_eq!(packets[1].data.len(), 4);
    }

    #[test]
    fn h265_uses_aggregation_packets_and_fus() {
        let vps = [0x40, 0x01, 1, 2, 3];
        let sps = [0x42, 0x01, 4, 5, 6, 7];
        let pps = [0x44, 0x01, 8];
        let params = CodecParams::H265(crate::media::H265Params {
            hvcc: Bytes::new(),
            parameter_sets: vec![
                Bytes::copy_from_slice(&vps),
                Bytes::copy_from_slice(&sps),
                Bytes::copy_from_slice(&pps),
            ],
            codec: "hvc1".into(),
            width: 320,
            height: 240,
        });
        // IDR_W_RADL (19), TID 1.
        let mut idr = vec![19 << 1, 0x01];
        idr.extend((0..250).map(|i| i as u8));
        let packets = packetize(&params, true, &avcc(&[&[0x46, 0x01, 0x50], &idr]), 100);
        let ap = &packets[0].data;
        assert_eq!(h265::nal_type(ap), Some(H265_AP));
        assert_eq!(ap[1], 0x01, "LayerId 0, TID 1");
        assert_eq!(ap.len(), 2 + 3 * 2 + vps.len() + sps.len() + pps.len());
        let mut body = Vec::new();
        for (i, p) in packets[1..].iter().enumerate() {
            assert!(p.data.len() <= 100);
            assert_eq!(h265::nal_type(&p.data), Some(H265_FU));
            assert_eq!(p.data[2] & 0x3f, 19);
            assert_eq!(p.data[2] & 0x80 != 0, i == 0);
            body.extend_from_slice(&p.data[3..]);
        }
        assert_eq!(body, idr[2..], "the AUD (type 35) is dropped");
        assert!(packets.last().unwrap().marker);
    }

    #[test]
    fn audio_is_one_packet_per_frame_and_g711_is_split_with_its_rtp_times() {
        let opus = CodecParams::Opus(OpusParams { channels: 2 });
        let packets = packetize(&opus, true, &Bytes::from(vec![7u8; 160]), MAX_PAYLOAD);
        assert_eq!(packets.len(), 1);
        assert!(!packets[0].marker);
        let g711 = CodecParams::G711(G711Params {
            law: G711Law::ALaw,
            sample_rate: 8000,
            channels: 1,
        });
        let packets = packetize(&g711, true, &Bytes::from(vec![1u8; 250]), 100);
        let times: Vec<(usize, u32)> = packets
            .iter()
            .map(|p| (p.data.len(), p.time_offset))
            .collect();
        assert_eq!(times, [(100, 0), (100, 100), (50, 200)]);
        // AAC: the AU-header section (RFC 3640 §3.2.1) in front of the frame.
        let aac = packetize(&testing::aac(), true, &Bytes::from_static(b"aac"), 100);
        assert_eq!(aac.len(), 1);
        assert_eq!(
            &aac[0].data[..],
            &[0x00, 0x10, 0x00, 0x18, b'a', b'a', b'c']
        );
        assert!(aac[0].marker);
    }

    #[test]
    fn malformed_frames_end_where_their_nal_units_end() {
        let params = h264_params();
        let mut frame = avcc(&[&nal(0x41, 30)]).to_vec();
        frame.extend_from_slice(&[0, 0, 9, 0, 1, 2]); // a length past the end
        let packets = packetize(&params, false, &Bytes::from(frame), MAX_PAYLOAD);
        assert_eq!(packets.len(), 1);
        assert!(packetize(&params, false, &Bytes::from_static(&[0, 0]), MAX_PAYLOAD).is_empty());
        // Any bytes at all: no panic, no packet over the limit.
        let mut seed = 0x2545f491u32;
        for _ in 0..2000 {
            let len = (seed % 700) as usize;
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    if seed.is_multiple_of(5) {
                        0
                    } else {
                        seed as u8
                    }
                })
                .collect();
            for p in [&params, &h265_empty()] {
                for key in [false, true] {
                    let out = packetize(p, key, &Bytes::from(data.clone()), 64);
                    assert!(out.iter().all(|x| x.data.len() <= 64));
                }
            }
        }
    }

    fn h265_empty() -> CodecParams {
        CodecParams::H265(crate::media::H265Params {
            hvcc: Bytes::new(),
            parameter_sets: vec![],
            codec: "hvc1".into(),
            width: 1,
            height: 1,
        })
    }
}
