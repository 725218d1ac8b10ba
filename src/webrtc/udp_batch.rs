//! Several datagrams with one system call.
//!
//! A WebRTC session produces its packets in bursts: a video frame is several
//! RTP packets (RFC 6184 §5.8 fragmentation units), all to the same peer.
//! [`Outbox`] gathers what one session produces in one wake, grouped by
//! destination; [`send_batch`] hands a group to the kernel with one
//! `sendmmsg(2)` (Linux) instead of one `sendto(2)` per datagram.
//!
//! With UDP segmentation offload (`UDP_SEGMENT`, Linux ≥ 4.18; udp(7)),
//! datagrams of one size in a row — a frame's fragmentation units, the
//! last one possibly shorter — go down the stack as *one* buffer that the
//! kernel (or the network card) cuts into datagrams at the end: one pass
//! through routing, netfilter and the device queue per frame instead of
//! per packet. [`gso_runs`] decides which datagrams travel together; the
//! receiver sees the same datagrams either way.
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};

/// Most datagrams handed to the kernel in one call (and kept in an outbox
/// before it is flushed).
pub(crate) const MAX_BATCH: usize = 64;

/// Spare datagram buffers kept per thread (a session builds and flushes
/// its datagrams within one call, on one thread), so a packet sent to a
/// viewer does not cost an allocation and a free: at most this many.
const MAX_SPARE: usize = 2 * MAX_BATCH;
/// Buffers larger than this (not a media packet's) are not kept.
const MAX_SPARE_BYTES: usize = 2048;

thread_local! {
    static SPARE: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// An empty buffer for a datagram of up to `capacity` bytes: a spare one
/// from a flushed [`Outbox`] of this thread, or a new one.
pub(crate) fn buffer(capacity: usize) -> Vec<u8> {
    let mut d = SPARE
        .with(|spare| spare.borrow_mut().pop())
        .unwrap_or_default();
    d.reserve(capacity);
    d
}

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
    /// its capacity); the datagrams' buffers go back to [`buffer`]'s spares.
    pub fn flush(&mut self, flush: &mut impl FnMut(SocketAddr, &[Vec<u8>])) {
        if let Some(to) = self.to
            && !self.datagrams.is_empty()
        {
            flush(to, &self.datagrams);
        }
        SPARE.with(|spare| {
            let mut spare = spare.borrow_mut();
            for mut d in self.datagrams.drain(..) {
                if spare.len() < MAX_SPARE && d.capacity() <= MAX_SPARE_BYTES {
                    d.clear();
                    spare.push(d);
                }
            }
        });
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.datagrams.is_empty()
    }
}

/// Most bytes of one segmentation-offload send: the UDP payload of one
/// IPv4 datagram at most (65 535 less the IP and UDP headers), with room to
/// spare for IPv6's header.
const MAX_GSO_BYTES: usize = 65_000;

/// Splits datagrams of the given sizes, in order, into runs that may be
/// sent as one segmentation-offload buffer: datagrams of one size, then at
/// most one shorter datagram that ends the run (the kernel cuts the buffer
/// every `size` bytes; only the last piece may be short), within
/// [`MAX_GSO_BYTES`]. Writes each run's length into `runs` and returns how
/// many runs there are (`runs` must hold one per datagram). A run of one is
/// a plain datagram.
pub(crate) fn gso_runs(sizes: &[usize], runs: &mut [usize]) -> usize {
    let mut count = 0;
    let mut i = 0;
    while i < sizes.len() && count < runs.len() {
        let size = sizes[i];
        let mut len = 1;
        let mut bytes = size;
        if size > 0 {
            while let Some(&next) = sizes.get(i + len) {
                if next > size || next == 0 || bytes + next > MAX_GSO_BYTES {
                    break;
                }
                len += 1;
                bytes += next;
                if next < size {
                    break; // the short one ends the run
                }
            }
        }
        runs[count] = len;
        count += 1;
        i += len;
    }
    count
}

