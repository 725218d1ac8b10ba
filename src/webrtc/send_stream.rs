//! One outgoing RTP stream of a WHEP session, sent by the session itself
//! rather than through str0m: sequence numbers, the RTP header with its
//! extensions (RFC 3550 §5.1, RFC 8285 §4.2), the packets kept for
//! retransmission (RFC 4588 §4: as RTX, on their own SSRC and payload
//! type), and what its sender reports say (RFC 3550 §6.4.1).
//!
//! Why not str0m: per viewer, str0m kept ~50 KiB for each video stream
//! (a 408-byte parsed packet per resend slot, its send queue, per-stream
//! records) and spent about a quarter of the server's CPU per packet
//! besides the encryption. Here a kept packet is its shared payload (an
//! `Arc` of the path's packet) and four numbers, so a viewer can keep
//! several times more packets for NACKs in a fraction of the memory.
//!
//! Pure state: the session protects and sends what this writes.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::rtcp::SenderInfo;

/// A header's most bytes: 12 fixed, the extension block's 4, the
/// abs-send-time element (4) and a MID of up to 16 bytes (17), padded.
pub(crate) const MAX_HEADER: usize = 12 + 4 + 4 + 20;

/// Header extension ids (RFC 8285 one-byte form) the answer agreed on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Extensions {
    /// `http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time`.
    pub abs_send_time: Option<u8>,
    /// `urn:ietf:params:rtp-hdrext:sdes:mid` (RFC 8843 §15) and the MID.
    pub mid: Option<(u8, Vec<u8>)>,
}

/// The identity of an outgoing stream, from the SDP answer.
#[derive(Debug, Clone)]
pub(crate) struct StreamSpec {
    pub ssrc: u32,
    pub pt: u8,
    /// RTX SSRC and payload type (RFC 4588), when the answer has them.
    pub rtx: Option<(u32, u8)>,
    /// RTP clock rate (Hz).
    pub clock: u32,
    pub extensions: Extensions,
    pub cname: Vec<u8>,
}

/// A packet kept for resending.
#[derive(Debug)]
struct Kept {
    seq: u64,
    time: u32,
    marker: bool,
    payload: Arc<[u8]>,
}

/// A stream's send state.
#[derive(Debug)]
pub(crate) struct SendStream {
    spec: StreamSpec,
    /// Extended sequence number of the next packet (RFC 3711 §3.3.1: the
    /// SRTP index; starts below 2^15 so the first wrap is far off).
    next_seq: u64,
    /// Next RTX sequence number (extended too: RTX packets are SRTP
    /// packets of their own SSRC).
    next_rtx_seq: u64,
    /// Ring of sent packets by sequence number.
    kept: Box<[Option<Kept>]>,
    packets: u32,
    octets: u32,
    /// RTP time and wall clock of the last packet written.
    last: Option<(u32, Instant)>,
}

impl SendStream {
    /// `keep`: packets kept for NACKs (at least one).
    pub fn new(spec: StreamSpec, keep: usize) -> SendStream {
        let kept = (0..keep.max(1)).map(|_| None).collect();
        SendStream {
            spec,
            next_seq: u64::from(rand::random::<u16>() & 0x7fff),
            next_rtx_seq: u64::from(rand::random::<u16>() & 0x7fff),
            kept,
            packets: 0,
            octets: 0,
            last: None,
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.spec.ssrc
    }

    /// Writes the header of the next media packet into `header`, keeps the
    /// packet for resending, and returns its SRTP index. `wallclock` is the
    /// time the RTP time stands for (the sender reports' mapping).
    pub fn next(
        &mut self,
        time: u32,
        marker: bool,
        payload: &Arc<[u8]>,
        wallclock: Instant,
        header: &mut Vec<u8>,
    ) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        write_header(
            header,
            &self.spec.extensions,
            self.spec.pt,
            marker,
            seq as u16,
            time,
            self.spec.ssrc,
        );
        let slot = (seq % self.kept.len() as u64) as usize;
        self.kept[slot] = Some(Kept {
            seq,
            time,
            marker,
            payload: Arc::clone(payload),
        });
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(payload.len() as u32);
        self.last = Some((time, wallclock));
        seq
    }

