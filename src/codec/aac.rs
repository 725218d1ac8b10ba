#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]
//! AAC: the AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1) as carried in an
//! RTMP AAC sequence header, an `esds` box or an SDP `config=` parameter.
//!
//! Supported audio object types: AAC Main (1), AAC-LC (2), AAC-LTP (4), and
//! SBR (5, HE-AAC) / PS (29, HE-AACv2) on top of one of those. Everything
//! else (SSR, the ER tools, USAC, …) is rejected with
//! [`AacError::UnsupportedObjectType`].
//!
//! `channelConfiguration` 0 means the channel layout is described by a
//! program_config_element (§4.4.1.1, Table 4.2) inside the GASpecificConfig:
//! we read it and count its channels (front/side/back elements, a channel
//! pair counting two, plus LFE), rather than guessing stereo. A PCE that
//! describes no channel is an error.

use bytes::Bytes;
use thiserror::Error;

use crate::media::AacParams;

/// Errors from AudioSpecificConfig parsing.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AacError {
    #[error(
        "AudioSpecificConfig truncated: {field} needs {bits} bit(s) at bit offset {bit_offset}, config is {len} bytes"
    )]
    Truncated {
        field: &'static str,
        bit_offset: usize,
        bits: u32,
        len: usize,
    },
    #[error(
        "unsupported AAC audio object type {object_type} (supported: 1, 2, 4, and 5/29 over them)"
    )]
    UnsupportedObjectType { object_type: u8 },
    #[error("unsupported audio object type {object_type} under SBR/PS (object type {extension})")]
    UnsupportedCoreObjectType { extension: u8, object_type: u8 },
    #[error("reserved {field} {index}")]
    ReservedSamplingFrequencyIndex { field: &'static str, index: u8 },
    #[error("explicit {field} is 0 Hz")]
    ZeroSamplingFrequency { field: &'static str },
    #[error("unsupported channelConfiguration {0}")]
    UnsupportedChannelConfiguration(u8),
    #[error("program_config_element describes no channels")]
    NoChannels,
}

/// Reads bits MSB first, with errors that name the field being read.
struct BitReader<'a> {
    data: &'a [u8],
    /// Position in bits from the start of `data`.
    pos: usize,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        BitReader { data, pos: 0 }
    }

    fn remaining(&self) -> usize {
        (self.data.len() * 8).saturating_sub(self.pos)
    }

    /// Reads `bits` (at most 32) bits.
    fn read(&mut self, bits: u32, field: &'static str) -> Result<u32, AacError> {
        if bits as usize > self.remaining() || bits > 32 {
            return Err(AacError::Truncated {
                field,
                bit_offset: self.pos,
                bits,
                len: self.data.len(),
            });
        }
        let mut value = 0u32;
        for _ in 0..bits {
            let byte = self.data.get(self.pos / 8).copied().unwrap_or_default();
            let bit = (byte >> (7 - (self.pos % 8))) & 1;
            value = (value << 1) | u32::from(bit);
            self.pos += 1;
        }
        Ok(value)
    }

    fn read_u8(&mut self, bits: u32, field: &'static str) -> Result<u8, AacError> {
        // `bits` is at most 8 at every call site.
        Ok(self.read(bits.min(8), field)? as u8)
    }

    fn flag(&mut self, field: &'static str) -> Result<bool, AacError> {
        Ok(self.read(1, field)? == 1)
    }
}

/// Sampling frequencies by `samplingFrequencyIndex` (§1.6.3.4, Table 1.18).
const SAMPLING_FREQUENCIES: [u32; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    7_350,
];

/// `GetAudioObjectType()` (§1.6.2.1, Table 1.14): 5 bits, 31 escapes to
/// `32 + audioObjectTypeExt` (6 bits).
fn read_object_type(r: &mut BitReader<'_>, field: &'static str) -> Result<u8, AacError> {
    let aot = r.read_u8(5, field)?;
    if aot == 31 {
        Ok(32 + r.read_u8(6, field)?)
    } else {
        Ok(aot)
    }
}

