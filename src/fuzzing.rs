//! Entry points of the fuzz targets (`fuzz/`, cargo-fuzz) and of the test
//! that replays their seed corpora and every crash ever found
//! (`tests/fuzz_regressions.rs`, stable Rust, part of the suite).
//!
//! Each function takes arbitrary bytes, drives one parser that sees network
//! (or operator) input the way the server drives it, and must return
//! without panicking whatever the bytes are; errors are the expected
//! outcome for most inputs. Each returns how much of the input was
//! accepted (events, frames, units), which the fuzzer ignores and the
//! regression test checks on the seeds, so a harness that stops reaching
//! its parser is noticed. They live in the library so the fuzz targets and
//! the regression test run the same code.

use bytes::Bytes;

use crate::codec::rtp::{Depacketizer, Packet, h26x::H26xDepacketizer};
use crate::codec::{aac, h264};
use crate::config::{self, Overrides};
use crate::ingest::flv::FlvIngest;
use crate::protocol::rtmp::client::ClientSession;
use crate::protocol::rtmp::server::{ServerConfig, ServerEvent, ServerSession};

/// A harness: arbitrary bytes in, how much of them was accepted out.
pub type Harness = fn(&[u8]) -> usize;

/// The fuzz targets by name, for the regression test: `fuzz/corpus/NAME/`
/// and `fuzz/regressions/NAME/` are replayed through the function.
pub const TARGETS: &[(&str, Harness)] = &[
    ("rtmp_server", rtmp_server),
    ("rtmp_client", rtmp_client),
    ("flv_tags", flv_tags),
    ("codec_config", codec_config),
    ("rtp_depacketize", rtp_depacketize),
    ("sdp_offer", sdp_offer),
    ("stun_route", stun_route),
    ("hls_request", hls_request),
    ("api_config_body", api_config_body),
    ("config_toml", config_toml),
    ("rtsp_framer", rtsp_framer),
    ("http1_request", http1_request),
    ("viewer_rtcp", viewer_rtcp),
];

/// Splits `data` into pieces whose sizes come from `seed`, so the fuzzer
/// also explores where the socket's reads split the stream.
fn pieces(data: &[u8], seed: u8) -> std::slice::Chunks<'_, u8> {
    let step = 1 + usize::from(seed) * 37; // 1 ..= 9436 bytes
    data.chunks(step)
}

/// An RTMP server connection (handshake, chunk stream, AMF0 commands) that
/// accepts whatever it is asked, with every published audio/video message
/// fed to the FLV ingest as `ingest::rtmp` does (FLV tag bodies, AVC
/// decoder configuration records, AudioSpecificConfig). The first byte
/// picks the read size and whether the handshake is skipped (so the
/// fuzzer reaches the chunk layer at once). Returns the events plus the
/// ingest's outputs (frames, parameters, start).
pub fn rtmp_server(data: &[u8]) -> usize {
    let Some((&mode, rest)) = data.split_first() else {
        return 0;
    };
    let mut session = if mode & 1 == 1 {
        ServerSession::new_after_handshake(ServerConfig::default())
    } else {
        ServerSession::new(ServerConfig::default())
    };
    let mut ingest = FlvIngest::new();
    let mut out = Vec::new();
    let mut accepted = 0;
    for piece in pieces(rest, mode >> 1) {
        if session.handle_input(piece).is_err() {
            return accepted;
        }
        loop {
            while let Some(event) = session.poll_event() {
                accepted += 1;
                let ingested = match event {
                    ServerEvent::ConnectRequested { .. } => {
                        session.accept_connect();
                        Ok(())
                    }
                    ServerEvent::PublishRequested { .. } => {
                        session.accept_publish();
                        Ok(())
                    }
                    ServerEvent::PlayRequested { .. } => {
                        session.accept_play();
                        Ok(())
                    }
                    ServerEvent::Metadata { properties } => {
                        let has = |k: &str| Some(properties.iter().any(|(n, _)| n == k));
                        ingest.on_metadata(has("videocodecid"), has("audiocodecid"));
                        Ok(())
                    }
                    ServerEvent::Video { timestamp, payload } => {
                        ingest.on_video(timestamp, &payload, &mut out)
                    }
                    ServerEvent::Audio { timestamp, payload } => {
                        ingest.on_audio(timestamp, &payload, &mut out)
                    }
                    ServerEvent::PublishFinished | ServerEvent::PlayFinished => Ok(()),
                };
                accepted += out.len();
                out.clear();
                if ingested.is_err() {
                    return accepted; // the server ends the session
                }
            }
            match session.resume() {
                Ok(true) => continue,
                Ok(false) => break,
                Err(_) => return accepted,
            }
        }
        while session.poll_output().is_some() {}
    }
    accepted
}

