//! The life of a pulled source: attempt, and on failure wait with
//! exponential backoff and jitter before the next attempt; stop when told.
//!
//! The schedule is a pure value ([`Backoff`]) so it is tested without a
//! camera; [`run`] drives any `attempt` future with it, so the loop is tested
//! with paused time and a fake attempt.

use std::future::Future;
use std::time::{Duration, SystemTime};

use rand::{Rng, SeedableRng, rngs::StdRng};
use tokio_util::sync::CancellationToken;

use crate::hub::source::SourceStatus;

/// Why an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AttemptError {
    /// Words for the API, e.g. `401 Unauthorized from camera`.
    pub message: String,
    /// The camera refused our credentials.
    pub auth: bool,
    /// Media flowed before the failure (the camera went away mid-stream).
    pub was_ready: bool,
}

/// Retry timing.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub max: Duration,
    /// After this many authentication failures in a row, wait the maximum
    /// every time: wrong credentials must not hammer the camera (many lock
    /// the account).
    pub auth_failures_to_cap: u32,
    /// ± this fraction of each delay, so many sources do not retry in step.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
            auth_failures_to_cap: 3,
            jitter: 0.2,
        }
    }
}

/// The backoff state of one source.
#[derive(Debug)]
pub struct Backoff {
    policy: RetryPolicy,
    failures: u32,
    auth_failures: u32,
    rng: StdRng,
}

impl Backoff {
    pub fn new(policy: RetryPolicy, seed: u64) -> Self {
        Backoff {
            policy,
            failures: 0,
            auth_failures: 0,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// The delay before the next attempt after `error`.
    pub fn next_delay(&mut self, error: &AttemptError) -> Duration {
        if error.was_ready {
            // It worked until just now: try again soon.
            self.failures = 0;
            self.auth_failures = 0;
        }
        if error.auth {
            self.auth_failures += 1;
        } else {
            self.auth_failures = 0;
        }
        let base = if self.auth_failures >= self.policy.auth_failures_to_cap {
            self.policy.max
        } else {
            let doubled = self
                .policy
                .initial
                .saturating_mul(1u32.checked_shl(self.failures).unwrap_or(u32::MAX));
            doubled.min(self.policy.max)
        };
        self.failures = self.failures.saturating_add(1);
        let j = self.policy.jitter;
        let factor = if j > 0.0 {
            self.rng.gen_range(1.0 - j..=1.0 + j)
        } else {
            1.0
        };
        base.mul_f64(factor)
    }
}

/// Runs `attempt` until `cancel`, waiting between failed attempts as the
/// policy says and reporting each step in `status`. `attempt` returns
/// `Ok(())` only when it stopped because of `cancel`.
pub async fn run<F, Fut>(
    status: &SourceStatus,
    cancel: &CancellationToken,
    policy: RetryPolicy,
    mut attempt: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), AttemptError>>,
{
    let mut backoff = Backoff::new(policy, rand::random());
    while !cancel.is_cancelled() {
        status.set_connecting();
        let result = tokio::select! {
            r = attempt() => r,
            _ = cancel.cancelled() => Ok(()),
        };
        let error = match result {
            Ok(()) => break,
            Err(e) => e,
        };
        let delay = backoff.next_delay(&error);
        tracing::warn!(source = %status.url, error = %error.message, retry_in = ?delay, "source failed");
        status.set_retrying(error.message, SystemTime::now() + delay);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = cancel.cancelled() => break,
        }
    }
    status.set_idle();
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    fn err(auth: bool, was_ready: bool) -> AttemptError {
        AttemptError {
            message: if auth {
                "401 Unauthorized from camera".into()
            } else {
                "connection refused".into()
            },
            auth,
            was_ready,
        }
    }

    fn no_jitter() -> RetryPolicy {
        RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::default()
        }
    }

    #[test]
    fn doubles_from_one_second_to_thirty() {
        let mut b = Backoff::new(no_jitter(), 1);
        let delays: Vec<u64> = (0..8)
            .map(|_| b.next_delay(&err(false, false)).as_secs())
            .collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 30, 30, 30]);
    }

    #[test]
    fn a_source_that_was_ready_retries_soon_again() {
        let mut b = Backoff::new(no_jitter(), 1);
        for _ in 0..5 {
            b.next_delay(&err(false, false));
        }
        assert_eq!(b.next_delay(&err(false, true)), Duration::from_secs(1));
        assert_eq!(b.next_delay(&err(false, false)), Duration::from_secs(2));
    }

    #[test]
    fn repeated_auth_failures_go_straight_to_the_cap() {
        let mut b = Backoff::new(no_jitter(), 1);
        let delays: Vec<u64> = (0..4)
            .map(|_| b.next_delay(&err(true, false)).as_secs())
            .collect();
        assert_eq!(delays, vec![1, 2, 30, 30]);
    }

    #[test]
    fn jitter_stays_within_bounds_and_varies() {
        let mut b = Backoff::new(RetryPolicy::default(), 7);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20 {
            let d = b.next_delay(&err(false, true));
            assert!(
                d >= Duration::from_millis(800) && d <= Duration::from_millis(1200),
                "{d:?}"
            );
            seen.insert(d);
        }
        assert!(seen.len() > 10);
    }

    #[tokio::test(start_paused = true)]
    async fn the_loop_waits_reports_and_stops_when_cancelled() {
        let status = SourceStatus::new("rtsp", "rtsp://cam/".into());
        let cancel = CancellationToken::new();
        let times = Arc::new(Mutex::new(Vec::new()));
        let start = tokio::time::Instant::now();
        let t = Arc::clone(&times);
        let c = cancel.clone();
        let attempts = async {
            run(&status, &cancel, no_jitter(), || {
                let t = Arc::clone(&t);
                let c = c.clone();
                async move {
                    let mut t = t.lock().unwrap();
                    t.push(start.elapsed().as_secs());
                    if t.len() == 6 {
                        c.cancel();
                        return Ok(());
                    }
                    Err(err(true, false))
                }
            })
            .await;
        };
        let watch = async {
            // While waiting, the API shows the failure and the next retry.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let s = status.snapshot();
            assert_eq!(s.state, crate::hub::source::SourceState::Retrying);
            assert_eq!(
                s.last_error.as_deref(),
                Some("401 Unauthorized from camera")
            );
            assert_eq!(s.retries, 1);
            assert!(s.next_retry.is_some());
        };
        tokio::join!(attempts, watch);
        // Attempts at 0, 1, 3 (after 2), then the breaker: +30, +30, +30.
        assert_eq!(*times.lock().unwrap(), vec![0, 1, 3, 33, 63, 93]);
        assert_eq!(status.state(), crate::hub::source::SourceState::Idle);
    }
}
