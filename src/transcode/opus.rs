//! Opus encoding and decoding with FFmpeg (`libopus`, else FFmpeg's native
//! `opus` codec), through ffmpeg-next.
//!
//! # Encoder: planar `f32` at 48 kHz → Opus packets with timestamps
//!
//! Samples are appended to a FIFO (by the caller's resampler, through
//! [`OpusEncoder::push_with`]), cut into the encoder's frames and encoded;
//! with `libopus` one 960-sample frame (20 ms) gives one packet.
//!
//! **Encoder delay.** libopus looks ahead (`OPUS_GET_LOOKAHEAD`, FFmpeg's
//! `initial_padding`: 312 samples = 6.5 ms in `audio` mode, 120 in
//! `lowdelay`): packet *j* decodes to encoder input samples
//! `[960·j − D, 960·j − D + 960)`. RTP has no pre-skip field (an Ogg or MP4
//! file would carry it; WebRTC receivers just play every decoded sample), so
//! the delay is taken out of the timestamps instead:
//!
//! - FFmpeg stamps each packet with the encoder-input index of its first
//!   decoded sample (`frame pts − initial_padding`); we feed frames with our
//!   own running sample count and map that index back to *our* timestamps
//!   through a list of spans (encoder index ↔ output pts) of what was sent.
//!   Packets whose first sample precedes all input (pure priming) are dropped.
//! - Each timeline (see [`anchor`](OpusEncoder::anchor)) starts with
//!   `P = 960 − D mod 960` samples of silence (648 for libopus), so that a
//!   packet boundary falls exactly on the first input sample: the first packet
//!   that carries input has the anchor's pts, packets follow 960 apart, and a
//!   decoder that plays packet *k* at its pts plays every input sample at its
//!   own time. Nothing of the input is lost; the one packet before it is all
//!   priming and is dropped.
//! - A timeline ends padded with silence to a whole packet; the next one
//!   starts with its own `P` samples, so the packet that straddles the two
//!   carries the old tail plus silence and belongs to the old timeline. At
//!   [`finish`](OpusEncoder::finish) the encoder is flushed so that tail
//!   comes out too.
//!
//! The encoder runs on across timelines (no new priming, no decoder reset on
//! the receiver's side).
//!
//! # Decoder
//!
//! [`OpusDecoder`] decodes RTP-style Opus packets (any frame duration, 2.5 to
//! 120 ms) to interleaved `i16` at 48 kHz. It is opened with an `OpusHead`
//! of pre-skip 0: RTP Opus has no pre-skip, so every decoded sample belongs
//! to its packet's timestamp.

use std::collections::VecDeque;
use std::fmt;

use bytes::Bytes;
use ff::ffi;
use ff::format::Sample;
use ff::format::sample::Type as SampleType;
use ff::{ChannelLayout, Dictionary};
use ffmpeg_next as ff;

use super::ffutil::{self, Decoder, codec_err, is_eagain};
use super::{EncodedFrame, TranscodeError};
use crate::media::{CodecParams, OpusParams};

/// Opus's clock rate (RFC 7587): timestamps and samples are at 48 kHz.
pub const OPUS_RATE: u32 = 48_000;

/// Samples per 20 ms Opus frame at 48 kHz, the WebRTC default.
pub const OPUS_FRAME_SAMPLES: usize = 960;

/// libopus's application setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpusApplication {
    /// Favour faithfulness to the input (music, mixed content): the default.
    Audio,
    /// Favour speech intelligibility.
    Voip,
    /// CELT only, lowest delay (120-sample lookahead instead of 312).
    LowDelay,
}

/// Which FFmpeg Opus codec to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpusImplementation {
    /// `libopus` if FFmpeg has it, else the native `opus` codec.
    Auto,
    /// The reference library through FFmpeg's `libopus` wrapper.
    LibOpus,
    /// FFmpeg's own codec (`opus`; its encoder is marked experimental).
    Native,
}

