//! Decode timestamps for video whose transport carries presentation time
//! only (RTP, RFC 3550 §5.1): frames arrive in decoding order, each with its
//! pts; with B-frames the pts go back and forth.
//!
//! With a reorder depth of `R` frames (H.264's `max_num_reorder_frames`), the
//! n-th frame in decoding order gets as dts the n-th smallest pts of the
//! stream minus `R` frame durations. That is strictly increasing, never after
//! the frame's pts, and needs `R` frames of look-ahead. Without B-frames
//! (`R = 0`) dts is the pts, with no delay.
//!
//! When the depth is not known (no SPS field says it), frames are held as if
//! it were [`PROVISIONAL_DEPTH`] until either a pts goes backwards (the depth
//! becomes what was seen) or [`LEARN_FRAMES`] frames came in order (no
//! B-frames: the delay goes away).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

/// 30 fps at 90 kHz, until the stream shows its own frame duration.
const DEFAULT_FRAME_TICKS: i64 = 3000;
/// Depth assumed while learning.
pub const PROVISIONAL_DEPTH: usize = 2;
/// Frames in order after which a stream is taken to have no B-frames.
pub const LEARN_FRAMES: usize = 60;

#[derive(Debug)]
pub struct DecodeOrder<T> {
    reorder: Option<usize>,
    held: VecDeque<(i64, T)>,
    /// pts of frames received whose n-th-smallest slot is not used yet.
    pending_pts: BinaryHeap<Reverse<i64>>,
    /// The largest pts so far, and the pts of recent frames (to learn depth).
    recent: VecDeque<i64>,
    frame_ticks: Option<i64>,
    last_dts: Option<i64>,
    /// Frames seen while the depth is being learned.
    learning: usize,
}

impl<T> DecodeOrder<T> {
    /// `reorder`: the depth if the bitstream says it, `None` to learn it.
    pub fn new(reorder: Option<usize>) -> Self {
        DecodeOrder {
            reorder,
            held: VecDeque::new(),
            pending_pts: BinaryHeap::new(),
            recent: VecDeque::new(),
            frame_ticks: None,
            last_dts: None,
            learning: 0,
        }
    }

    pub fn reorder(&self) -> Option<usize> {
        self.reorder
    }

    /// Adds a frame (in decoding order); returns the frames whose dts is now
    /// known, as `(dts, pts, item)`.
    pub fn push(&mut self, pts: i64, item: T) -> Vec<(i64, i64, T)> {
        self.learn(pts);
        let mut out = Vec::new();
        if self.reorder == Some(0) && !self.held.is_empty() {
            // Just learned there are no B-frames: release what was held.
            out.extend(self.flush());
        }
        match self.reorder.or(Some(PROVISIONAL_DEPTH)) {
            None | Some(0) => {
                let dts = self.monotonic(pts);
                out.push((dts, pts, item));
            }
            Some(r) => {
                self.held.push_back((pts, item));
                self.pending_pts.push(Reverse(pts));
                while self.held.len() > r {
                    self.pop_one(r, &mut out);
                }
            }
        }
        out
    }

    /// The frames still held, e.g. at the end of a stream.
    pub fn flush(&mut self) -> Vec<(i64, i64, T)> {
        let r = self.reorder.unwrap_or(PROVISIONAL_DEPTH);
        let mut out = Vec::new();
        while !self.held.is_empty() {
            self.pop_one(r, &mut out);
        }
        out
    }

    fn pop_one(&mut self, r: usize, out: &mut Vec<(i64, i64, T)>) {
        let Some((pts, item)) = self.held.pop_front() else {
            return;
        };
        let smallest = self.pending_pts.pop().map_or(pts, |Reverse(p)| p);
        let shift = r as i64 * self.frame_ticks.unwrap_or(DEFAULT_FRAME_TICKS);
        let dts = self.monotonic((smallest - shift).min(pts));
        out.push((dts, pts, item));
    }