/// `samplingFrequencyIndex` (4 bits) with the `0xF` escape to a 24-bit
/// explicit `samplingFrequency` (§1.6.2.1).
fn read_sampling_frequency(r: &mut BitReader<'_>, field: &'static str) -> Result<u32, AacError> {
    let index = r.read_u8(4, field)?;
    if index == 0x0f {
        let rate = r.read(24, field)?;
        if rate == 0 {
            return Err(AacError::ZeroSamplingFrequency { field });
        }
        return Ok(rate);
    }
    SAMPLING_FREQUENCIES
        .get(usize::from(index))
        .copied()
        .ok_or(AacError::ReservedSamplingFrequencyIndex { field, index })
}

/// Channels for `channelConfiguration` 1..=7 (§1.6.3.5, Table 1.19) and the
/// later additions 11 (6.1), 12 (7.1 rear) and 14 (7.1 top front).
fn channels_for_configuration(config: u8) -> Option<u8> {
    match config {
        1..=6 => Some(config),
        7 | 12 | 14 => Some(8),
        11 => Some(7),
        _ => None,
    }
}

/// Object types whose payload uses the GASpecificConfig and that we accept.
fn is_supported_core(object_type: u8) -> bool {
    matches!(object_type, 1 | 2 | 4)
}

/// Counts the channels of a program_config_element (§4.4.1.1, Table 4.2).
/// Reads only up to the LFE elements, which is all the count needs.
fn pce_channels(r: &mut BitReader<'_>) -> Result<u8, AacError> {
    let _element_instance_tag = r.read(4, "PCE element_instance_tag")?;
    let _object_type = r.read(2, "PCE object_type")?;
    let _sampling_frequency_index = r.read(4, "PCE sampling_frequency_index")?;
    let front = r.read(4, "PCE num_front_channel_elements")?;
    let side = r.read(4, "PCE num_side_channel_elements")?;
    let back = r.read(4, "PCE num_back_channel_elements")?;
    let lfe = r.read(2, "PCE num_lfe_channel_elements")?;
    let _assoc_data = r.read(3, "PCE num_assoc_data_elements")?;
    let _valid_cc = r.read(4, "PCE num_valid_cc_elements")?;
    if r.flag("PCE mono_mixdown_present")? {
        r.read(4, "PCE mono_mixdown_element_number")?;
    }
    if r.flag("PCE stereo_mixdown_present")? {
        r.read(4, "PCE stereo_mixdown_element_number")?;
    }
    if r.flag("PCE matrix_mixdown_idx_present")? {
        r.read(3, "PCE matrix_mixdown_idx")?;
    }
    let mut channels = lfe;
    for _ in 0..(front + side + back) {
        let is_cpe = r.read(1, "PCE channel element is_cpe")?;
        r.read(4, "PCE channel element tag_select")?;
        channels += 1 + is_cpe;
    }
    match channels {
        0 => Err(AacError::NoChannels),
        // At most 15 * 3 elements of 2 channels plus 3 LFE: always fits.
        n => Ok(n.min(255) as u8),
    }
}

/// The parts of GASpecificConfig (§4.4.1, Table 4.1) we need: the frame
/// length, and the channel count when a PCE carries it. Without a PCE the
/// reader is left at the end of the GASpecificConfig.
fn ga_specific_config(
    r: &mut BitReader<'_>,
    channel_configuration: u8,
) -> Result<(u32, Option<u8>), AacError> {
    let samples_per_frame = if r.flag("frameLengthFlag")? {
        960
    } else {
        1024
    };
    if r.flag("dependsOnCoreCoder")? {
        r.read(14, "coreCoderDelay")?;
    }
    let extension_flag = r.flag("extensionFlag")?;
    if channel_configuration == 0 {
        // The PCE's tail (comments) is not read: the reader's position is
        // unknown afterwards, and the caller must not read on.
        return Ok((samples_per_frame, Some(pce_channels(r)?)));
    }
    // Object types 6 and 20 (layerNr) and the ER extension fields do not
    // apply to the object types we accept; extensionFlag3 is a single bit.
    if extension_flag {
        r.flag("extensionFlag3")?;
    }
    Ok((samples_per_frame, None))
}

