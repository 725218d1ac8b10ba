//! The protocol-neutral media model shared by every ingest and egress.
//!
//! A [`Frame`] is one access unit of one [`Track`]. Timestamps are `i64` ticks in
//! the track's own timescale (90 kHz for video, the sample rate for audio) and
//! are monotonic within a stream; see [`timestamp`] for how 32-bit protocol
//! clocks are unwrapped into this model.
//!
//! Frames are shared as `Arc<Frame>`: the payload is a [`Bytes`] that is never
//! copied on its way from the publisher to the readers. Representations that are
//! the same for every reader of one protocol (RTMP chunks, Annex B) are derived
//! once per frame and cached in the frame's [`Memo`].

pub mod decode_order;
pub mod timestamp;

/// Real codec parameters for tests (unit and integration); tiny.
#[doc(hidden)]
pub mod testing;

use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use crate::codec::rtp::packetize::Payload as RtpPayload;

/// Video timescale used for every video track (ticks per second).
pub const VIDEO_TIMESCALE: u32 = 90_000;

/// What kind of media a track carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TrackKind {
    Video,
    Audio,
}

/// H.264 decoder parameters, taken from an AVCDecoderConfigurationRecord
/// (ISO/IEC 14496-15 §5.3.3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct H264Params {
    /// The AVCDecoderConfigurationRecord as it goes into an `avcC` box and an
    /// RTMP sequence header, rewritten to 4-byte NAL lengths.
    pub avcc: Bytes,
    /// Sequence parameter sets (NAL units without length prefix).
    pub sps: Vec<Bytes>,
    /// Picture parameter sets (NAL units without length prefix).
    pub pps: Vec<Bytes>,
    pub profile_idc: u8,
    pub constraint_flags: u8,
    pub level_idc: u8,
    pub width: u16,
    pub height: u16,
}

impl H264Params {
    /// RFC 6381 codec string, e.g. `avc1.64001f`.
    pub fn codec_string(&self) -> String {
        format!(
            "avc1.{:02x}{:02x}{:02x}",
            self.profile_idc, self.constraint_flags, self.level_idc
        )
    }
}

/// AAC decoder parameters, from an AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AacParams {
    /// The AudioSpecificConfig bytes exactly as the publisher sent them.
    pub asc: Bytes,
    /// Audio object type (2 = AAC-LC, 5 = SBR/HE-AAC, 29 = PS/HE-AACv2).
    pub object_type: u8,
    /// Sampling rate of the core AAC decoder, which is also the track timescale.
    pub sample_rate: u32,
    pub channels: u8,
    /// PCM samples per AAC frame at `sample_rate` (1024, or 960).
    pub samples_per_frame: u32,
}

impl AacParams {
    /// RFC 6381 codec string, e.g. `mp4a.40.2`.
    pub fn codec_string(&self) -> String {
        format!("mp4a.40.{}", self.object_type)
    }
}

/// H.265 decoder parameters, from an HEVCDecoderConfigurationRecord
/// (ISO/IEC 14496-15 §8.3.3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct H265Params {
    /// The HEVCDecoderConfigurationRecord as it goes into an `hvcC` box, with
    /// 4-byte NAL lengths.
    pub hvcc: Bytes,
    /// VPS, SPS and PPS NAL units (without length prefix), in that order.
    pub parameter_sets: Vec<Bytes>,
    /// RFC 6381 codec string, e.g. `hvc1.1.6.L93.B0`.
    pub codec: String,
    pub width: u16,
    pub height: u16,
}

/// G.711 companding law (ITU-T G.711).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum G711Law {
    /// PCMA.
    ALaw,
    /// PCMU.
    MuLaw,
}

/// G.711 audio: one byte per sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct G711Params {
    pub law: G711Law,
    pub sample_rate: u32,
    pub channels: u8,
}

/// Opus audio (RFC 7587): always a 48 kHz clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpusParams {
    pub channels: u8,
}

/// Codec and decoder parameters of a track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodecParams {
    H264(H264Params),
    H265(H265Params),
    Aac(AacParams),
    G711(G711Params),
    Opus(OpusParams),
}

impl CodecParams {
    pub fn kind(&self) -> TrackKind {
        match self {
            CodecParams::H264(_) | CodecParams::H265(_) => TrackKind::Video,
            CodecParams::Aac(_) | CodecParams::G711(_) | CodecParams::Opus(_) => TrackKind::Audio,
        }
    }

