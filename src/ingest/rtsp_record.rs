//! Publishing over RTSP (RFC 2326 §10.11 `ANNOUNCE`, §10.4 `SETUP` with
//! `mode=record`, §10.11 `RECORD`), as `ffmpeg -f rtsp` and GStreamer's
//! `rtspclientsink` do: the announced SDP becomes the stream's tracks, and
//! the RTP packets that follow (interleaved in the connection) go through
//! the camera ingest's depacketizers and frame logic
//! ([`super::rtsp::Ingest`] in raw mode: decode order, G.711/Opus → AAC,
//! audio aligned by the publisher's RTCP sender reports).
//!
//! Taken: the first H.264 video (parameter sets from `sprop-parameter-sets`
//! or in-band) and the first AAC (RFC 3640 AAC-hbr), Opus or G.711 audio.
//! H.265 is not taken from publishers yet (the raw path needs its
//! parameter sets as an `hvcC`, built only by retina for cameras).

use base64::Engine as _;
use bytes::Bytes;

use super::rtsp::{Chosen, ChosenKind, Ingest};
use crate::codec::rtp::Packet;
use crate::codec::{aac, h264};
use crate::hub::Publisher;
use crate::hub::source::SourceStatus;
use crate::media::{CodecParams, G711Law, G711Params, OpusParams};

/// A media section of the announced SDP that the relay takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnouncedMedia {
    /// The `a=control` value (relative, or an absolute URL).
    pub control: String,
    pub payload_type: u8,
    pub clock_rate: u32,
    pub(crate) kind: ChosenKind,
    /// `None` for H.264 whose parameter sets come in-band only.
    pub params: Option<CodecParams>,
    /// The RTP encoding name, lower case (`h264`, `mpeg4-generic`, …).
    pub encoding: String,
}

/// Why an announced SDP is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnnounceError {
    #[error("the SDP does not parse: {0}")]
    Sdp(String),
    #[error("no media the relay can take (H.264 video; AAC, Opus or G.711 audio)")]
    NothingUsable,
    #[error("media {index}: {reason}")]
    Media { index: usize, reason: String },
}

/// What an `ANNOUNCE` body describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    /// The media the relay takes, in SDP order: the first video and the
    /// first audio it can carry.
    pub taken: Vec<AnnouncedMedia>,
    /// The `a=control` of every other section: a publisher may set them up,
    /// and what it sends on them is dropped.
    pub ignored: Vec<String>,
}

