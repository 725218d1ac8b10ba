//! The GOP cache: recent frames kept so that a new reader starts at once on a
//! random access point instead of waiting for the next keyframe.
//!
//! It keeps the current group of pictures and the one before it. Players that
//! want the lowest latency start at the latest keyframe; the HLS muxer starts at
//! the previous one, so its first playlist already has a complete segment.
//! Memory is bounded by bytes: when the two GOPs do not fit, the older one goes;
//! when the current one alone does not fit, the cache empties until the next
//! keyframe.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::media::Frame;

/// For streams without video, a "GOP" is cut at the first frame at least this
/// long after the previous cut (every audio frame is a random access point).
const AUDIO_ONLY_GOP_NANOS: i64 = 1_000_000_000;

#[derive(Debug)]
pub(crate) struct GopCache {
    frames: VecDeque<Arc<Frame>>,
    /// Index in `frames` where the current GOP starts (the latest keyframe).
    current_start: usize,
    bytes: usize,
    max_bytes: usize,
    /// Time of the latest GOP start, for audio-only cutting.
    last_cut_nanos: Option<i64>,
    /// The cache overflowed and waits for the next keyframe.
    overflowed: bool,
    /// The overflow was logged (once per stream).
    warned: bool,
}

/// Where a new reader starts within the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// At the latest random access point (RTMP, WebRTC players).
    LatestKeyframe,
    /// At the start of the previous GOP when there is one (HLS muxer).
    PreviousKeyframe,
    /// With the next live frame; nothing from the cache.
    Live,
}

impl GopCache {
    pub(crate) fn new(max_bytes: usize) -> Self {
        GopCache {
            frames: VecDeque::new(),
            current_start: 0,
            bytes: 0,
            max_bytes,
            last_cut_nanos: None,
            overflowed: false,
            warned: false,
        }
    }

    /// Whether `frame` starts a new GOP in a stream that has (or lacks) video.
    pub(crate) fn is_gop_start(&self, frame: &Frame, has_video: bool) -> bool {
        if has_video {
            frame.keyframe && frame.track.kind() == crate::media::TrackKind::Video
        } else {
            match self.last_cut_nanos {
                None => true,
                Some(t) => frame.dts_nanos() - t >= AUDIO_ONLY_GOP_NANOS,
            }
        }
    }

    pub(crate) fn push(&mut self, frame: &Arc<Frame>, gop_start: bool) {
        let is_video = frame.track.kind() == crate::media::TrackKind::Video;
        if gop_start {
            self.overflowed = false;
            let at = frame.dts_nanos();
            self.last_cut_nanos = Some(at);
            // Frames of other tracks that arrived just before the keyframe
            // but are timed at or after it belong to its GOP (audio messages
            // often overtake a big keyframe on the wire).
            let mut split = self.frames.len();
            while split > self.current_start
                && self.frames.get(split - 1).is_some_and(|f| {
                    f.track.kind() != crate::media::TrackKind::Video && f.dts_nanos() >= at
                })
            {
                split -= 1;
            }
            // Drop the GOP before the previous one.
            let dropped = self.current_start;
            self.pop_front(dropped);
            self.current_start = split - dropped;
        } else if self.overflowed || (self.frames.is_empty() && is_video) {
            // Video cannot start before a keyframe; other tracks' frames may
            // belong to the first GOP and are kept.
            return;
        }
        self.bytes += frame.data.len();
        self.frames.push_back(Arc::clone(frame));
        while self.bytes > self.max_bytes {
            if self.current_start > 0 {
                self.pop_front(self.current_start);
                self.current_start = 0;
            } else {
                self.clear();
                self.overflowed = true;
                if !self.warned {
                    self.warned = true;
                    tracing::warn!(
                        max_bytes = self.max_bytes,
                        "GOP larger than gop_cache_max_bytes; new readers wait for the next keyframe"
                    );
                }
            }
        }
    }

    fn pop_front(&mut self, n: usize) {
        for f in self.frames.drain(..n) {
            self.bytes -= f.data.len();
        }
    }

    pub(crate) fn clear(&mut self) {
        self.frames.clear();
        self.current_start = 0;
        self.bytes = 0;
    }

