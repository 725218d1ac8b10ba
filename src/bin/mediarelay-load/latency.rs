//! The latency probe: the publisher stamps its wall-clock send time into
//! every H.264 frame as an SEI NAL unit (ITU-T H.264 §7.3.2.3, payload type
//! 5 `user_data_unregistered`, D.1.6/D.2.6: a 16-byte UUID then free bytes),
//! and viewers find the stamp in what they receive by searching for the
//! UUID, so the same probe works on RTMP tags, fMP4 parts and depacketized
//! RTP frames.
//!
//! The 56-bit timestamp (unix µs) is spread over 8 bytes of 7 bits each with
//! the top bit set, so no byte is below 0x80: the NAL unit never contains
//! `00 00 0x` and needs no emulation prevention bytes (§7.4.1), whatever the
//! time; the UUID was chosen without zero bytes for the same reason.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// The `uuid_iso_iec_11578` of mediarelay-load's stamps (no zero byte).
pub const UUID: [u8; 16] = [
    0x6d, 0x72, 0x2d, 0x6c, 0x6f, 0x61, 0x64, 0xa7, 0x5e, 0x1c, 0x4b, 0x9d, 0x83, 0xf1, 0x27, 0xc6,
];

/// NAL unit type 6 (SEI), nal_ref_idc 0 (§7.4.1).
const NAL_SEI: u8 = 6;
/// `user_data_unregistered` (§D.1.6).
const PAYLOAD_USER_DATA_UNREGISTERED: u8 = 5;
/// UUID + 8 timestamp bytes.
const PAYLOAD_SIZE: u8 = 24;
/// `rbsp_trailing_bits`: the stop bit and alignment zeros (§7.3.2.11).
const RBSP_STOP: u8 = 0x80;
/// The largest time the 56 bits hold.
const MAX_US: u64 = (1 << 56) - 1;

/// Microseconds since the unix epoch, now.
pub fn unix_us_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// 8 bytes, each `0x80 | 7 bits` of `us` (most significant first).
fn encode_time(us: u64) -> [u8; 8] {
    let us = us.min(MAX_US);
    std::array::from_fn(|i| 0x80 | ((us >> (7 * (7 - i))) & 0x7f) as u8)
}

fn decode_time(b: &[u8; 8]) -> Option<u64> {
    b.iter().try_fold(0u64, |acc, byte| {
        (byte & 0x80 != 0).then_some((acc << 7) | u64::from(byte & 0x7f))
    })
}

/// The SEI NAL unit (without length prefix or start code) carrying `us`:
/// header, payload type, payload size, UUID, time, RBSP stop byte.
pub fn sei_nal(us: u64) -> [u8; 28] {
    let mut nal = [0u8; 28];
    nal[0] = NAL_SEI;
    nal[1] = PAYLOAD_USER_DATA_UNREGISTERED;
    nal[2] = PAYLOAD_SIZE;
    nal[3..19].copy_from_slice(&UUID);
    nal[19..27].copy_from_slice(&encode_time(us));
    nal[27] = RBSP_STOP;
    nal
}

/// An FLV video tag body (E.4.3.1 of the FLV spec: frame type / codec id,
/// AVCPacketType, composition time, data) of an AVC NALU packet with the
/// stamp NAL unit put in front of the frame's NAL units, each prefixed with
/// `length_size` bytes (1, 2 or 4). `None` for any other tag (sequence
/// header, end of sequence, Enhanced RTMP, other codecs).
pub fn stamp_avc_tag(body: &[u8], length_size: u8, us: u64) -> Option<Vec<u8>> {
    let (&first, rest) = body.split_first()?;
    let is_avc = first & 0x80 == 0 && first & 0x0f == 7;
    if !is_avc || rest.first() != Some(&1) || body.len() < 5 {
        return None;
    }
    let nal = sei_nal(us);
    let len = nal.len();
    let prefix: Vec<u8> = match length_size {
        1 => vec![len as u8],
        2 => (len as u16).to_be_bytes().to_vec(),
        4 => (len as u32).to_be_bytes().to_vec(),
        _ => return None,
    };
    let mut out = Vec::with_capacity(body.len() + prefix.len() + len);
    out.extend_from_slice(body.get(..5)?);
    out.extend_from_slice(&prefix);
    out.extend_from_slice(&nal);
    out.extend_from_slice(body.get(5..)?);
    Some(out)
}

