//! AAC-LC encoding with FFmpeg's native `aac` encoder, through ffmpeg-next.
//!
//! This file is the only place in the crate that talks to FFmpeg. It turns a
//! timeline of interleaved `i16` PCM at any input rate into raw AAC-LC frames
//! (no ADTS) of 1024 samples with timestamps:
//!
//! 1. **Resample** (swresample) to the output rate and to planar `f32`, the
//!    encoder's sample format. swresample's output is phase-aligned with its
//!    input (an impulse at input sample *n* comes out at output sample
//!    *n·out/in*); it only holds back a few input samples (its filter length)
//!    until more input, or a flush, arrives.
//! 2. **Re-frame** through a FIFO into 1024-sample frames. The first sample of
//!    a timeline has the pts given to [`AacEncoder::anchor`]; every later sample
//!    is counted from there.
//! 3. **Encode.** FFmpeg's encoder has an `initial_padding` (encoder delay) of
//!    1024 samples: its first packet decodes to 1024 samples of priming, and
//!    packet *k* decodes to the audio of input frame *k − 1*. That first
//!    packet is dropped, and each later packet gets the pts of the input frame
//!    it decodes to (a queue of the pts of frames in flight). So a decoder that
//!    plays packet *k* at its pts plays the input's samples at their own
//!    times: output and input line up exactly, and the output never starts
//!    before the first input pts. The cost: a decoder starting at the very
//!    first packet lacks the overlap half of frame 0's window, so the first
//!    1024 samples (21 ms at 48 kHz) fade in — the same as for any reader who
//!    joins an AAC stream mid-way. Timestamps are our own, not the encoder's:
//!    FFmpeg's `frame pts − 1024` would be off by the length of a gap after a
//!    re-anchor.
//!
//! A new [`anchor`](AacEncoder::anchor) ends the current timeline: the
//! resampler is drained, the FIFO is padded with silence to a whole frame and
//! encoded (the encoder itself keeps running, so no new priming), and the next
//! sample starts at the new pts.

use std::collections::VecDeque;
use std::ffi::c_int;
use std::fmt;

use bytes::Bytes;
use ff::format::Sample;
use ff::format::sample::Type as SampleType;
use ff::{ChannelLayout, ffi};
use ffmpeg_next as ff;

use super::{EncodedFrame, TranscodeError};
use crate::media::{AacParams, CodecParams};

/// PCM samples per AAC-LC frame.
pub const AAC_FRAME_SAMPLES: usize = 1024;

/// Input frames (per channel) handed to swresample per call, which bounds the
/// scratch memory whatever the size of a pushed packet.
const CHUNK_FRAMES: usize = 4096;

/// What to encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AacEncoderConfig {
    /// Sample rate of the PCM pushed in (Hz).
    pub input_rate: u32,
    /// Interleaved channels of the PCM pushed in (1 or 2); the output has the same.
    pub channels: u8,
    /// AAC sample rate (Hz), which is also the output timescale. One of the
    /// AAC sampling frequencies (8000 … 96000).
    pub output_rate: u32,
    /// Target bit rate of the whole stream (bit/s).
    pub bit_rate: u32,
    /// Encoder low-pass (Hz); `None` for `input_rate / 2`, so no bits are
    /// spent above the band the input can carry.
    pub cutoff: Option<u32>,
}

/// FFmpeg AAC-LC encoder with resampler, FIFO and timestamps; see the module docs.
pub struct AacEncoder {
    config: AacEncoderConfig,
    params: CodecParams,
    encoder: ff::encoder::audio::Encoder,
    layout: ChannelLayout,
    channels: usize,
    /// `None` until the first anchor; replaced on every anchor.
    resampler: Option<Resampler>,
    /// Resampled planar samples waiting for a whole frame, one Vec per channel.
    fifo: Vec<Vec<f32>>,
    /// Output pts of `fifo[_][0]`.
    fifo_pts: i64,
    /// Pts of the frames sent to the encoder whose packets are not out yet.
    in_flight: VecDeque<i64>,
    /// Packets at the start of the stream that only carry encoder priming.
    priming_packets: usize,
    last_pts: Option<i64>,
    /// Frames sent to the encoder (its internal timestamps).
    frames_sent: i64,
    packet: ff::Packet,
    finished: bool,
}

