//! AAC (LC, HE-AAC, HE-AACv2; any rate, mono, stereo or more) → Opus, for
//! WebRTC viewers of AAC sources.
//!
//! Pipeline: FFmpeg's native `aac` decoder (raw frames, the track's
//! AudioSpecificConfig as extradata) → [`InputClock`] (anchor / continue /
//! fill / trim / re-anchor, in ticks of the *decoded* rate) → swresample to
//! 48 kHz planar `f32` → [`OpusEncoder`] (FIFO, 20 ms frames, `libopus`).
//!
//! Timestamps: input pts are in the track's timescale (the AAC core sample
//! rate, `AacParams::sample_rate`); output pts on Opus's 48 kHz clock. The
//! first input pts anchors the output (`pts · 48000 / rate`), samples are
//! counted from there, and the Opus encoder's delay is taken out (see
//! [`opus`](super::opus)): a decoder that plays each Opus packet at its pts
//! plays the audio the AAC decoder produced for each input packet at that
//! packet's pts. For HE-AAC the decoder's output rate is twice the core rate
//! and a frame has 2048 samples; the clock then runs at the output rate
//! (input pts are scaled to it). A change of the decoded rate or layout
//! (a new configuration mid-stream) starts a new timeline.
//!
//! AAC decoders add no delay of their own to LC frames; whatever priming the
//! source's encoder put at its start is passed on, as any player of the AAC
//! stream would play it.

use ffmpeg_next as ff;

use super::clock::{InputClock, Placement};
use super::ffutil::{Decoder, codec_err};
use super::opus::{OPUS_RATE, OpusEncoder, OpusEncoderConfig};
use super::resample::{FrameResampler, InputFormat};
use super::{AudioTranscoder, EncodedFrame, TranscodeError, TranscodeStats};
use crate::media::{AacParams, CodecParams};

/// AAC → Opus; see the module docs.
pub struct AacToOpus {
    decoder: Decoder,
    input_rate: u32,
    pipeline: Pipeline,
    finished: bool,
}

/// Everything after the decoder (split out so a decoded frame, which borrows
/// the decoder, can be handed to it).
struct Pipeline {
    out_channels: usize,
    /// Runs at `resampler.input().rate` (the decoded rate).
    clock: InputClock,
    /// `None` before the first decoded frame.
    resampler: Option<FrameResampler>,
    encoder: OpusEncoder,
    stats: TranscodeStats,
}

impl std::fmt::Debug for AacToOpus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AacToOpus")
            .field("input_rate", &self.input_rate)
            .field("resampler", &self.pipeline.resampler)
            .field("encoder", &self.pipeline.encoder)
            .field("stats", &self.pipeline.stats)
            .finish_non_exhaustive()
    }
}

impl AacToOpus {
    /// A transcoder for the AAC track described by `input` (its
    /// AudioSpecificConfig is required), with the default Opus settings:
    /// 20 ms frames, `libopus` in `audio` mode, 32 kbit/s mono or 64 kbit/s
    /// stereo. Mono stays mono; HE-AACv2 (parametric stereo) and stereo give
    /// stereo; more channels are downmixed to stereo.
    pub fn new(input: &AacParams) -> Result<Self, TranscodeError> {
        let channels = match (input.object_type, input.channels) {
            (29, _) => 2,
            (_, 1) => 1,
            _ => 2,
        };
        Self::with_encoder(input, OpusEncoderConfig::new(channels))
    }

    /// Like [`new`](Self::new) with a chosen Opus configuration.
    pub fn with_encoder(
        input: &AacParams,
        config: OpusEncoderConfig,
    ) -> Result<Self, TranscodeError> {
        let invalid = |reason: String| TranscodeError::InvalidConfig { reason };
        if input.asc.len() < 2 {
            return Err(invalid(
                "AAC → Opus: the track has no AudioSpecificConfig".into(),
            ));
        }
        if !(1000..=384_000).contains(&input.sample_rate) {
            return Err(invalid(format!(
                "AAC → Opus: track timescale {} Hz",
                input.sample_rate
            )));
        }
        super::aac::quiet_ffmpeg_log();
        let encoder = OpusEncoder::new(config)?;
        let codec = ff::decoder::find(ff::codec::Id::AAC)
            .ok_or_else(|| invalid("FFmpeg has no AAC decoder".into()))?;
        let decoder = Decoder::open(codec, &input.asc, "AAC decoder", |_| {})?;
        Ok(AacToOpus {
            decoder,
            input_rate: input.sample_rate,
            pipeline: Pipeline {
                out_channels: usize::from(config.channels),
                clock: InputClock::for_rate(input.sample_rate),
                resampler: None,
                encoder,
                stats: TranscodeStats::default(),
            },
            finished: false,
        })
    }

    pub fn stats(&self) -> TranscodeStats {
        self.pipeline.stats
    }

    /// The Opus encoder (its codec name and delay, for logs and tests).
    pub fn encoder(&self) -> &OpusEncoder {
        &self.pipeline.encoder
    }
}

