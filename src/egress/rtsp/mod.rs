//! RTSP egress (RFC 7826, RFC 2326 as clients speak it): what a `DESCRIBE`
//! answers (`sdp`), and what each reader adds to the path's shared RTP
//! payloads (`rtp`: headers, sender reports). `server::rtsp` drives it.

pub mod rtp;
pub mod sdp;