/// The NALU length size of an AVC sequence header tag body
/// (`lengthSizeMinusOne` + 1 of the AVCDecoderConfigurationRecord, ISO/IEC
/// 14496-15 §5.3.3.1), or `None` for any other tag.
pub fn avc_length_size(body: &[u8]) -> Option<u8> {
    let first = *body.first()?;
    if first & 0x80 != 0 || first & 0x0f != 7 || *body.get(1)? != 0 {
        return None;
    }
    Some((body.get(5 + 4)? & 3) + 1)
}

/// Every stamp in `data` (any framing: the UUID is searched for).
///
/// With a thousand players the load tool searches every frame each of them
/// receives (~250 MB/s at 2 Mbit/s): a byte-by-byte search for the UUID's
/// first byte was 41 % of its CPU with 1000 RTMP players, enough to fill its
/// core and make the players read late; `memmem` searches with SIMD.
pub fn find_stamps(data: &[u8]) -> impl Iterator<Item = u64> + '_ {
    memchr::memmem::find_iter(data, &UUID).filter_map(move |at| {
        let start = at + UUID.len();
        let time: &[u8; 8] = data.get(start..start + 8)?.try_into().ok()?;
        decode_time(time)
    })
}

/// Latency samples of one protocol: (arrival, unix µs; latency, µs),
/// bounded: past `MAX_SAMPLES` further samples are not kept.
#[derive(Default)]
pub struct Latencies {
    samples: Mutex<Vec<(u64, u32)>>,
}

/// At most this many samples per protocol (24 MiB).
const MAX_SAMPLES: usize = 2 << 20;

impl Latencies {
    /// Records `now_us − stamp_us` for every stamp in `data` sent at or
    /// after `since_us` (the viewer's arrival): frames sent before it are
    /// the server's cached GOP replayed to a new viewer, not live latency.
    pub fn record(&self, data: &[u8], now_us: u64, since_us: u64) {
        let mut stamps = find_stamps(data).filter(|us| *us >= since_us).peekable();
        if stamps.peek().is_none() {
            return;
        }
        let Ok(mut s) = self.samples.lock() else {
            return;
        };
        for stamp in stamps {
            if s.len() < MAX_SAMPLES {
                let latency = now_us.saturating_sub(stamp).min(u64::from(u32::MAX)) as u32;
                s.push((now_us, latency));
            }
        }
    }

    /// `{"samples", "p50", "p99", "max"}` in milliseconds, and the same of
    /// the samples that arrived from `steady_from_us` on (unix µs: e.g. the
    /// second half of the window, once viewers' starts are over) as
    /// `"steady"`.
    pub fn summary(&self, steady_from_us: u64) -> serde_json::Value {
        let all = self.samples.lock().map(|s| s.clone()).unwrap_or_default();
        let steady: Vec<u32> = all
            .iter()
            .filter(|(at, _)| *at >= steady_from_us)
            .map(|(_, l)| *l)
            .collect();
        let mut json = percentiles(all.into_iter().map(|(_, l)| l).collect());
        if let Some(o) = json.as_object_mut() {
            o.insert("steady".into(), percentiles(steady));
        }
        json
    }
}

