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