/// Parses an `ANNOUNCE` body; sections the relay cannot carry are left out
/// with a log line.
pub fn parse_announce(body: &[u8]) -> Result<Announcement, AnnounceError> {
    // sdp-types 0.1.8 asserts when a line that is not `k=value` is followed
    // by a line other than `m=` (its peekable line reader skips the bad
    // line on the second look): such bodies are refused before it sees
    // them, and its parse runs under catch_unwind in case of another.
    if let Some(n) = body
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .position(|l| !l.is_empty() && l.iter().position(|&b| b == b'=') != Some(1))
    {
        return Err(AnnounceError::Sdp(format!(
            "line {} is not key=value",
            n + 1
        )));
    }
    let parsed = std::panic::catch_unwind(|| sdp_types::Session::parse(body))
        .map_err(|_| AnnounceError::Sdp("the SDP parser gave up on it".into()))?;
    let session = parsed.map_err(|e| AnnounceError::Sdp(format!("{e:?}")))?;
    let mut out: Vec<AnnouncedMedia> = Vec::new();
    let mut ignored = Vec::new();
    for (index, m) in session.medias.iter().enumerate() {
        let control = m
            .attributes
            .iter()
            .find(|a| a.attribute == "control")
            .and_then(|a| a.value.clone())
            .unwrap_or_default();
        let Some(pt) = m
            .fmt
            .split_whitespace()
            .next()
            .and_then(|f| f.parse::<u8>().ok())
        else {
            ignored.push(control);
            continue;
        };
        let attr = |name: &str| {
            m.attributes
                .iter()
                .filter(|a| a.attribute == name)
                .filter_map(|a| a.value.as_deref())
                .find(|v| {
                    v.split_whitespace()
                        .next()
                        .and_then(|p| p.parse::<u8>().ok())
                        == Some(pt)
                })
                .and_then(|v| v.split_once(' ').map(|(_, rest)| rest.trim().to_string()))
        };
        let rtpmap = attr("rtpmap");
        let fmtp = attr("fmtp").unwrap_or_default();
        // Static payload types (RFC 3551 §6) may come without an rtpmap.
        let rtpmap = rtpmap.or(match pt {
            0 => Some("PCMU/8000".into()),
            8 => Some("PCMA/8000".into()),
            _ => None,
        });
        let Some(rtpmap) = rtpmap else {
            ignored.push(control);
            continue;
        };
        let mut parts = rtpmap.split('/');
        let encoding = parts.next().unwrap_or("").to_ascii_lowercase();
        let clock_rate = parts
            .next()
            .and_then(|c| c.parse::<u32>().ok())
            .unwrap_or(0);
        let channels = parts.next().and_then(|c| c.parse::<u8>().ok()).unwrap_or(1);
        let fmtp_value = |key: &str| {
            fmtp.split(';').find_map(|kv| {
                let (k, v) = kv.trim().split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case(key)
                    .then(|| v.trim().to_string())
            })
        };
        let have_video = out.iter().any(|a| a.kind == ChosenKind::Video);
        let have_audio = out.iter().any(|a| a.kind != ChosenKind::Video);
        let media_err = |reason: String| AnnounceError::Media { index, reason };
        let (kind, params) = match (m.media.as_str(), encoding.as_str()) {
            ("video", "h264") if !have_video => {
                let params = match fmtp_value("sprop-parameter-sets") {
                    Some(sets) => h264_from_sprop(&sets).map_err(media_err)?,
                    None => None,
                };
                (ChosenKind::Video, params)
            }
            ("audio", "mpeg4-generic") if !have_audio => {
                let mode = fmtp_value("mode").unwrap_or_default();
                if !mode.eq_ignore_ascii_case("AAC-hbr") {
                    return Err(media_err(format!("AAC mode {mode:?} (AAC-hbr is taken)")));
                }
                let config =
                    fmtp_value("config").ok_or_else(|| media_err("AAC without config".into()))?;
                let asc = hex(&config).ok_or_else(|| media_err("AAC config is not hex".into()))?;
                let params = aac::parse_audio_specific_config(&Bytes::from(asc))
                    .map_err(|e| media_err(format!("AAC config: {e}")))?;
                (ChosenKind::Aac, Some(CodecParams::Aac(params)))
            }
            ("audio", "opus") if !have_audio => (
                ChosenKind::Opus,
                Some(CodecParams::Opus(OpusParams {
                    channels: channels.clamp(1, 2),
                })),
            ),
            ("audio", "pcmu" | "pcma") if !have_audio => {
                let law = if encoding == "pcmu" {
                    G711Law::MuLaw
                } else {
                    G711Law::ALaw
                };
                (
                    ChosenKind::G711(law),
                    Some(CodecParams::G711(G711Params {
                        law,
                        sample_rate: clock_rate.max(8000),
                        channels: channels.max(1),
                    })),
                )
            }
            _ => {
                tracing::info!(index, media = %m.media, encoding, "announced media not taken (its packets are dropped)");
                ignored.push(control);
                continue;
            }
        };
        if clock_rate == 0 {
            return Err(media_err(format!("{encoding} without a clock rate")));
        }
        out.push(AnnouncedMedia {
            control,
            payload_type: pt,
            clock_rate,
            kind,
            params,
            encoding,
        });
    }
    if out.is_empty() {
        return Err(AnnounceError::NothingUsable);
    }
    Ok(Announcement {
        taken: out,
        ignored,
    })
}