impl fmt::Debug for AacEncoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AacEncoder")
            .field("config", &self.config)
            .field("fifo_len", &self.fifo.first().map_or(0, Vec::len))
            .field("fifo_pts", &self.fifo_pts)
            .field("in_flight", &self.in_flight.len())
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

fn ff_err(op: &'static str, config: &AacEncoderConfig, e: ff::Error) -> TranscodeError {
    TranscodeError::Codec {
        op,
        detail: format!(
            "AAC encoder {} Hz → {} Hz, {} ch",
            config.input_rate, config.output_rate, config.channels
        ),
        source: Box::new(e),
    }
}

/// FFmpeg logs to stderr by itself, bypassing `tracing`: at its default
/// level a line per encoder close (`Qavg`, `frames left in the queue`), and
/// at its error level a line per corrupt packet a publisher sends to a
/// decoder (the AAC and Opus decoders of this module). Only fatal messages
/// are kept (process-wide; FFmpeg is used nowhere else); failures come back
/// as [`TranscodeError`], which callers log with their context.
pub(super) fn quiet_ffmpeg_log() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| ff::util::log::set_level(ff::util::log::Level::Fatal));
}

impl AacEncoder {
    /// Opens FFmpeg's native `aac` encoder (AAC-LC, planar float input).
    pub fn new(config: AacEncoderConfig) -> Result<Self, TranscodeError> {
        let invalid = |reason: String| TranscodeError::InvalidConfig { reason };
        if !(1..=2).contains(&config.channels) {
            return Err(invalid(format!(
                "{} channels (1 or 2 supported)",
                config.channels
            )));
        }
        if !(1000..=384_000).contains(&config.input_rate) {
            return Err(invalid(format!("input rate {} Hz", config.input_rate)));
        }
        if !(8000..=96_000).contains(&config.output_rate) {
            return Err(invalid(format!(
                "AAC output rate {} Hz",
                config.output_rate
            )));
        }
        if !(8000..=512_000).contains(&config.bit_rate) {
            return Err(invalid(format!("bit rate {} bit/s", config.bit_rate)));
        }
        quiet_ffmpeg_log();
        let channels = usize::from(config.channels);
        let layout = ChannelLayout::default(i32::from(config.channels));
        let codec = ff::encoder::find(ff::codec::Id::AAC).ok_or_else(|| {
            invalid("FFmpeg has no AAC encoder (libavcodec built without it?)".into())
        })?;
        let context = ff::codec::Context::new_with_codec(codec);
        let mut enc = context
            .encoder()
            .audio()
            .map_err(|e| ff_err("avcodec_alloc_context3", &config, e))?;
        enc.set_rate(config.output_rate as i32);
        enc.set_channel_layout(layout);
        enc.set_channels(i32::from(config.channels));
        enc.set_format(Sample::F32(SampleType::Planar));
        enc.set_bit_rate(config.bit_rate as usize);
        enc.set_time_base(ff::Rational::new(1, config.output_rate as i32));
        enc.set_flags(ff::codec::Flags::GLOBAL_HEADER);
        let cutoff = config
            .cutoff
            .unwrap_or(config.input_rate / 2)
            .min(config.output_rate / 2);
        // SAFETY: the context is allocated and not yet opened; `cutoff` is a
        // plain int field read by avcodec_open2.
        unsafe {
            (*enc.as_mut_ptr()).cutoff = cutoff as c_int;
        }
        let encoder = enc
            .open_as(codec)
            .map_err(|e| ff_err("avcodec_open2", &config, e))?;

        // SAFETY: the encoder is open; extradata/extradata_size, frame_size and
        // initial_padding are set by avcodec_open2 and live as long as it.
        let (asc, frame_size, initial_padding) = unsafe {
            let p = encoder.as_ptr();
            let size = usize::try_from((*p).extradata_size).unwrap_or(0);
            let asc = if (*p).extradata.is_null() || size == 0 {
                Bytes::new()
            } else {
                Bytes::copy_from_slice(std::slice::from_raw_parts((*p).extradata, size))
            };
            (asc, (*p).frame_size, (*p).initial_padding)
        };
        if asc.len() < 2 {
            return Err(invalid("encoder produced no AudioSpecificConfig".into()));
        }
        if frame_size != AAC_FRAME_SAMPLES as c_int {
            return Err(invalid(format!(
                "encoder frame size {frame_size}, want 1024"
            )));
        }
        let initial_padding = usize::try_from(initial_padding).unwrap_or(0);
        if !initial_padding.is_multiple_of(AAC_FRAME_SAMPLES) {
            return Err(invalid(format!(
                "encoder delay {initial_padding} is not a whole number of frames"
            )));
        }
        let params = CodecParams::Aac(AacParams {
            asc,
            object_type: 2,
            sample_rate: config.output_rate,
            channels: config.channels,
            samples_per_frame: AAC_FRAME_SAMPLES as u32,
        });
        Ok(AacEncoder {
            config,
            params,
            encoder,
            layout,
            channels,
            resampler: None,
            fifo: vec![Vec::with_capacity(2 * AAC_FRAME_SAMPLES); channels],
            fifo_pts: 0,
            in_flight: VecDeque::new(),
            priming_packets: initial_padding / AAC_FRAME_SAMPLES,
            last_pts: None,
            frames_sent: 0,
            packet: ff::Packet::empty(),
            finished: false,
        })
    }

