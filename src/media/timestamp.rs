//! Timestamp arithmetic: unwrapping 32-bit protocol clocks and converting
//! between timescales without drift.

/// Unwraps a 32-bit clock (RTMP milliseconds, RTP ticks) into a monotonic-ish
/// 64-bit count.
///
/// Each new value is interpreted as the nearest 64-bit value to the previous
/// one (a step of at most ±2^31), so a stream that crosses 2^32 keeps counting
/// up, and a small step backwards (RTMP audio and video interleave slightly out
/// of order) stays a small step backwards instead of a jump of 2^32.
#[derive(Debug, Clone, Default)]
pub struct Unwrapper {
    last: Option<i64>,
}

impl Unwrapper {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next raw 32-bit value and returns its unwrapped value.
    pub fn unwrap(&mut self, raw: u32) -> i64 {
        let value = match self.last {
            None => i64::from(raw),
            Some(last) => {
                // Difference modulo 2^32, read as signed: the shortest step.
                let delta = raw.wrapping_sub(last as u32) as i32;
                last + i64::from(delta)
            }
        };
        self.last = Some(value);
        value
    }

    /// The last unwrapped value, if any.
    pub fn last(&self) -> Option<i64> {
        self.last
    }
}

/// Converts `value` from timescale `from` to timescale `to`, rounding to the
/// nearest tick. Uses 128-bit intermediates so it never overflows for any
/// `i64` input with realistic timescales.
pub fn rescale(value: i64, from: u32, to: u32) -> i64 {
    if from == to {
        return value;
    }
    let num = i128::from(value) * i128::from(to);
    let den = i128::from(from.max(1));
    // Round half away from zero.
    let q = if num >= 0 {
        (num + den / 2) / den
    } else {
        (num - den / 2) / den
    };
    q.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// Ticks in `timescale` to nanoseconds.
pub fn ticks_to_nanos(ticks: i64, timescale: u32) -> i64 {
    rescale(ticks, timescale, 1_000_000_000)
}

/// Milliseconds to ticks in `timescale`.
pub fn millis_to_ticks(ms: i64, timescale: u32) -> i64 {
    rescale(ms, 1000, timescale)
}

/// Ticks in `timescale` to milliseconds.
pub fn ticks_to_millis(ticks: i64, timescale: u32) -> i64 {
    rescale(ticks, timescale, 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwraps_across_the_32_bit_boundary() {
        let mut u = Unwrapper::new();
        assert_eq!(u.unwrap(u32::MAX - 10), i64::from(u32::MAX) - 10);
        assert_eq!(u.unwrap(5), i64::from(u32::MAX) + 6);
        assert_eq!(u.unwrap(40), i64::from(u32::MAX) + 41);
    }

    #[test]
    fn small_backward_steps_stay_small() {
        let mut u = Unwrapper::new();
        assert_eq!(u.unwrap(1000), 1000);
        assert_eq!(u.unwrap(990), 990);
        let mut u = Unwrapper::new();
        u.unwrap(3);
        assert_eq!(u.unwrap(u32::MAX), -1);
    }

    #[test]
    fn rescale_rounds_to_nearest() {
        assert_eq!(rescale(33, 1000, 90_000), 2970);
        assert_eq!(rescale(1, 44_100, 1000), 0);
        assert_eq!(rescale(23, 44_100, 1000), 1);
        assert_eq!(rescale(-45, 90_000, 1000), -1);
        assert_eq!(
            millis_to_ticks(i64::from(u32::MAX), 48_000),
            206_158_430_160
        );
    }
}