    /// The RTX packet resending `seq` (RFC 4588 §4: the original sequence
    /// number, then the original payload), written into `header` and
    /// `payload`; `None` when it is no longer kept or the stream has no
    /// RTX.
    pub fn resend(&mut self, seq: u16, header: &mut Vec<u8>, payload: &mut Vec<u8>) -> Option<u64> {
        let (rtx_ssrc, rtx_pt) = self.spec.rtx?;
        let kept = self.find(seq)?;
        let (time, marker) = (kept.time, kept.marker);
        payload.clear();
        payload.extend_from_slice(&seq.to_be_bytes());
        payload.extend_from_slice(&kept.payload);
        let index = self.next_rtx_seq;
        self.next_rtx_seq += 1;
        write_header(
            header,
            &self.spec.extensions,
            rtx_pt,
            marker,
            index as u16,
            time,
            rtx_ssrc,
        );
        Some(index)
    }

    /// The kept packet with 16-bit sequence number `seq`.
    fn find(&self, seq: u16) -> Option<&Kept> {
        // The newest packet with these low bits (a NACK names recent ones).
        let newest = self.next_seq.checked_sub(1)?;
        let back = u64::from((newest as u16).wrapping_sub(seq));
        let full = newest.checked_sub(back)?;
        let slot = (full % self.kept.len() as u64) as usize;
        self.kept[slot].as_ref().filter(|k| k.seq == full)
    }

    /// Empties the resend buffer (the resend budget refused one: those
    /// queued behind it are not sent either).
    pub fn forget(&mut self) {
        self.kept.iter_mut().for_each(|k| *k = None);
    }

    /// The sender report of this stream at `now` (the RTP time now, from
    /// the last packet's time and wall clock), or `None` before any packet.
    pub fn sender_info(&self, now: Instant, wall: SystemTime) -> Option<SenderInfo> {
        let (time, at) = self.last?;
        let since = now.saturating_duration_since(at);
        let ahead = at.saturating_duration_since(now);
        let ticks =
            |d: Duration| (d.as_nanos() * u128::from(self.spec.clock) / 1_000_000_000) as u32;
        let rtp = time.wrapping_add(ticks(since)).wrapping_sub(ticks(ahead));
        Some(SenderInfo {
            ssrc: self.spec.ssrc,
            ntp: super::rtcp::ntp(wall),
            rtp,
            packets: self.packets,
            octets: self.octets,
        })
    }

    pub fn cname(&self) -> &[u8] {
        &self.spec.cname
    }
}

/// Writes an RTP header (RFC 3550 §5.1) with the one-byte header
/// extensions (RFC 8285 §4.2) the answer agreed on.
fn write_header(
    out: &mut Vec<u8>,
    ext: &Extensions,
    pt: u8,
    marker: bool,
    seq: u16,
    time: u32,
    ssrc: u32,
) {
    out.clear();
    let mid_fits = ext
        .mid
        .as_ref()
        .is_some_and(|(_, m)| (1..=16).contains(&m.len()));
    let has_ext = ext.abs_send_time.is_some() || mid_fits;
    out.push(0x80 | if has_ext { 0x10 } else { 0 });
    out.push(if marker { 0x80 } else { 0 } | (pt & 0x7f));
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&time.to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    if !has_ext {
        return;
    }
    out.extend_from_slice(&[0xbe, 0xde, 0, 0]);
    let start = out.len();
    if let Some(id) = ext.abs_send_time {
        out.push(id << 4 | 2);
        out.extend_from_slice(&abs_send_time(SystemTime::now()));
    }
    // A one-byte element carries 1–16 bytes (RFC 8285 §4.2); a MID that
    // does not fit is not sent (the answer's a=ssrc lines identify the
    // stream without it).
    if let Some((id, mid)) = &ext.mid
        && (1..=16).contains(&mid.len())
    {
        out.push(id << 4 | (mid.len() as u8 - 1));
        out.extend_from_slice(mid);
    }
    while !(out.len() - start).is_multiple_of(4) {
        out.push(0);
    }
    let words = ((out.len() - start) / 4) as u16;
    out[start - 2..start].copy_from_slice(&words.to_be_bytes());
}

