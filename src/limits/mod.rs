//! Admission control: who may connect (IP allow/deny lists), how fast
//! (token buckets per client), and how many at once (connection caps).
//!
//! The pieces are independent of the servers: the listeners call
//! [`Limits::admit_connection`] on accept, and the HTTP routers add the
//! middleware in [`http`].

mod bucket;
mod connections;
pub mod http;
mod ip_rule;
mod rate;

pub use bucket::{BucketTable, MAX_CLIENTS, Rate, TokenBucket, client_key};
pub use connections::{ConnectionGuard, ConnectionLimiter};
pub use ip_rule::{IpNetwork, IpNetworkError, IpRule};
pub use rate::RateLimiter;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::LimitsConfig;

/// Why a client was turned away.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{ip} is not allowed here")]
    Denied { ip: IpAddr },
    #[error("too many requests from {ip}; retry in {retry_after:?}")]
    RateLimited { ip: IpAddr, retry_after: Duration },
    #[error("too many connections from {ip} (at most {limit})")]
    PerIpConnections { ip: IpAddr, limit: u32 },
    #[error("the server is at its connection limit ({limit})")]
    TotalConnections { limit: u32 },
}

/// Every limiter of the relay, built once from `[limits]`.
#[derive(Debug)]
pub struct Limits {
    /// Control API requests (the state of [`http::limit_requests`]).
    pub api: Arc<RateLimiter>,
    /// WHEP/WHIP POSTs (the state of [`http::limit_posts`]).
    pub webrtc_post: Arc<RateLimiter>,
    /// New RTMP and RTMPS connections.
    pub rtmp_connect: Arc<RateLimiter>,
    /// New RTSP connections.
    pub rtsp_connect: Arc<RateLimiter>,
    /// Open RTMP, RTMPS and RTSP connections (shared by those listeners).
    pub connections: ConnectionLimiter,
    /// Readers per path; `None`: unlimited.
    pub max_readers_per_path: Option<usize>,
    /// Largest API and WHEP/WHIP request body.
    pub max_body_bytes: usize,
}

impl Limits {
    pub fn new(c: &LimitsConfig) -> Limits {
        Limits {
            api: Arc::new(RateLimiter::per_second(c.api_rate)),
            webrtc_post: Arc::new(RateLimiter::per_second(c.webrtc_post_rate)),
            rtmp_connect: Arc::new(RateLimiter::per_second(c.connection_rate)),
            rtsp_connect: Arc::new(RateLimiter::per_second(c.connection_rate)),
            connections: ConnectionLimiter::new(c.max_connections_per_ip, c.max_connections),
            max_readers_per_path: (c.max_readers_per_path > 0)
                .then_some(c.max_readers_per_path as usize),
            max_body_bytes: c.max_body_bytes,
        }
    }

    /// Admits a new media connection (RTMP, RTMPS, RTSP) from `ip`: the
    /// listener's IP rule, then its connection rate, then the connection caps.
    /// Keep the guard for the life of the connection.
    pub fn admit_connection(
        &self,
        rule: &IpRule,
        rate: &RateLimiter,
        ip: IpAddr,
    ) -> Result<ConnectionGuard, Refusal> {
        let ip = ip.to_canonical();
        if !rule.permits(ip) {
            return Err(Refusal::Denied { ip });
        }
        rate.check(ip)
            .map_err(|retry_after| Refusal::RateLimited { ip, retry_after })?;
        self.connections.acquire(ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_checks_rule_then_rate_then_caps() {
        let limits = Limits::new(&LimitsConfig {
            connection_rate: 1,
            max_connections_per_ip: 1,
            max_connections: 10,
            ..LimitsConfig::default()
        });
        let rule = IpRule {
            allow: vec![],
            deny: vec!["203.0.113.0/24".parse().unwrap()],
        };
        let denied: IpAddr = "203.0.113.5".parse().unwrap();
        assert_eq!(
            limits
                .admit_connection(&rule, &limits.rtmp_connect, denied)
                .unwrap_err(),
            Refusal::Denied { ip: denied }
        );
        let ip: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        let guard = limits
            .admit_connection(&rule, &limits.rtmp_connect, ip)
            .unwrap();
        assert_eq!(limits.connections.count(v4), 1, "mapped counts as IPv4");
        // Burst of 2: the second passes the rate, but the per-IP cap is 1.
        assert_eq!(
            limits
                .admit_connection(&rule, &limits.rtmp_connect, v4)
                .unwrap_err(),
            Refusal::PerIpConnections { ip: v4, limit: 1 }
        );
        drop(guard);
        // The third within the second is over the rate.
        assert!(matches!(
            limits.admit_connection(&rule, &limits.rtmp_connect, v4),
            Err(Refusal::RateLimited { .. })
        ));
        // RTSP has its own bucket.
        let _g = limits
            .admit_connection(&rule, &limits.rtsp_connect, v4)
            .unwrap();
    }
}
