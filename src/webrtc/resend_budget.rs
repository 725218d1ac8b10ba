//! A cap on what a peer can make a session resend.
//!
//! A receiver asks for lost packets with NACKs (RFC 4585 §6.2.1), and they
//! are resent on the stream's RTX stream (RFC 4588). Nothing bounds what a
//! NACK asks for — as many 17-packet FCIs as fit in a datagram, the same
//! sequence numbers again and again — so a sender must cap its resends
//! against what it sends, or one small datagram makes it encrypt and send
//! thousands of packets.
//!
//! str0m has such a cap (`rtx_ratio_cap`), but it keeps a record of every
//! packet sent in the last second, per stream, in a `VecDeque` that never
//! shrinks: after a new viewer's burst of cached frames, ~16 KiB per
//! viewer (measured as the server's anonymous memory; BENCHMARKS.md,
//! "Fifth session"). [`ResendBudget`] does the same
//! job in constant space: it counts bytes in two half-second buckets and
//! tells resends from first sends by the clear-text RTP header of each
//! outgoing SRTP datagram (SRTP encrypts only the payload, RFC 3711 §3.1):
//! a datagram on an RTX SSRC is a resend. Over the cap a resend is dropped,
//! and the session empties the stream's resend ring, so the rest of the
//! NACK finds nothing to send (what str0m's own cap does by clearing its
//! queue): however many a NACK asked for, at most one is encrypted and
//! dropped.

use std::time::{Duration, Instant};

/// Resent bytes may be at most this share of all bytes sent over the last
/// half to whole second (str0m's default `rtx_ratio_cap`).
const CAP: f64 = 0.15;
/// The length of one counting bucket; the budget looks at the current one
/// and the one before it.
const BUCKET: Duration = Duration::from_millis(500);

/// What to do with an outgoing datagram.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Send,
    /// A resend over the cap: not sent; empty the resend buffer, so that
    /// the resends queued behind it go too.
    Drop,
}

#[derive(Debug, Default, Clone, Copy)]
struct Bytes {
    sent: u64,
    resent: u64,
}

/// The resend budget of one session (see the module documentation).
#[derive(Debug)]
pub(crate) struct ResendBudget {
    /// The RTX SSRCs of the session's outgoing streams.
    rtx: Vec<u32>,
    bucket_start: Instant,
    current: Bytes,
    previous: Bytes,
}

impl ResendBudget {
    pub fn new(rtx: Vec<u32>, now: Instant) -> ResendBudget {
        ResendBudget {
            rtx,
            bucket_start: now,
            current: Bytes::default(),
            previous: Bytes::default(),
        }
    }

    /// Counts an outgoing datagram and says whether it may go. Only RTP
    /// counts; RTCP, STUN and DTLS always go.
    pub fn admit(&mut self, now: Instant, datagram: &[u8]) -> Verdict {
        self.roll(now);
        let Some(ssrc) = rtp_ssrc(datagram) else {
            return Verdict::Send;
        };
        let len = datagram.len() as u64;
        if !self.rtx.contains(&ssrc) {
            self.current.sent += len;
            return Verdict::Send;
        }
        let sent = self.current.sent + self.previous.sent;
        let resent = self.current.resent + self.previous.resent;
        // As str0m: the share so far decides, before this resend counts.
        if resent > 0 && resent as f64 > CAP * (sent + resent) as f64 {
            return Verdict::Drop;
        }
        self.current.resent += len;
        Verdict::Send
    }

    fn roll(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.bucket_start);
        if elapsed < BUCKET {
            return;
        }
        self.previous = if elapsed < 2 * BUCKET {
            self.current
        } else {
            Bytes::default()
        };
        self.current = Bytes::default();
        self.bucket_start = now;
    }
}

