//! Listeners: accept connections and hand them to the protocol that serves
//! them. `rtmp` accepts RTMP and dispatches to the RTMP ingest or egress;
//! `http` serves HLS (and later WebRTC signalling and the player page).

pub mod conn;
pub mod http;
pub mod rtmp;
