//! The `Transport` header of `SETUP` (RFC 2326 §12.39, RFC 7826 §18.54):
//! which of the client's offers the server takes, and the header it answers
//! with. Parsing is `rtsp-types`' typed header.
//!
//! Offered: RTP/AVP (and RTP/AVPF, which clients ask for the same way) over
//! TCP interleaved in the RTSP connection (RFC 2326 §10.12), and over UDP
//! unicast to the client's ports. Multicast and SRTP profiles are declined
//! (461 Unsupported Transport), as is UDP when the server has no UDP ports.

use rtsp_types::headers::transport::{
    RtpLowerTransport, RtpProfile, RtpTransport, RtpTransportParameters, Transport, TransportMode,
    Transports,
};

/// How one track's RTP and RTCP travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// `$`-framed in the RTSP connection on these channels.
    Interleaved { rtp: u8, rtcp: u8 },
    /// UDP datagrams to the client's address on these ports.
    Udp { rtp: u16, rtcp: u16 },
}

/// The transport taken from a client's offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    pub delivery: Delivery,
    /// The client announced `mode=record` (it will send media).
    pub record: bool,
    profile: RtpProfile,
}

/// Why no offer can be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    #[error("SETUP without a Transport header")]
    Missing,
    #[error("the Transport header cannot be parsed")]
    Unparsable,
    #[error("no offered transport is supported (RTP/AVP over TCP interleaved{})", if *.0 { " or UDP unicast" } else { "" })]
    Unsupported(bool),
}

/// Picks the first offer the server can do. `udp`: whether the server has
/// UDP ports for RTP; `free_channel`: the first interleaved channel not yet
/// used on the connection, for a TCP offer that names none.
pub fn choose(
    offers: Result<Option<Transports>, rtsp_types::headers::HeaderParseError>,
    udp: bool,
    free_channel: u8,
) -> Result<Chosen, TransportError> {
    let offers = offers
        .map_err(|_| TransportError::Unparsable)?
        .ok_or(TransportError::Missing)?;
    for offer in offers.iter() {
        let Transport::Rtp(rtp) = offer else {
            continue;
        };
        if !matches!(rtp.profile, RtpProfile::Avp | RtpProfile::AvpF) || rtp.params.multicast {
            continue;
        }
        let record = rtp.params.mode.contains(&TransportMode::Record);
        let delivery = match rtp.lower_transport {
            Some(RtpLowerTransport::Tcp) => {
                let (rtp_ch, rtcp_ch) = match rtp.params.interleaved {
                    Some((a, b)) => (a, b.unwrap_or(a.saturating_add(1))),
                    None => (free_channel, free_channel.saturating_add(1)),
                };
                if rtp_ch == rtcp_ch || rtp_ch == u8::MAX {
                    continue;
                }
                Delivery::Interleaved {
                    rtp: rtp_ch,
                    rtcp: rtcp_ch,
                }
            }
            Some(RtpLowerTransport::Udp) | None if udp => {
                let Some((port, rtcp)) = rtp.params.client_port else {
                    continue;
                };
                let rtcp = rtcp.unwrap_or(port.saturating_add(1));
                if port == 0 || rtcp == 0 {
                    continue;
                }
                Delivery::Udp { rtp: port, rtcp }
            }
            _ => continue,
        };
        return Ok(Chosen {
            delivery,
            record,
            profile: rtp.profile.clone(),
        });
    }
    Err(TransportError::Unsupported(udp))
}

