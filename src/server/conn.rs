//! The socket side of one RTMP connection: reads feed the sans-IO session,
//! its output (and shared media messages) go out with vectored writes, both
//! bounded by timeouts. Shared by the RTMP ingest and egress.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

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
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Rtmp(#[from] RtmpError),
}

/// A reset is how OBS ends a session: report it as a close, not a failure.
fn io_error(e: std::io::Error) -> ConnError {
    match e.kind() {
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted => {
            ConnError::Closed
        }
        _ => ConnError::Io(e),
    }
}

pub struct RtmpConn {
    pub session: ServerSession,
    pub peer: SocketAddr,
    socket: TcpStream,
    buf: Box<[u8]>,
    out: VecDeque<Bytes>,
    read_timeout: Duration,
    write_timeout: Duration,
}

impl RtmpConn {
    pub fn new(
        socket: TcpStream,
        peer: SocketAddr,
        session: ServerSession,
        read_timeout: Duration,
        write_timeout: Duration,
    ) -> Self {
        RtmpConn {
            session,
            peer,
            socket,
            buf: vec![0; 64 * 1024].into_boxed_slice(),
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

    /// Waits until the socket has something to read (no timeout).
    pub async fn readable(&self) -> std::io::Result<()> {
        self.socket.readable().await
    }

    /// Reads without waiting, after [`RtmpConn::readable`]; `Ok(0)` when a
    /// readiness was spurious.
    pub fn try_read_input(&mut self) -> Result<usize, ConnError> {
        match self.socket.try_read(&mut self.buf) {
            Ok(n) => self.feed(n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(0),
            Err(e) => Err(io_error(e)),
        }
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
        tokio::time::timeout(
            self.write_timeout,
            crate::net::write_all_chunks(&mut self.socket, &mut self.out),
        )
        .await
        .map_err(|_| ConnError::WriteTimeout(self.write_timeout))?
        .map_err(ConnError::from)
    }
}
