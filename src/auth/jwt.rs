//! JSON Web Tokens (RFC 7519) signed with HS256 (a shared secret, RFC 7518
//! §3.2) or RS256/ES256 (public keys from a JWK Set file, RFC 7517 §5; the
//! header's `kid`, RFC 7515 §4.1.4, picks the key). `exp` is required and
//! `nbf` honoured (RFC 7519 §4.1.4–5). The permissions are in the
//! `mediarelay_permissions` claim: `[{"action": "read", "path": "live/*"}]`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::config::{Action, JwtConfig, Permission};

/// RFC 7518 §3.2: an HS256 key must be at least as long as the hash (256 bits).
pub const MIN_HS256_SECRET_BYTES: usize = 32;
/// The claim that carries the permissions.
pub const PERMISSIONS_CLAIM: &str = "mediarelay_permissions";
/// Clock skew allowed on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 5;
/// How often the JWKS file's modification time is looked at.
pub const JWKS_RECHECK: Duration = Duration::from_secs(3);
/// Largest JWKS file read.
const MAX_JWKS_BYTES: u64 = 1 << 20;
/// Most keys taken from a JWKS file.
const MAX_JWKS_KEYS: usize = 64;

/// One verification key from a JWKS file.
#[derive(Clone)]
pub struct JwksKey {
    /// `kid`, when the JWK has one.
    pub kid: Option<String>,
    /// RS256 or ES256.
    pub alg: Algorithm,
    key: DecodingKey,
}

impl std::fmt::Debug for JwksKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish()
    }
}

/// Parses a JWK Set (RFC 7517 §5) and keeps its RS256 and ES256 (P-256)
/// signature keys; other keys (encryption keys, other algorithms) are
/// skipped. A set with no usable key is an error.
pub fn parse_jwks(bytes: &[u8]) -> Result<Vec<JwksKey>, String> {
    #[derive(Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set =
        serde_json::from_slice(bytes).map_err(|e| format!("not a JWK Set (RFC 7517 §5): {e}"))?;
    let mut keys = Vec::new();
    for value in set.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
            continue;
        };
        if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
            continue;
        }
        let alg = match (&jwk.algorithm, jwk.common.key_algorithm) {
            (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
            (AlgorithmParameters::EllipticCurve(ec), None | Some(KeyAlgorithm::ES256))
                if ec.curve == EllipticCurve::P256 =>
            {
                Algorithm::ES256
            }
            _ => continue,
        };
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        keys.push(JwksKey {
            kid: jwk.common.key_id.clone(),
            alg,
            key,
        });
        if keys.len() >= MAX_JWKS_KEYS {
            break;
        }
    }
    if keys.is_empty() {
        return Err("the JWK Set has no RS256 or ES256 (P-256) signature key".into());
    }
    Ok(keys)
}

/// Reads and parses a JWKS file; the error names the file.
pub fn read_jwks_file(path: &Path) -> Result<Vec<JwksKey>, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    if meta.len() > MAX_JWKS_BYTES {
        return Err(format!("{shown} is larger than {MAX_JWKS_BYTES} bytes"));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    parse_jwks(&bytes).map_err(|e| format!("{shown}: {e}"))
}

/// What a valid token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The `sub` claim.
    pub subject: Option<String>,
    /// The known entries of `mediarelay_permissions` (unknown actions, e.g.
    /// another server's, are skipped).
    pub permissions: Vec<Permission>,
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    mediarelay_permissions: Vec<ClaimPermission>,
}

#[derive(Deserialize)]
struct ClaimPermission {
    action: String,
    #[serde(default)]
    path: Option<String>,
}

/// Verifies `token` against the HS256 `secret` and the JWKS `keys`, with
/// the system clock. `Err` says why it is refused (never the token itself).
pub fn verify(
    token: &str,
    secret: Option<&DecodingKey>,
    keys: &[JwksKey],
) -> Result<VerifiedToken, String> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| "malformed token".to_string())?;
    let candidates: Vec<&DecodingKey> = match header.alg {
        Algorithm::HS256 => match secret {
            Some(k) => vec![k],
            None => return Err("HS256 tokens are not accepted (no auth.jwt.secret)".into()),
        },
        alg @ (Algorithm::RS256 | Algorithm::ES256) => {
            let found: Vec<&DecodingKey> = keys
                .iter()
                .filter(|k| k.alg == alg)
                .filter(|k| header.kid.is_none() || k.kid == header.kid)
                .map(|k| &k.key)
                .collect();
            if found.is_empty() {
                return Err(match &header.kid {
                    Some(kid) => format!("no {alg:?} key with kid {kid:?} in the JWKS file"),
                    None => format!("no {alg:?} key in the JWKS file"),
                });
            }
            found
        }
        alg => {
            return Err(format!(
                "{alg:?} tokens are not accepted (HS256, RS256, ES256)"
            ));
        }
    };
    let mut validation = Validation::new(header.alg);
    validation.leeway = LEEWAY_SECS;
    validation.validate_exp = true;
    validation.validate_nbf = true;
    // No audience is configured: tokens are not checked for one.
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp"]);
    let mut last = String::from("bad signature");
    for key in candidates {
        match jsonwebtoken::decode::<Claims>(token, key, &validation) {
            Ok(data) => {
                let permissions = data
                    .claims
                    .mediarelay_permissions
                    .into_iter()
                    .filter_map(|p| {
                        Some(Permission {
                            action: Action::parse(&p.action)?,
                            path: p.path,
                        })
                    })
                    .collect();
                return Ok(VerifiedToken {
                    subject: data.claims.sub,
                    permissions,
                });
            }
            Err(e) => {
                last = match e.kind() {
                    ErrorKind::InvalidSignature => "bad signature".into(),
                    ErrorKind::ExpiredSignature => "token expired".into(),
                    ErrorKind::ImmatureSignature => "token not valid yet (nbf)".into(),
                    ErrorKind::MissingRequiredClaim(c) => format!("token has no {c} claim"),
                    ErrorKind::Json(_) => format!(
                        "token claims are malformed ({PERMISSIONS_CLAIM} is a list of {{action, path}})"
                    ),
                    _ => "malformed token".into(),
                };
                // Only a bad signature may mean another key fits.
                if !matches!(e.kind(), ErrorKind::InvalidSignature) {
                    break;
                }
            }
        }
    }
    Err(last)
}

