//! Retry delays: exponential backoff with full jitter (the delay before
//! retry n is uniformly random in `[0, min(max, initial · 2^(n-1))]`), so
//! many relays retrying one receiver spread out instead of arriving in step.

use std::time::Duration;

/// The upper bound of the delay before retry `retry` (1 = the first retry).
pub fn ceiling(retry: u32, initial: Duration, max: Duration) -> Duration {
    let doublings = retry.saturating_sub(1).min(32);
    initial
        .checked_mul(1u32 << doublings.min(31))
        .unwrap_or(max)
        .min(max)
}

/// The delay before retry `retry`, given `unit`, a random number in
/// `[0, 1)` (out-of-range values are clamped).
pub fn delay(retry: u32, initial: Duration, max: Duration, unit: f64) -> Duration {
    let unit = if unit.is_finite() {
        unit.clamp(0.0, 1.0)
    } else {
        0.0
    };
    ceiling(retry, initial, max).mul_f64(unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    const I: Duration = Duration::from_millis(500);
    const M: Duration = Duration::from_secs(30);

    #[test]
    fn the_ceiling_doubles_from_initial_up_to_the_cap() {
        let ms: Vec<u128> = (1..=9).map(|n| ceiling(n, I, M).as_millis()).collect();
        assert_eq!(
            ms,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        assert_eq!(ceiling(1000, I, M), M, "no overflow for huge retry counts");
        assert_eq!(ceiling(0, I, M), I);
    }

    #[test]
    fn delays_stay_within_zero_and_the_ceiling() {
        use rand::Rng;
        let mut rng = rand::thread_rng();
        for retry in 1..20 {
            for _ in 0..200 {
                let d = delay(retry, I, M, rng.r#gen::<f64>());
                assert!(d <= ceiling(retry, I, M), "retry {retry}: {d:?}");
            }
        }
        assert_eq!(delay(3, I, M, 0.0), Duration::ZERO);
        assert_eq!(delay(3, I, M, 0.5), Duration::from_secs(1));
        assert_eq!(delay(3, I, M, 7.0), Duration::from_secs(2), "clamped");
        assert_eq!(delay(3, I, M, f64::NAN), Duration::ZERO);
    }
}
