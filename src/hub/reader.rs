//! One reader's bounded queue, and the handle a reader holds.
//!
//! The publisher pushes into every reader's queue without waiting. A queue
//! that is full is emptied, the reader is marked as skipping, and it resumes at
//! the next random access point; its drop counter records every frame it lost.
//!
//! Waking a reader's task costs more than queueing a frame (a task switch,
//! then usually one socket write per wake), so a reader may say when it wants
//! to be woken ([`WakePolicy`]): an RTMP player takes the audio frames
//! between two video frames together with the next video frame, and may ask
//! for merged writes spanning a fixed media time. The rules are pure (the
//! frame's media time decides, no clock), bounded in frames, and the end of
//! the stream or a skip always wakes.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;

use crate::media::Frame;

/// The shared part of a reader: written by the publisher, read by the reader.
#[derive(Debug)]
pub(crate) struct ReaderQueue {
    pub(crate) id: u64,
    inner: Mutex<QueueInner>,
    capacity: usize,
    /// The reader's task, woken by the publisher. One reader, one waker: a
    /// wake costs a compare-and-swap, not a waiter list under a lock.
    pub(super) waker: AtomicWaker,
    /// The session was kicked: the reader stops at once.
    kicked: AtomicBool,
    dropped: AtomicU64,
    delivered: AtomicU64,
}

#[derive(Debug)]
struct QueueInner {
    frames: VecDeque<Arc<Frame>>,
    /// Dropping until the next random access point.
    skipping: bool,
    /// The stream ended; nothing more will come.
    ended: bool,
    policy: WakePolicy,
    /// Frames queued since the reader was last woken, and the media time
    /// (ns) of the first of them.
    held: usize,
    held_since: i64,
}

/// When the publisher wakes a reader for the frames it queued.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WakePolicy {
    /// Frames that are not urgent (audio between video frames) wait for the
    /// next urgent one, at most [`AUDIO_HOLD_MAX`] of media time or
    /// [`AUDIO_HOLD_FRAMES`] frames.
    pub hold_audio: bool,
    /// Every frame waits until the held frames span this much media time
    /// (merged writes); zero turns it off.
    pub merge: Duration,
}

/// The longest audio waits for a video frame under [`WakePolicy::hold_audio`]:
/// a video frame comes every 33 ms at 30 fps, so this only matters when
/// video stops.
pub const AUDIO_HOLD_MAX: Duration = Duration::from_millis(100);
/// At most this many frames wait under [`WakePolicy::hold_audio`], whatever
/// their timestamps say.
pub const AUDIO_HOLD_FRAMES: usize = 8;
/// At most this many frames (and half the queue) wait for a merged write.
pub const MERGE_HOLD_FRAMES: usize = 256;

impl WakePolicy {
    /// Wakes for every frame.
    pub const EVERY_FRAME: WakePolicy = WakePolicy {
        hold_audio: false,
        merge: Duration::ZERO,
    };

    /// Whether a reader holding `held` frames (this one included) that span
    /// `span` of media time must be woken now. `urgent` is a video frame or
    /// any frame of a stream without video.
    fn wake(&self, urgent: bool, held: usize, span: Duration, capacity: usize) -> bool {
        if !self.merge.is_zero() {
            return span >= self.merge || held >= MERGE_HOLD_FRAMES.min(capacity / 2).max(1);
        }
        if self.hold_audio {
            return urgent || span >= AUDIO_HOLD_MAX || held >= AUDIO_HOLD_FRAMES;
        }
        true
    }
}

