//! The plain HTTP listener's connections: a lean HTTP/1.1 path for the
//! requests HLS viewers make, and hyper for everything else.
//!
//! A request head that arrives in one read (1 KiB) is parsed where it was
//! read, in a per-thread buffer; one that does not is gathered in the
//! connection's buffer (growing to at most [`MAX_HEAD`]) while it arrives. Between requests a connection
//! holds no buffer, so an idle keep-alive connection costs its task and its
//! socket. A `GET` or `HEAD` without a body ([`protocol::http1`]) is served
//! here: a [`Shortcut`] may take it (HLS files: [`super::hls_shortcut`]),
//! else the same axum `Router` answers it as a tower service (the same
//! middleware, auth and handlers as through hyper); the response head and
//! the body's shared `Bytes` go out in vectored writes, with nothing copied
//! in between, or the head and then a file's pages (`sendfile`). An answer
//! the shortcut gives at once with a file (a ready part or segment: most
//! requests) is sent while the request's read is handled, head and file in
//! one try, with no future (and, for a part, no allocation); only a wait
//! is boxed.
//! Any other request, and HTTP/2 with prior knowledge, hands the connection to hyper-util's server (HTTP/1.1 and HTTP/2, as
//! `axum::serve` does), the bytes already read replayed first
//! ([`Rewind`]); from then on hyper owns it. A connection may be served
//! here for its first requests and handed over at a later one.
//!
//! Time limits: the whole head of a request must arrive within the header
//! timeout (`handshake_timeout`), counted from the connection's start for the
//! first request and from a request's first byte for the next ones (an idle
//! keep-alive connection is kept, as hyper keeps it); a response write that
//! does not complete within `write_timeout` closes the connection. A head
//! larger than [`MAX_HEAD`] gets `431` (RFC 6585 §5).
//!
//! [`protocol::http1`]: crate::protocol::http1

mod rewind;

pub use rewind::Rewind;

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use futures_util::FutureExt;
use http::{HeaderName, HeaderValue, Method};
use http_body::Body as _;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::egress::hls::HlsAnswer;
use crate::net::sendfile::{self, FileRange};
use crate::protocol::http1::request::{
    could_be_request, head_end_in, header_slots, line_end_in, parse_raw,
};
use crate::protocol::http1::response::{LAST_CHUNK, RequestInfo, chunk_size_line};
use crate::protocol::http1::{
    Framing, HandlerFraming, RawParsed, RawRequest, ResponsePlan, SimpleRequest, date, encode_head,
    encode_head_into, plan, plan_response,
};

/// The largest request head read; a larger one is answered 431.
pub const MAX_HEAD: usize = 16 * 1024;

/// The read buffer's first size: a player's request head fits.
const INITIAL_BUFFER: usize = 1024;

/// Body chunks written with one vectored write at most.
const WRITE_BATCH: usize = 64;

const TOO_LARGE: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\n\
content-length: 0\r\nconnection: close\r\n\r\n";

/// The time limits of a connection, read from the configuration when it is
/// accepted.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// A request head must arrive within this (slowloris).
    pub header: Duration,
    /// A response write must complete within this.
    pub write: Duration,
}

/// Requests a connection answers without the router.
pub trait Shortcut: Send + Sync + 'static {
    /// The answer to `request` from `peer`, or `None` when the router must
    /// answer it. Decided before the request's head leaves the read buffer.
    fn take(&self, request: &RawRequest<'_, '_>, peer: SocketAddr) -> Option<ShortcutAnswer>;

    /// Headers every answer of the shortcut carries after its own (what the
    /// router's layers add on the router's path).
    fn common_headers(&self) -> &[(HeaderName, HeaderValue)];
}

/// What a [`Shortcut`] answers a request with.
pub enum ShortcutAnswer {
    /// The answer, given at once.
    Now(HlsAnswer),
    /// The answer once it is ready (a blocking playlist reload, a part
    /// still being written, a stream to start).
    Later(Pin<Box<dyn Future<Output = HlsAnswer> + Send>>),
}