/// The RTMP client of pulled `rtmp://` sources, fed a server's answers
/// after it sent `connect`, `createStream` and `play`. Returns the events.
pub fn rtmp_client(data: &[u8]) -> usize {
    let Some((&mode, rest)) = data.split_first() else {
        return 0;
    };
    let mut client = ClientSession::new();
    client.connect("live", "rtmp://127.0.0.1/live");
    client.create_stream();
    client.play("cam");
    let mut accepted = 0;
    for piece in pieces(rest, mode) {
        if client.handle_input(piece).is_err() {
            return accepted;
        }
        while client.poll_event().is_some() {
            accepted += 1;
        }
        while client.take_output().is_some() {}
    }
    accepted
}

/// Reads `[u8 kind][u32 timestamp][u16 length][body]` records.
fn records(data: &[u8]) -> impl Iterator<Item = (u8, u32, Bytes)> + '_ {
    let mut rest = data;
    std::iter::from_fn(move || {
        let (head, tail) = rest.split_at_checked(7)?;
        let kind = head[0];
        let ts = u32::from_be_bytes([head[1], head[2], head[3], head[4]]);
        let len = usize::from(u16::from_be_bytes([head[5], head[6]])).min(tail.len());
        let (body, tail) = tail.split_at(len);
        rest = tail;
        Some((kind, ts, Bytes::copy_from_slice(body)))
    })
}

/// FLV audio and video tag bodies through the ingest that turns them into
/// frames (`[kind][timestamp][length][body]` records; odd kinds are video).
/// An error ends the session in the server; here the next tags still go
/// in (a fresh state is what the fuzzer has anyway). Returns the outputs.
pub fn flv_tags(data: &[u8]) -> usize {
    let mut ingest = FlvIngest::new();
    let mut out = Vec::new();
    let mut accepted = 0;
    for (kind, ts, body) in records(data) {
        let result = if kind & 1 == 1 {
            ingest.on_video(ts, &body, &mut out)
        } else {
            ingest.on_audio(ts, &body, &mut out)
        };
        if result.is_ok() && kind == 0xfe {
            ingest.force_start(&mut out);
        }
        accepted += out.len();
        out.clear();
    }
    accepted
}

/// Codec configuration parsers, picked by the first byte: the AVC decoder
/// configuration record (ISO/IEC 14496-15 §5.3.3) with its SPS, the AAC
/// AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1), NAL length rewriting,
/// the SPS reorder depth and Annex B ↔ AVCC. Returns 1 if it parsed.
pub fn codec_config(data: &[u8]) -> usize {
    let Some((&which, rest)) = data.split_first() else {
        return 0;
    };
    let bytes = Bytes::copy_from_slice(rest);
    let parsed = match which % 5 {
        0 => {
            if let Ok(record) = h264::AvcDecoderConfig::parse(&bytes) {
                let _ = record.to_record(4);
            }
            h264::h264_params(&bytes).is_ok()
        }
        1 => aac::parse_audio_specific_config(&bytes).is_ok(),
        2 => h264::normalize_nal_lengths(bytes, 1 + (which >> 3) % 4).is_ok(),
        3 => {
            let _ = h264::annexb_to_avcc(rest);
            h264::max_reorder_frames(rest).is_some()
        }
        _ => !h264::avcc_to_annexb(rest, None).is_empty(),
    };
    usize::from(parsed)
}

