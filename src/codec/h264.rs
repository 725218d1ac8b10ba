#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]
//! H.264 helpers: the AVCDecoderConfigurationRecord (ISO/IEC 14496-15
//! §5.3.3.1), length-prefixed NAL units (AVCC, ISO/IEC 14496-15 §5.3.2) and
//! their conversion to Annex B byte streams (ITU-T H.264 Annex B).
//!
//! Everything here parses bytes that a network peer sent: no function panics
//! on any input, and payloads are returned as [`Bytes`] slices of the input
//! wherever the layout allows it.

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

use crate::media::H264Params;

/// NAL unit type of an IDR picture slice (ITU-T H.264 Table 7-1).
pub const NAL_IDR: u8 = 5;
/// NAL unit type of a sequence parameter set (ITU-T H.264 Table 7-1).
pub const NAL_SPS: u8 = 7;
/// NAL unit type of a picture parameter set (ITU-T H.264 Table 7-1).
pub const NAL_PPS: u8 = 8;
/// NAL unit type of an access unit delimiter (ITU-T H.264 Table 7-1).
pub const NAL_AUD: u8 = 9;

/// The Annex B start code used for every NAL unit we write.
const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// Errors from H.264 parameter-set and NAL-unit parsing.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum H264Error {
    #[error(
        "AVCDecoderConfigurationRecord truncated: {field} needs {needed} byte(s) at offset {offset}, record is {len} bytes"
    )]
    Truncated {
        field: &'static str,
        offset: usize,
        needed: usize,
        len: usize,
    },
    #[error("AVCDecoderConfigurationRecord configurationVersion is {0}, expected 1")]
    Version(u8),
    #[error("invalid NAL unit length size {0} (must be 1, 2 or 4)")]
    LengthSize(u8),
    #[error("AVCDecoderConfigurationRecord carries no SPS")]
    NoSps,
    #[error("{kind} #{index} at offset {offset} of the AVCDecoderConfigurationRecord is empty")]
    EmptyParameterSet {
        kind: &'static str,
        index: usize,
        offset: usize,
    },
    #[error(
        "{kind} #{index} at offset {offset} of the AVCDecoderConfigurationRecord has NAL unit type {found}, expected {expected}"
    )]
    ParameterSetType {
        kind: &'static str,
        index: usize,
        offset: usize,
        found: u8,
        expected: u8,
    },
    #[error("invalid SPS: {reason}")]
    Sps { reason: String },
    #[error(
        "NAL length prefix at offset {offset} needs {length_size} bytes, only {remaining} left"
    )]
    TruncatedLength {
        offset: usize,
        length_size: u8,
        remaining: usize,
    },
    #[error("NAL unit at offset {offset} claims {length} bytes, only {remaining} left")]
    NalOverrun {
        offset: usize,
        length: usize,
        remaining: usize,
    },
    #[error("zero-length NAL unit at offset {offset}")]
    EmptyNal { offset: usize },
}

/// A parsed AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.3.3.1).
///
/// Parameter sets are slices of the record they were parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcDecoderConfig {
    /// `AVCProfileIndication`.
    pub profile_idc: u8,
    /// `profile_compatibility` (the constraint_set flags byte of the SPS).
    pub constraint_flags: u8,
    /// `AVCLevelIndication`.
    pub level_idc: u8,
    /// `lengthSizeMinusOne + 1`: 1, 2 or 4.
    pub length_size: u8,
    /// Sequence parameter sets, NAL units without length prefix.
    pub sps: Vec<Bytes>,
    /// Picture parameter sets, NAL units without length prefix.
    pub pps: Vec<Bytes>,
    /// Bytes after the PPS list (for High profiles: chroma_format,
    /// bit depths and SPS extensions, §5.3.3.1.2), kept verbatim.
    pub extension: Bytes,
}

/// A bounds-checked big-endian reader over a record.
struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a Bytes) -> Self {
        Reader { buf, pos: 0 }
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<Bytes, H264Error> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.buf.len())
            .ok_or(H264Error::Truncated {
                field,
                offset: self.pos,
                needed: n,
                len: self.buf.len(),
            })?;
        let out = self.buf.slice(self.pos..end);
        self.pos = end;
        Ok(out)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, H264Error> {
        let b = self.take(1, field)?;
        Ok(b.first().copied().unwrap_or_default())
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, H264Error> {
        let b = self.take(2, field)?;
        Ok(be_uint(&b) as u16)
    }

    fn rest(&mut self) -> Bytes {
        let out = self.buf.slice(self.pos.min(self.buf.len())..);
        self.pos = self.buf.len();
        out
    }
}

