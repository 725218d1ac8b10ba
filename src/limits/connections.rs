//! Counting open connections per client and in all; a connection holds a
//! guard that gives its place back when dropped.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use super::Refusal;
use super::bucket::client_key;

#[derive(Debug, Default)]
struct Counts {
    per_client: HashMap<IpAddr, u32>,
    total: u32,
}

/// Caps on open connections per client (an IPv4 address or an IPv6 /64)
/// and in all; 0 means no cap. The table only holds clients with an open
/// connection, so it is bounded by the connections themselves. Cheap to
/// clone (shared state).
#[derive(Debug, Clone)]
pub struct ConnectionLimiter {
    counts: Arc<Mutex<Counts>>,
    max_per_ip: u32,
    max_total: u32,
}

impl ConnectionLimiter {
    pub fn new(max_per_ip: u32, max_total: u32) -> ConnectionLimiter {
        ConnectionLimiter {
            counts: Arc::default(),
            max_per_ip,
            max_total,
        }
    }

    /// Takes a place for a connection from `ip`, or says which cap is reached.
    pub fn acquire(&self, ip: IpAddr) -> Result<ConnectionGuard, Refusal> {
        let key = client_key(ip);
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if self.max_total > 0 && c.total >= self.max_total {
            return Err(Refusal::TotalConnections {
                limit: self.max_total,
            });
        }
        let mine = c.per_client.get(&key).copied().unwrap_or(0);
        if self.max_per_ip > 0 && mine >= self.max_per_ip {
            return Err(Refusal::PerIpConnections {
                ip: ip.to_canonical(),
                limit: self.max_per_ip,
            });
        }
        c.per_client.insert(key, mine + 1);
        c.total += 1;
        Ok(ConnectionGuard {
            counts: Arc::clone(&self.counts),
            key,
        })
    }

    /// Open connections from `ip`'s client.
    pub fn count(&self, ip: IpAddr) -> u32 {
        let c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        c.per_client.get(&client_key(ip)).copied().unwrap_or(0)
    }

    /// Open connections in all.
    pub fn total(&self) -> u32 {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).total
    }

    /// Clients with an open connection.
    pub fn clients(&self) -> usize {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .per_client
            .len()
    }
}

/// One admitted connection; dropping it gives the place back.
#[derive(Debug)]
pub struct ConnectionGuard {
    counts: Arc<Mutex<Counts>>,
    key: IpAddr,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_client.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.per_client.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_ip_cap_and_release_on_drop() {
        let l = ConnectionLimiter::new(2, 0);
        let a = ip("192.0.2.1");
        let g1 = l.acquire(a).unwrap();
        let g2 = l.acquire(ip("::ffff:192.0.2.1")).unwrap();
        assert_eq!(
            l.acquire(a).unwrap_err(),
            Refusal::PerIpConnections { ip: a, limit: 2 }
        );
        let _other = l.acquire(ip("192.0.2.2")).unwrap();
        assert_eq!(l.total(), 3);
        drop(g1);
        assert_eq!(l.count(a), 1);
        let g3 = l.acquire(a).unwrap();
        drop(g2);
        drop(g3);
        assert_eq!(l.count(a), 0);
        assert_eq!(l.clients(), 1, "a client with no connection is forgotten");
        assert_eq!(l.total(), 1);
    }

    #[test]
    fn total_cap() {
        let l = ConnectionLimiter::new(0, 3);
        let guards: Vec<_> = (1..=3)
            .map(|i| l.acquire(ip(&format!("192.0.2.{i}"))).unwrap())
            .collect();
        assert_eq!(
            l.acquire(ip("192.0.2.9")).unwrap_err(),
            Refusal::TotalConnections { limit: 3 }
        );
        drop(guards);
        assert_eq!(l.total(), 0);
        assert_eq!(l.clients(), 0);
        assert!(l.acquire(ip("192.0.2.9")).is_ok());
    }

    #[test]
    fn guards_released_from_other_threads() {
        let l = ConnectionLimiter::new(1000, 1000);
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let l = l.clone();
                std::thread::spawn(move || {
                    for i in 0..500 {
                        let g = l.acquire(ip(&format!("10.0.{t}.{}", i % 4))).unwrap();
                        drop(g);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(l.total(), 0);
        assert_eq!(l.clients(), 0);
    }
}