/// RTP payloads of a camera's stream through the depacketizer of the
/// codec the first byte picks (H.264 per RFC 6184, H.265 per RFC 7798,
/// AAC per RFC 3640, pass-through for G.711 and Opus). Packets are
/// `[flags][u16 length][payload]`: flags bit 0 is the marker, bits 1–2 a
/// reported loss, bits 4–7 the timestamp step in 1500 ticks. Returns the
/// units pulled.
pub fn rtp_depacketize(data: &[u8]) -> usize {
    let Some((&which, mut rest)) = data.split_first() else {
        return 0;
    };
    let mut depacketizer = match which % 4 {
        0 => Depacketizer::H26x(H26xDepacketizer::h264(None)),
        1 => Depacketizer::H26x(H26xDepacketizer::h265(None)),
        2 => Depacketizer::Aac(crate::codec::rtp::aac::AacDepacketizer::new(1024)),
        _ => Depacketizer::Passthrough(Default::default()),
    };
    let mut sequence_number = 0u16;
    let mut timestamp = 0i64;
    let mut units = 0;
    while let Some((head, tail)) = rest.split_at_checked(3) {
        let flags = head[0];
        let len = usize::from(u16::from_be_bytes([head[1], head[2]])).min(tail.len());
        let (payload, tail) = tail.split_at(len);
        rest = tail;
        timestamp += i64::from(flags >> 4) * 1500;
        let loss = u16::from((flags >> 1) & 3);
        sequence_number = sequence_number.wrapping_add(1 + loss);
        let packet = Packet {
            sequence_number,
            timestamp,
            mark: flags & 1 == 1,
            loss,
            payload: Bytes::copy_from_slice(payload),
        };
        // An error drops the packet's access unit; the stream goes on, as
        // in `ingest::rtsp`.
        let _ = depacketizer.push(packet);
        while depacketizer.pull().is_some() {
            units += 1;
        }
    }
    units
}

/// A WHEP/WHIP request body: checked and parsed as an SDP offer and
/// answered by str0m (as `webrtc::sdp` does for the sessions) with the
/// codecs our sessions enable, then the answer's media sections
/// read as the sessions read them. Returns the answer's media sections.
pub fn sdp_offer(data: &[u8]) -> usize {
    let Ok(text) = std::str::from_utf8(data) else {
        return 0;
    };
    let _ = crate::webrtc::sdp::media_sections(text);
    let Ok(offer) = crate::webrtc::sdp::parse_offer(text) else {
        return 0;
    };
    let mut rtc = str0m::RtcConfig::new()
        .enable_h264(true)
        .enable_opus(true, false)
        .build(std::time::Instant::now());
    match crate::webrtc::sdp::accept_offer(&mut rtc, offer) {
        Ok(answer) => crate::webrtc::sdp::media_sections(&answer.to_sdp_string()).len(),
        Err(_) => 0,
    }
}

/// A datagram on the shared WebRTC UDP port: told STUN from DTLS/SRTP and
/// routed by the local ICE username fragment (RFC 8489 §5, §14.3).
/// Returns 1 if it would be routed by its username.
pub fn stun_route(data: &[u8]) -> usize {
    usize::from(
        crate::webrtc::stun::is_stun(data) && crate::webrtc::stun::local_ufrag(data).is_some(),
    )
}