/// H.264 parameters from `sprop-parameter-sets` (RFC 6184 §8.1): Base64 NAL
/// units, comma-separated. `None` when they hold no SPS and PPS.
fn h264_from_sprop(sets: &str) -> Result<Option<CodecParams>, String> {
    let (mut sps, mut pps) = (Vec::new(), Vec::new());
    for b64 in sets.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let nal = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| format!("sprop-parameter-sets: {e}"))?;
        match h264::nal_type(&nal) {
            Some(h264::NAL_SPS) => sps.push(Bytes::from(nal)),
            Some(h264::NAL_PPS) => pps.push(Bytes::from(nal)),
            _ => {}
        }
    }
    let Some(record) = h264::record_from_parameter_sets(&sps, &pps) else {
        return Ok(None);
    };
    h264::h264_params(&record)
        .map(|(p, _)| Some(CodecParams::H264(p)))
        .map_err(|e| format!("sprop-parameter-sets: {e}"))
}

fn hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}

/// The fixed header of an RTP packet (RFC 3550 §5.1): payload type,
/// sequence number, timestamp, marker, and the payload without CSRCs,
/// header extension (§5.3.1) and padding. `None` for what is not RTP v2.
pub fn parse_rtp(data: &Bytes) -> Option<(u8, u16, u32, bool, Bytes)> {
    let b0 = *data.first()?;
    let b1 = *data.get(1)?;
    if b0 >> 6 != 2 {
        return None;
    }
    let seq = u16::from_be_bytes([*data.get(2)?, *data.get(3)?]);
    let ts = u32::from_be_bytes([*data.get(4)?, *data.get(5)?, *data.get(6)?, *data.get(7)?]);
    let mut start = 12 + 4 * usize::from(b0 & 0x0f);
    if b0 & 0x10 != 0 {
        let words = u16::from_be_bytes([*data.get(start + 2)?, *data.get(start + 3)?]);
        start += 4 + 4 * usize::from(words);
    }
    let mut end = data.len();
    if b0 & 0x20 != 0 {
        end = end.checked_sub(usize::from(*data.last()?))?;
    }
    if start > end {
        return None;
    }
    Some((b1 & 0x7f, seq, ts, b1 & 0x80 != 0, data.slice(start..end)))
}

/// One announced stream's RTP time extended to 64 bits from its first
/// packet, and losses from sequence gaps.
#[derive(Debug, Default)]
struct StreamClock {
    first: Option<u32>,
    last_ts: u32,
    elapsed: i64,
    last_seq: Option<u16>,
}

impl StreamClock {
    fn packet(&mut self, seq: u16, ts: u32) -> (i64, u16) {
        if self.first.is_none() {
            self.first = Some(ts);
            self.last_ts = ts;
        }
        self.elapsed += i64::from(ts.wrapping_sub(self.last_ts) as i32);
        self.last_ts = ts;
        let loss = match self.last_seq {
            Some(last) => {
                let gap = seq.wrapping_sub(last);
                if gap > 0 && gap < 0x8000 { gap - 1 } else { 0 }
            }
            None => 0,
        };
        if self.last_seq.is_none_or(|last| {
            let d = seq.wrapping_sub(last);
            d > 0 && d < 0x8000
        }) {
            self.last_seq = Some(seq);
        }
        (self.elapsed, loss)
    }

    /// Seconds since the first packet of RTP time `ts`.
    fn seconds_at(&self, ts: u32, rate: u32) -> Option<f64> {
        let first = self.first?;
        Some(f64::from(ts.wrapping_sub(first) as i32) / f64::from(rate.max(1)))
    }
}

/// A `RECORD` session's media: interleaved frames in, hub frames out.
pub struct Recorder {
    ingest: Ingest,
    publisher: Publisher,
    status: SourceStatus,
    /// Per announced stream: its RTP and RTCP channels and clock.
    streams: Vec<RecordStream>,
}

struct RecordStream {
    rtp_channel: u8,
    rtcp_channel: u8,
    payload_type: u8,
    clock_rate: u32,
    clock: StreamClock,
}

