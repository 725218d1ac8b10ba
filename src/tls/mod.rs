//! TLS (RFC 8446; RFC 5246 for TLS 1.2 clients) for the HTTPS, RTMPS and API
//! listeners, with rustls on the aws-lc-rs provider.
//!
//! - [`load_certified_key`] reads a PEM certificate chain and private key.
//! - [`TlsReloader`] holds the current pair, hands it to every handshake
//!   (through a rustls certificate resolver), and swaps in a new pair when
//!   the files change ([`TlsReloader::watch`]); a broken new pair keeps the
//!   old one.
//! - [`TlsAcceptor`] runs a server handshake on a TCP stream with a timeout
//!   (RTMPS sessions run over the resulting stream).
//! - [`serve_tls`] serves an axum `Router` over TLS (HTTP/1.1 and HTTP/2 by
//!   ALPN, RFC 7301); [`serve_plain`] the same without TLS (the API), both
//!   with a time limit on request heads.

mod acceptor;
mod pem;
mod reloader;
mod serve;

pub use acceptor::{HANDSHAKE_TIMEOUT, TlsAcceptor};
pub use pem::{TlsLoadError, load_certified_key};
pub use reloader::TlsReloader;
pub(crate) use serve::with_peer;
pub use serve::{serve_plain, serve_tls};

/// ALPN protocol ids (RFC 7301 §6) offered by the HTTPS and API listeners.
pub const HTTP_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The crypto provider of every TLS listener: aws-lc-rs (the tree's only one).
pub fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

#[cfg(test)]
pub(crate) mod testing;