/// A WHEP viewer's RTCP as the session reads it (`webrtc::rtcp`,
/// `webrtc::srtp`). The first byte picks the SRTP profile (its value mod
/// 3) and the mode (its high bit): clear, the rest is a compound packet,
/// protected by one end of a session and then checked, decrypted and walked
/// for feedback by the other (the round trip must give the packet back);
/// otherwise the rest is a datagram from the network, checked and
/// decrypted (its tag cannot be forged, so this explores the length and
/// layout checks) and walked if accepted. Returns the feedback items found.
pub fn viewer_rtcp(data: &[u8]) -> usize {
    let Some((&mode, rest)) = data.split_first() else {
        return 0;
    };
    let mut found = 0;
    let mut count = |_| found += 1;
    if mode & 0x80 != 0 {
        if !crate::webrtc::rtcp::is_rtcp(rest) {
            return 0;
        }
        let (mut ours, mut theirs) = crate::webrtc::srtp::fuzzing_pair(mode % 3);
        let (mut wire, mut clear) = (Vec::new(), Vec::new());
        theirs.protect_rtcp(rest, &mut wire);
        assert!(
            ours.unprotect_rtcp(&wire, &mut clear).is_ok(),
            "a protected packet is accepted"
        );
        assert_eq!(clear, rest, "and decrypts to itself");
        crate::webrtc::rtcp::feedback(&clear, &mut count);
    } else {
        let (mut ours, _) = crate::webrtc::srtp::fuzzing_pair(mode % 3);
        let mut clear = Vec::new();
        if crate::webrtc::rtcp::is_rtcp(rest) && ours.unprotect_rtcp(rest, &mut clear).is_ok() {
            crate::webrtc::rtcp::feedback(&clear, &mut count);
        }
    }
    found
}

/// An LL-HLS request: the file name of `/{path}/{file}` and the blocking
/// reload query (`_HLS_msn`, `_HLS_part`, `_HLS_skip`; RFC 8216bis
/// §6.2.5.2), as split at the first `?`. Returns 1 if both parsed.
pub fn hls_request(data: &[u8]) -> usize {
    let Ok(text) = std::str::from_utf8(data) else {
        return 0;
    };
    let (file, query) = match text.split_once('?') {
        Some((f, q)) => (f, Some(q)),
        None => (text, None),
    };
    let file = crate::egress::hls::HlsFile::parse(file);
    let directives = crate::egress::hls::Directives::parse(query);
    usize::from(file.is_some() && directives.is_ok())
}

/// A body of the configuration API: a JSON merge patch of the running
/// configuration (`PATCH /v1/config`) and a path rule
/// (`PUT`/`PATCH /v1/config/paths/{name}`), checked as the API checks them.
/// Returns the changes accepted.
pub fn api_config_body(data: &[u8]) -> usize {
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(data) else {
        return 0;
    };
    let current = crate::config::Config::default();
    let mut accepted = usize::from(config::live::patch_global(&current, &body).is_ok());
    if let Ok(next) = config::live::put_rule(&current, "live/cam", &body, false) {
        accepted += 1;
        accepted += usize::from(config::live::put_rule(&next, "live/cam", &body, true).is_ok());
        let _ = config::live::ConfigDiff::between(&current, &next);
    }
    accepted
}

/// A configuration file's text (`--config FILE`): TOML parse, the typed
/// keys, validation. Returns 1 if it loaded.
pub fn config_toml(data: &[u8]) -> usize {
    let Ok(text) = std::str::from_utf8(data) else {
        return 0;
    };
    usize::from(config::load_text("fuzz", Some(text), Vec::new(), &Overrides::default()).is_ok())
}