/// What to encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusEncoderConfig {
    /// 1 or 2.
    pub channels: u8,
    /// Target bit rate of the whole stream (bit/s).
    pub bit_rate: u32,
    /// Samples per packet at 48 kHz: 120, 240, 480, 960, 1920 or 2880
    /// (2.5 to 60 ms). Only `libopus` honours it; the native encoder picks
    /// its own (20 ms).
    pub frame_samples: usize,
    pub application: OpusApplication,
    pub implementation: OpusImplementation,
}

impl OpusEncoderConfig {
    /// 20 ms packets, `audio` application, 32 kbit/s per channel (64 kbit/s
    /// stereo: transparent enough for programme audio in a browser).
    pub fn new(channels: u8) -> Self {
        OpusEncoderConfig {
            channels,
            bit_rate: 32_000 * u32::from(channels),
            frame_samples: OPUS_FRAME_SAMPLES,
            application: OpusApplication::Audio,
            implementation: OpusImplementation::Auto,
        }
    }
}

/// Encoder-input samples `[e, e + len)` were sent with output pts `ts…`.
#[derive(Debug, Clone, Copy)]
struct Span {
    e: i64,
    ts: i64,
    len: i64,
}

/// FFmpeg Opus encoder with FIFO and timestamps; see the module docs.
pub struct OpusEncoder {
    config: OpusEncoderConfig,
    params: CodecParams,
    codec_name: &'static str,
    encoder: ff::encoder::audio::Encoder,
    layout: ChannelLayout,
    channels: usize,
    /// The encoder's input format: packed `flt` (libopus) or planar (native).
    format: Sample,
    /// Samples per encoder input frame (960 for libopus, 120 for native).
    frame_size: usize,
    /// Samples per packet / timeline granularity.
    packet_samples: usize,
    /// Encoder delay (FFmpeg's `initial_padding`).
    delay: usize,
    /// Silence at the start of each timeline; see the module docs.
    pre_pad: usize,
    fifo: Vec<Vec<f32>>,
    /// Output pts of `fifo[_][0]`.
    fifo_pts: i64,
    /// Encoder-input index of `fifo[_][0]`.
    e_next: i64,
    spans: VecDeque<Span>,
    /// A timeline is open (anchored).
    open: bool,
    finished: bool,
    packet: ff::Packet,
}

