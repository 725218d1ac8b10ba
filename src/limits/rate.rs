//! A shared, thread-safe request or connection rate limiter per client.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::bucket::{BucketTable, MAX_CLIENTS, Rate};

/// Token buckets per client behind one short-held lock (no await inside).
/// A limiter built with rate 0 lets everything through.
#[derive(Debug)]
pub struct RateLimiter {
    table: Option<Mutex<BucketTable>>,
}

impl RateLimiter {
    /// `per_second` per client with a burst of twice that (0: off), for at
    /// most [`MAX_CLIENTS`] clients at a time.
    pub fn per_second(per_second: u32) -> RateLimiter {
        RateLimiter::new(Rate::per_second(per_second), MAX_CLIENTS)
    }

    /// With an explicit rate (`None`: off) and client table bound.
    pub fn new(rate: Option<Rate>, max_clients: usize) -> RateLimiter {
        RateLimiter {
            table: rate.map(|r| Mutex::new(BucketTable::new(r, max_clients))),
        }
    }

    /// Whether this limiter limits anything.
    pub fn is_on(&self) -> bool {
        self.table.is_some()
    }

    /// Counts one request or connection from `ip` now; `Err` says how long
    /// until it may retry. Uses tokio's clock when called inside a runtime
    /// (so tests with paused time work).
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        if self.table.is_none() {
            return Ok(());
        }
        self.check_at(ip, tokio::time::Instant::now().into_std())
    }

    /// [`RateLimiter::check`] at a given time.
    pub fn check_at(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        match &self.table {
            None => Ok(()),
            Some(t) => t
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .try_take(ip, now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_off_and_nonzero_limits() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let off = RateLimiter::per_second(0);
        assert!(!off.is_on());
        for _ in 0..10_000 {
            assert!(off.check(ip).is_ok());
        }
        let on = RateLimiter::per_second(2);
        let now = Instant::now();
        for _ in 0..4 {
            assert!(on.check_at(ip, now).is_ok());
        }
        assert_eq!(on.check_at(ip, now), Err(Duration::from_millis(500)));
    }
}