impl ReaderQueue {
    pub(crate) fn new(id: u64, capacity: usize, backlog: Vec<Arc<Frame>>) -> Self {
        // The backlog (GOP cache) comes on top of the live capacity, so a
        // reader that joins with a long GOP does not start out lagging. The
        // queue grows on demand: a reader that keeps up holds a few frames,
        // and a thousand players should not each reserve room for hundreds.
        let capacity = capacity + backlog.len();
        let frames = VecDeque::from(backlog);
        ReaderQueue {
            id,
            inner: Mutex::new(QueueInner {
                frames,
                skipping: false,
                ended: false,
                policy: WakePolicy::EVERY_FRAME,
                held: 0,
                held_since: 0,
            }),
            capacity,
            waker: AtomicWaker::new(),
            kicked: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, QueueInner> {
        // A poisoned queue only means a reader panicked mid-pop; the data is
        // still a valid queue of frames.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Offers a frame; never blocks on the reader. `resume_point` says whether
    /// a lagging reader may restart at this frame; `urgent` whether a reader
    /// that holds audio for video is woken for it (see [`WakePolicy`]).
    pub(crate) fn push(&self, frame: &Arc<Frame>, resume_point: bool, urgent: bool) {
        let mut q = self.lock();
        if q.ended {
            return;
        }
        if q.skipping {
            if !resume_point {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            q.skipping = false;
        }
        if q.frames.len() >= self.capacity {
            let lost = q.frames.len() as u64;
            q.frames.clear();
            q.held = 0;
            if !resume_point {
                q.skipping = true;
                self.dropped.fetch_add(lost + 1, Ordering::Relaxed);
                drop(q);
                self.waker.wake();
                return;
            }
            self.dropped.fetch_add(lost, Ordering::Relaxed);
        }
        q.frames.push_back(Arc::clone(frame));
        let now = frame.dts_nanos();
        if q.held == 0 {
            q.held_since = now;
        }
        q.held += 1;
        let span = Duration::from_nanos(now.saturating_sub(q.held_since).max(0) as u64);
        if q.policy.wake(urgent, q.held, span, self.capacity) {
            q.held = 0;
            drop(q);
            self.waker.wake();
        }
    }

    /// Marks the end of the stream; the reader drains what is queued, then
    /// sees the end.
    pub(crate) fn end(&self) {
        self.lock().ended = true;
        self.waker.wake();
    }

    /// Stops the reader at once (its session was kicked): `recv` returns
    /// `None` without draining what is queued.
    pub(crate) fn kick(&self) {
        self.kicked.store(true, Ordering::Release);
        self.waker.wake();
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub(crate) fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }
}

/// What a reader gets from its queue.
#[derive(Debug)]
pub enum Recv {
    Frame(Arc<Frame>),
    /// Nothing queued right now.
    Empty,
    /// The stream ended and everything queued was read.
    Ended,
}

/// A reader of one stream. Dropping it detaches it from the stream.
pub struct Reader {
    pub(crate) queue: Arc<ReaderQueue>,
    pub(crate) stream: Arc<super::Stream>,
}

impl Reader {
    /// Waits for the next frame; `None` once the stream has ended (and
    /// everything queued was read) or the session was kicked.
    pub async fn recv(&mut self) -> Option<Arc<Frame>> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// [`Reader::recv`] as a poll function.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Arc<Frame>>> {
        if let Some(done) = self.take_ready() {
            return Poll::Ready(done);
        }
        self.queue.waker.register(cx.waker());
        // A frame pushed before the waker was registered did not wake us.
        match self.take_ready() {
            Some(done) => Poll::Ready(done),
            None => Poll::Pending,
        }
    }

    fn take_ready(&mut self) -> Option<Option<Arc<Frame>>> {
        if self.kicked() {
            return Some(None);
        }
        match self.try_recv() {
            Recv::Frame(f) => Some(Some(f)),
            Recv::Ended => Some(None),
            Recv::Empty => None,
        }
    }

    /// Whether the reader's session was kicked.
    pub fn kicked(&self) -> bool {
        self.queue.kicked.load(Ordering::Acquire)
    }

    /// Takes the next frame if one is queued.
    pub fn try_recv(&mut self) -> Recv {
        let mut q = self.queue.lock();
        match q.frames.pop_front() {
            Some(f) => {
                if q.frames.is_empty() {
                    q.held = 0;
                }
                self.queue.delivered.fetch_add(1, Ordering::Relaxed);
                Recv::Frame(f)
            }
            None if q.ended => Recv::Ended,
            None => Recv::Empty,
        }
    }

    /// Moves up to `max` queued frames into `out` without waiting; returns
    /// false once the stream has ended and nothing is left.
    pub fn drain_into(&mut self, out: &mut Vec<Arc<Frame>>, max: usize) -> bool {
        let mut q = self.queue.lock();
        let n = q.frames.len().min(max);
        out.extend(q.frames.drain(..n));
        if q.frames.is_empty() {
            q.held = 0;
            if q.frames.capacity() > 64 {
                // The backlog a reader started with is gone: give its room
                // back (a reader that keeps up holds a few frames).
                q.frames.shrink_to(16);
            }
        }
        self.queue.delivered.fetch_add(n as u64, Ordering::Relaxed);
        !(q.ended && q.frames.is_empty() && n == 0)
    }

    /// Says when this reader wants to be woken for queued frames (by default
    /// for every frame).
    pub fn set_wake_policy(&mut self, policy: WakePolicy) {
        self.queue.lock().policy = policy;
    }

    /// Waits until something is queued, the stream ends or the session is
    /// kicked.
    pub async fn ready(&self) {
        let is_ready = || {
            let q = self.queue.lock();
            !q.frames.is_empty() || q.ended || self.kicked()
        };
        poll_fn(|cx| {
            if is_ready() {
                return Poll::Ready(());
            }
            self.queue.waker.register(cx.waker());
            if is_ready() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// Frames this reader lost because it did not keep up.
    pub fn dropped(&self) -> u64 {
        self.queue.dropped()
    }

    /// The stream this reader reads.
    pub fn stream(&self) -> &Arc<super::Stream> {
        &self.stream
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.stream.detach(self.queue.id);
    }
}
