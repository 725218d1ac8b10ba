//! Cuts a stream's frames into LL-HLS parts and segments (pure, no I/O).
//!
//! One track drives the cutting: video when the stream has it, else audio.
//! A driver frame is placed once the next one arrives (its duration is then
//! known), which makes the rules exact:
//! - a segment starts at a driver keyframe once the segment in progress holds
//!   at least `segment_min` of media (RFC 8216bis §6.2.1 lets segments start
//!   anywhere; players want them to start with a keyframe);
//! - a part is closed before a frame that would make it longer than the part
//!   target, so no part exceeds `PART-TARGET` (§4.4.3.7);
//! - the other tracks' frames go into the part whose time range holds them.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::container::fmp4::{self, SampleInfo, TrackRun};
use bytes::Bytes;

use crate::media::{CodecParams, Frame, MemoKey, Track, TrackKind, timestamp};

use super::file::FileStore;
use super::window::{Part, Window};

/// Timing settings, in nanoseconds.
#[derive(Debug, Clone, Copy)]
pub struct SegmenterConfig {
    pub part_target_nanos: i64,
    pub segment_min_nanos: i64,
    pub target_duration_nanos: i64,
}

/// One track's frames of a part, with their durations in ticks.
type TrackFrames = (Arc<Track>, Vec<(Arc<Frame>, u32)>);

/// At most this many frames of a non-driver track wait for the driver.
const MAX_WAITING: usize = 2048;

pub struct Segmenter {
    cfg: SegmenterConfig,
    /// Every track of the stream, current generations.
    all: Vec<Arc<Track>>,
    /// The stream's tracks by index; `None` for tracks HLS does not carry.
    tracks: Vec<Option<Arc<Track>>>,
    driver: usize,
    init_id: u32,
    /// Driver frame waiting for its successor (which fixes its duration).
    held: Option<Arc<Frame>>,
    /// Driver frames of the part in progress, with durations in ticks.
    part_frames: Vec<(Arc<Frame>, u32)>,
    part_start: i64,
    segment_start: Option<i64>,
    /// Frames of the other tracks not yet in a part, per track index.
    waiting: Vec<VecDeque<Arc<Frame>>>,
    /// Last driver frame duration, for the final frame of a stream.
    last_duration: u32,
    sequence: u32,
    next_discontinuity: bool,
    warned_long_gop: bool,
    pub window: Window,
}

impl Segmenter {
    pub fn new(cfg: SegmenterConfig, tracks: Vec<Arc<Track>>, max_segments: usize) -> Self {
        let mut s = Segmenter {
            cfg,
            driver: 0,
            all: Vec::new(),
            tracks: Vec::new(),
            init_id: 0,
            held: None,
            part_frames: Vec::new(),
            part_start: 0,
            segment_start: None,
            waiting: Vec::new(),
            last_duration: 0,
            sequence: 0,
            next_discontinuity: false,
            warned_long_gop: false,
            window: Window::new(max_segments),
        };
        s.set_tracks(tracks);
        s
    }

    /// Makes the segments' files in `store` (memory files by default).
    pub fn keep_files_in(&mut self, store: FileStore) {
        self.window.store = store;
    }

    fn set_tracks(&mut self, all: Vec<Arc<Track>>) {
        let tracks = select_tracks(&all, self.all.is_empty());
        self.all = all;
        self.driver = tracks
            .iter()
            .position(|t| t.as_ref().is_some_and(|t| t.kind() == TrackKind::Video))
            .or_else(|| tracks.iter().position(Option::is_some))
            .unwrap_or(0);
        self.waiting = tracks.iter().map(|_| VecDeque::new()).collect();
        self.last_duration = tracks
            .get(self.driver)
            .and_then(Option::as_ref)
            .map_or(1, nominal_duration);
        let selected: Vec<Arc<Track>> = tracks.iter().flatten().cloned().collect();
        match fmp4::init_segment(&selected) {
            Ok(init) => {
                self.init_id += 1;
                self.window.add_init(self.init_id, init);
            }
            Err(e) => tracing::error!(error = %e, "cannot build the HLS init segment"),
        }
        self.tracks = tracks;
    }

    /// Feeds the next frame of the stream.
    pub fn push(&mut self, frame: Arc<Frame>) {
        let index = frame.track.index;
        let Some(Some(current)) = self.tracks.get(index) else {
            return; // a track HLS does not carry
        };
        if !Arc::ptr_eq(current, &frame.track) {
            self.change_track(&frame);
        }
        if index == self.driver {
            if let Some(prev) = self.held.take() {
                let d = frame.dts - prev.dts;
                let duration = u32::try_from(d).ok().filter(|&d| d > 0);
                let duration = duration.unwrap_or(self.last_duration);
                self.last_duration = duration;
                self.place(prev, duration);
            }
            self.held = Some(frame);
        } else if let Some(q) = self.waiting.get_mut(index) {
            if q.len() >= MAX_WAITING {
                q.pop_front();
            }
            q.push_back(frame);
        }
    }

