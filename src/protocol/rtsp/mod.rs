//! Sans-IO RTSP (RFC 7826; RFC 2326 as most clients and cameras speak it):
//! message and interleaved-frame framing. The server sessions (issue 8) are
//! built on it.
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

pub mod framer;

pub use framer::{Framer, FramerError, Incoming};