/// A request a [`Shortcut`] took.
struct Taken {
    answer: ShortcutAnswer,
    info: RequestInfo,
}

/// Accepts connections on `listener` and serves `router` on them until
/// `shutdown`; then stops accepting, lets every connection finish the
/// request it is serving (answered with `Connection: close`), closes idle
/// ones and waits for them all. `timeouts` is asked once per connection.
pub async fn serve<F>(
    listener: TcpListener,
    router: Router,
    shortcut: Option<Arc<dyn Shortcut>>,
    timeouts: F,
    shutdown: CancellationToken,
) where
    F: Fn() -> Timeouts + Send + 'static,
{
    let tasks = TaskTracker::new();
    while let Some((tcp, peer)) = crate::net::accept(&listener, "http", &shutdown).await {
        tasks.spawn(connection(
            tcp,
            peer,
            router.clone(),
            shortcut.clone(),
            timeouts(),
            shutdown.clone(),
        ));
    }
    drop(listener);
    tasks.close();
    tasks.wait().await;
}

/// What waiting for a request head ended with.
enum Head {
    /// End of stream, an error, the header timeout, or shutdown while idle.
    Closed,
    /// More than [`MAX_HEAD`] bytes without a complete head.
    TooLarge,
    /// The request needs hyper; the buffer holds every byte read.
    Handoff,
    Simple(Box<SimpleRequest>),
    /// Its answer is boxed already.
    Taken(Taken),
}

/// One connection, request after request. The request's work is boxed, so
/// the task of an idle connection stays small.
async fn connection(
    mut tcp: TcpStream,
    peer: SocketAddr,
    router: Router,
    shortcut: Option<Arc<dyn Shortcut>>,
    timeouts: Timeouts,
    shutdown: CancellationToken,
) {
    let mut buf = Vec::new();
    let mut first = true;
    // One shutdown wait for the connection's life, not one per request: it
    // stays registered with the token between requests.
    let stop = shutdown.clone().cancelled_owned();
    tokio::pin!(stop);
    loop {
        // The head is taken apart without waiting (no await below holds
        // it): the connection's future does not carry a request's size.
        let next = match read_head(
            &mut tcp,
            &mut buf,
            first,
            timeouts.header,
            stop.as_mut(),
            shortcut.as_deref().map(|s| (s, peer)),
        )
        .await
        {
            Head::Closed => return,
            Head::TooLarge => Next::Refuse,
            Head::Handoff => Next::Handoff,
            Head::Simple(request) => Next::Answer(Answering::Waits(Box::pin(respond(
                &mut tcp,
                request,
                &router,
                peer,
                timeouts.write,
                &shutdown,
            )))),
            Head::Taken(taken) => {
                let common = shortcut.as_deref().map_or(&[][..], |s| s.common_headers());
                Next::Answer(answer_taken(
                    &mut tcp,
                    taken,
                    common,
                    peer,
                    timeouts.write,
                    &shutdown,
                ))
            }
        };
        first = false;
        // Matched as a moved value (a temporary of this statement): `next`
        // borrows the socket, and must not be dropped after it is handed on.
        let keep_alive = match std::convert::identity(next) {
            Next::Answer(answering) => answering.finish().await,
            end => {
                // Ends the connection's borrow before it is handed on.
                let refused = matches!(end, Next::Refuse);
                drop(end);
                if refused {
                    Box::pin(refuse(tcp, TOO_LARGE)).await;
                } else {
                    Box::pin(hand_off(tcp, buf, peer, router, shutdown, timeouts.header)).await;
                }
                return;
            }
        };
        if !keep_alive {
            let _ = tcp.shutdown().await;
            return;
        }
        if buf.is_empty() {
            // Nothing pipelined: the idle connection holds no buffer.
            buf = Vec::new();
        }
    }
}

