//! The socket side of one RTMP connection: reads feed the sans-IO session,
//! its output (and shared media messages) go out with vectored writes, both
//! bounded by timeouts. Shared by the RTMP ingest and egress. The stream is a
//! TCP socket (RTMP) or a TLS session over one (RTMPS).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::protocol::rtmp::{RtmpError, ServerSession};

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("peer closed the connection")]
    Closed,
    #[error("nothing received for {0:?}")]
    ReadTimeout(Duration),
    #[error("a write did not complete within {0:?}")]
    WriteTimeout(Duration),
    #[error("handshake, connect and publish/play not done within {0:?} (handshake_timeout)")]
    HandshakeTimeout(Duration),
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Rtmp(#[from] RtmpError),
}

/// A reset is how OBS ends a session: report it as a close, not a failure.
/// Over TLS, a peer that closes TCP without a `close_notify` alert (RFC 8446
/// §6.1) reads as `UnexpectedEof`: also a close.
fn io_error(e: std::io::Error) -> ConnError {
    match e.kind() {
        std::io::ErrorKind::ConnectionReset
        | std::io::ErrorKind::ConnectionAborted
        | std::io::ErrorKind::UnexpectedEof => ConnError::Closed,
        _ => ConnError::Io(e),
    }
}

/// A byte stream an RTMP session runs over: a `TcpStream`, or a
/// `tokio_rustls` server stream for RTMPS.
pub trait RtmpStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> RtmpStream for T {}

/// The stream of one connection, boxed once when it is accepted so the
/// session code is the same for RTMP and RTMPS (and RTSP and RTSPS).
pub type BoxedStream = Box<dyn RtmpStream>;

/// The stream a protocol runs over: the socket itself, or with `tls` the
/// TLS session after a completed handshake (bounded by the acceptor's
/// timeout). `None`: the handshake failed or timed out, or the server is
/// shutting down.
pub async fn open(
    socket: tokio::net::TcpStream,
    tls: Option<&crate::tls::TlsAcceptor>,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Option<BoxedStream> {
    let Some(acceptor) = tls else {
        return Some(Box::new(socket));
    };
    tokio::select! {
        _ = shutdown.cancelled() => None,
        tls = acceptor.accept(socket) => match tls {
            Ok(tls) => Some(Box::new(tls)),
            Err(e) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                None
            }
        },
    }
}

pub struct RtmpConn {
    pub session: ServerSession,
    pub peer: SocketAddr,
    socket: BoxedStream,
    buf: Box<[u8]>,
    out: VecDeque<Bytes>,
    read_timeout: Duration,
    write_timeout: Duration,
}

/// The read buffer of a connection that mostly writes (a player sends only
/// commands and acknowledgements); a handshake packet (1537 bytes) fits.
const SMALL_READ_BUFFER: usize = 2 * 1024;
/// The read buffer of a publisher, whose media comes in large reads.
pub const PUBLISH_READ_BUFFER: usize = 64 * 1024;

impl RtmpConn {
    /// Grows the read buffer to `size` bytes (a publisher's media needs large
    /// reads; players keep the small one, which is most of the memory of an
    /// idle connection).
    pub fn grow_read_buffer(&mut self, size: usize) {
        if self.buf.len() < size {
            self.buf = vec![0; size].into_boxed_slice();
        }
    }

    pub fn new(
        socket: BoxedStream,
        peer: SocketAddr,
        session: ServerSession,
        read_timeout: Duration,
        write_timeout: Duration,
    ) -> Self {
        RtmpConn {
            session,
            peer,
            socket,
            buf: vec![0; SMALL_READ_BUFFER].into_boxed_slice(),
            out: VecDeque::new(),
            read_timeout,
            write_timeout,
        }
    }

    /// Reads what the peer sent (waiting at most the read timeout) and feeds
    /// it to the session. Returns the number of bytes read.
    pub async fn read_input(&mut self) -> Result<usize, ConnError> {
        let n = tokio::time::timeout(self.read_timeout, self.socket.read(&mut self.buf))
            .await
            .map_err(|_| ConnError::ReadTimeout(self.read_timeout))?
            .map_err(io_error)?;
        self.feed(n)
    }

