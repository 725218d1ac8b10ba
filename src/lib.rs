//! mediarelay: a live media relay.
//!
//! See ARCHITECTURE.md for the module map and the rules between modules.

pub mod api;
pub mod app;
pub mod auth;
pub mod codec;
pub mod config;
pub mod container;
pub mod egress;
pub mod events;
pub mod fuzzing;
pub mod gate;
pub mod hub;
pub mod ingest;
pub mod limits;
pub mod media;
pub mod metrics;
pub mod net;
pub mod protocol;
pub mod reload;
pub mod server;
pub mod tls;
pub mod transcode;
pub mod web;
pub mod webrtc;

/// The checkout the unit tests run from, read at run time (cargo and
/// nextest set `CARGO_MANIFEST_DIR`) before the compile-time value: a target
/// directory shared between clones at different paths hands one clone the
/// test binaries built in the other, whose compile-time path may be gone.
#[cfg(test)]
pub(crate) fn repo_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}
