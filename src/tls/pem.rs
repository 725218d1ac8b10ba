//! Reading a PEM (RFC 7468) certificate chain and private key into a rustls
//! `CertifiedKey`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A certificate or key file that cannot be used; `key` is the setting that
/// names the file (`tls.cert` or `tls.key`).
#[derive(Debug, thiserror::Error)]
#[error("{key}: {}: {reason}", path.display())]
pub struct TlsLoadError {
    pub key: &'static str,
    pub path: PathBuf,
    pub reason: String,
}

/// Loads a certificate chain (leaf first) and its private key (PKCS#8,
/// PKCS#1 or SEC1, RFC 5958 / RFC 8017 / RFC 5915) and checks that the key
/// belongs to the leaf certificate.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsLoadError> {
    let cert_pem = read_pem_file(cert, "tls.cert")?;
    let key_pem = read_pem_file(key, "tls.key")?;
    parse_certified_key(&cert_pem, &key_pem, cert, key)
}

/// Reads a certificate or key file (`key`: the setting naming it).
pub(super) fn read_pem_file(path: &Path, key: &'static str) -> Result<Vec<u8>, TlsLoadError> {
    std::fs::read(path).map_err(|e| TlsLoadError {
        key,
        path: path.to_path_buf(),
        reason: format!("cannot read: {e}"),
    })
}

/// [`load_certified_key`] on file contents already read.
pub(super) fn parse_certified_key(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert: &Path,
    key: &Path,
) -> Result<Arc<CertifiedKey>, TlsLoadError> {
    let cert_err = |reason: String| TlsLoadError {
        key: "tls.cert",
        path: cert.to_path_buf(),
        reason,
    };
    let key_err = |reason: String| TlsLoadError {
        key: "tls.key",
        path: key.to_path_buf(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(format!("not a PEM certificate file: {e}")))?;
    if chain.is_empty() {
        return Err(cert_err("no certificate found".into()));
    }
    let private = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => {
            key_err("no private key found (PKCS#8, PKCS#1 or SEC1 PEM)".into())
        }
        e => key_err(format!("not a PEM private key file: {e}")),
    })?;
    let provider = super::provider();
    let signing = provider
        .key_provider
        .load_private_key(private)
        .map_err(|e| key_err(format!("unusable private key: {e}")))?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(key_err(format!(
                "does not belong to the certificate in {}",
                cert.display()
            )));
        }
        Err(e) => return Err(cert_err(format!("unusable certificate: {e}"))),
    }
    Ok(Arc::new(certified))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::testing::{TempDir, write_self_signed};

    #[test]
    fn loads_a_pair_and_names_the_bad_file() {
        let dir = TempDir::new("pem");
        let (cert, key) = write_self_signed(&dir, "a", "localhost");
        let ck = load_certified_key(&cert, &key).unwrap();
        assert_eq!(ck.cert.len(), 1);

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let e = load_certified_key(&empty, &key).unwrap_err();
        assert_eq!(e.key, "tls.cert");
        assert_eq!(
            e.to_string(),
            format!("tls.cert: {}: no certificate found", empty.display())
        );
        let e = load_certified_key(&cert, &empty).unwrap_err();
        assert_eq!(e.key, "tls.key");
        assert!(e.reason.contains("no private key"), "{e}");
        let missing = dir.path().join("missing.pem");
        let e = load_certified_key(&missing, &key).unwrap_err();
        assert!(e.reason.starts_with("cannot read"), "{e}");

        // The key of another certificate.
        let (_, other_key) = write_self_signed(&dir, "b", "localhost");
        let e = load_certified_key(&cert, &other_key).unwrap_err();
        assert_eq!(e.key, "tls.key");
        assert!(e.reason.contains("does not belong"), "{e}");
    }

    #[test]
    fn accepts_pkcs1_and_sec1_keys() {
        use crate::tls::testing::{pem_block, pkcs8_inner_key};
        use rcgen::{CertificateParams, KeyPair};
        let dir = TempDir::new("pem-kinds");
        for (alg, label) in [
            (&rcgen::PKCS_ECDSA_P256_SHA256, "EC PRIVATE KEY"),
            (&rcgen::PKCS_RSA_SHA256, "RSA PRIVATE KEY"),
        ] {
            let kp = KeyPair::generate_for(alg).unwrap();
            let cert = CertificateParams::new(vec!["localhost".into()])
                .unwrap()
                .self_signed(&kp)
                .unwrap();
            let cert_path = dir.path().join("c.pem");
            let key_path = dir.path().join("k.pem");
            std::fs::write(&cert_path, cert.pem()).unwrap();
            // PKCS#8 wraps the SEC1 / PKCS#1 structure in an OCTET STRING.
            let inner = pkcs8_inner_key(&kp.serialize_der());
            std::fs::write(&key_path, pem_block(label, &inner)).unwrap();
            load_certified_key(&cert_path, &key_path).unwrap_or_else(|e| panic!("{label}: {e}"));
            std::fs::write(&key_path, kp.serialize_pem()).unwrap();
            load_certified_key(&cert_path, &key_path).unwrap();
        }
    }
}
