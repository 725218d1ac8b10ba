//! The current certificate and key, swapped when their files change.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_util::sync::CancellationToken;

use super::pem::{TlsLoadError, parse_certified_key, read_pem_file};

/// The bytes of the two files as last read (`None`: unreadable). The files
/// are a few KiB, so comparing their contents is as cheap as comparing
/// modification times, and it is exact: file times on Linux are as coarse as
/// the kernel tick, so two writes in one tick could look alike.
type Seen = (Option<Vec<u8>>, Option<Vec<u8>>);

/// Holds the certificate chain and key that every TLS handshake of the relay
/// presents, and replaces them when the files change.
///
/// It is the rustls certificate resolver of every server config built by
/// [`TlsReloader::server_config`], so a reload reaches every listener at
/// once; connections already established keep their session.
pub struct TlsReloader {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    /// The file contents last loaded or tried (a broken pair is tried once).
    seen: Mutex<Seen>,
}

impl fmt::Debug for TlsReloader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsReloader")
            .field("cert", &self.cert_path)
            .field("key", &self.key_path)
            .finish_non_exhaustive()
    }
}

impl TlsReloader {
    /// Loads the pair; an error names the file and what is wrong with it.
    pub fn load(
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Result<Arc<TlsReloader>, TlsLoadError> {
        let cert_path = cert.into();
        let key_path = key.into();
        let cert_pem = read_pem_file(&cert_path, "tls.cert")?;
        let key_pem = read_pem_file(&key_path, "tls.key")?;
        let current = parse_certified_key(&cert_pem, &key_pem, &cert_path, &key_path)?;
        Ok(Arc::new(TlsReloader {
            cert_path,
            key_path,
            current: RwLock::new(current),
            seen: Mutex::new((Some(cert_pem), Some(key_pem))),
        }))
    }

    /// The pair handshakes present now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Reads the files and loads them if either changed since the last
    /// check: `Ok(true)` when a new pair is in use, `Ok(false)` when nothing
    /// changed, `Err` when the changed files cannot be used (the old pair
    /// stays; the same broken versions are not tried again). Blocking file IO.
    pub fn reload_if_changed(&self) -> Result<bool, TlsLoadError> {
        let cert = read_pem_file(&self.cert_path, "tls.cert");
        let key = read_pem_file(&self.key_path, "tls.key");
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            let now = (cert.as_ref().ok().cloned(), key.as_ref().ok().cloned());
            if *seen == now {
                return Ok(false);
            }
            *seen = now;
        }
        let new = parse_certified_key(&cert?, &key?, &self.cert_path, &self.key_path)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = new;
        Ok(true)
    }

    /// Checks the files every `interval` until `shutdown`, logging reloads
    /// and refused changes. Spawn it once per reloader.
    pub async fn watch(self: Arc<Self>, interval: Duration, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let this = Arc::clone(&self);
            match tokio::task::spawn_blocking(move || this.reload_if_changed()).await {
                Ok(Ok(true)) => tracing::info!(
                    cert = %self.cert_path.display(),
                    "TLS certificate reloaded"
                ),
                Ok(Ok(false)) => {}
                Ok(Err(e)) => tracing::error!(
                    error = %e,
                    "TLS certificate files changed but cannot be used; keeping the previous certificate"
                ),
                Err(e) => tracing::error!(error = %e, "TLS reload task failed"),
            }
        }
    }

    /// A server config presenting this reloader's current pair, offering
    /// the ALPN protocols `alpn` (RFC 7301; empty for RTMPS).
    pub fn server_config(
        self: &Arc<Self>,
        alpn: &[&[u8]],
    ) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
        let resolver: Arc<dyn ResolvesServerCert> = Arc::clone(self) as _;
        let mut config = rustls::ServerConfig::builder_with_provider(super::provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(resolver);
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for TlsReloader {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::testing::{TempDir, overwrite_self_signed, write_self_signed};

    fn leaf(r: &TlsReloader) -> Vec<u8> {
        r.current().cert.first().unwrap().to_vec()
    }

    #[test]
    fn swaps_on_change_and_keeps_the_old_pair_when_broken() {
        let dir = TempDir::new("reload");
        let (cert, key) = write_self_signed(&dir, "srv", "localhost");
        let r = TlsReloader::load(&cert, &key).unwrap();
        let first = leaf(&r);
        assert!(!r.reload_if_changed().unwrap(), "nothing changed");

        let second_der = overwrite_self_signed(&cert, &key, "localhost");
        assert!(r.reload_if_changed().unwrap());
        assert_eq!(leaf(&r), second_der);
        assert_ne!(leaf(&r), first);

        std::fs::write(&cert, "garbage, not PEM").unwrap();
        let e = r.reload_if_changed().unwrap_err();
        assert_eq!(e.key, "tls.cert");
        assert_eq!(leaf(&r), second_der, "the old pair stays");
        assert!(
            !r.reload_if_changed().unwrap(),
            "a broken version is tried once"
        );

        let third = overwrite_self_signed(&cert, &key, "localhost");
        assert!(r.reload_if_changed().unwrap());
        assert_eq!(leaf(&r), third);
    }
}