/// Reads a big-endian unsigned integer of up to 8 bytes.
fn be_uint(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

/// Reads `count` 16-bit-length-prefixed parameter sets of NAL type
/// `expected` (§5.3.3.1.2 `sequenceParameterSetNALUnit` /
/// `pictureParameterSetNALUnit`).
fn read_parameter_sets(
    r: &mut Reader<'_>,
    count: usize,
    kind: &'static str,
    expected: u8,
) -> Result<Vec<Bytes>, H264Error> {
    let mut out = Vec::with_capacity(count);
    for index in 0..count {
        let length = usize::from(r.u16(kind)?);
        let offset = r.pos;
        let nal = r.take(length, kind)?;
        let found = nal_type(&nal).ok_or(H264Error::EmptyParameterSet {
            kind,
            index,
            offset,
        })?;
        if found != expected {
            return Err(H264Error::ParameterSetType {
                kind,
                index,
                offset,
                found,
                expected,
            });
        }
        out.push(nal);
    }
    Ok(out)
}

impl AvcDecoderConfig {
    /// Parses an AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.3.3.1.2).
    ///
    /// `configurationVersion` must be 1, there must be at least one SPS, every
    /// parameter set must be non-empty and of the right NAL type, and
    /// `lengthSizeMinusOne` 2 (a 3-byte length, not allowed by the spec) is
    /// rejected. Reserved bits are not checked (encoders disagree on them).
    pub fn parse(record: &Bytes) -> Result<Self, H264Error> {
        let mut r = Reader::new(record);
        let version = r.u8("configurationVersion")?;
        if version != 1 {
            return Err(H264Error::Version(version));
        }
        let profile_idc = r.u8("AVCProfileIndication")?;
        let constraint_flags = r.u8("profile_compatibility")?;
        let level_idc = r.u8("AVCLevelIndication")?;
        let length_size = (r.u8("lengthSizeMinusOne")? & 0x03) + 1;
        if length_size == 3 {
            return Err(H264Error::LengthSize(length_size));
        }
        let num_sps = usize::from(r.u8("numOfSequenceParameterSets")? & 0x1f);
        if num_sps == 0 {
            return Err(H264Error::NoSps);
        }
        let sps = read_parameter_sets(&mut r, num_sps, "SPS", NAL_SPS)?;
        let num_pps = usize::from(r.u8("numOfPictureParameterSets")?);
        let pps = read_parameter_sets(&mut r, num_pps, "PPS", NAL_PPS)?;
        let extension = r.rest();
        Ok(AvcDecoderConfig {
            profile_idc,
            constraint_flags,
            level_idc,
            length_size,
            sps,
            pps,
            extension,
        })
    }

    /// Serialises the record (§5.3.3.1.2) with `lengthSizeMinusOne + 1 =
    /// length_size`. Values other than 1, 2 and 4 are written as 4.
    ///
    /// The format holds at most 31 SPS and 255 PPS of at most 65535 bytes
    /// each; a record from [`AvcDecoderConfig::parse`] always fits. Parameter
    /// sets beyond those limits (only possible for a hand-built value) are
    /// left out.
    pub fn to_record(&self, length_size: u8) -> Bytes {
        let length_size = if matches!(length_size, 1 | 2 | 4) {
            length_size
        } else {
            4
        };
        let fits = |nal: &&Bytes| nal.len() <= usize::from(u16::MAX);
        let sps: Vec<&Bytes> = self.sps.iter().filter(fits).take(31).collect();
        let pps: Vec<&Bytes> = self.pps.iter().filter(fits).take(255).collect();
        let sets_len: usize = sps.iter().chain(pps.iter()).map(|n| 2 + n.len()).sum();
        let mut out = BytesMut::with_capacity(7 + sets_len + self.extension.len());
        out.put_u8(1);
        out.put_u8(self.profile_idc);
        out.put_u8(self.constraint_flags);
        out.put_u8(self.level_idc);
        out.put_u8(0xfc | (length_size - 1));
        out.put_u8(0xe0 | sps.len() as u8);
        for nal in &sps {
            out.put_u16(nal.len() as u16);
            out.put_slice(nal);
        }
        out.put_u8(pps.len() as u8);
        for nal in &pps {
            out.put_u16(nal.len() as u16);
            out.put_slice(nal);
        }
        out.put_slice(&self.extension);
        out.freeze()
    }
}

/// Builds the protocol-neutral [`H264Params`] from an
/// AVCDecoderConfigurationRecord and returns them with the record's original
/// NAL length size (which the caller needs to normalise frames with
/// [`normalize_nal_lengths`]).
///
/// The record is rewritten with 4-byte NAL lengths. The first SPS is parsed
/// (ITU-T H.264 §7.3.2.1.1, via `shiguredo_mp4`) for the cropped picture
/// size; a broken SPS is an [`H264Error::Sps`]. `profile_idc`,
/// `constraint_flags` and `level_idc` are taken from the SPS itself (the
/// record's copies are sometimes wrong), so the codec string always
/// describes the bitstream.
pub fn h264_params(record: &Bytes) -> Result<(H264Params, u8), H264Error> {
    let config = AvcDecoderConfig::parse(record)?;
    let first = config.sps.first().ok_or(H264Error::NoSps)?;
    let sps = shiguredo_mp4::bitstream::h264::parse_sps(first).map_err(|e| H264Error::Sps {
        reason: if e.reason.is_empty() {
            format!("{:?}", e.kind)
        } else {
            e.reason
        },
    })?;
    let id = sps.profile_level_id;
    let params = H264Params {
        avcc: config.to_record(4),
        sps: config.sps.clone(),
        pps: config.pps.clone(),
        profile_idc: id.profile_idc,
        constraint_flags: id.profile_iop,
        level_idc: id.level_idc,
        width: sps.width,
        height: sps.height,
    };
    Ok((params, config.length_size))
}

/// Checks `length_size` is one the spec allows (1, 2 or 4).
fn check_length_size(length_size: u8) -> Result<(), H264Error> {
    match length_size {
        1 | 2 | 4 => Ok(()),
        other => Err(H264Error::LengthSize(other)),
    }
}

/// Walks length-prefixed NAL units and returns the byte range of each NAL
/// body, or the first structural error.
fn nal_ranges(
    data: &[u8],
    length_size: u8,
) -> impl Iterator<Item = Result<(usize, usize), H264Error>> + '_ {
    let ls = usize::from(length_size);
    let mut offset = 0usize;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || offset >= data.len() {
            return None;
        }
        let result = next_nal_range(data, offset, ls, length_size);
        match &result {
            Ok((_, end)) => offset = *end,
            Err(_) => failed = true,
        }
        Some(result)
    })
}

