//! The RTCP a WHEP session reads and writes itself (RFC 3550 §6): the
//! viewer's feedback — generic NACKs (RFC 4585 §6.2.1), picture loss
//! indications (§6.3.1) and full intra requests (RFC 5104 §4.3.1) — and the
//! session's sender reports with its CNAME (RFC 3550 §6.4.1, §6.5.1).
//! Everything else a viewer sends (receiver reports, REMB, SDES, BYE) is
//! skipped.

/// Packet types (RFC 3550 §12.1, RFC 4585 §6.1).
const SR: u8 = 200;
const SDES: u8 = 202;
const RTPFB: u8 = 205;
const PSFB: u8 = 206;
/// Feedback message types (RFC 4585 §6.2, §6.3; RFC 5104 §4.3.1).
const FMT_NACK: u8 = 1;
const FMT_PLI: u8 = 1;
const FMT_FIR: u8 = 4;
/// SDES item CNAME (RFC 3550 §6.5.1).
const CNAME: u8 = 1;

/// What a viewer asks of one of the session's streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Feedback {
    /// Resend packet `pid` and those of the 16 after it set in `blp`.
    Nack { ssrc: u32, pid: u16, blp: u16 },
    /// The picture is lost: a keyframe is needed (PLI or FIR).
    KeyframeRequest { ssrc: u32 },
}

impl Feedback {
    /// The media SSRC the request is about.
    pub fn ssrc(&self) -> u32 {
        match *self {
            Feedback::Nack { ssrc, .. } | Feedback::KeyframeRequest { ssrc } => ssrc,
        }
    }

    /// The sequence numbers a NACK asks for, in order.
    pub fn nacked(pid: u16, blp: u16) -> impl Iterator<Item = u16> {
        std::iter::once(pid).chain(
            (0..16)
                .filter(move |i| blp & (1 << i) != 0)
                .map(move |i| pid.wrapping_add(i + 1)),
        )
    }
}

/// Whether a datagram on the session's port is RTCP rather than RTP
/// (RFC 5761 §4: packet types 192–223 in the second byte; RFC 7983 §7:
/// first byte 128–191 for RTP and RTCP).
pub(crate) fn is_rtcp(datagram: &[u8]) -> bool {
    datagram.len() >= 8 && (128..=191).contains(&datagram[0]) && (192..=223).contains(&datagram[1])
}

/// Calls `found` for every feedback item of a compound RTCP packet. A
/// malformed packet ends the walk (what came before it counts); nothing is
/// read past the buffer.
pub(crate) fn feedback(compound: &[u8], mut found: impl FnMut(Feedback)) {
    let mut rest = compound;
    while rest.len() >= 4 {
        if rest[0] >> 6 != 2 {
            return;
        }
        let fmt = rest[0] & 0x1f;
        let pt = rest[1];
        let len = (usize::from(u16::from_be_bytes([rest[2], rest[3]])) + 1) * 4;
        let Some(packet) = rest.get(..len) else {
            return;
        };
        rest = &rest[len..];
        // Feedback messages: header, sender SSRC, media SSRC, then FCI.
        if packet.len() < 12 {
            continue;
        }
        let media = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
        let fci = &packet[12..];
        match (pt, fmt) {
            (RTPFB, FMT_NACK) => {
                for item in fci.chunks_exact(4) {
                    found(Feedback::Nack {
                        ssrc: media,
                        pid: u16::from_be_bytes([item[0], item[1]]),
                        blp: u16::from_be_bytes([item[2], item[3]]),
                    });
                }
            }
            (PSFB, FMT_PLI) => found(Feedback::KeyframeRequest { ssrc: media }),
            // FIR names its target in each FCI entry (SSRC, sequence number).
            (PSFB, FMT_FIR) => {
                for item in fci.chunks_exact(8) {
                    found(Feedback::KeyframeRequest {
                        ssrc: u32::from_be_bytes([item[0], item[1], item[2], item[3]]),
                    });
                }
            }
            _ => {}
        }
    }
}

/// What a sender report says of a stream (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SenderInfo {
    pub ssrc: u32,
    /// NTP timestamp (seconds since 1900, 32.32 fixed point).
    pub ntp: u64,
    /// The RTP timestamp of the same instant.
    pub rtp: u32,
    pub packets: u32,
    pub octets: u32,
}

/// Writes a compound RTCP packet into `out`: a sender report without
/// report blocks and an SDES chunk with the CNAME (RFC 3550 §6.1: every
/// compound packet has a report and a CNAME). The CNAME is cut to 255
/// bytes.
pub(crate) fn sender_report(info: &SenderInfo, cname: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&[0x80, SR, 0, 6]);
    out.extend_from_slice(&info.ssrc.to_be_bytes());
    out.extend_from_slice(&info.ntp.to_be_bytes());
    out.extend_from_slice(&info.rtp.to_be_bytes());
    out.extend_from_slice(&info.packets.to_be_bytes());
    out.extend_from_slice(&info.octets.to_be_bytes());
    let cname = &cname[..cname.len().min(255)];
    // SSRC, CNAME item, and at least one zero byte ending the item list,
    // padded to 32 bits (§6.5).
    let chunk = 4 + 2 + cname.len() + 1;
    let chunk = chunk.div_ceil(4) * 4;
    let start = out.len();
    out.extend_from_slice(&[0x81, SDES]);
    out.extend_from_slice(&((chunk / 4) as u16).to_be_bytes());
    out.extend_from_slice(&info.ssrc.to_be_bytes());
    out.extend_from_slice(&[CNAME, cname.len() as u8]);
    out.extend_from_slice(cname);
    out.resize(start + 4 + chunk, 0);
}

