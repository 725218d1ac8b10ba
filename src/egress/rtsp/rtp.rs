//! What one RTSP reader sends per track besides the shared payloads: the
//! RTP fixed header (RFC 3550 §5.1) with its own SSRC, sequence numbers and
//! random time base, the interleaved frame header (RFC 2326 §10.12), and
//! RTCP sender reports with an SDES CNAME (RFC 3550 §6.4.1, §6.5.1, a
//! compound packet per §6.1) so that clients can put audio and video on
//! one clock. Pure: no sockets, no clock.

/// RTP version 2 (RFC 3550 §5.1).
const VERSION: u8 = 2 << 6;
/// RTCP packet types (RFC 3550 §12.1).
const RTCP_SR: u8 = 200;
const RTCP_SDES: u8 = 202;
/// SDES item CNAME (RFC 3550 §6.5.1).
const SDES_CNAME: u8 = 1;
/// Length of an RTP fixed header without CSRCs.
pub const RTP_HEADER: usize = 12;

/// Seconds between 1900-01-01 (NTP's epoch) and 1970-01-01 (Unix's).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// One track's RTP state for one reader.
#[derive(Debug, Clone)]
pub struct TrackSender {
    pub ssrc: u32,
    pub payload_type: u8,
    /// RTP clock rate (what the SDP says).
    pub clock_rate: u32,
    /// The track's timescale (ticks per second of frame times).
    timescale: u32,
    seq: u16,
    time_base: u32,
    packets: u32,
    octets: u32,
    /// The last frame sent: its RTP time and media time in nanoseconds.
    last: Option<(u32, i64)>,
}

impl TrackSender {
    /// A sender starting at sequence number `seq` with RTP time base
    /// `time_base` (both random per RFC 3550 §5.1).
    pub fn new(
        ssrc: u32,
        payload_type: u8,
        clock_rate: u32,
        timescale: u32,
        seq: u16,
        time_base: u32,
    ) -> TrackSender {
        TrackSender {
            ssrc,
            payload_type,
            clock_rate: clock_rate.max(1),
            timescale: timescale.max(1),
            seq,
            time_base,
            packets: 0,
            octets: 0,
            last: None,
        }
    }

    /// The next sequence number (what `RTP-Info` announces before `PLAY`).
    pub fn next_seq(&self) -> u16 {
        self.seq
    }

    /// RTP time of media time `ticks` (in the track's timescale): 32 bits
    /// that wrap (RFC 3550 §5.1).
    pub fn rtp_time(&self, ticks: i64) -> u32 {
        let clock = i128::from(self.clock_rate);
        let scaled = i128::from(ticks) * clock / i128::from(self.timescale);
        self.time_base.wrapping_add(scaled as u32)
    }

    /// The RTP time the next frame is expected near (for `RTP-Info`
    /// `rtptime`): the base until something was sent.
    pub fn last_rtp_time(&self) -> u32 {
        self.last.map_or(self.time_base, |(t, _)| t)
    }

    /// Notes that a frame at media time `ticks` starts being sent.
    pub fn frame(&mut self, ticks: i64) -> u32 {
        let time = self.rtp_time(ticks);
        let nanos = i128::from(ticks) * 1_000_000_000 / i128::from(self.timescale);
        self.last = Some((time, nanos as i64));
        time
    }

