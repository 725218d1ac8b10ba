//! WHEP viewers (draft-ietf-wish-whep): each POSTs an SDP offer (recvonly
//! H.264 + Opus) to `/{path}/whep` and runs a full ICE (controlling) peer on
//! str0m with its own UDP socket: ICE, DTLS and SRTP as a browser does.
//!
//! A *decode* viewer feeds every datagram to str0m and counts whole video
//! frames (`MediaData`), reading the latency stamps in them. A *counting*
//! viewer spares the load tool the SRTP work: it feeds str0m STUN and DTLS
//! only, and once connected only counts RTP/RTCP datagrams (first byte
//! 128..=191, RFC 7983 §7), tracking RTP sequence gaps per SSRC from the
//! clear-text RTP header (RFC 3550 §5.1; SRTP encrypts only the payload,
//! RFC 3711 §3.1).
//!
//! Every viewer's socket asks for `UDP_GRO` (udp(7), Linux ≥ 5.0) unless
//! told not to: a run of datagrams the server sent as one segmented send
//! (`UDP_SEGMENT`) then arrives as one read, split here at the segment size
//! the kernel reports. On loopback the receivers' kernel work runs on the
//! sender's CPU and is charged to the server; taking a run in one piece keeps
//! that work (one receive per run instead of one per datagram) from standing
//! in for the server's own. The datagrams a viewer sees are the same.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::OnceLock;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use str0m::change::SdpAnswer;
use str0m::config::DtlsCert;
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use crate::Error;
use crate::latency::{self, Latencies};
use crate::stats::ViewerStats;

/// Datagrams read from the socket before str0m's timers get a turn.
const BATCH: usize = 64;
/// Room for one read: a whole segmented run (at most 64 KiB, udp(7)).
const READ_BUFFER: usize = 65_536;
/// Streams whose sequence numbers a counting viewer follows (video, audio,
/// retransmissions; more are counted but not followed).
const MAX_SSRCS: usize = 8;

/// One DTLS certificate for every viewer (making one costs tens of ms).
fn cert() -> Result<DtlsCert, Error> {
    static CERT: OnceLock<Option<DtlsCert>> = OnceLock::new();
    CERT.get_or_init(|| {
        mediarelay::webrtc::dtls::crypto_provider()
            .dtls_provider
            .generate_certificate()
    })
    .clone()
    .ok_or_else(|| "no DTLS certificate".into())
}

/// The local address the kernel would send from to reach `server`.
fn local_ip_towards(server: SocketAddr) -> Result<IpAddr, Error> {
    let probe = std::net::UdpSocket::bind(match server {
        SocketAddr::V4(_) => "0.0.0.0:0",
        SocketAddr::V6(_) => "[::]:0",
    })?;
    probe.connect(server)?;
    Ok(probe.local_addr()?.ip())
}

/// How a viewer takes its media in.
#[derive(Clone, Copy)]
pub struct Viewing {
    /// Decrypt and depacketize (whole frames, latency), or only count.
    pub decode: bool,
    /// Take a segmented run in one read (`UDP_GRO`).
    pub gro: bool,
}

