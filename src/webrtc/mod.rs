//! The WebRTC engine shared by WHEP playback and WHIP ingest: one UDP socket
//! for every session, datagrams routed to their session by source address
//! (and, for an address not seen yet, by the ICE username fragment of its
//! STUN request), one DTLS certificate for the process, str0m sessions
//! (sans-IO) driven by a small async loop each. Knows nothing of the hub.

pub mod dtls;
mod engine;
mod resend_budget;
pub(crate) mod rtcp;
pub mod sdp;
mod send_stream;
mod session;
pub(crate) mod srtp;
pub mod stun;
mod udp_batch;

pub use engine::{Engine, EngineConfig};
#[cfg(test)]
pub(crate) use send_stream::SendStream;
pub(crate) use send_stream::{Extensions, StreamSpec};
pub use session::{Session, SessionEvent};
