//! The UDP socket, the session table and the certificate.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use str0m::config::DtlsCert;
use str0m::net::{Protocol, TcpType};
use str0m::{Candidate, IceCreds, Rtc, RtcConfig};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::session::Session;
use super::stun;
use super::udp_batch;
use crate::net::{ListenAddr, canonical_peer};

/// Datagrams queued per session before new ones are dropped.
const SESSION_QUEUE: usize = 256;
/// Largest datagram read.
const MAX_DATAGRAM: usize = 2048;

/// How the engine is set up.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The UDP port; `None` for ICE over TCP only.
    pub listen: Option<ListenAddr>,
    /// ICE over TCP (RFC 6544, passive candidates, RFC 4571 framing) where
    /// UDP is blocked; `None` for UDP only.
    pub tcp_listen: Option<ListenAddr>,
    /// Extra addresses to advertise as host candidates: public IPs or
    /// hostnames (resolved at start) for NAT, Docker, Kubernetes.
    pub public_addresses: Vec<String>,
}

/// A datagram for one session.
#[derive(Debug)]
pub(crate) struct Datagram {
    pub proto: Protocol,
    pub source: SocketAddr,
    pub destination: SocketAddr,
    pub data: Vec<u8>,
    pub at: Instant,
}

pub struct Engine {
    socket: Option<Arc<UdpSocket>>,
    local: Option<SocketAddr>,
    /// ICE-TCP candidates, and the connections by peer address.
    tcp_candidates: Vec<SocketAddr>,
    tcp_peers: Mutex<HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>>,
    /// The socket is IPv6 (dual stack): IPv4 peers are sent to as mapped.
    dual_stack: bool,
    /// Batches go with UDP segmentation offload ([`udp_batch`]): the kernel
    /// knows it; cleared for good when a device cannot do it (`EIO`).
    gso: AtomicBool,
    candidates: Vec<SocketAddr>,
    cert: DtlsCert,
    table: Mutex<Table>,
    next_id: AtomicU64,
}

#[derive(Default)]
struct Table {
    sessions: HashMap<u64, Slot>,
    by_ufrag: HashMap<String, u64>,
    by_addr: HashMap<SocketAddr, u64>,
}

struct Slot {
    /// Boxed: a queue slot is then a pointer, not the 112-byte datagram
    /// (tokio's queue keeps its 32-slot blocks for the session's life).
    tx: mpsc::Sender<Box<Datagram>>,
    ufrag: String,
    addrs: Vec<SocketAddr>,
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot bind the WebRTC UDP socket on {addr}: {source}")]
    Bind {
        addr: ListenAddr,
        source: std::io::Error,
    },
    #[error("cannot create the DTLS certificate")]
    Certificate,
}

impl Engine {
    /// Binds the UDP socket, makes the DTLS certificate and starts routing
    /// datagrams until `shutdown`.
    pub fn start(
        config: &EngineConfig,
        shutdown: CancellationToken,
    ) -> Result<Arc<Engine>, EngineError> {
        let socket = match config.listen {
            Some(addr) => Some(
                addr.bind_udp()
                    .map_err(|source| EngineError::Bind { addr, source })?,
            ),
            None => None,
        };
        let local = match (&socket, config.listen) {
            (Some(s), Some(addr)) => Some(
                s.local_addr()
                    .map_err(|source| EngineError::Bind { addr, source })?,
            ),
            _ => None,
        };
        // One certificate for the process: making one costs tens of ms.
        let provider = super::dtls::crypto_provider();
        let cert = provider
            .dtls_provider
            .generate_certificate()
            .ok_or(EngineError::Certificate)?;
        let candidates =
            local.map_or_else(Vec::new, |l| host_candidates(l, &config.public_addresses));
        let tcp = match config.tcp_listen {
            Some(addr) => Some(
                addr.bind_tcp()
                    .map_err(|source| EngineError::Bind { addr, source })?,
            ),
            None => None,
        };
        let tcp_candidates = match &tcp {
            Some(l) => match l.local_addr() {
                Ok(a) => host_candidates(a, &config.public_addresses),
                Err(_) => Vec::new(),
            },
            None => Vec::new(),
        };
        tracing::info!(udp = ?local, candidates = ?candidates, tcp = ?tcp_candidates, "WebRTC listening");
        let engine = Arc::new(Engine {
            dual_stack: local.is_some_and(|l| l.is_ipv6()),
            gso: AtomicBool::new(socket.as_ref().is_some_and(udp_batch::gso_supported)),
            socket: socket.map(Arc::new),
            local,
            tcp_candidates,
            tcp_peers: Mutex::new(HashMap::new()),
            candidates,
            cert,
            table: Mutex::new(Table::default()),
            next_id: AtomicU64::new(0),
        });
        if let Some(socket) = engine.socket.clone() {
            tokio::spawn(Arc::clone(&engine).receive(socket, shutdown.clone()));
        }
        if let Some(listener) = tcp {
            tokio::spawn(Arc::clone(&engine).accept_tcp(listener, shutdown));
        }
        Ok(engine)
    }