/// The NTP timestamp of a wall-clock time (RFC 3550 §4: seconds since
/// 1900-01-01, 32.32 fixed point).
pub(crate) fn ntp(time: std::time::SystemTime) -> u64 {
    const UNIX_TO_NTP: u64 = 2_208_988_800;
    let since = time
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs() + UNIX_TO_NTP;
    let frac = (u64::from(since.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(compound: &[u8]) -> Vec<Feedback> {
        let mut v = Vec::new();
        feedback(compound, |f| v.push(f));
        v
    }

    /// A receiver report, then a NACK with two items, a PLI and a FIR, as
    /// one compound packet: the report is skipped, every request found.
    #[test]
    fn finds_nacks_plis_and_firs_in_a_compound_packet() {
        let mut c = vec![0x81, 201, 0, 7, 0, 0, 0, 1];
        c.extend_from_slice(&[0; 24]);
        c.extend_from_slice(&[0x81, RTPFB, 0, 4, 0, 0, 0, 1, 0xaa, 0xbb, 0xcc, 0xdd]);
        c.extend_from_slice(&[0x01, 0x00, 0b0000_0000, 0b0000_0101]);
        c.extend_from_slice(&[0xff, 0xff, 0, 0]);
        c.extend_from_slice(&[0x81, PSFB, 0, 2, 0, 0, 0, 1, 0xaa, 0xbb, 0xcc, 0xdd]);
        c.extend_from_slice(&[0x84, PSFB, 0, 4, 0, 0, 0, 1, 0, 0, 0, 0]);
        c.extend_from_slice(&[0x11, 0x22, 0x33, 0x44, 7, 0, 0, 0]);
        assert_eq!(
            all(&c),
            vec![
                Feedback::Nack {
                    ssrc: 0xaabbccdd,
                    pid: 0x0100,
                    blp: 0b101
                },
                Feedback::Nack {
                    ssrc: 0xaabbccdd,
                    pid: 0xffff,
                    blp: 0
                },
                Feedback::KeyframeRequest { ssrc: 0xaabbccdd },
                Feedback::KeyframeRequest { ssrc: 0x11223344 },
            ]
        );
        let seqs: Vec<u16> = Feedback::nacked(0xffff, 0b1000_0000_0000_0011).collect();
        assert_eq!(seqs, vec![0xffff, 0, 1, 15]);
    }

    /// Cut, lying or foreign packets end the walk without reading past the
    /// end; what came before still counts.
    #[test]
    fn malformed_compounds_end_the_walk() {
        let pli = [0x81, PSFB, 0, 2, 0, 0, 0, 1, 0, 0, 0, 9];
        let mut c = pli.to_vec();
        c.extend_from_slice(&[0x81, PSFB, 0, 200, 0, 0]);
        assert_eq!(all(&c), vec![Feedback::KeyframeRequest { ssrc: 9 }]);
        assert!(all(&[0x41, PSFB, 0, 2, 0, 0, 0, 1, 0, 0, 0, 9]).is_empty());
        assert!(all(&[0x81, PSFB, 0, 0]).is_empty());
        assert!(all(&[]).is_empty());
        for n in 0..pli.len() {
            assert!(all(&pli[..n]).is_empty());
        }
    }

    #[test]
    fn tells_rtcp_from_rtp() {
        assert!(is_rtcp(&[0x80, 200, 0, 6, 0, 0, 0, 1]));
        assert!(is_rtcp(&[0x81, 205, 0, 3, 0, 0, 0, 1]));
        // RTP with the marker bit and payload type 96 or 111.
        assert!(!is_rtcp(&[0x80, 0xe0, 0, 1, 0, 0, 0, 1]));
        assert!(!is_rtcp(&[0x80, 0x6f, 0, 1, 0, 0, 0, 1]));
        // STUN, DTLS.
        assert!(!is_rtcp(&[0x00, 0x01, 0, 0, 0x21, 0x12, 0xa4, 0x42]));
        assert!(!is_rtcp(&[22, 0xfe, 0xfd, 0, 0, 0, 0, 0]));
    }

    /// A sender report with its CNAME: lengths in 32-bit words less one,
    /// the SDES chunk ended and padded (RFC 3550 §6.4.1, §6.5).
    #[test]
    fn writes_a_sender_report_with_its_cname() {
        let info = SenderInfo {
            ssrc: 0x01020304,
            ntp: 0x1122334455667788,
            rtp: 90_000,
            packets: 10,
            octets: 12_000,
        };
        let mut out = Vec::new();
        sender_report(&info, b"abcd", &mut out);
        assert_eq!(out.len(), 28 + 16);
        assert_eq!(&out[..4], &[0x80, 200, 0, 6]);
        assert_eq!(&out[8..16], &0x1122334455667788u64.to_be_bytes());
        assert_eq!(&out[16..20], &90_000u32.to_be_bytes());
        assert_eq!(&out[28..32], &[0x81, 202, 0, 3]);
        assert_eq!(&out[32..36], &[1, 2, 3, 4]);
        assert_eq!(&out[36..44], &[CNAME, 4, b'a', b'b', b'c', b'd', 0, 0]);
        // A CNAME that fills its words exactly still gets a zero byte.
        sender_report(&info, b"abcdefg", &mut out);
        assert_eq!(out.len(), 28 + 4 + 4 + 12);
        assert_eq!(out[out.len() - 1], 0);
        assert!(is_rtcp(&out));
        assert!(all(&out).is_empty());
    }

    #[test]
    fn ntp_time_counts_from_1900() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1500);
        assert_eq!(ntp(t) >> 32, 2_208_988_801);
        assert_eq!(ntp(t) & 0xffff_ffff, 1 << 31);
    }
}
