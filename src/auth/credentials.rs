//! Credentials a request carries: from its query string (`?user=…&pass=…`,
//! `?token=…`/`?jwt=…`, also inside RTMP stream keys) and from its
//! `Authorization` header (RFC 7617 Basic, RFC 6750 §2.1 Bearer). Pure parsing.

use std::fmt;

use base64::Engine;
use http::HeaderMap;
use http::header::AUTHORIZATION;
use percent_encoding::percent_decode_str;

/// Longest user, password or token taken from a request, in bytes.
pub const MAX_CREDENTIAL_LEN: usize = 8192;

/// What a request says about who it is. Passwords and tokens never print:
/// `Debug` shows only whether they are there.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub user: Option<String>,
    pub pass: Option<String>,
    /// A bearer token (a JWT when `[auth.jwt]` is set).
    pub token: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("pass", &shown(&self.pass))
            .field("token", &shown(&self.token))
            .finish()
    }
}

/// An `Authorization` header that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    #[error("the Authorization header is not visible ASCII")]
    NotAscii,
    #[error("Basic credentials are not valid Base64")]
    BadBase64,
    #[error("Basic credentials are not UTF-8")]
    NotUtf8,
    #[error("Basic credentials have no ':' between user and password")]
    NoColon,
    #[error("the Authorization header has an empty {0} value")]
    Empty(&'static str),
    #[error("a credential is longer than {MAX_CREDENTIAL_LEN} bytes")]
    TooLong,
}

impl Credentials {
    /// Reads `user`, `pass`, and `token` (or `jwt`) from a query string, with
    /// or without its leading `?`. Values are percent-decoded (RFC 3986
    /// §2.1; `+` stays `+`); the first occurrence of a name wins; values
    /// that are empty, over [`MAX_CREDENTIAL_LEN`] or not UTF-8 after
    /// decoding are ignored.
    pub fn from_query(query: &str) -> Credentials {
        let query = query.strip_prefix('?').unwrap_or(query);
        let mut c = Credentials::default();
        for pair in query.split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let slot = match name {
                "user" => &mut c.user,
                "pass" => &mut c.pass,
                "token" | "jwt" => &mut c.token,
                _ => continue,
            };
            if slot.is_some() || value.is_empty() || value.len() > 3 * MAX_CREDENTIAL_LEN {
                continue;
            }
            if let Ok(v) = percent_decode_str(value).decode_utf8()
                && !v.is_empty()
                && v.len() <= MAX_CREDENTIAL_LEN
            {
                *slot = Some(v.into_owned());
            }
        }
        c
    }

    /// Reads the `Authorization` header: `Basic` (RFC 7617 §2: Base64 of
    /// `user:pass`) or `Bearer` (RFC 6750 §2.1). Scheme names are
    /// case-insensitive (RFC 7235 §2.1); other schemes and a missing header
    /// give no credentials. A header that cannot be read is an error (the
    /// request should be refused, not treated as anonymous).
    pub fn from_headers(headers: &HeaderMap) -> Result<Credentials, CredentialsError> {
        let Some(value) = headers.get(AUTHORIZATION) else {
            return Ok(Credentials::default());
        };
        let value = value.to_str().map_err(|_| CredentialsError::NotAscii)?;
        if value.len() > 2 * MAX_CREDENTIAL_LEN {
            return Err(CredentialsError::TooLong);
        }
        let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("basic") {
            if rest.is_empty() {
                return Err(CredentialsError::Empty("Basic"));
            }
            let raw = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .map_err(|_| CredentialsError::BadBase64)?;
            let text = String::from_utf8(raw).map_err(|_| CredentialsError::NotUtf8)?;
            let (user, pass) = text.split_once(':').ok_or(CredentialsError::NoColon)?;
            if user.len() > MAX_CREDENTIAL_LEN || pass.len() > MAX_CREDENTIAL_LEN {
                return Err(CredentialsError::TooLong);
            }
            Ok(Credentials {
                user: (!user.is_empty()).then(|| user.to_string()),
                pass: (!pass.is_empty()).then(|| pass.to_string()),
                token: None,
            })
        } else if scheme.eq_ignore_ascii_case("bearer") {
            if rest.is_empty() {
                return Err(CredentialsError::Empty("Bearer"));
            }
            if rest.len() > MAX_CREDENTIAL_LEN {
                return Err(CredentialsError::TooLong);
            }
            Ok(Credentials {
                token: Some(rest.to_string()),
                ..Credentials::default()
            })
        } else {
            Ok(Credentials::default())
        }
    }

    /// Both sets together; `self` (e.g. the header's) wins field by field
    /// over `other` (e.g. the query's).
    pub fn merge(self, other: Credentials) -> Credentials {
        Credentials {
            user: self.user.or(other.user),
            pass: self.pass.or(other.pass),
            token: self.token.or(other.token),
        }
    }

    /// Whether the request carries no credentials at all.
    pub fn is_empty(&self) -> bool {
        self.user.is_none() && self.pass.is_none() && self.token.is_none()
    }
}