/// The SSRC of an RTP (or SRTP) datagram; `None` for anything else. RFC 7983
/// §7: a first byte of 128–191 is RTP or RTCP; RFC 5761 §4: a second byte of
/// 192–223 is an RTCP packet type, not a marker bit and payload type.
fn rtp_ssrc(datagram: &[u8]) -> Option<u32> {
    let (&first, &second) = (datagram.first()?, datagram.get(1)?);
    if !(128..=191).contains(&first) || (192..=223).contains(&second) {
        return None;
    }
    let ssrc: [u8; 4] = datagram.get(8..12)?.try_into().ok()?;
    Some(u32::from_be_bytes(ssrc))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEDIA: u32 = 0x1111_1111;
    const RTX: u32 = 0x2222_2222;

    /// An RTP datagram of `len` bytes on `ssrc` (payload type 96).
    fn rtp(ssrc: u32, len: usize) -> Vec<u8> {
        let mut d = vec![0u8; len.max(12)];
        d[0] = 0x80;
        d[1] = 96;
        d[8..12].copy_from_slice(&ssrc.to_be_bytes());
        d
    }

    #[test]
    fn only_rtp_has_an_ssrc() {
        assert_eq!(rtp_ssrc(&rtp(RTX, 100)), Some(RTX));
        let mut marked = rtp(MEDIA, 100);
        marked[1] = 0x80 | 96;
        assert_eq!(rtp_ssrc(&marked), Some(MEDIA), "marker bit set");
        let mut rtcp = rtp(MEDIA, 100);
        rtcp[1] = 205; // RTPFB (NACK)
        assert_eq!(rtp_ssrc(&rtcp), None);
        assert_eq!(rtp_ssrc(&[0, 1, 0, 0]), None, "STUN");
        assert_eq!(rtp_ssrc(&[22, 254, 253]), None, "DTLS");
        assert_eq!(rtp_ssrc(&[0x80, 96, 0, 0]), None, "too short");
        assert_eq!(rtp_ssrc(&[]), None);
    }

    #[test]
    fn resends_within_the_cap_go_and_a_flood_is_dropped() {
        let t0 = Instant::now();
        let mut b = ResendBudget::new(vec![RTX], t0);
        // 100 packets sent, then resends: the first ones fit the cap...
        for _ in 0..100 {
            assert_eq!(b.admit(t0, &rtp(MEDIA, 1000)), Verdict::Send);
        }
        let mut sent = 0;
        let mut verdicts = Vec::new();
        for _ in 0..100 {
            let v = b.admit(t0, &rtp(RTX, 1000));
            if v == Verdict::Send {
                sent += 1;
            }
            verdicts.push(v);
        }
        // ...up to 15 % of what went out: the 18th goes (17 of 117 before
        // it, 14.5 %), the 19th not (18 of 118, 15.3 %).
        assert_eq!(sent, 18);
        assert!(verdicts[18..].iter().all(|v| *v == Verdict::Drop));
        // RTCP and other streams still go.
        let mut rtcp = rtp(MEDIA, 80);
        rtcp[1] = 201;
        assert_eq!(b.admit(t0, &rtcp), Verdict::Send);
        assert_eq!(b.admit(t0, &rtp(MEDIA, 1000)), Verdict::Send);
    }

    #[test]
    fn the_budget_is_the_last_half_to_whole_second() {
        let t0 = Instant::now();
        let mut b = ResendBudget::new(vec![RTX], t0);
        for _ in 0..10 {
            b.admit(t0, &rtp(MEDIA, 1000));
        }
        assert_eq!(b.admit(t0, &rtp(RTX, 1000)), Verdict::Send);
        assert_eq!(b.admit(t0, &rtp(RTX, 1000)), Verdict::Send);
        assert_eq!(b.admit(t0, &rtp(RTX, 1000)), Verdict::Drop);
        // Half a second later the previous bucket still counts...
        let t1 = t0 + BUCKET;
        assert_eq!(b.admit(t1, &rtp(RTX, 1000)), Verdict::Drop);
        // ...a second later it is forgotten: media sent since makes room.
        let t2 = t1 + BUCKET;
        for _ in 0..10 {
            b.admit(t2, &rtp(MEDIA, 1000));
        }
        assert_eq!(b.admit(t2, &rtp(RTX, 1000)), Verdict::Send);
        // After a long silence both buckets are empty.
        let t3 = t2 + 5 * BUCKET;
        assert_eq!(
            b.admit(t3, &rtp(RTX, 1000)),
            Verdict::Send,
            "the first resend of a bucket pair"
        );
        assert_eq!(b.admit(t3, &rtp(RTX, 1000)), Verdict::Drop);
    }
}
