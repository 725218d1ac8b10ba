//! In-process audio transcoding, behind [`AudioTranscoder`].
//!
//! The relay never re-encodes media except audio that a reader cannot play:
//! - IP cameras send G.711 (PCMA/PCMU, 8 kHz mono), which hls.js, Safari and
//!   RTMP players cannot decode, so HLS and RTMP readers get AAC made by
//!   [`G711ToAac`], once per path.
//! - Browsers cannot play AAC over WebRTC: WHEP viewers of AAC sources (OBS
//!   over RTMP, cameras) get Opus made by [`AacToOpus`].
//! - WHIP publishers (OBS, browsers) send Opus, which HLS and RTMP readers
//!   cannot play: they get AAC made by [`OpusToAac`].
//!
//! Layout: [`g711`] and [`clock`] are pure Rust; [`aac`] (AAC-LC encoder),
//! [`opus`] (Opus encoder and decoder), `resample` and `ffutil` are the files
//! that talk to FFmpeg (ffmpeg-next); [`aac_to_opus`] and [`opus_to_aac`]
//! put them together. A transcoder is synchronous and CPU-bound (G.711 → AAC
//! costs well under 1% of a core, AAC ↔ Opus a few %): callers run it on
//! their own task.
//!
//! Timestamps: input pts are in the input track's timescale, output pts in the
//! output parameters' timescale (the AAC sample rate; 48 kHz for Opus). The
//! first input pts anchors the output clock and samples are counted from
//! there; lost packets are filled with silence, overlaps trimmed, and jumps of
//! more than 100 ms (either way) start a new anchor (see [`clock`]). The
//! encoder delay is taken out of the timestamps (see [`aac`] and [`opus`]):
//! decoded output lines up with the input.

pub mod aac;
pub mod aac_to_opus;
pub mod clock;
mod ffutil;
pub mod g711;
pub mod opus;
pub mod opus_to_aac;
mod resample;

use bytes::Bytes;

use crate::media::CodecParams;
use aac::{AacEncoder, AacEncoderConfig};
use clock::{InputClock, Placement};

pub use aac_to_opus::AacToOpus;
pub use opus::{OpusApplication, OpusEncoderConfig, OpusImplementation};
pub use opus_to_aac::OpusToAac;

/// Encoded audio frame out of a transcoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedFrame {
    /// Presentation time in the output params' timescale.
    pub pts: i64,
    /// One raw codec frame (for AAC: a raw access unit, no ADTS header).
    pub data: Bytes,
}

/// A transcoder for one audio track of one path. Synchronous and CPU-bound;
/// callers run it on their task (cheap for 8 kHz mono).
pub trait AudioTranscoder: Send {
    /// Input frame with its pts in the input timescale. Returns the output
    /// frames completed so far (in order).
    fn push(&mut self, pts: i64, data: &[u8]) -> Result<Vec<EncodedFrame>, TranscodeError>;

    /// Output codec parameters (constant).
    fn output(&self) -> &CodecParams;

    /// End of input: returns the frames still buffered (the last one padded
    /// with silence). The transcoder accepts no input afterwards. Dropping a
    /// transcoder without calling this is fine (the tail is lost).
    fn finish(&mut self) -> Result<Vec<EncodedFrame>, TranscodeError> {
        Ok(Vec::new())
    }
}

/// Errors of a transcoder. Callers add the path / session context.
#[derive(Debug, thiserror::Error)]
pub enum TranscodeError {
    #[error("transcoder configuration not supported: {reason}")]
    InvalidConfig { reason: String },
    #[error("invalid transcoder input: {reason}")]
    InvalidInput { reason: String },
    #[error("{detail}: {op} failed: {source}")]
    Codec {
        /// The FFmpeg call that failed.
        op: &'static str,
        /// Which codec / configuration.
        detail: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("transcoder already finished")]
    Finished,
}

/// The G.711 companding law: the media model's type, so a track's
/// `G711Params::law` goes straight into [`G711ToAac::new`].
pub use crate::media::G711Law;

/// Output choices of [`G711ToAac`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AacOutput {
    /// AAC sample rate (Hz) and output timescale.
    pub sample_rate: u32,
    /// Bit rate per channel (bit/s).
    pub bit_rate_per_channel: u32,
}

impl Default for AacOutput {
    /// 48 kHz (the rate every AAC decoder and HLS client handles, and 21 ms
    /// frames), 48 kbit/s per channel (transparent for 4 kHz-band G.711).
    fn default() -> Self {
        AacOutput {
            sample_rate: 48_000,
            bit_rate_per_channel: 48_000,
        }
    }
}

