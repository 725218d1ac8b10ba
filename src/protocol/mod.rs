//! Sans-IO protocol state machines: bytes and time in, events and bytes out.

pub mod rtmp;
pub mod rtsp;