impl fmt::Debug for OpusEncoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpusEncoder")
            .field("config", &self.config)
            .field("codec", &self.codec_name)
            .field("frame_size", &self.frame_size)
            .field("delay", &self.delay)
            .field("fifo_len", &self.fifo.first().map_or(0, Vec::len))
            .field("fifo_pts", &self.fifo_pts)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl OpusEncoder {
    pub fn new(config: OpusEncoderConfig) -> Result<Self, TranscodeError> {
        let invalid = |reason: String| TranscodeError::InvalidConfig { reason };
        if !(1..=2).contains(&config.channels) {
            return Err(invalid(format!(
                "Opus: {} channels (1 or 2 supported)",
                config.channels
            )));
        }
        if !(6000..=510_000).contains(&config.bit_rate) {
            return Err(invalid(format!("Opus: bit rate {} bit/s", config.bit_rate)));
        }
        let duration_ms = match config.frame_samples {
            120 => "2.5",
            240 => "5",
            480 => "10",
            960 => "20",
            1920 => "40",
            2880 => "60",
            n => return Err(invalid(format!("Opus: {n} samples per frame"))),
        };
        super::aac::quiet_ffmpeg_log();
        let lib = ff::encoder::find_by_name("libopus");
        let (codec, native) = match (config.implementation, lib) {
            (OpusImplementation::Auto | OpusImplementation::LibOpus, Some(c)) => (c, false),
            (OpusImplementation::LibOpus, None) => {
                return Err(invalid("FFmpeg has no libopus encoder".into()));
            }
            (OpusImplementation::Auto | OpusImplementation::Native, _) => {
                let c = ff::encoder::find(ff::codec::Id::OPUS)
                    .ok_or_else(|| invalid("FFmpeg has no Opus encoder".into()))?;
                (c, true)
            }
        };
        let codec_name = if native { "opus" } else { "libopus" };
        if native {
            tracing::debug!("Opus encoder: FFmpeg's native (experimental) `opus`");
        }
        let detail = format!("Opus encoder ({codec_name}), {} ch", config.channels);
        let channels = usize::from(config.channels);
        let layout = ChannelLayout::default(i32::from(config.channels));
        let format = if native {
            Sample::F32(SampleType::Planar)
        } else {
            Sample::F32(SampleType::Packed)
        };
        let context = ff::codec::Context::new_with_codec(codec);
        let mut enc = context
            .encoder()
            .audio()
            .map_err(|e| codec_err("avcodec_alloc_context3", &detail, e))?;
        enc.set_rate(OPUS_RATE as i32);
        enc.set_channel_layout(layout);
        enc.set_channels(i32::from(config.channels));
        enc.set_format(format);
        enc.set_bit_rate(config.bit_rate as usize);
        enc.set_time_base(ff::Rational::new(1, OPUS_RATE as i32));
        let mut options = Dictionary::new();
        if native {
            // SAFETY: plain int field of an allocated, unopened context.
            unsafe {
                (*enc.as_mut_ptr()).strict_std_compliance = ffi::FF_COMPLIANCE_EXPERIMENTAL;
            }
        } else {
            options.set(
                "application",
                match config.application {
                    OpusApplication::Audio => "audio",
                    OpusApplication::Voip => "voip",
                    OpusApplication::LowDelay => "lowdelay",
                },
            );
            options.set("frame_duration", duration_ms);
            // Constrained VBR: the rate stays near the target (pure tones
            // would double it in free VBR), which suits RTP viewers.
            options.set("vbr", "constrained");
        }
        let encoder = enc
            .open_as_with(codec, options)
            .map_err(|e| codec_err("avcodec_open2", &detail, e))?;
        // SAFETY: the encoder is open; frame_size and initial_padding are set
        // by avcodec_open2.
        let (frame_size, delay) = unsafe {
            let p = encoder.as_ptr();
            ((*p).frame_size, (*p).initial_padding)
        };
        let packet_samples = if native {
            OPUS_FRAME_SAMPLES
        } else {
            config.frame_samples
        };
        let frame_size = usize::try_from(frame_size)
            .ok()
            .filter(|&n| n > 0 && packet_samples.is_multiple_of(n))
            .ok_or_else(|| invalid(format!("{detail}: encoder frame size {frame_size}")))?;
        let delay = usize::try_from(delay).unwrap_or(0);
        let pre_pad = (packet_samples - delay % packet_samples) % packet_samples;
        Ok(OpusEncoder {
            params: CodecParams::Opus(OpusParams {
                channels: config.channels,
            }),
            config,
            codec_name,
            encoder,
            layout,
            channels,
            format,
            frame_size,
            packet_samples,
            delay,
            pre_pad,
            fifo: vec![Vec::with_capacity(4 * packet_samples); channels],
            fifo_pts: 0,
            e_next: 0,
            spans: VecDeque::new(),
            open: false,
            finished: false,
            packet: ff::Packet::empty(),
        })
    }

    pub fn config(&self) -> &OpusEncoderConfig {
        &self.config
    }

    /// `CodecParams::Opus`.
    pub fn params(&self) -> &CodecParams {
        &self.params
    }

    /// `libopus` or `opus` (FFmpeg's native encoder).
    pub fn codec_name(&self) -> &'static str {
        self.codec_name
    }

    /// The encoder's delay in samples (FFmpeg's `initial_padding`, libopus's
    /// lookahead), compensated as described in the module docs.
    pub fn delay(&self) -> usize {
        self.delay
    }

    fn detail(&self) -> String {
        format!("Opus encoder ({}), {} ch", self.codec_name, self.channels)
    }

    /// Starts a timeline: the next sample pushed has pts `out_pts` (48 kHz).
    /// Ends the current one first, if any (its frames are appended to `out`);
    /// a new timeline never starts inside the old one's last packet.
    pub fn anchor(
        &mut self,
        out_pts: i64,
        out: &mut Vec<EncodedFrame>,
    ) -> Result<(), TranscodeError> {
        self.check_open()?;
        let mut out_pts = out_pts;
        if self.open {
            self.end_timeline(out)?;
            // The packet straddling the two timelines plays until `end`.
            let end = self.fifo_pts.saturating_add(self.pre_pad as i64);
            let window = (self.packet_samples + self.pre_pad) as i64;
            if out_pts < end && out_pts > end.saturating_sub(window) {
                out_pts = end;
            }
        }
        self.open = true;
        self.fifo_pts = out_pts.saturating_sub(self.pre_pad as i64);
        for ch in &mut self.fifo {
            ch.resize(self.pre_pad, 0.0);
        }
        self.encode_whole_frames(out)
    }

    /// Lets `fill` append planar samples (one Vec per channel, all the same
    /// length) to the FIFO, then encodes every whole frame.
    pub fn push_with(
        &mut self,
        out: &mut Vec<EncodedFrame>,
        fill: impl FnOnce(&mut [Vec<f32>]) -> Result<(), TranscodeError>,
    ) -> Result<(), TranscodeError> {
        self.check_open()?;
        if !self.open {
            return Err(TranscodeError::InvalidInput {
                reason: "samples pushed before the timeline was anchored".into(),
            });
        }
        let result = fill(&mut self.fifo);
        // Keep the channels in step whatever `fill` did.
        let len = self.fifo.iter().map(Vec::len).min().unwrap_or(0);
        for ch in &mut self.fifo {
            ch.truncate(len);
        }
        result?;
        self.encode_whole_frames(out)
    }

    /// Appends `n` samples of silence.
    pub fn push_silence(
        &mut self,
        n: usize,
        out: &mut Vec<EncodedFrame>,
    ) -> Result<(), TranscodeError> {
        self.push_with(out, |fifo| {
            for ch in fifo {
                ch.resize(ch.len() + n, 0.0);
            }
            Ok(())
        })
    }

    /// Ends the stream: encodes everything buffered (the last packet padded
    /// with silence) and flushes the encoder's lookahead. Later calls fail
    /// with [`TranscodeError::Finished`].
    pub fn finish(&mut self, out: &mut Vec<EncodedFrame>) -> Result<(), TranscodeError> {
        self.check_open()?;
        self.finished = true;
        if self.open {
            self.end_timeline(out)?;
        }
        self.encoder
            .send_eof()
            .map_err(|e| codec_err("avcodec_send_frame(EOF)", &self.detail(), e))?;
        self.receive_packets(out)
    }

    fn check_open(&self) -> Result<(), TranscodeError> {
        if self.finished {
            Err(TranscodeError::Finished)
        } else {
            Ok(())
        }
    }

    /// Pads the FIFO with silence to a whole packet and encodes it.
    fn end_timeline(&mut self, out: &mut Vec<EncodedFrame>) -> Result<(), TranscodeError> {
        let total = self.e_next + self.fifo[0].len() as i64;
        let rem = total.rem_euclid(self.packet_samples as i64) as usize;
        if rem != 0 {
            let len = self.fifo[0].len() + self.packet_samples - rem;
            for ch in &mut self.fifo {
                ch.resize(len, 0.0);
            }
        }
        self.encode_whole_frames(out)?;
        self.open = false;
        Ok(())
    }

    fn encode_whole_frames(&mut self, out: &mut Vec<EncodedFrame>) -> Result<(), TranscodeError> {
        while self.fifo[0].len() >= self.frame_size {
            self.encode_frame(out)?;
        }
        Ok(())
    }

    fn encode_frame(&mut self, out: &mut Vec<EncodedFrame>) -> Result<(), TranscodeError> {
        let n = self.frame_size;
        let mut frame = ff::frame::Audio::new(self.format, n, self.layout);
        frame.set_rate(OPUS_RATE);
        frame.set_pts(Some(self.e_next));
        let planar = self.format.is_planar();
        let planes = if planar { self.channels } else { 1 };
        for p in 0..planes {
            // SAFETY: the frame was allocated for `n` samples of `channels`
            // channels in `format`: `planes` planes of n (planar) or
            // n × channels (packed) f32 each, unless allocation failed (null).
            let plane = unsafe { (*frame.as_mut_ptr()).data[p].cast::<f32>() };
            if plane.is_null() {
                return Err(codec_err(
                    "av_frame_get_buffer",
                    &self.detail(),
                    ff::Error::Other {
                        errno: ff::util::error::ENOMEM,
                    },
                ));
            }
            if planar {
                let src = &self.fifo[p][..n];
                // SAFETY: see above; `src` has n samples.
                unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), plane, n) };
            } else {
                // SAFETY: see above: n × channels f32 in plane 0.
                let dst = unsafe { std::slice::from_raw_parts_mut(plane, n * self.channels) };
                for (ch, samples) in self.fifo.iter().enumerate() {
                    for (i, &s) in samples[..n].iter().enumerate() {
                        dst[i * self.channels + ch] = s;
                    }
                }
            }
        }
        for ch in &mut self.fifo {
            ch.drain(..n);
        }
        self.encoder
            .send_frame(&frame)
            .map_err(|e| codec_err("avcodec_send_frame", &self.detail(), e))?;
        match self.spans.back_mut() {
            Some(s)
                if s.e + s.len == self.e_next && s.ts.saturating_add(s.len) == self.fifo_pts =>
            {
                s.len += n as i64;
            }
            _ => self.spans.push_back(Span {
                e: self.e_next,
                ts: self.fifo_pts,
                len: n as i64,
            }),
        }
        self.e_next += n as i64;
        self.fifo_pts = self.fifo_pts.saturating_add(n as i64);
        self.receive_packets(out)
    }

    fn receive_packets(&mut self, out: &mut Vec<EncodedFrame>) -> Result<(), TranscodeError> {
        loop {
            match self.encoder.receive_packet(&mut self.packet) {
                Ok(()) => {}
                Err(e) if is_eagain(&e) => return Ok(()),
                Err(ff::Error::Eof) => return Ok(()),
                Err(e) => return Err(codec_err("avcodec_receive_packet", &self.detail(), e)),
            }
            // The encoder-input index of the packet's first decoded sample.
            let Some(p) = self.packet.pts() else {
                continue;
            };
            while let Some(s) = self.spans.front() {
                if s.e + s.len <= p && self.spans.len() > 1 {
                    self.spans.pop_front();
                } else {
                    break;
                }
            }
            let pts = match self.spans.front() {
                Some(s) if s.e <= p && p < s.e + s.len => s.ts.saturating_add(p - s.e),
                // Before all input: encoder priming. After it: flush padding.
                _ => continue,
            };
            let data = self.packet.data().unwrap_or_default();
            if data.is_empty() {
                continue;
            }
            out.push(EncodedFrame {
                pts,
                data: Bytes::copy_from_slice(data),
            });
        }
    }
}

