//! Configuration types of authentication: `[[users]]` and `[auth]` (`[auth.jwt]`,
//! `[auth.hook]`). What they mean at request time is `crate::auth`'s business.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a request wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Push media to a path (RTMP publish, WHIP).
    Publish,
    /// Read a path (HLS, RTMP play, WHEP, RTSP).
    Read,
    /// Use the control API.
    Api,
    /// Read the metrics endpoint.
    Metrics,
}

impl Action {
    /// Every action, in the order the documentation lists them.
    pub const ALL: [Action; 4] = [Action::Publish, Action::Read, Action::Api, Action::Metrics];

    /// The lowercase name used in the config, in JWT claims and by the hook.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Publish => "publish",
            Action::Read => "read",
            Action::Api => "api",
            Action::Metrics => "metrics",
        }
    }

    /// Parses a lowercase action name.
    pub fn parse(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == name)
    }

    /// Whether permissions for this action are scoped to paths (`publish`,
    /// `read`); `api` and `metrics` are not.
    pub fn has_path(self) -> bool {
        matches!(self, Action::Publish | Action::Read)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Action {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Action::parse(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown action {name:?}; expected publish, read, api or metrics"
            ))
        })
    }
}

/// One permission: an action, on the paths matching `path` (a pattern where
/// `*` matches within one segment and `**` across segments). No `path` (or
/// `""`) covers every path; `api` and `metrics` ignore it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Permission {
    pub action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// A value that must not leave the process: it serializes and debug-prints
/// as `"<redacted>"` (the API returns the running config, logs print
/// configs), and reads from the file as a plain string.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

/// What a [`Secret`] serializes as.
pub const REDACTED: &str = "<redacted>";

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself: only for checking credentials.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// A `[[users]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// The user name; `any` means everyone, with or without credentials.
    pub user: String,
    /// An argon2 PHC string (`$argon2id$v=19$…`) or `plain:secret`. None for `any`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass: Option<Secret>,
    /// What the user may do.
    #[serde(default)]
    pub permissions: Vec<Permission>,
}

/// The name of the user entry that applies to everyone.
pub const ANY_USER: &str = "any";

/// The `[auth]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// JSON Web Tokens (RFC 7519).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtConfig>,
    /// An external HTTP service that decides every request alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hook: Option<HookConfig>,
}

/// `[auth.jwt]`: where the keys that sign tokens come from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwtConfig {
    /// HS256 shared secret (RFC 7518 §3.2: at least 32 bytes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
    /// A JWK Set file (RFC 7517 §5) with RS256/ES256 public keys; re-read when
    /// it changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_file: Option<PathBuf>,
}

/// `[auth.hook]`: an HTTP endpoint asked about every request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookConfig {
    /// `http://` or `https://` URL the request is POSTed to.
    pub url: String,
    /// A hook that has not answered in this long refuses the request.
    #[serde(default = "default_hook_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// How long a decision is reused for the same request; `0s` turns it off.
    #[serde(default = "default_hook_cache", with = "humantime_serde")]
    pub cache: Duration,
}

fn default_hook_timeout() -> Duration {
    Duration::from_secs(2)
}

fn default_hook_cache() -> Duration {
    Duration::from_secs(10)
}

impl Default for HookConfig {
    fn default() -> Self {
        HookConfig {
            url: String::new(),
            timeout: default_hook_timeout(),
            cache: default_hook_cache(),
        }
    }
}

/// How a `pass` value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassKind<'a> {
    /// An argon2 PHC string, e.g. `$argon2id$v=19$m=19456,t=2,p=1$…`.
    Argon2(&'a str),
    /// `plain:secret`: the secret itself.
    Plain(&'a str),
}

/// The message for a `pass` that is neither form.
pub const PASS_FORM_ERROR: &str =
    "a plaintext password must be written \"plain:…\"; store an argon2 hash (\"$argon2id$…\")";

impl<'a> PassKind<'a> {
    /// Classifies a `pass` value; `Err` is the reason it is refused.
    pub fn parse(pass: &'a str) -> Result<PassKind<'a>, String> {
        if let Some(secret) = pass.strip_prefix("plain:") {
            if secret.is_empty() {
                return Err("the password after \"plain:\" is empty".into());
            }
            return Ok(PassKind::Plain(secret));
        }
        if pass.starts_with("$argon2") {
            let hash = argon2::PasswordHash::new(pass)
                .map_err(|e| format!("not a valid argon2 PHC string: {e}"))?;
            if let Err(e) = argon2::Algorithm::new(hash.algorithm.as_str()) {
                return Err(format!("not an argon2 algorithm: {e}"));
            }
            if let Err(e) = argon2::Params::try_from(&hash) {
                return Err(format!("bad argon2 parameters: {e}"));
            }
            if hash.salt.is_none() || hash.hash.is_none() {
                return Err(
                    "an argon2 PHC string has parameters, a salt and a hash: \"$argon2id$v=19$m=…,t=…,p=…$SALT$HASH\""
                        .into(),
                );
            }
            return Ok(PassKind::Argon2(pass));
        }
        Err(PASS_FORM_ERROR.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_serialize_or_debug_print() {
        let u = UserConfig {
            user: "obs".into(),
            pass: Some(Secret::new("plain:hunter2")),
            permissions: vec![],
        };
        let text = toml::to_string(&u).unwrap();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains(REDACTED), "{text}");
        assert!(!format!("{u:?}").contains("hunter2"));
        let back: UserConfig = toml::from_str("user = \"obs\"\npass = \"plain:hunter2\"").unwrap();
        assert_eq!(back.pass.unwrap().expose(), "plain:hunter2");
    }

    #[test]
    fn pass_forms() {
        assert_eq!(PassKind::parse("plain:x"), Ok(PassKind::Plain("x")));
        assert!(PassKind::parse("plain:").is_err());
        assert_eq!(PassKind::parse("secret"), Err(PASS_FORM_ERROR.into()));
        for bad in [
            "$argon2id$garbage",
            "$argon2id$v=19$m=8,t=1,p=1",
            "$argon2x$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$PE2ecYUJaPR+mm1q6C0yIXUpz3/6Wk2GmXjFl+zEuO4",
            "$argon2id$v=19$m=1,t=1,p=1$c2FsdHNhbHQ$PE2ecYUJaPR+mm1q6C0yIXUpz3/6Wk2GmXjFl+zEuO4",
        ] {
            let e = PassKind::parse(bad).unwrap_err();
            assert!(e.contains("argon2"), "{bad}: {e}");
        }
        let ok =
            "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$PE2ecYUJaPR+mm1q6C0yIXUpz3/6Wk2GmXjFl+zEuO4";
        assert_eq!(PassKind::parse(ok), Ok(PassKind::Argon2(ok)));
    }

    #[test]
    fn action_names() {
        for a in Action::ALL {
            assert_eq!(Action::parse(a.as_str()), Some(a));
        }
        let e = toml::from_str::<Permission>("action = \"view\"").unwrap_err();
        assert!(
            e.to_string()
                .contains("unknown action \"view\"; expected publish, read, api or metrics"),
            "{e}"
        );
    }
}
