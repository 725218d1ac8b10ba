//! The RTSP listener (RFC 2326, as NVRs, VLC, ffmpeg and GStreamer speak
//! it; RFC 7826 where they agree): every path is readable at
//! `rtsp://HOST:PORT/{path}`.
//!
//! A connection answers `OPTIONS`, `DESCRIBE` (the SDP of
//! `egress::rtsp::sdp`), `SETUP` per track (RTP over TCP interleaved, or
//! UDP unicast from the server's two shared UDP ports), `PLAY`, `PAUSE`,
//! `TEARDOWN`, and `GET_PARAMETER`/`SET_PARAMETER` as keep-alives. Each
//! frame is packetized once per path (`media::Memo::rtp_packets`, shared
//! with the WebRTC viewers); a reader adds only its RTP headers (its own
//! SSRC, sequence numbers, random time base) and RTCP sender reports,
//! whose wall clock comes from the stream's anchor so that clients can
//! line audio up with video.
//!
//! RTSPS (`rtsps_listen`) runs the same connections over TLS, with RTP
//! interleaved only.
//!
//! Publishing: `ANNOUNCE` (the SDP, `ingest::rtsp_record`), `SETUP` with
//! RTP over TCP interleaved (a UDP offer gets 461, and ffmpeg then offers
//! TCP), `RECORD`; the packets go through the camera ingest's depacketizers
//! into the hub like any publisher's.
//!
//! Auth is the control plane's: Basic, or Digest (RFC 2617) for users
//! whose password is `plain:`, or `?user=&pass=` / `?token=` in the URL;
//! `read` permission to play, `publish` (and `on_publish`) to announce,
//! checked before any reader or publisher is attached.
//!
//! Bad input ends only its connection: requests are framed within
//! `limits.max_request_bytes`-like bounds by `protocol::rtsp::Framer`, a
//! request that is not understood gets its 4xx, one that cannot be framed
//! closes the connection.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::{BufMut, Bytes, BytesMut};
use rtsp_types::headers::{self, HeaderName};
use rtsp_types::{Method, Request, Response, StatusCode, Version};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, UdpSocket};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::auth::{Action, AuthError, Credentials};
use crate::codec::rtp::packetize;
use crate::config::PassKind;
use crate::egress::rtsp::rtp::{RTP_HEADER, TrackSender, interleaved_header};
use crate::egress::rtsp::sdp::{MediaPlan, describe};
use crate::gate::{Gate, Listener};
use crate::hub::{Hub, Protocol, Reading, Role, SessionSpec, StartAt};
use crate::ingest::rtsp_record::{Announcement, Recorder, parse_announce};
use crate::media::{Frame, Track};
use crate::protocol::rtsp::digest::{self, DigestResponse};
use crate::protocol::rtsp::transport::{self, Delivery};
use crate::protocol::rtsp::{Framer, Incoming};
use crate::server::conn::BoxedStream;
use crate::tls::TlsAcceptor;

/// Longest request (head and body) read.
pub const MAX_REQUEST: usize = 64 * 1024;
/// Sender reports per track, at most this often (RFC 3550 §6.2 suggests 5 s).
const REPORT_EVERY: Duration = Duration::from_secs(5);
/// Frames taken from the reader's queue per batch.
const BATCH: usize = 64;
/// Realm of the authentication challenges.
const REALM: &str = "mediarelay";
/// The methods answered (RFC 2326 §12.33 `Public`).
const PUBLIC: &str = "OPTIONS, DESCRIBE, ANNOUNCE, SETUP, PLAY, RECORD, PAUSE, TEARDOWN, GET_PARAMETER, SET_PARAMETER";

/// The server's two UDP ports for RTP and RTCP to RTSP readers (like
/// MediaMTX's 8000/8001), shared by every session: datagrams go to the
/// address of the session's RTSP connection only (RFC 2326 §14.3's
/// caution against sending media to third parties).
pub struct UdpPorts {
    rtp: UdpSocket,
    rtcp: UdpSocket,
    ports: (u16, u16),
    /// Datagrams not sent because the socket buffer was full.
    dropped: AtomicU64,
    /// When each playing UDP session's client last sent RTCP (receiver
    /// reports) to the RTCP port, by the client's RTCP address: a client
    /// that keeps its session alive that way only (RFC 2326 §12.37 allows
    /// it) is not timed out. Only addresses of set-up sessions are kept.
    seen: std::sync::Mutex<std::collections::HashMap<SocketAddr, std::time::Instant>>,
}

impl UdpPorts {
    pub fn new(rtp: UdpSocket, rtcp: UdpSocket) -> std::io::Result<UdpPorts> {
        for s in [&rtp, &rtcp] {
            // Room for a keyframe burst to many readers.
            let _ = socket2::SockRef::from(s).set_send_buffer_size(4 << 20);
        }
        let ports = (rtp.local_addr()?.port(), rtcp.local_addr()?.port());
        Ok(UdpPorts {
            rtp,
            rtcp,
            ports,
            dropped: AtomicU64::new(0),
            seen: Default::default(),
        })
    }

    pub fn local_addrs(&self) -> (Option<SocketAddr>, Option<SocketAddr>) {
        (self.rtp.local_addr().ok(), self.rtcp.local_addr().ok())
    }

