//! Test helpers: temporary directories, self-signed certificates (rcgen),
//! PEM writing, TLS clients.

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "mediarelay-tls-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes a new self-signed certificate for `host` as `NAME.pem` / `NAME.key`
/// and returns the paths.
pub fn write_self_signed(dir: &TempDir, name: &str, host: &str) -> (PathBuf, PathBuf) {
    let cert = dir.path().join(format!("{name}.pem"));
    let key = dir.path().join(format!("{name}.key"));
    overwrite_self_signed(&cert, &key, host);
    (cert, key)
}

/// Writes a new self-signed certificate for `host` over `cert` and `key`;
/// returns the certificate's DER.
pub fn overwrite_self_signed(cert: &Path, key: &Path, host: &str) -> Vec<u8> {
    let generated = rcgen::generate_simple_self_signed(vec![host.to_string()]).unwrap();
    std::fs::write(key, generated.signing_key.serialize_pem()).unwrap();
    std::fs::write(cert, generated.cert.pem()).unwrap();
    generated.cert.der().to_vec()
}

/// A PEM block (RFC 7468) with `label` around `der`.
pub fn pem_block(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for chunk in der.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The private key inside a PKCS#8 `PrivateKeyInfo` (RFC 5958 §2): the
/// contents of its OCTET STRING, i.e. the SEC1 or PKCS#1 structure.
pub fn pkcs8_inner_key(der: &[u8]) -> Vec<u8> {
    fn header(d: &[u8]) -> (u8, usize, usize) {
        let tag = d[0];
        let first = d[1];
        if first < 0x80 {
            (tag, 2, first as usize)
        } else {
            let n = (first & 0x7f) as usize;
            let len = d[2..2 + n]
                .iter()
                .fold(0usize, |l, b| (l << 8) | *b as usize);
            (tag, 2 + n, len)
        }
    }
    let (tag, hl, _) = header(der);
    assert_eq!(tag, 0x30);
    let mut rest = &der[hl..];
    loop {
        let (tag, hl, len) = header(rest);
        if tag == 0x04 {
            return rest[hl..hl + len].to_vec();
        }
        rest = &rest[hl + len..];
    }
}

/// A TLS client config that trusts exactly `cert_der`.
pub fn client_trusting(cert_der: &[u8], alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from(cert_der.to_vec()))
        .unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(super::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// The DER of the certificate in a PEM file.
pub fn cert_der_of(path: &Path) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::from_pem_file(path)
        .unwrap()
        .to_vec()
}
