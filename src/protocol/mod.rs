//! Sans-IO protocol state machines: bytes and time in, events and bytes out.

pub mod http1;
pub mod rtmp;
pub mod rtsp;