/// abs-send-time: seconds in 6.18 fixed point, the low 24 bits
/// (webrtc.org's `abs-send-time` extension).
fn abs_send_time(now: SystemTime) -> [u8; 3] {
    let d = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let v =
        ((d.as_secs() << 18) | ((u64::from(d.subsec_nanos()) << 18) / 1_000_000_000)) & 0xff_ffff;
    let b = (v as u32).to_be_bytes();
    [b[1], b[2], b[3]]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(rtx: bool) -> StreamSpec {
        StreamSpec {
            ssrc: 0x11223344,
            pt: 102,
            rtx: rtx.then_some((0x55667788, 103)),
            clock: 90_000,
            extensions: Extensions {
                abs_send_time: Some(2),
                mid: Some((4, b"0".to_vec())),
            },
            cname: b"cname".to_vec(),
        }
    }

    fn payload(n: u8) -> Arc<[u8]> {
        Arc::from(vec![n; 100])
    }

    #[test]
    fn writes_headers_with_one_byte_extensions() {
        let mut s = SendStream::new(spec(true), 8);
        let first = s.next_seq;
        let mut h = Vec::new();
        let index = s.next(90_000, true, &payload(1), Instant::now(), &mut h);
        assert_eq!(index, first);
        assert_eq!(h[0], 0x90, "V=2, X");
        assert_eq!(h[1], 0x80 | 102, "marker, PT");
        assert_eq!(u16::from_be_bytes([h[2], h[3]]), first as u16);
        assert_eq!(&h[4..8], &90_000u32.to_be_bytes());
        assert_eq!(&h[8..12], &0x11223344u32.to_be_bytes());
        // 0xBEDE, two words: abs-send-time (id 2, 3 bytes), MID (id 4, 1 byte), padding.
        assert_eq!(&h[12..16], &[0xbe, 0xde, 0, 2]);
        assert_eq!(h[16], 2 << 4 | 2);
        assert_eq!(&h[20..24], &[4 << 4, b'0', 0, 0]);
        assert_eq!(h.len(), 24);
        assert!(h.len() <= MAX_HEADER);
        let index = s.next(93_000, false, &payload(2), Instant::now(), &mut h);
        assert_eq!(index, first + 1);
        assert_eq!(h[1], 102);
        // A MID too long (or empty) for a one-byte element is left out.
        let mut long = spec(true);
        long.extensions = Extensions {
            abs_send_time: None,
            mid: Some((4, vec![b'm'; 17])),
        };
        SendStream::new(long.clone(), 8).next(0, false, &payload(0), Instant::now(), &mut h);
        assert_eq!(h.len(), 12);
        long.extensions.mid = Some((4, Vec::new()));
        SendStream::new(long, 8).next(0, false, &payload(0), Instant::now(), &mut h);
        assert_eq!(h.len(), 12);
        // No extensions: a 12-byte header.
        let mut plain = spec(false);
        plain.extensions = Extensions::default();
        let mut s = SendStream::new(plain, 8);
        s.next(0, false, &payload(0), Instant::now(), &mut h);
        assert_eq!(h.len(), 12);
        assert_eq!(h[0], 0x80);
    }

    /// A NACKed packet is resent as RTX while it is kept: its original
    /// sequence number first, on the RTX SSRC and payload type, with RTX
    /// sequence numbers of its own.
    #[test]
    fn resends_kept_packets_as_rtx() {
        let mut s = SendStream::new(spec(true), 4);
        let mut h = Vec::new();
        let mut seqs = Vec::new();
        for i in 0..6u8 {
            seqs.push(s.next(
                u32::from(i) * 3000,
                i == 5,
                &payload(i),
                Instant::now(),
                &mut h,
            ) as u16);
        }
        let (mut rh, mut rp) = (Vec::new(), Vec::new());
        // The two oldest fell out of the four-packet ring.
        assert!(s.resend(seqs[0], &mut rh, &mut rp).is_none());
        assert!(s.resend(seqs[1], &mut rh, &mut rp).is_none());
        let a = s.resend(seqs[2], &mut rh, &mut rp).expect("kept");
        assert_eq!(&rp[..2], &seqs[2].to_be_bytes());
        assert_eq!(&rp[2..], &[2u8; 100][..]);
        assert_eq!(rh[1], 103);
        assert_eq!(&rh[4..8], &6000u32.to_be_bytes());
        assert_eq!(&rh[8..12], &0x55667788u32.to_be_bytes());
        let b = s.resend(seqs[5], &mut rh, &mut rp).expect("kept");
        assert_eq!(b, a + 1);
        assert_eq!(rh[1], 0x80 | 103, "the marker is kept");
        // Never sent, or forgotten.
        assert!(
            s.resend(seqs[5].wrapping_add(1), &mut rh, &mut rp)
                .is_none()
        );
        s.forget();
        assert!(s.resend(seqs[5], &mut rh, &mut rp).is_none());
        // No RTX negotiated: nothing is resent.
        let mut s = SendStream::new(spec(false), 4);
        let seq = s.next(0, false, &payload(0), Instant::now(), &mut h) as u16;
        assert!(s.resend(seq, &mut rh, &mut rp).is_none());
    }

    /// Sequence numbers wrap in the header, not in the SRTP index, and a
    /// NACK after the wrap finds the packet.
    #[test]
    fn sequence_numbers_wrap_into_the_rollover_counter() {
        let mut s = SendStream::new(spec(true), 8);
        s.next_seq = 0xfffe;
        let mut h = Vec::new();
        let indexes: Vec<u64> = (0..4)
            .map(|_| s.next(0, false, &payload(0), Instant::now(), &mut h))
            .collect();
        assert_eq!(indexes, vec![0xfffe, 0xffff, 0x1_0000, 0x1_0001]);
        assert_eq!(u16::from_be_bytes([h[2], h[3]]), 1);
        let (mut rh, mut rp) = (Vec::new(), Vec::new());
        assert!(s.resend(0xffff, &mut rh, &mut rp).is_some());
        assert!(s.resend(0, &mut rh, &mut rp).is_some());
    }

    /// The sender report carries the RTP time of now, counted on from the
    /// last packet's time and wall clock, and the counts so far.
    #[test]
    fn sender_reports_extrapolate_the_rtp_time() {
        let mut s = SendStream::new(spec(true), 8);
        let now = Instant::now();
        assert!(s.sender_info(now, SystemTime::now()).is_none());
        let mut h = Vec::new();
        s.next(u32::MAX - 10, false, &payload(0), now, &mut h);
        s.next(u32::MAX - 10, true, &payload(0), now, &mut h);
        let info = s
            .sender_info(now + Duration::from_millis(100), SystemTime::now())
            .unwrap();
        assert_eq!(
            info.rtp, 8_989,
            "wrapped: 90 kHz × 0.1 s after u32::MAX - 10"
        );
        assert_eq!(info.packets, 2);
        assert_eq!(info.octets, 200);
        assert_eq!(info.ssrc, 0x11223344);
        // A frame stamped ahead of now (media time runs early) counts back.
        let mut s = SendStream::new(spec(true), 8);
        s.next(
            9000,
            false,
            &payload(0),
            now + Duration::from_millis(100),
            &mut h,
        );
        assert_eq!(s.sender_info(now, SystemTime::now()).unwrap().rtp, 0);
    }

    #[test]
    fn abs_send_time_is_6_18_fixed_point() {
        let t = std::time::UNIX_EPOCH + Duration::from_millis(64_500);
        // 64.5 s: 64 wraps the 6-bit seconds to 0, 0.5 s is 2^17.
        assert_eq!(abs_send_time(t), [0x02, 0x00, 0x00]);
    }
}
