//! Codec parameters for unit tests (real ones, from the fixtures).

use bytes::Bytes;

use super::{AacParams, CodecParams, H264Params};

/// avcC of fixtures/media/high_bframes_aac48.mp4 (High, 640x360).
pub const AVCC_HIGH_640X360: &[u8] = &[
    0x01, 0x64, 0x00, 0x1e, 0xff, 0xe1, 0x00, 0x1a, 0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0,
    0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00, 0x01, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x0f, 0x16,
    0x2d, 0x96, 0x01, 0x00, 0x04, 0x68, 0xef, 0xbc, 0xb0, 0xfd, 0xf8, 0xf8, 0x00,
];

/// H.264 High parameters with a real avcC; `width` distinguishes generations.
pub fn h264(width: u16) -> CodecParams {
    CodecParams::H264(H264Params {
        avcc: Bytes::from_static(AVCC_HIGH_640X360),
        sps: vec![],
        pps: vec![],
        profile_idc: 100,
        constraint_flags: 0,
        level_idc: 30,
        width,
        height: 360,
    })
}

/// AAC-LC, 48 kHz stereo.
pub fn aac() -> CodecParams {
    CodecParams::Aac(AacParams {
        asc: Bytes::from_static(&[0x11, 0x90]),
        object_type: 2,
        sample_rate: 48_000,
        channels: 2,
        samples_per_frame: 1024,
    })
}

/// Video then audio.
pub fn av() -> Vec<CodecParams> {
    vec![h264(640), aac()]
}