fn percentiles(mut s: Vec<u32>) -> serde_json::Value {
    s.sort_unstable();
    let pct = |p: f64| {
        s.get(((s.len() as f64 - 1.0) * p).round() as usize)
            .map(|us| f64::from(*us) / 1000.0)
    };
    serde_json::json!({
        "samples": s.len(),
        "p50": pct(0.5),
        "p99": pct(0.99),
        "max": s.last().map(|us| f64::from(*us) / 1000.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame's body as an FLV AVC NALU tag: keyframe, NALU packet, CTS 0,
    /// one IDR NAL unit with a 4-byte length.
    fn tag(nal: &[u8]) -> Vec<u8> {
        let mut b = vec![0x17, 1, 0, 0, 0];
        b.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        b.extend_from_slice(nal);
        b
    }

    /// H.264 §7.4.1: within a NAL unit, `00 00` is never followed by a byte
    /// 00..=03 (emulation prevention would be needed).
    fn needs_emulation_prevention(nal: &[u8]) -> bool {
        nal.windows(3).any(|w| w[0] == 0 && w[1] == 0 && w[2] <= 3)
    }

    #[test]
    fn a_stamp_round_trips_through_a_tag_even_with_zero_bytes_in_the_time() {
        // Big-endian, these times hold 00 00 00 / 00 00 01 runs.
        for us in [
            0u64,
            1,
            0x0000_0100_0000_0003,
            1_764_000_000_000_000,
            MAX_US,
        ] {
            assert!(!needs_emulation_prevention(&sei_nal(us)), "{us}");
            let idr = [0x65, 0x88, 0x84, 0x00, 0x21];
            let stamped = stamp_avc_tag(&tag(&idr), 4, us).unwrap();
            assert_eq!(find_stamps(&stamped).collect::<Vec<_>>(), vec![us]);
            // The frame's own NAL unit follows, unchanged, with its length.
            assert!(stamped.ends_with(&[0, 0, 0, 5, 0x65, 0x88, 0x84, 0x00, 0x21]));
            // The SEI NAL unit is length-prefixed: 28 bytes.
            assert_eq!(stamped[5..9], [0, 0, 0, 28]);
            assert_eq!(stamped[9], 6);
        }
        // Times past 56 bits saturate instead of wrapping.
        let stamped = stamp_avc_tag(&tag(&[0x65]), 4, u64::MAX).unwrap();
        assert_eq!(find_stamps(&stamped).next(), Some(MAX_US));
    }

    #[test]
    fn the_stamp_uses_the_stream_s_length_size_and_skips_other_tags() {
        let mut two = vec![0x27, 1, 0, 0, 0, 0, 2, 0x41, 0x9a];
        let stamped = stamp_avc_tag(&two, 2, 42).unwrap();
        assert_eq!(stamped[5..7], [0, 28]);
        assert_eq!(&stamped[stamped.len() - 4..], &[0, 2, 0x41, 0x9a]);
        assert_eq!(find_stamps(&stamped).next(), Some(42));
        // A sequence header is not stamped; its length size is read.
        two[1] = 0;
        assert_eq!(stamp_avc_tag(&two, 4, 42), None);
        let header = [0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f, 0xfd];
        assert_eq!(avc_length_size(&header), Some(2));
        assert_eq!(avc_length_size(&tag(&[0x65])), None);
        // Enhanced RTMP and other codecs are left alone.
        assert_eq!(stamp_avc_tag(&[0x90, 1, 0, 0, 0], 4, 1), None);
        assert_eq!(stamp_avc_tag(&[0x12, 1, 0, 0, 0], 4, 1), None);
    }

    #[test]
    fn stamps_are_found_in_annex_b_and_several_frames_and_not_in_noise() {
        let mut annexb = vec![0, 0, 0, 1];
        annexb.extend_from_slice(&sei_nal(1000));
        annexb.extend_from_slice(&[0, 0, 0, 1, 0x65, 1, 2, 3]);
        annexb.extend_from_slice(&[0, 0, 0, 1]);
        annexb.extend_from_slice(&sei_nal(2000));
        assert_eq!(find_stamps(&annexb).collect::<Vec<_>>(), vec![1000, 2000]);
        // The UUID cut short or followed by bytes without the top bit.
        let mut cut = UUID.to_vec();
        cut.extend_from_slice(&[0x80, 0x80, 0x00, 0x80, 0x80, 0x80, 0x80, 0x80]);
        assert_eq!(find_stamps(&cut).count(), 0);
        assert_eq!(find_stamps(&UUID[..15]).count(), 0);
        let l = Latencies::default();
        l.record(&annexb, 3000, 0);
        l.record(b"no stamp here", 3000, 0);
        // Stamps from before the viewer came (the cached GOP) are left out.
        l.record(&annexb, 3000, 1500);
        l.record(&annexb, 4000, 1500);
        let s = l.summary(4000);
        assert_eq!(s["samples"], 4);
        assert_eq!(s["max"], 2.0);
        assert_eq!(s["p50"], 2.0);
        // Only the sample that arrived at 4000 µs is steady.
        assert_eq!(s["steady"]["samples"], 1);
        assert_eq!(s["steady"]["max"], 2.0);
    }
}
