//! Which stream tracks a WHEP session sends, with which codecs, and on
//! which of the offer's media sections and payload types.

use str0m::RtcConfig;
use str0m::format::Codec;
use str0m::media::MediaKind;
use str0m::rtp::{Extension, ExtensionMap};

use super::{Route, Routes};
use crate::media::{CodecParams, G711Law, Track};
use crate::webrtc::sdp::media_sections;
use crate::webrtc::{Extensions, Session, StreamSpec};

const ABS_SEND_TIME: &str = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time";
const SDES_MID: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";

/// The header extension ids (`a=extmap`, RFC 8285 §8; session-level ones
/// apply to every section) and the CNAME (`a=ssrc:… cname:`, RFC 5576
/// §4.1) of media section `mid` in an SDP answer.
pub(crate) fn section_identity(answer: &str, mid: &str) -> (Extensions, Vec<u8>) {
    let mut blocks = answer.split("\nm=");
    let session_level = blocks.next().unwrap_or_default();
    let section = blocks
        .find(|b| {
            b.lines()
                .any(|l| l.strip_prefix("a=mid:").is_some_and(|m| m.trim() == mid))
        })
        .unwrap_or_default();
    let mut ext = Extensions::default();
    let mut cname = Vec::new();
    for line in session_level.lines().chain(section.lines()) {
        let line = line.trim_end();
        if let Some(rest) = line.strip_prefix("a=extmap:") {
            let mut fields = rest.split_whitespace();
            // `a=extmap:<id>[/<direction>] <uri>`; one-byte ids are 1–14.
            let id = fields
                .next()
                .and_then(|id| id.split('/').next())
                .and_then(|id| id.parse::<u8>().ok())
                .filter(|id| (1..=14).contains(id));
            match (id, fields.next()) {
                (Some(id), Some(ABS_SEND_TIME)) => ext.abs_send_time = Some(id),
                (Some(id), Some(SDES_MID)) => ext.mid = Some((id, mid.as_bytes().to_vec())),
                _ => {}
            }
        } else if cname.is_empty()
            && let Some(rest) = line.strip_prefix("a=ssrc:")
            && let Some((_, value)) = rest.split_once(" cname:")
        {
            cname = value.trim().as_bytes().to_vec();
        }
    }
    (ext, cname)
}

/// Takes the outgoing stream of `route` away from str0m (it made one when
/// it answered, with the SSRCs the answer announces) and describes it for
/// the session to send itself ([`Session::send_own`]): without it str0m
/// sends no sender reports and keeps no resend buffer for it.
pub(crate) fn take_stream(
    session: &mut Session,
    route: &Route,
    clock: u32,
    answer: &str,
) -> Option<StreamSpec> {
    let rtx_pt = session
        .rtc
        .codec_config()
        .params()
        .iter()
        .find(|p| p.pt() == route.pt)
        .and_then(|p| p.resend());
    let mut api = session.rtc.direct_api();
    let stream = api.stream_tx_by_mid(route.mid, None)?;
    let ssrc = stream.ssrc();
    let rtx = stream.rtx();
    api.remove_stream_tx(ssrc);
    let (extensions, cname) = section_identity(answer, &route.mid);
    Some(StreamSpec {
        ssrc: *ssrc,
        pt: *route.pt,
        rtx: rtx.zip(rtx_pt).map(|(s, p)| (*s, *p)),
        clock,
        extensions,
        cname,
    })
}

/// The RTP header extensions (RFC 8285) a WHEP answer may accept: the MID
/// (RFC 8843 §15, which BUNDLE needs to route the first packets) and
/// abs-send-time (the receiver's delay-based estimate). Transport-wide
/// congestion control (draft-holmer-rmcat-transport-wide-cc-extensions-01)
/// is left out on purpose: a relay cannot change the publisher's bitrate, so
/// its feedback would be of no use, and str0m keeps a record of the last
/// 1000 packets sent for it in every session (~80 KiB per viewer). Audio
/// level, stream ids (simulcast) and video orientation are never sent.
pub(crate) fn header_extensions() -> ExtensionMap {
    let mut exts = ExtensionMap::empty();
    exts.set(2, Extension::AbsoluteSendTime);
    exts.set(4, Extension::RtpMid);
    exts
}