/// Reads one length prefix at `offset` and returns the NAL body's range.
fn next_nal_range(
    data: &[u8],
    offset: usize,
    ls: usize,
    length_size: u8,
) -> Result<(usize, usize), H264Error> {
    let remaining = data.len().saturating_sub(offset);
    let prefix = offset
        .checked_add(ls)
        .and_then(|end| data.get(offset..end))
        .ok_or(H264Error::TruncatedLength {
            offset,
            length_size,
            remaining,
        })?;
    let length = usize::try_from(be_uint(prefix)).unwrap_or(usize::MAX);
    if length == 0 {
        return Err(H264Error::EmptyNal { offset });
    }
    let start = offset + ls;
    let available = data.len() - start;
    if length > available {
        return Err(H264Error::NalOverrun {
            offset,
            length,
            remaining: available,
        });
    }
    Ok((start, start + length))
}

/// Rewrites NAL units with `length_size`-byte length prefixes (ISO/IEC
/// 14496-15 §5.3.2, as announced by the record's `lengthSizeMinusOne`) into
/// 4-byte prefixes, the form every [`crate::media::Frame`] carries.
///
/// With `length_size` 4 the data is only validated and returned as is (no
/// copy). Any length that runs past the end, a truncated length prefix, or a
/// zero-length NAL is an error carrying its offset. Empty input is returned
/// unchanged (it holds no NAL unit; whether that is acceptable is the
/// caller's call).
pub fn normalize_nal_lengths(data: Bytes, length_size: u8) -> Result<Bytes, H264Error> {
    check_length_size(length_size)?;
    let mut out_len = 0usize;
    for range in nal_ranges(&data, length_size) {
        let (start, end) = range?;
        out_len += 4 + (end - start);
    }
    if length_size == 4 {
        return Ok(data);
    }
    let mut out = BytesMut::with_capacity(out_len);
    for (start, end) in nal_ranges(&data, length_size).flatten() {
        if let Some(nal) = data.get(start..end) {
            out.put_u32(nal.len() as u32);
            out.put_slice(nal);
        }
    }
    Ok(out.freeze())
}

/// Iterator over the NAL units of 4-byte-length AVCC data, see
/// [`avcc_nal_units`].
#[derive(Debug, Clone)]
pub struct AvccNalUnits<'a> {
    data: &'a Bytes,
    offset: usize,
}

impl Iterator for AvccNalUnits<'_> {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        let (start, end) = next_avcc_nal(self.data, &mut self.offset)?;
        Some(self.data.slice(start..end))
    }
}

