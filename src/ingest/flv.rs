//! Turns FLV tag bodies (what RTMP audio/video messages carry) into the hub's
//! tracks and frames. Pure: events in, [`Output`]s out.
//!
//! The track layout of a stream is fixed when it starts, so tags are held
//! back until every expected track has its sequence header: the tracks
//! `onMetaData` announces, or — without metadata — both, or whatever arrived
//! within the first second of media.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::codec::{aac, h264};
use crate::container::flv::{self, AudioTag, VideoTag};
use crate::media::{AacParams, CodecParams, H264Params, TrackKind, timestamp};

/// How much media (ms) may arrive before a stream starts with the tracks it has.
const ANALYZE_MS: i64 = 1000;
/// At most this many frames wait for the stream to start.
const MAX_PENDING: usize = 512;

/// What the ingest asks of the hub.
#[derive(Debug)]
pub enum Output {
    /// Start the stream with these tracks (index = position).
    Start(Vec<CodecParams>),
    /// New parameters for a track (a new sequence header mid-stream).
    Params { index: usize, params: CodecParams },
    /// One frame of track `index`; timestamps in the track's timescale.
    Frame {
        index: usize,
        dts: i64,
        pts: i64,
        keyframe: bool,
        data: Bytes,
    },
}

/// Input that ends the publishing session.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("bad FLV tag: {0}")]
    Tag(#[from] flv::FlvError),
    #[error("bad AVC sequence header: {0}")]
    AvcConfig(h264::H264Error),
    #[error("bad H.264 frame at {ms} ms: {source}")]
    AvcFrame { ms: i64, source: h264::H264Error },
    #[error("bad AAC sequence header: {0}")]
    AacConfig(aac::AacError),
    #[error("{0}")]
    Unsupported(String),
}

#[derive(Debug, Default)]
struct Expect {
    video: Option<bool>,
    audio: Option<bool>,
}

/// The converter for one publishing session.
#[derive(Debug, Default)]
pub struct FlvIngest {
    expect: Expect,
    video: Option<(H264Params, u8)>,
    audio: Option<AacParams>,
    /// Track index of video/audio once started.
    layout: Option<(Option<usize>, Option<usize>)>,
    pending: VecDeque<Output>,
    base_ms: Option<i64>,
    video_clock: timestamp::Unwrapper,
    audio_clock: timestamp::Unwrapper,
    next_audio_dts: Option<i64>,
    warned: Warned,
}

#[derive(Debug, Default)]
struct Warned {
    audio_codec: bool,
    late_track: bool,
    before_header: bool,
}

impl FlvIngest {
    pub fn new() -> Self {
        Self::default()
    }

    /// `onMetaData` says which tracks to expect (`videocodecid`/`audiocodecid`).
    pub fn on_metadata(&mut self, has_video: Option<bool>, has_audio: Option<bool>) {
        if self.layout.is_none() {
            self.expect.video = has_video;
            self.expect.audio = has_audio;
        }
    }

    /// Whether the stream has started (its track layout is fixed).
    pub fn started(&self) -> bool {
        self.layout.is_some()
    }

    /// A video message body with its RTMP timestamp.
    pub fn on_video(
        &mut self,
        ts: u32,
        body: &Bytes,
        out: &mut Vec<Output>,
    ) -> Result<(), IngestError> {
        match flv::parse_video_tag(body)? {
            VideoTag::AvcSequenceHeader { record } => {
                let (params, length_size) =
                    h264::h264_params(&record).map_err(IngestError::AvcConfig)?;
                if let Some(index) = self.index_of(TrackKind::Video)
                    && self.video.as_ref().is_none_or(|(p, _)| *p != params)
                {
                    out.push(Output::Params {
                        index,
                        params: CodecParams::H264(params.clone()),
                    });
                }
                self.video = Some((params, length_size));
            }
            VideoTag::AvcFrame {
                keyframe,
                composition_time_ms,
                data,
            } => {
                let ms = self.video_clock.unwrap(ts);
                let Some((_, length_size)) = &self.video else {
                    self.warn_before_header();
                    return Ok(());
                };
                let data = h264::normalize_nal_lengths(data, *length_size)
                    .map_err(|source| IngestError::AvcFrame { ms, source })?;
                if data.is_empty() {
                    return Ok(());
                }
                let dts =
                    timestamp::millis_to_ticks(self.relative(ms), crate::media::VIDEO_TIMESCALE);
                let pts = dts
                    + timestamp::millis_to_ticks(
                        i64::from(composition_time_ms.max(0)),
                        crate::media::VIDEO_TIMESCALE,
                    );
                self.emit(TrackKind::Video, dts, pts, keyframe, data, out);
            }
            VideoTag::AvcEndOfSequence | VideoTag::Command => {}
            VideoTag::Enhanced { fourcc, .. } => {
                return Err(IngestError::Unsupported(format!(
                    "Enhanced RTMP video codec {:?} is not supported yet: publish H.264 (avc1)",
                    String::from_utf8_lossy(&fourcc)
                )));
            }
            VideoTag::Unsupported { codec_id } => {
                return Err(IngestError::Unsupported(format!(
                    "FLV video codec id {codec_id} is not supported: publish H.264"
                )));
            }
        }
        self.maybe_start(out);
        Ok(())
    }

