//! A stream: what one publisher produces — its tracks and the fan-out of its
//! frames to every reader, with the GOP cache.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use super::gop::{GopCache, StartAt};
use super::meter::Meter;
use super::reader::{Reader, ReaderQueue};
use crate::media::{CodecParams, Frame, Track, TrackKind, timestamp};

/// One stream of a path. Readers hold it through [`Reader`]; it outlives a
/// publisher that reconnects within the grace period.
#[derive(Debug)]
pub struct Stream {
    pub id: u64,
    pub path: String,
    created: SystemTime,
    inner: Mutex<Inner>,
    frames_in: AtomicU64,
    bytes_in: AtomicU64,
    /// A video frame came before the previous one in presentation order:
    /// the stream has B-frames.
    reordered: AtomicBool,
    last_video_pts: AtomicI64,
    /// A reader asked for a keyframe (a WebRTC viewer's PLI); publishers that
    /// can ask their encoder (WHIP) take it.
    keyframe_wanted: AtomicBool,
}

#[derive(Debug)]
struct Inner {
    tracks: Vec<Arc<Track>>,
    /// The first `primary` tracks are the publisher's; the rest are derived
    /// from them inside the relay (e.g. Opus transcoded for WebRTC).
    primary: usize,
    has_video: bool,
    readers: Vec<Arc<ReaderQueue>>,
    gop: GopCache,
    ended: bool,
    /// Wall-clock time at media time 0, set by the first frame.
    anchor: Option<SystemTime>,
    /// Per track: last dts and the step before it, to continue after a reconnect.
    last: Vec<Option<(i64, i64)>>,
    /// Per track: measured bitrate and frame rate.
    meters: Vec<Meter>,
}

