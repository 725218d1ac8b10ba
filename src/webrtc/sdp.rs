//! What the engine's users need from SDP text.

use str0m::media::{MediaKind, Mid};

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