/// What an RTSP client or camera sends: requests (and responses) parsed by
/// `rtsp-types`, interleaved frames, split at the socket's reads as the
/// first byte picks; and what the RTSP server reads from them (Transport
/// offers, Digest answers, URLs, a publisher's SDP, RTP headers). Returns
/// the units read.
pub fn rtsp_framer(data: &[u8]) -> usize {
    let Some((&mode, rest)) = data.split_first() else {
        return 0;
    };
    use crate::protocol::rtsp::{Incoming, digest, transport};
    let mut framer = crate::protocol::rtsp::Framer::new(16 * 1024);
    let mut units = 0;
    for piece in pieces(rest, mode) {
        framer.push(piece);
        loop {
            match framer.next_incoming() {
                Ok(Some(Incoming::Request(req))) => {
                    units += 1;
                    // What the server reads from a request's headers: the
                    // Transport offers of SETUP, a Digest answer, the URL.
                    if let Ok(c) = transport::choose(req.typed_header(), mode & 1 == 0, 0) {
                        let _ = transport::answer(&c, Some((8000, 8001)), 1);
                    }
                    if let Some(v) = req.header(&rtsp_types::headers::AUTHORIZATION)
                        && let Some((_, params)) = v.as_str().split_once(' ')
                        && let Ok(d) = digest::DigestResponse::parse(params)
                    {
                        let _ = d.verify("DESCRIBE", "secret");
                    }
                    if let Some(url) = req.request_uri() {
                        let _ = crate::server::rtsp::split_url(url);
                    }
                    // A publisher's ANNOUNCE body.
                    if *req.method() == rtsp_types::Method::Announce {
                        let _ = crate::ingest::rtsp_record::parse_announce(req.body());
                    }
                }
                Ok(Some(Incoming::Interleaved { payload, .. })) => {
                    units += 1;
                    let _ = crate::ingest::rtsp_record::parse_rtp(&payload);
                }
                Ok(Some(_)) => units += 1,
                Ok(None) => break,
                Err(_) => return units,
            }
        }
    }
    units
}

/// What an HTTP client sends to the plain HTTP listener's own HTTP/1.1
/// path (RFC 9112): request heads parsed one after the other (pipelined),
/// each offered to the HLS shortcut's checks (target, viewer id) and
/// answered with a response plan and head as the server would, until one
/// is handed to hyper. Returns the requests answered.
pub fn http1_request(data: &[u8]) -> usize {
    use crate::protocol::http1::request::header_slots;
    use crate::protocol::http1::response::RequestInfo;
    use crate::protocol::http1::{self, RawParsed};
    let mut rest = data;
    let mut answered = 0;
    // Scanning for the head's end as bytes arrive, as the server does.
    for from in [0, rest.len() / 2] {
        let _ = http1::request::head_end_in(rest, from);
        let _ = http1::request::line_end_in(rest, from);
    }
    loop {
        let mut slots = header_slots();
        let RawParsed::Simple(raw) = http1::parse_raw(rest, &mut slots) else {
            break;
        };
        if let Some((path, _, query)) = crate::server::hls_shortcut::hls_target(raw.target) {
            let _ = crate::egress::hls::viewers::Caller::from_header_values(
                path,
                raw.header_values("cookie"),
                raw.header_values("user-agent").next(),
                query,
                None,
            );
        }
        let Some(request) = raw.into_simple() else {
            break;
        };
        let info = RequestInfo {
            is_head: request.request.method() == http::Method::HEAD,
            version: request.request.version(),
            keep_alive: request.keep_alive,
        };
        let headers = request.request.headers();
        let plan = http1::plan_response(info, http::StatusCode::OK, headers, Some(10), false);
        let _ = http1::encode_head(http::StatusCode::OK, headers, &plan, &[b'x'; 29]);
        answered += 1;
        match rest.get(request.head_len..) {
            Some(next) if request.head_len > 0 => rest = next,
            _ => break,
        }
    }
    answered
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_read_until_the_data_ends_and_lengths_are_clamped() {
        let data = [1, 0, 0, 0, 5, 0, 2, 0xaa, 0xbb, 0, 0, 0, 0, 9, 0, 50, 0xcc];
        let got: Vec<_> = records(&data).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], (1, 5, Bytes::from_static(&[0xaa, 0xbb])));
        assert_eq!(got[1], (0, 9, Bytes::from_static(&[0xcc])));
    }

    #[test]
    fn every_target_takes_empty_and_tiny_inputs() {
        for (name, target) in TARGETS {
            // An empty file is a whole configuration (the defaults).
            let expected = usize::from(*name == "config_toml");
            assert_eq!(target(&[]), expected, "{name} of nothing");
            for input in [&[0][..], &[1, 2, 3], &[0xff; 40]] {
                target(input);
            }
        }
    }
}