    /// The address the UDP socket is bound to (none: ICE over TCP only).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local
    }

    /// The ICE-TCP candidates.
    pub fn tcp_candidates(&self) -> &[SocketAddr] {
        &self.tcp_candidates
    }

    /// The addresses every session advertises as host candidates.
    pub fn candidates(&self) -> &[SocketAddr] {
        &self.candidates
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A configuration for a new session: ICE-lite, the shared certificate
    /// and DTLS configuration ([`super::dtls`]), no codecs yet (the caller
    /// enables what it needs).
    pub fn rtc_config(&self) -> RtcConfig {
        RtcConfig::new()
            .set_crypto_provider(super::dtls::crypto_provider())
            .set_ice_lite(true)
            .set_dtls_cert(self.cert.clone())
            .clear_codecs()
    }

    /// Creates a session from `config` (see [`Engine::rtc_config`]) with the
    /// engine's candidates, registered for routing before it answers any
    /// offer (the first STUN request may come right after the answer).
    ///
    /// Boxed: a session is ~10 KiB (str0m's `Rtc` inline), and a task
    /// that owns one by value holds it twice — once captured by the spawned
    /// block, once as the async fn's argument — ~20 KiB more per viewer
    /// (heaptrack, 100 WHEP viewers).
    pub fn open(self: &Arc<Self>, config: RtcConfig) -> Box<Session> {
        let creds = IceCreds::new();
        let mut rtc: Rtc = config
            .set_local_ice_credentials(creds.clone())
            .build(Instant::now());
        for addr in &self.candidates {
            if let Ok(c) = Candidate::host(*addr, "udp") {
                rtc.add_local_candidate(c);
            }
        }
        for addr in &self.tcp_candidates {
            if let Ok(c) = Candidate::builder()
                .tcp()
                .host(*addr)
                .tcptype(TcpType::Passive)
                .build()
            {
                rtc.add_local_candidate(c);
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = mpsc::channel(SESSION_QUEUE);
        let mut table = self.lock();
        table.by_ufrag.insert(creds.ufrag.clone(), id);
        table.sessions.insert(
            id,
            Slot {
                tx,
                ufrag: creds.ufrag,
                addrs: Vec::new(),
            },
        );
        drop(table);
        Box::new(Session::new(id, rtc, rx, Arc::clone(self)))
    }

    pub(crate) fn close(&self, id: u64) {
        let mut table = self.lock();
        if let Some(slot) = table.sessions.remove(&id) {
            table.by_ufrag.remove(&slot.ufrag);
            for a in slot.addrs {
                table.by_addr.remove(&a);
            }
        }
    }

    /// Number of live sessions.
    pub fn session_count(&self) -> usize {
        self.lock().sessions.len()
    }

    /// Sends a packet to a peer: over UDP, or over its ICE-TCP connection.
    pub(crate) fn transmit(&self, proto: Protocol, destination: SocketAddr, contents: &[u8]) {
        if proto != Protocol::Tcp {
            return self.send(destination, contents);
        }
        let peers = self.tcp_peers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = peers.get(&destination) {
            // A full connection drops the packet, as UDP would.
            let _ = tx.try_send(contents.to_vec());
        }
    }

    /// Sends datagrams to one peer over UDP, as many per system call as the
    /// kernel takes ([`udp_batch::send_batch`]); what a failed batch means
    /// (a full socket buffer, no segmentation offload, a bad datagram) is
    /// [`udp_batch::send_all`]'s to decide.
    pub(crate) fn send_many(&self, destination: SocketAddr, datagrams: &[Vec<u8>]) {
        let Some(socket) = &self.socket else {
            return;
        };
        let to = self.socket_addr(destination);
        udp_batch::send_all(
            datagrams,
            &self.gso,
            |rest, gso| {
                socket.try_io(Interest::WRITABLE, || {
                    udp_batch::send_batch(&**socket, to, rest, gso)
                })
            },
            |d| self.send(destination, d),
        );
    }

    /// The address to send to on this socket: IPv4 peers as IPv4-mapped
    /// IPv6 addresses on a dual-stack socket.
    fn socket_addr(&self, destination: SocketAddr) -> SocketAddr {
        if self.dual_stack {
            match destination {
                SocketAddr::V4(v4) => {
                    SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
                }
                v6 => v6,
            }
        } else {
            destination
        }
    }

    /// Sends a datagram; a full socket buffer drops it (UDP).
    pub(crate) fn send(&self, destination: SocketAddr, contents: &[u8]) {
        let to = self.socket_addr(destination);
        let Some(socket) = &self.socket else {
            return;
        };
        if let Err(e) = socket.try_send_to(contents, to)
            && e.kind() != std::io::ErrorKind::WouldBlock
        {
            tracing::debug!(error = %e, %destination, "WebRTC send failed");
        }
    }

    /// The local candidate a datagram from `source` was addressed to: the
    /// socket is bound to a wildcard address, so the destination IP is not
    /// known; the candidate of the same family (loopback for loopback peers)
    /// is what str0m paired.
    fn destination_for(&self, proto: Protocol, source: SocketAddr) -> SocketAddr {
        let candidates = if proto == Protocol::Tcp {
            &self.tcp_candidates
        } else {
            &self.candidates
        };
        let same_family = |c: &&SocketAddr| c.is_ipv4() == source.is_ipv4();
        let loopback = source.ip().is_loopback();
        candidates
            .iter()
            .filter(same_family)
            .find(|c| c.ip().is_loopback() == loopback)
            .or_else(|| candidates.iter().find(same_family))
            .or_else(|| candidates.first())
            .copied()
            .unwrap_or(source)
    }

    async fn receive(self: Arc<Self>, socket: Arc<UdpSocket>, shutdown: CancellationToken) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let (n, from) = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = socket.recv_from(&mut buf) => match r {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::debug!(error = %e, "WebRTC receive failed");
                        continue;
                    }
                },
            };
            let source = canonical_peer(from);
            let Some(data) = buf.get(..n) else {
                continue;
            };
            self.route(Protocol::Udp, source, data);
        }
    }

    /// ICE-TCP (RFC 6544): each connection carries RFC 4571 frames (a 16-bit
    /// length, then the packet), routed like datagrams.
    async fn accept_tcp(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: CancellationToken,
    ) {
        loop {
            let (stream, peer) = tokio::select! {
                _ = shutdown.cancelled() => return,
                a = listener.accept() => match a {
                    Ok(a) => a,
                    Err(_) => {
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let peer = canonical_peer(peer);
            let _ = stream.set_nodelay(true);
            let engine = Arc::clone(&self);
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                engine.serve_tcp(stream, peer, shutdown).await;
                engine
                    .tcp_peers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&peer);
            });
        }
    }

    async fn serve_tcp(
        &self,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
        shutdown: CancellationToken,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut rd, mut wr) = stream.into_split();
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(SESSION_QUEUE);
        self.tcp_peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(peer, tx);
        let writer = tokio::spawn(async move {
            while let Some(packet) = rx.recv().await {
                let Ok(len) = u16::try_from(packet.len()) else {
                    continue;
                };
                if wr.write_all(&len.to_be_bytes()).await.is_err()
                    || wr.write_all(&packet).await.is_err()
                {
                    break;
                }
            }
        });
        let mut buf = vec![0u8; usize::from(u16::MAX)];
        loop {
            let mut len = [0u8; 2];
            let read = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = rd.read_exact(&mut len) => r,
            };
            if read.is_err() {
                break;
            }
            let n = usize::from(u16::from_be_bytes(len));
            let Some(packet) = buf.get_mut(..n) else {
                break;
            };
            if rd.read_exact(packet).await.is_err() {
                break;
            }
            self.route(Protocol::Tcp, peer, packet);
        }
        writer.abort();
    }

    /// Hands a datagram to its session: by source address, or for a new
    /// address by the ICE username fragment of its STUN request. Never asks
    /// the sessions one by one.
    fn route(&self, proto: Protocol, source: SocketAddr, data: &[u8]) {
        let mut table = self.lock();
        let id = match table.by_addr.get(&source) {
            Some(id) => *id,
            None => {
                let Some(id) = stun::local_ufrag(data)
                    .and_then(|u| table.by_ufrag.get(u))
                    .copied()
                else {
                    return; // not for any session we know
                };
                table.by_addr.insert(source, id);
                if let Some(slot) = table.sessions.get_mut(&id) {
                    slot.addrs.push(source);
                }
                id
            }
        };
        let Some(slot) = table.sessions.get(&id) else {
            return;
        };
        let datagram = Box::new(Datagram {
            proto,
            source,
            destination: self.destination_for(proto, source),
            data: data.to_vec(),
            at: Instant::now(),
        });
        if slot.tx.try_send(datagram).is_err() {
            tracing::trace!(session = id, "session queue full; datagram dropped");
        }
    }
}

