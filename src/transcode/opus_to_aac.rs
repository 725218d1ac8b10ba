//! Opus → AAC-LC, for WHIP ingest (browsers and OBS send Opus) so that HLS
//! and RTMP readers get AAC.
//!
//! Pipeline: FFmpeg's `libopus` decoder (or the native `opus` one) at 48 kHz
//! with the track's channel count → [`InputClock`] at 48 kHz → the AAC-LC
//! encoder of [`aac`](super::aac) at 48 kHz. Packets of any duration (2.5 to
//! 120 ms, 10/20/40/60 ms in practice) are accepted; each decodes to its own
//! number of samples.
//!
//! Timestamps: input and output are both on the 48 kHz clock (Opus's RTP
//! clock and the AAC sample rate), so the first input pts is the first output
//! pts. RTP Opus has no pre-skip: every decoded sample belongs at its
//! packet's pts + its index (the sender's encoder lookahead is latency that
//! every WebRTC receiver plays too). The AAC encoder's priming is taken out
//! as for G.711 (see [`aac`](super::aac)). Lost packets are filled with
//! silence, duplicates trimmed, jumps re-anchored ([`clock`](super::clock)).

use super::aac::{AacEncoder, AacEncoderConfig};
use super::clock::{InputClock, Placement};
use super::opus::{OPUS_RATE, OpusDecoder, OpusImplementation};
use super::{AudioTranscoder, EncodedFrame, TranscodeError, TranscodeStats};
use crate::media::{CodecParams, OpusParams};

/// AAC bit rate per channel: 128 kbit/s for stereo, as OBS sends.
const AAC_BIT_RATE_PER_CHANNEL: u32 = 64_000;

/// Opus → AAC-LC 48 kHz; see the module docs.
#[derive(Debug)]
pub struct OpusToAac {
    channels: usize,
    decoder: OpusDecoder,
    clock: InputClock,
    encoder: AacEncoder,
    pcm: Vec<i16>,
    stats: TranscodeStats,
    finished: bool,
}

/// FFmpeg's own AAC low-pass for a bit rate per channel
/// (`AAC_CUTOFF_FROM_BITRATE` in libavcodec's psymodel.h): 16 kHz at
/// 64 kbit/s. [`AacEncoderConfig::cutoff`] would otherwise default to half the
/// input rate (24 kHz), spending bits on a band nobody hears at this rate.
fn aac_cutoff(bit_rate_per_channel: u32, rate: u32) -> u32 {
    let b = bit_rate_per_channel;
    let a = (b / 5).max((b * 15 / 32).saturating_sub(5500));
    a.min(3000 + b / 4)
        .min(12_000 + b / 16)
        .min(22_000)
        .min(rate / 2)
}

/// RTP Opus timestamps are sample-exact, and packets can be as short as
/// 2.5 ms (120 samples): a tolerance of 2 ms (96 ticks) still absorbs
/// millisecond timestamps (Opus over enhanced RTMP) and notices every lost
/// packet, where the default 15 ms would miss a lost 10 ms packet. Jumps
/// beyond 100 ms start a new timeline, as everywhere.
fn input_clock() -> InputClock {
    InputClock::new(u64::from(OPUS_RATE) * 2 / 1000, u64::from(OPUS_RATE) / 10)
}

impl OpusToAac {
    /// A transcoder for an Opus track of `input.channels` (1 or 2) channels:
    /// AAC-LC, 48 kHz, same channels, 64 kbit/s per channel.
    pub fn new(input: &OpusParams) -> Result<Self, TranscodeError> {
        Self::with_decoder(input, OpusImplementation::Auto)
    }

    /// Like [`new`](Self::new) with a chosen Opus decoder.
    pub fn with_decoder(
        input: &OpusParams,
        implementation: OpusImplementation,
    ) -> Result<Self, TranscodeError> {
        let decoder = OpusDecoder::new(input.channels, implementation)?;
        let encoder = AacEncoder::new(AacEncoderConfig {
            input_rate: OPUS_RATE,
            channels: input.channels,
            output_rate: OPUS_RATE,
            bit_rate: AAC_BIT_RATE_PER_CHANNEL * u32::from(input.channels),
            cutoff: Some(aac_cutoff(AAC_BIT_RATE_PER_CHANNEL, OPUS_RATE)),
        })?;
        Ok(OpusToAac {
            channels: usize::from(input.channels),
            decoder,
            clock: input_clock(),
            encoder,
            pcm: Vec::new(),
            stats: TranscodeStats::default(),
            finished: false,
        })
    }

    pub fn stats(&self) -> TranscodeStats {
        self.stats
    }

    /// `libopus` or `opus`.
    pub fn decoder_name(&self) -> &'static str {
        self.decoder.codec_name()
    }
}

impl AudioTranscoder for OpusToAac {
    fn push(&mut self, pts: i64, data: &[u8]) -> Result<Vec<EncodedFrame>, TranscodeError> {
        if self.finished {
            return Err(TranscodeError::Finished);
        }
        if data.is_empty() {
            return Ok(Vec::new());
        }
        self.pcm.clear();
        let samples = self.decoder.decode(data, &mut self.pcm)?;
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
                    let ms = drift / 48;
                    if self.stats.reanchors == 1 {
                        tracing::warn!(
                            pts,
                            drift_ms = ms,
                            "Opus → AAC: input timestamps jumped; restarting the output clock \
                             (logged once; see reanchors in the stats)"
                        );
                    } else {
                        tracing::debug!(pts, drift_ms = ms, "Opus → AAC: re-anchored");
                    }
                }
                self.encoder.anchor(pts, &mut out)?;
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
        self.encoder
            .push_pcm(&self.pcm[skip * self.channels..], &mut out)?;
        self.stats.output_frames += out.len() as u64;
        Ok(out)
    }

    fn output(&self) -> &CodecParams {
        self.encoder.params()
    }

    fn finish(&mut self) -> Result<Vec<EncodedFrame>, TranscodeError> {
        if self.finished {
            return Err(TranscodeError::Finished);
        }
        self.finished = true;
        let mut out = Vec::new();
        self.encoder.finish(&mut out)?;
        self.stats.output_frames += out.len() as u64;
        Ok(out)
    }
}