    /// A track got new parameters: finish what we have and start a new init
    /// segment; the next segment starts at a keyframe after a discontinuity.
    fn change_track(&mut self, frame: &Arc<Frame>) {
        self.flush();
        let mut tracks: Vec<Arc<Track>> = self.all.clone();
        if let Some(slot) = tracks.get_mut(frame.track.index) {
            *slot = Arc::clone(&frame.track);
        }
        self.set_tracks(tracks);
        self.next_discontinuity = true;
    }

    /// The stream ended (or changed): place the held frame and close all.
    pub fn flush(&mut self) {
        if let Some(prev) = self.held.take() {
            let d = self.last_duration;
            self.place(prev, d);
        }
        if let Some(end) = self.part_end() {
            // The other tracks' last frames may run past the driver's end:
            // they go into this last part rather than being lost.
            self.close_part_with(end, i64::MAX);
            self.window.close_segment(end);
        }
        self.segment_start = None;
    }

    /// Marks the end of the stream.
    pub fn finish(&mut self) {
        self.flush();
        self.window.end();
    }

    fn part_end(&self) -> Option<i64> {
        let (last, d) = self.part_frames.last()?;
        Some(last.dts_nanos() + ticks_nanos(i64::from(*d), &last.track))
    }

    fn place(&mut self, frame: Arc<Frame>, duration: u32) {
        let start = frame.dts_nanos();
        let end = start + ticks_nanos(i64::from(duration), &frame.track);
        let keyframe = frame.keyframe || frame.track.kind() == TrackKind::Audio;
        match self.segment_start {
            None => {
                if !keyframe {
                    return; // wait for a keyframe to start on
                }
                self.begin_segment(start);
            }
            Some(seg_start) => {
                let seg_len = start - seg_start;
                if keyframe && seg_len >= self.cfg.segment_min_nanos {
                    self.close_part(start);
                    self.window.close_segment(start);
                    self.begin_segment(start);
                } else {
                    if seg_len > self.cfg.target_duration_nanos && !self.warned_long_gop {
                        self.warned_long_gop = true;
                        tracing::warn!(
                            target_duration_ms = self.cfg.target_duration_nanos / 1_000_000,
                            "keyframe interval longer than hls.target_duration: segments run long until the next keyframe (set the encoder's keyframe interval to at most the target duration)"
                        );
                    }
                    if !self.part_frames.is_empty()
                        && end - self.part_start > self.cfg.part_target_nanos
                    {
                        self.close_part(start);
                        self.part_start = start;
                    }
                }
            }
        }
        self.part_frames.push((frame, duration));
    }

    fn begin_segment(&mut self, start: i64) {
        // Frames of other tracks from before the first segment cannot play.
        for q in &mut self.waiting {
            while q.front().is_some_and(|f| f.dts_nanos() < start - 1_000_000) {
                q.pop_front();
            }
        }
        self.window.start_segment(
            start,
            self.init_id,
            std::mem::take(&mut self.next_discontinuity),
        );
        self.segment_start = Some(start);
        self.part_start = start;
    }

    /// Builds the part from the driver frames placed so far and the other
    /// tracks' frames that start before `end`.
    fn close_part(&mut self, end: i64) {
        self.close_part_with(end, end);
    }

