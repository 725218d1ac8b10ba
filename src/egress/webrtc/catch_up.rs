//! Pacing of WHEP viewers' backlogs, with joining viewers first.
//!
//! A viewer's backlog — the cached GOP a new viewer gets after its
//! keyframe, a replay after a picture loss, frames that queued up while its
//! task was busy — goes out one video frame per [`CATCH_UP_GAP`] after the
//! first (sent in one burst, a GOP overflows the receiver's socket buffer).
//! On one core, many backlogs at once take most of it: when viewers join
//! together, the first ones' backlogs (up to a GOP each, hundreds of
//! packets to encrypt and send) compete with the later ones' offer answers,
//! DTLS handshakes and keyframes.
//!
//! So while some viewer is joining (its offer was taken, its first frame has not
//! gone out yet, for at most [`JOIN_PRIORITY`]), backlog frames of all
//! viewers share one pace, [`SHARED_GAP`] apart in all: an answer, a
//! handshake and a keyframe (the first frame is never paced) go before
//! backlogs. When nobody is joining, each viewer paces itself. A viewer that
//! never connects stops counting after [`JOIN_PRIORITY`], so offers that go
//! nowhere slow backlogs to the shared pace for at most that long each.
//!
//! Measured on one core of the 2-core bench machine (BENCHMARKS.md): 100
//! viewers joining at once reach their first frame 4–24 ms sooner (p50
//! 125–165 ms); with 200, the slowest (p99) in 0.34–0.9 s instead of
//! 1.27–1.29 s (without it, a few handshakes took over a second, as if a
//! flight was lost and resent on DTLS's 1 s timer).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A viewer's own pause between the video frames of its backlog: one frame
/// per millisecond is 30× real time for 30 fps video.
pub(crate) const CATCH_UP_GAP: Duration = Duration::from_millis(1);
/// While a viewer joins, the pause between backlog frames of all viewers
/// together: ~1000 frames/s, ~15 % of a core of this machine's SRTP
/// throughput at 2 Mbit/s (7–8 packets per P-frame).
pub(crate) const SHARED_GAP: Duration = Duration::from_millis(1);
/// Longest a viewer counts as joining: on loopback a join takes 15–60 ms
/// with a handful of viewers, ~300 ms with 100 at once on one core.
pub(crate) const JOIN_PRIORITY: Duration = Duration::from_secs(1);

/// The backlog pace of one WHEP server's viewers.
#[derive(Debug, Default)]
pub(crate) struct CatchUp {
    joining: AtomicUsize,
    /// The next free slot of the shared pace.
    next_slot: Mutex<Option<Instant>>,
}

impl CatchUp {
    /// A viewer starts joining; it counts until [`Backlog::done`] or drop.
    pub fn join(self: &Arc<Self>) -> Backlog {
        self.joining.fetch_add(1, Ordering::Relaxed);
        Backlog {
            pace: Arc::clone(self),
            joining: true,
        }
    }

    /// Viewers joining now.
    pub fn joining(&self) -> usize {
        self.joining.load(Ordering::Relaxed)
    }

    /// How long to wait, at `now`, before the next frame of a backlog: the
    /// viewer's own gap, or, while a viewer joins, until the shared pace's
    /// next free slot (which this takes).
    pub fn gap(&self, now: Instant) -> Duration {
        if self.joining() == 0 {
            return CATCH_UP_GAP;
        }
        let mut next = self.next_slot.lock().unwrap_or_else(|e| e.into_inner());
        let slot = next.map_or(now, |t| t.max(now)).max(now + CATCH_UP_GAP);
        *next = Some(slot + SHARED_GAP);
        slot - now
    }
}

/// One viewer's part in the pace: counted in [`CatchUp::joining`] until
/// it has joined.
#[derive(Debug)]
pub(crate) struct Backlog {
    pace: Arc<CatchUp>,
    joining: bool,
}

impl Backlog {
    /// The viewer has joined (its first frame went out), gave up, or took
    /// longer than [`JOIN_PRIORITY`]. Idempotent.
    pub fn done(&mut self) {
        if std::mem::take(&mut self.joining) {
            self.pace.joining.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub fn is_joining(&self) -> bool {
        self.joining
    }

    /// The pause before the next video frame of a backlog (not before the
    /// first: live frames, one per wake, never wait).
    pub async fn pause(&self) {
        tokio::time::sleep(self.pace.gap(Instant::now())).await;
    }
}

impl Drop for Backlog {
    fn drop(&mut self) {
        self.done();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_nobody_joining_each_viewer_paces_itself() {
        let pace = Arc::new(CatchUp::default());
        let now = Instant::now();
        for _ in 0..5 {
            assert_eq!(pace.gap(now), CATCH_UP_GAP);
        }
    }

    #[test]
    fn while_a_viewer_joins_backlog_frames_share_one_pace() {
        let pace = Arc::new(CatchUp::default());
        let now = Instant::now();
        let mut joining = pace.join();
        // Three viewers' backlog frames at the same moment: one slot each.
        assert_eq!(pace.gap(now), CATCH_UP_GAP);
        assert_eq!(pace.gap(now), CATCH_UP_GAP + SHARED_GAP);
        assert_eq!(pace.gap(now), CATCH_UP_GAP + 2 * SHARED_GAP);
        // Later, past the slots taken: no wait beyond the own gap.
        assert_eq!(pace.gap(now + 10 * SHARED_GAP), CATCH_UP_GAP);
        joining.done();
        assert_eq!(pace.joining(), 0);
        // Joined: back to the own gap, whatever slots were taken.
        assert_eq!(pace.gap(now), CATCH_UP_GAP);
        assert_eq!(pace.gap(now), CATCH_UP_GAP);
    }

    #[test]
    fn a_viewer_counts_once_however_it_stops_joining() {
        let pace = Arc::new(CatchUp::default());
        let mut a = pace.join();
        let b = pace.join();
        assert_eq!(pace.joining(), 2);
        a.done();
        a.done();
        assert!(!a.is_joining());
        drop(a);
        assert_eq!(pace.joining(), 1);
        drop(b);
        assert_eq!(pace.joining(), 0);
    }
}