/// Whether the kernel knows `UDP_SEGMENT` on this socket (asked once, when
/// the socket is made; a device that cannot checksum segments still fails a
/// send with `EIO`, which the caller handles).
#[cfg(target_os = "linux")]
pub(crate) fn gso_supported(fd: &impl std::os::fd::AsFd) -> bool {
    use std::os::fd::AsRawFd;
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for writes of the sizes given.
    let r = unsafe {
        libc::getsockopt(
            fd.as_fd().as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    r == 0
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn gso_supported(_fd: &impl std::os::fd::AsFd) -> bool {
    false
}

/// Sends `datagrams` (all to one peer) in batches through `batch` — a
/// [`send_batch`] bound to a socket and destination — and decides what a
/// failed batch means; sans-IO, so every failure path is tested without a
/// device that fails:
///
/// - `WouldBlock`: the socket buffer is full; the rest are dropped, as UDP
///   drops them.
/// - Any error with segmentation offload on: the same batch again without
///   it. `EIO` is the kernel's answer when the device cannot checksum
///   segments, so `gso` is cleared for good (every later call too); others
///   (e.g. `EMSGSIZE` for one datagram above the path MTU) concern this
///   batch only.
/// - Any error without it: the rest go one by one through `one`, so a bad
///   datagram costs only itself.
pub(crate) fn send_all(
    datagrams: &[Vec<u8>],
    gso: &AtomicBool,
    mut batch: impl FnMut(&[Vec<u8>], bool) -> io::Result<usize>,
    mut one: impl FnMut(&[u8]),
) {
    let mut rest = datagrams;
    let mut segment = gso.load(Ordering::Relaxed);
    while !rest.is_empty() {
        match batch(rest, segment) {
            Ok(n) => rest = rest.get(n.max(1)..).unwrap_or_default(),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if segment => {
                if e.raw_os_error() == Some(libc::EIO) {
                    gso.store(false, Ordering::Relaxed);
                    tracing::info!(error = %e, "UDP segmentation offload unavailable; WebRTC sends without it");
                }
                segment = false;
            }
            Err(e) => {
                tracing::trace!(error = %e, "WebRTC batch send failed; sending one by one");
                for d in rest {
                    one(d);
                }
                return;
            }
        }
    }
}

/// Room for one control message carrying a `u16` (`CMSG_SPACE(2)` is 24
/// bytes on 64-bit Linux), aligned for `cmsghdr`.
#[cfg(target_os = "linux")]
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct ControlBuf([u8; 32]);

/// Sends the first `min(datagrams.len(), MAX_BATCH)` datagrams to `to` on
/// the non-blocking socket `fd` with one `sendmmsg(2)`; returns how many the
/// kernel took (a prefix; 0 only for an empty slice). With `gso`, runs of
/// [`gso_runs`] go as one message each with a `UDP_SEGMENT` control message
/// (the datagrams are the message's iovecs: nothing is copied). Errors are
/// those of the first message that was not sent (`WouldBlock` when the
/// socket buffer is full).
#[cfg(target_os = "linux")]
pub(crate) fn send_batch(
    fd: &impl std::os::fd::AsFd,
    to: SocketAddr,
    datagrams: &[Vec<u8>],
    gso: bool,
) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let datagrams = datagrams.get(..MAX_BATCH).unwrap_or(datagrams);
    if datagrams.is_empty() {
        return Ok(0);
    }
    let addr = socket2::SockAddr::from(to);
    let mut runs = [1usize; MAX_BATCH];
    let run_count = if gso {
        let mut sizes = [0usize; MAX_BATCH];
        for (s, d) in sizes.iter_mut().zip(datagrams) {
            *s = d.len();
        }
        gso_runs(&sizes[..datagrams.len()], &mut runs)
    } else {
        datagrams.len()
    };
    // SAFETY (zeroed): iovec, mmsghdr and the control buffers are plain C
    // data for which all-zero bytes are a valid value (null pointers, zero
    // lengths); the fields that matter are set below.
    let mut iovecs: [libc::iovec; MAX_BATCH] = unsafe { std::mem::zeroed() };
    let mut msgs: [libc::mmsghdr; MAX_BATCH] = unsafe { std::mem::zeroed() };
    let mut controls = [ControlBuf([0; 32]); MAX_BATCH];
    for (d, iov) in datagrams.iter().zip(&mut iovecs) {
        iov.iov_base = d.as_ptr() as *mut libc::c_void;
        iov.iov_len = d.len();
    }
    let mut start = 0;
    for ((&len, msg), control) in runs[..run_count].iter().zip(&mut msgs).zip(&mut controls) {
        let hdr = &mut msg.msg_hdr;
        hdr.msg_name = addr.as_ptr() as *mut libc::c_void;
        hdr.msg_namelen = addr.len();
        hdr.msg_iov = iovecs[start..].as_mut_ptr();
        hdr.msg_iovlen = len;
        if len > 1 {
            let size = datagrams[start].len() as u16; // ≤ MAX_GSO_BYTES
            // SAFETY: `control` is 32 bytes, aligned for `cmsghdr`, which
            // holds CMSG_SPACE(2) (24); CMSG_FIRSTHDR of a header whose
            // control length is that much is a pointer into it, and
            // CMSG_DATA points at 2 writable bytes inside it.
            unsafe {
                hdr.msg_control = control.0.as_mut_ptr().cast();
                hdr.msg_controllen = libc::CMSG_SPACE(2) as usize;
                let c = libc::CMSG_FIRSTHDR(hdr);
                (*c).cmsg_level = libc::SOL_UDP;
                (*c).cmsg_type = libc::UDP_SEGMENT;
                (*c).cmsg_len = libc::CMSG_LEN(2) as usize;
                std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), size);
            }
        }
        start += len;
    }
    // SAFETY: `msgs[..run_count]` are initialized headers whose pointers
    // (the address, their iovecs, the iovecs' buffers, the control
    // messages) point into `addr`, `iovecs`, `datagrams` and `controls`,
    // which all outlive the call; the kernel only reads them (and writes
    // `msg_len`); run_count ≤ MAX_BATCH fits `c_uint`.
    let sent = unsafe {
        libc::sendmmsg(
            fd.as_fd().as_raw_fd(),
            msgs.as_mut_ptr(),
            run_count as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(runs[..sent as usize].iter().sum())
}

/// Other systems: not batched; the caller sends one datagram at a time.
#[cfg(not(target_os = "linux"))]
pub(crate) fn send_batch(
    _fd: &impl std::os::fd::AsFd,
    _to: SocketAddr,
    _datagrams: &[Vec<u8>],
    _gso: bool,
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
    fn flushed_buffers_are_reused_and_their_number_is_bounded() {
        let mut out = Outbox::default();
        let mut flush = |_, _: &[Vec<u8>]| {};
        let first = buffer(1200);
        let ptr = first.as_ptr();
        out.push(addr(1), first, &mut flush);
        out.flush(&mut flush);
        let again = buffer(1200);
        assert_eq!(again.as_ptr(), ptr, "the flushed buffer comes back");
        assert!(again.is_empty() && again.capacity() >= 1200);
        // Many flushed at once: only MAX_SPARE are kept; large ones never.
        for _ in 0..4 * MAX_SPARE {
            out.push(addr(1), vec![0; 100], &mut flush);
        }
        out.push(addr(1), vec![0; MAX_SPARE_BYTES + 1], &mut flush);
        out.flush(&mut flush);
        assert_eq!(SPARE.with(|s| s.borrow().len()), MAX_SPARE);
        assert!(SPARE.with(|s| s.borrow().iter().all(|d| d.capacity() <= MAX_SPARE_BYTES)));
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

    /// A batch sender that records what it was asked and answers from a
    /// script: `Ok(n)` takes n datagrams, an error takes none.
    struct ScriptedBatch {
        answers: Vec<io::Result<usize>>,
        calls: Vec<(Vec<u8>, bool)>,
    }

    impl ScriptedBatch {
        fn new(answers: Vec<io::Result<usize>>) -> Self {
            ScriptedBatch {
                answers,
                calls: Vec::new(),
            }
        }

        /// The first byte of each datagram offered, and whether with offload.
        fn call(&mut self, d: &[Vec<u8>], gso: bool) -> io::Result<usize> {
            self.calls.push((d.iter().map(|d| d[0]).collect(), gso));
            if self.answers.is_empty() {
                Ok(d.len())
            } else {
                self.answers.remove(0)
            }
        }
    }

    fn five() -> Vec<Vec<u8>> {
        (0..5).map(|i| vec![i; 10]).collect()
    }

    #[test]
    fn a_device_without_segmentation_offload_turns_it_off_for_good() {
        let gso = AtomicBool::new(true);
        let mut b = ScriptedBatch::new(vec![Err(io::Error::from_raw_os_error(libc::EIO))]);
        let mut singles = 0;
        send_all(&five(), &gso, |d, g| b.call(d, g), |_| singles += 1);
        assert_eq!(
            b.calls,
            vec![(vec![0, 1, 2, 3, 4], true), (vec![0, 1, 2, 3, 4], false)]
        );
        assert!(!gso.load(Ordering::Relaxed), "cleared for every later send");
        assert_eq!(singles, 0);
        // The next send does not try it again.
        let mut b = ScriptedBatch::new(vec![]);
        send_all(&five(), &gso, |d, g| b.call(d, g), |_| singles += 1);
        assert_eq!(b.calls, vec![(vec![0, 1, 2, 3, 4], false)]);
    }

    #[test]
    fn another_offload_error_concerns_only_that_batch() {
        let gso = AtomicBool::new(true);
        // Two taken with offload, then EMSGSIZE, then the rest without it.
        let mut b = ScriptedBatch::new(vec![
            Ok(2),
            Err(io::Error::from_raw_os_error(libc::EMSGSIZE)),
        ]);
        let mut singles = 0;
        send_all(&five(), &gso, |d, g| b.call(d, g), |_| singles += 1);
        assert_eq!(
            b.calls,
            vec![
                (vec![0, 1, 2, 3, 4], true),
                (vec![2, 3, 4], true),
                (vec![2, 3, 4], false)
            ]
        );
        assert!(gso.load(Ordering::Relaxed), "kept for the next send");
        assert_eq!(singles, 0);
    }

    #[test]
    fn a_full_socket_drops_the_rest_and_other_errors_send_one_by_one() {
        let gso = AtomicBool::new(false);
        let mut b = ScriptedBatch::new(vec![Ok(1), Err(io::ErrorKind::WouldBlock.into())]);
        let mut singles = Vec::new();
        send_all(&five(), &gso, |d, g| b.call(d, g), |d| singles.push(d[0]));
        assert_eq!(b.calls.len(), 2);
        assert!(singles.is_empty(), "dropped, as UDP drops them");

        let mut b = ScriptedBatch::new(vec![Ok(2), Err(io::Error::from_raw_os_error(libc::EPERM))]);
        send_all(&five(), &gso, |d, g| b.call(d, g), |d| singles.push(d[0]));
        assert_eq!(
            b.calls,
            vec![(vec![0, 1, 2, 3, 4], false), (vec![2, 3, 4], false)]
        );
        assert_eq!(
            singles,
            vec![2, 3, 4],
            "the rest, each on its own, in order"
        );
    }

    /// A sender, a receiver with a read timeout, and the receiver's address.
    fn loopback_pair() -> (std::net::UdpSocket, std::net::UdpSocket, SocketAddr) {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = rx.local_addr().unwrap();
        (tx, rx, to)
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_batch_arrives_as_separate_datagrams_in_order() {
        let (tx, rx, to) = loopback_pair();
        let datagrams: Vec<Vec<u8>> = (0..MAX_BATCH + 6).map(|i| vec![i as u8; 100 + i]).collect();
        assert_eq!(send_batch(&tx, to, &datagrams, false).unwrap(), MAX_BATCH);
        assert_eq!(
            send_batch(&tx, to, &datagrams[MAX_BATCH..], false).unwrap(),
            6
        );
        assert_eq!(send_batch(&tx, to, &[], false).unwrap(), 0);
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
        assert!(send_batch(&tx, to, &[vec![0u8; 10]], false).is_err());
        assert!(send_batch(&tx, to, &[vec![0u8; 10], vec![1u8; 10]], true).is_err());
    }

    #[test]
    fn runs_are_equal_sizes_ending_with_at_most_one_shorter() {
        let runs_of = |sizes: &[usize]| {
            let mut runs = vec![0; sizes.len()];
            let n = gso_runs(sizes, &mut runs);
            runs.truncate(n);
            runs
        };
        // A frame: equal fragments and a short last one; then audio.
        assert_eq!(runs_of(&[1200, 1200, 1200, 700, 160]), vec![4, 1]);
        // A longer datagram starts a new run; a short one ends a run.
        assert_eq!(runs_of(&[500, 1200, 1200, 300, 300]), vec![1, 3, 1]);
        assert_eq!(runs_of(&[100, 100, 100]), vec![3]);
        assert_eq!(runs_of(&[100]), vec![1]);
        assert_eq!(runs_of(&[]), Vec::<usize>::new());
        // Empty datagrams travel alone.
        assert_eq!(runs_of(&[0, 0, 5, 0]), vec![1, 1, 1, 1]);
        // No run is longer than MAX_GSO_BYTES.
        let big = vec![1200; 60];
        let runs = runs_of(&big);
        assert_eq!(runs.iter().sum::<usize>(), 60);
        assert!(runs.iter().all(|&r| r * 1200 <= MAX_GSO_BYTES), "{runs:?}");
        assert_eq!(runs[0], MAX_GSO_BYTES / 1200);
    }

    /// With segmentation offload the receiver still gets every datagram,
    /// whole and in order: runs of equal sizes, short last ones, singles.
    #[cfg(target_os = "linux")]
    #[test]
    fn segmented_batches_arrive_as_the_same_datagrams() {
        let (tx, rx, to) = loopback_pair();
        assert!(gso_supported(&tx), "this kernel has UDP_SEGMENT");
        let sizes = [1200, 1200, 1200, 700, 160, 1200, 1200, 90, 90, 90, 1300];
        let datagrams: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| (0..n).map(|k| (i * 7 + k) as u8).collect())
            .collect();
        assert_eq!(send_batch(&tx, to, &datagrams, true).unwrap(), sizes.len());
        let mut buf = [0u8; 2048];
        for d in &datagrams {
            let (n, _) = rx.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], &d[..], "datagram of {} bytes", d.len());
        }
    }
}