    /// Sends one datagram made of `parts` (an RTP header of the reader's
    /// and the path's shared payload) with one `sendmsg`: the payload is
    /// not copied into a buffer first. A full socket buffer drops it.
    fn send(&self, rtcp: bool, parts: &[&[u8]], to: SocketAddr) {
        let socket = if rtcp { &self.rtcp } else { &self.rtp };
        let slices: [std::io::IoSlice<'_>; 2] = [
            std::io::IoSlice::new(parts.first().copied().unwrap_or_default()),
            std::io::IoSlice::new(parts.get(1).copied().unwrap_or_default()),
        ];
        let to = socket2::SockAddr::from(to);
        let sent = socket.try_io(tokio::io::Interest::WRITABLE, || {
            socket2::SockRef::from(socket).send_to_vectored(&slices, &to)
        });
        if sent.is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn lock_seen(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<SocketAddr, std::time::Instant>> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts noting RTCP from `addr` (a session's client RTCP address).
    fn watch(&self, addr: SocketAddr) {
        self.lock_seen().insert(addr, std::time::Instant::now());
    }

    fn unwatch(&self, addr: SocketAddr) {
        self.lock_seen().remove(&addr);
    }

    /// When `addr` last sent RTCP, if it is watched.
    fn last_seen(&self, addr: SocketAddr) -> Option<std::time::Instant> {
        self.lock_seen().get(&addr).copied()
    }

    /// Reads what clients send to the ports (receiver reports, NAT hole
    /// punching) so the receive buffers never fill, noting when watched
    /// clients sent RTCP.
    async fn drain(self: Arc<Self>, shutdown: CancellationToken) {
        let mut buf = vec![0u8; 2048];
        let mut buf2 = vec![0u8; 2048];
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = self.rtp.recv_from(&mut buf) => if r.is_err() { tokio::time::sleep(Duration::from_millis(50)).await },
                r = self.rtcp.recv_from(&mut buf2) => match r {
                    Ok((_, from)) => {
                        let from = crate::net::canonical_peer(from);
                        if let Some(at) = self.lock_seen().get_mut(&from) {
                            *at = std::time::Instant::now();
                        }
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                },
            }
        }
    }
}

/// Accepts RTSP connections (RTSPS with `tls`: each connection's TLS
/// handshake runs in its own task, and only RTP over TCP is offered, so
/// media stays inside TLS) until `shutdown`.
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    hub: Hub,
    gate: Arc<Gate>,
    udp: Option<Arc<UdpPorts>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    if let Some(udp) = &udp {
        tasks.spawn(Arc::clone(udp).drain(shutdown.clone()));
    }
    let name = if tls.is_some() { "rtsps" } else { "rtsp" };
    while let Some((socket, peer)) = crate::net::accept(&listener, name, &shutdown).await {
        let admitted = match gate.admit_connection(Listener::Rtsp, peer.ip()) {
            Ok(guard) => guard,
            Err(refusal) => {
                tracing::debug!(%peer, "RTSP connection refused: {refusal}");
                continue;
            }
        };
        let (hub, gate, shutdown) = (hub.clone(), Arc::clone(&gate), shutdown.clone());
        let (udp, tls) = (udp.clone(), tls.clone());
        let span = if tls.is_some() {
            tracing::info_span!("rtsps", %peer)
        } else {
            tracing::info_span!("rtsp", %peer)
        };
        tasks.spawn(
            async move {
                let _admitted = admitted;
                let local = socket
                    .local_addr()
                    .map(crate::net::canonical_peer)
                    .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
                let Some(stream) = super::conn::open(socket, tls.as_ref(), &shutdown).await else {
                    return;
                };
                let mut conn = Connection::new(stream, peer, local, hub, gate, udp);
                match conn.run(shutdown).await {
                    Ok(why) => tracing::debug!("RTSP connection closed: {why}"),
                    // Players often reset the connection right after TEARDOWN.
                    Err(RtspError::Io(e))
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                        ) =>
                    {
                        tracing::debug!(error = %e, "RTSP connection closed by the peer")
                    }
                    Err(e) => tracing::info!(error = %e, "RTSP connection ended"),
                }
                conn.stop_playing("connection closed");
                conn.unwatch_udp();
            }
            .instrument(span),
        );
    }
}

/// Why a connection ended abnormally.
#[derive(Debug, thiserror::Error)]
pub enum RtspError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Framing(#[from] crate::protocol::rtsp::FramerError),
    #[error("nothing received for {0:?}")]
    Idle(Duration),
    #[error("a write did not complete within {0:?}")]
    WriteTimeout(Duration),
}

/// One set-up track of a session.
struct TrackOut {
    /// Index of the track in the stream.
    track: usize,
    control: String,
    delivery: Delivery,
    sender: TrackSender,
    /// A sender report went out for this track.
    reported: bool,
}

/// What `DESCRIBE` (or the first `SETUP`) found on a path.
struct Described {
    path: String,
    tracks: Vec<Arc<Track>>,
    /// The SDP a `DESCRIBE` answers with, and how each track is sent.
    sdp: String,
    plans: Vec<MediaPlan>,
}

/// What an `ANNOUNCE` described.
struct Announced {
    path: String,
    query: String,
    medias: Announcement,
    /// Set-up media: index in `medias.taken`, interleaved RTP and RTCP
    /// channels. Sections the relay does not take are set up too (their
    /// packets are dropped), without an entry here.
    setups: Vec<(usize, u8, u8)>,
    /// Channels handed out so far.
    channels: u8,
    /// The session id its `SETUP` gave.
    session: Option<String>,
}

struct Session {
    id: String,
    described: Described,
    query: String,
    outs: Vec<TrackOut>,
    playing: Option<Reading>,
    next_report: Instant,
}

struct Connection {
    socket: BoxedStream,
    peer: SocketAddr,
    local: SocketAddr,
    hub: Hub,
    gate: Arc<Gate>,
    udp: Option<Arc<UdpPorts>>,
    framer: Framer,
    out: VecDeque<Bytes>,
    /// Where the per-reader packet heads (interleaved frame header and RTP
    /// header) are written; split off per frame, reused once written.
    heads: BytesMut,
    /// The nonce of this connection's digest challenges.
    nonce: String,
    /// The paths and actions this connection proved permission for.
    authorized: Vec<(String, Action)>,
    /// What an `ANNOUNCE` described: the path to publish and its media.
    announced: Option<Announced>,
    /// Publishing (`RECORD`): the hub's publisher behind the depacketizers.
    recording: Option<Recorder>,
    described: Option<Described>,
    session: Option<Session>,
    last_input: Instant,
    close_after_flush: bool,
}