    /// Short codec name for logs and the API.
    pub fn name(&self) -> &'static str {
        match self {
            CodecParams::H264(_) => "h264",
            CodecParams::H265(_) => "h265",
            CodecParams::Aac(_) => "aac",
            CodecParams::G711(g) => match g.law {
                G711Law::ALaw => "pcma",
                G711Law::MuLaw => "pcmu",
            },
            CodecParams::Opus(_) => "opus",
        }
    }

    /// Ticks per second of this codec's timestamps.
    pub fn timescale(&self) -> u32 {
        match self {
            CodecParams::H264(_) | CodecParams::H265(_) => VIDEO_TIMESCALE,
            CodecParams::Aac(a) => a.sample_rate,
            CodecParams::G711(g) => g.sample_rate,
            CodecParams::Opus(_) => 48_000,
        }
    }

    /// RFC 6381 codec string for HLS `CODECS` and MSE.
    pub fn codec_string(&self) -> String {
        match self {
            CodecParams::H264(h) => h.codec_string(),
            CodecParams::H265(h) => h.codec.clone(),
            CodecParams::Aac(a) => a.codec_string(),
            CodecParams::G711(_) => self.name().to_string(),
            CodecParams::Opus(_) => "opus".to_string(),
        }
    }

    /// Picture size of a video track.
    pub fn dimensions(&self) -> Option<(u16, u16)> {
        match self {
            CodecParams::H264(h) => Some((h.width, h.height)),
            CodecParams::H265(h) => Some((h.width, h.height)),
            _ => None,
        }
    }

    /// Sample rate and channels of an audio track.
    pub fn audio_format(&self) -> Option<(u32, u8)> {
        match self {
            CodecParams::Aac(a) => Some((a.sample_rate, a.channels)),
            CodecParams::G711(g) => Some((g.sample_rate, g.channels)),
            CodecParams::Opus(o) => Some((48_000, o.channels)),
            _ => None,
        }
    }
}

/// One track of a stream at one generation of its parameters.
///
/// When parameters change mid-stream (a new SPS), the stream gets a new `Track`
/// with the same `index` and a higher `generation`; readers notice because the
/// `Arc<Track>` a frame points to is no longer the one they set up with.
#[derive(Debug)]
pub struct Track {
    /// Position of the track within its stream (stable across generations).
    pub index: usize,
    /// Counts parameter changes of this track, starting at 0.
    pub generation: u32,
    pub params: CodecParams,
    /// Derived forms of the track's parameters, shared by all readers.
    pub memo: Memo,
}

impl Track {
    pub fn new(index: usize, generation: u32, params: CodecParams) -> Self {
        Track {
            index,
            generation,
            params,
            memo: Memo::default(),
        }
    }

    pub fn kind(&self) -> TrackKind {
        self.params.kind()
    }

    pub fn timescale(&self) -> u32 {
        self.params.timescale()
    }
}

/// One access unit.
#[derive(Debug)]
pub struct Frame {
    pub track: Arc<Track>,
    /// Decode timestamp in the track's timescale.
    pub dts: i64,
    /// Presentation timestamp in the track's timescale (`pts >= dts` for
    /// well-formed streams; B-frames make them differ).
    pub pts: i64,
    /// A random access point: an IDR picture for video; every audio frame.
    pub keyframe: bool,
    /// Video: NAL units, each with a 4-byte big-endian length prefix
    /// (AVCC/HVCC). Audio: one raw AAC frame, one Opus packet, or G.711
    /// samples.
    pub data: Bytes,
    /// Derived forms of this frame, computed once and shared by all readers.
    pub memo: Memo,
}

impl Frame {
    pub fn new(track: Arc<Track>, dts: i64, pts: i64, keyframe: bool, data: Bytes) -> Self {
        Frame {
            track,
            dts,
            pts,
            keyframe,
            data,
            memo: Memo::default(),
        }
    }

    /// Decode time in nanoseconds on the stream's common timeline.
    pub fn dts_nanos(&self) -> i64 {
        timestamp::ticks_to_nanos(self.dts, self.track.timescale())
    }
}

/// The derived representations a frame or track may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoKey {
    /// The whole RTMP message, chunked for every player (see `protocol::rtmp`).
    RtmpChunks = 0,
    /// Annex B access unit (start codes), for RTP packetizers.
    AnnexB = 1,
    /// A track's parameter sets as length-prefixed NAL units, for in-band use.
    ParameterSets = 2,
}

const MEMO_SLOTS: usize = 3;

/// A set of write-once caches, one per [`MemoKey`].
///
/// The first reader that needs a derived form builds it; the others get the
/// same `Bytes` by reference count. This is how "serialise once per path"
/// works without any coordination between readers.
#[derive(Debug, Default)]
pub struct Memo {
    slots: [OnceLock<Bytes>; MEMO_SLOTS],
    /// The frame's RTP payloads (`codec::rtp::packetize`), packetized once
    /// and sent by every WebRTC viewer.
    rtp: OnceLock<Arc<[RtpPayload]>>,
}

impl Memo {
    /// Returns the cached value for `key`, building it with `make` on first use.
    pub fn get_or_init(&self, key: MemoKey, make: impl FnOnce() -> Bytes) -> Bytes {
        self.slots[key as usize].get_or_init(make).clone()
    }

    /// Returns the cached value if some reader built it already.
    pub fn get(&self, key: MemoKey) -> Option<Bytes> {
        self.slots[key as usize].get().cloned()
    }

    /// The frame's RTP payloads, packetized by the first WebRTC viewer that
    /// sends the frame; the others get the same packets by reference count.
    pub fn rtp_packets(&self, make: impl FnOnce() -> Vec<RtpPayload>) -> Arc<[RtpPayload]> {
        Arc::clone(self.rtp.get_or_init(|| make().into()))
    }
}
