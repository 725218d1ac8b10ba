//! CIDR allow/deny lists (RFC 4632 §3.1 prefix notation for IPv4, RFC 4291
//! §2.3 for IPv6) for listeners and for publishing/reading a path.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One IP network, written `10.0.0.0/8`, `2001:db8::/32`, or a bare address
/// (`192.0.2.7` is `192.0.2.7/32`, `::1` is `::1/128`). Host bits are kept as
/// written; matching uses the prefix only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNetwork(pub IpNet);

/// A text that is not an IP network.
#[derive(Debug, thiserror::Error)]
#[error("{input:?} is not an IP network: {reason}")]
pub struct IpNetworkError {
    input: String,
    reason: String,
}

impl IpNetwork {
    /// Whether `ip` lies in this network. An IPv4-mapped IPv6 address
    /// (`::ffff:192.0.2.7`, RFC 4291 §2.5.5.2) counts as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip.to_canonical())
    }
}

impl FromStr for IpNetwork {
    type Err = IpNetworkError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let err = |reason: String| IpNetworkError {
            input: s.to_string(),
            reason,
        };
        if text.contains('/') {
            let net: IpNet = text.parse().map_err(|e| err(format!("{e}")))?;
            // An IPv4-mapped IPv6 network is the IPv4 network it maps.
            if let IpNet::V6(v6) = net
                && let Some(v4) = v6.addr().to_ipv4_mapped()
                && v6.prefix_len() >= 96
            {
                let v4net = ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
                    .map_err(|e| err(format!("{e}")))?;
                return Ok(IpNetwork(IpNet::V4(v4net)));
            }
            return Ok(IpNetwork(net));
        }
        let ip: IpAddr = text
            .parse()
            .map_err(|_| err("expected an address or ADDRESS/PREFIX".into()))?;
        Ok(IpNetwork(IpNet::from(ip.to_canonical())))
    }
}

impl fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for IpNetwork {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IpNetwork {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Who may use a listener or a path action: an address listed in `deny` is
/// refused; otherwise, an empty `allow` list lets everyone in, and a
/// non-empty one only the addresses it lists. Deny wins over allow.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IpRule {
    /// Networks allowed; empty: every address not denied.
    pub allow: Vec<IpNetwork>,
    /// Networks refused, whatever `allow` says.
    pub deny: Vec<IpNetwork>,
}

impl IpRule {
    /// A rule that lets every address in.
    pub fn allow_all() -> IpRule {
        IpRule::default()
    }

    /// Whether `ip` may connect (or publish, or read).
    pub fn permits(&self, ip: IpAddr) -> bool {
        if self.deny.iter().any(|n| n.contains(ip)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|n| n.contains(ip))
    }

    /// Whether the rule lets every address in (nothing to check).
    pub fn is_open(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(allow: &[&str], deny: &[&str]) -> IpRule {
        IpRule {
            allow: allow.iter().map(|s| s.parse().unwrap()).collect(),
            deny: deny.iter().map(|s| s.parse().unwrap()).collect(),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn empty_allow_lets_everyone_in_but_the_denied() {
        let r = rule(&[], &["203.0.113.0/24"]);
        assert!(r.permits(ip("198.51.100.1")));
        assert!(r.permits(ip("::1")));
        assert!(!r.permits(ip("203.0.113.9")));
        assert!(IpRule::allow_all().permits(ip("203.0.113.9")));
    }

    #[test]
    fn allow_list_is_exclusive_and_deny_wins() {
        let r = rule(&["10.0.0.0/8", "::1/128"], &["10.1.0.0/16"]);
        assert!(r.permits(ip("10.2.3.4")));
        assert!(!r.permits(ip("10.1.3.4")), "deny wins over allow");
        assert!(!r.permits(ip("11.0.0.1")));
        assert!(r.permits(ip("::1")));
        assert!(!r.permits(ip("::2")));
    }

    #[test]
    fn ipv6_networks() {
        let r = rule(&["2001:db8::/32"], &["2001:db8:bad::/48"]);
        assert!(r.permits(ip("2001:db8:1::5")));
        assert!(!r.permits(ip("2001:db8:bad::5")));
        assert!(!r.permits(ip("2001:db9::1")));
        assert!(
            !r.permits(ip("10.0.0.1")),
            "an IPv4 peer is not in a v6 list"
        );
    }

    #[test]
    fn mapped_ipv4_counts_as_ipv4() {
        let r = rule(&["127.0.0.0/8"], &[]);
        assert!(r.permits(ip("::ffff:127.0.0.1")));
        assert!(!r.permits(ip("::ffff:10.0.0.1")));
        // A mapped network in the list is the IPv4 network.
        let r = rule(&["::ffff:192.0.2.0/120"], &[]);
        assert!(r.permits(ip("192.0.2.77")));
        assert!(r.permits(ip("::ffff:192.0.2.77")));
        let r = rule(&[], &["::ffff:192.0.2.7"]);
        assert!(!r.permits(ip("192.0.2.7")));
    }

    #[test]
    fn bare_addresses_are_host_networks() {
        assert_eq!(
            "192.0.2.7".parse::<IpNetwork>().unwrap().to_string(),
            "192.0.2.7/32"
        );
        assert_eq!("::1".parse::<IpNetwork>().unwrap().to_string(), "::1/128");
        let r = rule(&["192.0.2.7"], &[]);
        assert!(r.permits(ip("192.0.2.7")));
        assert!(!r.permits(ip("192.0.2.8")));
    }

    #[test]
    fn bad_networks_are_refused_with_the_text() {
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0",
            "host.example",
            "",
            "1.2.3.4/x",
        ] {
            let e = bad.parse::<IpNetwork>().unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("{bad:?} is not an IP network")),
                "{e}"
            );
        }
    }
}