/// A request's answer, before the headers every answer gets.
struct Answer {
    status: StatusCode,
    headers: Vec<(HeaderName, String)>,
    /// Header lines written as they are: `rtsp-types` keeps one value per
    /// name, and two `WWW-Authenticate` challenges must be two lines for
    /// clients to read them (ffmpeg reads one scheme per line).
    raw_lines: Vec<String>,
    body: Bytes,
}

impl Answer {
    fn status(status: StatusCode) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            raw_lines: Vec::new(),
            body: Bytes::new(),
        }
    }

    fn ok() -> Answer {
        Answer::status(StatusCode::Ok)
    }

    fn header(mut self, name: HeaderName, value: impl Into<String>) -> Answer {
        self.headers.push((name, value.into()));
        self
    }
}

/// The path and track control a request URL names:
/// `rtsp://h:8554/live/cam/trackID=1?x=y` → (`live/cam`, `trackID=1`, `x=y`).
pub fn split_url(url: &url::Url) -> (String, Option<String>, String) {
    let raw = url.path().trim_matches('/');
    let decoded = percent_encoding::percent_decode_str(raw)
        .decode_utf8_lossy()
        .into_owned();
    let (path, control) = match decoded.rsplit_once('/') {
        Some((p, last)) if last.starts_with("trackID=") => (p.to_string(), Some(last.to_string())),
        _ if decoded.starts_with("trackID=") => (String::new(), Some(decoded.clone())),
        _ => (decoded, None),
    };
    (path, control, url.query().unwrap_or("").to_string())
}

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

impl Connection {
    fn new(
        socket: BoxedStream,
        peer: SocketAddr,
        local: SocketAddr,
        hub: Hub,
        gate: Arc<Gate>,
        udp: Option<Arc<UdpPorts>>,
    ) -> Connection {
        Connection {
            socket,
            peer,
            local,
            hub,
            gate,
            udp,
            framer: Framer::new(MAX_REQUEST),
            out: VecDeque::new(),
            heads: BytesMut::new(),
            nonce: random_hex(16),
            authorized: Vec::new(),
            announced: None,
            recording: None,
            described: None,
            session: None,
            last_input: Instant::now(),
            close_after_flush: false,
        }
    }