    pub fn config(&self) -> &AacEncoderConfig {
        &self.config
    }

    /// `CodecParams::Aac` with the encoder's AudioSpecificConfig.
    pub fn params(&self) -> &CodecParams {
        &self.params
    }

    /// Starts a timeline: the next sample pushed has pts `out_pts` (output
    /// timescale). Ends the current timeline first, if any (its remaining
    /// frames are appended to `out`); if `out_pts` falls inside the last frame
    /// of that timeline, the new one starts right after it instead.
    pub fn anchor(
        &mut self,
        out_pts: i64,
        out: &mut Vec<EncodedFrame>,
    ) -> Result<(), TranscodeError> {
        self.check_open()?;
        let mut out_pts = out_pts;
        if self.resampler.is_some() {
            self.end_timeline(out)?;
            // Never start inside the old timeline's last (padded) frame, so
            // frames do not overlap. (Only possible at output rates where a
            // frame lasts longer than the clock's maximum gap, e.g. 8 kHz.)
            let end = self.fifo_pts;
            if out_pts < end && out_pts > end.saturating_sub(AAC_FRAME_SAMPLES as i64) {
                out_pts = end;
            }
        }
        self.resampler = Some(Resampler::new(&self.config, self.layout)?);
        self.fifo_pts = out_pts;
        Ok(())
    }

    /// Appends interleaved PCM (at the input rate) to the current timeline.
    pub fn push_pcm(
        &mut self,
        pcm: &[i16],
        out: &mut Vec<EncodedFrame>,
    ) -> Result<(), TranscodeError> {
        self.check_open()?;
        if !pcm.len().is_multiple_of(self.channels) {
            return Err(TranscodeError::InvalidInput {
                reason: format!(
                    "{} samples do not split into {} channels",
                    pcm.len(),
                    self.channels
                ),
            });
        }
        for chunk in pcm.chunks(CHUNK_FRAMES * self.channels) {
            self.resample(Some(chunk))?;
            self.encode_whole_frames(out)?;
        }
        Ok(())
    }

    /// Appends `frames` samples (per channel, at the input rate) of silence.
    pub fn push_silence(
        &mut self,
        frames: u64,
        out: &mut Vec<EncodedFrame>,
    ) -> Result<(), TranscodeError> {
        self.check_open()?;
        let zeros = vec![0i16; CHUNK_FRAMES * self.channels];
        let mut left = frames;
        while left > 0 {
            let n = left.min(CHUNK_FRAMES as u64) as usize;
            self.push_pcm(&zeros[..n * self.channels], out)?;
            left -= n as u64;
        }
        Ok(())
    }

    /// Ends the stream: encodes everything buffered (the last frame padded
    /// with silence) and drains the encoder. Later calls fail with
    /// [`TranscodeError::Finished`].
    pub fn finish(&mut self, out: &mut Vec<EncodedFrame>) -> Result<(), TranscodeError> {
        self.check_open()?;
        self.finished = true;
        if self.resampler.is_some() {
            self.end_timeline(out)?;
        }
        self.encoder
            .send_eof()
            .map_err(|e| ff_err("avcodec_send_frame(EOF)", &self.config, e))?;
        self.receive_packets(out)
    }

