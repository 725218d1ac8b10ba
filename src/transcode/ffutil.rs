//! Small FFmpeg helpers shared by the decoders and encoders of this module:
//! opening a decoder with extradata, and sending one packet through it.

use std::ffi::c_int;

use ff::ffi;
use ffmpeg_next as ff;

use super::TranscodeError;

/// Extradata larger than this is refused (an AudioSpecificConfig is a few
/// bytes, an OpusHead 19 + channels).
const MAX_EXTRADATA: usize = 64 * 1024;

pub(crate) fn codec_err(op: &'static str, detail: &str, e: ff::Error) -> TranscodeError {
    TranscodeError::Codec {
        op,
        detail: detail.to_string(),
        source: Box::new(e),
    }
}

pub(crate) fn is_eagain(e: &ff::Error) -> bool {
    matches!(e, ff::Error::Other { errno } if *errno == ff::util::error::EAGAIN)
}

/// An opened FFmpeg audio decoder plus its reusable output frame.
pub(crate) struct Decoder {
    dec: ff::decoder::Audio,
    frame: ff::frame::Audio,
    detail: &'static str,
}

impl Decoder {
    /// Opens `codec` with `extradata` (copied into the context, which owns and
    /// frees it); `setup` may set more context fields before it is opened.
    pub(crate) fn open(
        codec: ff::Codec,
        extradata: &[u8],
        detail: &'static str,
        setup: impl FnOnce(*mut ffi::AVCodecContext),
    ) -> Result<Self, TranscodeError> {
        if extradata.len() > MAX_EXTRADATA {
            return Err(TranscodeError::InvalidConfig {
                reason: format!("{detail}: {} bytes of extradata", extradata.len()),
            });
        }
        let mut ctx = ff::codec::Context::new_with_codec(codec);
        // SAFETY: the context is allocated and not opened. extradata is
        // allocated with av_mallocz including the padding FFmpeg requires,
        // and the context frees it (avcodec_free_context).
        unsafe {
            let p = ctx.as_mut_ptr();
            if !extradata.is_empty() {
                let pad = ffi::AV_INPUT_BUFFER_PADDING_SIZE as usize;
                let buf = ffi::av_mallocz(extradata.len() + pad).cast::<u8>();
                if buf.is_null() {
                    return Err(codec_err(
                        "av_mallocz",
                        detail,
                        ff::Error::Other {
                            errno: ff::util::error::ENOMEM,
                        },
                    ));
                }
                std::ptr::copy_nonoverlapping(extradata.as_ptr(), buf, extradata.len());
                (*p).extradata = buf;
                (*p).extradata_size = extradata.len() as c_int;
            }
            setup(p);
        }
        let dec = ctx
            .decoder()
            .open_as(codec)
            .and_then(|d| d.audio())
            .map_err(|e| match e {
                ff::Error::InvalidData => TranscodeError::InvalidConfig {
                    reason: format!("{detail}: the decoder refused its configuration"),
                },
                e => codec_err("avcodec_open2", detail, e),
            })?;
        Ok(Decoder {
            dec,
            frame: ff::frame::Audio::empty(),
            detail,
        })
    }

    pub(crate) fn detail(&self) -> &'static str {
        self.detail
    }

    /// Decodes one packet and calls `f` with each frame it yields (usually one).
    /// A packet the decoder rejects is an [`TranscodeError::InvalidInput`];
    /// the decoder stays usable.
    pub(crate) fn decode(
        &mut self,
        data: &[u8],
        mut f: impl FnMut(&ff::frame::Audio) -> Result<(), TranscodeError>,
    ) -> Result<(), TranscodeError> {
        let packet = ff::Packet::copy(data);
        let invalid = |op: &str, e: ff::Error| TranscodeError::InvalidInput {
            reason: format!(
                "{}: {op} failed on a {}-byte packet: {e}",
                self.detail,
                data.len()
            ),
        };
        // (EAGAIN cannot happen, frames being drained below after every
        // packet; it would mean this packet was not taken: an error too.)
        self.dec
            .send_packet(&packet)
            .map_err(|e| invalid("avcodec_send_packet", e))?;
        loop {
            match self.dec.receive_frame(&mut self.frame) {
                Ok(()) => f(&self.frame)?,
                Err(e) if is_eagain(&e) => return Ok(()),
                Err(ff::Error::Eof) => return Ok(()),
                Err(e) => return Err(invalid("avcodec_receive_frame", e)),
            }
        }
    }
}

/// Channel count of a decoded frame (FFmpeg 5.1 fills both the old and the
/// new layout fields; take whichever is set).
pub(crate) fn frame_channels(frame: &ff::frame::Audio) -> usize {
    // SAFETY: reads plain fields of a valid frame.
    let n = unsafe { (*frame.as_ptr()).ch_layout.nb_channels };
    if n > 0 {
        n as usize
    } else {
        usize::from(frame.channels())
    }
}

/// The frame's channel layout as a mask, or the default one for its channel
/// count when the decoder left it unspecified.
pub(crate) fn frame_layout(frame: &ff::frame::Audio) -> ff::ChannelLayout {
    let layout = frame.channel_layout();
    let channels = frame_channels(frame);
    if !layout.is_empty() && layout.bits().count_ones() as usize == channels {
        layout
    } else {
        ff::ChannelLayout::default(channels as i32)
    }
}