/// What the stream can send: (track index, codec, via the AAC→Opus bridge).
#[derive(Debug)]
pub(crate) struct Plan {
    pub video: Option<(usize, Codec)>,
    pub audio: Option<(usize, Codec, bool)>,
}

impl Plan {
    /// H.264 (else H.265) video; Opus, else G.711 as is, else AAC through
    /// the Opus bridge.
    pub fn for_tracks(tracks: &[std::sync::Arc<Track>]) -> Plan {
        let find = |f: &dyn Fn(&CodecParams) -> Option<Codec>| {
            tracks
                .iter()
                .find_map(|t| f(&t.params).map(|c| (t.index, c)))
        };
        let video = find(&|p| matches!(p, CodecParams::H264(_)).then_some(Codec::H264))
            .or_else(|| find(&|p| matches!(p, CodecParams::H265(_)).then_some(Codec::H265)));
        let audio = find(&|p| matches!(p, CodecParams::Opus(_)).then_some(Codec::Opus))
            .map(|(i, c)| (i, c, false))
            .or_else(|| {
                find(&|p| match p {
                    CodecParams::G711(g) if g.law == G711Law::MuLaw => Some(Codec::PCMU),
                    CodecParams::G711(_) => Some(Codec::PCMA),
                    _ => None,
                })
                .map(|(i, c)| (i, c, false))
            })
            .or_else(|| {
                find(&|p| matches!(p, CodecParams::Aac(_)).then_some(Codec::Opus))
                    .map(|(i, c)| (i, c, true))
            });
        Plan { video, audio }
    }

    /// Only the codecs this stream needs go into the answer.
    pub fn enable_codecs(&self, mut config: RtcConfig) -> RtcConfig {
        match self.video.map(|v| v.1) {
            Some(Codec::H264) => config = config.enable_h264(true),
            Some(Codec::H265) => config = config.enable_h265(true),
            _ => {}
        }
        match self.audio.map(|a| a.1) {
            Some(Codec::Opus) => config = config.enable_opus(true, false),
            Some(Codec::PCMU) => config = config.enable_pcmu(true, false),
            Some(Codec::PCMA) => config = config.enable_pcma(true, false),
            _ => {}
        }
        config
    }

    /// The negotiated media sections and payload types. For H.264 any
    /// packetization-mode 1 payload type will do: browsers decode a High
    /// profile stream on a Constrained Baseline payload type.
    pub fn routes(&self, session: &mut Session, answer: &str) -> Routes {
        let mut routes = Routes::default();
        for (kind, mid) in media_sections(answer) {
            // The payload types the answer kept for this section (str0m's
            // `Writer::payload_params`, which RTP mode does not offer).
            let Some(media) = session.rtc.media(mid) else {
                continue;
            };
            let remote = media.remote_pts();
            let pick = |codec: Codec| {
                let mut params: Vec<_> = session
                    .rtc
                    .codec_config()
                    .params()
                    .iter()
                    .filter(|p| remote.contains(&p.pt()) && p.spec().codec == codec)
                    .collect();
                // Prefer packetization-mode 1, then a matching High profile.
                params.sort_by_key(|p| {
                    let f = p.spec().format;
                    (
                        f.packetization_mode != Some(1),
                        f.profile_level_id.map(|id| id >> 16) != Some(0x64),
                    )
                });
                params
                    .into_iter()
                    .find(|p| codec != Codec::H264 || p.spec().format.packetization_mode == Some(1))
                    .map(|p| p.pt())
            };
            match kind {
                MediaKind::Video if routes.video.is_none() => {
                    if let Some((source, codec)) = self.video
                        && let Some(pt) = pick(codec)
                    {
                        routes.video = Some(Route {
                            mid,
                            pt,
                            codec,
                            source,
                            transcode: false,
                            stream: 0,
                        });
                    }
                }
                MediaKind::Audio if routes.audio.is_none() => {
                    if let Some((source, codec, transcode)) = self.audio
                        && let Some(pt) = pick(codec)
                    {
                        routes.audio = Some(Route {
                            mid,
                            pt,
                            codec,
                            source,
                            transcode,
                            stream: 0,
                        });
                    }
                }
                _ => {}
            }
        }
        routes
    }

