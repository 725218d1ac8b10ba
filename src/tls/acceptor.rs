//! A TLS server handshake on an accepted stream, bounded in time.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;

use super::TlsReloader;

/// How long a client gets to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs server handshakes with the reloader's current certificate.
#[derive(Clone)]
pub struct TlsAcceptor {
    inner: tokio_rustls::TlsAcceptor,
    handshake_timeout: Duration,
}

impl TlsAcceptor {
    /// For HTTPS and the API: ALPN `h2` and `http/1.1`.
    pub fn http(reloader: &Arc<TlsReloader>) -> Result<TlsAcceptor, rustls::Error> {
        Self::with_alpn(reloader, &super::HTTP_ALPN)
    }

    /// For RTMPS: no ALPN (RTMP clients send none).
    pub fn rtmps(reloader: &Arc<TlsReloader>) -> Result<TlsAcceptor, rustls::Error> {
        Self::with_alpn(reloader, &[])
    }

    /// With the given ALPN protocol ids (RFC 7301).
    pub fn with_alpn(
        reloader: &Arc<TlsReloader>,
        alpn: &[&[u8]],
    ) -> Result<TlsAcceptor, rustls::Error> {
        Ok(TlsAcceptor {
            inner: tokio_rustls::TlsAcceptor::from(reloader.server_config(alpn)?),
            handshake_timeout: HANDSHAKE_TIMEOUT,
        })
    }

    /// Changes the handshake timeout (default [`HANDSHAKE_TIMEOUT`]).
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> TlsAcceptor {
        self.handshake_timeout = timeout;
        self
    }

    /// Runs the server handshake on `stream` (a `TcpStream` as accepted).
    /// Fails with `TimedOut` when the client does not finish in time.
    pub async fn accept<IO>(&self, stream: IO) -> io::Result<TlsStream<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        match tokio::time::timeout(self.handshake_timeout, self.inner.accept(stream)).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "TLS handshake not completed within {:?}",
                    self.handshake_timeout
                ),
            )),
        }
    }
}
