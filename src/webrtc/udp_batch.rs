//! Several datagrams with one system call.
//!
//! A WebRTC session produces its packets in bursts: a video frame is several
//! RTP packets (RFC 6184 §5.8 fragmentation units), all to the same peer.
//! [`Outbox`] gathers what one session produces in one wake, grouped by
//! destination; [`send_batch`] hands a group to the kernel with one
//! `sendmmsg(2)` (Linux) instead of one `sendto(2)` per datagram.

use std::io;
use std::net::SocketAddr;

/// Most datagrams handed to the kernel in one call (and kept in an outbox
/// before it is flushed).
pub(crate) const MAX_BATCH: usize = 64;

/// Datagrams waiting to be sent, all to one destination.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    to: Option<SocketAddr>,
    datagrams: Vec<Vec<u8>>,
}

impl Outbox {
    /// Queues a datagram for `to`. What was queued for another destination,
    /// or a full batch, is handed to `flush` first, so datagrams leave in
    /// the order they were pushed.
    pub fn push(
        &mut self,
        to: SocketAddr,
        datagram: Vec<u8>,
        flush: &mut impl FnMut(SocketAddr, &[Vec<u8>]),
    ) {
        if self.to != Some(to) || self.datagrams.len() >= MAX_BATCH {
            self.flush(flush);
            self.to = Some(to);
        }
        self.datagrams.push(datagram);
    }

    /// Hands everything queued to `flush` and empties the outbox (keeping
    /// its capacity).
    pub fn flush(&mut self, flush: &mut impl FnMut(SocketAddr, &[Vec<u8>])) {
        if let Some(to) = self.to
            && !self.datagrams.is_empty()
        {
            flush(to, &self.datagrams);
        }
        self.datagrams.clear();
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.datagrams.is_empty()
    }
}

/// Sends the first `min(datagrams.len(), MAX_BATCH)` datagrams to `to` on
/// the non-blocking socket `fd` with one `sendmmsg(2)`; returns how many the
/// kernel took (a prefix; 0 only for an empty slice). Errors are those of
/// the first datagram that was not sent (`WouldBlock` when the socket
/// buffer is full).
#[cfg(target_os = "linux")]
pub(crate) fn send_batch(
    fd: &impl std::os::fd::AsFd,
    to: SocketAddr,
    datagrams: &[Vec<u8>],
) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let datagrams = datagrams.get(..MAX_BATCH).unwrap_or(datagrams);
    if datagrams.is_empty() {
        return Ok(0);
    }
    let addr = socket2::SockAddr::from(to);
    // SAFETY (zeroed): iovec and mmsghdr are plain C structs of pointers and
    // integers, for which all-zero bytes are a valid value (null pointers,
    // zero lengths); the fields that matter are set below.
    let mut iovecs: [libc::iovec; MAX_BATCH] = unsafe { std::mem::zeroed() };
    let mut msgs: [libc::mmsghdr; MAX_BATCH] = unsafe { std::mem::zeroed() };
    for ((d, iov), msg) in datagrams.iter().zip(&mut iovecs).zip(&mut msgs) {
        iov.iov_base = d.as_ptr() as *mut libc::c_void;
        iov.iov_len = d.len();
        msg.msg_hdr.msg_name = addr.as_ptr() as *mut libc::c_void;
        msg.msg_hdr.msg_namelen = addr.len();
        msg.msg_hdr.msg_iov = iov;
        msg.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: `msgs[..n]` are initialized headers whose pointers (the
    // address, one iovec each, the iovec's buffer) point into `addr`,
    // `iovecs` and `datagrams`, which all outlive the call; the kernel only
    // reads them (and writes `msg_len`); n ≤ MAX_BATCH fits `c_uint`.
    let sent = unsafe {
        libc::sendmmsg(
            fd.as_fd().as_raw_fd(),
            msgs.as_mut_ptr(),
            datagrams.len() as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sent as usize)
}

/// Other systems: not batched; the caller sends one datagram at a time.
#[cfg(not(target_os = "linux"))]
pub(crate) fn send_batch(
    _fd: &impl std::os::fd::AsFd,
    _to: SocketAddr,
    _datagrams: &[Vec<u8>],
) -> io::Result<usize> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn an_outbox_flushes_on_a_new_destination_a_full_batch_and_at_the_end() {
        let mut out = Outbox::default();
        let mut flushed: Vec<(SocketAddr, Vec<Vec<u8>>)> = Vec::new();
        let mut f = |to: SocketAddr, d: &[Vec<u8>]| flushed.push((to, d.to_vec()));
        out.push(addr(1), vec![1], &mut f);
        out.push(addr(1), vec![2], &mut f);
        out.push(addr(2), vec![3], &mut f);
        for i in 0..MAX_BATCH + 1 {
            out.push(addr(3), vec![i as u8], &mut f);
        }
        assert!(!out.is_empty());
        out.flush(&mut f);
        assert!(out.is_empty());
        out.flush(&mut f); // nothing left: no empty batch
        let shape: Vec<(u16, usize)> = flushed.iter().map(|(a, d)| (a.port(), d.len())).collect();
        assert_eq!(
            shape,
            vec![(1, 2), (2, 1), (3, MAX_BATCH), (3, 1)],
            "grouped by destination, at most MAX_BATCH each"
        );
        assert_eq!(flushed[0].1, vec![vec![1], vec![2]], "in order");
        assert_eq!(flushed[3].1, vec![vec![MAX_BATCH as u8]]);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_batch_arrives_as_separate_datagrams_in_order() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = rx.local_addr().unwrap();
        let datagrams: Vec<Vec<u8>> = (0..MAX_BATCH + 6).map(|i| vec![i as u8; 100 + i]).collect();
        assert_eq!(send_batch(&tx, to, &datagrams).unwrap(), MAX_BATCH);
        assert_eq!(send_batch(&tx, to, &datagrams[MAX_BATCH..]).unwrap(), 6);
        assert_eq!(send_batch(&tx, to, &[]).unwrap(), 0);
        let mut buf = [0u8; 512];
        for d in &datagrams {
            let (n, from) = rx.recv_from(&mut buf).unwrap();
            assert_eq!(from, tx.local_addr().unwrap());
            assert_eq!(&buf[..n], &d[..]);
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn an_unsendable_first_datagram_is_an_error() {
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        // An IPv6 destination on an IPv4 socket.
        let to: SocketAddr = "[::1]:9".parse().unwrap();
        assert!(send_batch(&tx, to, &[vec![0u8; 10]]).is_err());
    }
}