    fn check_open(&self) -> Result<(), TranscodeError> {
        if self.finished {
            Err(TranscodeError::Finished)
        } else {
            Ok(())
        }
    }

    /// Drains the resampler and encodes the FIFO, padded to a whole frame.
    fn end_timeline(&mut self, out: &mut Vec<EncodedFrame>) -> Result<(), TranscodeError> {
        self.resample(None)?;
        self.encode_whole_frames(out)?;
        let len = self.fifo[0].len();
        if len > 0 {
            for ch in &mut self.fifo {
                ch.resize(AAC_FRAME_SAMPLES, 0.0);
            }
            self.encode_frame(out)?;
        }
        Ok(())
    }

    /// Feeds interleaved PCM (or, with `None`, a flush) through the resampler
    /// into the FIFO.
    fn resample(&mut self, input: Option<&[i16]>) -> Result<(), TranscodeError> {
        let Some(resampler) = self.resampler.as_mut() else {
            return Err(TranscodeError::InvalidInput {
                reason: "PCM pushed before the timeline was anchored".into(),
            });
        };
        resampler
            .convert(input, &mut self.fifo)
            .map_err(|e| ff_err("swr_convert", &self.config, e))
    }

    fn encode_whole_frames(&mut self, out: &mut Vec<EncodedFrame>) -> Result<(), TranscodeError> {
        while self.fifo[0].len() >= AAC_FRAME_SAMPLES {
            self.encode_frame(out)?;
        }
        Ok(())
    }

    /// Sends the FIFO's first 1024 samples to the encoder and collects packets.
    fn encode_frame(&mut self, out: &mut Vec<EncodedFrame>) -> Result<(), TranscodeError> {
        let mut frame = ff::frame::Audio::new(
            Sample::F32(SampleType::Planar),
            AAC_FRAME_SAMPLES,
            self.layout,
        );
        frame.set_rate(self.config.output_rate);
        // The encoder sees its own monotonic sample count (it warns about
        // timestamps going backwards otherwise); ours are kept in `in_flight`.
        frame.set_pts(Some(
            self.frames_sent.saturating_mul(AAC_FRAME_SAMPLES as i64),
        ));
        self.frames_sent = self.frames_sent.saturating_add(1);
        for (ch, samples) in self.fifo.iter_mut().enumerate() {
            if samples.len() < AAC_FRAME_SAMPLES {
                return Err(TranscodeError::InvalidInput {
                    reason: format!("FIFO channel {ch} holds {} samples", samples.len()),
                });
            }
            // SAFETY: the frame was allocated for AAC_FRAME_SAMPLES planar f32
            // samples per channel; data[ch] is that channel's plane unless
            // av_frame_get_buffer failed (null, which ffmpeg-next does not
            // report), and `samples` holds at least AAC_FRAME_SAMPLES.
            unsafe {
                let plane = (*frame.as_mut_ptr()).data[ch].cast::<f32>();
                if plane.is_null() {
                    return Err(ff_err(
                        "av_frame_get_buffer",
                        &self.config,
                        ff::Error::Other {
                            errno: ff::util::error::ENOMEM,
                        },
                    ));
                }
                std::ptr::copy_nonoverlapping(samples.as_ptr(), plane, AAC_FRAME_SAMPLES);
            }
            samples.drain(..AAC_FRAME_SAMPLES);
        }
        self.encoder
            .send_frame(&frame)
            .map_err(|e| ff_err("avcodec_send_frame", &self.config, e))?;
        self.in_flight.push_back(self.fifo_pts);
        self.fifo_pts = self.fifo_pts.saturating_add(AAC_FRAME_SAMPLES as i64);
        self.receive_packets(out)
    }