/// Looks for backward-compatible explicit SBR/PS signalling (§1.6.5.2): a
/// `syncExtensionType` 0x2b7 after the core config announcing SBR, possibly
/// followed by 0x548 announcing PS. Returns the object type to advertise
/// (5 or 29) if SBR is present. Anything unexpected means "no extension":
/// trailing bits are not an error.
fn sync_extension(r: &mut BitReader<'_>) -> Option<u8> {
    if r.remaining() < 16 || r.read(11, "syncExtensionType").ok()? != 0x2b7 {
        return None;
    }
    if read_object_type(r, "extensionAudioObjectType").ok()? != 5 {
        return None;
    }
    if !r.flag("sbrPresentFlag").ok()? {
        return None;
    }
    read_sampling_frequency(r, "extensionSamplingFrequencyIndex").ok()?;
    if r.remaining() >= 12
        && r.read(11, "syncExtensionType").ok()? == 0x548
        && r.flag("psPresentFlag").ok()?
    {
        return Some(29);
    }
    Some(5)
}

/// Parses an AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1).
///
/// Reads audioObjectType (5 bits, 31 escapes to 32 + 6 bits),
/// samplingFrequencyIndex (4 bits; 0xF escapes to a 24-bit explicit rate)
/// and channelConfiguration (4 bits); for AOT 5 (SBR) and 29 (PS) the
/// explicit extension (extensionSamplingFrequencyIndex and the core AOT);
/// then the GASpecificConfig's frameLengthFlag (960 or 1024 samples).
///
/// The result describes the core AAC decoder: `sample_rate` is the core
/// rate (for HE-AAC half the output rate; it is our timescale), and
/// `samples_per_frame` counts samples at that rate (HE-AAC frames are also
/// 1024). `object_type` is what goes in `mp4a.40.N`: 5 or 29 when SBR/PS is
/// signalled explicitly (hierarchically, or backward compatibly through a
/// sync extension), else the core type. Implicit SBR (none signalled) cannot
/// be seen in the config and reads as the core type.
pub fn parse_audio_specific_config(asc: &Bytes) -> Result<AacParams, AacError> {
    let mut r = BitReader::new(asc);
    let mut object_type = read_object_type(&mut r, "audioObjectType")?;
    let sample_rate = read_sampling_frequency(&mut r, "samplingFrequencyIndex")?;
    let channel_configuration = r.read_u8(4, "channelConfiguration")?;
    let hierarchical = matches!(object_type, 5 | 29);
    let mut advertised = object_type;
    if hierarchical {
        read_sampling_frequency(&mut r, "extensionSamplingFrequencyIndex")?;
        let extension = object_type;
        object_type = read_object_type(&mut r, "audioObjectType")?;
        if !is_supported_core(object_type) {
            return Err(AacError::UnsupportedCoreObjectType {
                extension,
                object_type,
            });
        }
    } else if !is_supported_core(object_type) {
        return Err(AacError::UnsupportedObjectType { object_type });
    }
    let channels = match channel_configuration {
        0 => None,
        config => Some(
            channels_for_configuration(config)
                .ok_or(AacError::UnsupportedChannelConfiguration(config))?,
        ),
    };
    let (samples_per_frame, pce_channels) = ga_specific_config(&mut r, channel_configuration)?;
    if !hierarchical
        && channel_configuration != 0
        && let Some(extension) = sync_extension(&mut r)
    {
        advertised = extension;
    }
    Ok(AacParams {
        asc: asc.clone(),
        object_type: advertised,
        sample_rate,
        channels: channels.or(pce_channels).ok_or(AacError::NoChannels)?,
        samples_per_frame,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    fn parse(bytes: &'static [u8]) -> Result<AacParams, AacError> {
        parse_audio_specific_config(&Bytes::from_static(bytes))
    }

    /// (object type, sample rate, channels, samples per frame)
    fn summary(p: &AacParams) -> (u8, u32, u8, u32) {
        (
            p.object_type,
            p.sample_rate,
            p.channels,
            p.samples_per_frame,
        )
    }

    #[test]
    fn lc_configs() {
        // The common two-byte configs (as written by ffmpeg, OBS, FDK).
        assert_eq!(
            summary(&parse(&[0x12, 0x10]).unwrap()),
            (2, 44_100, 2, 1024)
        );
        assert_eq!(
            summary(&parse(&[0x11, 0x90]).unwrap()),
            (2, 48_000, 2, 1024)
        );
        assert_eq!(
            summary(&parse(&[0x11, 0x88]).unwrap()),
            (2, 48_000, 1, 1024)
        );
        // 13 90: AOT 2, index 7 = 22.05 kHz, stereo.
        assert_eq!(
            summary(&parse(&[0x13, 0x90]).unwrap()),
            (2, 22_050, 2, 1024)
        );
        let p = parse(&[0x12, 0x10]).unwrap();
        assert_eq!(p.codec_string(), "mp4a.40.2");
        assert_eq!(&p.asc[..], &[0x12, 0x10]);
    }

    #[test]
    fn ffmpeg_configs_with_sync_extension() {
        // ffmpeg's native encoder appends a sync extension saying "no SBR"
        // (taken from `ffmpeg … -c:a aac -f flv` AAC sequence headers).
        assert_eq!(
            summary(&parse(&[0x12, 0x10, 0x56, 0xe5, 0x00]).unwrap()),
            (2, 44_100, 2, 1024)
        );
        assert_eq!(
            summary(&parse(&[0x11, 0x88, 0x56, 0xe5, 0x00]).unwrap()),
            (2, 48_000, 1, 1024)
        );
        // 8 kHz mono (`-ar 8000 -ac 1`).
        assert_eq!(
            summary(&parse(&[0x15, 0x88, 0x56, 0xe5, 0x00]).unwrap()),
            (2, 8_000, 1, 1024)
        );
    }

    #[test]
    fn he_aac_explicit() {
        // AOT 5, core 22.05 kHz, stereo, extension 44.1 kHz, core AOT 2.
        let p = parse(&[0x2b, 0x92, 0x08, 0x00]).unwrap();
        assert_eq!(summary(&p), (5, 22_050, 2, 1024));
        assert_eq!(p.codec_string(), "mp4a.40.5");
        // AOT 29 (PS), core 24 kHz, mono, extension 48 kHz, core AOT 2:
        // 11101 0110 0001 0011 00010 0 0 0 → eb 09 88 00.
        let p = parse(&[0xeb, 0x09, 0x88, 0x00]).unwrap();
        assert_eq!(summary(&p), (29, 24_000, 1, 1024));
        // Backward-compatible signalling: LC 24 kHz stereo, then sync
        // extension 0x2b7, AOT 5, sbrPresentFlag 1, extension index 3 (48 k).
        // 00010 0110 0010 000 | 01010110111 00101 1 0011 → 13 10 56 e5 98
        let p = parse(&[0x13, 0x10, 0x56, 0xe5, 0x98]).unwrap();
        assert_eq!(summary(&p), (5, 24_000, 2, 1024));
        // SBR over an unsupported core.
        assert_eq!(
            parse(&[0x2b, 0x92, 0x0c, 0x00]),
            Err(AacError::UnsupportedCoreObjectType {
                extension: 5,
                object_type: 3
            })
        );
    }

    #[test]
    fn frame_length_960_and_explicit_rate() {
        // AOT 2, 48 kHz, stereo, frameLengthFlag 1.
        assert_eq!(summary(&parse(&[0x11, 0x94]).unwrap()), (2, 48_000, 2, 960));
        // AOT 2, index 15, 24-bit rate 0x00ac44 = 44100, channel 2:
        // 00010 1111 000000001010110001000100 0010 000
        let p = parse(&[0x17, 0x80, 0x56, 0x22, 0x10, 0x00]).unwrap();
        assert_eq!(summary(&p), (2, 44_100, 2, 1024));
        assert_eq!(
            parse(&[0x17, 0x80, 0x00, 0x00, 0x10, 0x00]),
            Err(AacError::ZeroSamplingFrequency {
                field: "samplingFrequencyIndex"
            })
        );
        // Index 13 is reserved.
        assert_eq!(
            parse(&[0x16, 0x90]),
            Err(AacError::ReservedSamplingFrequencyIndex {
                field: "samplingFrequencyIndex",
                index: 13
            })
        );
    }

    #[test]
    fn channel_configurations() {
        // 5.1 (config 6) at 48 kHz.
        assert_eq!(parse(&[0x11, 0xb0]).unwrap().channels, 6);
        // 7.1 (config 7).
        assert_eq!(parse(&[0x11, 0xb8]).unwrap().channels, 8);
        // Config 8 is reserved.
        assert_eq!(
            parse(&[0x11, 0xc0]),
            Err(AacError::UnsupportedChannelConfiguration(8))
        );
        // Config 0 with a PCE: 1 front SCE + 1 front CPE + 1 back CPE + 1 LFE
        // = 6 channels. AOT 2, 48 kHz, config 0, GA 000, then the PCE:
        // tag 0000, object 01, sf 0011, front 0010, side 0000, back 0001,
        // lfe 01, assoc 000, cc 0000, mixdowns 000,
        // front (0 0000) (1 0001), back (1 0010), lfe 0000.
        let bits = "00010 0011 0000 000 \
                    0000 01 0011 0010 0000 0001 01 000 0000 000 \
                    00000 10001 10010 0000";
        let bytes = bits_to_bytes(bits);
        let p = parse_audio_specific_config(&bytes).unwrap();
        assert_eq!(p.channels, 6);
        // A PCE that ends early.
        assert!(matches!(
            parse_audio_specific_config(&bytes.slice(..5)),
            Err(AacError::Truncated { .. })
        ));
        // A PCE with no elements.
        let bytes =
            bits_to_bytes("00010 0011 0000 000 0000 01 0011 0000 0000 0000 00 000 0000 000");
        assert_eq!(
            parse_audio_specific_config(&bytes),
            Err(AacError::NoChannels)
        );
    }

    fn bits_to_bytes(bits: &str) -> Bytes {
        let bits: Vec<u8> = bits
            .chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| (c == '1') as u8)
            .collect();
        Bytes::from(
            bits.chunks(8)
                .map(|chunk| {
                    chunk
                        .iter()
                        .chain(std::iter::repeat(&0))
                        .take(8)
                        .fold(0u8, |acc, b| (acc << 1) | b)
                })
                .collect::<Vec<u8>>(),
        )
    }

    #[test]
    fn unsupported_and_truncated() {
        assert_eq!(
            parse(&[]),
            Err(AacError::Truncated {
                field: "audioObjectType",
                bit_offset: 0,
                bits: 5,
                len: 0
            })
        );
        assert_eq!(
            parse(&[0x12]),
            Err(AacError::Truncated {
                field: "samplingFrequencyIndex",
                bit_offset: 5,
                bits: 4,
                len: 1
            })
        );
        // AOT 3 (SSR) and the escape: 11111 001010 = 32 + 10 = 42 (USAC).
        assert_eq!(
            parse(&[0x19, 0x90]),
            Err(AacError::UnsupportedObjectType { object_type: 3 })
        );
        assert_eq!(
            parse(&[0xf9, 0x46, 0x40]),
            Err(AacError::UnsupportedObjectType { object_type: 42 })
        );
        // HE-AAC cut before the core object type.
        assert!(matches!(
            parse(&[0x2b, 0x92]),
            Err(AacError::Truncated {
                field: "extensionSamplingFrequencyIndex",
                ..
            })
        ));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = StdRng::seed_from_u64(0xaac);
        for _ in 0..10_000 {
            let len = rng.gen_range(0..8);
            let data: Vec<u8> = (0..len).map(|_| rng.r#gen()).collect();
            if let Ok(p) = parse_audio_specific_config(&Bytes::from(data)) {
                assert!(p.sample_rate > 0 && p.channels > 0);
                assert!(matches!(p.samples_per_frame, 960 | 1024));
            }
        }
    }
}
