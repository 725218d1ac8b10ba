//! HTTP Digest access authentication as RTSP uses it (RFC 2326 §D.2 refers
//! to RFC 2069/2617; RFC 7826 §19.1 to RFC 7616): the challenge the server
//! sends, the client's `Authorization: Digest …` answer parsed, and its
//! check against a known password. MD5 only, with or without `qop=auth`:
//! what ffmpeg, GStreamer, VLC (live555) and NVRs send.
//!
//! The password must be known in the clear to check a digest, so only users
//! whose password is `plain:` can use it; others use Basic (which the server
//! offers too).

use md5::{Digest as _, Md5};
use subtle::ConstantTimeEq;

/// Longest `Authorization` value read.
pub const MAX_HEADER: usize = 4096;

/// The `WWW-Authenticate` value of a digest challenge (RFC 2617 §3.2.1).
pub fn challenge(realm: &str, nonce: &str) -> String {
    format!("Digest realm=\"{realm}\", nonce=\"{nonce}\", algorithm=MD5")
}

/// A client's digest answer (RFC 2617 §3.2.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DigestResponse {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub qop: Option<String>,
    pub nc: Option<String>,
    pub cnonce: Option<String>,
}

/// Why an `Authorization: Digest` value cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("the Authorization header is longer than {MAX_HEADER} bytes")]
    TooLong,
    #[error("the digest answer has no {0}")]
    Missing(&'static str),
    #[error("the digest answer is malformed at byte {0}")]
    Malformed(usize),
    #[error("digest algorithm {0:?} is not supported (MD5 is)")]
    Algorithm(String),
}

impl DigestResponse {
    /// Parses the parameters after `Digest ` (comma-separated `name=value`
    /// or `name="quoted value"`, RFC 2617 §3.2.2, RFC 7230 §3.2.6).
    pub fn parse(params: &str) -> Result<DigestResponse, DigestError> {
        if params.len() > MAX_HEADER {
            return Err(DigestError::TooLong);
        }
        let mut out = DigestResponse::default();
        let mut algorithm = None;
        let mut chars = params.char_indices().peekable();
        loop {
            while chars
                .next_if(|(_, c)| matches!(c, ' ' | '\t' | ','))
                .is_some()
            {}
            let Some(&(start, _)) = chars.peek() else {
                break;
            };
            let mut name = String::new();
            while let Some((_, c)) = chars.next_if(|(_, c)| *c != '=') {
                name.push(c);
            }
            let name = name.trim().to_ascii_lowercase();
            if chars.next().is_none() || name.is_empty() {
                return Err(DigestError::Malformed(start));
            }
            while chars.next_if(|(_, c)| matches!(c, ' ' | '\t')).is_some() {}
            let mut value = String::new();
            if chars.next_if(|(_, c)| *c == '"').is_some() {
                loop {
                    match chars.next() {
                        None => return Err(DigestError::Malformed(params.len())),
                        Some((_, '"')) => break,
                        Some((at, '\\')) => match chars.next() {
                            Some((_, c)) => value.push(c),
                            None => return Err(DigestError::Malformed(at)),
                        },
                        Some((_, c)) => value.push(c),
                    }
                }
            } else {
                while let Some((_, c)) = chars.next_if(|(_, c)| *c != ',') {
                    value.push(c);
                }
                value = value.trim().to_string();
            }
            match name.as_str() {
                "username" => out.username = value,
                "realm" => out.realm = value,
                "nonce" => out.nonce = value,
                "uri" => out.uri = value,
                "response" => out.response = value,
                "qop" => out.qop = Some(value),
                "nc" => out.nc = Some(value),
                "cnonce" => out.cnonce = Some(value),
                "algorithm" => algorithm = Some(value),
                _ => {}
            }
        }
        if let Some(a) = algorithm
            && !a.eq_ignore_ascii_case("MD5")
        {
            return Err(DigestError::Algorithm(a));
        }
        for (name, v) in [
            ("username", &out.username),
            ("nonce", &out.nonce),
            ("uri", &out.uri),
            ("response", &out.response),
        ] {
            if v.is_empty() {
                return Err(DigestError::Missing(name));
            }
        }
        Ok(out)
    }

