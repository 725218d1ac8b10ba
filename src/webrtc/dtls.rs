//! str0m's DTLS (dimpl over aws-lc-rs) with one dimpl configuration for
//! the process.
//!
//! str0m's aws-lc-rs backend builds a new `dimpl::Config` for every
//! session, and dimpl validates its crypto provider on every build: a key
//! exchange round trip on each of X25519, P-256 and P-384, hash, PRF, HMAC
//! and signature test vectors. That validation was ~0.9 ms of CPU per
//! session — 71 % of the server's DTLS work and a fifth of all of it while
//! 100 WHEP viewers joined at once (perf, dwarf call graphs) — while the
//! handshake itself (one X25519 exchange, one ECDSA signature, one check
//! of the peer's certificate) costs a fraction of that.
//!
//! Every session's configuration is the same: str0m's backend sets only
//! `use_server_cookie(false)` (ICE has checked the path, RFC 8445 §7.2.5,
//! so the DTLS cookie exchange of RFC 6347 §4.2.1 adds nothing) and the
//! MTU str0m passes. So the configuration is built (and validated) once per
//! MTU and shared: dimpl takes it as an `Arc` and only reads it.

use std::cell::RefCell;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use super::srtp::SrtpKeys;
use str0m::config::{CryptoProvider, DtlsCert, DtlsVersion};
use str0m::crypto::CryptoError;
use str0m::crypto::dtls::{DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, ProtocolVersion};

/// str0m's aws-lc-rs provider with DTLS through [`SharedConfig`].
pub fn crypto_provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    static DTLS: SharedConfig = SharedConfig {
        configs: Mutex::new(Vec::new()),
    };
    Arc::clone(PROVIDER.get_or_init(|| {
        Arc::new(CryptoProvider {
            dtls_provider: &DTLS,
            ..str0m::crypto::from_feature_flags()
        })
    }))
}

/// Makes dimpl DTLS instances from one validated configuration per MTU.
#[derive(Debug)]
struct SharedConfig {
    /// By MTU (str0m passes the same one for every session).
    configs: Mutex<Vec<(Option<usize>, Arc<dimpl::Config>)>>,
}

impl SharedConfig {
    /// The configuration for `mtu`, built on first use.
    fn config(&self, mtu: Option<usize>) -> Result<Arc<dimpl::Config>, CryptoError> {
        let mut configs = self.configs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, c)) = configs.iter().find(|(m, _)| *m == mtu) {
            return Ok(Arc::clone(c));
        }
        let mut builder = dimpl::Config::builder().use_server_cookie(false);
        if let Some(mtu) = mtu {
            builder = builder.mtu(mtu);
        }
        let config = Arc::new(
            builder
                .build()
                .map_err(|e| CryptoError::Other(format!("DTLS configuration: {e}")))?,
        );
        configs.push((mtu, Arc::clone(&config)));
        Ok(config)
    }
}

impl DtlsProvider for SharedConfig {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate()
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        dtls_version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, CryptoError> {
        let config = self.config(mtu)?;
        let cert = dimpl::DtlsCertificate {
            certificate: cert.certificate.clone(),
            private_key: cert.private_key.clone(),
        };
        let dtls = match dtls_version {
            DtlsVersion::Dtls12 => dimpl::Dtls::new_12(config, cert, now),
            DtlsVersion::Dtls13 => dimpl::Dtls::new_13(config, cert, now),
            DtlsVersion::Auto => dimpl::Dtls::new_auto(config, cert, now),
            other => {
                return Err(CryptoError::Other(format!(
                    "unsupported DTLS version {other}"
                )));
            }
        };
        Ok(Box::new(Instance(dtls)))
    }
}

thread_local! {
    /// The SRTP keys a handshake on this thread has just exported, until
    /// [`take_exported_keys`] takes them.
    static EXPORTED: RefCell<Option<SrtpKeys>> = const { RefCell::new(None) };
}

/// The SRTP keys (RFC 5764 §4.2) exported by the DTLS handshake str0m
/// drove during the last call into an `Rtc` on this thread, if it finished
/// there. str0m keeps its SRTP context to itself; a session that sends its
/// own media takes the keys here. Every call into str0m runs to its end on
/// one thread, so a session that takes the keys right after each of its
/// calls gets its own handshake's; [`Session`](super::Session) does so after
/// every call, whether it uses them or not, so none are left for another,
/// and until its handshake is done it also empties the slot before each
/// call (a call that ended in an error may have left keys behind).
pub(crate) fn take_exported_keys() -> Option<SrtpKeys> {
    EXPORTED.with(|e| e.borrow_mut().take())
}

