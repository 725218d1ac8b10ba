//! Sans-IO RTSP (RFC 7826; RFC 2326 as most clients and cameras speak it):
//! message and interleaved-frame framing, the `Transport` header's
//! negotiation, digest authentication. `server::rtsp` is built on it.
//!
//! Nothing here panics on peer input: the files deny `unwrap`, `expect`,
//! indexing, `panic!` and unchecked arithmetic outside tests; the framer
//! has a fuzz target (`fuzzing::rtsp_framer`).
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic,
        clippy::arithmetic_side_effects
    )
)]

pub mod digest;
pub mod framer;
pub mod transport;

pub use framer::{Framer, FramerError, Incoming};