/// Reads until `buf` starts with a complete head (or the verdict that hyper
/// must take over), offered to `shortcut` first. The deadline starts now
/// for a connection's first request, else with the request's first byte.
/// `stop` ends a connection that waits with nothing read (shutdown).
async fn read_head(
    tcp: &mut TcpStream,
    buf: &mut Vec<u8>,
    first: bool,
    limit: Duration,
    mut stop: Pin<&mut WaitForCancellationFutureOwned>,
    shortcut: Option<(&dyn Shortcut, SocketAddr)>,
) -> Head {
    let mut deadline = first.then(|| Instant::now() + limit);
    let mut scanned = 0;
    let mut line_seen = false;
    loop {
        if !buf.is_empty() {
            deadline.get_or_insert_with(|| Instant::now() + limit);
            // Bytes that cannot start a request (TLS to the plain port,
            // binary garbage) go to hyper now, which refuses them, instead
            // of waiting for a line end that may never come.
            if !line_seen && !could_be_request(buf) {
                return Head::Handoff;
            }
            // Parse when the request line is complete (a bad one is told at
            // once) and when a head may be: not on every byte.
            let line_now = !line_seen && line_end_in(buf, scanned);
            if line_now || head_end_in(buf, scanned) {
                line_seen = true;
                if let Some((head, len)) = parsed_head(buf, shortcut) {
                    buf.drain(..len.min(buf.len()));
                    return head;
                }
            }
            scanned = buf.len();
            if buf.len() >= MAX_HEAD {
                return Head::TooLarge;
            }
        }
        let readable = async {
            match deadline {
                Some(d) => tokio::time::timeout_at(d, tcp.readable()).await.ok(),
                None => Some(tcp.readable().await),
            }
        };
        // Readiness first: a connection woken by its next request does
        // not look at the shutdown wait again (the answer's framing tells
        // it to close if the server is shutting down).
        let ready = tokio::select! {
            biased;
            ready = readable => ready,
            _ = stop.as_mut(), if buf.is_empty() => return Head::Closed,
        };
        match ready {
            Some(Ok(())) => {}
            Some(Err(_)) => return Head::Closed,
            None => {
                tracing::debug!(bytes = buf.len(), "HTTP request head timed out");
                return Head::Closed;
            }
        }
        if buf.is_empty() {
            match read_first(tcp, buf, shortcut) {
                Some(head) => return head,
                None => continue,
            }
        }
        match read_more(tcp, buf) {
            Ok(0) => return Head::Closed,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return Head::Closed,
        }
    }
}

thread_local! {
    /// Where a request's first read lands: used and left within one poll,
    /// so one buffer per thread serves every connection (and stays in the
    /// cache) instead of a zeroed one on each connection's stack.
    static FIRST_READ: std::cell::RefCell<[u8; INITIAL_BUFFER]> =
        const { std::cell::RefCell::new([0; INITIAL_BUFFER]) };
}

/// Reads a request's first bytes (`buf` is empty). A request that arrives
/// in one read is parsed where it was read (once: httparse tells a
/// partial head): the connection allocates no buffer for it, and its
/// head is returned, pipelined bytes after it left in `buf`. Anything
/// else is gathered in `buf` (`None`: read on), or closes the connection.
fn read_first(
    tcp: &TcpStream,
    buf: &mut Vec<u8>,
    shortcut: Option<(&dyn Shortcut, SocketAddr)>,
) -> Option<Head> {
    FIRST_READ.with_borrow_mut(|first| {
        let got = match read_draining(tcp, first) {
            Ok(0) => return Some(Head::Closed),
            Ok(n) => first.get(..n).unwrap_or_default(),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
            Err(_) => return Some(Head::Closed),
        };
        if let Some((head, len)) = parsed_head(got, shortcut)
            && !matches!(head, Head::Handoff)
        {
            buf.extend_from_slice(got.get(len..).unwrap_or_default());
            return Some(head);
        }
        buf.reserve_exact(INITIAL_BUFFER);
        buf.extend_from_slice(got);
        None
    })
}

