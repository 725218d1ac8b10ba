#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]
//! FLV tag *bodies*, as carried in RTMP audio (type 8) and video (type 9)
//! messages: the AUDIODATA and VIDEODATA structures of the Adobe FLV spec
//! v10.1 Annex E.4.2 and E.4.3 with their AAC / AVC packet headers, plus
//! recognition of the Enhanced RTMP `ExVideoTagHeader` (veovera
//! enhanced-rtmp v2, "Enhanced Video"). Not FLV files: no file header, no
//! tag headers, no previous-tag sizes.
//!
//! Payloads are returned as [`Bytes`] slices of the body (no copies).

use bytes::Bytes;
use thiserror::Error;

/// Legacy `CodecID` of AVC (E.4.3.1).
pub const CODEC_AVC: u8 = 7;
/// `SoundFormat` of AAC (E.4.2.1).
pub const SOUND_FORMAT_AAC: u8 = 10;
/// `SoundFormat` 9: Enhanced RTMP's `ExAudioTagHeader`.
pub const SOUND_FORMAT_EX_HEADER: u8 = 9;

/// Header of an AAC raw frame tag body: AAC, 44 kHz, 16-bit, stereo (the
/// fixed values E.4.2.1 prescribes for AAC), `AACPacketType` 1.
pub const AAC_FRAME_HEADER: [u8; 2] = [0xAF, 0x01];
/// Header of an AAC sequence header tag body (`AACPacketType` 0); the
/// AudioSpecificConfig follows.
pub const AAC_SEQUENCE_HEADER_PREFIX: [u8; 2] = [0xAF, 0x00];

/// `VideoFrameType` 5: video info / command frame.
const FRAME_TYPE_COMMAND: u8 = 5;

/// Enhanced RTMP `VideoPacketType` values.
mod packet_type {
    pub const SEQUENCE_START: u8 = 0;
    pub const CODED_FRAMES: u8 = 1;
    pub const SEQUENCE_END: u8 = 2;
    pub const CODED_FRAMES_X: u8 = 3;
    pub const METADATA: u8 = 4;
    pub const MULTITRACK: u8 = 6;
    pub const MOD_EX: u8 = 7;
}

/// Errors from FLV tag body parsing.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FlvError {
    #[error("empty {what} tag body")]
    Empty { what: &'static str },
    #[error("truncated {what}: need {expected} bytes, tag body is {len} bytes")]
    Truncated {
        what: &'static str,
        expected: usize,
        len: usize,
    },
    #[error("reserved video frame type {0}")]
    ReservedFrameType(u8),
    #[error("unknown AVCPacketType {0}")]
    UnknownAvcPacketType(u8),
    #[error("unknown AACPacketType {0}")]
    UnknownAacPacketType(u8),
}

/// A parsed VIDEODATA tag body (E.4.3.1 and Enhanced RTMP ExVideoTagHeader).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoTag {
    /// AVCPacketType 0 (legacy CodecID 7, or Enhanced `avc1`
    /// SequenceStart): an AVCDecoderConfigurationRecord.
    AvcSequenceHeader { record: Bytes },
    /// AVCPacketType 1 (or Enhanced `avc1` CodedFrames / CodedFramesX):
    /// length-prefixed NAL units as sent (the record's length size).
    AvcFrame {
        /// FrameType 1 (key frame) or 4 (generated key frame).
        keyframe: bool,
        /// CompositionTime (SI24), milliseconds; 0 for CodedFramesX.
        composition_time_ms: i32,
        data: Bytes,
    },
    /// AVCPacketType 2 (or Enhanced `avc1` SequenceEnd).
    AvcEndOfSequence,
    /// Enhanced RTMP tag with a codec other than `avc1` (`hvc1`, `av01`,
    /// `vp09`, …), or any multitrack / metadata / MPEG-2 TS packet:
    /// recognised, payload not parsed. `packet_type` is the VideoPacketType
    /// after any ModEx prefixes (6 for multitrack; `fourcc` is then the
    /// first track's codec).
    Enhanced { fourcc: [u8; 4], packet_type: u8 },
    /// A legacy codec other than AVC: 2 (Sorenson H.263), 3 (Screen), 4
    /// (VP6), 5 (VP6 alpha), 6 (Screen v2), 12 (non-standard HEVC), ….
    Unsupported { codec_id: u8 },
    /// FrameType 5 (video info / command frame): carries no video.
    Command,
}

/// A parsed AUDIODATA tag body (E.4.2.1, E.4.2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioTag {
    /// AACPacketType 0: an AudioSpecificConfig.
    AacSequenceHeader { config: Bytes },
    /// AACPacketType 1: one raw AAC frame.
    AacFrame { data: Bytes },
    /// Any other SoundFormat, including 9 (Enhanced RTMP ExAudioTagHeader).
    Unsupported { sound_format: u8 },
}