    /// Reads what the peer sent, waiting as long as it takes (players send
    /// little once playing), and feeds it to the session.
    ///
    /// Cancel-safe, so it can race other work in `select!`: a read that has
    /// not completed consumed nothing (`AsyncReadExt::read` is cancel-safe,
    /// and a TLS stream keeps decrypted bytes it has not handed out), and a
    /// completed read is fed before the future returns.
    pub async fn read_input_untimed(&mut self) -> Result<usize, ConnError> {
        let n = self.socket.read(&mut self.buf).await.map_err(io_error)?;
        self.feed(n)
    }

    fn feed(&mut self, n: usize) -> Result<usize, ConnError> {
        if n == 0 {
            return Err(ConnError::Closed);
        }
        let data = self.buf.get(..n).unwrap_or_default();
        self.session.handle_input(data)?;
        Ok(n)
    }

    /// Writes everything the session has queued (its own messages and the
    /// shared media messages given to `queue_encoded`), in order.
    pub async fn flush(&mut self) -> Result<u64, ConnError> {
        while let Some(b) = self.session.poll_output() {
            self.out.push_back(b);
        }
        if self.out.is_empty() {
            return Ok(0);
        }
        let total: u64 = self.out.iter().map(|b| b.len() as u64).sum();
        // Usually the socket takes everything at once: try that without
        // arming a timer (a player does this for every frame). What was
        // written stays written; the rest goes out under the timeout.
        let at_once = Self::write_out(&mut self.socket, &mut self.out).now_or_never();
        match at_once {
            Some(done) => done?,
            None => tokio::time::timeout(
                self.write_timeout,
                Self::write_out(&mut self.socket, &mut self.out),
            )
            .await
            .map_err(|_| ConnError::WriteTimeout(self.write_timeout))??,
        }
        // A player's first write (the cached GOP) queues a hundred messages
        // or more, later ones a few: give the room back once.
        if self.out.capacity() > 64 {
            self.out.shrink_to(16);
        }
        Ok(total)
    }

    /// Writes the queued chunks and flushes: a TLS stream may hold the last
    /// record until flushed (a no-op for TCP). Cancel-safe: what was written
    /// has left `out`.
    async fn write_out(socket: &mut BoxedStream, out: &mut VecDeque<Bytes>) -> std::io::Result<()> {
        crate::net::write_all_chunks(socket, out).await?;
        socket.flush().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::rtmp::ServerConfig;
    use crate::tls::testing::{TempDir, cert_der_of, client_trusting, write_self_signed};
    use crate::tls::{TlsAcceptor, TlsReloader};
    use rustls_pki_types::ServerName;

    /// A TLS stream holds the records it could not write while the socket
    /// was full; `flush` must push them out, or the tail of a message waits
    /// for the next write (a player could stall on its last frame).
    #[tokio::test]
    async fn flush_delivers_everything_over_a_congested_tls_stream() {
        let dir = TempDir::new("conn");
        let (cert, key) = write_self_signed(&dir, "srv", "localhost");
        let reloader = TlsReloader::load(&cert, &key).unwrap();
        let acceptor = TlsAcceptor::rtmps(&reloader).unwrap();
        // A pipe much smaller than one TLS record.
        let (server_io, client_io) = tokio::io::duplex(1024);
        let connector = tokio_rustls::TlsConnector::from(client_trusting(&cert_der_of(&cert), &[]));
        let name = ServerName::try_from("localhost").unwrap();
        let (server, client) = tokio::join!(
            acceptor.accept(server_io),
            connector.connect(name, client_io)
        );
        let (server, mut client) = (server.unwrap(), client.unwrap());

        let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let expected = payload.clone();
        let reader = tokio::spawn(async move {
            let mut got = vec![0u8; expected.len()];
            let read = tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut got));
            read.await.expect("every byte arrives").unwrap();
            assert!(got == expected, "bytes differ");
            client
        });
        let peer = "127.0.0.1:1935".parse().unwrap();
        let session = ServerSession::new_after_handshake(ServerConfig::default());
        let timeout = Duration::from_secs(5);
        let mut conn = RtmpConn::new(Box::new(server), peer, session, timeout, timeout);
        for chunk in payload.chunks(30_000) {
            conn.session.queue_encoded(Bytes::copy_from_slice(chunk));
        }
        assert_eq!(conn.flush().await.unwrap(), 200_000);
        // Nothing more is written: the reader must get the tail from flush.
        let _client = reader.await.unwrap();
        drop(conn);
    }
}