/// The request at the start of `bytes` and its head's length, if its head
/// is complete: taken by `shortcut`, or as a request for the router (or
/// hyper's, with length 0: every byte read is hyper's to read again).
fn parsed_head(
    bytes: &[u8],
    shortcut: Option<(&dyn Shortcut, SocketAddr)>,
) -> Option<(Head, usize)> {
    let mut slots = header_slots();
    let raw = match parse_raw(bytes, &mut slots) {
        RawParsed::Partial => return None,
        RawParsed::Handoff => return Some((Head::Handoff, 0)),
        RawParsed::Simple(raw) => raw,
    };
    let head_len = raw.head_len;
    let head = match shortcut.and_then(|(s, peer)| s.take(&raw, peer)) {
        Some(answer) => {
            let info = RequestInfo {
                is_head: raw.method == Method::HEAD,
                version: raw.version,
                keep_alive: raw.keep_alive,
            };
            Head::Taken(Taken { answer, info })
        }
        None => match raw.into_simple() {
            Some(request) => Head::Simple(Box::new(request)),
            None => return Some((Head::Handoff, 0)),
        },
    };
    Some((head, head_len))
}

/// Reads more of a head begun in `buf`, growing it up to [`MAX_HEAD`].
fn read_more(tcp: &TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    if buf.len() == buf.capacity() {
        let grow = buf.len().max(INITIAL_BUFFER).min(MAX_HEAD - buf.len());
        buf.reserve_exact(grow);
    }
    tcp.try_read_buf(buf)
}

/// Reads into `dst` what the socket has. A read shorter than `dst` emptied
/// the socket's receive queue: its read readiness is then cleared as a
/// `WouldBlock` clears it, so the wait for the next request does not begin
/// with a read that finds nothing (one `recv` per request fewer; nginx
/// skips it the same way on epoll). Nothing is missed: readiness from an
/// event that came after this read began is kept (tokio's readiness
/// ticks), and so is the peer's close.
fn read_draining(tcp: &TcpStream, dst: &mut [u8]) -> io::Result<usize> {
    use std::io::Read;
    let room = dst.len();
    let mut short = None;
    let read = tcp.try_io(tokio::io::Interest::READABLE, || {
        let n = (&*socket2::SockRef::from(tcp)).read(dst)?;
        if n > 0 && n < room {
            short = Some(n);
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    });
    match (read, short) {
        (_, Some(n)) => Ok(n),
        (read, None) => read,
    }
}

/// Answers one simple request through `router`; whether the connection
/// stays open.
async fn respond(
    tcp: &mut TcpStream,
    request: Box<SimpleRequest>,
    router: &Router,
    peer: SocketAddr,
    write_timeout: Duration,
    shutdown: &CancellationToken,
) -> bool {
    let SimpleRequest {
        request,
        keep_alive,
        ..
    } = *request;
    let info = RequestInfo {
        is_head: request.method() == Method::HEAD,
        version: request.version(),
        keep_alive,
    };
    let mut request = request.map(|()| Body::empty());
    request.extensions_mut().insert(ConnectInfo(peer));
    let response = match router.clone().oneshot(request).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let (parts, body) = response.into_parts();
    let plan = plan_response(
        info,
        parts.status,
        &parts.headers,
        body.size_hint().exact(),
        shutdown.is_cancelled(),
    );
    let head = encode_head(parts.status, &parts.headers, &plan, &date_now());
    // A body that is also a file range (HLS parts and segments) goes out
    // with sendfile(2): the kernel takes the file's pages, nothing is
    // copied into the socket.
    let file = parts
        .extensions
        .get::<FileRange>()
        .filter(|r| plan.framing == Framing::Length(r.len))
        .cloned();
    drop(parts);
    let sent = match file {
        Some(range) => {
            drop(body);
            send_range(tcp, head, &range, write_timeout).await
        }
        None => send(tcp, head, body, plan.framing, write_timeout).await,
    };
    kept_open(sent, plan.keep_alive, peer)
}

/// Answers a request a [`Shortcut`] took; whether the connection stays
/// open. Framed and written as the router's answers are.
async fn respond_taken(
    tcp: &mut TcpStream,
    taken: Taken,
    common: &[(HeaderName, HeaderValue)],
    peer: SocketAddr,
    write_timeout: Duration,
    shutdown: &CancellationToken,
) -> bool {
    let Taken { answer, info } = taken;
    let answer = match answer {
        ShortcutAnswer::Now(answer) => answer,
        ShortcutAnswer::Later(answer) => answer.await,
    };
    let plan = answer_plan(&answer, info, shutdown.is_cancelled());
    let mut head = Vec::with_capacity(384);
    encode_answer_head(&mut head, &answer, common, &plan);
    let file = answer
        .file
        .as_ref()
        .filter(|r| plan.framing == Framing::Length(r.len));
    let sent = match file {
        Some(range) => send_range(tcp, head, range, write_timeout).await,
        None => {
            let mut chunks = VecDeque::with_capacity(4);
            chunks.push_back(Bytes::from(head));
            if plan.framing != Framing::NoBody {
                chunks.extend(answer.body.chunks().cloned());
            }
            write_chunks(tcp, &mut chunks, write_timeout).await
        }
    };
    kept_open(sent, plan.keep_alive, peer)
}

/// What a connection does after reading a request head.
enum Next<'a> {
    Answer(Answering<'a>),
    /// Answer 431 and close.
    Refuse,
    /// Hand the connection to hyper.
    Handoff,
}

/// How a request is answered: done already, or a boxed wait (so the
/// connection's future does not carry an answer's size).
enum Answering<'a> {
    /// Sent at once; whether the connection stays open.
    Done(bool),
    Waits(Pin<Box<dyn Future<Output = bool> + Send + 'a>>),
}

impl Answering<'_> {
    /// Whether the connection stays open, once the answer is sent.
    async fn finish(self) -> bool {
        match self {
            Answering::Done(keep_alive) => keep_alive,
            Answering::Waits(answering) => answering.await,
        }
    }
}