    /// Whether the answer proves `password` for `method` (RFC 2617 §3.2.2.1:
    /// `KD(H(A1), nonce:H(A2))`, or with `qop=auth`
    /// `KD(H(A1), nonce:nc:cnonce:qop:H(A2))`). Compared in constant time.
    pub fn verify(&self, method: &str, password: &str) -> bool {
        let ha1 = md5_hex(&[&self.username, ":", &self.realm, ":", password]);
        let ha2 = md5_hex(&[method, ":", &self.uri]);
        let expected = match (&self.qop, &self.nc, &self.cnonce) {
            (Some(qop), Some(nc), Some(cnonce)) => md5_hex(&[
                &ha1,
                ":",
                &self.nonce,
                ":",
                nc,
                ":",
                cnonce,
                ":",
                qop,
                ":",
                &ha2,
            ]),
            (None, _, _) => md5_hex(&[&ha1, ":", &self.nonce, ":", &ha2]),
            _ => return false,
        };
        expected
            .as_bytes()
            .ct_eq(self.response.to_ascii_lowercase().as_bytes())
            .into()
    }
}

fn md5_hex(parts: &[&str]) -> String {
    let mut h = Md5::new();
    for p in parts {
        h.update(p.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 2617 §3.5's example (qop=auth).
    #[test]
    fn rfc_2617_example_verifies() {
        let r = DigestResponse::parse(
            r#"username="Mufasa", realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth, nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
        )
        .unwrap();
        assert_eq!(r.username, "Mufasa");
        assert_eq!(r.nc.as_deref(), Some("00000001"));
        assert!(r.verify("GET", "Circle Of Life"));
        assert!(!r.verify("GET", "circle of life"));
        assert!(!r.verify("POST", "Circle Of Life"));
    }

    /// What ffmpeg sends to an RTSP server (no qop), computed by hand.
    #[test]
    fn an_answer_without_qop_verifies() {
        let ha1 = md5_hex(&["admin", ":", "mediarelay", ":", "secret"]);
        let ha2 = md5_hex(&["DESCRIBE", ":", "rtsp://h/cam"]);
        let response = md5_hex(&[&ha1, ":", "abc", ":", &ha2]);
        let value = format!(
            "username=\"admin\", realm=\"mediarelay\", nonce=\"abc\", uri=\"rtsp://h/cam\", response=\"{}\"",
            response.to_uppercase()
        );
        let r = DigestResponse::parse(&value).unwrap();
        assert!(r.verify("DESCRIBE", "secret"));
        assert!(!r.verify("DESCRIBE", "other"));
    }

    #[test]
    fn malformed_answers_are_errors() {
        for bad in [
            "",
            "username=\"a\"",
            "username=\"a, nonce=\"b\"",
            "=x, username=a",
            "username=a, nonce=b, uri=c, response=d, algorithm=SHA-256",
        ] {
            assert!(DigestResponse::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            DigestResponse::parse(&"x".repeat(MAX_HEADER + 1)),
            Err(DigestError::TooLong)
        );
        // qop without nc/cnonce never verifies.
        let r = DigestResponse::parse("username=a, nonce=b, uri=c, response=d, qop=auth").unwrap();
        assert!(!r.verify("PLAY", "x"));
        // Escapes and non-ASCII in quoted values.
        let r = DigestResponse::parse(r#"username="a\"b é", nonce=n, uri=u, response=r"#).unwrap();
        assert_eq!(r.username, "a\"b é");
    }

    #[test]
    fn the_challenge_names_realm_nonce_and_md5() {
        assert_eq!(
            challenge("mediarelay", "n1"),
            "Digest realm=\"mediarelay\", nonce=\"n1\", algorithm=MD5"
        );
    }
}