/// Splits an RTMP stream key or a request target into path and query:
/// `cam1?user=a&pass=b` → (`cam1`, `user=a&pass=b`).
pub fn split_query(target: &str) -> (&str, &str) {
    target.split_once('?').unwrap_or((target, ""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(value: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_bytes(value).unwrap());
        h
    }

    fn basic(user_pass: &str) -> HeaderMap {
        let b64 = base64::engine::general_purpose::STANDARD.encode(user_pass);
        headers(format!("Basic {b64}").as_bytes())
    }

    #[test]
    fn query_with_percent_decoding() {
        let c = Credentials::from_query("?user=ob%73&pass=p%40ss%3Dw+rd%26&other=1");
        assert_eq!(c.user.as_deref(), Some("obs"));
        assert_eq!(c.pass.as_deref(), Some("p@ss=w+rd&"));
        assert_eq!(c.token, None);
        let c = Credentials::from_query("jwt=a.b.c&token=x.y.z");
        assert_eq!(c.token.as_deref(), Some("a.b.c"), "first one wins");
        let c = Credentials::from_query("user=&pass&token=%ff%fe");
        assert_eq!(c, Credentials::default(), "empty and non-UTF-8 are ignored");
        assert!(Credentials::from_query("").is_empty());
    }

    #[test]
    fn rtmp_stream_key() {
        let (path, query) = split_query("cam1?user=a&pass=b");
        assert_eq!(path, "cam1");
        let c = Credentials::from_query(query);
        assert_eq!(
            (c.user.as_deref(), c.pass.as_deref()),
            (Some("a"), Some("b"))
        );
        assert_eq!(split_query("cam1"), ("cam1", ""));
    }

    #[test]
    fn basic_header() {
        let c = Credentials::from_headers(&basic("obs:se:cret")).unwrap();
        assert_eq!(c.user.as_deref(), Some("obs"));
        assert_eq!(c.pass.as_deref(), Some("se:cret"), "split at the first ':'");
        let c = Credentials::from_headers(&headers(b"bAsIc  b2JzOng= ")).unwrap();
        assert_eq!(c.user.as_deref(), Some("obs"));
        assert_eq!(c.pass.as_deref(), Some("x"));
    }

    #[test]
    fn malformed_basic_is_an_error() {
        use CredentialsError::*;
        let cases: &[(&[u8], CredentialsError)] = &[
            (b"Basic !!!notbase64", BadBase64),
            (b"Basic b2Jz", NoColon),
            (b"Basic /w==", NotUtf8),
            (b"Basic", Empty("Basic")),
            (b"Bearer ", Empty("Bearer")),
            (b"Basic \xe9", NotAscii),
        ];
        for (value, err) in cases {
            assert_eq!(
                Credentials::from_headers(&headers(value)).as_ref(),
                Err(err),
                "{}",
                String::from_utf8_lossy(value)
            );
        }
        let long = format!("Bearer {}", "a".repeat(MAX_CREDENTIAL_LEN + 1));
        assert_eq!(
            Credentials::from_headers(&headers(long.as_bytes())),
            Err(TooLong)
        );
    }

    #[test]
    fn bearer_and_other_schemes() {
        let c = Credentials::from_headers(&headers(b"Bearer a.b.c")).unwrap();
        assert_eq!(c.token.as_deref(), Some("a.b.c"));
        assert_eq!(c.user, None);
        let c = Credentials::from_headers(&headers(b"Digest username=\"x\"")).unwrap();
        assert!(c.is_empty());
        assert!(
            Credentials::from_headers(&HeaderMap::new())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn merge_prefers_self_and_debug_hides_secrets() {
        let header = Credentials {
            token: Some("tok".into()),
            ..Default::default()
        };
        let query = Credentials::from_query("user=u&pass=hunter2&token=other");
        let c = header.merge(query);
        assert_eq!(c.token.as_deref(), Some("tok"));
        assert_eq!(c.user.as_deref(), Some("u"));
        assert_eq!(c.pass.as_deref(), Some("hunter2"));
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("tok\""),
            "{shown}"
        );
        assert!(shown.contains("\"u\""), "{shown}");
    }
}