    /// Frames a reader starting at `start` receives first.
    pub(crate) fn snapshot(&self, start: StartAt) -> Vec<Arc<Frame>> {
        let from = match start {
            StartAt::Live => return Vec::new(),
            StartAt::LatestKeyframe => self.current_start,
            StartAt::PreviousKeyframe => 0,
        };
        self.frames.iter().skip(from).cloned().collect()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{AacParams, CodecParams, H264Params, Track};
    use bytes::Bytes;

    fn video_track() -> Arc<Track> {
        Arc::new(Track::new(
            0,
            0,
            CodecParams::H264(H264Params {
                avcc: Bytes::new(),
                sps: vec![],
                pps: vec![],
                profile_idc: 66,
                constraint_flags: 0,
                level_idc: 30,
                width: 2,
                height: 2,
            }),
        ))
    }

    fn frame(track: &Arc<Track>, dts: i64, key: bool, size: usize) -> Arc<Frame> {
        Arc::new(Frame::new(
            track.clone(),
            dts,
            dts,
            key,
            Bytes::from(vec![0; size]),
        ))
    }

    #[test]
    fn keeps_two_gops_and_starts_readers_on_keyframes() {
        let v = video_track();
        let mut c = GopCache::new(1 << 20);
        for i in 0..9 {
            let f = frame(&v, i * 3000, i % 3 == 0, 10);
            let start = c.is_gop_start(&f, true);
            c.push(&f, start);
        }
        // GOPs start at 0, 3, 6: the cache holds 3..9.
        let latest = c.snapshot(StartAt::LatestKeyframe);
        assert_eq!(latest.first().unwrap().dts, 6 * 3000);
        assert_eq!(latest.len(), 3);
        let previous = c.snapshot(StartAt::PreviousKeyframe);
        assert_eq!(previous.first().unwrap().dts, 3 * 3000);
        assert_eq!(previous.len(), 6);
        assert!(c.snapshot(StartAt::Live).is_empty());
        assert_eq!(c.bytes(), 60);
    }

    #[test]
    fn frames_before_the_first_keyframe_are_not_cached() {
        let v = video_track();
        let mut c = GopCache::new(1 << 20);
        let f = frame(&v, 0, false, 10);
        c.push(&f, false);
        assert!(c.snapshot(StartAt::PreviousKeyframe).is_empty());
    }

    #[test]
    fn bounded_by_bytes() {
        let v = video_track();
        let mut c = GopCache::new(100);
        for i in 0..4 {
            let f = frame(&v, i, i == 0 || i == 2, 30);
            let s = c.is_gop_start(&f, true);
            c.push(&f, s);
        }
        // 4 × 30 > 100: the older GOP went.
        assert_eq!(c.snapshot(StartAt::PreviousKeyframe).len(), 2);
        // A GOP that alone exceeds the bound empties the cache until the next keyframe.
        for i in 4..8 {
            let f = frame(&v, i, i == 4, 30);
            let s = c.is_gop_start(&f, true);
            c.push(&f, s);
        }
        assert!(c.snapshot(StartAt::LatestKeyframe).is_empty());
        let f = frame(&v, 9, true, 30);
        c.push(&f, true);
        assert_eq!(c.snapshot(StartAt::LatestKeyframe).len(), 1);
    }

    #[test]
    fn a_stream_that_stops_sending_keyframes_holds_at_most_the_bound() {
        // One keyframe, then 10 000 frames and never another keyframe.
        let v = video_track();
        let mut c = GopCache::new(64 * 1024);
        let mut held_max = 0;
        for i in 0..10_000 {
            let f = frame(&v, i, i == 0, 1000);
            let s = c.is_gop_start(&f, true);
            c.push(&f, s);
            let held: usize = c
                .snapshot(StartAt::PreviousKeyframe)
                .iter()
                .map(|f| f.data.len())
                .sum();
            held_max = held_max.max(held);
        }
        assert!(held_max <= 64 * 1024, "{held_max}");
        assert!(c.snapshot(StartAt::PreviousKeyframe).is_empty());
    }

    #[test]
    fn audio_only_streams_cut_every_second() {
        let a = Arc::new(Track::new(
            0,
            0,
            CodecParams::Aac(AacParams {
                asc: Bytes::new(),
                object_type: 2,
                sample_rate: 48_000,
                channels: 2,
                samples_per_frame: 1024,
            }),
        ));
        let mut c = GopCache::new(1 << 20);
        let mut cuts = 0;
        for i in 0..150 {
            let f = frame(&a, i * 1024, true, 10);
            let s = c.is_gop_start(&f, false);
            cuts += s as u32;
            c.push(&f, s);
        }
        // 150 frames × 21.3 ms = 3.2 s: a cut at the first frame ≥ 1 s after the last.
        assert_eq!(cuts, 4);
    }
}

#[cfg(test)]
mod audio_order_tests {
    use super::*;
    use crate::media::{AacParams, CodecParams, H264Params, Track};
    use bytes::Bytes;

    #[test]
    fn audio_that_overtakes_a_keyframe_joins_its_gop() {
        let v = Arc::new(Track::new(
            0,
            0,
            CodecParams::H264(H264Params {
                avcc: Bytes::new(),
                sps: vec![],
                pps: vec![],
                profile_idc: 66,
                constraint_flags: 0,
                level_idc: 30,
                width: 2,
                height: 2,
            }),
        ));
        let a = Arc::new(Track::new(
            1,
            0,
            CodecParams::Aac(AacParams {
                asc: Bytes::new(),
                object_type: 2,
                sample_rate: 48_000,
                channels: 2,
                samples_per_frame: 1024,
            }),
        ));
        let f = |t: &Arc<Track>, ms: i64, key: bool| {
            let ticks = ms * i64::from(t.timescale()) / 1000;
            Arc::new(Frame::new(
                t.clone(),
                ticks,
                ticks,
                key,
                Bytes::from_static(b"x"),
            ))
        };
        let mut c = GopCache::new(1 << 20);
        // Audio at 46 ms arrives before the first keyframe at 0 ms; audio at
        // 1040 ms before the second keyframe at 1000 ms.
        for (frame, start) in [
            (f(&a, 46, true), false),
            (f(&v, 0, true), true),
            (f(&v, 33, false), false),
            (f(&a, 1040, true), false),
            (f(&v, 1000, true), true),
        ] {
            c.push(&frame, start);
        }
        let latest: Vec<i64> = c
            .snapshot(StartAt::LatestKeyframe)
            .iter()
            .map(|f| f.dts_nanos() / 1_000_000)
            .collect();
        assert_eq!(latest, vec![1040, 1000]);
        let previous: Vec<i64> = c
            .snapshot(StartAt::PreviousKeyframe)
            .iter()
            .map(|f| f.dts_nanos() / 1_000_000)
            .collect();
        assert_eq!(previous, vec![46, 0, 33, 1040, 1000]);
    }
}