/// Answers a request a [`Shortcut`] took: at once when it can
/// ([`send_at_once`]), else with [`respond_taken`].
fn answer_taken<'a>(
    tcp: &'a mut TcpStream,
    taken: Taken,
    common: &'a [(HeaderName, HeaderValue)],
    peer: SocketAddr,
    write_timeout: Duration,
    shutdown: &'a CancellationToken,
) -> Answering<'a> {
    match send_at_once(tcp, taken, common, shutdown.is_cancelled()) {
        AtOnce::Sent(sent, keep_alive) => Answering::Done(kept_open(sent, keep_alive, peer)),
        AtOnce::Rest {
            head,
            range,
            keep_alive,
        } => Answering::Waits(Box::pin(async move {
            let sent = send_range(tcp, head, &range, write_timeout).await;
            kept_open(sent, keep_alive, peer)
        })),
        AtOnce::Not(taken) => Answering::Waits(Box::pin(respond_taken(
            tcp,
            taken,
            common,
            peer,
            write_timeout,
            shutdown,
        ))),
    }
}

/// The framing of a shortcut's answer.
fn answer_plan(answer: &HlsAnswer, info: RequestInfo, shutting_down: bool) -> ResponsePlan {
    plan(
        info,
        answer.status,
        HandlerFraming::default(),
        Some(answer.body.len()),
        shutting_down,
    )
}

/// Writes the head of a shortcut's answer into `out`: its own header
/// lines, then the shortcut's `common` ones, as the router writes them.
fn encode_answer_head(
    out: &mut Vec<u8>,
    answer: &HlsAnswer,
    common: &[(HeaderName, HeaderValue)],
    plan: &ResponsePlan,
) {
    let lines = answer.header_lines().chain(
        common
            .iter()
            .map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes())),
    );
    encode_head_into(out, answer.status, lines, plan, Some(&date_now()));
}

/// What [`send_at_once`] did with a taken request.
enum AtOnce {
    /// The whole answer was written (or the write failed); whether the
    /// connection may stay open if it was.
    Sent(io::Result<()>, bool),
    /// The socket took part of it: the head's unsent bytes and the file's
    /// unsent range are left, to finish under the write timeout.
    Rest {
        head: Vec<u8>,
        range: FileRange,
        keep_alive: bool,
    },
    /// Not an answer given at once with a file to send: answered by
    /// [`respond_taken`].
    Not(Taken),
}

