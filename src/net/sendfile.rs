//! Byte ranges of a file sent to a TCP socket with `sendfile(2)`: the
//! kernel hands the file's pages to the socket instead of copying a user
//! buffer into it. A response that can be sent this way carries a
//! [`FileRange`] in its extensions next to its ordinary body; the plain
//! HTTP/1.1 path ([`crate::server::h1`]) sends the range, every other path
//! (TLS, HTTP/2, hyper) the body, which holds the same bytes.
//!
//! Measured on the HLS benchmark (BENCHMARKS.md): the copy into the socket
//! was the whole difference between mediarelay and nginx serving parts.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use tokio::io::Interest;
use tokio::net::TcpStream;

/// `len` bytes of `file` from `offset`: a response body's exact bytes.
#[derive(Debug, Clone)]
pub struct FileRange {
    pub file: Arc<File>,
    pub offset: u64,
    pub len: u64,
}

/// A response head followed by a file range, on its way into a TCP socket.
///
/// The head is sent with `MSG_MORE` (send(2)): the accepted sockets have
/// `TCP_NODELAY`, so a head sent alone would leave as a segment of its own
/// and wake the reader once for it and again for the body; with `MSG_MORE`
/// the kernel holds it and the file's first pages join it in the same
/// segment, as nginx's `tcp_nopush` does. Progress is kept here, so
/// [`send`](Self::send) is cancel-safe: it may be polled once without a
/// timer and finished later under one.
#[derive(Debug)]
pub struct HeadAndFile<'a> {
    head: &'a [u8],
    head_sent: usize,
    file: &'a File,
    offset: u64,
    end: u64,
}

impl<'a> HeadAndFile<'a> {
    pub fn new(head: &'a [u8], range: &'a FileRange) -> Self {
        Self {
            head,
            head_sent: 0,
            file: &range.file,
            offset: range.offset,
            end: range.offset.saturating_add(range.len),
        }
    }

    /// Sends what the socket takes without waiting: `true` once everything
    /// is sent, `false` when the socket is full.
    pub fn try_send(&mut self, tcp: &TcpStream) -> io::Result<bool> {
        loop {
            let result =
                if let Some(rest) = self.head.get(self.head_sent..).filter(|r| !r.is_empty()) {
                    // More follows only if the range is not empty: a head held
                    // back with nothing after it would wait for the cork timer.
                    let more = self.offset < self.end;
                    tcp.try_io(Interest::WRITABLE, || {
                        send_head(tcp.as_raw_fd(), rest, more)
                    })
                    .map(|n| self.head_sent += n)
                } else if self.offset < self.end {
                    let (offset, len) = (self.offset, self.end - self.offset);
                    match tcp.try_io(Interest::WRITABLE, || {
                        send_some(tcp.as_raw_fd(), self.file, offset, len)
                    }) {
                        Ok(0) => Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the file ended before the range",
                        )),
                        Ok(n) => {
                            self.offset += n;
                            Ok(())
                        }
                        Err(e) => Err(e),
                    }
                } else {
                    return Ok(true);
                };
            match result {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
    }

    /// How far it got: the head's bytes sent, and the file offset the rest
    /// of the range starts at.
    pub fn progress(&self) -> (usize, u64) {
        (self.head_sent, self.offset)
    }

    /// Sends the rest, waiting for the socket to take it. Cancel-safe: what
    /// was sent is remembered.
    pub async fn send(&mut self, tcp: &TcpStream) -> io::Result<()> {
        while !self.try_send(tcp)? {
            tcp.writable().await?;
        }
        Ok(())
    }
}

/// One `send(2)` of head bytes, with `MSG_MORE` when a body follows.
fn send_head(socket: i32, bytes: &[u8], more: bool) -> io::Result<usize> {
    let flags = libc::MSG_NOSIGNAL | if more { libc::MSG_MORE } else { 0 };
    // SAFETY: `bytes` is a valid slice for the duration of the call and the
    // socket is borrowed from a live `TcpStream`.
    let n = unsafe { libc::send(socket, bytes.as_ptr().cast(), bytes.len(), flags) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// One `sendfile(2)` call: how many bytes the socket took.
fn send_some(socket: i32, file: &File, offset: u64, len: u64) -> io::Result<u64> {
    let mut off = libc::off_t::try_from(offset)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset out of range"))?;
    let count = usize::try_from(len).unwrap_or(usize::MAX);
    // SAFETY: both descriptors are open for the duration of the call (the
    // socket is borrowed from `tcp`, the file from `range`), and `off` is a
    // valid `off_t` the kernel may update.
    let n = unsafe { libc::sendfile(socket, file.as_raw_fd(), &mut off, count) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn sends_exactly_the_range() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let range = range_of(&data, 1000, 250_000);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let reader = tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.unwrap();
            got
        });
        let (tcp, _) = listener.accept().await.unwrap();
        HeadAndFile::new(b"head ", &range).send(&tcp).await.unwrap();
        drop(tcp);
        let got = reader.await.unwrap();
        assert_eq!(&got[..5], b"head ");
        assert_eq!(&got[5..], &data[1000..251_000]);
    }

    #[tokio::test]
    async fn a_range_past_the_file_s_end_is_an_error() {
        let range = range_of(b"short", 0, 10);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (tcp, _) = listener.accept().await.unwrap();
        let e = HeadAndFile::new(b"", &range).send(&tcp).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    /// `len` bytes from `offset` of a memory file holding `data`.
    fn range_of(data: &[u8], offset: u64, len: u64) -> FileRange {
        let mut file = crate::egress::hls::file::memory_file().expect("memfd_create");
        file.write_all(data).unwrap();
        FileRange {
            file: Arc::new(file),
            offset,
            len,
        }
    }
}