    fn receive_packets(&mut self, out: &mut Vec<EncodedFrame>) -> Result<(), TranscodeError> {
        loop {
            match self.encoder.receive_packet(&mut self.packet) {
                Ok(()) => {}
                Err(ff::Error::Other { errno }) if errno == ff::util::error::EAGAIN => {
                    return Ok(());
                }
                Err(ff::Error::Eof) => return Ok(()),
                Err(e) => return Err(ff_err("avcodec_receive_packet", &self.config, e)),
            }
            if self.priming_packets > 0 {
                self.priming_packets -= 1;
                continue;
            }
            // Packet k (after priming) decodes to the audio of frame k.
            let pts = match self.in_flight.pop_front() {
                Some(pts) => pts,
                None => self.last_pts.map_or(self.fifo_pts, |p| {
                    p.saturating_add(AAC_FRAME_SAMPLES as i64)
                }),
            };
            let data = self.packet.data().unwrap_or_default();
            if data.is_empty() {
                continue;
            }
            self.last_pts = Some(pts);
            out.push(EncodedFrame {
                pts,
                data: Bytes::copy_from_slice(data),
            });
        }
    }
}

/// swresample from interleaved `i16` to planar `f32`, driven with our own
/// buffers (`swr_convert`), since ffmpeg-next's frame API sizes its output by
/// the input and so cannot upsample in one call.
struct Resampler {
    ctx: ff::software::resampling::Context,
    channels: usize,
}

impl Resampler {
    fn new(config: &AacEncoderConfig, layout: ChannelLayout) -> Result<Self, TranscodeError> {
        let ctx = ff::software::resampling::Context::get(
            Sample::I16(SampleType::Packed),
            layout,
            config.input_rate,
            Sample::F32(SampleType::Planar),
            layout,
            config.output_rate,
        )
        .map_err(|e| ff_err("swr_init", config, e))?;
        Ok(Resampler {
            ctx,
            channels: usize::from(config.channels),
        })
    }

    /// Converts `input` (interleaved; `None` drains the buffered tail) and
    /// appends the result to the planar `fifo`.
    fn convert(&mut self, input: Option<&[i16]>, fifo: &mut [Vec<f32>]) -> Result<(), ff::Error> {
        let in_frames = input.map_or(0, |i| i.len() / self.channels);
        let in_count = c_int::try_from(in_frames).map_err(|_| ff::Error::InvalidData)?;
        loop {
            // SAFETY: the context is initialised; this only reads its state.
            let cap = unsafe { ffi::swr_get_out_samples(self.ctx.as_mut_ptr(), in_count) };
            if cap < 0 {
                return Err(ff::Error::from(cap));
            }
            let cap = cap.max(0) + 16;
            let start = fifo[0].len();
            let mut out_ptrs = [std::ptr::null_mut::<u8>(); 2];
            for (ch, buf) in fifo.iter_mut().enumerate().take(self.channels) {
                buf.resize(start + cap as usize, 0.0);
                out_ptrs[ch] = buf[start..].as_mut_ptr().cast();
            }
            let mut in_ptrs = [input.map_or(std::ptr::null(), |i| i.as_ptr().cast::<u8>())];
            // SAFETY: each out pointer has room for `cap` f32 samples; the input
            // pointer (if any) covers `in_count` interleaved frames of
            // `channels` i16 samples; a null input array asks for a flush.
            let n = unsafe {
                ffi::swr_convert(
                    self.ctx.as_mut_ptr(),
                    out_ptrs.as_mut_ptr(),
                    cap,
                    if input.is_some() {
                        in_ptrs.as_mut_ptr()
                    } else {
                        std::ptr::null_mut()
                    },
                    if input.is_some() { in_count } else { 0 },
                )
            };
            let produced = usize::try_from(n).unwrap_or(0);
            for buf in fifo.iter_mut() {
                buf.truncate(start + produced);
            }
            if n < 0 {
                return Err(ff::Error::from(n));
            }
            // A conversion with input always fits `cap`; a flush may need
            // another round if it filled the buffer.
            if input.is_some() || produced < cap as usize {
                return Ok(());
            }
        }
    }
}

/// Test-only AAC decoder (FFmpeg's native `aac`), used to prove that what the
/// encoder produced is AAC of the input.
#[cfg(test)]
pub(crate) mod test_decoder {
    use super::*;

    pub struct Decoder {
        dec: ff::decoder::Audio,
        frame: ff::frame::Audio,
    }