/// Returns `body[at..at + n]` or a [`FlvError::Truncated`] naming `what`.
fn field<'a>(
    body: &'a [u8],
    at: usize,
    n: usize,
    what: &'static str,
) -> Result<&'a [u8], FlvError> {
    at.checked_add(n)
        .and_then(|end| body.get(at..end))
        .ok_or(FlvError::Truncated {
            what,
            expected: at.saturating_add(n),
            len: body.len(),
        })
}

/// Reads one byte at `at`.
fn byte(body: &[u8], at: usize, what: &'static str) -> Result<u8, FlvError> {
    Ok(field(body, at, 1, what)?
        .first()
        .copied()
        .unwrap_or_default())
}

/// Reads a big-endian SI24 at `at` (E.4.3.2 CompositionTime).
fn si24(body: &[u8], at: usize, what: &'static str) -> Result<i32, FlvError> {
    let raw = field(body, at, 3, what)?
        .iter()
        .fold(0i32, |acc, &b| (acc << 8) | i32::from(b));
    // Move the 24-bit value to the top and back to sign-extend it.
    Ok((raw << 8) >> 8)
}

/// Parses a VIDEODATA tag body (FLV spec v10.1 E.4.3.1 VIDEODATA and
/// E.4.3.2 AVCVIDEOPACKET; Enhanced RTMP v2 ExVideoTagHeader).
///
/// The first byte holds FrameType (4 bits) and CodecID (4 bits); with its
/// top bit set (Enhanced RTMP `IsExHeader`) it holds a 3-bit FrameType and a
/// 4-bit VideoPacketType followed by a FourCC. Enhanced `avc1` is mapped to
/// the same variants as legacy AVC.
pub fn parse_video_tag(body: &Bytes) -> Result<VideoTag, FlvError> {
    let first = *body.first().ok_or(FlvError::Empty { what: "video" })?;
    if first & 0x80 != 0 {
        return parse_enhanced_video(body, (first >> 4) & 0x07, first & 0x0f);
    }
    let frame_type = first >> 4;
    let codec_id = first & 0x0f;
    if frame_type == FRAME_TYPE_COMMAND {
        return Ok(VideoTag::Command);
    }
    if !(1..=4).contains(&frame_type) {
        return Err(FlvError::ReservedFrameType(frame_type));
    }
    if codec_id != CODEC_AVC {
        return Ok(VideoTag::Unsupported { codec_id });
    }
    const WHAT: &str = "AVC video packet header";
    field(body, 1, 4, WHAT)?;
    let avc_packet_type = byte(body, 1, WHAT)?;
    let composition_time_ms = si24(body, 2, WHAT)?;
    avc_packet(
        avc_packet_type,
        frame_type,
        composition_time_ms,
        body.slice(5..),
    )
}

/// Maps an AVCPacketType with its payload to a [`VideoTag`] (E.4.3.2).
fn avc_packet(
    avc_packet_type: u8,
    frame_type: u8,
    composition_time_ms: i32,
    payload: Bytes,
) -> Result<VideoTag, FlvError> {
    match avc_packet_type {
        0 => Ok(VideoTag::AvcSequenceHeader { record: payload }),
        1 => Ok(VideoTag::AvcFrame {
            keyframe: matches!(frame_type, 1 | 4),
            composition_time_ms,
            data: payload,
        }),
        2 => Ok(VideoTag::AvcEndOfSequence),
        other => Err(FlvError::UnknownAvcPacketType(other)),
    }
}

/// Skips Enhanced RTMP ModEx prefixes starting at `at` (each: size UI8 + 1,
/// or UI16 + 1 when the UI8 form reads 256; the data; then a byte whose low
/// nibble is the next VideoPacketType). Returns the final packet type and
/// the offset after the prefixes.
fn skip_mod_ex(body: &[u8], mut packet_type: u8, mut at: usize) -> Result<(u8, usize), FlvError> {
    const WHAT: &str = "Enhanced RTMP ModEx";
    while packet_type == packet_type::MOD_EX {
        let mut size = usize::from(byte(body, at, WHAT)?) + 1;
        at += 1;
        if size == 256 {
            let wide = field(body, at, 2, WHAT)?;
            size = wide
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
                + 1;
            at += 2;
        }
        field(body, at, size, WHAT)?;
        at += size;
        packet_type = byte(body, at, WHAT)? & 0x0f;
        at += 1;
    }
    Ok((packet_type, at))
}