/// Host candidates: the configured public addresses (hostnames resolved),
/// the address of the default route, and loopback.
fn host_candidates(local: SocketAddr, public: &[String]) -> Vec<SocketAddr> {
    let port = local.port();
    let mut out: Vec<SocketAddr> = Vec::new();
    let mut add = |ip: IpAddr| {
        let a = SocketAddr::new(ip, port);
        let usable =
            local.ip().is_unspecified() || local.ip() == ip || (local.is_ipv6() && ip.is_ipv4());
        if usable && !out.contains(&a) {
            out.push(a);
        }
    };
    for p in public {
        match p.parse::<IpAddr>() {
            Ok(ip) => add(ip),
            Err(_) => match (p.as_str(), port).to_socket_addrs() {
                Ok(addrs) => addrs.for_each(|a| add(a.ip())),
                Err(e) => {
                    tracing::warn!(host = %p, error = %e, "cannot resolve webrtc_public_addresses entry")
                }
            },
        }
    }
    if local.ip().is_unspecified() {
        // The interface of the default route (no packet is sent).
        for probe in ["8.8.8.8:80", "[2001:4860:4860::8888]:80"] {
            let bind: SocketAddr = if probe.starts_with('[') {
                (Ipv6Addr::UNSPECIFIED, 0).into()
            } else {
                (Ipv4Addr::UNSPECIFIED, 0).into()
            };
            if let Ok(s) = std::net::UdpSocket::bind(bind)
                && s.connect(probe).is_ok()
                && let Ok(a) = s.local_addr()
            {
                add(a.ip());
            }
        }
        add(IpAddr::V4(Ipv4Addr::LOCALHOST));
    } else {
        add(local.ip());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_include_public_addresses_and_loopback() {
        let c = host_candidates(
            "0.0.0.0:8189".parse().unwrap(),
            &["203.0.113.7".into(), "localhost".into()],
        );
        assert!(c.contains(&"203.0.113.7:8189".parse().unwrap()));
        assert!(c.contains(&"127.0.0.1:8189".parse().unwrap()));
        assert!(c.iter().all(|a| a.port() == 8189));
        let c = host_candidates("127.0.0.1:9000".parse().unwrap(), &[]);
        assert_eq!(c, vec!["127.0.0.1:9000".parse::<SocketAddr>().unwrap()]);
    }
}