/// One WHEP viewer: offers, connects, receives until `until`, then DELETEs
/// its session.
pub async fn whep_viewer(
    client: &reqwest::Client,
    http: SocketAddr,
    path: &str,
    how: Viewing,
    s: &ViewerStats,
    latencies: &Latencies,
    until: Instant,
) -> Result<(), Error> {
    let socket = UdpSocket::bind(SocketAddr::new(local_ip_towards(http)?, 0)).await?;
    if how.gro {
        // Without it (an older kernel) runs arrive datagram by datagram.
        let _ = enable_gro(&socket);
    }
    let local = socket.local_addr()?;
    // The server's DTLS set-up (one validated configuration for all
    // sessions): the load tool's own per-viewer work stays out of the
    // server's figures.
    let config = RtcConfig::new()
        .set_crypto_provider(mediarelay::webrtc::dtls::crypto_provider())
        .set_dtls_cert(cert()?)
        .set_stats_interval(None)
        .clear_codecs()
        .enable_h264(true)
        .enable_opus(true, false);
    let mut rtc = config.build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp")?);
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
    let (offer, pending) = api.apply().ok_or("str0m made no offer")?;

    let started = Instant::now();
    let joined_us = latency::unix_us_now();
    let answer = client
        .post(format!("http://{http}/{path}/whep"))
        .header("Content-Type", "application/sdp")
        .body(offer.to_sdp_string())
        .send()
        .await?;
    let status = answer.status();
    let location = answer
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .map(str::to_string);
    let body = answer.text().await?;
    ViewerStats::mark(&s.answered_us, started);
    if status.as_u16() != 201 {
        return Err(format!("WHEP POST: {status}: {body}").into());
    }
    let answer = SdpAnswer::from_sdp_string(&body)?;
    rtc.sdp_api().accept_answer(pending, answer)?;

    let result = receive(
        &mut rtc, &socket, local, how.decode, s, latencies, started, joined_us, until,
    )
    .await;
    if let Some(location) = location {
        let url = format!("http://{http}{location}");
        let _ = tokio::time::timeout(Duration::from_secs(2), client.delete(url).send()).await;
    }
    result
}

/// One RTP stream a counting viewer follows.
struct Stream {
    ssrc: u32,
    seq: u16,
    timestamp: u32,
    /// RTP timestamps seen change: frames for video (RFC 6184 §5.1: the
    /// packets of one access unit share a timestamp), packets for audio.
    frames: u64,
    bytes: u64,
}

/// The RTP streams a counting viewer sees, from clear-text RTP headers.
#[derive(Default)]
struct Streams {
    streams: Vec<Stream>,
}

impl Streams {
    /// Takes one packet in; returns the packets skipped before it (0 for
    /// in-order packets, duplicates and late ones).
    fn packet(&mut self, ssrc: u32, seq: u16, timestamp: u32, len: usize) -> u64 {
        let Some(s) = self.streams.iter_mut().find(|s| s.ssrc == ssrc) else {
            if self.streams.len() < MAX_SSRCS {
                self.streams.push(Stream {
                    ssrc,
                    seq,
                    timestamp,
                    frames: 1,
                    bytes: len as u64,
                });
            }
            return 0;
        };
        s.bytes += len as u64;
        let step = seq.wrapping_sub(s.seq);
        if step == 0 || step >= 0x8000 {
            return 0;
        }
        s.seq = seq;
        if timestamp != s.timestamp {
            s.timestamp = timestamp;
            s.frames += 1;
        }
        u64::from(step - 1)
    }

    /// Frames of the video stream: the stream with the most bytes.
    fn video_frames(&self) -> u64 {
        self.streams
            .iter()
            .max_by_key(|s| s.bytes)
            .map_or(0, |s| s.frames)
    }
}

/// SRTP or SRTCP by the first byte (RFC 7983 §7).
fn is_rtp_or_rtcp(datagram: &[u8]) -> bool {
    datagram.first().is_some_and(|b| (128..=191).contains(b))
}

/// `(ssrc, seq, timestamp)` of an RTP packet (RFC 3550 §5.1), `None` for
/// RTCP (payload types 200–206 are 72–78 with the marker bit off, RFC 5761
/// §4) or a short datagram.
fn rtp_header(datagram: &[u8]) -> Option<(u32, u16, u32)> {
    let pt = datagram.get(1)? & 0x7f;
    if (72..=78).contains(&pt) {
        return None;
    }
    let seq = u16::from_be_bytes(datagram.get(2..4)?.try_into().ok()?);
    let timestamp = u32::from_be_bytes(datagram.get(4..8)?.try_into().ok()?);
    let ssrc = u32::from_be_bytes(datagram.get(8..12)?.try_into().ok()?);
    Some((ssrc, seq, timestamp))
}

