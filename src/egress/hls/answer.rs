//! An HLS answer before it is an HTTP response: both server paths write it
//! — the router's (hyper, HTTPS, HTTP/2) as an axum `Response`, and the
//! plain listener's own HTTP/1.1 path straight into the socket
//! (`server::h1`), so there is one HLS answer whichever path sends it.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;

use super::body::ChunksBody;
use super::window::Part;
use crate::net::sendfile::FileRange;

/// The content type of error answers (a JSON object with `error`).
pub const JSON_TYPE: &str = "application/json";

/// What an HLS request is answered with.
#[derive(Debug)]
pub struct HlsAnswer {
    pub status: StatusCode,
    pub content_type: &'static str,
    /// `Cache-Control`, set on successful answers.
    pub cache_control: Option<&'static str>,
    /// `Set-Cookie`: the viewer's new session id.
    pub set_cookie: Option<HeaderValue>,
    pub body: HlsBody,
    /// The same bytes as `body` in a memory file, when they are there: the
    /// plain HTTP/1.1 path `sendfile`s them.
    pub file: Option<FileRange>,
}

/// The bytes of an answer, shared with the muxer's window.
#[derive(Debug)]
pub enum HlsBody {
    Bytes(Bytes),
    /// A segment: its parts' bytes in order.
    Parts(Vec<Arc<Part>>),
}

impl HlsBody {
    pub fn len(&self) -> u64 {
        match self {
            HlsBody::Bytes(b) => b.len() as u64,
            HlsBody::Parts(parts) => parts.iter().map(|p| p.len() as u64).sum(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The non-empty chunks in order.
    pub fn chunks(&self) -> impl Iterator<Item = &Bytes> {
        let (one, parts) = match self {
            HlsBody::Bytes(b) => (Some(b), &[][..]),
            HlsBody::Parts(parts) => (None, parts.as_slice()),
        };
        one.into_iter()
            .chain(parts.iter().map(|p| &p.data))
            .filter(|b| !b.is_empty())
    }
}

impl HlsAnswer {
    /// A successful answer of `body`.
    pub fn ok(content_type: &'static str, cache: &'static str, body: HlsBody) -> HlsAnswer {
        HlsAnswer {
            status: StatusCode::OK,
            content_type,
            cache_control: Some(cache),
            set_cookie: None,
            body,
            file: None,
        }
    }

    /// An error: `{"error": message}`.
    pub fn error(status: StatusCode, message: impl Into<String>) -> HlsAnswer {
        let body = serde_json::json!({ "error": message.into() });
        HlsAnswer {
            status,
            content_type: JSON_TYPE,
            cache_control: None,
            set_cookie: None,
            body: HlsBody::Bytes(Bytes::from(body.to_string())),
            file: None,
        }
    }

    /// Marks the answer as sendable from `file` (the same bytes as its body).
    pub fn with_file(mut self, file: Option<FileRange>) -> HlsAnswer {
        self.file = file;
        self
    }

    /// The answer's header lines but framing and `Date`, in order.
    pub fn header_lines(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let content_type = Some((
            header::CONTENT_TYPE.as_str().as_bytes(),
            self.content_type.as_bytes(),
        ));
        let cache = self
            .cache_control
            .map(|c| (header::CACHE_CONTROL.as_str().as_bytes(), c.as_bytes()));
        let cookie = self
            .set_cookie
            .as_ref()
            .map(|c| (header::SET_COOKIE.as_str().as_bytes(), c.as_bytes()));
        content_type.into_iter().chain(cache).chain(cookie)
    }

    /// The answer as an axum response (the router's path).
    pub fn into_response(self) -> Response {
        let body = match self.body {
            HlsBody::Bytes(b) => Body::from(b),
            HlsBody::Parts(parts) => Body::new(ChunksBody::new(parts)),
        };
        let mut r = Response::new(body);
        *r.status_mut() = self.status;
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        if let Some(cache) = self.cache_control {
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
        }
        if let Some(cookie) = self.set_cookie {
            h.append(header::SET_COOKIE, cookie);
        }
        if let Some(range) = self.file {
            r.extensions_mut().insert(range);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_the_json_axum_would_send() {
        let a = HlsAnswer::error(StatusCode::NOT_FOUND, "no \"part\" 3");
        let HlsBody::Bytes(b) = &a.body else {
            panic!("bytes")
        };
        let axum_body = serde_json::to_vec(&serde_json::json!({"error": "no \"part\" 3"})).unwrap();
        assert_eq!(b.as_ref(), axum_body.as_slice());
        let lines: Vec<_> = a.header_lines().collect();
        assert_eq!(lines, [(&b"content-type"[..], &b"application/json"[..])]);
    }

    #[test]
    fn a_response_carries_every_header_and_the_file() {
        let mut a = HlsAnswer::ok(
            "video/mp4",
            "no-cache",
            HlsBody::Bytes(Bytes::from_static(b"abc")),
        );
        a.set_cookie = Some(HeaderValue::from_static("k=v"));
        assert_eq!(a.body.len(), 3);
        let lines: Vec<_> = a
            .header_lines()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        let r = a.into_response();
        let from_response: Vec<_> = r
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect();
        assert_eq!(lines, from_response);
        assert_eq!(http_body::Body::size_hint(r.body()).exact(), Some(3));
    }
}
