//! swresample from decoded FFmpeg frames (any sample format, layout and rate)
//! to planar `f32` at a fixed rate and channel count, appended to a FIFO.
//!
//! Like the resampler in [`aac`](super::aac), it is driven with our own
//! buffers (`swr_convert`) and is phase-aligned: input sample *n* comes out
//! at output sample *n·out/in*; a few input samples (the filter length) are
//! held back until more input or a flush arrives. Channel layouts are
//! converted with swresample's default matrix (e.g. 5.1 is downmixed to stereo).

use std::ffi::c_int;

use ff::ffi;
use ff::format::Sample;
use ff::format::sample::Type as SampleType;
use ffmpeg_next as ff;

use super::ffutil::{frame_channels, frame_layout};

/// Input frames (per channel) converted per `swr_convert` call.
const CHUNK: usize = 4096;

/// What a resampler was made for: a change means a new resampler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct InputFormat {
    pub format: Sample,
    pub layout_bits: u64,
    pub channels: usize,
    pub rate: u32,
}

impl InputFormat {
    pub(crate) fn of(frame: &ff::frame::Audio) -> InputFormat {
        InputFormat {
            format: frame.format(),
            layout_bits: frame_layout(frame).bits(),
            channels: frame_channels(frame),
            rate: frame.rate(),
        }
    }
}

pub(crate) struct FrameResampler {
    ctx: ff::software::resampling::Context,
    input: InputFormat,
    bytes_per_sample: usize,
    planar: bool,
    out_channels: usize,
    /// Zeroed input for [`FrameResampler::silence`], grown on demand.
    zeros: Vec<u8>,
}

impl std::fmt::Debug for FrameResampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameResampler")
            .field("input", &self.input)
            .field("out_channels", &self.out_channels)
            .finish_non_exhaustive()
    }
}

impl FrameResampler {
    /// A resampler from `input` to planar `f32` at `out_rate` with
    /// `out_channels` (1 or 2) channels.
    pub(crate) fn new(
        input: InputFormat,
        out_rate: u32,
        out_channels: usize,
    ) -> Result<Self, ff::Error> {
        let supported = matches!(
            input.format,
            Sample::I16(_) | Sample::I32(_) | Sample::F32(_) | Sample::F64(_)
        );
        if !supported
            || input.channels == 0
            || input.channels > 64
            || input.rate == 0
            || input.layout_bits.count_ones() as usize != input.channels
            || !(1..=2).contains(&out_channels)
        {
            return Err(ff::Error::InvalidData);
        }
        let in_layout = ff::ChannelLayout::from_bits_truncate(input.layout_bits);
        let ctx = ff::software::resampling::Context::get(
            input.format,
            in_layout,
            input.rate,
            Sample::F32(SampleType::Planar),
            ff::ChannelLayout::default(out_channels as i32),
            out_rate,
        )?;
        Ok(FrameResampler {
            ctx,
            input,
            bytes_per_sample: input.format.bytes(),
            planar: input.format.is_planar(),
            out_channels,
            zeros: Vec::new(),
        })
    }

    pub(crate) fn input(&self) -> InputFormat {
        self.input
    }

    /// Converts `frame` from its sample `skip` on and appends the result to
    /// `fifo` (one Vec per output channel). The frame must be of
    /// [`input`](Self::input)'s format.
    pub(crate) fn convert(
        &mut self,
        frame: &ff::frame::Audio,
        skip: usize,
        fifo: &mut [Vec<f32>],
    ) -> Result<(), ff::Error> {
        if InputFormat::of(frame) != self.input {
            return Err(ff::Error::InvalidData);
        }
        let samples = frame.samples();
        let mut at = skip.min(samples);
        let planes = if self.planar { self.input.channels } else { 1 };
        let step = if self.planar {
            self.bytes_per_sample
        } else {
            self.bytes_per_sample * self.input.channels
        };
        let mut ptrs: Vec<*const u8> = Vec::with_capacity(planes);
        while at < samples {
            let n = (samples - at).min(CHUNK);
            ptrs.clear();
            for p in 0..planes {
                // SAFETY: a decoded frame has `planes` valid extended_data
                // pointers of `samples` samples each (planar) or one of
                // `samples × channels` (packed); `at < samples`.
                let base = unsafe { *(*frame.as_ptr()).extended_data.add(p) };
                if base.is_null() {
                    return Err(ff::Error::InvalidData);
                }
                ptrs.push(unsafe { base.add(at * step) }.cast_const());
            }
            self.run(Some((&mut ptrs, n)), fifo)?;
            at += n;
        }
        Ok(())
    }

    /// Appends `n` input samples of silence.
    pub(crate) fn silence(&mut self, n: u64, fifo: &mut [Vec<f32>]) -> Result<(), ff::Error> {
        let planes = if self.planar { self.input.channels } else { 1 };
        let plane_bytes = if self.planar {
            CHUNK * self.bytes_per_sample
        } else {
            CHUNK * self.bytes_per_sample * self.input.channels
        };
        // Zero bytes are silence in every format accepted by `new` (no u8).
        self.zeros.resize(plane_bytes * planes, 0);
        let mut left = n;
        let mut ptrs: Vec<*const u8> = Vec::with_capacity(planes);
        while left > 0 {
            let k = left.min(CHUNK as u64) as usize;
            ptrs.clear();
            for p in 0..planes {
                ptrs.push(self.zeros[p * plane_bytes..].as_ptr());
            }
            self.run(Some((&mut ptrs, k)), fifo)?;
            left -= k as u64;
        }
        Ok(())
    }

    /// Drains the samples held back by the filter.
    pub(crate) fn flush(&mut self, fifo: &mut [Vec<f32>]) -> Result<(), ff::Error> {
        self.run(None, fifo)
    }

    fn run(
        &mut self,
        input: Option<(&mut Vec<*const u8>, usize)>,
        fifo: &mut [Vec<f32>],
    ) -> Result<(), ff::Error> {
        let in_count = match &input {
            Some((_, n)) => c_int::try_from(*n).map_err(|_| ff::Error::InvalidData)?,
            None => 0,
        };
        let in_ptr = match input {
            Some((ptrs, _)) => ptrs.as_mut_ptr(),
            None => std::ptr::null_mut(),
        };
        loop {
            // SAFETY: the context is initialised; this only reads its state.
            let cap = unsafe { ffi::swr_get_out_samples(self.ctx.as_mut_ptr(), in_count) };
            if cap < 0 {
                return Err(ff::Error::from(cap));
            }
            let cap = cap.max(0) + 16;
            let start = fifo[0].len();
            let mut out_ptrs = [std::ptr::null_mut::<u8>(); 2];
            for (ch, buf) in fifo.iter_mut().enumerate().take(self.out_channels) {
                buf.resize(start + cap as usize, 0.0);
                out_ptrs[ch] = buf[start..].as_mut_ptr().cast();
            }
            // SAFETY: each out pointer has room for `cap` f32 samples; the
            // input pointers (if any) cover `in_count` samples in the input
            // format and layout; a null input asks for a flush.
            let n = unsafe {
                ffi::swr_convert(
                    self.ctx.as_mut_ptr(),
                    out_ptrs.as_mut_ptr(),
                    cap,
                    in_ptr,
                    in_count,
                )
            };
            let produced = usize::try_from(n).unwrap_or(0);
            for buf in fifo.iter_mut() {
                buf.truncate(start + produced);
            }
            if n < 0 {
                return Err(ff::Error::from(n));
            }
            if !in_ptr.is_null() || produced < cap as usize {
                return Ok(());
            }
        }
    }
}