/// Asks the kernel to keep a run of datagrams sent with `UDP_SEGMENT`
/// together for this socket (`UDP_GRO`, udp(7)).
fn enable_gro(socket: &UdpSocket) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: a valid descriptor and an int option of the right size.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_UDP,
            libc::UDP_GRO,
            std::ptr::from_ref(&on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads one datagram, or one run of datagrams kept together by `UDP_GRO`:
/// `(bytes, source, segment size)`; the run is its datagrams back to back,
/// each `segment size` long but the last (a lone datagram is its own
/// segment).
fn recv_run(socket: &UdpSocket, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, usize)> {
    socket.try_io(Interest::READABLE, || {
        // u64s: the control buffer must be aligned for `cmsghdr`.
        let mut control = [0u64; 8];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: every pointer in `msg` is to a live buffer of the length
        // given with it; the kernel writes at most those lengths, and the
        // control messages are walked with the libc macros within
        // `msg_controllen`.
        let (read, source) = unsafe {
            socket2::SockAddr::try_init(|name, name_len| {
                let mut msg: libc::msghdr = std::mem::zeroed();
                msg.msg_name = name.cast();
                msg.msg_namelen = *name_len;
                msg.msg_iov = &mut iov;
                msg.msg_iovlen = 1;
                msg.msg_control = control.as_mut_ptr().cast();
                msg.msg_controllen = std::mem::size_of_val(&control);
                let n = libc::recvmsg(socket.as_raw_fd(), &mut msg, 0);
                if n < 0 {
                    return Err(io::Error::last_os_error());
                }
                *name_len = msg.msg_namelen;
                let mut segment = None;
                let mut c = libc::CMSG_FIRSTHDR(&msg);
                while !c.is_null() {
                    if (*c).cmsg_level == libc::IPPROTO_UDP && (*c).cmsg_type == libc::UDP_GRO {
                        let size =
                            std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                        segment = usize::try_from(size).ok();
                    }
                    c = libc::CMSG_NXTHDR(&msg, c);
                }
                Ok((n as usize, segment))
            })?
        };
        let (n, segment) = read;
        let source = source
            .as_socket()
            .ok_or_else(|| io::Error::other("a datagram from a non-IP address"))?;
        Ok((n, source, segment.filter(|&s| s > 0).unwrap_or(n)))
    })
}

/// Lets str0m send what it has; returns its next timeout.
fn drive(
    rtc: &mut Rtc,
    socket: &UdpSocket,
    connected: &mut bool,
    s: &ViewerStats,
    latencies: &Latencies,
    started: Instant,
    joined_us: u64,
) -> Result<Instant, Error> {
    loop {
        match rtc.poll_output()? {
            Output::Transmit(t) => {
                let _ = socket.try_send_to(&t.contents, t.destination);
            }
            Output::Timeout(at) => return Ok(at),
            Output::Event(Event::Connected) => {
                *connected = true;
                ViewerStats::mark(&s.connected_us, started);
            }
            Output::Event(Event::MediaData(m)) if m.params.spec().codec.is_video() => {
                s.frames.fetch_add(1, Ordering::Relaxed);
                s.units.fetch_add(1, Ordering::Relaxed);
                s.first(started);
                if !m.contiguous {
                    s.lost.fetch_add(1, Ordering::Relaxed);
                }
                latencies.record(&m.data, latency::unix_us_now(), joined_us);
            }
            Output::Event(_) => {}
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn receive(
    rtc: &mut Rtc,
    socket: &UdpSocket,
    local: SocketAddr,
    decode: bool,
    s: &ViewerStats,
    latencies: &Latencies,
    started: Instant,
    joined_us: u64,
    until: Instant,
) -> Result<(), Error> {
    let mut buf = vec![0u8; READ_BUFFER];
    let mut connected = false;
    let mut streams = Streams::default();
    // Everything str0m can do now, and when to ask it again.
    let drive_now = |rtc: &mut Rtc, connected: &mut bool| {
        drive(rtc, socket, connected, s, latencies, started, joined_us)
    };
    let mut timeout = drive_now(rtc, &mut connected)?;
    while Instant::now() < until {
        if !rtc.is_alive() {
            return Err("the WebRTC session ended".into());
        }
        tokio::select! {
            r = socket.readable() => r?,
            _ = tokio::time::sleep_until(timeout.min(until).into()) => {}
        }
        for _ in 0..BATCH {
            let (n, source, segment) = match recv_run(socket, &mut buf) {
                Ok(got) => got,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.into()),
            };
            let Some(run) = buf.get(..n) else {
                continue;
            };
            for datagram in run.chunks(segment.max(1)) {
                let n = datagram.len();
                s.bytes.fetch_add(n as u64, Ordering::Relaxed);
                if connected && is_rtp_or_rtcp(datagram) {
                    s.packets.fetch_add(1, Ordering::Relaxed);
                    if !decode {
                        if let Some((ssrc, seq, timestamp)) = rtp_header(datagram) {
                            s.units.fetch_add(1, Ordering::Relaxed);
                            s.first(started);
                            let lost = streams.packet(ssrc, seq, timestamp, n);
                            s.lost.fetch_add(lost, Ordering::Relaxed);
                        }
                        continue;
                    }
                }
                let Ok(contents) = datagram.try_into() else {
                    continue;
                };
                rtc.handle_input(Input::Receive(
                    Instant::now(),
                    Receive {
                        proto: Protocol::Udp,
                        source,
                        destination: local,
                        contents,
                    },
                ))?;
                timeout = drive_now(rtc, &mut connected)?;
            }
        }
        let now = Instant::now();
        if now >= timeout {
            rtc.handle_input(Input::Timeout(now))?;
            timeout = drive_now(rtc, &mut connected)?;
        }
    }
    if !decode {
        s.frames
            .fetch_add(streams.video_frames(), Ordering::Relaxed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `payload` from `from` to `to` as one `UDP_SEGMENT` send of
    /// `segment`-byte datagrams (udp(7)).
    fn send_segmented(from: &std::net::UdpSocket, to: SocketAddr, payload: &[u8], segment: u16) {
        let SocketAddr::V4(to) = to else {
            panic!("the test binds IPv4")
        };
        let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_port = to.port().to_be();
        addr.sin_addr.s_addr = u32::from(*to.ip()).to_be();
        let mut iov = libc::iovec {
            iov_base: payload.as_ptr().cast_mut().cast(),
            iov_len: payload.len(),
        };
        let mut control = [0u64; 4];
        // SAFETY: the pointers are to live buffers of the lengths given; one
        // control message written within `control`.
        let sent = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_name = std::ptr::from_mut(&mut addr).cast();
            msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = libc::CMSG_SPACE(2) as usize;
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_UDP;
            (*c).cmsg_type = libc::UDP_SEGMENT;
            (*c).cmsg_len = libc::CMSG_LEN(2) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), segment);
            libc::sendmsg(from.as_raw_fd(), &msg, 0)
        };
        assert_eq!(
            sent,
            payload.len() as isize,
            "{}",
            io::Error::last_os_error()
        );
    }

    async fn read_runs(socket: &UdpSocket, count: usize) -> Vec<(Vec<u8>, SocketAddr, usize)> {
        let mut buf = vec![0u8; READ_BUFFER];
        let mut runs = Vec::new();
        while runs.len() < count {
            tokio::time::timeout(Duration::from_secs(5), socket.readable())
                .await
                .expect("a datagram within 5 s")
                .unwrap();
            match recv_run(socket, &mut buf) {
                Ok((n, from, segment)) => runs.push((buf[..n].to_vec(), from, segment)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        runs
    }

    #[tokio::test]
    async fn a_segmented_run_is_read_whole_with_gro_and_datagram_by_datagram_without() {
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let payload: Vec<u8> = (0..250u32).map(|i| (i / 100) as u8 + 1).collect();

        let gro = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        enable_gro(&gro).unwrap();
        send_segmented(&sender, gro.local_addr().unwrap(), &payload, 100);
        sender.send_to(b"lone", gro.local_addr().unwrap()).unwrap();
        let runs = read_runs(&gro, 2).await;
        assert_eq!(runs[0].0, payload);
        assert_eq!(runs[0].1, sender.local_addr().unwrap());
        assert_eq!(runs[0].2, 100);
        let split: Vec<&[u8]> = runs[0].0.chunks(runs[0].2).collect();
        assert_eq!(
            split.iter().map(|d| d.len()).collect::<Vec<_>>(),
            [100, 100, 50]
        );
        assert!(split[2].iter().all(|&b| b == 3));
        assert_eq!((runs[1].0.as_slice(), runs[1].2), (&b"lone"[..], 4));

        let plain = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        send_segmented(&sender, plain.local_addr().unwrap(), &payload, 100);
        let runs = read_runs(&plain, 3).await;
        let sizes: Vec<(usize, usize)> = runs.iter().map(|r| (r.0.len(), r.2)).collect();
        assert_eq!(sizes, [(100, 100), (100, 100), (50, 50)]);
        assert_eq!(runs[1].0, payload[100..200]);
    }

    #[test]
    fn sequence_gaps_are_counted_per_stream_and_wrap() {
        let mut t = Streams::default();
        assert_eq!(t.packet(1, 65_534, 0, 100), 0);
        assert_eq!(t.packet(1, 65_535, 0, 100), 0);
        assert_eq!(t.packet(1, 2, 3000, 100), 2); // 0 and 1 missing, across the wrap
        assert_eq!(t.packet(2, 10, 0, 10), 0);
        assert_eq!(t.packet(2, 11, 960, 10), 0);
        assert_eq!(t.packet(1, 1, 3000, 100), 0); // late: not a gap
        assert_eq!(t.packet(1, 2, 3000, 100), 0); // duplicate
        assert_eq!(t.packet(1, 6, 6000, 100), 3);
    }

    #[test]
    fn video_frames_are_timestamp_changes_of_the_biggest_stream() {
        let mut t = Streams::default();
        // Video: 3 frames of 3 packets each; audio: 5 small packets.
        let mut seq = 0;
        for frame in 0..3u32 {
            for _ in 0..3 {
                seq += 1;
                t.packet(7, seq, frame * 3000, 1200);
            }
        }
        for p in 0..5u16 {
            t.packet(9, p, u32::from(p) * 960, 80);
        }
        assert_eq!(t.video_frames(), 3);
        assert_eq!(Streams::default().video_frames(), 0);
    }

    #[test]
    fn rtp_is_told_from_rtcp_and_other_datagrams() {
        let mut rtp = [0u8; 12];
        rtp[0] = 0x80;
        rtp[1] = 96 | 0x80; // marker bit, payload type 96
        rtp[2..4].copy_from_slice(&300u16.to_be_bytes());
        rtp[8..12].copy_from_slice(&0xdead_beefu32.to_be_bytes());
        assert!(is_rtp_or_rtcp(&rtp));
        rtp[4..8].copy_from_slice(&90_000u32.to_be_bytes());
        assert_eq!(rtp_header(&rtp), Some((0xdead_beef, 300, 90_000)));
        let rtcp_sr = [0x80, 200, 0, 6, 0, 0, 0, 1, 0, 0, 0, 0];
        assert!(is_rtp_or_rtcp(&rtcp_sr));
        assert_eq!(rtp_header(&rtcp_sr), None);
        // STUN (0..=3) and DTLS (20..=63) are not RTP.
        assert!(!is_rtp_or_rtcp(&[0x00, 0x01]));
        assert!(!is_rtp_or_rtcp(&[22, 0xfe, 0xfd]));
        assert_eq!(rtp_header(&rtp[..8]), None);
    }
}
