//! Token buckets per client, pure: time is passed in.
//!
//! A bucket holds up to `burst` tokens and gains `rate` tokens per second;
//! each request takes one. It is stored as the GCRA's "theoretical arrival
//! time" (ITU-T I.371 §4.4.2, the virtual scheduling form), which behaves
//! exactly like a token bucket but is one `Instant`: the bucket is full when
//! that time is not in the future, and a request is refused when it is more
//! than `burst - 1` intervals ahead.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

/// Clients tracked at most by one [`BucketTable`].
pub const MAX_CLIENTS: usize = 65_536;

/// A refill rate and a burst size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Time to gain one token.
    interval: Duration,
    /// How far ahead of now a bucket may run: `(burst - 1) * interval`.
    tolerance: Duration,
}

impl Rate {
    /// `per_second` tokens per second with a burst of twice that; `None`
    /// for 0 (no limit).
    pub fn per_second(per_second: u32) -> Option<Rate> {
        Rate::new(per_second, per_second.saturating_mul(2))
    }

    /// `per_second` tokens per second, at most `burst` at once (at least 1).
    pub fn new(per_second: u32, burst: u32) -> Option<Rate> {
        if per_second == 0 {
            return None;
        }
        let interval = Duration::from_nanos(1_000_000_000 / u64::from(per_second));
        Some(Rate {
            interval,
            tolerance: interval * burst.max(1).saturating_sub(1),
        })
    }

    /// Time for an empty bucket to fill up.
    pub fn refill_time(&self) -> Duration {
        self.tolerance + self.interval
    }
}

/// One client's bucket.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    /// When the bucket will be full again (full when not after now).
    full_at: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn full(now: Instant) -> TokenBucket {
        TokenBucket { full_at: now }
    }

    /// Takes a token, or says how long until one is there.
    pub fn try_take(&mut self, rate: &Rate, now: Instant) -> Result<(), Duration> {
        let start = self.full_at.max(now);
        let ahead = start - now;
        if ahead > rate.tolerance {
            return Err(ahead - rate.tolerance);
        }
        self.full_at = start + rate.interval;
        Ok(())
    }

    /// Whether the bucket has all its tokens (forgetting it changes nothing).
    pub fn is_full(&self, now: Instant) -> bool {
        self.full_at <= now
    }
}

/// The key a client is counted under: its IPv4 address (an IPv4-mapped IPv6
/// address counts as the IPv4 one), or the /64 prefix of its IPv6 address —
/// one subnet (RFC 4291 §2.5.4), which a single host may own entirely, so
/// that rotating addresses within it gains nothing.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

/// The buckets of every recently seen client, at most `max_clients`.
///
/// Full buckets carry no information and are dropped when the table is full
/// (at most once per refill time, so a flood of new addresses costs one sweep
/// per refill time, not one per request). When the table is full of clients
/// that are all still limited, a new client is refused until the next sweep:
/// the table never grows past its bound, and rotating source addresses never
/// buys fresh buckets.
#[derive(Debug)]
pub struct BucketTable {
    rate: Rate,
    buckets: HashMap<IpAddr, TokenBucket>,
    max_clients: usize,
    next_sweep: Option<Instant>,
}

impl BucketTable {
    pub fn new(rate: Rate, max_clients: usize) -> BucketTable {
        BucketTable {
            rate,
            buckets: HashMap::new(),
            max_clients: max_clients.max(1),
            next_sweep: None,
        }
    }

    /// Takes a token from `ip`'s bucket, or says how long until it may retry.
    pub fn try_take(&mut self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let key = client_key(ip);
        if let Some(bucket) = self.buckets.get_mut(&key) {
            return bucket.try_take(&self.rate, now);
        }
        if self.buckets.len() >= self.max_clients {
            if self.next_sweep.is_none_or(|t| now >= t) {
                self.buckets.retain(|_, b| !b.is_full(now));
                self.next_sweep = Some(now + self.rate.refill_time());
            }
            if self.buckets.len() >= self.max_clients {
                let wait = self
                    .next_sweep
                    .map_or(self.rate.interval, |t| t.saturating_duration_since(now));
                return Err(wait.max(self.rate.interval));
            }
        }
        let mut bucket = TokenBucket::full(now);
        let taken = bucket.try_take(&self.rate, now);
        self.buckets.insert(key, bucket);
        taken
    }