    async fn run(&mut self, shutdown: CancellationToken) -> Result<&'static str, RtspError> {
        let mut buf = vec![0u8; 16 * 1024];
        let mut batch: Vec<Arc<Frame>> = Vec::with_capacity(BATCH);
        loop {
            let config = self.hub.config();
            let playing = self.session.as_ref().is_some_and(|s| s.playing.is_some());
            // A set-up session (playing, paused, recording) lives by the
            // session timeout it was told; before that, requests must come
            // within handshake_timeout of each other.
            let set_up = self.session.is_some()
                || self.announced.as_ref().is_some_and(|a| a.session.is_some());
            let idle = if set_up {
                config.rtsp_session_timeout
            } else {
                config.handshake_timeout.max(Duration::from_secs(1))
            };
            let next_report = self
                .session
                .as_ref()
                .map_or_else(|| Instant::now() + REPORT_EVERY, |s| s.next_report);
            let reader = self.session.as_mut().and_then(|s| s.playing.as_mut());
            let kicked = self.recording.as_ref().map(|r| r.publisher());
            let idle_at = self.last_input + idle;
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok("server shutting down"),
                read = self.socket.read(&mut buf) => {
                    let n = read?;
                    if n == 0 {
                        return Ok("peer closed");
                    }
                    self.last_input = Instant::now();
                    self.framer.push(buf.get(..n).unwrap_or_default());
                    loop {
                        let incoming = match self.framer.next_incoming() {
                            Ok(Some(i)) => i,
                            Ok(None) => break,
                            Err(e) => {
                                // The peer gets the status, then the connection ends.
                                let status = match e {
                                    crate::protocol::rtsp::FramerError::TooLarge { .. } => {
                                        StatusCode::RequestMessageBodyTooLarge
                                    }
                                    _ => StatusCode::BadRequest,
                                };
                                self.queue_answer(Answer::status(status), None);
                                let _ = self.flush(config.write_timeout).await;
                                return Err(e.into());
                            }
                        };
                        match incoming {
                            Incoming::Request(req) => self.on_request(req).await,
                            Incoming::Interleaved { channel, payload } => {
                                if let Some(r) = self.recording.as_mut() {
                                    r.on_interleaved(channel, payload);
                                }
                                // Otherwise RTCP receiver reports: the client is alive.
                            }
                            Incoming::Response(_) => {}
                        }
                        if self.close_after_flush {
                            break;
                        }
                    }
                }
                frame = async {
                    match reader {
                        Some(r) => r.reader.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    match frame {
                        Some(first) => {
                            batch.push(first);
                            if let Some(r) = self.session.as_mut().and_then(|s| s.playing.as_mut()) {
                                r.reader.drain_into(&mut batch, BATCH - 1);
                            }
                            for f in batch.drain(..) {
                                self.send_frame(&f);
                            }
                        }
                        None => {
                            self.stop_playing("stream ended");
                            return Ok("stream ended");
                        }
                    }
                }
                _ = tokio::time::sleep_until(next_report), if playing => self.send_reports(),
                _ = async {
                    match kicked {
                        Some(p) => p.cancelled().await,
                        None => std::future::pending().await,
                    }
                } => {
                    self.recording = None;
                    return Ok("publisher kicked or replaced");
                }
                _ = tokio::time::sleep_until(idle_at) => {
                    // A UDP client may keep its session alive with RTCP only.
                    match self.udp_rtcp_seen() {
                        Some(at) if at.elapsed() < idle => {
                            self.last_input = Instant::now() - at.elapsed();
                        }
                        _ => return Err(RtspError::Idle(idle)),
                    }
                }
            }
            self.flush(config.write_timeout).await?;
            if self.close_after_flush {
                return Ok("torn down");
            }
        }
    }

    async fn flush(&mut self, limit: Duration) -> Result<(), RtspError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let n = tokio::time::timeout(
            limit,
            crate::net::write_all_chunks(&mut self.socket, &mut self.out),
        )
        .await
        .map_err(|_| RtspError::WriteTimeout(limit))??;
        if let Some(r) = self.session.as_ref().and_then(|s| s.playing.as_ref()) {
            r.session.add_bytes_out(n);
        }
        Ok(())
    }

    /// The client RTCP addresses of this session's UDP tracks.
    fn udp_rtcp_addrs(&self) -> Vec<SocketAddr> {
        self.session
            .iter()
            .flat_map(|s| &s.outs)
            .filter_map(|o| match o.delivery {
                Delivery::Udp { rtcp, .. } => Some(SocketAddr::new(self.peer.ip(), rtcp)),
                Delivery::Interleaved { .. } => None,
            })
            .collect()
    }

    /// When this session's client last sent RTCP to the UDP port.
    fn udp_rtcp_seen(&self) -> Option<std::time::Instant> {
        let udp = self.udp.as_ref()?;
        self.udp_rtcp_addrs()
            .into_iter()
            .filter_map(|a| udp.last_seen(a))
            .max()
    }

    /// Stops noting the session's UDP RTCP (the session ends).
    fn unwatch_udp(&self) {
        if let Some(udp) = &self.udp {
            for a in self.udp_rtcp_addrs() {
                udp.unwatch(a);
            }
        }
    }

    fn stop_playing(&mut self, why: &str) {
        if let Some(s) = self.session.as_mut()
            && let Some(r) = s.playing.take()
        {
            tracing::info!(path = %s.described.path, dropped = r.reader.dropped(), "playing ended: {why}");
        }
    }

    /// Answers one request; the answer is queued for the next flush.
    async fn on_request(&mut self, req: Request<Bytes>) {
        let cseq = req.header(&headers::CSEQ).map(|v| v.as_str().to_string());
        let method = req.method().clone();
        let answer = match method {
            Method::Options => Answer::ok().header(headers::PUBLIC, PUBLIC),
            Method::Describe => self.describe(&req).await,
            Method::Setup => self.setup(&req).await,
            Method::Play => self.play(&req).await,
            Method::Pause => self.pause(&req),
            Method::Teardown => {
                self.stop_playing("TEARDOWN");
                self.unwatch_udp();
                self.session = None;
                if self.recording.take().is_some() {
                    tracing::info!("publishing ended: TEARDOWN");
                }
                self.close_after_flush = true;
                Answer::ok()
            }
            Method::GetParameter | Method::SetParameter => Answer::ok(),
            Method::Announce => self.announce(&req).await,
            Method::Record => self.record(&req).await,
            _ => Answer::status(StatusCode::NotImplemented),
        };
        if answer.status != StatusCode::Ok {
            tracing::info!(method = ?method, uri = ?req.request_uri().map(|u| u.as_str()), status = u16::from(answer.status), "RTSP request refused");
        }
        self.queue_answer(answer, cseq);
    }

    fn queue_answer(&mut self, answer: Answer, cseq: Option<String>) {
        let mut builder = Response::builder(Version::V1_0, answer.status).header(
            headers::SERVER,
            concat!("mediarelay/", env!("CARGO_PKG_VERSION")),
        );
        if let Some(cseq) = cseq {
            builder = builder.header(headers::CSEQ, cseq);
        }
        let has_session = answer.headers.iter().any(|(n, _)| *n == headers::SESSION);
        if !has_session && let Some(s) = &self.session {
            builder = builder.header(headers::SESSION, s.id.clone());
        }
        let mut response = builder.build(answer.body);
        for (name, value) in answer.headers {
            response.append_header(name, value);
        }
        let mut bytes = Vec::with_capacity(256 + response.body().len());
        if response.write(&mut bytes).is_ok() {
            if !answer.raw_lines.is_empty()
                && let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n")
            {
                let lines: String = answer
                    .raw_lines
                    .iter()
                    .map(|l| format!("\r\n{l}"))
                    .collect();
                bytes.splice(end..end, lines.into_bytes());
            }
            self.out.push_back(Bytes::from(bytes));
        }
    }

    /// Checks `read` permission on `path` (once per connection and path).
    async fn authorize(
        &mut self,
        req: &Request<Bytes>,
        action: Action,
        path: &str,
        query: &str,
    ) -> Result<(), Answer> {
        if self
            .authorized
            .iter()
            .any(|(p, a)| p == path && *a == action)
        {
            return Ok(());
        }
        let config = self.hub.config();
        let mut credentials = Credentials::from_query(query);
        if let Some(value) = req.header(&headers::AUTHORIZATION) {
            let value = value.as_str().trim();
            let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
            if scheme.eq_ignore_ascii_case("digest") {
                credentials = match DigestResponse::parse(rest) {
                    Ok(d) => self.digest_credentials(&d, req.method(), &config),
                    Err(e) => {
                        tracing::info!("unreadable digest answer: {e}");
                        Credentials::default()
                    }
                };
            } else {
                let mut map = http::HeaderMap::new();
                if let Ok(v) = http::HeaderValue::from_str(value) {
                    map.insert(http::header::AUTHORIZATION, v);
                }
                match Credentials::from_headers(&map) {
                    Ok(c) if c.user.is_some() || c.token.is_some() => credentials = c,
                    Ok(_) => {}
                    Err(e) => tracing::info!("unreadable Authorization header: {e}"),
                }
            }
        }
        let result = self
            .gate
            .authorize_path(
                &config,
                action,
                path,
                "rtsp",
                &credentials,
                Some(self.peer.ip()),
                query,
                None,
            )
            .await;
        match result {
            Ok(_) => {
                self.authorized.push((path.to_string(), action));
                Ok(())
            }
            Err(AuthError::Unauthenticated(why)) => {
                tracing::info!(path, %action, "RTSP request refused: {why}");
                let mut answer = Answer::status(StatusCode::Unauthorized);
                answer.raw_lines = vec![
                    format!(
                        "WWW-Authenticate: {}",
                        digest::challenge(REALM, &self.nonce)
                    ),
                    format!("WWW-Authenticate: Basic realm=\"{REALM}\""),
                ];
                Err(answer)
            }
            Err(AuthError::Forbidden(why)) => {
                tracing::info!(path, %action, "RTSP request forbidden: {why}");
                Err(Answer::status(StatusCode::Forbidden))
            }
            Err(AuthError::Unavailable(why)) => {
                tracing::warn!(path, "RTSP auth unavailable: {why}");
                Err(Answer::status(StatusCode::ServiceUnavailable))
            }
        }
    }

    /// The credentials a digest answer proves: the user and its `plain:`
    /// password when the answer is right for this connection's nonce.
    fn digest_credentials(
        &self,
        d: &DigestResponse,
        method: &Method,
        config: &crate::config::Config,
    ) -> Credentials {
        let method = <&str>::from(method);
        let plain = config
            .users
            .iter()
            .find(|u| u.user == d.username)
            .and_then(|u| u.pass.as_ref())
            .and_then(|p| match PassKind::parse(p.expose()) {
                Ok(PassKind::Plain(secret)) => Some(secret.to_string()),
                _ => None,
            });
        match plain {
            Some(pass) if d.nonce == self.nonce && d.verify(method, &pass) => Credentials {
                user: Some(d.username.clone()),
                pass: Some(pass),
                token: None,
            },
            Some(_) => Credentials {
                user: Some(d.username.clone()),
                ..Default::default()
            },
            None => {
                tracing::info!(user = %d.username, "digest auth needs a plain: password; use Basic");
                Credentials {
                    user: Some(d.username.clone()),
                    ..Default::default()
                }
            }
        }
    }

    /// Finds the tracks of `path` (waiting for an on-demand source as HLS
    /// does) after checking permission.
    async fn describe_path(
        &mut self,
        req: &Request<Bytes>,
        path: &str,
        query: &str,
    ) -> Result<Described, Answer> {
        self.authorize(req, Action::Read, path, query).await?;
        let reader = match self.hub.read_internal(path, StartAt::LatestKeyframe).await {
            Ok(r) => r,
            Err(e) => {
                tracing::info!(path, "DESCRIBE: {e}");
                return Err(Answer::status(match e {
                    crate::hub::ReadError::InvalidPath { .. } => StatusCode::BadRequest,
                    crate::hub::ReadError::NotReady { .. } => StatusCode::ServiceUnavailable,
                    _ => StatusCode::NotFound,
                }));
            }
        };
        let tracks = reader.stream().tracks();
        drop(reader);
        let (sdp, plans) = describe(&tracks, self.local.ip(), u64::from(rand::random::<u32>()));
        if plans.is_empty() {
            return Err(Answer::status(StatusCode::UnsupportedMediaType));
        }
        Ok(Described {
            path: path.to_string(),
            tracks,
            sdp,
            plans,
        })
    }

    fn base_url(url: &url::Url, path: &str) -> String {
        let host = url.host_str().unwrap_or("127.0.0.1");
        match url.port() {
            Some(port) => format!("rtsp://{host}:{port}/{path}/"),
            None => format!("rtsp://{host}/{path}/"),
        }
    }

    async fn describe(&mut self, req: &Request<Bytes>) -> Answer {
        let Some(url) = req.request_uri() else {
            return Answer::status(StatusCode::BadRequest);
        };
        let (path, _, query) = split_url(url);
        let described = match self.describe_path(req, &path, &query).await {
            Ok(d) => d,
            Err(answer) => return answer,
        };
        let sdp = described.sdp.clone();
        let base = Self::base_url(url, &path);
        self.described = Some(described);
        Answer {
            status: StatusCode::Ok,
            headers: vec![
                (headers::CONTENT_TYPE, "application/sdp".into()),
                (headers::CONTENT_BASE, base),
            ],
            raw_lines: Vec::new(),
            body: Bytes::from(sdp),
        }
    }

    /// The session a request names must be this connection's.
    fn check_session(&self, req: &Request<Bytes>) -> Result<(), Answer> {
        let named = req.header(&headers::SESSION).map(|v| {
            v.as_str()
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        });
        match (&self.session, named) {
            (Some(s), Some(n)) if s.id != n => Err(Answer::status(StatusCode::SessionNotFound)),
            (None, Some(_)) => Err(Answer::status(StatusCode::SessionNotFound)),
            _ => Ok(()),
        }
    }

    async fn setup(&mut self, req: &Request<Bytes>) -> Answer {
        let Some(url) = req.request_uri() else {
            return Answer::status(StatusCode::BadRequest);
        };
        if self.announced.is_some() {
            return self.setup_record(req, url.clone());
        }
        if let Err(a) = self.check_session(req) {
            return a;
        }
        let (path, control, query) = split_url(url);
        if let Some(s) = &self.session {
            if s.described.path != path {
                return Answer::status(StatusCode::AggregateOperationNotAllowed);
            }
            if s.playing.is_some() {
                return Answer::status(StatusCode::MethodNotValidInThisState);
            }
        }
        if self.session.is_none() && self.described.as_ref().is_none_or(|d| d.path != path) {
            match self.describe_path(req, &path, &query).await {
                Ok(d) => self.described = Some(d),
                Err(a) => return a,
            }
        }
        if let Err(a) = self.authorize(req, Action::Read, &path, &query).await {
            return a;
        }
        let described = match &self.session {
            Some(s) => &s.described,
            None => match &self.described {
                Some(d) => d,
                None => return Answer::status(StatusCode::MethodNotValidInThisState),
            },
        };
        let plan = match &control {
            Some(c) => described.plans.iter().find(|p| &p.control == c),
            None if described.plans.len() == 1 => described.plans.first(),
            None => None,
        };
        let Some(plan) = plan.cloned() else {
            tracing::info!(path, ?control, "SETUP of a track the path does not have");
            return Answer::status(StatusCode::NotFound);
        };
        let timescale = described
            .tracks
            .get(plan.track)
            .map_or(plan.clock_rate, |t| t.timescale());
        let used = self.session.as_ref().map_or(0, |s| s.outs.len());
        let free_channel = u8::try_from(used * 2).unwrap_or(254);
        let chosen = match transport::choose(req.typed_header(), self.udp.is_some(), free_channel) {
            Ok(c) => c,
            Err(e) => {
                tracing::info!(path, "SETUP: {e}");
                return Answer::status(StatusCode::UnsupportedTransport);
            }
        };
        if chosen.record {
            return Answer::status(StatusCode::MethodNotValidInThisState);
        }
        let sender = TrackSender::new(
            rand::random(),
            plan.payload_type,
            plan.clock_rate,
            timescale,
            rand::random(),
            rand::random(),
        );
        let answer_transport =
            transport::answer(&chosen, self.udp.as_ref().map(|u| u.ports), sender.ssrc);
        if self.session.is_none() {
            let Some(described) = self.described.take() else {
                return Answer::status(StatusCode::MethodNotValidInThisState);
            };
            self.session = Some(Session {
                id: random_hex(8),
                described,
                query,
                outs: Vec::new(),
                playing: None,
                next_report: Instant::now() + REPORT_EVERY,
            });
        }
        let Some(session) = self.session.as_mut() else {
            return Answer::status(StatusCode::InternalServerError);
        };
        // A track set up again replaces its transport; the UDP RTCP
        // addresses watched stay those of the session's current tracks.
        if let Some(udp) = &self.udp {
            for old in session.outs.iter().filter(|o| o.track == plan.track) {
                if let Delivery::Udp { rtcp, .. } = old.delivery {
                    udp.unwatch(SocketAddr::new(self.peer.ip(), rtcp));
                }
            }
            if let Delivery::Udp { rtcp, .. } = chosen.delivery {
                udp.watch(SocketAddr::new(self.peer.ip(), rtcp));
            }
        }
        session.outs.retain(|o| o.track != plan.track);
        session.outs.push(TrackOut {
            track: plan.track,
            control: plan.control.clone(),
            delivery: chosen.delivery,
            sender,
            reported: false,
        });
        setup_answer(
            &answer_transport,
            &session.id,
            self.hub.config().rtsp_session_timeout,
        )
    }

    /// `ANNOUNCE` (RFC 2326 §10.3): a publisher describes what it will
    /// send. Permission to publish is checked first, then `on_publish`.
    async fn announce(&mut self, req: &Request<Bytes>) -> Answer {
        let Some(url) = req.request_uri() else {
            return Answer::status(StatusCode::BadRequest);
        };
        if self.session.is_some() || self.recording.is_some() {
            return Answer::status(StatusCode::MethodNotValidInThisState);
        }
        let (path, _, query) = split_url(url);
        if let Err(a) = self.authorize(req, Action::Publish, &path, &query).await {
            return a;
        }
        if let Err(e) = Box::pin(
            self.gate
                .allow_publish(&path, Protocol::Rtsp, Some(self.peer)),
        )
        .await
        {
            tracing::info!(path, "publish refused by on_publish: {e}");
            return Answer::status(StatusCode::Forbidden);
        }
        let medias = match parse_announce(req.body()) {
            Ok(m) => m,
            Err(e) => {
                tracing::info!(path, "ANNOUNCE: {e}");
                return Answer::status(StatusCode::UnsupportedMediaType);
            }
        };
        tracing::info!(path, media = ?medias.taken.iter().map(|m| m.encoding.as_str()).collect::<Vec<_>>(), "publisher announced");
        self.announced = Some(Announced {
            path,
            query,
            medias,
            setups: Vec::new(),
            channels: 0,
            session: None,
        });
        Answer::ok()
    }

    /// `SETUP` of an announced stream: its media are received interleaved
    /// in this connection (UDP is not taken for publishing).
    fn setup_record(&mut self, req: &Request<Bytes>, url: url::Url) -> Answer {
        let Some(announced) = self.announced.as_mut() else {
            return Answer::status(StatusCode::MethodNotValidInThisState);
        };
        if self.recording.is_some() {
            return Answer::status(StatusCode::MethodNotValidInThisState);
        }
        if !names_session(req, announced.session.as_deref()) {
            return Answer::status(StatusCode::SessionNotFound);
        }
        // The control is relative to the announced path, or absolute.
        let full = url.as_str().trim_end_matches('/');
        let relative = percent_encoding::percent_decode_str(url.path().trim_matches('/'))
            .decode_utf8_lossy()
            .into_owned();
        let relative = relative
            .strip_prefix(announced.path.as_str())
            .map(|r| r.trim_start_matches('/').to_string())
            .unwrap_or_default();
        let names = |control: &str| {
            control == relative
                || control.trim_end_matches('/') == full
                || (control.is_empty() && announced.medias.taken.len() == 1)
        };
        let media = announced
            .medias
            .taken
            .iter()
            .position(|m| names(&m.control));
        if media.is_none() && !announced.medias.ignored.iter().any(|c| names(c)) {
            tracing::info!(path = %announced.path, control = %relative, "SETUP of a stream that was not announced");
            return Answer::status(StatusCode::NotFound);
        }
        let free_channel = announced.channels;
        let chosen = match transport::choose(req.typed_header(), false, free_channel) {
            Ok(c) => c,
            Err(e) => {
                tracing::info!(path = %announced.path, "SETUP for publishing: {e} (RTP over TCP is taken)");
                return Answer::status(StatusCode::UnsupportedTransport);
            }
        };
        let Delivery::Interleaved { rtp, rtcp } = chosen.delivery else {
            return Answer::status(StatusCode::UnsupportedTransport);
        };
        announced.channels = announced.channels.max(rtp.max(rtcp).saturating_add(1));
        if let Some(media) = media {
            announced.setups.retain(|(m, _, _)| *m != media);
            announced.setups.push((media, rtp, rtcp));
        }
        let id = announced
            .session
            .get_or_insert_with(|| random_hex(8))
            .clone();
        setup_answer(
            &transport::answer(&chosen, None, rand::random()),
            &id,
            self.hub.config().rtsp_session_timeout,
        )
    }

    /// `RECORD` (RFC 2326 §10.11): the path gets this publisher.
    async fn record(&mut self, req: &Request<Bytes>) -> Answer {
        let Some(announced) = self.announced.as_ref() else {
            return Answer::status(StatusCode::MethodNotValidInThisState);
        };
        if self.recording.is_some() {
            return Answer::ok();
        }
        if announced.setups.is_empty() {
            return Answer::status(StatusCode::MethodNotValidInThisState);
        }
        if !names_session(req, announced.session.as_deref()) {
            return Answer::status(StatusCode::SessionNotFound);
        }
        let spec = SessionSpec {
            protocol: Protocol::Rtsp,
            role: Role::Publisher,
            path: announced.path.clone(),
            remote: Some(self.peer),
            query: announced.query.clone(),
            token: None,
        };
        let publisher = match self.hub.publish(spec) {
            Ok(p) => p,
            Err(e) => {
                tracing::info!(path = %announced.path, error = %e, "publish refused");
                return Answer::status(match e {
                    crate::hub::PublishError::InvalidPath { .. } => StatusCode::BadRequest,
                    crate::hub::PublishError::TooManyPaths { .. } => StatusCode::ServiceUnavailable,
                    _ => StatusCode::Forbidden,
                });
            }
        };
        let max_frame = self.hub.config().limits.max_frame_bytes;
        match Recorder::new(
            &announced.medias.taken,
            &announced.setups,
            publisher,
            max_frame,
        ) {
            Ok(r) => {
                tracing::info!(path = %announced.path, session = r.publisher().session().id, "publishing started");
                self.recording = Some(r);
                let mut answer = Answer::ok();
                if let Some(id) = &announced.session {
                    answer = answer.header(headers::SESSION, id.clone());
                }
                answer
            }
            Err(e) => {
                tracing::info!(path = %announced.path, "RECORD: {e}");
                Answer::status(StatusCode::InternalServerError)
            }
        }
    }

    async fn play(&mut self, req: &Request<Bytes>) -> Answer {
        if let Err(a) = self.check_session(req) {
            return a;
        }
        let Some(session) = self.session.as_ref() else {
            return Answer::status(StatusCode::SessionNotFound);
        };
        if session.outs.is_empty() {
            return Answer::status(StatusCode::MethodNotValidInThisState);
        }
        let base = req
            .request_uri()
            .map(|u| Self::base_url(u, &session.described.path))
            .unwrap_or_default();
        let rtp_info = session
            .outs
            .iter()
            .map(|o| format!("url={base}{};seq={}", o.control, o.sender.next_seq()))
            .collect::<Vec<_>>()
            .join(",");
        if session.playing.is_none() {
            let spec = SessionSpec {
                protocol: Protocol::Rtsp,
                role: Role::Reader,
                path: session.described.path.clone(),
                remote: Some(self.peer),
                query: session.query.clone(),
                token: None,
            };
            let reading = match Box::pin(self.hub.read(spec, StartAt::LatestKeyframe)).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::info!("PLAY: {e}");
                    return Answer::status(match e {
                        crate::hub::ReadError::TooManyReaders { .. }
                        | crate::hub::ReadError::NotReady { .. } => StatusCode::ServiceUnavailable,
                        _ => StatusCode::NotFound,
                    });
                }
            };
            // The layout the client set up must still be the stream's.
            let now = reading.reader.stream().tracks();
            let same = session.outs.iter().all(|o| {
                match (now.get(o.track), session.described.tracks.get(o.track)) {
                    (Some(a), Some(b)) => a.params.name() == b.params.name(),
                    _ => false,
                }
            });
            if !same {
                return Answer::status(StatusCode::ServiceUnavailable);
            }
            tracing::info!(path = %session.described.path, session = reading.session.id, tracks = session.outs.len(), "playing started");
            if let Some(s) = self.session.as_mut() {
                s.playing = Some(reading);
                s.next_report = Instant::now() + REPORT_EVERY;
            }
        }
        Answer::ok()
            .header(headers::RANGE, "npt=0.000-")
            .header(headers::RTP_INFO, rtp_info)
    }

    fn pause(&mut self, req: &Request<Bytes>) -> Answer {
        if let Err(a) = self.check_session(req) {
            return a;
        }
        if self.session.is_none() {
            return Answer::status(StatusCode::SessionNotFound);
        }
        self.stop_playing("PAUSE");
        Answer::ok()
    }

    /// Queues (TCP) or sends (UDP) the RTP packets of one frame to every
    /// set-up track it belongs to.
    fn send_frame(&mut self, frame: &Arc<Frame>) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let index = frame.track.index;
        let Some(out) = session.outs.iter_mut().find(|o| o.track == index) else {
            return;
        };
        let packets = packetize::of_frame(frame);
        if packets.is_empty() {
            return;
        }
        let time = out.sender.frame(frame.pts);
        let anchor = session
            .playing
            .as_ref()
            .and_then(|r| r.reader.stream().anchor());
        if !out.reported {
            // A first sender report before the first packet: clients put
            // the tracks on one clock from the start.
            out.reported = true;
            if let Some(report) =
                anchor.and_then(|a| out.sender.sender_report(unix_nanos(a), REALM))
            {
                send_rtcp(
                    &mut self.out,
                    self.udp.as_deref(),
                    self.peer,
                    out.delivery,
                    &report,
                );
            }
        }
        match out.delivery {
            Delivery::Interleaved { rtp, .. } => {
                // The heads go in the connection's own buffer: once the
                // socket took the last frame's, `reserve` gets the same
                // allocation back (no allocation per frame in steady state).
                let heads = &mut self.heads;
                heads.reserve(packets.len() * (4 + RTP_HEADER));
                for p in packets.iter() {
                    let ts = time.wrapping_add(p.time_offset);
                    heads.put_slice(&interleaved_header(rtp, RTP_HEADER + p.bytes.len()));
                    heads.put_slice(&out.sender.header(p.marker, ts, p.bytes.len()));
                }
                let mut heads = heads.split().freeze();
                for p in packets.iter() {
                    self.out.push_back(heads.split_to(4 + RTP_HEADER));
                    self.out.push_back(p.bytes.clone());
                }
            }
            Delivery::Udp { rtp, .. } => {
                let Some(udp) = self.udp.as_deref() else {
                    return;
                };
                let to = SocketAddr::new(self.peer.ip(), rtp);
                let mut bytes = 0u64;
                for p in packets.iter() {
                    let ts = time.wrapping_add(p.time_offset);
                    let head = out.sender.header(p.marker, ts, p.bytes.len());
                    udp.send(false, &[&head, &p.bytes], to);
                    bytes += (head.len() + p.bytes.len()) as u64;
                }
                if let Some(r) = &session.playing {
                    r.session.add_bytes_out(bytes);
                }
            }
        }
    }

    fn send_reports(&mut self) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        session.next_report = Instant::now() + REPORT_EVERY;
        let Some(anchor) = session
            .playing
            .as_ref()
            .and_then(|r| r.reader.stream().anchor())
        else {
            return;
        };
        for out in &session.outs {
            if let Some(report) = out.sender.sender_report(unix_nanos(anchor), REALM) {
                send_rtcp(
                    &mut self.out,
                    self.udp.as_deref(),
                    self.peer,
                    out.delivery,
                    &report,
                );
            }
        }
    }
}

