//! Authentication and authorization: who a request is, and whether it may
//! publish, read, use the API or read metrics.
//!
//! Built from `[[users]]` and `[auth]` (see `config/mediarelay.toml`):
//!
//! - **Open**: no users, no `[auth.jwt]`, no `[auth.hook]`: everything is
//!   allowed (the API stays on loopback by its listen address).
//! - **Hook**: with `[auth.hook]` the hook alone decides (`hook`); users and
//!   JWT are not consulted. A 401 from the hook, or any refusal of a
//!   request without credentials, is `Unauthenticated`; other refusals are
//!   `Forbidden`; no answer is `Unavailable`. The identity is the user the
//!   request named (the hook vouched for it).
//! - **Local** otherwise, in this order:
//!   1. A token came (`Authorization: Bearer`, `?token=`, `?jwt=`) and
//!      `[auth.jwt]` is set: it is verified (`jwt`). An invalid, expired or
//!      not-yet-valid token is refused (401) with the reason, whatever else
//!      the request carries. A valid one grants its `mediarelay_permissions`
//!      plus those of user `any`; identity is its `sub`. Without
//!      `[auth.jwt]` a token is ignored.
//!   2. Otherwise a user came (`Authorization: Basic`, `?user=&pass=`):
//!      their password is checked (`password`); a wrong one (or an unknown
//!      user) is refused (401) even where `any` would allow the request, so
//!      that a client learns its credentials are wrong. A known user gets
//!      their permissions plus those of `any`.
//!   3. Otherwise (no credentials, or user `any`): the permissions of user
//!      `any`, if there is one.
//!
//!   A request its identity has no permission for is `Forbidden` (403); one
//!   with no identity that `any` does not allow is `Unauthenticated` (401).
//!
//! Passwords and tokens are never logged; `Credentials` debug-prints them
//! as `<redacted>`.

mod credentials;
mod hook;
mod jwt;
mod password;
mod permissions;
mod ttl_cache;

use std::net::IpAddr;
use std::sync::Arc;

pub use credentials::{Credentials, CredentialsError, MAX_CREDENTIAL_LEN, split_query};
pub use hook::{HOOK_CACHE_ENTRIES, HookRequest};
pub use jwt::{
    JWKS_RECHECK, JwksKey, LEEWAY_SECS, MIN_HS256_SECRET_BYTES, PERMISSIONS_CLAIM, VerifiedToken,
    parse_jwks, read_jwks_file,
};
pub use password::{VERIFIED_CACHE_ENTRIES, VERIFIED_CACHE_TTL};
pub use permissions::{allows, any_allows};
pub use ttl_cache::TtlCache;

use crate::config::{ANY_USER, Config};
pub use crate::config::{Action, AuthConfig, Permission, UserConfig};
use hook::Hook;
use jwt::JwtVerifier;
use password::{PasswordChecker, StoredPass};

/// The `WWW-Authenticate` value (RFC 7617 §2) to send with a 401 answer to
/// an HTTP client.
pub const WWW_AUTHENTICATE: &str = "Basic realm=\"mediarelay\", charset=\"UTF-8\"";

/// One question: may these credentials do `action` on `path`?
#[derive(Debug, Clone, Copy)]
pub struct AuthRequest<'a> {
    pub action: Action,
    /// The path name (`live/cam1`); `""` for `api` and `metrics`.
    pub path: &'a str,
    /// `rtmp`, `hls`, `webrtc`, `rtsp` or `api` (for the hook and logs).
    pub protocol: &'a str,
    pub credentials: &'a Credentials,
    pub ip: Option<IpAddr>,
    /// The request's query string as the client sent it (credentials
    /// included), for the hook.
    pub query: &'a str,
    pub session_id: Option<u64>,
}

/// Why a request is refused. Reasons never contain a password or token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credentials, or wrong ones: HTTP 401 with [`WWW_AUTHENTICATE`].
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// A known identity without the permission: HTTP 403.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The decision could not be made (hook down, too many password
    /// checks): HTTP 503.
    #[error("authorization unavailable: {0}")]
    Unavailable(String),
}

impl AuthError {
    /// The HTTP status for this refusal.
    pub fn status(&self) -> http::StatusCode {
        match self {
            AuthError::Unauthenticated(_) => http::StatusCode::UNAUTHORIZED,
            AuthError::Forbidden(_) => http::StatusCode::FORBIDDEN,
            AuthError::Unavailable(_) => http::StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl From<CredentialsError> for AuthError {
    fn from(e: CredentialsError) -> Self {
        AuthError::Unauthenticated(e.to_string())
    }
}

/// Who a request turned out to be.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    /// The user name, the token's `sub`, or the user the hook allowed;
    /// `None` for anyone (open mode, user `any`).
    pub user: Option<String>,
}

/// Decides requests. Cheap to clone (shared state: caches).
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Mode>,
}

enum Mode {
    Open,
    Hook(Hook),
    Local(Box<Local>),
}

struct Local {
    users: Vec<StoredUser>,
    /// The permissions of user `any`.
    any: Vec<Permission>,
    passwords: PasswordChecker,
    jwt: Option<JwtVerifier>,
}

struct StoredUser {
    name: String,
    pass: StoredPass,
    permissions: Vec<Permission>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match &*self.inner {
            Mode::Open => "open",
            Mode::Hook(_) => "hook",
            Mode::Local(_) => "local",
        };
        f.debug_struct("Authenticator")
            .field("mode", &mode)
            .finish()
    }
}