/// Advances `offset` over one NAL unit of 4-byte-length AVCC data and
/// returns its body's range. Zero-length units are skipped; at malformed
/// data `offset` jumps to the end and `None` is returned.
fn next_avcc_nal(data: &[u8], offset: &mut usize) -> Option<(usize, usize)> {
    while *offset < data.len() {
        match next_nal_range(data, *offset, 4, 4) {
            Ok((start, end)) => {
                *offset = end;
                return Some((start, end));
            }
            Err(H264Error::EmptyNal { .. }) => *offset += 4,
            Err(_) => *offset = data.len(),
        }
    }
    None
}

/// Iterates the NAL units of 4-byte-length AVCC data as [`Bytes`] slices
/// (no copies). Zero-length units are skipped; iteration stops at the first
/// malformed length (use [`normalize_nal_lengths`] to validate first).
pub fn avcc_nal_units(data: &Bytes) -> AvccNalUnits<'_> {
    AvccNalUnits { data, offset: 0 }
}

/// `nal_unit_type`: the low 5 bits of the NAL header byte (ITU-T H.264
/// §7.3.1). `None` for an empty slice.
pub fn nal_type(nal: &[u8]) -> Option<u8> {
    nal.first().map(|b| b & 0x1f)
}

/// Whether 4-byte-length AVCC data contains an IDR slice (NAL type 5).
pub fn contains_idr(avcc: &Bytes) -> bool {
    avcc_nal_units(avcc).any(|nal| nal_type(&nal) == Some(NAL_IDR))
}

/// Converts one access unit from 4-byte-length AVCC to Annex B (ITU-T H.264
/// Annex B, `00 00 00 01` before each NAL unit), in one allocation.
///
/// With `params`, the SPS and PPS are written into the access unit too (what
/// RTP/WebRTC packetizers need in front of an IDR). They go first, or right
/// after a leading access unit delimiter, which must stay the first NAL unit
/// of the access unit (§7.4.1.2.3). Malformed trailing data is dropped (the
/// conversion stops where [`avcc_nal_units`] stops).
pub fn avcc_to_annexb(avcc: &[u8], params: Option<&H264Params>) -> Bytes {
    let mut offset = 0;
    let ranges: Vec<(usize, usize)> =
        std::iter::from_fn(|| next_avcc_nal(avcc, &mut offset)).collect();
    let sets: Vec<&Bytes> = params
        .map(|p| p.sps.iter().chain(p.pps.iter()).collect())
        .unwrap_or_default();
    let size: usize = ranges
        .iter()
        .map(|(s, e)| e - s)
        .chain(sets.iter().map(|n| n.len()))
        .map(|len| START_CODE.len() + len)
        .sum();
    let mut out = BytesMut::with_capacity(size);
    let nals = ranges.iter().filter_map(|&(s, e)| avcc.get(s..e));
    let mut sets_written = sets.is_empty();
    for nal in nals {
        if !sets_written && nal_type(nal) != Some(NAL_AUD) {
            put_annexb(&mut out, sets.iter().map(|b| b.as_ref()));
            sets_written = true;
        }
        put_annexb(&mut out, std::iter::once(nal));
    }
    if !sets_written {
        put_annexb(&mut out, sets.iter().map(|b| b.as_ref()));
    }
    out.freeze()
}

/// Appends each NAL unit with a start code.
fn put_annexb<'a>(out: &mut BytesMut, nals: impl Iterator<Item = &'a [u8]>) {
    for nal in nals {
        out.put_slice(&START_CODE);
        out.put_slice(nal);
    }
}

/// How many frames may come before a frame in decoding order and after it
/// in output order (B-frames), from an SPS NAL unit (ITU-T H.264 E.2.1
/// `max_num_reorder_frames`). `Some(0)` when the profile or picture order
/// count type rules reordering out; `None` when the SPS does not say.
pub fn max_reorder_frames(sps_nal: &[u8]) -> Option<usize> {
    use h264_reader::nal::sps::{PicOrderCntType, SeqParameterSet};
    // Our own unescaping: h264-reader's `decode_nal` overflows on NAL units
    // shorter than two bytes. Its SPS parser is called on a complete RBSP,
    // and inside catch_unwind so a defect there cannot take the server down.
    let rbsp = unescape_rbsp(sps_nal.get(1..)?);
    let parsed = std::panic::catch_unwind(|| {
        SeqParameterSet::from_bits(h264_reader::rbsp::BitReader::new(rbsp.as_slice())).ok()
    });
    let sps = parsed.ok().flatten()?;
    if let Some(r) = sps
        .vui_parameters
        .as_ref()
        .and_then(|v| v.bitstream_restrictions.as_ref())
    {
        return usize::try_from(r.max_num_reorder_frames).ok();
    }
    let baseline = u8::from(sps.profile_idc) == 66;
    if baseline || matches!(sps.pic_order_cnt, PicOrderCntType::TypeTwo) {
        return Some(0);
    }
    None
}