/// The JWT side of an `Authenticator`: the secret, and the JWKS file's
/// keys, re-read when the file's modification time changes (looked at no
/// more than every [`JWKS_RECHECK`]).
pub(crate) struct JwtVerifier {
    secret: Option<DecodingKey>,
    jwks: Option<JwksFile>,
}

struct JwksFile {
    path: PathBuf,
    recheck: Duration,
    state: Mutex<JwksState>,
}

struct JwksState {
    keys: Arc<Vec<JwksKey>>,
    /// (modification time, length) of the file the keys came from.
    version: Option<(SystemTime, u64)>,
    checked: Instant,
}

impl JwtVerifier {
    /// The verifier of `[auth.jwt]`; the JWKS file is looked at again at
    /// most every `recheck`.
    pub(crate) fn new(config: &JwtConfig, recheck: Duration) -> Result<JwtVerifier, String> {
        let secret = match &config.secret {
            Some(s) if s.expose().len() < MIN_HS256_SECRET_BYTES => {
                return Err(format!(
                    "auth.jwt.secret: must be at least {MIN_HS256_SECRET_BYTES} bytes"
                ));
            }
            Some(s) => Some(DecodingKey::from_secret(s.expose().as_bytes())),
            None => None,
        };
        let jwks = match &config.jwks_file {
            Some(path) => {
                let version = file_version(std::fs::metadata(path));
                let keys = read_jwks_file(path).map_err(|e| format!("auth.jwt.jwks_file: {e}"))?;
                Some(JwksFile {
                    path: path.clone(),
                    recheck,
                    state: Mutex::new(JwksState {
                        keys: Arc::new(keys),
                        version,
                        checked: Instant::now(),
                    }),
                })
            }
            None => None,
        };
        if secret.is_none() && jwks.is_none() {
            return Err("auth.jwt: set secret or jwks_file".into());
        }
        Ok(JwtVerifier { secret, jwks })
    }

    /// Verifies a token with the current keys.
    pub(crate) async fn verify(&self, token: &str) -> Result<VerifiedToken, String> {
        let keys = self.current_keys().await;
        verify(token, self.secret.as_ref(), &keys)
    }

    async fn current_keys(&self) -> Arc<Vec<JwksKey>> {
        let Some(file) = &self.jwks else {
            return Arc::new(Vec::new());
        };
        let now = Instant::now();
        let (keys, version) = {
            let Ok(mut state) = file.state.lock() else {
                return Arc::new(Vec::new());
            };
            if now.saturating_duration_since(state.checked) < file.recheck {
                return state.keys.clone();
            }
            state.checked = now;
            (state.keys.clone(), state.version)
        };
        let current = file_version(tokio::fs::metadata(&file.path).await);
        if current.is_none() || current == version {
            return keys;
        }
        // The file changed: read it off the runtime (a small file, rarely).
        let path = file.path.clone();
        let loaded = tokio::task::spawn_blocking(move || read_jwks_file(&path))
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
        let Ok(mut state) = file.state.lock() else {
            return keys;
        };
        state.version = current;
        match loaded {
            Ok(new) => {
                tracing::info!(file = %file.path.display(), keys = new.len(), "JWKS file reloaded");
                state.keys = Arc::new(new);
            }
            Err(e) => {
                tracing::warn!(
                    "JWKS file changed but cannot be used, keeping its previous keys: {e}"
                );
            }
        }
        state.keys.clone()
    }
}

fn file_version(meta: std::io::Result<std::fs::Metadata>) -> Option<(SystemTime, u64)> {
    let meta = meta.ok()?;
    Some((meta.modified().ok()?, meta.len()))
}