impl AudioTranscoder for AacToOpus {
    fn push(&mut self, pts: i64, data: &[u8]) -> Result<Vec<EncodedFrame>, TranscodeError> {
        if self.finished {
            return Err(TranscodeError::Finished);
        }
        if data.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let input_rate = self.input_rate;
        // Samples (at the decoded rate) of earlier frames of this packet.
        let mut offset = 0i64;
        let pipeline = &mut self.pipeline;
        let result = self.decoder.decode(data, |frame| {
            let n = frame.samples();
            let r = pipeline.frame(pts, input_rate, offset, frame, &mut out);
            offset = offset.saturating_add(n as i64);
            r
        });
        self.pipeline.stats.output_frames += out.len() as u64;
        match result {
            Ok(()) => {
                self.pipeline.stats.input_packets += 1;
                Ok(out)
            }
            // Frames already made are not lost: an error after some output
            // (a later frame of the same packet) is only logged.
            Err(e) if !out.is_empty() => {
                tracing::debug!(error = %e, "AAC → Opus: part of a packet not transcoded");
                Ok(out)
            }
            Err(e) => Err(e),
        }
    }

    fn output(&self) -> &CodecParams {
        self.pipeline.encoder.params()
    }

    fn finish(&mut self) -> Result<Vec<EncodedFrame>, TranscodeError> {
        if self.finished {
            return Err(TranscodeError::Finished);
        }
        self.finished = true;
        let mut out = Vec::new();
        let p = &mut self.pipeline;
        if let Some(res) = p.resampler.as_mut() {
            p.encoder
                .push_with(&mut out, |fifo| res.flush(fifo).map_err(swr_err))?;
        }
        p.encoder.finish(&mut out)?;
        p.stats.output_frames += out.len() as u64;
        Ok(out)
    }
}

fn swr_err(e: ff::Error) -> TranscodeError {
    codec_err("swr_convert", "AAC → Opus resampler", e)
}

/// `v · num / den` (floor), saturating.
fn rescale(v: i64, num: u32, den: u32) -> i64 {
    let r = (v as i128 * num as i128).div_euclid(den.max(1) as i128);
    r.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

impl Pipeline {
    /// Places one decoded frame (the packet's pts plus `offset` samples) on
    /// the timeline and encodes it.
    fn frame(
        &mut self,
        pts: i64,
        input_rate: u32,
        offset: i64,
        frame: &ff::frame::Audio,
        out: &mut Vec<EncodedFrame>,
    ) -> Result<(), TranscodeError> {
        let n = frame.samples();
        if n == 0 {
            return Ok(());
        }
        let format = InputFormat::of(frame);
        let rate = format.rate;
        if rate == 0 {
            return Err(TranscodeError::InvalidInput {
                reason: "AAC decoder returned a frame without a sample rate".into(),
            });
        }
        let pts_r = rescale(pts, rate, input_rate).saturating_add(offset);
        let new_format = self.resampler.as_ref().map(FrameResampler::input) != Some(format);
        let placement = if new_format {
            if self.resampler.is_some() {
                tracing::info!(
                    ?format,
                    "AAC → Opus: decoded format changed; starting a new timeline"
                );
            }
            self.clock = InputClock::for_rate(rate);
            self.clock.place(pts_r, n)
        } else {
            self.clock.place(pts_r, n)
        };
        self.stats.input_samples += n as u64;
        let mut skip = 0usize;
        match placement {
            Placement::Anchor { drift } => {
                if let Some(drift) = drift {
                    self.stats.reanchors += 1;
                    let ms = drift as i128 * 1000 / rate as i128;
                    if self.stats.reanchors == 1 {
                        tracing::warn!(
                            pts,
                            drift_ms = ms as i64,
                            "AAC → Opus: input timestamps jumped; restarting the output clock \
                             (logged once; see reanchors in the stats)"
                        );
                    } else {
                        tracing::debug!(pts, drift_ms = ms as i64, "AAC → Opus: re-anchored");
                    }
                }
                let fresh =
                    FrameResampler::new(format, OPUS_RATE, self.out_channels).map_err(|_| {
                        TranscodeError::InvalidInput {
                            reason: format!(
                                "AAC decoder output not supported: {:?}, {} ch, {} Hz",
                                format.format, format.channels, format.rate
                            ),
                        }
                    })?;
                if let Some(old) = self.resampler.as_mut() {
                    self.encoder
                        .push_with(out, |fifo| old.flush(fifo).map_err(swr_err))?;
                }
                self.encoder.anchor(rescale(pts_r, OPUS_RATE, rate), out)?;
                self.resampler = Some(fresh);
            }
            Placement::Continue => {}
            Placement::Fill(k) => {
                self.stats.filled_samples += k;
                if let Some(res) = self.resampler.as_mut() {
                    self.encoder
                        .push_with(out, |fifo| res.silence(k, fifo).map_err(swr_err))?;
                }
            }
            Placement::Trim(k) => {
                self.stats.trimmed_samples += k;
                skip = usize::try_from(k).unwrap_or(n).min(n);
            }
        }
        if skip >= n {
            return Ok(());
        }
        let Some(res) = self.resampler.as_mut() else {
            return Ok(());
        };
        self.encoder
            .push_with(out, |fifo| res.convert(frame, skip, fifo).map_err(swr_err))
    }
}
