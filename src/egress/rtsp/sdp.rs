//! The SDP a `DESCRIBE` answers with (RFC 8866; RTSP use per RFC 7826
//! Appendix D): one media section per track the RTP payload formats carry,
//! with the decoder parameters a reader needs before the first keyframe.

use std::fmt::Write as _;
use std::sync::Arc;

use base64::Engine as _;

use crate::media::{CodecParams, G711Law, Track};

/// How one track is sent: its payload type, clock rate and `a=control`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaPlan {
    /// Index of the track in its stream.
    pub track: usize,
    pub payload_type: u8,
    /// RTP clock rate (RFC 3550 §5.1): 90 kHz video, the sample rate of
    /// audio (48 kHz for Opus, RFC 7587 §4.1).
    pub clock_rate: u32,
    /// The `a=control` value, relative to the presentation URL.
    pub control: String,
}

/// The session description of `tracks` and how each is sent. `origin` is
/// the address for the `o=` line (the server's side of the connection).
pub fn describe(
    tracks: &[Arc<Track>],
    origin: std::net::IpAddr,
    session_id: u64,
) -> (String, Vec<MediaPlan>) {
    let family = if origin.is_ipv4() { "IP4" } else { "IP6" };
    let mut sdp = String::new();
    // Session section (RFC 8866 §5): v, o, s, c, t, then attributes.
    let _ = write!(
        sdp,
        "v=0\r\no=- {session_id} 1 IN {family} {origin}\r\ns=mediarelay\r\nc=IN {family} {}\r\nt=0 0\r\na=tool:mediarelay\r\na=control:*\r\na=range:npt=now-\r\n",
        if origin.is_ipv4() { "0.0.0.0" } else { "::" }
    );
    let mut plans = Vec::new();
    let mut dynamic = 96u8;
    for track in tracks {
        let control = format!("trackID={}", track.index);
        let (kind, payload_type, rtpmap, clock_rate, fmtp) = match &track.params {
            CodecParams::H264(h) => {
                // RFC 6184 §8.1: profile-level-id from the SPS's first three
                // bytes after the NAL header; the parameter sets in-line.
                let sets: Vec<String> = h.sps.iter().chain(&h.pps).map(|s| b64(s)).collect();
                let mut fmtp = format!(
                    "packetization-mode=1;profile-level-id={:02x}{:02x}{:02x}",
                    h.profile_idc, h.constraint_flags, h.level_idc
                );
                if !sets.is_empty() {
                    let _ = write!(fmtp, ";sprop-parameter-sets={}", sets.join(","));
                }
                (
                    "video",
                    take(&mut dynamic),
                    "H264/90000".to_string(),
                    90_000,
                    Some(fmtp),
                )
            }
            CodecParams::H265(h) => {
                // RFC 7798 §7.1: sprop-vps/sps/pps, parameter sets by NAL type.
                let mut by_type: [Vec<String>; 3] = Default::default();
                for set in &h.parameter_sets {
                    let slot = match set.first().map(|b| (b >> 1) & 0x3f) {
                        Some(32) => 0,
                        Some(33) => 1,
                        Some(34) => 2,
                        _ => continue,
                    };
                    by_type[slot].push(b64(set));
                }
                let fmtp = ["sprop-vps", "sprop-sps", "sprop-pps"]
                    .iter()
                    .zip(&by_type)
                    .filter(|(_, sets)| !sets.is_empty())
                    .map(|(name, sets)| format!("{name}={}", sets.join(",")))
                    .collect::<Vec<_>>()
                    .join(";");
                let fmtp = (!fmtp.is_empty()).then_some(fmtp);
                (
                    "video",
                    take(&mut dynamic),
                    "H265/90000".to_string(),
                    90_000,
                    fmtp,
                )
            }
            CodecParams::Aac(a) => {
                // RFC 3640 §3.3.6, AAC-hbr: one AU-header of 16 bits
                // (13-bit size, 3-bit index) per access unit.
                let config: String = a.asc.iter().map(|b| format!("{b:02x}")).collect();
                let fmtp = format!(
                    "profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;config={config}"
                );
                (
                    "audio",
                    take(&mut dynamic),
                    format!("MPEG4-GENERIC/{}/{}", a.sample_rate, a.channels),
                    a.sample_rate,
                    Some(fmtp),
                )
            }
            CodecParams::Opus(o) => {
                // RFC 7587 §7: always "opus/48000/2"; mono is a parameter.
                let fmtp = (o.channels == 2).then(|| "sprop-stereo=1".to_string());
                (
                    "audio",
                    take(&mut dynamic),
                    "opus/48000/2".to_string(),
                    48_000,
                    fmtp,
                )
            }
            CodecParams::G711(g) => {
                let name = match g.law {
                    G711Law::MuLaw => "PCMU",
                    G711Law::ALaw => "PCMA",
                };
                // RFC 3551 §6: static types 0 and 8 are 8 kHz mono.
                let payload_type = match (g.law, g.sample_rate, g.channels) {
                    (G711Law::MuLaw, 8000, 1) => 0,
                    (G711Law::ALaw, 8000, 1) => 8,
                    _ => take(&mut dynamic),
                };
                let rtpmap = if g.channels == 1 {
                    format!("{name}/{}", g.sample_rate)
                } else {
                    format!("{name}/{}/{}", g.sample_rate, g.channels)
                };
                ("audio", payload_type, rtpmap, g.sample_rate, None)
            }
        };
        let _ = write!(
            sdp,
            "m={kind} 0 RTP/AVP {payload_type}\r\na=rtpmap:{payload_type} {rtpmap}\r\n"
        );
        if let Some(fmtp) = fmtp {
            let _ = write!(sdp, "a=fmtp:{payload_type} {fmtp}\r\n");
        }
        let _ = write!(sdp, "a=control:{control}\r\n");
        plans.push(MediaPlan {
            track: track.index,
            payload_type,
            clock_rate,
            control,
        });
    }
    (sdp, plans)
}

