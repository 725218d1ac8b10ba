//! The external HTTP auth hook: every request is POSTed as JSON to
//! `auth.hook.url`; a 2xx answer allows it, anything else refuses it, and
//! so does no answer within `auth.hook.timeout`. Decisions are reused for
//! `auth.hook.cache` (keyed on everything but the session id).

use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::ttl_cache::TtlCache;
use super::{AuthError, AuthRequest, Identity};
use crate::config::{Action, HookConfig};

/// Decisions the hook cache keeps.
pub const HOOK_CACHE_ENTRIES: usize = 1024;

/// The JSON body POSTed to the hook.
#[derive(Serialize)]
pub struct HookRequest<'a> {
    pub action: Action,
    pub path: &'a str,
    pub protocol: &'a str,
    pub user: Option<&'a str>,
    pub password: Option<&'a str>,
    pub token: Option<&'a str>,
    pub ip: Option<String>,
    pub query: &'a str,
    pub session_id: Option<u64>,
}

impl<'a> HookRequest<'a> {
    fn new(req: &'a AuthRequest<'a>) -> Self {
        HookRequest {
            action: req.action,
            path: req.path,
            protocol: req.protocol,
            user: req.credentials.user.as_deref(),
            password: req.credentials.pass.as_deref(),
            token: req.credentials.token.as_deref(),
            ip: req.ip.map(|ip| ip.to_string()),
            query: req.query,
            session_id: req.session_id,
        }
    }
}

/// What the hook answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Allow,
    Deny(u16),
}

pub(crate) struct Hook {
    url: String,
    client: reqwest::Client,
    /// Keys are salted hashes of the request (it holds passwords).
    cache: Mutex<TtlCache<[u8; 32], Decision>>,
    salt: [u8; 16],
}

impl Hook {
    pub(crate) fn new(config: &HookConfig) -> Result<Hook, String> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            // A redirect is "anything else": it refuses, it is not followed.
            .redirect(reqwest::redirect::Policy::none())
            // Passwords go to the hook and nowhere else.
            .no_proxy()
            .build()
            .map_err(|e| format!("auth.hook: cannot set up the HTTP client: {e}"))?;
        Ok(Hook {
            url: config.url.clone(),
            client,
            cache: Mutex::new(TtlCache::new(HOOK_CACHE_ENTRIES, config.cache)),
            salt: rand::random(),
        })
    }

    fn cache_key(&self, body: &HookRequest<'_>) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.salt);
        let keyed = HookRequest {
            session_id: None,
            ip: body.ip.clone(),
            ..*body
        };
        // Serializing this struct cannot fail (strings, numbers, options).
        h.update(serde_json::to_vec(&keyed).unwrap_or_default());
        h.finalize().into()
    }

    /// Asks the hook (or its cache) about `req`.
    pub(crate) async fn decide(&self, req: &AuthRequest<'_>) -> Result<Identity, AuthError> {
        let body = HookRequest::new(req);
        let key = self.cache_key(&body);
        let cached = self
            .cache
            .lock()
            .ok()
            .and_then(|mut c| c.get(&key, Instant::now()));
        let decision = match cached {
            Some(d) => d,
            None => {
                let d = self.call(&body).await?;
                if let Ok(mut c) = self.cache.lock() {
                    c.insert(key, d, Instant::now());
                }
                d
            }
        };
        match decision {
            Decision::Allow => Ok(Identity {
                user: req.credentials.user.clone(),
            }),
            Decision::Deny(status) => {
                let reason = format!("the auth hook answered {status}");
                if status == 401 || req.credentials.is_empty() {
                    Err(AuthError::Unauthenticated(reason))
                } else {
                    Err(AuthError::Forbidden(reason))
                }
            }
        }
    }

    async fn call(&self, body: &HookRequest<'_>) -> Result<Decision, AuthError> {
        let response = self
            .client
            .post(&self.url)
            .json(body)
            .send()
            .await
            .map_err(|e| {
                let what = if e.is_timeout() {
                    "did not answer in time".to_string()
                } else {
                    format!("cannot be reached: {}", error_chain(&e))
                };
                tracing::warn!(url = %self.url, "auth hook {what}");
                AuthError::Unavailable(format!("the auth hook {what}"))
            })?;
        let status = response.status();
        Ok(if status.is_success() {
            Decision::Allow
        } else {
            Decision::Deny(status.as_u16())
        })
    }
}

/// An error with its sources, for one log line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