    /// Clients tracked now.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn burst_then_refill_at_the_rate() {
        let rate = Rate::per_second(10).unwrap(); // burst 20, one per 100 ms
        let t0 = Instant::now();
        let mut b = TokenBucket::full(t0);
        for i in 0..20 {
            assert!(b.try_take(&rate, t0).is_ok(), "burst token {i}");
        }
        assert_eq!(b.try_take(&rate, t0), Err(ms(100)));
        assert_eq!(b.try_take(&rate, t0 + ms(40)), Err(ms(60)));
        assert!(b.try_take(&rate, t0 + ms(100)).is_ok());
        assert_eq!(b.try_take(&rate, t0 + ms(100)), Err(ms(100)));
        // Empty at 100 ms; half a second later there are five tokens, not more.
        let t1 = t0 + ms(600);
        for _ in 0..5 {
            assert!(b.try_take(&rate, t1).is_ok());
        }
        assert!(b.try_take(&rate, t1).is_err());
        assert!(!b.is_full(t1));
        // Refilled completely after 2 s, and no further.
        let t2 = t1 + ms(2000);
        assert!(b.is_full(t2));
        let t3 = t2 + Duration::from_secs(3600);
        for _ in 0..20 {
            assert!(b.try_take(&rate, t3).is_ok());
        }
        assert!(b.try_take(&rate, t3).is_err());
    }

    #[test]
    fn steady_rate_is_sustained() {
        let rate = Rate::per_second(5).unwrap();
        let t0 = Instant::now();
        let mut b = TokenBucket::full(t0);
        // Exactly at the rate for a minute: never refused.
        for i in 0..300 {
            assert!(b.try_take(&rate, t0 + ms(200 * i)).is_ok(), "request {i}");
        }
        assert_eq!(Rate::new(1, 0).unwrap().refill_time(), ms(1000));
        assert!(Rate::per_second(0).is_none());
    }

    #[test]
    fn clients_have_separate_buckets_and_mapped_v4_is_v4() {
        let mut t = BucketTable::new(Rate::new(1, 1).unwrap(), 16);
        let now = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let a_mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(t.try_take(a, now).is_ok());
        assert_eq!(t.try_take(a_mapped, now), Err(ms(1000)));
        assert!(t.try_take(b, now).is_ok());
        // One IPv6 /64 is one client.
        let c: IpAddr = "2001:db8:0:1::1".parse().unwrap();
        let c2: IpAddr = "2001:db8:0:1:ffff::2".parse().unwrap();
        let d: IpAddr = "2001:db8:0:2::1".parse().unwrap();
        assert!(t.try_take(c, now).is_ok());
        assert!(t.try_take(c2, now).is_err());
        assert!(t.try_take(d, now).is_ok());
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn table_stays_bounded_under_a_flood_of_addresses() {
        let rate = Rate::per_second(1).unwrap(); // refill time 2 s
        let mut t = BucketTable::new(rate, 1000);
        let t0 = Instant::now();
        let ip = |i: u32| IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
        for i in 0..1000 {
            assert!(t.try_take(ip(i), t0).is_ok());
        }
        // Every bucket is in use: new clients wait for the next sweep, and
        // the table does not grow.
        let mut refused = 0;
        for i in 1000..50_000 {
            if let Err(wait) = t.try_take(ip(i), t0 + ms(10)) {
                assert!(wait > Duration::ZERO && wait <= ms(2000), "{wait:?}");
                refused += 1;
            }
            assert!(t.len() <= 1000);
        }
        assert_eq!(refused, 49_000);
        // Known clients are still served by their own buckets.
        assert!(t.try_take(ip(5), t0 + ms(10)).is_ok());
        // Once their buckets are full again, they are forgotten and new
        // clients get in.
        let later = t0 + ms(2500);
        assert!(t.try_take(ip(60_000), later).is_ok());
        assert_eq!(t.len(), 1);
        for i in 70_000..80_000 {
            let _ = t.try_take(ip(i), later);
        }
        assert_eq!(t.len(), 1000);
    }
}
