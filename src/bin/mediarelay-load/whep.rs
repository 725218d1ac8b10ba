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

use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use str0m::change::SdpAnswer;
use str0m::config::DtlsCert;
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};
use tokio::net::UdpSocket;

use crate::Error;
use crate::latency::{self, Latencies};
use crate::stats::ViewerStats;

/// Datagrams read from the socket before str0m's timers get a turn.
const BATCH: usize = 64;
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

/// One WHEP viewer: offers, connects, receives until `until`, then DELETEs
/// its session.
pub async fn whep_viewer(
    client: &reqwest::Client,
    http: SocketAddr,
    path: &str,
    decode: bool,
    s: &ViewerStats,
    latencies: &Latencies,
    until: Instant,
) -> Result<(), Error> {
    let socket = UdpSocket::bind(SocketAddr::new(local_ip_towards(http)?, 0)).await?;
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
        &mut rtc, &socket, local, decode, s, latencies, started, joined_us, until,
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
    let mut buf = vec![0u8; 2048];
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
            let (n, source) = match socket.try_recv_from(&mut buf) {
                Ok(got) => got,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.into()),
            };
            let Some(datagram) = buf.get(..n) else {
                continue;
            };
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