    pub fn describe(&self) -> String {
        format!(
            "the stream sends video {:?} and audio {:?}",
            self.video.map(|v| v.1),
            self.audio.map(|a| a.1)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::Track;
    use std::time::Instant;
    use str0m::Rtc;
    use str0m::media::Direction;

    /// A browser-like offer: str0m's standard extensions (Chrome's), which
    /// include transport-wide-cc.
    fn offer() -> str0m::change::SdpOffer {
        let mut client = Rtc::builder().build(Instant::now());
        let mut api = client.sdp_api();
        api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
        api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        let (offer, _pending) = api.apply().unwrap();
        offer
    }

    /// The answer's sending sections are taken from str0m with the SSRCs,
    /// RTX and extension ids the answer announces; a section the offer
    /// made inactive has no stream to take.
    #[test]
    fn takes_the_answers_streams_and_skips_sections_it_does_not_send() {
        let mut client = Rtc::builder().build(Instant::now());
        let mut api = client.sdp_api();
        api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
        api.add_media(MediaKind::Audio, Direction::Inactive, None, None, None);
        let (offer, _pending) = api.apply().unwrap();
        let engine = crate::webrtc::Engine::start(
            &crate::webrtc::EngineConfig {
                listen: None,
                tcp_listen: None,
                public_addresses: Vec::new(),
            },
            tokio_util::sync::CancellationToken::new(),
        )
        .unwrap();
        let config = engine
            .rtc_config()
            .set_rtp_mode(true)
            .enable_h264(true)
            .enable_opus(true, false)
            .set_extension_map(header_extensions());
        let mut session = engine.open(config);
        let answer = crate::webrtc::sdp::accept_offer(&mut session.rtc, offer)
            .unwrap()
            .to_sdp_string();
        let tracks = [
            std::sync::Arc::new(Track::new(0, 0, crate::media::testing::h264(640))),
            std::sync::Arc::new(Track::new(1, 0, crate::media::testing::aac())),
        ];
        let routes = Plan::for_tracks(&tracks).routes(&mut session, &answer);
        let video = routes.video.expect("video route");
        let spec = take_stream(&mut session, &video, 90_000, &answer).expect("video stream");
        assert!(
            answer.contains(&format!("a=ssrc:{} cname:", spec.ssrc)),
            "{answer}"
        );
        let (rtx, rtx_pt) = spec.rtx.expect("RTX");
        assert!(
            answer.contains(&format!("a=ssrc-group:FID {} {rtx}", spec.ssrc)),
            "{answer}"
        );
        assert!(
            answer.contains(&format!("apt={}", spec.pt))
                && answer.contains(&format!("a=rtpmap:{rtx_pt} rtx/90000")),
            "{answer}"
        );
        assert!(!spec.cname.is_empty());
        let (mid_id, mid) = spec.extensions.mid.clone().expect("MID extension");
        assert!(
            answer.contains(&format!(
                "a=extmap:{mid_id} urn:ietf:params:rtp-hdrext:sdes:mid"
            )),
            "{answer}"
        );
        assert_eq!(mid, video.mid.as_bytes());
        assert!(spec.extensions.abs_send_time.is_some());
        // Taken once: str0m no longer has it.
        assert!(take_stream(&mut session, &video, 90_000, &answer).is_none());
        // The inactive audio section still has a codec (a route), but no
        // stream.
        let audio = routes.audio.expect("audio route");
        assert!(
            take_stream(&mut session, &audio, 48_000, &answer).is_none(),
            "{answer}"
        );
    }

    #[test]
    fn answers_accept_the_mid_but_not_transport_wide_cc() {
        let offer = offer();
        assert!(offer.to_sdp_string().contains("transport-wide-cc"));
        let mut server = RtcConfig::new()
            .set_ice_lite(true)
            .clear_codecs()
            .enable_h264(true)
            .enable_opus(true, false)
            .set_extension_map(header_extensions())
            .build(Instant::now());
        let answer = server
            .sdp_api()
            .accept_offer(offer)
            .unwrap()
            .to_sdp_string();
        assert!(
            answer.contains("urn:ietf:params:rtp-hdrext:sdes:mid"),
            "{answer}"
        );
        assert!(!answer.contains("transport-wide-cc"), "{answer}");
    }
}
