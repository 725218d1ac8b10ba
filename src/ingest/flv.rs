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
/// A publisher clock that jumps forward by more than this, or back by more
/// than [`MAX_BACKWARD_MS`], is re-anchored so the stream's timeline stays
/// continuous (a jump would otherwise make one HLS segment hours long, or hold
/// every reader behind the hub's monotonic clamp).
const MAX_FORWARD_MS: i64 = 10_000;
const MAX_BACKWARD_MS: i64 = 2_000;
/// Stream time of the first frame. Not 0: a frame of the other track may
/// arrive after it with an earlier timestamp (interleaved chunks finish small
/// audio messages before a big keyframe sent alongside), and it must keep its
/// place instead of being clamped.
const START_MS: i64 = 1000;

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

/// A frame as the publisher timed it, before it is placed on the timeline.
#[derive(Debug)]
struct RawFrame {
    kind: TrackKind,
    /// Unwrapped, jump-corrected publisher time.
    ms: i64,
    composition_ms: i32,
    keyframe: bool,
    data: Bytes,
}

/// The converter for one publishing session.
#[derive(Debug, Default)]
pub struct FlvIngest {
    expect: Expect,
    video: Option<(H264Params, u8)>,
    audio: Option<AacParams>,
    /// Track index of video/audio once started.
    layout: Option<(Option<usize>, Option<usize>)>,
    pending: VecDeque<RawFrame>,
    /// Publisher time (ms) of stream time 0: [`START_MS`] before the earliest
    /// frame seen when the stream starts.
    base_ms: Option<i64>,
    video_clock: timestamp::Unwrapper,
    audio_clock: timestamp::Unwrapper,
    /// Correction added to the publisher's clock after jumps.
    jump_offset_ms: i64,
    /// Last corrected time per track kind (video, audio).
    last_ms: [Option<i64>; 2],
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
                let raw = self.video_clock.unwrap(ts);
                let Some((_, length_size)) = &self.video else {
                    self.warn_before_header();
                    return Ok(());
                };
                let data = h264::normalize_nal_lengths(data, *length_size)
                    .map_err(|source| IngestError::AvcFrame { ms: raw, source })?;
                if !data.is_empty() {
                    let ms = self.correct(TrackKind::Video, raw);
                    self.accept(
                        RawFrame {
                            kind: TrackKind::Video,
                            ms,
                            composition_ms: composition_time_ms,
                            keyframe,
                            data,
                        },
                        out,
                    );
                }
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
                let raw = self.audio_clock.unwrap(ts);
                if self.audio.is_none() {
                    self.warn_before_header();
                    return Ok(());
                }
                if !data.is_empty() {
                    let ms = self.correct(TrackKind::Audio, raw);
                    self.accept(
                        RawFrame {
                            kind: TrackKind::Audio,
                            ms,
                            composition_ms: 0,
                            keyframe: true,
                            data,
                        },
                        out,
                    );
                }
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
    /// the stream started.
    pub fn force_start(&mut self, out: &mut Vec<Output>) {
        if self.layout.is_none() && (self.video.is_some() || self.audio.is_some()) {
            self.start(out);
        }
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

    /// Applies the jump correction to a track's unwrapped publisher time.
    fn correct(&mut self, kind: TrackKind, raw: i64) -> i64 {
        let slot = usize::from(kind == TrackKind::Audio);
        let mut ms = raw + self.jump_offset_ms;
        if let Some(last) = self.last_ms[slot] {
            let step = ms - last;
            if !(-MAX_BACKWARD_MS..=MAX_FORWARD_MS).contains(&step) {
                // Continue one nominal frame after the last one.
                let target = last + if kind == TrackKind::Video { 33 } else { 21 };
                self.jump_offset_ms += target - ms;
                tracing::warn!(
                    ?kind,
                    jump_ms = step,
                    "publisher clock jumped; timeline kept continuous"
                );
                ms = target;
            }
        }
        self.last_ms[slot] = Some(ms);
        ms
    }

    /// Places a frame on the stream timeline, or holds it until the start.
    fn accept(&mut self, frame: RawFrame, out: &mut Vec<Output>) {
        if self.layout.is_none() {
            if self.pending.len() >= MAX_PENDING {
                self.pending.pop_front();
            }
            self.pending.push_back(frame);
            return;
        }
        let Some(index) = self.index_of(frame.kind) else {
            if !self.warned.late_track {
                self.warned.late_track = true;
                tracing::warn!(kind = ?frame.kind, "track appeared after the stream started; ignored");
            }
            return;
        };
        let base = *self.base_ms.get_or_insert(frame.ms - START_MS);
        let relative = (frame.ms - base).max(0);
        let (dts, pts) = match frame.kind {
            TrackKind::Video => {
                let dts = timestamp::millis_to_ticks(relative, crate::media::VIDEO_TIMESCALE);
                let cts = timestamp::millis_to_ticks(
                    i64::from(frame.composition_ms.max(0)),
                    crate::media::VIDEO_TIMESCALE,
                );
                (dts, dts + cts)
            }
            TrackKind::Audio => {
                let Some(params) = &self.audio else {
                    return;
                };
                let (rate, spf) = (params.sample_rate, i64::from(params.samples_per_frame));
                let measured = timestamp::millis_to_ticks(relative, rate);
                // RTMP rounds to milliseconds; AAC frames are exactly `spf`
                // samples apart. Keep the exact clock unless it drifts by more
                // than half a frame (a gap or a clock jump).
                let dts = match self.next_audio_dts {
                    Some(expected) if (measured - expected).abs() <= spf / 2 => expected,
                    _ => measured,
                };
                self.next_audio_dts = Some(dts + spf);
                (dts, dts)
            }
        };
        out.push(Output::Frame {
            index,
            dts,
            pts,
            keyframe: frame.keyframe,
            data: frame.data,
        });
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
        let times = self.pending.iter().map(|f| f.ms);
        match (times.clone().min(), times.max()) {
            (Some(first), Some(last)) => last - first,
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
        // Time is counted from the earliest frame of any track, so that a
        // track whose first frame arrived later keeps its offset to the other.
        self.base_ms = self.pending.iter().map(|f| f.ms - START_MS).min();
        for frame in std::mem::take(&mut self.pending) {
            self.accept(frame, out);
        }
    }
}

#[cfg(test)]
mod tests;