/// The `Transport` header of the answer: the chosen offer with the
/// server's side filled in (`server_port` for UDP, the stream's `ssrc`).
pub fn answer(chosen: &Chosen, server_ports: Option<(u16, u16)>, ssrc: u32) -> Transports {
    let mut params = RtpTransportParameters {
        unicast: true,
        ssrc: vec![ssrc],
        ..Default::default()
    };
    if chosen.record {
        params.mode = vec![TransportMode::Record];
    }
    let lower = match chosen.delivery {
        Delivery::Interleaved { rtp, rtcp } => {
            params.interleaved = Some((rtp, Some(rtcp)));
            Some(RtpLowerTransport::Tcp)
        }
        Delivery::Udp { rtp, rtcp } => {
            params.client_port = Some((rtp, Some(rtcp)));
            params.server_port = server_ports.map(|(a, b)| (a, Some(b)));
            None
        }
    };
    Transports::from(vec![Transport::Rtp(RtpTransport {
        profile: chosen.profile.clone(),
        lower_transport: lower,
        params,
    })])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtsp_types::{Method, Request, Response, StatusCode, Version};

    fn offers(value: &str) -> Result<Option<Transports>, rtsp_types::headers::HeaderParseError> {
        Request::builder(Method::Setup, Version::V1_0)
            .header(rtsp_types::headers::TRANSPORT, value)
            .empty()
            .typed_header::<Transports>()
    }

    fn header(t: &Transports) -> String {
        Response::builder(Version::V1_0, StatusCode::Ok)
            .typed_header(t)
            .empty()
            .header(&rtsp_types::headers::TRANSPORT)
            .map(|v| v.as_str().to_string())
            .unwrap_or_default()
    }

    #[test]
    fn ffmpeg_s_tcp_offer_is_taken_with_its_channels() {
        let c = choose(offers("RTP/AVP/TCP;unicast;interleaved=2-3"), true, 0).unwrap();
        assert_eq!(c.delivery, Delivery::Interleaved { rtp: 2, rtcp: 3 });
        assert!(!c.record);
        let a = header(&answer(&c, None, 0x1234));
        assert!(a.starts_with("RTP/AVP/TCP;"), "{a}");
        assert!(a.contains("interleaved=2-3"), "{a}");
        assert!(a.contains("ssrc=00001234"), "{a}");
    }

    #[test]
    fn a_tcp_offer_without_channels_gets_the_next_free_pair() {
        let c = choose(offers("RTP/AVP/TCP;unicast"), false, 4).unwrap();
        assert_eq!(c.delivery, Delivery::Interleaved { rtp: 4, rtcp: 5 });
    }

    #[test]
    fn udp_is_taken_when_the_server_has_ports_and_answered_with_them() {
        let c = choose(offers("RTP/AVP;unicast;client_port=5000-5001"), true, 0).unwrap();
        assert_eq!(
            c.delivery,
            Delivery::Udp {
                rtp: 5000,
                rtcp: 5001
            }
        );
        let a = header(&answer(&c, Some((8000, 8001)), 1));
        assert!(a.contains("client_port=5000-5001"), "{a}");
        assert!(a.contains("server_port=8000-8001"), "{a}");
        // Without UDP ports: 461, unless TCP is offered too (GStreamer's
        // rtspsrc offers both in one header).
        assert_eq!(
            choose(offers("RTP/AVP;unicast;client_port=5000-5001"), false, 0),
            Err(TransportError::Unsupported(false))
        );
        let c = choose(
            offers("RTP/AVP;unicast;client_port=5000-5001,RTP/AVP/TCP;unicast;interleaved=0-1"),
            false,
            0,
        )
        .unwrap();
        assert_eq!(c.delivery, Delivery::Interleaved { rtp: 0, rtcp: 1 });
    }

    #[test]
    fn record_mode_is_noticed_and_echoed() {
        let c = choose(
            offers("RTP/AVP/TCP;unicast;interleaved=0-1;mode=record"),
            true,
            0,
        )
        .unwrap();
        assert!(c.record);
        assert!(
            header(&answer(&c, None, 7))
                .to_lowercase()
                .contains("mode=\"record\"")
        );
    }

    #[test]
    fn what_cannot_be_served_is_refused() {
        assert_eq!(choose(Ok(None), true, 0), Err(TransportError::Missing));
        for value in [
            "RTP/AVP;multicast;port=5000-5001",
            "RTP/SAVP;unicast;client_port=5000-5001",
            "RTP/AVP;unicast",
            "RTP/AVP/TCP;unicast;interleaved=3-3",
            "RAW/RAW/UDP;unicast;client_port=5000-5001",
        ] {
            assert!(choose(offers(value), true, 0).is_err(), "{value}");
        }
    }
}
