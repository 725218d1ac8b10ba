//! Ways media goes out: one module per protocol. Each talks to the hub
//! through `Reader`s and never to an ingest.

pub mod hls;
pub mod rtmp;
pub mod rtsp;
pub mod webrtc;
