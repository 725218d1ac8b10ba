//! A stream with bytes put back in front: the bytes the fast path already
//! read from a connection are replayed to the full HTTP server that takes
//! it over, then the socket is read as usual.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// `inner`, with `prefix` read first. Writes go straight to `inner`.
pub struct Rewind<T> {
    prefix: Bytes,
    inner: T,
}

impl<T> Rewind<T> {
    /// Reads `prefix`, then `inner`.
    pub fn new(prefix: Bytes, inner: T) -> Self {
        Rewind { prefix, inner }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewind<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            if let Some(head) = self.prefix.get(..n) {
                buf.put_slice(head);
            }
            self.prefix.advance(n);
            if self.prefix.is_empty() {
                // Gives the memory back as soon as it is replayed.
                self.prefix = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Rewind<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn replays_the_prefix_then_reads_the_stream() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut rewound = Rewind::new(Bytes::from_static(b"GET / HTTP/1.1\r\n"), near);
        far.write_all(b"Host: a\r\n\r\n").await.unwrap();
        // A small read buffer takes the prefix in pieces.
        let mut first = [0u8; 5];
        rewound.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"GET /");
        let mut rest = vec![0u8; 11 + 11];
        rewound.read_exact(&mut rest).await.unwrap();
        assert_eq!(rest, b" HTTP/1.1\r\nHost: a\r\n\r\n");
        // Writes reach the other end.
        rewound.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
        let mut got = [0u8; 17];
        far.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"HTTP/1.1 200 OK\r\n");
        drop(far);
        let mut end = Vec::new();
        rewound.read_to_end(&mut end).await.unwrap();
        assert!(end.is_empty());
    }
}
