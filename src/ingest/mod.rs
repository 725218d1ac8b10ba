//! Ways media comes in: one module per protocol. Each turns its protocol's
//! units into hub frames through a `Publisher` and never talks to an egress.

pub mod flv;
pub mod pull;
pub mod rtmp;
pub mod rtmp_pull;
pub mod rtsp;
pub mod source;
pub mod whip;