/// Counters of one transcoder.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TranscodeStats {
    pub input_packets: u64,
    pub input_samples: u64,
    pub output_frames: u64,
    /// Timeline restarts (pts jumps beyond the maximum gap).
    pub reanchors: u64,
    /// Samples of silence inserted for lost input (input rate).
    pub filled_samples: u64,
    /// Input samples dropped because they overlapped earlier input.
    pub trimmed_samples: u64,
}

/// G.711 (A-law or µ-law) → AAC-LC.
#[derive(Debug)]
pub struct G711ToAac {
    law: G711Law,
    input_rate: u32,
    output_rate: u32,
    channels: usize,
    clock: InputClock,
    encoder: AacEncoder,
    pcm: Vec<i16>,
    stats: TranscodeStats,
}

impl G711ToAac {
    /// A transcoder for G.711 at `sample_rate` Hz (normally 8000) with
    /// `channels` interleaved channels (1 or 2), to 48 kHz AAC-LC.
    pub fn new(law: G711Law, sample_rate: u32, channels: u8) -> Result<Self, TranscodeError> {
        Self::with_output(law, sample_rate, channels, AacOutput::default())
    }

    /// Like [`new`](Self::new) with a chosen AAC rate and bit rate.
    pub fn with_output(
        law: G711Law,
        sample_rate: u32,
        channels: u8,
        output: AacOutput,
    ) -> Result<Self, TranscodeError> {
        let encoder = AacEncoder::new(AacEncoderConfig {
            input_rate: sample_rate,
            channels,
            output_rate: output.sample_rate,
            bit_rate: output
                .bit_rate_per_channel
                .saturating_mul(u32::from(channels)),
            cutoff: None,
        })?;
        Ok(G711ToAac {
            law,
            input_rate: sample_rate,
            output_rate: output.sample_rate,
            channels: usize::from(channels),
            clock: InputClock::for_rate(sample_rate),
            encoder,
            pcm: Vec::new(),
            stats: TranscodeStats::default(),
        })
    }

    pub fn law(&self) -> G711Law {
        self.law
    }

    pub fn stats(&self) -> TranscodeStats {
        self.stats
    }

    /// Input ticks → output ticks (floor), saturating.
    fn to_output_ticks(&self, pts: i64) -> i64 {
        let v = (pts as i128 * self.output_rate as i128).div_euclid(self.input_rate as i128);
        v.clamp(i64::MIN as i128, i64::MAX as i128) as i64
    }
}

impl AudioTranscoder for G711ToAac {
    fn push(&mut self, pts: i64, data: &[u8]) -> Result<Vec<EncodedFrame>, TranscodeError> {
        if !data.len().is_multiple_of(self.channels) {
            return Err(TranscodeError::InvalidInput {
                reason: format!(
                    "G.711 packet of {} bytes at pts {pts} does not split into {} channels",
                    data.len(),
                    self.channels
                ),
            });
        }
        let samples = data.len() / self.channels;
        if samples == 0 {
            return Ok(Vec::new());
        }
        self.stats.input_packets += 1;
        self.stats.input_samples += samples as u64;
        let mut out = Vec::new();
        let mut skip = 0usize;
        match self.clock.place(pts, samples) {
            Placement::Anchor { drift } => {
                if let Some(drift) = drift {
                    self.stats.reanchors += 1;
                    let ms = drift as i128 * 1000 / self.input_rate as i128;
                    if self.stats.reanchors == 1 {
                        tracing::warn!(
                            pts,
                            drift_ms = ms as i64,
                            "G.711 → AAC: input timestamps jumped; restarting the output clock \
                             (logged once; see reanchors in the stats)"
                        );
                    } else {
                        tracing::debug!(pts, drift_ms = ms as i64, "G.711 → AAC: re-anchored");
                    }
                }
                let out_pts = self.to_output_ticks(pts);
                self.encoder.anchor(out_pts, &mut out)?;
            }
            Placement::Continue => {}
            Placement::Fill(n) => {
                self.stats.filled_samples += n;
                self.encoder.push_silence(n, &mut out)?;
            }
            Placement::Trim(n) => {
                self.stats.trimmed_samples += n;
                skip = usize::try_from(n).unwrap_or(samples).min(samples);
            }
        }
        let data = &data[skip * self.channels..];
        self.pcm.clear();
        match self.law {
            G711Law::ALaw => g711::decode_alaw(data, &mut self.pcm),
            G711Law::MuLaw => g711::decode_mulaw(data, &mut self.pcm),
        }
        self.encoder.push_pcm(&self.pcm, &mut out)?;
        self.stats.output_frames += out.len() as u64;
        Ok(out)
    }

    fn output(&self) -> &CodecParams {
        self.encoder.params()
    }

    fn finish(&mut self) -> Result<Vec<EncodedFrame>, TranscodeError> {
        let mut out = Vec::new();
        self.encoder.finish(&mut out)?;
        self.stats.output_frames += out.len() as u64;
        Ok(out)
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod opus_tests;
