//! RTSP egress (RFC 7826, RFC 2326 as clients speak it): what a `DESCRIBE`
//! answers. The RTSP server itself (issue 8) is built on this.

pub mod sdp;
