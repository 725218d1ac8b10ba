//! Listen addresses and socket helpers shared by every listener.

pub mod sendfile;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, UdpSocket};

/// Where a listener binds.
///
/// Written as `:PORT` (all interfaces, IPv4 and IPv6 on one dual-stack socket),
/// `IP:PORT` or `[IPv6]:PORT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenAddr {
    /// All interfaces, IPv4 and IPv6.
    Any(u16),
    /// One address.
    Addr(SocketAddr),
}

impl ListenAddr {
    pub fn port(&self) -> u16 {
        match self {
            ListenAddr::Any(p) => *p,
            ListenAddr::Addr(a) => a.port(),
        }
    }

    fn socket_for(&self, ty: Type, protocol: Protocol) -> std::io::Result<(Socket, SocketAddr)> {
        match self {
            ListenAddr::Addr(addr) => {
                let socket = Socket::new(Domain::for_address(*addr), ty, Some(protocol))?;
                if addr.is_ipv6() {
                    socket.set_only_v6(true)?;
                }
                Ok((socket, *addr))
            }
            ListenAddr::Any(port) => {
                // One dual-stack socket; fall back to IPv4 where IPv6 is off.
                match Socket::new(Domain::IPV6, ty, Some(protocol)) {
                    Ok(socket) if socket.set_only_v6(false).is_ok() => Ok((
                        socket,
                        SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), *port),
                    )),
                    _ => Ok((
                        Socket::new(Domain::IPV4, ty, Some(protocol))?,
                        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), *port),
                    )),
                }
            }
        }
    }

    /// Binds a TCP listener.
    pub fn bind_tcp(&self) -> std::io::Result<TcpListener> {
        let (socket, addr) = self.socket_for(Type::STREAM, Protocol::TCP)?;
        socket.set_reuse_address(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        TcpListener::from_std(socket.into())
    }

    /// Binds a UDP socket.
    pub fn bind_udp(&self) -> std::io::Result<UdpSocket> {
        let (socket, addr) = self.socket_for(Type::DGRAM, Protocol::UDP)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        UdpSocket::from_std(socket.into())
    }
}

/// Error for a listen address that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("invalid listen address {input:?}: expected \":PORT\", \"IP:PORT\" or \"[IPv6]:PORT\"")]
pub struct ListenAddrError {
    input: String,
}

impl FromStr for ListenAddr {
    type Err = ListenAddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ListenAddrError {
            input: s.to_string(),
        };
        if let Some(port) = s.strip_prefix(':') {
            return port.parse().map(ListenAddr::Any).map_err(|_| err());
        }
        s.parse::<SocketAddr>()
            .map(ListenAddr::Addr)
            .map_err(|_| err())
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Any(p) => write!(f, ":{p}"),
            ListenAddr::Addr(a) => write!(f, "{a}"),
        }
    }
}

impl Serialize for ListenAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The next connection on `listener` (peer shown as in
/// [`canonical_peer`], Nagle off), or `None` once `shutdown` is cancelled.
/// A failed accept (EMFILE and friends) is logged with the listener's
/// `name` and retried after a short pause instead of spinning.
pub async fn accept(
    listener: &TcpListener,
    name: &str,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Option<(tokio::net::TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let _ = socket.set_nodelay(true);
                    return Some((socket, canonical_peer(peer)));
                }
                Err(e) => {
                    tracing::warn!(listener = name, error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// Shows IPv4-mapped IPv6 peers (from a dual-stack socket) as plain IPv4.
pub fn canonical_peer(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// Writes every chunk in `chunks` with vectored writes (up to 64 chunks per
/// system call), removing them as they are written. The chunks are shared
/// `Bytes`: nothing is copied on the way to the socket.
pub async fn write_all_chunks<W>(
    w: &mut W,
    chunks: &mut std::collections::VecDeque<bytes::Bytes>,
) -> std::io::Result<u64>
where
    W: tokio::io::AsyncWrite + Unpin,
{
    use bytes::Buf;
    use std::io::IoSlice;

    let mut total = 0u64;
    loop {
        while chunks.front().is_some_and(|c| c.is_empty()) {
            chunks.pop_front();
        }
        if chunks.is_empty() {
            break;
        }
        // The slices live only while polling: kept across the await they
        // would make every writer's future a kilobyte larger.
        let mut n = std::future::poll_fn(|cx| {
            let mut slices = [IoSlice::new(&[]); 64];
            let mut count = 0;
            for (slot, chunk) in slices.iter_mut().zip(chunks.iter()) {
                *slot = IoSlice::new(chunk);
                count += 1;
            }
            std::pin::Pin::new(&mut *w).poll_write_vectored(cx, &slices[..count])
        })
        .await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        total += n as u64;
        while n > 0 {
            let Some(front) = chunks.front_mut() else {
                break;
            };
            if n >= front.len() {
                n -= front.len();
                chunks.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listen_forms() {
        assert_eq!(
            ":1935".parse::<ListenAddr>().unwrap(),
            ListenAddr::Any(1935)
        );
        assert_eq!(
            "127.0.0.1:9997".parse::<ListenAddr>().unwrap(),
            ListenAddr::Addr("127.0.0.1:9997".parse().unwrap())
        );
        assert!("[::1]:8080".parse::<ListenAddr>().is_ok());
        assert!("1935".parse::<ListenAddr>().is_err());
        assert!(":http".parse::<ListenAddr>().is_err());
    }

    #[test]
    fn mapped_peers_are_shown_as_ipv4() {
        let mapped: SocketAddr = "[::ffff:10.1.2.3]:5000".parse().unwrap();
        assert_eq!(canonical_peer(mapped).to_string(), "10.1.2.3:5000");
    }

    #[tokio::test]
    async fn any_port_accepts_ipv4_and_ipv6() {
        let listener = ListenAddr::Any(0).bind_tcp().unwrap();
        let port = listener.local_addr().unwrap().port();
        let v4 = tokio::net::TcpStream::connect(("127.0.0.1", port)).await;
        assert!(v4.is_ok());
        let (_, peer) = listener.accept().await.unwrap();
        assert_eq!(canonical_peer(peer).ip().to_string(), "127.0.0.1");
        if let Ok(_v6) = tokio::net::TcpStream::connect(("::1", port)).await {
            let (_, peer) = listener.accept().await.unwrap();
            assert!(peer.is_ipv6());
        }
    }
}