    impl Decoder {
        /// Opens a decoder for raw AAC frames described by `asc`.
        pub fn new(asc: &[u8]) -> Decoder {
            let codec = ff::decoder::find(ff::codec::Id::AAC).expect("aac decoder");
            let mut ctx = ff::codec::Context::new_with_codec(codec);
            // SAFETY: extradata is allocated with av_mallocz (padded, zeroed) and
            // owned by the context from here on, which frees it.
            unsafe {
                let pad = ffi::AV_INPUT_BUFFER_PADDING_SIZE as usize;
                let buf = ffi::av_mallocz(asc.len() + pad).cast::<u8>();
                assert!(!buf.is_null());
                std::ptr::copy_nonoverlapping(asc.as_ptr(), buf, asc.len());
                let p = ctx.as_mut_ptr();
                (*p).extradata = buf;
                (*p).extradata_size = asc.len() as c_int;
            }
            let dec = ctx.decoder().audio().expect("open aac decoder");
            Decoder {
                dec,
                frame: ff::frame::Audio::empty(),
            }
        }

        /// Decodes one raw AAC frame; returns the first channel's samples.
        pub fn decode(&mut self, data: &[u8]) -> Vec<f32> {
            let packet = ff::Packet::copy(data);
            self.dec.send_packet(&packet).expect("send_packet");
            let mut out = Vec::new();
            while self.dec.receive_frame(&mut self.frame).is_ok() {
                assert_eq!(self.frame.format(), Sample::F32(SampleType::Planar));
                let n = self.frame.samples();
                out.extend_from_slice(&self.frame.plane::<f32>(0)[..n]);
            }
            out
        }

        pub fn rate(&self) -> u32 {
            self.dec.rate()
        }

        pub fn channels(&self) -> u16 {
            self.dec.channels()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> AacEncoderConfig {
        AacEncoderConfig {
            input_rate: 8000,
            channels: 1,
            output_rate: 48_000,
            bit_rate: 48_000,
            cutoff: None,
        }
    }

    #[test]
    fn asc_is_aac_lc_48k_mono() {
        let enc = AacEncoder::new(config()).unwrap();
        let CodecParams::Aac(p) = enc.params() else {
            panic!("not AAC")
        };
        // AOT 2, frequency index 3 (48 kHz), channel configuration 1.
        assert_eq!(&p.asc[..2], &[0x11, 0x88]);
        assert_eq!(p.object_type, 2);
        assert_eq!(p.sample_rate, 48_000);
        assert_eq!(p.samples_per_frame, 1024);
        eprintln!("ASC {:02x?}", &p.asc[..]);
        let _decoder_accepts_it = test_decoder::Decoder::new(&p.asc);
    }

    #[test]
    fn invalid_configs_are_errors() {
        for c in [
            AacEncoderConfig {
                channels: 0,
                ..config()
            },
            AacEncoderConfig {
                channels: 3,
                ..config()
            },
            AacEncoderConfig {
                input_rate: 0,
                ..config()
            },
            AacEncoderConfig {
                output_rate: 7000,
                ..config()
            },
            AacEncoderConfig {
                output_rate: 47_000,
                ..config()
            },
            AacEncoderConfig {
                bit_rate: 0,
                ..config()
            },
        ] {
            let e = AacEncoder::new(c).unwrap_err();
            assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn resampler_is_phase_aligned() {
        let cfg = config();
        let mut r = Resampler::new(&cfg, ChannelLayout::MONO).unwrap();
        let mut input = vec![0i16; 400];
        input[100] = 16000;
        let mut fifo = vec![Vec::new()];
        for chunk in input.chunks(37) {
            r.convert(Some(chunk), &mut fifo).unwrap();
        }
        r.convert(None, &mut fifo).unwrap();
        assert_eq!(fifo[0].len(), 2400);
        let peak = fifo[0]
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
            .unwrap()
            .0;
        assert_eq!(peak, 600);
    }

    #[test]
    fn push_before_anchor_and_after_finish_fail() {
        let mut enc = AacEncoder::new(config()).unwrap();
        let mut out = Vec::new();
        assert!(enc.push_pcm(&[0; 160], &mut out).is_err());
        enc.anchor(0, &mut out).unwrap();
        enc.push_pcm(&[0; 160], &mut out).unwrap();
        enc.finish(&mut out).unwrap();
        assert!(matches!(
            enc.push_pcm(&[0; 160], &mut out),
            Err(TranscodeError::Finished)
        ));
        assert!(matches!(
            enc.finish(&mut out),
            Err(TranscodeError::Finished)
        ));
    }
}