    fn monotonic(&mut self, dts: i64) -> i64 {
        let dts = match self.last_dts {
            Some(last) if dts <= last => last + 1,
            _ => dts,
        };
        self.last_dts = Some(dts);
        dts
    }

    /// Frame duration and, when unknown, reorder depth from the pts seen.
    fn learn(&mut self, pts: i64) {
        for &p in &self.recent {
            let d = (pts - p).abs();
            if d > 0 && self.frame_ticks.is_none_or(|f| d < f) {
                self.frame_ticks = Some(d);
            }
        }
        if self.reorder.is_none() {
            let later = self.recent.iter().filter(|&&p| p > pts).count();
            self.learning += 1;
            if later > 0 {
                tracing::debug!(depth = later, "B-frames seen; decode timestamps derived");
                self.reorder = Some(later);
            } else if self.learning >= LEARN_FRAMES {
                self.reorder = Some(0);
            }
        } else if let Some(r) = self.reorder {
            // A stream deeper than announced: follow it.
            let later = self.recent.iter().filter(|&&p| p > pts).count();
            if later > r {
                self.reorder = Some(later);
            }
        }
        self.recent.push_back(pts);
        if self.recent.len() > 16 {
            self.recent.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// I P B B P B B … in decoding order, 3000 ticks a frame.
    fn ipbb(n: usize) -> Vec<i64> {
        let mut out = vec![0];
        let mut p = 0;
        while out.len() < n {
            p += 3;
            out.push(p * 3000);
            out.push((p - 2) * 3000);
            out.push((p - 1) * 3000);
        }
        out.truncate(n);
        out
    }

    fn run(order: &mut DecodeOrder<usize>, pts: &[i64]) -> Vec<(i64, i64, usize)> {
        let mut out = Vec::new();
        for (i, &p) in pts.iter().enumerate() {
            out.extend(order.push(p, i));
        }
        out.extend(order.flush());
        out
    }

    fn check(out: &[(i64, i64, usize)], n: usize) {
        assert_eq!(out.len(), n);
        assert!(
            out.iter().enumerate().all(|(i, o)| o.2 == i),
            "decoding order kept"
        );
        assert!(
            out.windows(2).all(|w| w[1].0 > w[0].0),
            "dts strictly increases: {out:?}"
        );
        assert!(
            out.iter().all(|o| o.0 <= o.1),
            "dts never after pts: {out:?}"
        );
    }

    #[test]
    fn known_depth() {
        let pts = ipbb(31);
        let out = run(&mut DecodeOrder::new(Some(1)), &pts);
        check(&out, 31);
        // The dts are the sorted pts shifted by one frame.
        assert_eq!(out[3].0, 2 * 3000);
    }

    #[test]
    fn no_b_frames_means_no_delay() {
        let mut d = DecodeOrder::new(Some(0));
        assert_eq!(d.push(6000, ()).len(), 1);
        // Unknown depth and no B-frames: a short delay at the start only.
        let mut d = DecodeOrder::<usize>::new(None);
        let pts: Vec<i64> = (0..100).map(|i| i * 3000).collect();
        let mut out = Vec::new();
        for (i, &p) in pts.iter().enumerate() {
            let got = d.push(p, i);
            if i > LEARN_FRAMES {
                assert_eq!(got.len(), 1, "no delay once learned");
            }
            out.extend(got);
        }
        assert_eq!(d.reorder(), Some(0));
        assert!(
            out[LEARN_FRAMES..].iter().all(|o| o.0 == o.1),
            "dts = pts once learned"
        );
        check(&out, 100);
    }

    #[test]
    fn unknown_depth_is_learned() {
        let pts = ipbb(61);
        let mut d = DecodeOrder::new(None);
        let out = run(&mut d, &pts);
        assert_eq!(d.reorder(), Some(1));
        check(&out, 61);
    }

    #[test]
    fn camera_clock_with_offset_and_15_fps() {
        let pts: Vec<i64> = ipbb(40).iter().map(|p| p * 2 + 12_345).collect();
        let out = run(&mut DecodeOrder::new(Some(1)), &pts);
        check(&out, 40);
    }
}