fn take(next: &mut u8) -> u8 {
    let pt = *next;
    *next = next.saturating_add(1).min(127);
    pt
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::media::{G711Params, H265Params, OpusParams};

    fn track(index: usize, params: CodecParams) -> Arc<Track> {
        Arc::new(Track::new(index, 0, params))
    }

    fn attributes<'a>(sdp: &'a sdp_types::Session, media: usize, name: &str) -> Vec<&'a str> {
        sdp.medias[media]
            .attributes
            .iter()
            .filter(|a| a.attribute == name)
            .filter_map(|a| a.value.as_deref())
            .collect()
    }

    #[test]
    fn h264_and_aac_parse_back_with_their_parameters() {
        let avcc = Bytes::from_static(crate::media::testing::AVCC_HIGH_640X360);
        let (h, _) = crate::codec::h264::h264_params(&avcc).unwrap();
        let tracks = [
            track(0, CodecParams::H264(h.clone())),
            track(1, crate::media::testing::aac()),
        ];
        let (text, plans) = describe(&tracks, "192.0.2.1".parse().unwrap(), 42);
        let sdp = sdp_types::Session::parse(text.as_bytes()).unwrap();
        assert_eq!(sdp.origin.unicast_address, "192.0.2.1");
        assert_eq!(sdp.medias.len(), 2);
        assert_eq!(sdp.medias[0].media, "video");
        assert_eq!(sdp.medias[0].fmt, "96");
        assert_eq!(attributes(&sdp, 0, "rtpmap"), ["96 H264/90000"]);
        let fmtp = attributes(&sdp, 0, "fmtp")[0];
        assert!(fmtp.contains("packetization-mode=1"), "{fmtp}");
        assert!(fmtp.contains("profile-level-id=64001e"), "{fmtp}");
        let sets = fmtp.split("sprop-parameter-sets=").nth(1).unwrap();
        let decoded: Vec<Vec<u8>> = sets
            .split(',')
            .map(|s| base64::engine::general_purpose::STANDARD.decode(s).unwrap())
            .collect();
        assert_eq!(decoded, [h.sps[0].to_vec(), h.pps[0].to_vec()]);
        assert_eq!(attributes(&sdp, 1, "rtpmap"), ["97 MPEG4-GENERIC/48000/2"]);
        let fmtp = attributes(&sdp, 1, "fmtp")[0];
        assert!(
            fmtp.starts_with("97 ")
                && fmtp.contains(
                    "mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;config=1190"
                ),
            "{fmtp}"
        );
        assert_eq!(attributes(&sdp, 0, "control"), ["trackID=0"]);
        assert_eq!(attributes(&sdp, 1, "control"), ["trackID=1"]);
        assert_eq!(
            plans
                .iter()
                .map(|p| (p.payload_type, p.clock_rate))
                .collect::<Vec<_>>(),
            [(96, 90_000), (97, 48_000)]
        );
    }

    #[test]
    fn h265_opus_and_g711_use_their_payload_formats() {
        let vps = Bytes::from_static(&[0x40, 0x01, 0x0c]);
        let sps = Bytes::from_static(&[0x42, 0x01, 0x01]);
        let pps = Bytes::from_static(&[0x44, 0x01, 0xc1]);
        let tracks = [
            track(
                0,
                CodecParams::H265(H265Params {
                    hvcc: Bytes::new(),
                    parameter_sets: vec![vps, sps, pps],
                    codec: "hvc1.1.6.L93.B0".into(),
                    width: 1280,
                    height: 720,
                }),
            ),
            track(1, CodecParams::Opus(OpusParams { channels: 1 })),
            track(
                2,
                CodecParams::G711(G711Params {
                    law: G711Law::MuLaw,
                    sample_rate: 8000,
                    channels: 1,
                }),
            ),
            track(
                3,
                CodecParams::G711(G711Params {
                    law: G711Law::ALaw,
                    sample_rate: 16000,
                    channels: 1,
                }),
            ),
        ];
        let (text, plans) = describe(&tracks, "::1".parse().unwrap(), 1);
        let sdp = sdp_types::Session::parse(text.as_bytes()).unwrap();
        assert_eq!(attributes(&sdp, 0, "rtpmap"), ["96 H265/90000"]);
        assert_eq!(
            attributes(&sdp, 0, "fmtp"),
            ["96 sprop-vps=QAEM;sprop-sps=QgEB;sprop-pps=RAHB"]
        );
        assert_eq!(attributes(&sdp, 1, "rtpmap"), ["97 opus/48000/2"]);
        assert!(
            attributes(&sdp, 1, "fmtp").is_empty(),
            "mono: no sprop-stereo"
        );
        assert_eq!(sdp.medias[2].fmt, "0");
        assert_eq!(attributes(&sdp, 2, "rtpmap"), ["0 PCMU/8000"]);
        assert_eq!(attributes(&sdp, 3, "rtpmap"), ["98 PCMA/16000"]);
        assert_eq!(
            plans
                .iter()
                .map(|p| (p.payload_type, p.clock_rate))
                .collect::<Vec<_>>(),
            [(96, 90_000), (97, 48_000), (0, 8000), (98, 16000)]
        );
        assert!(text.contains("o=- 1 1 IN IP6 ::1\r\n"), "{text}");
    }
}