/// Parses the rest of a tag body whose ExVideoTagHeader bit is set (Enhanced
/// RTMP v2, "ExVideoTagHeader").
fn parse_enhanced_video(
    body: &Bytes,
    frame_type: u8,
    packet_type: u8,
) -> Result<VideoTag, FlvError> {
    let (packet_type, mut at) = skip_mod_ex(body, packet_type, 1)?;
    if frame_type == FRAME_TYPE_COMMAND && packet_type != packet_type::METADATA {
        return Ok(VideoTag::Command);
    }
    if packet_type == packet_type::MULTITRACK {
        // AvMultitrackType (4 bits) | inner VideoPacketType (4 bits), then
        // the shared FourCC, or the first track's FourCC for
        // ManyTracksManyCodecs: 4 bytes of FourCC either way.
        byte(body, at, "Enhanced RTMP multitrack header")?;
        at += 1;
    }
    const WHAT: &str = "Enhanced RTMP video FourCC";
    let fourcc =
        <[u8; 4]>::try_from(field(body, at, 4, WHAT)?).map_err(|_| FlvError::Truncated {
            what: WHAT,
            expected: at + 4,
            len: body.len(),
        })?;
    at += 4;
    if &fourcc != b"avc1" || packet_type == packet_type::MULTITRACK {
        return Ok(VideoTag::Enhanced {
            fourcc,
            packet_type,
        });
    }
    match packet_type {
        packet_type::SEQUENCE_START => avc_packet(0, frame_type, 0, body.slice(at..)),
        packet_type::CODED_FRAMES => {
            let cts = si24(body, at, "Enhanced RTMP CompositionTime")?;
            avc_packet(1, frame_type, cts, body.slice(at + 3..))
        }
        packet_type::CODED_FRAMES_X => avc_packet(1, frame_type, 0, body.slice(at..)),
        packet_type::SEQUENCE_END => Ok(VideoTag::AvcEndOfSequence),
        _ => Ok(VideoTag::Enhanced {
            fourcc,
            packet_type,
        }),
    }
}

/// Parses an AUDIODATA tag body (FLV spec v10.1 E.4.2.1 AUDIODATA and
/// E.4.2.2 AACAUDIODATA).
///
/// The first byte holds SoundFormat (4 bits), SoundRate, SoundSize and
/// SoundType; for AAC those three are fixed by the spec and ignored here
/// (the AudioSpecificConfig is authoritative). AAC bodies carry an
/// AACPacketType byte: 0 = sequence header, 1 = raw frame.
pub fn parse_audio_tag(body: &Bytes) -> Result<AudioTag, FlvError> {
    let first = *body.first().ok_or(FlvError::Empty { what: "audio" })?;
    let sound_format = first >> 4;
    if sound_format != SOUND_FORMAT_AAC {
        return Ok(AudioTag::Unsupported { sound_format });
    }
    let payload = body.slice(2.min(body.len())..);
    match byte(body, 1, "AAC audio packet header")? {
        0 => Ok(AudioTag::AacSequenceHeader { config: payload }),
        1 => Ok(AudioTag::AacFrame { data: payload }),
        other => Err(FlvError::UnknownAacPacketType(other)),
    }
}

/// The 5-byte VIDEODATA + AVCVIDEOPACKET header of an AVC frame for RTMP
/// egress (E.4.3.1, E.4.3.2): `0x17` (key frame) or `0x27`, AVCPacketType 1,
/// CompositionTime as SI24 (clamped to its range). NAL units follow.
pub fn avc_frame_header(keyframe: bool, composition_time_ms: i32) -> [u8; 5] {
    let cts = composition_time_ms
        .clamp(-(1 << 23), (1 << 23) - 1)
        .to_be_bytes();
    let first = if keyframe { 0x17 } else { 0x27 };
    [first, 0x01, cts[1], cts[2], cts[3]]
}