/// Whether a request's `Session` header (if any) names `session` (if the
/// connection has one yet).
fn names_session(req: &Request<Bytes>, session: Option<&str>) -> bool {
    match (session, req.header(&headers::SESSION)) {
        (Some(id), Some(named)) => named.as_str().split(';').next().map(str::trim) == Some(id),
        _ => true,
    }
}

/// The answer to a `SETUP`: the chosen transport and the session with its
/// timeout (RFC 2326 §12.37).
fn setup_answer(
    transport: &rtsp_types::headers::transport::Transports,
    session: &str,
    timeout: Duration,
) -> Answer {
    // rtsp-types writes typed headers into its own header map only.
    let value = Response::builder(Version::V1_0, StatusCode::Ok)
        .typed_header(transport)
        .empty()
        .header(&headers::TRANSPORT)
        .map(|v| v.as_str().to_string())
        .unwrap_or_default();
    Answer::ok().header(headers::TRANSPORT, value).header(
        headers::SESSION,
        format!("{session};timeout={}", timeout.as_secs().max(1)),
    )
}

fn send_rtcp(
    queue: &mut VecDeque<Bytes>,
    udp: Option<&UdpPorts>,
    peer: SocketAddr,
    delivery: Delivery,
    report: &[u8],
) {
    match delivery {
        Delivery::Interleaved { rtcp, .. } => {
            let mut b = BytesMut::with_capacity(4 + report.len());
            b.put_slice(&interleaved_header(rtcp, report.len()));
            b.put_slice(report);
            queue.push_back(b.freeze());
        }
        Delivery::Udp { rtcp, .. } => {
            if let Some(udp) = udp {
                udp.send(true, &[report], SocketAddr::new(peer.ip(), rtcp));
            }
        }
    }
}

