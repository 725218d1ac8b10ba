//! Placing input audio packets on a sample-counted timeline.
//!
//! Audio timestamps and sample counts should agree; when they do not, this
//! decides what a transcoder does with a packet so that its output stays aligned
//! with the input timestamps (and so with video) instead of drifting:
//!
//! | drift = pts − expected pts           | decision                              |
//! | ------------------------------------ | ------------------------------------- |
//! | first packet                         | [`Placement::Anchor`]                 |
//! | within ±`jitter`                     | [`Placement::Continue`] (count samples; timestamp rounding, e.g. RTMP's milliseconds, is ignored) |
//! | `jitter` < drift ≤ `max_gap`         | [`Placement::Fill`] with silence (lost packets) |
//! | −`max_gap` ≤ drift < −`jitter`       | [`Placement::Trim`] the overlapping head (duplicates, overlap) |
//! | \|drift\| > `max_gap`                | [`Placement::Anchor`] again: a new timeline starts at this pts |
//!
//! Pure and total: no panics for any `i64` timestamp.

/// What to do with one input packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Start a (new) timeline at this packet's pts; `drift` is `None` for the
    /// first packet, else how far (in ticks) the pts was from the expected one.
    Anchor { drift: Option<i64> },
    /// The packet follows on: append its samples.
    Continue,
    /// Append this many samples of silence, then the packet.
    Fill(u64),
    /// Drop this many samples from the head of the packet (possibly all of
    /// them), then append the rest.
    Trim(u64),
}

/// Tracks where the next input packet is expected (in input ticks = samples).
#[derive(Debug, Clone)]
pub struct InputClock {
    expected: Option<i64>,
    jitter: i64,
    max_gap: i64,
}

impl InputClock {
    /// `jitter` and `max_gap` are in ticks of the input timescale (samples).
    pub fn new(jitter: u64, max_gap: u64) -> Self {
        let jitter = i64::try_from(jitter).unwrap_or(i64::MAX);
        let max_gap = i64::try_from(max_gap).unwrap_or(i64::MAX).max(jitter);
        InputClock {
            expected: None,
            jitter,
            max_gap,
        }
    }

    /// The default tolerances for a `rate` Hz input: 15 ms of jitter (less than
    /// one lost 20 ms packet, more than RTMP's millisecond rounding) and a
    /// 100 ms maximum gap (FFmpeg's `aresample` `min_hard_comp` default).
    pub fn for_rate(rate: u32) -> Self {
        let rate = u64::from(rate.max(1));
        InputClock::new((rate * 15 / 1000).max(1), (rate / 10).max(1))
    }

    /// The pts the next packet is expected at, once anchored.
    pub fn expected(&self) -> Option<i64> {
        self.expected
    }

    /// Decides how a packet of `samples` samples (per channel) at `pts` is
    /// placed, and advances the expected pts past it.
    pub fn place(&mut self, pts: i64, samples: usize) -> Placement {
        let len = samples as i128;
        let Some(expected) = self.expected else {
            self.expected = Some(sat(pts as i128 + len));
            return Placement::Anchor { drift: None };
        };
        let drift = pts as i128 - expected as i128;
        if drift > self.max_gap as i128 || drift < -(self.max_gap as i128) {
            self.expected = Some(sat(pts as i128 + len));
            return Placement::Anchor {
                drift: Some(sat(drift)),
            };
        }
        if drift > self.jitter as i128 {
            self.expected = Some(sat(pts as i128 + len));
            return Placement::Fill(drift as u64);
        }
        if drift < -(self.jitter as i128) {
            let trim = (-drift).min(len);
            self.expected = Some(sat(expected as i128 + len - trim));
            return Placement::Trim(trim as u64);
        }
        self.expected = Some(sat(expected as i128 + len));
        Placement::Continue
    }
}

fn sat(v: i128) -> i64 {
    v.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_and_jitter() {
        let mut c = InputClock::for_rate(8000); // jitter 120, gap 800
        assert_eq!(c.place(1000, 160), Placement::Anchor { drift: None });
        assert_eq!(c.place(1160, 160), Placement::Continue);
        // RTMP-style rounding: a few samples early or late are ignored and
        // the sample count stays the truth.
        assert_eq!(c.place(1325, 160), Placement::Continue);
        assert_eq!(c.expected(), Some(1480));
        assert_eq!(c.place(1470, 160), Placement::Continue);
        assert_eq!(c.expected(), Some(1640));
    }

    #[test]
    fn lost_packet_is_filled() {
        let mut c = InputClock::for_rate(8000);
        c.place(0, 160);
        assert_eq!(c.place(320, 160), Placement::Fill(160));
        assert_eq!(c.place(480, 160), Placement::Continue);
    }

    #[test]
    fn duplicate_and_overlap_are_trimmed() {
        let mut c = InputClock::for_rate(8000);
        c.place(0, 160);
        c.place(160, 160);
        assert_eq!(c.place(160, 160), Placement::Trim(160));
        assert_eq!(c.expected(), Some(320));
        assert_eq!(c.place(120, 400), Placement::Trim(200));
        assert_eq!(c.expected(), Some(520));
    }

    #[test]
    fn big_jumps_reanchor() {
        let mut c = InputClock::for_rate(8000);
        c.place(0, 160);
        assert_eq!(c.place(961, 160), Placement::Anchor { drift: Some(801) });
        assert_eq!(c.place(1121, 160), Placement::Continue);
        assert_eq!(c.place(0, 160), Placement::Anchor { drift: Some(-1281) });
        assert_eq!(c.place(160, 160), Placement::Continue);
    }

    #[test]
    fn extreme_timestamps_do_not_panic() {
        let mut c = InputClock::for_rate(8000);
        for pts in [i64::MAX, i64::MIN, 0, i64::MAX - 1, i64::MIN + 1, -5] {
            let _ = c.place(pts, usize::MAX);
            let _ = c.place(pts, 0);
        }
        let mut c = InputClock::new(u64::MAX, u64::MAX);
        c.place(i64::MIN, 10);
        c.place(i64::MAX, 10);
    }
}