/// An `OpusHead` (RFC 7845 §5.1) for mapping family 0 with pre-skip 0: what
/// FFmpeg's Opus decoders take as extradata.
pub fn opus_head(channels: u8) -> [u8; 19] {
    let mut h = [0u8; 19];
    h[..8].copy_from_slice(b"OpusHead");
    h[8] = 1;
    h[9] = channels;
    // pre-skip (10..12) = 0; input rate; output gain (16..18) = 0; family 0.
    h[12..16].copy_from_slice(&OPUS_RATE.to_le_bytes());
    h
}

/// FFmpeg Opus decoder to interleaved `i16` at 48 kHz; see the module docs.
pub struct OpusDecoder {
    decoder: Decoder,
    channels: usize,
    codec_name: &'static str,
}

impl fmt::Debug for OpusDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpusDecoder")
            .field("channels", &self.channels)
            .field("codec", &self.codec_name)
            .finish_non_exhaustive()
    }
}

impl OpusDecoder {
    /// A decoder for `channels` (1 or 2) output channels; mono and stereo
    /// packets are both decoded to that.
    pub fn new(channels: u8, implementation: OpusImplementation) -> Result<Self, TranscodeError> {
        let invalid = |reason: String| TranscodeError::InvalidConfig { reason };
        if !(1..=2).contains(&channels) {
            return Err(invalid(format!(
                "Opus: {channels} channels (1 or 2 supported)"
            )));
        }
        super::aac::quiet_ffmpeg_log();
        let lib = ff::decoder::find_by_name("libopus");
        let (codec, codec_name, detail) = match (implementation, lib) {
            (OpusImplementation::Auto | OpusImplementation::LibOpus, Some(c)) => {
                (c, "libopus", "Opus decoder (libopus)")
            }
            (OpusImplementation::LibOpus, None) => {
                return Err(invalid("FFmpeg has no libopus decoder".into()));
            }
            (OpusImplementation::Auto | OpusImplementation::Native, _) => {
                let c = ff::decoder::find(ff::codec::Id::OPUS)
                    .ok_or_else(|| invalid("FFmpeg has no Opus decoder".into()))?;
                (c, "opus", "Opus decoder (native)")
            }
        };
        let layout = ChannelLayout::default(i32::from(channels));
        let decoder = Decoder::open(codec, &opus_head(channels), detail, |p| {
            // SAFETY: plain fields of the allocated, unopened context.
            unsafe {
                (*p).sample_rate = OPUS_RATE as i32;
                (*p).channels = i32::from(channels);
                (*p).channel_layout = layout.bits();
                (*p).request_sample_fmt = ffi::AVSampleFormat::AV_SAMPLE_FMT_S16;
            }
        })?;
        Ok(OpusDecoder {
            decoder,
            channels: usize::from(channels),
            codec_name,
        })
    }