fn unix_nanos(t: SystemTime) -> i128 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RTCP a watched UDP client sends to the RTCP port is noted (what
    /// keeps its session alive); an unwatched sender is not kept.
    #[tokio::test]
    async fn rtcp_from_a_watched_udp_client_is_noted() {
        let bind = || std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let (rtp, rtcp) = (bind(), bind());
        for s in [&rtp, &rtcp] {
            s.set_nonblocking(true).unwrap();
        }
        let ports = Arc::new(
            UdpPorts::new(
                UdpSocket::from_std(rtp).unwrap(),
                UdpSocket::from_std(rtcp).unwrap(),
            )
            .unwrap(),
        );
        let stop = CancellationToken::new();
        tokio::spawn(Arc::clone(&ports).drain(stop.clone()));
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let stranger = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let me = client.local_addr().unwrap();
        ports.watch(me);
        let watched_at = ports.last_seen(me).unwrap();
        let to = ports.local_addrs().1.unwrap();
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            client
                .send_to(&[0x81, 201, 0, 1, 0, 0, 0, 1], to)
                .await
                .unwrap();
            stranger
                .send_to(&[0x81, 201, 0, 1, 0, 0, 0, 2], to)
                .await
                .unwrap();
            if ports.last_seen(me).unwrap() > watched_at {
                break;
            }
        }
        assert!(ports.last_seen(me).unwrap() > watched_at);
        assert!(ports.last_seen(stranger.local_addr().unwrap()).is_none());
        ports.unwatch(me);
        assert!(ports.last_seen(me).is_none());
        stop.cancel();
    }

    #[test]
    fn urls_split_into_path_control_and_query() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        assert_eq!(
            split_url(&u("rtsp://h:8554/live/cam")),
            ("live/cam".into(), None, "".into())
        );
        assert_eq!(
            split_url(&u("rtsp://h:8554/live/cam/trackID=1?user=a")),
            ("live/cam".into(), Some("trackID=1".into()), "user=a".into())
        );
        assert_eq!(
            split_url(&u("rtsp://h/cam/")),
            ("cam".into(), None, "".into())
        );
        assert_eq!(
            split_url(&u("rtsp://h/my%20cam/trackID=0")),
            ("my cam".into(), Some("trackID=0".into()), "".into())
        );
    }
}