/// A dimpl DTLS instance as str0m drives one.
struct Instance(dimpl::Dtls);

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dimpl DTLS")
    }
}

impl DtlsInstance for Instance {
    fn set_active(&mut self, active: bool) {
        self.0.set_active(active);
    }

    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        self.0.handle_packet(packet)
    }

    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        let out = self.0.poll_output(buf);
        if let DtlsOutput::KeyingMaterial(material, profile) = &out {
            let bytes: &[u8] = material.as_ref();
            let keys = SrtpKeys {
                material: bytes.to_vec(),
                profile: *profile,
                client: self.0.is_active(),
            };
            EXPORTED.with(|e| *e.borrow_mut() = Some(keys));
        }
        out
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.0.handle_timeout(now)
    }

    fn send_application_data(&mut self, data: &[u8]) -> Result<usize, DtlsImplError> {
        self.0.send_application_data(data)
    }

    fn is_active(&self) -> bool {
        self.0.is_active()
    }

    fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.0.protocol_version()
    }

    fn is_closing(&self) -> bool {
        self.0.is_closing()
    }

    fn is_closed(&self) -> bool {
        self.0.is_closed()
    }

    fn close(&mut self) -> Result<(), DtlsImplError> {
        self.0.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What one side emitted in one poll cycle.
    #[derive(Default)]
    struct Polled {
        packets: Vec<Vec<u8>>,
        connected: bool,
        keying: bool,
    }

    fn poll(dtls: &mut dyn DtlsInstance) -> Polled {
        let mut out = Polled::default();
        let mut buf = vec![0u8; 2048];
        loop {
            match dtls.poll_output(&mut buf) {
                DtlsOutput::Packet(p) => out.packets.push(p.to_vec()),
                DtlsOutput::Connected => out.connected = true,
                DtlsOutput::KeyingMaterial(..) => out.keying = true,
                DtlsOutput::Timeout(_) => return out,
                DtlsOutput::BufferTooSmall { needed } => buf.resize(needed, 0),
                _ => {}
            }
        }
    }

    #[test]
    fn sessions_share_one_configuration_per_mtu() {
        let shared = SharedConfig {
            configs: Mutex::new(Vec::new()),
        };
        let a = shared.config(Some(1150)).expect("config");
        let b = shared.config(Some(1150)).expect("config");
        let c = shared.config(None).expect("config");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
    }

    /// A server instance from the shared configuration completes a DTLS 1.2
    /// handshake with str0m's own client and both derive SRTP keys
    /// (RFC 5764 §4.2).
    #[test]
    fn a_handshake_with_str0ms_own_client_completes() {
        let provider = crypto_provider();
        let cert = provider.dtls_provider.generate_certificate().expect("cert");
        let own = str0m::crypto::from_feature_flags();
        let peer_cert = own.dtls_provider.generate_certificate().expect("cert");
        let now = Instant::now();
        let mut server = provider
            .dtls_provider
            .new_dtls(&cert, now, DtlsVersion::Dtls12, Some(1150))
            .expect("server");
        let mut client = own
            .dtls_provider
            .new_dtls(&peer_cert, now, DtlsVersion::Dtls12, Some(1150))
            .expect("client");
        server.set_active(false);
        client.set_active(true);
        // Both start with a timeout, as str0m starts them (dimpl's server
        // takes its random there).
        server.handle_timeout(now).expect("start");
        client.handle_timeout(now).expect("start");
        let (mut server_done, mut client_done) = (false, false);
        for _ in 0..20 {
            let c = poll(client.as_mut());
            client_done |= c.connected && c.keying;
            for p in c.packets {
                server.handle_packet(&p).expect("server input");
            }
            let s = poll(server.as_mut());
            server_done |= s.connected && s.keying;
            for p in s.packets {
                client.handle_packet(&p).expect("client input");
            }
            if server_done && client_done {
                break;
            }
        }
        assert!(server_done, "the server side connected with SRTP keys");
        assert!(client_done, "the client side connected with SRTP keys");
        // Our instance (the server) parked its keys for the session to take,
        // once; str0m's own client does not.
        let keys = take_exported_keys().expect("the server's keys");
        assert!(!keys.client);
        assert!(
            super::super::srtp::Srtp::new(&str0m::crypto::from_feature_flags(), &keys).is_some(),
            "{keys:?}: material of the profile's length"
        );
        assert!(take_exported_keys().is_none());
        assert_eq!(server.protocol_version(), Some(ProtocolVersion::DTLS1_2));
    }
}
