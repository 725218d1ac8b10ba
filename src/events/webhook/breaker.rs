//! The circuit breaker of one endpoint, as a pure state machine: the caller
//! passes the time in, so it is tested without clocks.
//!
//! Closed: requests go out; `failures_to_open` failed requests in a row open
//! it. Open: no request until `cooldown` has passed; then half-open: one
//! probe request is let through; its success closes the breaker, its failure
//! opens it again for another cooldown.

use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

/// What the API and metrics show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// Whether a request may be made now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Make the request, then report its outcome.
    Go,
    /// Make none for this long (the breaker is open, or a probe is out).
    Wait(Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// One endpoint's breaker.
#[derive(Debug, Clone)]
pub struct Breaker {
    failures_to_open: u32,
    cooldown: Duration,
    state: State,
    times_opened: u64,
}

impl Breaker {
    /// A closed breaker that opens after `failures_to_open` (at least 1)
    /// failures in a row and stays open for `cooldown`.
    pub fn new(failures_to_open: u32, cooldown: Duration) -> Breaker {
        Breaker {
            failures_to_open: failures_to_open.max(1),
            cooldown,
            state: State::Closed { failures: 0 },
            times_opened: 0,
        }
    }

    /// Asks to make a request at `now`. An open breaker whose cooldown has
    /// passed turns half-open and lets this one request through as the probe.
    pub fn permit(&mut self, now: Instant) -> Permit {
        match self.state {
            State::Closed { .. } => Permit::Go,
            State::Open { until } if now >= until => {
                self.state = State::HalfOpen { probing: true };
                Permit::Go
            }
            State::Open { until } => Permit::Wait(until - now),
            State::HalfOpen { probing: false } => {
                self.state = State::HalfOpen { probing: true };
                Permit::Go
            }
            // One probe at a time; its outcome decides.
            State::HalfOpen { probing: true } => Permit::Wait(self.cooldown),
        }
    }

    /// The request allowed by [`permit`](Self::permit) succeeded.
    pub fn on_success(&mut self) {
        self.state = State::Closed { failures: 0 };
    }

    /// The request allowed by [`permit`](Self::permit) failed at `now`.
    pub fn on_failure(&mut self, now: Instant) {
        match self.state {
            State::Closed { failures } if failures + 1 < self.failures_to_open => {
                self.state = State::Closed {
                    failures: failures + 1,
                };
            }
            State::Closed { .. } | State::HalfOpen { .. } => self.open(now),
            // A failure reported while open (a request that started before
            // it opened) changes nothing.
            State::Open { .. } => {}
        }
    }

    fn open(&mut self, now: Instant) {
        self.state = State::Open {
            until: now + self.cooldown,
        };
        self.times_opened += 1;
    }

    /// The state as of `now` (an open breaker past its cooldown is shown
    /// half-open: the next request will be the probe).
    pub fn state(&self, now: Instant) -> BreakerState {
        match self.state {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { until } if now >= until => BreakerState::HalfOpen,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// How many times it has opened (re-opening after a failed probe counts).
    pub fn times_opened(&self) -> u64 {
        self.times_opened
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOL: Duration = Duration::from_millis(50);

    #[test]
    fn opens_after_consecutive_failures_only() {
        let t0 = Instant::now();
        let mut b = Breaker::new(3, COOL);
        for _ in 0..2 {
            assert_eq!(b.permit(t0), Permit::Go);
            b.on_failure(t0);
        }
        // A success in between resets the count.
        assert_eq!(b.permit(t0), Permit::Go);
        b.on_success();
        for _ in 0..2 {
            assert_eq!(b.permit(t0), Permit::Go);
            b.on_failure(t0);
        }
        assert_eq!(b.state(t0), BreakerState::Closed);
        assert_eq!(b.permit(t0), Permit::Go);
        b.on_failure(t0);
        assert_eq!(b.state(t0), BreakerState::Open);
        assert_eq!(b.times_opened(), 1);
    }

    #[test]
    fn open_refuses_until_the_cooldown_then_lets_one_probe_through() {
        let t0 = Instant::now();
        let mut b = Breaker::new(1, COOL);
        b.on_failure(t0);
        let t1 = t0 + Duration::from_millis(20);
        assert_eq!(b.permit(t1), Permit::Wait(Duration::from_millis(30)));
        let t2 = t0 + COOL;
        assert_eq!(b.state(t2), BreakerState::HalfOpen);
        assert_eq!(b.permit(t2), Permit::Go, "the probe");
        assert!(
            matches!(b.permit(t2), Permit::Wait(_)),
            "no second request while the probe is out"
        );
        b.on_success();
        assert_eq!(b.state(t2), BreakerState::Closed);
        assert_eq!(b.permit(t2), Permit::Go);
        assert_eq!(b.times_opened(), 1);
    }

    #[test]
    fn a_failed_probe_reopens_for_another_cooldown() {
        let t0 = Instant::now();
        let mut b = Breaker::new(2, COOL);
        b.on_failure(t0);
        b.on_failure(t0);
        let t1 = t0 + COOL;
        assert_eq!(b.permit(t1), Permit::Go);
        b.on_failure(t1);
        assert_eq!(b.state(t1), BreakerState::Open);
        assert_eq!(b.times_opened(), 2);
        assert_eq!(
            b.permit(t1 + Duration::from_millis(10)),
            Permit::Wait(Duration::from_millis(40))
        );
        // One failure reopens a half-open breaker, not breaker_failures.
        assert_eq!(b.permit(t1 + COOL), Permit::Go);
        b.on_success();
        assert_eq!(b.state(t1 + COOL), BreakerState::Closed);
    }
}