thread_local! {
    /// The head of an answer sent at once: written and sent while handling
    /// one read, so one buffer per thread serves every connection (and is
    /// in the cache), instead of one allocation per answer.
    static AT_ONCE_HEAD: std::cell::RefCell<Vec<u8>> =
        std::cell::RefCell::new(Vec::with_capacity(512));
}

/// Sends a shortcut's answer given at once that is a file range (parts and
/// segments: most requests of a player) without waiting: its head and the
/// range, as far as the socket takes them, which is usually all. No future
/// is made and the head is not allocated (only the rest of one the socket
/// did not take), as nginx answers a static file while it handles the
/// request's read event.
fn send_at_once(
    tcp: &TcpStream,
    taken: Taken,
    common: &[(HeaderName, HeaderValue)],
    shutting_down: bool,
) -> AtOnce {
    let Taken { answer, info } = taken;
    let answer = match answer {
        ShortcutAnswer::Now(answer) if answer.file.is_some() => answer,
        answer => return AtOnce::Not(Taken { answer, info }),
    };
    let plan = answer_plan(&answer, info, shutting_down);
    let Some(range) = answer
        .file
        .as_ref()
        .filter(|r| plan.framing == Framing::Length(r.len))
    else {
        // HEAD, or a body the plan does not frame by the file's length.
        let answer = ShortcutAnswer::Now(answer);
        return AtOnce::Not(Taken { answer, info });
    };
    AT_ONCE_HEAD.with_borrow_mut(|head| {
        head.clear();
        encode_answer_head(head, &answer, common, &plan);
        let mut out = sendfile::HeadAndFile::new(head, range);
        match out.try_send(tcp) {
            Ok(true) => AtOnce::Sent(Ok(()), plan.keep_alive),
            Ok(false) => {
                let (head_sent, offset) = out.progress();
                AtOnce::Rest {
                    head: head.get(head_sent..).unwrap_or_default().to_vec(),
                    range: FileRange {
                        file: Arc::clone(&range.file),
                        offset,
                        len: (range.offset + range.len).saturating_sub(offset),
                    },
                    keep_alive: plan.keep_alive,
                }
            }
            Err(e) => AtOnce::Sent(Err(e), plan.keep_alive),
        }
    })
}

/// Whether the connection stays open after an answer was `sent` (or not).
fn kept_open(sent: io::Result<()>, keep_alive: bool, peer: SocketAddr) -> bool {
    match sent {
        Ok(()) => keep_alive,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "HTTP response not sent");
            false
        }
    }
}

/// Writes `chunks`, tried once without a timer (the socket usually takes
/// it all), the rest within `limit`; `write_all_chunks` keeps its progress
/// in `chunks`.
async fn write_chunks(
    tcp: &mut TcpStream,
    chunks: &mut VecDeque<Bytes>,
    limit: Duration,
) -> io::Result<()> {
    match crate::net::write_all_chunks(tcp, chunks).now_or_never() {
        Some(done) => done.map(drop),
        None => tokio::time::timeout(limit, crate::net::write_all_chunks(tcp, chunks))
            .await
            .map_err(|_| timed_out())?
            .map(drop),
    }
}

/// Writes the head, then `range` with `sendfile(2)`, within `limit`. Most
/// answers fit in the socket at once: those arm no timer.
async fn send_range(
    tcp: &mut TcpStream,
    head: Vec<u8>,
    range: &FileRange,
    limit: Duration,
) -> io::Result<()> {
    let mut out = sendfile::HeadAndFile::new(&head, range);
    match out.send(tcp).now_or_never() {
        Some(done) => done,
        None => tokio::time::timeout(limit, out.send(tcp))
            .await
            .map_err(|_| timed_out())?,
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "write timed out")
}

