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

    /// Binds a UDP socket shared by many peers (WebRTC's one port, RTSP's
    /// UDP ports), with a receive buffer of [`UDP_RECEIVE_BUFFER`] where the
    /// kernel allows it.
    pub fn bind_udp(&self) -> std::io::Result<UdpSocket> {
        let (socket, addr) = self.socket_for(Type::DGRAM, Protocol::UDP)?;
        socket.set_nonblocking(true)?;
        grow_receive_buffer(&socket, addr);
        socket.bind(&addr.into())?;
        UdpSocket::from_std(socket.into())
    }
}

/// Receive buffer asked for on the shared UDP sockets. Every peer's
/// datagrams queue in one socket, and the kernel's default
/// (`net.core.rmem_default`, 208 KiB on Debian) overflows in a burst:
/// 400 WHEP viewers joining at once lost 180–280 STUN/DTLS datagrams there,
/// and a lost DTLS flight waits for its retransmission timer, one second
/// at first (RFC 6347 §4.2.4.1); a camera's or WHIP publisher's RTP packet
/// lost the same way costs a NACK or a broken frame. The kernel takes the
/// memory only while datagrams wait.
pub const UDP_RECEIVE_BUFFER: usize = 4 << 20;

/// Asks for [`UDP_RECEIVE_BUFFER`]. `SO_RCVBUF` is capped at
/// `net.core.rmem_max`; past it, a process with `CAP_NET_ADMIN` may force
/// the size (`SO_RCVBUFFORCE`, as GStreamer's `udpsrc` does). Short of
/// both, the socket keeps what it got and the log says how to raise it.
/// The check is on what Linux reports, twice the size set (socket(7): the
/// kernel's bookkeeping counts against the buffer), so a cap at half the
/// wanted size passes too.
fn grow_receive_buffer(socket: &Socket, addr: SocketAddr) {
    let _ = socket.set_recv_buffer_size(UDP_RECEIVE_BUFFER);
    let enough = |s: &Socket| s.recv_buffer_size().is_ok_and(|n| n >= UDP_RECEIVE_BUFFER);
    if enough(socket) {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let size = libc::c_int::try_from(UDP_RECEIVE_BUFFER).unwrap_or(libc::c_int::MAX);
        // SAFETY: a valid socket and a c_int option value of the right length.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&raw const size).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        if enough(socket) {
            return;
        }
    }
    tracing::warn!(
        %addr,
        bytes = socket.recv_buffer_size().unwrap_or(0),
        wanted = UDP_RECEIVE_BUFFER,
        "UDP receive buffer smaller than wanted: bursts of datagrams may be lost; raise net.core.rmem_max"
    );
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

    /// The shared UDP sockets get more than the kernel's default receive
    /// buffer: all of `UDP_RECEIVE_BUFFER` where `net.core.rmem_max` or the
    /// process's privileges allow it, else `rmem_max` (doubled, as Linux
    /// reports it).
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn shared_udp_sockets_get_a_larger_receive_buffer() {
        let read = |name: &str| -> usize {
            std::fs::read_to_string(format!("/proc/sys/net/core/{name}"))
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        };
        let (default, max) = (read("rmem_default"), read("rmem_max"));
        let socket = ListenAddr::Addr("127.0.0.1:0".parse().unwrap())
            .bind_udp()
            .unwrap();
        let got = socket2::SockRef::from(&socket).recv_buffer_size().unwrap();
        assert!(
            got >= UDP_RECEIVE_BUFFER || got >= 2 * max,
            "receive buffer {got} bytes, rmem_max {max}"
        );
        assert!(
            got > default,
            "receive buffer {got} bytes, default {default}"
        );
    }

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