impl Authenticator {
    /// Builds the authenticator of a (validated) configuration. Errors name
    /// the key, as config validation does.
    pub fn new(config: &AuthConfig, users: &[UserConfig]) -> Result<Self, String> {
        Self::build(config, users, jwt::JWKS_RECHECK)
    }

    /// [`Authenticator::new`] for a whole [`Config`].
    pub fn from_config(config: &Config) -> Result<Self, String> {
        Self::new(&config.auth, &config.users)
    }

    fn build(
        config: &AuthConfig,
        users: &[UserConfig],
        jwks_recheck: std::time::Duration,
    ) -> Result<Self, String> {
        let mode = if let Some(hook) = &config.hook {
            if !users.is_empty() || config.jwt.is_some() {
                tracing::warn!(
                    "[auth.hook] is set: it alone decides; [[users]] and [auth.jwt] are not consulted"
                );
            }
            Mode::Hook(Hook::new(hook)?)
        } else if users.is_empty() && config.jwt.is_none() {
            Mode::Open
        } else {
            let passwords = PasswordChecker::new();
            let mut stored = Vec::new();
            let mut any = Vec::new();
            for (i, u) in users.iter().enumerate() {
                if u.user == ANY_USER {
                    any.extend(u.permissions.iter().cloned());
                    continue;
                }
                let pass = u
                    .pass
                    .as_ref()
                    .ok_or_else(|| format!("users[{i}].pass: missing"))?;
                let pass = passwords
                    .store(pass.expose())
                    .map_err(|e| format!("users[{i}].pass: {e}"))?;
                stored.push(StoredUser {
                    name: u.user.clone(),
                    pass,
                    permissions: u.permissions.clone(),
                });
            }
            let jwt = match &config.jwt {
                Some(j) => Some(JwtVerifier::new(j, jwks_recheck)?),
                None => None,
            };
            Mode::Local(Box::new(Local {
                users: stored,
                any,
                passwords,
                jwt,
            }))
        };
        Ok(Authenticator {
            inner: Arc::new(mode),
        })
    }

    /// Whether everything is allowed (no users, no JWT, no hook).
    pub fn is_open(&self) -> bool {
        matches!(&*self.inner, Mode::Open)
    }

    /// Decides one request (see the module documentation for the order).
    pub async fn authorize(&self, req: &AuthRequest<'_>) -> Result<Identity, AuthError> {
        let result = match &*self.inner {
            Mode::Open => Ok(Identity::default()),
            Mode::Hook(hook) => hook.decide(req).await,
            Mode::Local(local) => local.decide(req).await,
        };
        if let Err(e) = &result {
            tracing::debug!(
                action = %req.action,
                path = req.path,
                protocol = req.protocol,
                user = req.credentials.user.as_deref(),
                ip = ?req.ip,
                "refused: {e}"
            );
        }
        result
    }
}

impl Local {
    async fn decide(&self, req: &AuthRequest<'_>) -> Result<Identity, AuthError> {
        let what = || match req.action.has_path() {
            true => format!("{} on {:?}", req.action, req.path),
            false => req.action.to_string(),
        };
        let any_allows = permissions::any_allows(&self.any, req.action, req.path);
        let creds = req.credentials;

        if let (Some(jwt), Some(token)) = (&self.jwt, &creds.token) {
            let t = jwt
                .verify(token)
                .await
                .map_err(|reason| AuthError::Unauthenticated(format!("invalid token: {reason}")))?;
            if any_allows || permissions::any_allows(&t.permissions, req.action, req.path) {
                return Ok(Identity { user: t.subject });
            }
            return Err(AuthError::Forbidden(format!(
                "the token does not allow {}",
                what()
            )));
        }

        if let Some(name) = creds.user.as_deref().filter(|u| *u != ANY_USER) {
            let pass = creds.pass.as_deref().unwrap_or("");
            let Some(user) = self.users.iter().find(|u| u.name == name) else {
                // As slow as a wrong password, so that user names cannot be
                // told apart by timing.
                let argon2 = self
                    .users
                    .iter()
                    .map(|u| &u.pass)
                    .find(|p| matches!(p, StoredPass::Argon2(_)));
                self.passwords.waste(argon2).await;
                return Err(wrong());
            };
            let ok = self
                .passwords
                .verify(name, &user.pass, pass)
                .await
                .map_err(AuthError::Unavailable)?;
            if !ok {
                return Err(wrong());
            }
            if any_allows || permissions::any_allows(&user.permissions, req.action, req.path) {
                return Ok(Identity {
                    user: Some(name.to_string()),
                });
            }
            return Err(AuthError::Forbidden(format!(
                "user {name:?} may not {}",
                what()
            )));
        }

        if any_allows {
            return Ok(Identity::default());
        }
        Err(AuthError::Unauthenticated(format!(
            "credentials required to {}",
            what()
        )))
    }
}

fn wrong() -> AuthError {
    AuthError::Unauthenticated("wrong user or password".into())
}

#[cfg(test)]
mod tests;
