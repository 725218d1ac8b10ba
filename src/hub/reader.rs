//! One reader's bounded queue, and the handle a reader holds.
//!
//! The publisher pushes into every reader's queue without waiting. A queue
//! that is full is emptied, the reader is marked as skipping, and it resumes at
//! the next random access point; its drop counter records every frame it lost.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::media::Frame;

/// The shared part of a reader: written by the publisher, read by the reader.
#[derive(Debug)]
pub(crate) struct ReaderQueue {
    pub(crate) id: u64,
    inner: Mutex<QueueInner>,
    capacity: usize,
    notify: Notify,
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
}

impl ReaderQueue {
    pub(crate) fn new(id: u64, capacity: usize, backlog: Vec<Arc<Frame>>) -> Self {
        // The backlog (GOP cache) comes on top of the live capacity, so a
        // reader that joins with a long GOP does not start out lagging.
        let capacity = capacity + backlog.len();
        let mut frames = VecDeque::with_capacity(capacity);
        frames.extend(backlog);
        ReaderQueue {
            id,
            inner: Mutex::new(QueueInner {
                frames,
                skipping: false,
                ended: false,
            }),
            capacity,
            notify: Notify::new(),
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
    /// a lagging reader may restart at this frame.
    pub(crate) fn push(&self, frame: &Arc<Frame>, resume_point: bool) {
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
            if !resume_point {
                q.skipping = true;
                self.dropped.fetch_add(lost + 1, Ordering::Relaxed);
                drop(q);
                self.notify.notify_one();
                return;
            }
            self.dropped.fetch_add(lost, Ordering::Relaxed);
        }
        q.frames.push_back(Arc::clone(frame));
        drop(q);
        self.notify.notify_one();
    }

    /// Marks the end of the stream; the reader drains what is queued, then
    /// sees the end.
    pub(crate) fn end(&self) {
        self.lock().ended = true;
        self.notify.notify_one();
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
    /// Waits for the next frame; `None` once the stream has ended.
    pub async fn recv(&mut self) -> Option<Arc<Frame>> {
        loop {
            match self.try_recv() {
                Recv::Frame(f) => return Some(f),
                Recv::Ended => return None,
                Recv::Empty => self.queue.notify.notified().await,
            }
        }
    }

    /// Takes the next frame if one is queued.
    pub fn try_recv(&mut self) -> Recv {
        let mut q = self.queue.lock();
        match q.frames.pop_front() {
            Some(f) => {
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
        self.queue.delivered.fetch_add(n as u64, Ordering::Relaxed);
        !(q.ended && q.frames.is_empty() && n == 0)
    }

    /// Waits until something is queued or the stream ends.
    pub async fn ready(&self) {
        loop {
            {
                let q = self.queue.lock();
                if !q.frames.is_empty() || q.ended {
                    return;
                }
            }
            self.queue.notify.notified().await;
        }
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
