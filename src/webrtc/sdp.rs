//! What the engine's users need from SDP text: offers checked, parsed and
//! answered without letting a malformed one take more than its request.

use std::panic::AssertUnwindSafe;

use str0m::Rtc;
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{MediaKind, Mid};

/// Parses a WHEP/WHIP request body as an SDP offer (RFC 8829 §5.2). Besides
/// str0m's parse, a payload type mapped twice in one media section, or to
/// two codecs or media kinds across the offer (RFC 9143 §7.5 forbids it for
/// bundled sections), is refused here: str0m asserts on it when answering
/// (found by fuzzing, `fuzz/regressions/sdp_offer/`). The `Err` text is for
/// the client.
pub fn parse_offer(text: &str) -> Result<SdpOffer, String> {
    let mut mapped: std::collections::HashMap<&str, (&str, String)> = Default::default();
    for section in text.split("\nm=").skip(1) {
        let kind = section.split(' ').next().unwrap_or_default();
        let mut in_section = std::collections::HashSet::new();
        for line in section.lines() {
            let Some(rest) = line.strip_prefix("a=rtpmap:") else {
                continue;
            };
            let mut fields = rest.split_whitespace();
            let pt = fields.next().unwrap_or_default();
            let encoding = fields.next().unwrap_or_default().to_ascii_lowercase();
            let twice = !in_section.insert(pt)
                || mapped
                    .insert(pt, (kind, encoding.clone()))
                    .is_some_and(|(k, e)| k != kind || e != encoding);
            if twice {
                return Err(format!(
                    "payload type {pt} is mapped twice (to two codecs, or twice in a media section)"
                ));
            }
        }
    }
    SdpOffer::from_sdp_string(text).map_err(|e| {
        tracing::debug!(error = %e, "unparsable SDP offer");
        "the body is not an SDP offer".to_string()
    })
}

/// `rtc`'s answer to `offer`. A panic inside str0m on an offer it cannot
/// handle ends only this request, as an error: the session is dropped by
/// the caller.
pub fn accept_offer(rtc: &mut Rtc, offer: SdpOffer) -> Result<SdpAnswer, String> {
    match std::panic::catch_unwind(AssertUnwindSafe(|| rtc.sdp_api().accept_offer(offer))) {
        Ok(answer) => answer.map_err(|e| e.to_string()),
        Err(_) => Err("the offer cannot be answered (refused by the WebRTC stack)".into()),
    }
}

/// The media sections of an SDP (RFC 8866 §5.14) with their `a=mid`
/// (RFC 5888): str0m announces them as events only once media can flow,
/// but the routes are needed as soon as the answer is made.
pub fn media_sections(sdp: &str) -> Vec<(MediaKind, Mid)> {
    let mut out = Vec::new();
    let mut kind = None;
    for line in sdp.lines() {
        if let Some(m) = line.strip_prefix("m=") {
            let mut fields = m.split(' ');
            let media = fields.next();
            // Port 0: the section was rejected (RFC 3264 §6).
            let rejected = fields.next() == Some("0");
            kind = match media {
                Some("video") if !rejected => Some(MediaKind::Video),
                Some("audio") if !rejected => Some(MediaKind::Audio),
                _ => None,
            };
        } else if let (Some(k), Some(mid)) = (kind, line.strip_prefix("a=mid:")) {
            out.push((k, Mid::from(mid.trim())));
            kind = None;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = include_str!("../../fuzz/seeds/sdp_offer/whep_offer");

    #[test]
    fn payload_types_mapped_twice_are_refused_and_shared_ones_are_not() {
        assert!(parse_offer(OFFER).is_ok());
        // The fuzzer's find: video's H.264 type mapped again in the audio
        // section (str0m asserted "Pt locked multiple times").
        let across = OFFER.replace(
            "a=rtpmap:111 opus/48000/2",
            "a=rtpmap:102 H264/90000\r\na=rtpmap:111 opus/48000/2",
        );
        let e = parse_offer(&across).unwrap_err();
        assert!(e.contains("payload type 102 is mapped twice"), "{e}");
        let within = OFFER.replace(
            "a=rtpmap:103 rtx/90000",
            "a=rtpmap:103 rtx/90000\r\na=rtpmap:103 rtx/90000",
        );
        assert!(parse_offer(&within).is_err());
        // Two video sections with the same mapping (a browser with two
        // video transceivers) are fine.
        let video = OFFER
            .split("m=audio")
            .next()
            .unwrap()
            .split_once("m=video")
            .unwrap()
            .1
            .replace("a=mid:0", "a=mid:2");
        let two_videos = format!("{OFFER}m=video{video}");
        assert!(parse_offer(&two_videos).is_ok(), "{two_videos}");
        // And the answer to a str0m-asserting offer is an error, not a panic.
        let mut rtc = str0m::RtcConfig::new()
            .enable_h264(true)
            .enable_opus(true, false)
            .build(std::time::Instant::now());
        let raw = str0m::change::SdpOffer::from_sdp_string(&across).unwrap();
        assert!(accept_offer(&mut rtc, raw).is_err());
    }

    #[test]
    fn finds_media_sections_and_mids() {
        let sdp = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\nm=application 9 x\r\na=mid:2\r\nm=video 0 UDP/TLS/RTP/SAVPF 0\r\na=mid:3\r\n";
        let s = media_sections(sdp);
        assert_eq!(
            s,
            vec![
                (MediaKind::Video, Mid::from("0")),
                (MediaKind::Audio, Mid::from("1"))
            ]
        );
    }
}