/// Writes the head and the body's frames as they come, in vectored writes
/// of the frames' own `Bytes`.
async fn send(
    tcp: &mut TcpStream,
    head: Vec<u8>,
    mut body: Body,
    framing: Framing,
    limit: Duration,
) -> io::Result<()> {
    let mut chunks = VecDeque::with_capacity(4);
    chunks.push_back(Bytes::from(head));
    let mut ended = framing == Framing::NoBody;
    let mut sent = 0u64;
    loop {
        // Every frame that is ready joins the write; with none ready and
        // nothing to write, wait for one.
        while !ended && chunks.len() < WRITE_BATCH {
            let frame = if chunks.is_empty() {
                std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
            } else {
                match std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx)))
                    .await
                {
                    Poll::Ready(frame) => frame,
                    Poll::Pending => break,
                }
            };
            let data = match frame {
                None => {
                    ended = true;
                    match framing {
                        Framing::Chunked => chunks.push_back(Bytes::from_static(LAST_CHUNK)),
                        Framing::Length(n) if sent != n => {
                            return Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                format!("body of {sent} bytes, {n} announced"),
                            ));
                        }
                        _ => {}
                    }
                    continue;
                }
                Some(Err(e)) => return Err(io::Error::other(e)),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if !data.is_empty() => data,
                    // Trailers are not sent; empty frames are nothing.
                    _ => continue,
                },
            };
            sent += data.len() as u64;
            match framing {
                Framing::Length(n) if sent > n => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("body longer than the {n} bytes announced"),
                    ));
                }
                Framing::Chunked => {
                    chunks.push_back(Bytes::from(chunk_size_line(data.len())));
                    chunks.push_back(data);
                    chunks.push_back(Bytes::from_static(b"\r\n"));
                }
                _ => chunks.push_back(data),
            }
        }
        if !chunks.is_empty() {
            write_chunks(tcp, &mut chunks, limit).await?;
        }
        if ended {
            return Ok(());
        }
    }
}

/// Hands the connection to hyper (HTTP/1.1 or HTTP/2, upgrades allowed, as
/// `axum::serve` does), `read` replayed first.
async fn hand_off(
    tcp: TcpStream,
    read: Vec<u8>,
    peer: SocketAddr,
    router: Router,
    shutdown: CancellationToken,
    header_timeout: std::time::Duration,
) {
    let io = TokioIo::new(Rewind::new(Bytes::from(read), tcp));
    let service = TowerToHyperService::new(router.map_request(crate::tls::with_peer(peer)));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http2().enable_connect_protocol();
    // Later request heads on this connection are hyper's to time.
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout);
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "HTTP connection ended");
                }
                return;
            }
            _ = shutdown.cancelled(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Sends a final answer and closes without resetting the connection: what
/// the client still sends is read and dropped (up to 64 KiB, 1 s), so the
/// answer is not lost to a reset.
async fn refuse(mut tcp: TcpStream, answer: &'static [u8]) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        tcp.write_all(answer).await?;
        tcp.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut left = 64 * 1024usize;
        while left > 0 {
            let n = tcp.read(&mut sink).await?;
            if n == 0 {
                break;
            }
            left = left.saturating_sub(n);
        }
        Ok::<_, io::Error>(())
    })
    .await;
}

/// The `Date` header's value, formatted once a second per thread.
fn date_now() -> [u8; date::DATE_LEN] {
    use std::cell::Cell;
    thread_local! {
        static CACHE: Cell<(u64, [u8; date::DATE_LEN])> =
            const { Cell::new((u64::MAX, [0; date::DATE_LEN])) };
    }
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHE.with(|cache| {
        let (at, text) = cache.get();
        if at == secs {
            return text;
        }
        let text = date::imf_fixdate(secs);
        cache.set((secs, text));
        text
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What an idle keep-alive connection costs is mostly its task's
    /// future; requests' work is boxed or done without waiting, so it
    /// stays small (1.4 KiB per idle connection with its socket state,
    /// measured with 10 000).
    #[tokio::test]
    async fn a_connection_future_stays_small() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (tcp, peer) = listener.accept().await.unwrap();
        let timeouts = Timeouts {
            header: Duration::from_secs(1),
            write: Duration::from_secs(1),
        };
        let future = connection(
            tcp,
            peer,
            Router::new(),
            None,
            timeouts,
            CancellationToken::new(),
        );
        let size = std::mem::size_of_val(&future);
        eprintln!("connection future: {size} bytes");
        assert!(size <= 1024, "a connection's future is {size} bytes");
        drop((future, client));
    }
}
