//! Pure, synchronous codec code: parameter sets and bitstream helpers.
//! Nothing here knows about sockets, tasks or the hub.

pub mod aac;
pub mod h264;
pub mod h265;
pub mod rtp;