    /// An audio message body with its RTMP timestamp.
    pub fn on_audio(
        &mut self,
        ts: u32,
        body: &Bytes,
        out: &mut Vec<Output>,
    ) -> Result<(), IngestError> {
        match flv::parse_audio_tag(body)? {
            AudioTag::AacSequenceHeader { config } => {
                let params =
                    aac::parse_audio_specific_config(&config).map_err(IngestError::AacConfig)?;
                if let Some(index) = self.index_of(TrackKind::Audio)
                    && self.audio.as_ref() != Some(&params)
                {
                    out.push(Output::Params {
                        index,
                        params: CodecParams::Aac(params.clone()),
                    });
                    self.next_audio_dts = None;
                }
                self.audio = Some(params);
            }
            AudioTag::AacFrame { data } => {
                let ms = self.audio_clock.unwrap(ts);
                let Some(params) = &self.audio else {
                    self.warn_before_header();
                    return Ok(());
                };
                if data.is_empty() {
                    return Ok(());
                }
                let (rate, spf) = (params.sample_rate, i64::from(params.samples_per_frame));
                let measured = timestamp::millis_to_ticks(self.relative(ms), rate);
                // RTMP rounds to milliseconds; AAC frames are exactly `spf`
                // samples apart. Keep the exact clock unless it drifts by more
                // than half a frame (a gap or a clock jump).
                let dts = match self.next_audio_dts {
                    Some(expected) if (measured - expected).abs() <= spf / 2 => expected,
                    _ => measured,
                };
                self.next_audio_dts = Some(dts + spf);
                self.emit(TrackKind::Audio, dts, dts, true, data, out);
            }
            AudioTag::Unsupported { sound_format } => {
                self.expect.audio = Some(false);
                if !self.warned.audio_codec {
                    self.warned.audio_codec = true;
                    tracing::warn!(
                        sound_format,
                        "FLV audio format is not supported (only AAC); audio is dropped"
                    );
                }
            }
        }
        self.maybe_start(out);
        Ok(())
    }

    /// Starts with what has arrived; called when the publisher stops before
    /// the stream started, or when waiting makes no more sense.
    pub fn force_start(&mut self, out: &mut Vec<Output>) {
        if self.layout.is_none() && (self.video.is_some() || self.audio.is_some()) {
            self.start(out);
        }
    }

    fn relative(&mut self, ms: i64) -> i64 {
        let base = *self.base_ms.get_or_insert(ms);
        (ms - base).max(0)
    }

    fn index_of(&self, kind: TrackKind) -> Option<usize> {
        let (v, a) = self.layout?;
        match kind {
            TrackKind::Video => v,
            TrackKind::Audio => a,
        }
    }

    fn warn_before_header(&mut self) {
        if !self.warned.before_header {
            self.warned.before_header = true;
            tracing::debug!("media before its sequence header dropped");
        }
    }

    fn emit(
        &mut self,
        kind: TrackKind,
        dts: i64,
        pts: i64,
        keyframe: bool,
        data: Bytes,
        out: &mut Vec<Output>,
    ) {
        match self.layout {
            Some(_) => match self.index_of(kind) {
                Some(index) => out.push(Output::Frame {
                    index,
                    dts,
                    pts,
                    keyframe,
                    data,
                }),
                None => {
                    if !self.warned.late_track {
                        self.warned.late_track = true;
                        tracing::warn!(?kind, "track appeared after the stream started; ignored");
                    }
                }
            },
            None => {
                // Index 0 = video, 1 = audio until the layout is known.
                let index = usize::from(kind == TrackKind::Audio);
                if self.pending.len() >= MAX_PENDING {
                    self.pending.pop_front();
                }
                self.pending.push_back(Output::Frame {
                    index,
                    dts,
                    pts,
                    keyframe,
                    data,
                });
            }
        }
    }

    fn maybe_start(&mut self, out: &mut Vec<Output>) {
        if self.layout.is_some() {
            return;
        }
        let have_v = self.video.is_some();
        let have_a = self.audio.is_some();
        let ready = match (self.expect.video, self.expect.audio) {
            (Some(v), Some(a)) => (!v || have_v) && (!a || have_a) && (v || a),
            _ => have_v && have_a,
        };
        let waited_long = self.pending.len() >= MAX_PENDING || self.pending_span_ms() >= ANALYZE_MS;
        if ready || (waited_long && (have_v || have_a)) {
            self.start(out);
        }
    }

    fn pending_span_ms(&self) -> i64 {
        let nanos = |o: &Output| match o {
            Output::Frame { index, dts, .. } => {
                let ts = if *index == 0 {
                    crate::media::VIDEO_TIMESCALE
                } else {
                    self.audio.as_ref().map_or(48_000, |a| a.sample_rate)
                };
                Some(timestamp::ticks_to_millis(*dts, ts))
            }
            _ => None,
        };
        let first = self.pending.iter().find_map(nanos);
        let last = self.pending.iter().rev().find_map(nanos);
        match (first, last) {
            (Some(f), Some(l)) => l - f,
            _ => 0,
        }
    }

    fn start(&mut self, out: &mut Vec<Output>) {
        let mut params = Vec::new();
        let mut video_index = None;
        let mut audio_index = None;
        if let Some((v, _)) = &self.video {
            video_index = Some(params.len());
            params.push(CodecParams::H264(v.clone()));
        }
        if let Some(a) = &self.audio {
            audio_index = Some(params.len());
            params.push(CodecParams::Aac(a.clone()));
        }
        self.layout = Some((video_index, audio_index));
        out.push(Output::Start(params));
        for o in std::mem::take(&mut self.pending) {
            if let Output::Frame {
                index,
                dts,
                pts,
                keyframe,
                data,
            } = o
            {
                let kind = if index == 0 {
                    TrackKind::Video
                } else {
                    TrackKind::Audio
                };
                if let Some(index) = self.index_of(kind) {
                    out.push(Output::Frame {
                        index,
                        dts,
                        pts,
                        keyframe,
                        data,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