/// Removes emulation prevention bytes (`00 00 03` → `00 00`, ITU-T H.264
/// §7.4.1) from a NAL unit payload.
pub fn unescape_rbsp(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len());
    let mut zeros = 0;
    for &b in payload {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// The NAL units of an Annex B byte stream (ITU-T H.264 Annex B: each
/// preceded by a 3- or 4-byte start code), without their start codes.
pub fn annexb_nal_units(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let starts = start_codes(data);
    let ends: Vec<usize> = starts
        .iter()
        .skip(1)
        .map(|&(at, _)| at)
        .chain(std::iter::once(data.len()))
        .collect();
    starts
        .into_iter()
        .zip(ends)
        .filter_map(move |((at, len), end)| {
            let mut nal = data.get(at + len..end)?;
            // A 4-byte start code that follows leaves a trailing zero.
            while let [rest @ .., 0] = nal {
                nal = rest;
            }
            (!nal.is_empty()).then_some(nal)
        })
}

/// Positions and lengths of the `00 00 01` start codes.
fn start_codes(data: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data.get(i..i + 3) == Some(&[0, 0, 1][..]) {
            out.push((i, 3));
            i += 3;
        } else {
            i += 1;
        }
    }
    out
}

/// Length-prefixed (4-byte) NAL units from Annex B, leaving out the parameter
/// sets and access unit delimiters (they travel in the track parameters).
/// Returns the AVCC bytes, the SPS and PPS seen, and whether there is an IDR.
pub fn annexb_to_avcc(data: &[u8]) -> (Bytes, Vec<Bytes>, Vec<Bytes>, bool) {
    let mut out = Vec::with_capacity(data.len());
    let (mut sps, mut pps, mut idr) = (Vec::new(), Vec::new(), false);
    for nal in annexb_nal_units(data) {
        match nal_type(nal) {
            Some(NAL_SPS) => sps.push(Bytes::copy_from_slice(nal)),
            Some(NAL_PPS) => pps.push(Bytes::copy_from_slice(nal)),
            Some(NAL_AUD) => {}
            t => {
                idr |= t == Some(NAL_IDR);
                out.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                out.extend_from_slice(nal);
            }
        }
    }
    (Bytes::from(out), sps, pps, idr)
}