    /// Like `close_part`, taking the other tracks' frames that start before
    /// `others_before`.
    fn close_part_with(&mut self, end: i64, others_before: i64) {
        if self.part_frames.is_empty() {
            return;
        }
        let driver_frames = std::mem::take(&mut self.part_frames);
        let mut runs: Vec<TrackFrames> = Vec::new();
        for (index, track) in self.tracks.iter().enumerate() {
            let Some(track) = track else {
                continue;
            };
            if index == self.driver {
                runs.push((Arc::clone(track), driver_frames.clone()));
                continue;
            }
            let Some(q) = self.waiting.get_mut(index) else {
                continue;
            };
            let mut taken: Vec<Arc<Frame>> = Vec::new();
            while q.front().is_some_and(|f| f.dts_nanos() < others_before) {
                if let Some(f) = q.pop_front() {
                    taken.push(f);
                }
            }
            if taken.is_empty() {
                continue;
            }
            let next_dts = q.front().map(|f| f.dts);
            let nominal = nominal_duration(track);
            let with_durations = taken
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    let next = taken.get(i + 1).map(|n| n.dts).or(next_dts);
                    let d = next
                        .and_then(|n| u32::try_from(n - f.dts).ok())
                        .filter(|&d| d > 0)
                        .unwrap_or(nominal);
                    (Arc::clone(f), d)
                })
                .collect();
            runs.push((Arc::clone(track), with_durations));
        }
        let independent = driver_frames
            .first()
            .is_some_and(|(f, _)| f.keyframe || f.track.kind() == TrackKind::Audio);
        let infos: Vec<(u32, u64, Vec<SampleInfo>, bool)> = runs
            .iter()
            .map(|(track, frames)| {
                let base = frames.first().map_or(0, |(f, _)| f.dts.max(0) as u64);
                let samples = frames
                    .iter()
                    .map(|(f, d)| SampleInfo {
                        duration: *d,
                        size: (f.data.len() + in_band_parameter_sets(f).map_or(0, |p| p.len()))
                            as u32,
                        keyframe: f.keyframe,
                        composition_offset: (f.pts - f.dts).max(0),
                    })
                    .collect();
                (
                    fmp4::track_id(track),
                    base,
                    samples,
                    track.kind() == TrackKind::Video,
                )
            })
            .collect();
        let track_runs: Vec<TrackRun<'_>> = infos
            .iter()
            .map(|(id, base, samples, is_video)| TrackRun {
                track_id: *id,
                base_decode_time: *base,
                samples,
                is_video: *is_video,
            })
            .collect();
        self.sequence = self.sequence.wrapping_add(1);
        let header = match fmp4::fragment_header(self.sequence, &track_runs) {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(error = %e, "cannot build an HLS part; dropped");
                return;
            }
        };
        let payloads: Vec<Bytes> = runs
            .iter()
            .flat_map(|(_, frames)| frames.iter())
            .flat_map(|(f, _)| {
                in_band_parameter_sets(f)
                    .into_iter()
                    .chain([f.data.clone()])
            })
            .collect();
        self.window.push_part(Part::new(
            end - self.part_start,
            independent,
            &header,
            &payloads,
        ));
        self.part_start = end;
    }
}

/// Parameter sets (4-byte length prefixed) to put in front of a keyframe
/// once a track's parameters changed mid-stream. Players that switch to a new
/// init segment do not need them, but players that keep their decoder across
/// `EXT-X-MAP` changes (ffmpeg's HLS demuxer) only see the new resolution this
/// way. Built once per track generation and shared (no payload copy).
fn in_band_parameter_sets(frame: &Frame) -> Option<Bytes> {
    if !frame.keyframe || frame.track.generation == 0 {
        return None;
    }
    let sets: Vec<&Bytes> = match &frame.track.params {
        CodecParams::H264(h) => h.sps.iter().chain(&h.pps).collect(),
        CodecParams::H265(h) => h.parameter_sets.iter().collect(),
        _ => return None,
    };
    Some(frame.track.memo.get_or_init(MemoKey::ParameterSets, || {
        let mut out = Vec::new();
        for nal in sets {
            out.extend_from_slice(&(nal.len() as u32).to_be_bytes());
            out.extend_from_slice(nal);
        }
        Bytes::from(out)
    }))
}

/// The tracks HLS carries: the first video track, and one audio track (AAC
/// preferred, else Opus; G.711 is not playable in hls.js or Safari and is
/// expected to come transcoded as an extra AAC track). `log` says what is
/// left out, once.
fn select_tracks(all: &[Arc<Track>], log: bool) -> Vec<Option<Arc<Track>>> {
    let video = all
        .iter()
        .position(|t| t.kind() == TrackKind::Video && fmp4::carries(&t.params));
    let audio = all
        .iter()
        .position(|t| matches!(t.params, CodecParams::Aac(_)))
        .or_else(|| {
            all.iter()
                .position(|t| matches!(t.params, CodecParams::Opus(_)))
        });
    all.iter()
        .enumerate()
        .map(|(i, t)| {
            if Some(i) == video || Some(i) == audio {
                Some(Arc::clone(t))
            } else {
                if log {
                    tracing::info!(
                        track = i,
                        codec = t.params.name(),
                        "track not carried over HLS"
                    );
                }
                None
            }
        })
        .collect()
}

fn ticks_nanos(ticks: i64, track: &Track) -> i64 {
    timestamp::ticks_to_nanos(ticks, track.timescale())
}

/// Duration of one frame when nothing better is known: an AAC frame, or a
/// video frame at 30 fps.
fn nominal_duration(track: &Arc<Track>) -> u32 {
    match &track.params {
        CodecParams::Aac(a) => a.samples_per_frame,
        CodecParams::H264(_) | CodecParams::H265(_) => 3000,
        // 20 ms packets, the usual RTP packet time.
        CodecParams::Opus(_) => 960,
        CodecParams::G711(g) => g.sample_rate / 50,
    }
}

#[cfg(test)]
mod tests;