impl Recorder {
    /// `setups`: per announced media that was set up, its index in
    /// `medias` and its interleaved RTP and RTCP channels.
    pub fn new(
        medias: &[AnnouncedMedia],
        setups: &[(usize, u8, u8)],
        publisher: Publisher,
        max_frame_bytes: usize,
    ) -> Result<Recorder, String> {
        let mut chosen = Vec::new();
        let mut described = Vec::new();
        let mut streams = Vec::new();
        for (i, &(media, rtp_channel, rtcp_channel)) in setups.iter().enumerate() {
            let Some(m) = medias.get(media) else {
                return Err(format!("no announced media {media}"));
            };
            chosen.push(Chosen {
                stream: i,
                kind: m.kind,
            });
            described.push((m.params.clone(), m.encoding.clone()));
            streams.push(RecordStream {
                rtp_channel,
                rtcp_channel,
                payload_type: m.payload_type,
                clock_rate: m.clock_rate,
                clock: StreamClock::default(),
            });
        }
        let ingest = Ingest::from_params(chosen, described, true, max_frame_bytes)
            .map_err(|e| e.to_string())?;
        Ok(Recorder {
            ingest,
            status: SourceStatus::new("rtsp", publisher.path().to_string()),
            publisher,
            streams,
        })
    }

    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    /// An interleaved frame from the publisher.
    pub fn on_interleaved(&mut self, channel: u8, payload: Bytes) {
        self.publisher
            .session()
            .add_bytes_in(payload.len() as u64 + 4);
        if let Some(ci) = self.streams.iter().position(|s| s.rtp_channel == channel) {
            let Some((pt, seq, ts, mark, body)) = parse_rtp(&payload) else {
                tracing::debug!(channel, "interleaved frame is not RTP");
                return;
            };
            let Some(s) = self.streams.get_mut(ci) else {
                return;
            };
            if pt != s.payload_type {
                tracing::debug!(channel, pt, "RTP of another payload type ignored");
                return;
            }
            let (elapsed, loss) = s.clock.packet(seq, ts);
            let rate = i64::from(s.clock_rate);
            let packet = Packet {
                sequence_number: seq,
                timestamp: elapsed,
                mark,
                loss,
                payload: body,
            };
            self.ingest
                .on_rtp(ci, rate, packet, &mut self.publisher, &self.status);
        } else if let Some(ci) = self.streams.iter().position(|s| s.rtcp_channel == channel) {
            // A sender report (RFC 3550 §6.4.1) first in the compound packet.
            let (Some(&200), Some(ntp), Some(ts)) = (
                payload.get(1),
                payload
                    .get(8..16)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(u64::from_be_bytes),
                payload
                    .get(16..20)
                    .and_then(|b| <[u8; 4]>::try_from(b).ok())
                    .map(u32::from_be_bytes),
            ) else {
                return;
            };
            if let Some(secs) = self
                .streams
                .get(ci)
                .and_then(|s| s.clock.seconds_at(ts, s.clock_rate))
            {
                self.ingest.on_sender_report(ci, ntp, secs);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `ffmpeg -f rtsp` announces for H.264 + AAC (captured).
    const FFMPEG_SDP: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\na=tool:libavformat LIBAVFORMAT_VERSION\r\n\
m=video 0 RTP/AVP 96\r\nb=AS:300\r\na=rtpmap:96 H264/90000\r\n\
a=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z2QADazZQUH7ARAAAAMAEAAAAwPA8UKZYA==,aO+8sA==; profile-level-id=64000D\r\na=control:streamid=0\r\n\
m=audio 0 RTP/AVP 97\r\nb=AS:64\r\na=rtpmap:97 MPEG4-GENERIC/48000/2\r\n\
a=fmtp:97 profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3; config=119056E500\r\na=control:streamid=1\r\n";

    #[test]
    fn ffmpeg_s_announce_gives_h264_and_aac() {
        let a = parse_announce(FFMPEG_SDP.as_bytes()).unwrap();
        assert!(a.ignored.is_empty());
        let m = a.taken;
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].control, "streamid=0");
        assert_eq!((m[0].payload_type, m[0].clock_rate), (96, 90_000));
        let Some(CodecParams::H264(h)) = &m[0].params else {
            panic!("{:?}", m[0].params)
        };
        assert_eq!((h.width, h.height), (320, 240));
        assert_eq!(m[1].control, "streamid=1");
        let Some(CodecParams::Aac(a)) = &m[1].params else {
            panic!("{:?}", m[1].params)
        };
        assert_eq!((a.sample_rate, a.channels), (48_000, 2));
    }

    #[test]
    fn other_codecs_and_bad_sections() {
        let sdp = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\n\
m=video 0 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\na=control:stream=0\r\n\
m=video 0 RTP/AVP 97\r\na=rtpmap:97 H264/90000\r\na=control:stream=1\r\n\
m=audio 0 RTP/AVP 0\r\na=control:stream=2\r\n";
        let a = parse_announce(sdp.as_bytes()).unwrap();
        assert_eq!(a.ignored, vec!["stream=0".to_string()], "VP8 left out");
        let m = a.taken;
        assert_eq!(m.len(), 2);
        assert_eq!(
            (m[0].encoding.as_str(), &m[0].params),
            ("h264", &None),
            "in-band"
        );
        assert_eq!(m[1].kind, ChosenKind::G711(G711Law::MuLaw));
        assert_eq!(m[1].clock_rate, 8000);
        assert!(parse_announce(b"garbage").is_err());
        // What made sdp-types assert: a bad line, then a line other than m=.
        let bad = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\nm=video 0 RTP/AVP 96\r\n\
                   a=rtpmap:96 H264/90000\r\nnot a line\r\na=control:x\r\n";
        assert!(matches!(
            parse_announce(bad.as_bytes()),
            Err(AnnounceError::Sdp(_))
        ));
        // `=` first is not a one-letter key either. Both are refused by the
        // pre-check, before sdp-types (whose assert would be caught too,
        // but aborts a fuzzer).
        let eq = bad.replace("not a line", "==x");
        for sdp in [bad, eq.as_str()] {
            match parse_announce(sdp.as_bytes()) {
                Err(AnnounceError::Sdp(why)) => {
                    assert!(why.contains("line 7 is not key=value"), "{why}")
                }
                other => panic!("{other:?}"),
            }
        }
        let vp8_only = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n";
        assert_eq!(
            parse_announce(vp8_only.as_bytes()),
            Err(AnnounceError::NothingUsable)
        );
        let bad_aac = FFMPEG_SDP.replace("config=119056E500", "config=zz");
        assert!(matches!(
            parse_announce(bad_aac.as_bytes()),
            Err(AnnounceError::Media { index: 1, .. })
        ));
    }

    #[test]
    fn rtp_headers_are_read_with_csrcs_extension_and_padding() {
        let mut p = vec![
            0x80 | 0x20 | 0x10 | 1,
            0x80 | 96,
            0,
            7,
            0,
            0,
            1,
            0,
            0,
            0,
            0,
            9,
        ];
        p.extend_from_slice(&[1, 2, 3, 4]); // one CSRC
        p.extend_from_slice(&[0xbe, 0xde, 0, 1, 9, 9, 9, 9]); // extension, one word
        p.extend_from_slice(b"payload");
        p.extend_from_slice(&[0, 0, 3]); // padding of 3
        let (pt, seq, ts, mark, body) = parse_rtp(&Bytes::from(p)).unwrap();
        assert_eq!((pt, seq, ts, mark), (96, 7, 256, true));
        assert_eq!(&body[..], b"payload");
        assert!(parse_rtp(&Bytes::from_static(&[0x40, 0, 0])).is_none());
        assert!(
            parse_rtp(&Bytes::from_static(&[
                0x8f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
            ]))
            .is_none()
        );
        let mut pad = vec![0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 200];
        assert!(parse_rtp(&Bytes::from(std::mem::take(&mut pad))).is_none());
    }

    #[test]
    fn stream_time_extends_across_the_wrap_and_counts_losses() {
        let mut c = StreamClock::default();
        assert_eq!(c.packet(65534, u32::MAX - 1000), (0, 0));
        assert_eq!(c.packet(65535, u32::MAX), (1000, 0));
        assert_eq!(c.packet(2, 2000), (3001, 2), "two lost across the wrap");
        assert_eq!(c.packet(1, 1000), (2001, 0), "late packet, earlier time");
        assert_eq!(
            c.seconds_at(89_000, 90_000).map(|s| (s * 1000.0).round()),
            Some(1000.0)
        );
    }
}