/// The 5-byte header of an AVC sequence header tag body (E.4.3.2):
/// key frame, AVC, AVCPacketType 0, CompositionTime 0. The
/// AVCDecoderConfigurationRecord follows.
pub fn avc_sequence_header_prefix() -> [u8; 5] {
    [0x17, 0x00, 0x00, 0x00, 0x00]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{aac, h264};
    use rand::{Rng, SeedableRng, rngs::StdRng};

    /// `ffmpeg -f lavfi -i testsrc=size=64x48:rate=10 -f lavfi -i
    /// sine=frequency=440:sample_rate=8000 -t 0.4 -pix_fmt yuv420p -c:v
    /// libx264 -profile:v high -bf 2 -x264-params keyint=4:scenecut=0 -c:a
    /// aac -ac 1 -fflags +bitexact -f flv`, with the onMetaData tag removed.
    /// ffprobe: video packets (pts, dts) = (200, 0) K, (500, 100), (300, 200),
    /// (400, 300); audio AAC-LC 8 kHz mono.
    const TINY_FLV: &str = concat!(
        "464c5601050000000900000000090000320000000000000017000000000164000affe100186764000aacd9447b011000",
        "000300100000030140f122596001000668ebe3cb22c0fdf8f8000000003d0800000700000000000000af00158856e500",
        "00000012090005030000000000000017010000c8000002a90605ffffa5dc45e9bde6d948b7962cd820d923eeef783236",
        "34202d20636f7265203136342072333039352062616565343030202d20482e3236342f4d5045472d342041564320636f",
        "646563202d20436f70796c65667420323030332d32303232202d20687474703a2f2f7777772e766964656f6c616e2e6f",
        "72672f783236342e68746d6c202d206f7074696f6e733a2063616261633d31207265663d33206465626c6f636b3d313a",
        "303a3020616e616c7973653d3078333a3078313133206d653d686578207375626d653d37207073793d31207073795f72",
        "643d312e30303a302e3030206d697865645f7265663d31206d655f72616e67653d3136206368726f6d615f6d653d3120",
        "7472656c6c69733d31203878386463743d312063716d3d3020646561647a6f6e653d32312c313120666173745f70736b",
        "69703d31206368726f6d615f71705f6f66667365743d2d3220746872656164733d31206c6f6f6b61686561645f746872",
        "656164733d3120736c696365645f746872656164733d30206e723d3020646563696d6174653d3120696e7465726c6163",
        "65643d3020626c757261795f636f6d7061743d3020636f6e73747261696e65645f696e7472613d3020626672616d6573",
        "3d3220625f707972616d69643d3220625f61646170743d3120625f626961733d30206469726563743d31207765696768",
        "74623d31206f70656e5f676f703d3020776569676874703d32206b6579696e743d34206b6579696e745f6d696e3d3320",
        "7363656e656375743d3020696e7472615f726566726573683d302072635f6c6f6f6b61686561643d342072633d637266",
        "206d62747265653d31206372663d32332e302071636f6d703d302e36302071706d696e3d302071706d61783d36392071",
        "70737465703d342069705f726174696f3d312e34302061713d313a312e303000800000024d6588840057d396ca42d5db",
        "ffc22dc4525b4e8ba6a1b15ae70a89278eaccba25cf1bb4eec06533a4674b8ee6baad52f419c7437d2e75052ca6750bb",
        "b8618ebd610854a4100aff275b8b6a75b00943fce7696110675ca0403b90d7c39e32976d2ec7dc9dc0c9f773c94f2647",
        "c8fdb2755949e82e38dfa7a01d3f7e11748fa219703b303a023d52af689068ad56cc91552f61a6a8d998b2aee3380ced",
        "6f0a77dd33e1abd5c011905a2c90b3f54a67e28d6cc54af6f8a2a9b5fd69093879576b19da20fa427d8106ed45fd0a53",
        "db73e250c65b2812e69083161c55176719ddb8c3bf4d6f586fe60cd94252c8919f144c9c7e0c7086d6c72c3673060e0d",
        "28eb533d7b8d4d2c18625adb05a87e954407145ca100c4d3974a11e472761a41987a8f0dad2c0d6ee063430d8ffd9905",
        "00ee9f7380a1cbc1fcb5c9eb470c64f43ebe5c3820c49853856c40cc5e702b9d72c9f81a64b829ba7cc1dc3b240c7610",
        "7fd0511281eab1e2c498f32deb8e808cbd9d747436d8dc77b828a508829fc5d3d26b5972b9c64ea9dc8869d874a0b4d6",
        "dbe5650da85fac0258776f1f2bc0a7b9264d8d94e1831ef9f04737b12759c1cb69bc91329af3bdf56818bd546ea50a6e",
        "9320a5eb55628cee83b789c1bbcd0ccc39395e42c6ed5d895e61d5cfc50466b9bd14a0c7b11f28fc4ad972b43bc94116",
        "a5c9367f52774cb8ec2c2fc3b852aede487192257eeb3005922718eda32116549b85c9b646ec786fa0eb8e2347fafc6b",
        "3e51ab17be2926595c3a23f82cff5e9bc51a1691904324a1284bf68f94f3f74e85af5125ac7774af501b8bd0ebaea2e6",
        "b7c10000050e080000e000004800000000af01011c52a969a37759fb47dbe24abb96891224489241b56d3b56d3b56d3b",
        "5719dab8ced5b4cf4ed8a76c561dab69dab8ced5c672aca72ada72ada6c589c76272aca4204204204224a32519546552",
        "992b4a6bae575776e606ec5281281818181818d9b96596596594dcb2cb2cb2ca6e596596596596596596596596596596",
        "596596596596596596596596596596596596596596596596596596596596596596596596596596596596596596596596",
        "596596596596596596596596596596596596596596596596596596596596596596596596596596596596596596596596",
        "5e000000eb090000750000640000000027010001900000006c419a236c425f27ba0917fc68e4c313ac9061d47787c245",
        "48e4fd72ee2199554f2ced093a577544de0b27c9229d3f074a17264253eb9add7718c814ae277a603836ad420ac708b1",
        "001895b0ae47b78c695e75b24bcdc3f5485a441ba6c2e680f596ed4dd32f6be865bad2058700000080090000110000c8",
        "00000000270100006400000008419e4178843f6b410000001c080000e30000c800000000af0101009cd93d1544ba1944",
        "bb1764be7dbe7ffe2ffcff5eb8e35ab91ff4fd3ffc3ff3fc79e3cdea5d67fd3f3ffa7ff3f5d71c5f55a93ff4fcffe9ff",
        "dfebad71c69749974628f032e8c49c72e8c51e1a666c315cd34cb99733cd34c9668d965f90fd782ec10384a309d673a2",
        "aa8c635068e8a23a0dd03a8506e83754f4515852b66c8b7b66cd8477d22e11b44b8bec9ec23b366c8afc891c159732ce",
        "7623cf39ce752951a94a9e79e79e754ea9d53aa79e79d42752953cf3cf3cea37d1be8a297e752f5a50ec73e36bb06f89",
        "dc3f0539d50f3734ea9e7e69f9be4a9c89083a3e5b1438000000ee0900001100012c0000000027010000640000000801",
        "9e626a425f73400000001c080000d400014800000000af0100fc9db609782ac97a26897a25fb7e7ffc3ff3fc79d757c4",
        "935ffa7bfffc5ff9febd71d6b52d3fedf9ffe9ff9febd71e78bb621974608f3977d1cf219a4cd5333b66cca73bed34b2",
        "228618b9b8c5cc38888be43e51718b995c4891f2f97cbe5f2e3b0f14f5714445bea7a356269d2ba142ab0bd4ee9f06e2",
        "deb2b27f1e28908448b5ac88a28a28a28a28a2288a28a28a22cb14514488a28a28a27e22042224154751ea8aa8a20884",
        "2a7a355ae04ac7a4c9c924895de4515d15d11721117eee8a2fdfee28b4a62c51a40921438f04b2b7a80e000000df0800",
        "00a40001c800000000af01010a9da4bc17647e2fc07e1ebf3ffa7ff3f5d71d5f1237fff4f9fdbf5f6e35ad5deb5e39f7",
        "febe7eb8bd5c92079ee74bcf2529bd8cb98cb9e79e79e783cc798f31e79e79e0c63cf3c979e79ec734e7af5b589cd24a",
        "c56762c912722329b486af5c4363b17f47ce78da1a1fe0ff1fe0ff1fe0ff1fe0ff1fe07f8ff1fe03fc7f8ff1fe01fe3f",
        "c7f8896d6190c6f8f8f1f8f8f8f8f8f8f8f8f8f8f8f8f8f8f8f8f8f8e0000000af0800000700024800000000af010118",
        "81b470000000120900000500012c00000000170200000000000010",
    );

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// A test-only FLV file reader: 9-byte header, 4-byte previous tag size,
    /// then tags of an 11-byte header (type, UI24 size, timestamp, stream
    /// id), body and 4-byte size. Returns (tag type, timestamp, body).
    fn flv_tags(file: &Bytes) -> Vec<(u8, u32, Bytes)> {
        assert_eq!(&file[..3], b"FLV");
        let mut out = Vec::new();
        let mut at = 13;
        while at + 11 <= file.len() {
            let h = &file[at..at + 11];
            let size = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
            let ts = u32::from_be_bytes([h[7], h[4], h[5], h[6]]);
            out.push((h[0], ts, file.slice(at + 11..at + 11 + size)));
            at += 11 + size + 4;
        }
        assert_eq!(at, file.len());
        out
    }

    fn tiny() -> Vec<(u8, u32, Bytes)> {
        flv_tags(&Bytes::from(hex(TINY_FLV)))
    }

    #[test]
    fn parses_ffmpeg_video_tags() {
        let video: Vec<(u32, Bytes)> = tiny()
            .into_iter()
            .filter(|t| t.0 == 9)
            .map(|t| (t.1, t.2))
            .collect();
        assert_eq!(video.len(), 6);
        let parsed: Vec<VideoTag> = video
            .iter()
            .map(|(_, b)| parse_video_tag(b).unwrap())
            .collect();

        let VideoTag::AvcSequenceHeader { record } = &parsed[0] else {
            panic!("{:?}", parsed[0]);
        };
        assert_eq!(record.as_ptr(), video[0].1[5..].as_ptr(), "zero copy");
        let (params, length_size) = h264::h264_params(record).unwrap();
        assert_eq!((params.width, params.height, length_size), (64, 48, 4));
        assert_eq!(params.codec_string(), "avc1.64000a");

        // (dts ms, pts ms) as ffprobe reports them.
        let expected = [
            (0, 200, true, 1278),
            (100, 500, false, 112),
            (200, 300, false, 12),
            (300, 400, false, 12),
        ];
        for ((ts, body), (tag, want)) in video[1..5].iter().zip(parsed[1..5].iter().zip(expected)) {
            let VideoTag::AvcFrame {
                keyframe,
                composition_time_ms,
                data,
            } = tag
            else {
                panic!("{tag:?}");
            };
            assert_eq!(*ts, want.0);
            assert_eq!(i64::from(*ts) + i64::from(*composition_time_ms), want.1);
            assert_eq!(*keyframe, want.2);
            assert_eq!(data.len(), want.3);
            assert_eq!(data.as_ptr(), body[5..].as_ptr());
            let data = h264::normalize_nal_lengths(data.clone(), length_size).unwrap();
            assert_eq!(h264::contains_idr(&data), want.2);
            // The egress header reproduces ffmpeg's.
            assert_eq!(avc_frame_header(*keyframe, *composition_time_ms), body[..5]);
        }
        assert_eq!(parsed[5], VideoTag::AvcEndOfSequence);
        assert_eq!(avc_sequence_header_prefix(), video[0].1[..5]);
    }

    #[test]
    fn parses_ffmpeg_audio_tags() {
        let audio: Vec<Bytes> = tiny()
            .into_iter()
            .filter(|t| t.0 == 8)
            .map(|t| t.2)
            .collect();
        assert_eq!(audio.len(), 6);
        let AudioTag::AacSequenceHeader { config } = parse_audio_tag(&audio[0]).unwrap() else {
            panic!();
        };
        assert_eq!(&config[..], &[0x15, 0x88, 0x56, 0xe5, 0x00]);
        let p = aac::parse_audio_specific_config(&config).unwrap();
        assert_eq!((p.sample_rate, p.channels), (8000, 1));
        assert_eq!(audio[0][..2], AAC_SEQUENCE_HEADER_PREFIX);
        for body in &audio[1..] {
            let AudioTag::AacFrame { data } = parse_audio_tag(body).unwrap() else {
                panic!();
            };
            assert_eq!(data.len(), body.len() - 2);
            assert_eq!(data.as_ptr(), body[2..].as_ptr());
            assert_eq!(body[..2], AAC_FRAME_HEADER);
        }
    }

    fn video(bytes: &[u8]) -> Result<VideoTag, FlvError> {
        parse_video_tag(&Bytes::copy_from_slice(bytes))
    }

    fn audio(bytes: &[u8]) -> Result<AudioTag, FlvError> {
        parse_audio_tag(&Bytes::copy_from_slice(bytes))
    }

    #[test]
    fn legacy_video_edge_cases() {
        assert_eq!(video(&[]), Err(FlvError::Empty { what: "video" }));
        assert_eq!(
            video(&[0x17, 0x01, 0x00]),
            Err(FlvError::Truncated {
                what: "AVC video packet header",
                expected: 5,
                len: 3
            })
        );
        assert_eq!(
            video(&[0x17]).unwrap_err(),
            FlvError::Truncated {
                what: "AVC video packet header",
                expected: 5,
                len: 1
            }
        );
        assert_eq!(
            video(&[0x07, 0x01, 0, 0, 0]),
            Err(FlvError::ReservedFrameType(0))
        );
        assert_eq!(
            video(&[0x67, 0x01, 0, 0, 0]),
            Err(FlvError::ReservedFrameType(6))
        );
        assert_eq!(
            video(&[0x17, 0x03, 0, 0, 0]),
            Err(FlvError::UnknownAvcPacketType(3))
        );
        assert_eq!(video(&[0x57, 0x00]), Ok(VideoTag::Command));
        assert_eq!(video(&[0x50]), Ok(VideoTag::Command));
        assert_eq!(
            video(&[0x12, 0xaa]),
            Ok(VideoTag::Unsupported { codec_id: 2 })
        );
        assert_eq!(video(&[0x24]), Ok(VideoTag::Unsupported { codec_id: 4 }));
        assert_eq!(
            video(&[0x1c, 0x00, 0, 0, 0]),
            Ok(VideoTag::Unsupported { codec_id: 12 })
        );
        // Generated key frame (4) counts as a key frame; negative CTS.
        assert_eq!(
            video(&[0x47, 0x01, 0xff, 0xff, 0xde, 0, 0, 0, 1, 0x65]),
            Ok(VideoTag::AvcFrame {
                keyframe: true,
                composition_time_ms: -34,
                data: Bytes::from_static(&[0, 0, 0, 1, 0x65])
            })
        );
        assert_eq!(
            video(&[0x17, 0x02, 0, 0, 0]),
            Ok(VideoTag::AvcEndOfSequence)
        );
        // An empty sequence header is the record parser's business.
        assert_eq!(
            video(&[0x17, 0, 0, 0, 0]),
            Ok(VideoTag::AvcSequenceHeader {
                record: Bytes::new()
            })
        );
    }

    #[test]
    fn egress_headers() {
        assert_eq!(avc_frame_header(true, 0), [0x17, 1, 0, 0, 0]);
        assert_eq!(avc_frame_header(false, 67), [0x27, 1, 0, 0, 67]);
        assert_eq!(avc_frame_header(false, -1), [0x27, 1, 0xff, 0xff, 0xff]);
        assert_eq!(
            avc_frame_header(false, i32::MAX),
            [0x27, 1, 0x7f, 0xff, 0xff]
        );
        assert_eq!(avc_frame_header(false, i32::MIN), [0x27, 1, 0x80, 0, 0]);
        for cts in [-(1 << 23), -1000, -1, 0, 1, 33, 1 << 20, (1 << 23) - 1] {
            let mut body = avc_frame_header(cts % 2 == 0, cts).to_vec();
            body.extend_from_slice(&[0, 0, 0, 1, 0x41]);
            let VideoTag::AvcFrame {
                composition_time_ms,
                keyframe,
                ..
            } = video(&body).unwrap()
            else {
                panic!();
            };
            assert_eq!((composition_time_ms, keyframe), (cts, cts % 2 == 0));
        }
    }

    #[test]
    fn audio_edge_cases() {
        assert_eq!(audio(&[]), Err(FlvError::Empty { what: "audio" }));
        assert_eq!(
            audio(&[0xaf]),
            Err(FlvError::Truncated {
                what: "AAC audio packet header",
                expected: 2,
                len: 1
            })
        );
        assert_eq!(
            audio(&[0xaf, 0x02, 0x00]),
            Err(FlvError::UnknownAacPacketType(2))
        );
        assert_eq!(
            audio(&[0xaf, 0x01]),
            Ok(AudioTag::AacFrame { data: Bytes::new() })
        );
        // MP3, Speex, G.711 µ-law, and Enhanced RTMP ExAudioTagHeader.
        assert_eq!(
            audio(&[0x2f, 0xff]),
            Ok(AudioTag::Unsupported { sound_format: 2 })
        );
        assert_eq!(
            audio(&[0xb2]),
            Ok(AudioTag::Unsupported { sound_format: 11 })
        );
        assert_eq!(
            audio(&[0x82]),
            Ok(AudioTag::Unsupported { sound_format: 8 })
        );
        assert_eq!(
            audio(&[0x90, b'O', b'p', b'u', b's']),
            Ok(AudioTag::Unsupported {
                sound_format: SOUND_FORMAT_EX_HEADER
            })
        );
        // The rate/size/type bits are ignored for AAC.
        assert_eq!(
            audio(&[0xa0, 0x01, 0x21]),
            Ok(AudioTag::AacFrame {
                data: Bytes::from_static(&[0x21])
            })
        );
    }

    /// Builds an Enhanced RTMP video body: IsExHeader | frame type | packet
    /// type, then `rest`.
    fn ex(frame_type: u8, packet_type: u8, rest: &[u8]) -> Vec<u8> {
        let mut v = vec![0x80 | (frame_type << 4) | packet_type];
        v.extend_from_slice(rest);
        v
    }

    #[test]
    fn enhanced_video_headers() {
        let hvc1 = *b"hvc1";
        assert_eq!(
            video(&ex(1, 0, b"hvc1\x01\x02")),
            Ok(VideoTag::Enhanced {
                fourcc: hvc1,
                packet_type: 0
            })
        );
        assert_eq!(
            video(&ex(2, 3, b"hvc1\0\0\0\x05\x02")),
            Ok(VideoTag::Enhanced {
                fourcc: hvc1,
                packet_type: 3
            })
        );
        assert_eq!(
            video(&ex(1, 1, b"av01\0\0\0")),
            Ok(VideoTag::Enhanced {
                fourcc: *b"av01",
                packet_type: 1
            })
        );
        // Command frame: no FourCC follows.
        assert_eq!(video(&ex(5, 1, &[0x00])), Ok(VideoTag::Command));
        // Metadata ignores the frame type.
        assert_eq!(
            video(&ex(5, 4, b"vp09\x02")),
            Ok(VideoTag::Enhanced {
                fourcc: *b"vp09",
                packet_type: 4
            })
        );
        // Multitrack: AvMultitrackType | inner packet type, then FourCC.
        assert_eq!(
            video(&ex(1, 6, b"\x01hvc1\x00")),
            Ok(VideoTag::Enhanced {
                fourcc: hvc1,
                packet_type: 6
            })
        );
        // ModEx: 3 bytes of data (size byte 2), then type 0 | CodedFrames.
        assert_eq!(
            video(&ex(2, 7, b"\x02\x00\x01\x02\x01vp09")),
            Ok(VideoTag::Enhanced {
                fourcc: *b"vp09",
                packet_type: 1
            })
        );
        // ModEx with the 16-bit size escape: 0xff -> UI16 0x0100 + 1 = 257.
        let mut rest = vec![0xff, 0x01, 0x00];
        rest.extend(std::iter::repeat_n(0xaa, 257));
        rest.extend_from_slice(b"\x00hvc1");
        assert_eq!(
            video(&ex(1, 7, &rest)),
            Ok(VideoTag::Enhanced {
                fourcc: hvc1,
                packet_type: 0
            })
        );
        // Truncations.
        assert_eq!(
            video(&ex(1, 0, b"hvc")),
            Err(FlvError::Truncated {
                what: "Enhanced RTMP video FourCC",
                expected: 5,
                len: 4
            })
        );
        assert!(matches!(
            video(&ex(1, 7, b"\x05\x00")),
            Err(FlvError::Truncated {
                what: "Enhanced RTMP ModEx",
                ..
            })
        ));
        assert!(matches!(
            video(&ex(1, 7, b"")),
            Err(FlvError::Truncated { .. })
        ));
        assert!(matches!(
            video(&ex(1, 6, b"")),
            Err(FlvError::Truncated { .. })
        ));
    }

    #[test]
    fn enhanced_avc1_maps_to_avc() {
        let record = tiny()[0].2.slice(5..);
        let mut body = ex(1, 0, b"avc1");
        body.extend_from_slice(&record);
        assert_eq!(
            video(&body),
            Ok(VideoTag::AvcSequenceHeader {
                record: record.clone()
            })
        );
        assert_eq!(
            video(&ex(1, 1, b"avc1\x00\x00\x21\x00\x00\x00\x01\x65")),
            Ok(VideoTag::AvcFrame {
                keyframe: true,
                composition_time_ms: 33,
                data: Bytes::from_static(&[0, 0, 0, 1, 0x65])
            })
        );
        assert_eq!(
            video(&ex(2, 3, b"avc1\x00\x00\x00\x01\x41")),
            Ok(VideoTag::AvcFrame {
                keyframe: false,
                composition_time_ms: 0,
                data: Bytes::from_static(&[0, 0, 0, 1, 0x41])
            })
        );
        assert_eq!(video(&ex(1, 2, b"avc1")), Ok(VideoTag::AvcEndOfSequence));
        assert!(matches!(
            video(&ex(1, 1, b"avc1\x00")),
            Err(FlvError::Truncated {
                what: "Enhanced RTMP CompositionTime",
                ..
            })
        ));
        assert_eq!(
            video(&ex(1, 5, b"avc1")),
            Ok(VideoTag::Enhanced {
                fourcc: *b"avc1",
                packet_type: 5
            })
        );
    }

    #[test]
    fn random_bodies_never_panic() {
        let mut rng = StdRng::seed_from_u64(0xf1f);
        let seeds: Vec<Vec<u8>> = tiny().into_iter().map(|t| t.2.to_vec()).collect();
        for i in 0..10_000 {
            let body: Vec<u8> = if i % 2 == 0 {
                let len = rng.gen_range(0..16);
                (0..len).map(|_| rng.r#gen()).collect()
            } else {
                let mut v = seeds[rng.gen_range(0..seeds.len())].clone();
                let at = rng.gen_range(0..v.len());
                v[at] = rng.r#gen();
                if rng.gen_bool(0.3) {
                    v[0] |= 0x80;
                }
                v.truncate(rng.gen_range(0..=v.len()));
                v
            };
            let body = Bytes::from(body);
            if let Ok(VideoTag::AvcFrame { data, .. }) = parse_video_tag(&body) {
                let _ = h264::normalize_nal_lengths(data, 4);
            }
            if let Ok(VideoTag::AvcSequenceHeader { record }) = parse_video_tag(&body) {
                let _ = h264::h264_params(&record);
            }
            if let Ok(AudioTag::AacSequenceHeader { config }) = parse_audio_tag(&body) {
                let _ = aac::parse_audio_specific_config(&config);
            }
        }
    }
}