    pub fn channels(&self) -> usize {
        self.channels
    }

    /// `libopus` or `opus` (FFmpeg's native decoder).
    pub fn codec_name(&self) -> &'static str {
        self.codec_name
    }

    /// Decodes one packet, appending interleaved samples to `pcm`; returns the
    /// number of samples per channel appended.
    pub fn decode(&mut self, data: &[u8], pcm: &mut Vec<i16>) -> Result<usize, TranscodeError> {
        let channels = self.channels;
        let start = pcm.len();
        let detail = self.decoder.detail();
        let result = self
            .decoder
            .decode(data, |frame| append_i16(frame, channels, pcm, detail));
        if result.is_err() {
            pcm.truncate(start);
        }
        result?;
        Ok((pcm.len() - start) / channels)
    }
}

/// Appends a decoded frame as interleaved `i16`, converting from `s16` or
/// `flt`, packed or planar.
fn append_i16(
    frame: &ff::frame::Audio,
    channels: usize,
    pcm: &mut Vec<i16>,
    detail: &str,
) -> Result<(), TranscodeError> {
    let n = frame.samples();
    if ffutil::frame_channels(frame) != channels {
        return Err(TranscodeError::InvalidInput {
            reason: format!(
                "{detail}: decoded {} channels, want {channels}",
                ffutil::frame_channels(frame)
            ),
        });
    }
    let to_i16 = |v: f32| (v * 32768.0).round().clamp(-32768.0, 32767.0) as i16;
    let planar = frame.is_planar();
    let plane_len = if planar { n } else { n * channels };
    let planes = if planar { channels } else { 1 };
    let start = pcm.len();
    pcm.resize(start + n * channels, 0);
    let dst = &mut pcm[start..];
    for p in 0..planes {
        // SAFETY: a decoded frame has `planes` planes of `plane_len` samples
        // of its format (checked below to be s16 or f32).
        let base = unsafe { *(*frame.as_ptr()).extended_data.add(p) };
        if base.is_null() {
            return Err(TranscodeError::InvalidInput {
                reason: format!("{detail}: decoded frame without data"),
            });
        }
        let (stride, offset) = if planar { (channels, p) } else { (1, 0) };
        match frame.format() {
            Sample::I16(_) => {
                // SAFETY: see above.
                let src = unsafe { std::slice::from_raw_parts(base.cast::<i16>(), plane_len) };
                for (i, &s) in src.iter().enumerate() {
                    dst[i * stride + offset] = s;
                }
            }
            Sample::F32(_) => {
                // SAFETY: see above.
                let src = unsafe { std::slice::from_raw_parts(base.cast::<f32>(), plane_len) };
                for (i, &s) in src.iter().enumerate() {
                    dst[i * stride + offset] = to_i16(s);
                }
            }
            other => {
                pcm.truncate(start);
                return Err(TranscodeError::InvalidInput {
                    reason: format!("{detail}: decoded sample format {other:?}"),
                });
            }
        }
    }
    Ok(())
}
