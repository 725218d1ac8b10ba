//! A small bounded cache whose entries expire: recent password verifications
//! and hook decisions. Sans-IO: the caller passes the time.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// At most `capacity` entries, each valid for `ttl` after it was inserted.
/// When full, expired entries go first, then the oldest one.
#[derive(Debug)]
pub struct TtlCache<K, V> {
    entries: HashMap<K, (V, Instant)>,
    capacity: usize,
    ttl: Duration,
}

impl<K: Hash + Eq + Clone, V: Clone> TtlCache<K, V> {
    /// A cache of at most `capacity` entries living `ttl` each. A zero
    /// capacity or TTL caches nothing.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        TtlCache {
            entries: HashMap::new(),
            capacity,
            ttl,
        }
    }

    /// The value stored for `key`, if it has not expired at `now`.
    pub fn get(&mut self, key: &K, now: Instant) -> Option<V> {
        let (value, at) = self.entries.get(key)?;
        if now.saturating_duration_since(*at) < self.ttl {
            return Some(value.clone());
        }
        self.entries.remove(key);
        None
    }

    /// Stores `value` for `key` as of `now`.
    pub fn insert(&mut self, key: K, value: V, now: Instant) {
        if self.capacity == 0 || self.ttl.is_zero() {
            return;
        }
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            let ttl = self.ttl;
            self.entries
                .retain(|_, (_, at)| now.saturating_duration_since(*at) < ttl);
            if self.entries.len() >= self.capacity
                && let Some(oldest) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, (_, at))| *at)
                    .map(|(k, _)| k.clone())
            {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(key, (value, now));
    }

    /// Entries held (expired ones included until they are evicted).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_after_ttl() {
        let t0 = Instant::now();
        let mut c = TtlCache::new(4, Duration::from_secs(60));
        c.insert("a", 1, t0);
        assert_eq!(c.get(&"a", t0 + Duration::from_secs(59)), Some(1));
        assert_eq!(c.get(&"a", t0 + Duration::from_secs(60)), None);
        assert!(c.is_empty(), "an expired entry is dropped when looked up");
    }

    #[test]
    fn bounded_evicting_expired_then_oldest() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut c = TtlCache::new(3, s(10));
        c.insert(1, (), t0);
        c.insert(2, (), t0 + s(5));
        c.insert(3, (), t0 + s(6));
        // Full; 1 has expired at t0+11 and goes.
        c.insert(4, (), t0 + s(11));
        assert_eq!(c.len(), 3);
        assert_eq!(c.get(&1, t0 + s(11)), None);
        // Full, none expired: the oldest (2) goes.
        c.insert(5, (), t0 + s(12));
        assert_eq!(c.len(), 3);
        assert_eq!(c.get(&2, t0 + s(12)), None);
        for k in [3, 4, 5] {
            assert_eq!(c.get(&k, t0 + s(12)), Some(()), "{k}");
        }
        // Re-inserting a present key evicts nothing.
        c.insert(5, (), t0 + s(13));
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn zero_ttl_caches_nothing() {
        let mut c = TtlCache::new(8, Duration::ZERO);
        let t0 = Instant::now();
        c.insert("a", 1, t0);
        assert_eq!(c.get(&"a", t0), None);
    }
}