    /// The fixed header of the next packet, counted for the sender report.
    pub fn header(&mut self, marker: bool, time: u32, payload_len: usize) -> [u8; RTP_HEADER] {
        let mut h = [0u8; RTP_HEADER];
        h[0] = VERSION;
        h[1] = (u8::from(marker) << 7) | (self.payload_type & 0x7f);
        h[2..4].copy_from_slice(&self.seq.to_be_bytes());
        h[4..8].copy_from_slice(&time.to_be_bytes());
        h[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        self.seq = self.seq.wrapping_add(1);
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(payload_len as u32);
        h
    }

    /// A compound RTCP packet: sender report for the last frame sent, whose
    /// media time maps to wall clock `anchor_unix_nanos + media time`, then
    /// SDES with `cname`. `None` before the first frame.
    pub fn sender_report(&self, anchor_unix_nanos: i128, cname: &str) -> Option<Vec<u8>> {
        let (rtp, media_nanos) = self.last?;
        let unix = anchor_unix_nanos + i128::from(media_nanos);
        let secs = (unix.div_euclid(1_000_000_000)) as u64;
        let frac = ((unix.rem_euclid(1_000_000_000) as u64) << 32) / 1_000_000_000;
        let ntp = ((secs.wrapping_add(NTP_UNIX_OFFSET)) << 32) | frac;
        let mut out = Vec::with_capacity(28 + 12 + cname.len());
        // SR: header (RC = 0), SSRC, NTP, RTP time, packet and octet counts.
        out.extend_from_slice(&[VERSION, RTCP_SR, 0, 6]);
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(&ntp.to_be_bytes());
        out.extend_from_slice(&rtp.to_be_bytes());
        out.extend_from_slice(&self.packets.to_be_bytes());
        out.extend_from_slice(&self.octets.to_be_bytes());
        // SDES with one chunk (SC = 1): SSRC, CNAME item, END, padded to 32 bits.
        let cname = &cname.as_bytes()[..cname.len().min(255)];
        let chunk = 4 + 2 + cname.len() + 1;
        let padded = chunk.div_ceil(4) * 4;
        let words = (4 + padded) / 4 - 1;
        out.extend_from_slice(&[VERSION | 1, RTCP_SDES]);
        out.extend_from_slice(&(words as u16).to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(&[SDES_CNAME, cname.len() as u8]);
        out.extend_from_slice(cname);
        out.resize(out.len() + (padded - chunk) + 1, 0);
        Some(out)
    }
}

/// The 4-byte header of an interleaved frame on `channel` (RFC 2326 §10.12).
pub fn interleaved_header(channel: u8, len: usize) -> [u8; 4] {
    let len = u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes();
    [b'$', channel, len[0], len[1]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_count_up_and_carry_the_fields() {
        let mut s = TrackSender::new(0xdead_beef, 96, 90_000, 90_000, 0xffff, 1000);
        let t = s.frame(3000);
        assert_eq!(t, 4000);
        let h = s.header(false, t, 1000);
        assert_eq!(h[0], 0x80);
        assert_eq!(h[1], 96);
        assert_eq!(u16::from_be_bytes([h[2], h[3]]), 0xffff);
        assert_eq!(u32::from_be_bytes([h[4], h[5], h[6], h[7]]), 4000);
        assert_eq!(&h[8..], &0xdead_beef_u32.to_be_bytes());
        let h = s.header(true, t, 500);
        assert_eq!(h[1], 0x80 | 96, "marker");
        assert_eq!(u16::from_be_bytes([h[2], h[3]]), 0, "sequence wraps");
        assert_eq!(s.next_seq(), 1);
    }

    #[test]
    fn rtp_time_scales_and_wraps() {
        // An audio track at 48 kHz whose frames are in 48 kHz ticks.
        let s = TrackSender::new(1, 97, 48_000, 48_000, 0, u32::MAX - 10);
        assert_eq!(s.rtp_time(20), 9);
        // A track in milliseconds sent at 90 kHz.
        let s = TrackSender::new(1, 96, 90_000, 1000, 0, 0);
        assert_eq!(s.rtp_time(1000), 90_000);
    }

    #[test]
    fn a_sender_report_maps_the_last_frame_to_wall_clock() {
        let mut s = TrackSender::new(7, 96, 90_000, 90_000, 0, 100);
        assert!(s.sender_report(0, "x").is_none(), "nothing sent yet");
        let t = s.frame(90_000);
        s.header(true, t, 1200);
        s.header(true, t, 300);
        // Media time 0 was 2024-01-01T00:00:00.5Z.
        let anchor = (1_704_067_200i128 * 1_000_000_000) + 500_000_000;
        let r = s.sender_report(anchor, "mediarelay").unwrap();
        assert_eq!(r.len() % 4, 0);
        assert_eq!(&r[..4], &[0x80, 200, 0, 6]);
        assert_eq!(&r[4..8], &7u32.to_be_bytes());
        let ntp_secs = u32::from_be_bytes([r[8], r[9], r[10], r[11]]);
        assert_eq!(u64::from(ntp_secs), 1_704_067_201 + NTP_UNIX_OFFSET);
        let frac = u32::from_be_bytes([r[12], r[13], r[14], r[15]]);
        assert!((frac as i64 - (1i64 << 31)).abs() < 2, "half a second");
        assert_eq!(u32::from_be_bytes([r[16], r[17], r[18], r[19]]), 90_100);
        assert_eq!(
            u32::from_be_bytes([r[20], r[21], r[22], r[23]]),
            2,
            "packets"
        );
        assert_eq!(u32::from_be_bytes([r[24], r[25], r[26], r[27]]), 1500);
        // SDES: length in words minus one matches what follows.
        let sdes = &r[28..];
        assert_eq!(sdes[0], 0x81);
        assert_eq!(sdes[1], 202);
        let words = u16::from_be_bytes([sdes[2], sdes[3]]) as usize;
        assert_eq!(sdes.len(), (words + 1) * 4);
        assert_eq!(&sdes[8..10], &[1, 10]);
        assert_eq!(&sdes[10..20], b"mediarelay");
        assert_eq!(sdes[20], 0, "END");
    }

    #[test]
    fn interleaved_headers() {
        assert_eq!(interleaved_header(3, 0x1234), [b'$', 3, 0x12, 0x34]);
    }
}
