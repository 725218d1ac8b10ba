//! Listeners: accept connections and hand them to the protocol that serves
//! them. `rtmp` accepts RTMP and dispatches to the RTMP ingest or egress;
//! `http` serves HLS (and later WebRTC signalling and the player page);
//! `h1` owns the plain HTTP listener's connections (a lean HTTP/1.1 path for
//! simple requests, hyper for the rest) and `hls_shortcut` its answers to
//! HLS file requests without the router; `rtsp` serves every path to RTSP
//! readers.

pub mod conn;
pub mod h1;
pub mod hls_shortcut;
pub mod http;
pub mod rtmp;
pub mod rtsp;