/// An AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.3.3.1) for these
/// parameter sets, with 4-byte NAL lengths; for High profiles with the
/// chroma format and bit depths of 4:2:0 8-bit, as cameras and browsers send.
pub fn record_from_parameter_sets(sps: &[Bytes], pps: &[Bytes]) -> Option<Bytes> {
    let first = sps.first()?;
    let (&profile, &compat, &level) = (first.get(1)?, first.get(2)?, first.get(3)?);
    let extension = if matches!(profile, 66 | 77 | 88) {
        Bytes::new()
    } else {
        // chroma_format_idc 1, bit depths 8, no SPS extensions.
        Bytes::from_static(&[0xfd, 0xf8, 0xf8, 0x00])
    };
    let config = AvcDecoderConfig {
        profile_idc: profile,
        constraint_flags: compat,
        level_idc: level,
        length_size: 4,
        sps: sps.to_vec(),
        pps: pps.to_vec(),
        extension,
    };
    Some(config.to_record(4))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    fn hex(s: &str) -> Bytes {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        Bytes::from(
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect::<Vec<u8>>(),
        )
    }

    /// avcC from `ffmpeg -f lavfi -i testsrc=size=640x360:rate=30 -pix_fmt
    /// yuv420p -c:v libx264 -profile:v high -f flv`: the AVC sequence header
    /// tag body minus its 5-byte header.
    const HIGH_640X360: &str = "0164001effe1001a6764001eacd940a02ff970110000030001000003003c0f162d9601000668ebe3cb22c0fdf8f800";
    /// avcC from the same command with `size=320x240 -profile:v baseline`.
    const BASELINE_320X240: &str =
        "0142c00dffe100186742c00dd90141fb0110000003001000000303c0f142a48001000568cb83cb20";

    #[test]
    fn parses_high_profile_record() {
        let record = hex(HIGH_640X360);
        let config = AvcDecoderConfig::parse(&record).unwrap();
        assert_eq!(config.profile_idc, 100);
        assert_eq!(config.constraint_flags, 0);
        assert_eq!(config.level_idc, 30);
        assert_eq!(config.length_size, 4);
        assert_eq!(config.sps.len(), 1);
        assert_eq!(config.sps[0].len(), 0x1a);
        assert_eq!(config.pps, vec![hex("68ebe3cb22c0")]);
        assert_eq!(config.extension, hex("fdf8f800"));
        // Zero copy: the SPS points into the record.
        assert_eq!(config.sps[0].as_ptr(), record[8..].as_ptr());
        assert_eq!(config.to_record(4), record);

        let (params, length_size) = h264_params(&record).unwrap();
        assert_eq!(length_size, 4);
        assert_eq!((params.width, params.height), (640, 360));
        assert_eq!(params.codec_string(), "avc1.64001e");
        assert_eq!(params.avcc, record);
        assert_eq!(params.sps, config.sps);
        assert_eq!(params.pps, config.pps);
    }

    #[test]
    fn annexb_round_trip() {
        let record = hex(BASELINE_320X240);
        let config = AvcDecoderConfig::parse(&record).unwrap();
        let mut annexb = vec![0, 0, 0, 1, 9, 0xf0];
        annexb.extend_from_slice(&[0, 0, 0, 1]);
        annexb.extend_from_slice(&config.sps[0]);
        annexb.extend_from_slice(&[0, 0, 1]);
        annexb.extend_from_slice(&config.pps[0]);
        annexb.extend_from_slice(&[0, 0, 0, 1, 0x65, 0x88, 0x84, 0x00, 0x10]);
        let nals: Vec<&[u8]> = annexb_nal_units(&annexb).collect();
        assert_eq!(nals.len(), 4);
        assert_eq!(nals[3], &[0x65, 0x88, 0x84, 0x00, 0x10]);
        let (avcc, sps, pps, idr) = annexb_to_avcc(&annexb);
        assert!(idr);
        assert_eq!(sps, config.sps);
        assert_eq!(pps, config.pps);
        assert_eq!(&avcc[..], &[0, 0, 0, 5, 0x65, 0x88, 0x84, 0x00, 0x10]);
        let rebuilt = record_from_parameter_sets(&sps, &pps).unwrap();
        let (params, _) = h264_params(&rebuilt).unwrap();
        assert_eq!((params.width, params.height), (320, 240));
        assert!(annexb_nal_units(&[0, 0, 1]).next().is_none());
        assert!(annexb_nal_units(&[1, 2, 3]).next().is_none());
    }

    #[test]
    fn reorder_depth_from_the_sps() {
        // x264 High with B-frames writes bitstream_restriction: 2 reordered frames.
        let high = AvcDecoderConfig::parse(&hex(HIGH_640X360)).unwrap();
        assert_eq!(max_reorder_frames(&high.sps[0]), Some(2));
        let baseline = AvcDecoderConfig::parse(&hex(BASELINE_320X240)).unwrap();
        assert_eq!(max_reorder_frames(&baseline.sps[0]), Some(0));
        assert_eq!(max_reorder_frames(&[0x67, 0xff]), None);
        assert_eq!(max_reorder_frames(&[]), None);
        assert_eq!(max_reorder_frames(&[0x67]), None);
        assert_eq!(unescape_rbsp(&[0, 0, 3, 1, 0, 0, 3]), vec![0, 0, 1, 0, 0]);
        // Random and mutated SPSs never panic.
        use rand::{Rng, SeedableRng, rngs::StdRng};
        let mut rng = StdRng::seed_from_u64(5);
        let base = high.sps[0].to_vec();
        for _ in 0..5000 {
            let mut m = base.clone();
            for _ in 0..rng.gen_range(1..6) {
                let i = rng.gen_range(0..m.len());
                m[i] = rng.r#gen();
            }
            m.truncate(rng.gen_range(0..=m.len()));
            let _ = max_reorder_frames(&m);
        }
    }

    #[test]
    fn parses_baseline_record() {
        let record = hex(BASELINE_320X240);
        let (params, length_size) = h264_params(&record).unwrap();
        assert_eq!(length_size, 4);
        assert_eq!((params.width, params.height), (320, 240));
        assert_eq!(params.profile_idc, 66);
        assert_eq!(params.constraint_flags, 0xc0);
        assert_eq!(params.codec_string(), "avc1.42c00d");
        let config = AvcDecoderConfig::parse(&record).unwrap();
        assert!(config.extension.is_empty());
    }

    #[test]
    fn rewrites_record_length_size() {
        let mut raw = hex(HIGH_640X360).to_vec();
        raw[4] = 0xfd; // lengthSizeMinusOne = 1
        let record = Bytes::from(raw);
        let (params, length_size) = h264_params(&record).unwrap();
        assert_eq!(length_size, 2);
        assert_eq!(params.avcc, hex(HIGH_640X360));
        let back = AvcDecoderConfig::parse(&params.avcc).unwrap();
        assert_eq!(back.length_size, 4);
        let one = AvcDecoderConfig::parse(&record).unwrap().to_record(1);
        assert_eq!(AvcDecoderConfig::parse(&one).unwrap().length_size, 1);
        // Invalid sizes are written as 4.
        let three = AvcDecoderConfig::parse(&record).unwrap().to_record(3);
        assert_eq!(three, hex(HIGH_640X360));
    }

    #[test]
    fn corrupted_sps_is_an_error() {
        let mut raw = hex(HIGH_640X360).to_vec();
        // Truncate the SPS to its first 5 bytes (header, profile, flags,
        // level, and part of the first Exp-Golomb codes): it parses as a
        // record but the SPS runs out before the picture size.
        let sps_len_at = 6;
        raw[sps_len_at] = 0;
        raw[sps_len_at + 1] = 4;
        raw.drain(8 + 4..8 + 0x1a);
        let record = Bytes::from(raw);
        AvcDecoderConfig::parse(&record).unwrap();
        match h264_params(&record) {
            Err(H264Error::Sps { reason }) => assert!(!reason.is_empty()),
            other => panic!("expected an SPS error, got {other:?}"),
        }
        // chroma_format_idc out of range: profile 100, seq_parameter_set_id
        // ue(v) "1" = 0, chroma_format_idc ue(v) "0001000" = 7.
        let err = h264_params(&hex("0164001effe10005 6764001e88 00")).unwrap_err();
        assert!(matches!(err, H264Error::Sps { .. }), "{err:?}");
    }

    #[test]
    fn rejects_malformed_records() {
        let good = hex(HIGH_640X360);
        assert!(matches!(
            AvcDecoderConfig::parse(&Bytes::new()),
            Err(H264Error::Truncated {
                field: "configurationVersion",
                offset: 0,
                ..
            })
        ));
        let mut v = good.to_vec();
        v[0] = 0;
        assert_eq!(
            AvcDecoderConfig::parse(&Bytes::from(v)),
            Err(H264Error::Version(0))
        );
        let mut v = good.to_vec();
        v[4] = 0xfe;
        assert_eq!(
            AvcDecoderConfig::parse(&Bytes::from(v)),
            Err(H264Error::LengthSize(3))
        );
        let mut v = good.to_vec();
        v[5] = 0xe0;
        assert_eq!(
            AvcDecoderConfig::parse(&Bytes::from(v)),
            Err(H264Error::NoSps)
        );
        // SPS length lies.
        let mut v = good.to_vec();
        v[7] = 0xff;
        assert_eq!(
            AvcDecoderConfig::parse(&Bytes::from(v)),
            Err(H264Error::Truncated {
                field: "SPS",
                offset: 8,
                needed: 0xff,
                len: good.len()
            })
        );
        // Truncated in the PPS list.
        let cut = good.slice(..good.len() - 7);
        assert!(matches!(
            AvcDecoderConfig::parse(&cut),
            Err(H264Error::Truncated { field: "PPS", .. })
        ));
        // A PPS where an SPS belongs.
        let err = AvcDecoderConfig::parse(&hex("0164001effe1000168 01 0001 68")).unwrap_err();
        assert_eq!(
            err,
            H264Error::ParameterSetType {
                kind: "SPS",
                index: 0,
                offset: 8,
                found: 8,
                expected: 7
            }
        );
        let err = AvcDecoderConfig::parse(&hex("0164001effe10000 00")).unwrap_err();
        assert!(matches!(
            err,
            H264Error::EmptyParameterSet { kind: "SPS", .. }
        ));
    }

    /// Builds length-prefixed data from NAL units.
    fn prefixed(nals: &[&[u8]], length_size: usize) -> Bytes {
        let mut out = Vec::new();
        for nal in nals {
            let len = (nal.len() as u64).to_be_bytes();
            out.extend_from_slice(&len[8 - length_size..]);
            out.extend_from_slice(nal);
        }
        Bytes::from(out)
    }

    const NALS: [&[u8]; 3] = [
        &[0x06, 0x05, 0x01, 0x80],
        &[0x65, 0x88, 0x84, 0x00, 0x33],
        &[0x41],
    ];

    #[test]
    fn normalizes_length_sizes() {
        let want = prefixed(&NALS, 4);
        for ls in [1u8, 2] {
            let got = normalize_nal_lengths(prefixed(&NALS, ls.into()), ls).unwrap();
            assert_eq!(got, want, "length size {ls}");
        }
        let same = normalize_nal_lengths(want.clone(), 4).unwrap();
        assert_eq!(same.as_ptr(), want.as_ptr(), "length size 4 must not copy");
        assert_eq!(
            normalize_nal_lengths(Bytes::new(), 2).unwrap(),
            Bytes::new()
        );
        assert_eq!(
            normalize_nal_lengths(want.clone(), 3),
            Err(H264Error::LengthSize(3))
        );
    }

    #[test]
    fn lying_lengths_are_errors() {
        let mut v = prefixed(&NALS, 4).to_vec();
        v[8 + 3] = 0x7f; // second NAL claims 127 bytes
        assert_eq!(
            normalize_nal_lengths(Bytes::from(v), 4),
            Err(H264Error::NalOverrun {
                offset: 8,
                length: 0x7f,
                remaining: 10
            })
        );
        let v = prefixed(&NALS, 2);
        assert_eq!(
            normalize_nal_lengths(v.slice(..v.len() - 2), 2),
            Err(H264Error::TruncatedLength {
                offset: 13,
                length_size: 2,
                remaining: 1
            })
        );
        assert_eq!(
            normalize_nal_lengths(Bytes::from_static(&[0, 0, 0, 0, 0x41]), 4),
            Err(H264Error::EmptyNal { offset: 0 })
        );
        // 4-byte length with the top bit set (> isize on 32-bit, huge on 64).
        assert!(matches!(
            normalize_nal_lengths(Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0x41]), 4),
            Err(H264Error::NalOverrun { offset: 0, .. })
        ));
    }

    #[test]
    fn iterates_nal_units_and_finds_idr() {
        let data = prefixed(&NALS, 4);
        let nals: Vec<Bytes> = avcc_nal_units(&data).collect();
        assert_eq!(nals.len(), 3);
        assert_eq!(&nals[1][..], NALS[1]);
        assert_eq!(nals[1].as_ptr(), data[8 + 4..].as_ptr());
        assert_eq!(
            nals.iter().map(|n| nal_type(n)).collect::<Vec<_>>(),
            vec![Some(6), Some(5), Some(1)]
        );
        assert!(contains_idr(&data));
        assert!(!contains_idr(&prefixed(&[NALS[0], NALS[2]], 4)));
        assert_eq!(nal_type(&[]), None);
        // Stops at malformed data, skips empty units.
        let mut v = vec![0, 0, 0, 0];
        v.extend_from_slice(&data);
        v.extend_from_slice(&[0, 0, 0, 9, 1]);
        let v = Bytes::from(v);
        assert_eq!(avcc_nal_units(&v).count(), 3);
    }

    #[test]
    fn converts_to_annexb() {
        let data = prefixed(&NALS, 4);
        let out = avcc_to_annexb(&data, None);
        let mut want = Vec::new();
        for nal in NALS {
            want.extend_from_slice(&START_CODE);
            want.extend_from_slice(nal);
        }
        assert_eq!(&out[..], &want[..]);

        let (params, _) = h264_params(&hex(HIGH_640X360)).unwrap();
        let out = avcc_to_annexb(&data, Some(&params));
        let mut want = Vec::new();
        for nal in [&params.sps[0][..], &params.pps[0][..]]
            .into_iter()
            .chain(NALS)
        {
            want.extend_from_slice(&START_CODE);
            want.extend_from_slice(nal);
        }
        assert_eq!(&out[..], &want[..]);

        // An access unit delimiter stays first.
        let aud: &[u8] = &[0x09, 0xf0];
        let data = prefixed(&[aud, NALS[1]], 4);
        let out = avcc_to_annexb(&data, Some(&params));
        let mut want = Vec::new();
        for nal in [aud, &params.sps[0][..], &params.pps[0][..], NALS[1]] {
            want.extend_from_slice(&START_CODE);
            want.extend_from_slice(nal);
        }
        assert_eq!(&out[..], &want[..]);
        // Parameter sets alone if the access unit is empty.
        let out = avcc_to_annexb(&[], Some(&params));
        assert_eq!(out.len(), 8 + params.sps[0].len() + params.pps[0].len());
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = StdRng::seed_from_u64(0x264);
        let seed = hex(HIGH_640X360).to_vec();
        for i in 0..10_000 {
            let data: Vec<u8> = if i % 2 == 0 {
                let len = rng.gen_range(0..64);
                (0..len).map(|_| rng.r#gen()).collect()
            } else {
                // Mutate a real record so parsing gets past the header.
                let mut v = seed.clone();
                for _ in 0..rng.gen_range(1..4) {
                    let at = rng.gen_range(0..v.len());
                    v[at] = rng.r#gen();
                }
                v.truncate(rng.gen_range(0..=v.len()));
                v
            };
            let data = Bytes::from(data);
            let _ = AvcDecoderConfig::parse(&data).map(|c| c.to_record(4));
            let _ = h264_params(&data);
            for ls in [1, 2, 3, 4] {
                let _ = normalize_nal_lengths(data.clone(), ls);
            }
            let _ = avcc_nal_units(&data).count();
            let _ = contains_idr(&data);
            let _ = avcc_to_annexb(&data, None);
        }
    }
}