impl Stream {
    pub(crate) fn new(id: u64, path: String, params: Vec<CodecParams>, gop_max: usize) -> Self {
        let tracks: Vec<Arc<Track>> = params
            .into_iter()
            .enumerate()
            .map(|(i, p)| Arc::new(Track::new(i, 0, p)))
            .collect();
        let has_video = tracks.iter().any(|t| t.kind() == TrackKind::Video);
        let n = tracks.len();
        Stream {
            id,
            path,
            created: SystemTime::now(),
            inner: Mutex::new(Inner {
                primary: n,
                tracks,
                has_video,
                readers: Vec::new(),
                gop: GopCache::new(gop_max),
                ended: false,
                anchor: None,
                last: vec![None; n],
                meters: vec![Meter::default(); n],
            }),
            frames_in: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            reordered: AtomicBool::new(false),
            last_video_pts: AtomicI64::new(i64::MIN),
            keyframe_wanted: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current generation of every track.
    pub fn tracks(&self) -> Vec<Arc<Track>> {
        self.lock().tracks.clone()
    }

    /// Wall-clock time of media time 0 (known once the first frame arrived).
    pub fn anchor(&self) -> Option<SystemTime> {
        self.lock().anchor
    }

    pub fn created(&self) -> SystemTime {
        self.created
    }

    pub fn has_ended(&self) -> bool {
        self.lock().ended
    }

    pub fn reader_count(&self) -> usize {
        self.lock().readers.len()
    }

    /// The publisher's tracks (the first ones); the rest are derived inside
    /// the relay.
    pub fn primary_tracks(&self) -> Vec<Arc<Track>> {
        let inner = self.lock();
        inner.tracks.iter().take(inner.primary).cloned().collect()
    }

    /// A reader needs a keyframe (its decoder lost its reference).
    pub fn request_keyframe(&self) {
        self.keyframe_wanted.store(true, Ordering::Relaxed);
    }

    /// The frames of track `index` in the GOP cache from its latest keyframe
    /// on (empty when the cache holds no keyframe of it), in decoding order.
    pub fn cached_gop(&self, index: usize) -> Vec<Arc<Frame>> {
        let inner = self.lock();
        let mut frames = inner.gop.snapshot(StartAt::LatestKeyframe);
        frames.retain(|f| f.track.index == index);
        if frames.first().is_some_and(|f| f.keyframe) {
            frames
        } else {
            Vec::new()
        }
    }

    /// Takes a pending keyframe request (for the publisher to pass on).
    pub fn take_keyframe_request(&self) -> bool {
        self.keyframe_wanted.swap(false, Ordering::Relaxed)
    }

    /// Whether the video has B-frames (seen so far).
    pub fn has_b_frames(&self) -> bool {
        self.reordered.load(Ordering::Relaxed)
    }

    pub fn frames_in(&self) -> u64 {
        self.frames_in.load(Ordering::Relaxed)
    }

    pub fn bytes_in(&self) -> u64 {
        self.bytes_in.load(Ordering::Relaxed)
    }

    /// Measured (bits per second, frames per second) of each track.
    pub fn track_rates(&self) -> Vec<(Option<u64>, Option<f64>)> {
        self.lock()
            .meters
            .iter()
            .map(|m| (m.bitrate(), m.fps()))
            .collect()
    }

    pub fn gop_cache_bytes(&self) -> usize {
        self.lock().gop.bytes()
    }

    /// Whether `params` describe the same kinds of tracks in the same order.
    pub(crate) fn same_layout(&self, params: &[CodecParams]) -> bool {
        let inner = self.lock();
        inner.primary == params.len()
            && inner
                .tracks
                .iter()
                .zip(params)
                .all(|(t, p)| t.kind() == p.kind())
    }

    /// Sets new parameters for a track. Returns the current track when they
    /// did not change, else a new generation of it.
    pub(crate) fn set_params(&self, index: usize, params: CodecParams) -> Option<Arc<Track>> {
        let mut inner = self.lock();
        let current = inner.tracks.get(index)?;
        if current.params == params {
            return Some(Arc::clone(current));
        }
        let next = Arc::new(Track::new(index, current.generation + 1, params));
        tracing::info!(
            path = %self.path,
            track = index,
            generation = next.generation,
            "track parameters changed"
        );
        inner.tracks[index] = Arc::clone(&next);
        Some(next)
    }

    pub(crate) fn track(&self, index: usize) -> Option<Arc<Track>> {
        self.lock().tracks.get(index).cloned()
    }

    /// Media time (ns) right after the latest frame: where a publisher that
    /// continues this stream starts.
    pub(crate) fn continuation_nanos(&self) -> Option<i64> {
        let inner = self.lock();
        inner
            .last
            .iter()
            .zip(&inner.tracks)
            .filter_map(|(last, t)| {
                last.map(|(dts, step)| timestamp::ticks_to_nanos(dts + step, t.timescale()))
            })
            .max()
    }

    /// Last dts of a track, for monotonic clamping.
    pub(crate) fn last_dts(&self, index: usize) -> Option<i64> {
        self.lock().last.get(index).copied().flatten().map(|l| l.0)
    }

    /// Adds a track derived from the publisher's (same timeline), or returns
    /// the derived track with these parameters if there is one already.
    pub fn add_derived_track(&self, params: CodecParams) -> Arc<Track> {
        let mut inner = self.lock();
        let primary = inner.primary;
        if let Some(t) = inner
            .tracks
            .iter()
            .skip(primary)
            .find(|t| t.params == params)
        {
            return Arc::clone(t);
        }
        let track = Arc::new(Track::new(inner.tracks.len(), 0, params));
        inner.tracks.push(Arc::clone(&track));
        inner.last.push(None);
        inner.meters.push(Meter::default());
        track
    }

    /// Writes a frame of a derived track (its timestamps are on the stream's
    /// timeline already).
    pub fn write_derived(&self, frame: Frame) {
        self.write(frame);
    }

    /// Fans a frame out to the GOP cache and every reader. Never waits for a
    /// reader and never copies the payload: each reader gets the same `Arc`.
    pub(crate) fn write(&self, frame: Frame) {
        let frame = Arc::new(frame);
        self.frames_in.fetch_add(1, Ordering::Relaxed);
        if frame.track.kind() == TrackKind::Video {
            // Presentation order differing from decoding order is what B-frames are.
            let last = self.last_video_pts.swap(frame.pts, Ordering::Relaxed);
            if frame.pts < last && last != i64::MIN {
                self.reordered.store(true, Ordering::Relaxed);
            }
        }
        self.bytes_in
            .fetch_add(frame.data.len() as u64, Ordering::Relaxed);
        let mut inner = self.lock();
        if inner.ended {
            return;
        }
        if inner.anchor.is_none() {
            let since_zero = Duration::from_nanos(frame.dts_nanos().max(0) as u64);
            inner.anchor = SystemTime::now().checked_sub(since_zero);
        }
        let index = frame.track.index;
        if let Some(slot) = inner.last.get_mut(index) {
            let step = slot.map_or(0, |(dts, _)| frame.dts - dts);
            *slot = Some((frame.dts, step.max(0)));
        }
        if let Some(meter) = inner.meters.get_mut(index) {
            meter.add(frame.dts_nanos(), frame.data.len());
        }
        let gop_start = inner.gop.is_gop_start(&frame, inner.has_video);
        inner.gop.push(&frame, gop_start);
        // A lagging reader may resume at a video keyframe, or anywhere in a
        // stream without video.
        let is_video = frame.track.kind() == TrackKind::Video;
        let resume_point = !inner.has_video || (frame.keyframe && is_video);
        let urgent = !inner.has_video || is_video;
        for reader in &inner.readers {
            reader.push(&frame, resume_point, urgent);
        }
    }

    /// Adds a reader that starts at `start` in the GOP cache.
    pub(crate) fn attach(self: &Arc<Self>, id: u64, start: StartAt, capacity: usize) -> Reader {
        let mut inner = self.lock();
        let queue = Arc::new(ReaderQueue::new(id, capacity, inner.gop.snapshot(start)));
        if inner.ended {
            queue.end();
        } else {
            inner.readers.push(Arc::clone(&queue));
        }
        Reader {
            queue,
            stream: Arc::clone(self),
        }
    }

    pub(crate) fn detach(&self, id: u64) {
        self.lock().readers.retain(|r| r.id != id);
    }

    /// Ends the stream: readers drain what they have, then see the end.
    pub(crate) fn end(&self) {
        let mut inner = self.lock();
        inner.ended = true;
        inner.gop.clear();
        for r in inner.readers.drain(..) {
            r.end();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::reader::{AUDIO_HOLD_FRAMES, Recv, WakePolicy};

    use bytes::Bytes;

    fn params() -> Vec<CodecParams> {
        crate::media::testing::av()
    }

    fn video(s: &Stream, i: i64, key: bool) -> Frame {
        Frame::new(
            s.track(0).unwrap(),
            i * 3000,
            i * 3000,
            key,
            Bytes::from(vec![i as u8; 100]),
        )
    }

    /// An AAC frame at `ms` milliseconds.
    fn audio(s: &Stream, ms: i64) -> Frame {
        let track = s.track(1).unwrap();
        let ticks = ms * i64::from(track.timescale()) / 1000;
        Frame::new(track, ticks, ticks, true, Bytes::from_static(&[1; 20]))
    }

    /// A video frame at `ms` milliseconds (90 kHz).
    fn video_at(s: &Stream, ms: i64, key: bool) -> Frame {
        Frame::new(s.track(0).unwrap(), ms * 90, ms * 90, key, Bytes::new())
    }

    /// Sets the RTMP player's wake policy and arms the wake probe.
    fn hold_audio(r: &mut Reader) {
        r.set_wake_policy(WakePolicy {
            hold_audio: true,
            ..WakePolicy::EVERY_FRAME
        });
        woken(r);
    }

    /// Counts the wake-ups of a reader's task.
    struct Probe(std::sync::atomic::AtomicUsize);

    impl futures_util::task::ArcWake for Probe {
        fn wake_by_ref(p: &Arc<Self>) {
            p.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Whether the reader's task was woken since the last call (the first
    /// call only arms the probe).
    fn woken(r: &Reader) -> bool {
        thread_local! {
            static PROBE: Arc<Probe> = Arc::new(Probe(Default::default()));
        }
        PROBE.with(|p| {
            let n = p.0.swap(0, Ordering::SeqCst);
            r.queue
                .waker
                .register(&futures_util::task::waker(Arc::clone(p)));
            n > 0
        })
    }

    #[test]
    fn by_default_every_frame_wakes_the_reader() {
        let s = Arc::new(Stream::new(1, "p".into(), params(), 1 << 20));
        let r = s.attach(1, StartAt::Live, 64);
        woken(&r);
        s.write(video_at(&s, 0, true));
        assert!(woken(&r));
        s.write(audio(&s, 10));
        assert!(woken(&r));
    }

    #[test]
    fn a_reader_holding_audio_is_woken_by_the_next_video_frame() {
        let s = Arc::new(Stream::new(1, "p".into(), params(), 1 << 20));
        let mut r = s.attach(1, StartAt::Live, 64);
        hold_audio(&mut r);
        s.write(video_at(&s, 0, true));
        assert!(woken(&r));
        s.write(audio(&s, 10));
        s.write(audio(&s, 31));
        assert!(!woken(&r), "audio waits for the next video frame");
        s.write(video_at(&s, 33, false));
        assert!(woken(&r));
        let mut got = 0;
        while let Recv::Frame(_) = r.try_recv() {
            got += 1;
        }
        assert_eq!(got, 4, "nothing is lost by waiting");
        // Video stops: audio is held at most AUDIO_HOLD_MAX of media time.
        let mut woke_at = None;
        for i in 0..20 {
            let ms = 40 + i * 21;
            s.write(audio(&s, ms));
            if woken(&r) {
                woke_at = Some(ms);
                break;
            }
        }
        assert_eq!(
            woke_at,
            Some(40 + 5 * 21),
            "first audio at 40 ms, 105 ms later"
        );
    }

    #[test]
    fn held_audio_wakes_after_a_bounded_count_whatever_its_timestamps() {
        let s = Arc::new(Stream::new(1, "p".into(), params(), 1 << 20));
        let mut r = s.attach(1, StartAt::Live, 64);
        hold_audio(&mut r);
        // Timestamps that never advance (or go back) must not hold forever.
        for i in 1..=AUDIO_HOLD_FRAMES {
            s.write(audio(&s, 1000 - i as i64));
            assert_eq!(woken(&r), i == AUDIO_HOLD_FRAMES, "frame {i}");
        }
    }

    #[test]
    fn a_stream_without_video_wakes_a_reader_holding_audio_for_every_frame() {
        let s = Arc::new(Stream::new(
            1,
            "p".into(),
            vec![crate::media::testing::aac()],
            1 << 20,
        ));
        let mut r = s.attach(1, StartAt::Live, 64);
        hold_audio(&mut r);
        let track = s.track(0).unwrap();
        for i in 0..3 {
            s.write(Frame::new(
                Arc::clone(&track),
                i * 1024,
                i * 1024,
                true,
                Bytes::new(),
            ));
            assert!(woken(&r));
        }
    }

    #[test]
    fn merged_writes_wake_once_the_held_frames_span_the_window() {
        let s = Arc::new(Stream::new(1, "p".into(), params(), 1 << 20));
        let mut r = s.attach(1, StartAt::Live, 512);
        r.set_wake_policy(WakePolicy {
            hold_audio: false,
            merge: Duration::from_millis(100),
        });
        woken(&r);
        let mut wakes = vec![];
        for i in 0..10 {
            s.write(video_at(&s, i * 33, i == 0));
            if woken(&r) {
                wakes.push(i * 33);
            }
        }
        // Held from 0: 132 ms is the first frame 100 ms after it; the next
        // batch starts at 165 and spans 100 ms at 297.
        assert_eq!(wakes, vec![132, 297]);
    }

    #[test]
    fn merged_writes_never_hold_more_than_half_the_queue() {
        let s = Arc::new(Stream::new(1, "p".into(), params(), 1 << 20));
        let mut r = s.attach(1, StartAt::Live, 16);
        r.set_wake_policy(WakePolicy {
            hold_audio: false,
            merge: Duration::from_secs(10),
        });
        woken(&r);
        let mut wakes = vec![];
        for i in 0..16 {
            s.write(video_at(&s, i, i == 0));
            if woken(&r) {
                wakes.push(i);
            }
        }
        assert_eq!(wakes, vec![7, 15]);
        assert_eq!(r.dropped(), 0);
    }

    #[test]
    fn readers_get_the_same_payload_without_copies() {
        let s = Arc::new(Stream::new(1, "p".into(), params(), 1 << 20));
        let mut a = s.attach(1, StartAt::Live, 16);
        let mut b = s.attach(2, StartAt::Live, 16);
        s.write(video(&s, 0, true));
        let (Recv::Frame(fa), Recv::Frame(fb)) = (a.try_recv(), b.try_recv()) else {
            panic!("both readers get the frame");
        };
        assert!(Arc::ptr_eq(&fa, &fb));
        assert_eq!(fa.data.as_ptr(), fb.data.as_ptr());
    }

    #[test]
    fn a_full_reader_skips_to_the_next_keyframe_and_counts_drops() {
        let s = Arc::new(Stream::new(1, "p".into(), params(), 1 << 20));
        let mut slow = s.attach(1, StartAt::Live, 4);
        let mut fast = s.attach(2, StartAt::Live, 64);
        for i in 0..10 {
            s.write(video(&s, i, i == 0 || i == 8));
        }
        // slow held 0..4, overflowed at 4 (dropping 5 frames), skipped 5..8,
        // resumed at keyframe 8.
        assert_eq!(slow.dropped(), 8);
        let mut got = vec![];
        while let Recv::Frame(f) = slow.try_recv() {
            got.push(f.dts / 3000);
        }
        assert_eq!(got, vec![8, 9]);
        let mut n = 0;
        while let Recv::Frame(_) = fast.try_recv() {
            n += 1;
        }
        assert_eq!(n, 10);
        assert_eq!(fast.dropped(), 0);
    }

    #[test]
    fn new_readers_start_from_the_gop_cache() {
        let s = Arc::new(Stream::new(1, "p".into(), params(), 1 << 20));
        for i in 0..7 {
            s.write(video(&s, i, i % 3 == 0));
        }
        let mut r = s.attach(1, StartAt::LatestKeyframe, 4);
        let Recv::Frame(f) = r.try_recv() else {
            panic!()
        };
        assert!(f.keyframe);
        assert_eq!(f.dts, 6 * 3000);
    }

    #[tokio::test]
    async fn end_reaches_readers_after_queued_frames() {
        let s = Arc::new(Stream::new(1, "p".into(), params(), 1 << 20));
        let mut r = s.attach(1, StartAt::Live, 4);
        s.write(video(&s, 0, true));
        s.end();
        assert!(r.recv().await.is_some());
        assert!(r.recv().await.is_none());
        assert_eq!(s.reader_count(), 0);
    }

    #[tokio::test]
    async fn a_kicked_reader_stops_at_once() {
        let s = Arc::new(Stream::new(1, "p".into(), params(), 1 << 20));
        // Waiting on an empty queue: the kick wakes it.
        let mut idle = s.attach(1, StartAt::Live, 16);
        let queue = Arc::clone(&idle.queue);
        let waiting = tokio::spawn(async move { (idle.recv().await.is_none(), idle.kicked()) });
        tokio::task::yield_now().await;
        queue.kick();
        assert_eq!(waiting.await.unwrap(), (true, true));
        // With frames queued: they are not drained first.
        let mut busy = s.attach(2, StartAt::Live, 16);
        s.write(video(&s, 0, true));
        busy.queue.kick();
        assert!(busy.recv().await.is_none());
    }

    #[tokio::test]
    async fn a_waiting_reader_is_woken_by_the_next_frame() {
        let s = Arc::new(Stream::new(1, "p".into(), params(), 1 << 20));
        let mut r = s.attach(1, StartAt::Live, 16);
        let waiting = tokio::spawn(async move { r.recv().await.map(|f| f.dts) });
        tokio::task::yield_now().await;
        s.write(video(&s, 3, true));
        assert_eq!(waiting.await.unwrap(), Some(9000));
    }

    #[test]
    fn dropping_a_reader_detaches_it() {
        let s = Arc::new(Stream::new(1, "p".into(), params(), 1 << 20));
        let r = s.attach(1, StartAt::Live, 4);
        assert_eq!(s.reader_count(), 1);
        drop(r);
        assert_eq!(s.reader_count(), 0);
    }

    #[test]
    fn params_changes_make_a_new_generation() {
        let s = Stream::new(1, "p".into(), params(), 1 << 20);
        let same = s.set_params(1, params()[1].clone()).unwrap();
        assert_eq!(same.generation, 0);
        let CodecParams::Aac(mut a) = params()[1].clone() else {
            unreachable!()
        };
        a.channels = 1;
        let next = s.set_params(1, CodecParams::Aac(a)).unwrap();
        assert_eq!(next.generation, 1);
        assert!(Arc::ptr_eq(&s.track(1).unwrap(), &next));
    }
}
