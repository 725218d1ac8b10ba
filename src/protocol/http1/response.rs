//! Response heads (RFC 9112 §4, §6): the framing of the body and whether the
//! connection stays open are decided here, from the request and the
//! response's status, headers and exact body length, if known.

use http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use http::{HeaderMap, StatusCode, Version};

use super::date::DATE_LEN;

/// How the body is delimited on the wire (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body bytes are sent: `HEAD`, 1xx, 204, 304 (RFC 9110 §6.4.1).
    NoBody,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked` (RFC 9112 §7.1), for HTTP/1.1 bodies of
    /// unknown length.
    Chunked,
    /// The body ends when the connection closes: HTTP/1.0 bodies of unknown
    /// length.
    UntilClose,
}

/// What the response head says and how the body follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponsePlan {
    pub framing: Framing,
    /// The length written as `Content-Length`, if any: for `HEAD` the
    /// length a `GET` would have had.
    pub content_length: Option<u64>,
    /// The connection stays open for the next request.
    pub keep_alive: bool,
    /// The request's version: 1.0 gets `Connection: keep-alive` when kept
    /// open, 1.1 `Connection: close` when not.
    pub version: Version,
}

/// The request's side of the decision.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo {
    pub is_head: bool,
    pub version: Version,
    pub keep_alive: bool,
}

/// Frames a response to a request (RFC 9112 §6.1–§6.3, §9.3).
///
/// `exact_len` is the body's exact length, if known. A `Content-Length` the
/// handler set wins over it (for `HEAD` it is the `GET` length); the server
/// stops answering on the connection when `draining`.
pub fn plan_response(
    req: RequestInfo,
    status: StatusCode,
    headers: &HeaderMap,
    exact_len: Option<u64>,
    draining: bool,
) -> ResponsePlan {
    let handler = HandlerFraming {
        declared_length: declared_length(headers),
        close: super::connection_has(headers, "close"),
    };
    plan(req, status, handler, exact_len, draining)
}

/// What a handler's own headers say about framing: the one valid
/// `Content-Length` it set, and whether it asked for `Connection: close`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HandlerFraming {
    pub declared_length: Option<u64>,
    pub close: bool,
}

/// [`plan_response`] for a handler whose headers were read already.
pub fn plan(
    req: RequestInfo,
    status: StatusCode,
    handler: HandlerFraming,
    exact_len: Option<u64>,
    draining: bool,
) -> ResponsePlan {
    let declared = handler.declared_length;
    let bodiless_status = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let length = declared.or(exact_len);
    let (framing, content_length) = if bodiless_status {
        // 304 may repeat the length a 200 would have had.
        let keep = if status == StatusCode::NOT_MODIFIED {
            declared
        } else {
            None
        };
        (Framing::NoBody, keep)
    } else if req.is_head {
        (Framing::NoBody, length)
    } else {
        match length {
            Some(n) => (Framing::Length(n), Some(n)),
            None if req.version == Version::HTTP_11 => (Framing::Chunked, None),
            None => (Framing::UntilClose, None),
        }
    };
    let keep_alive =
        req.keep_alive && !draining && framing != Framing::UntilClose && !handler.close;
    ResponsePlan {
        framing,
        content_length,
        keep_alive,
        version: req.version,
    }
}

/// The one valid `Content-Length` the handler set, if any.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    let mut values = headers.get_all(CONTENT_LENGTH).iter();
    match (values.next(), values.next()) {
        (Some(v), None) => v.to_str().ok()?.trim().parse().ok(),
        _ => None,
    }
}

/// The response head: status line, the handler's headers (but framing and
/// connection headers, which the plan decides), `Date` unless the handler
/// set one, the plan's headers and the blank line.
pub fn encode_head(
    status: StatusCode,
    headers: &HeaderMap,
    plan: &ResponsePlan,
    date: &[u8; DATE_LEN],
) -> Vec<u8> {
    let size: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    let mut out = Vec::with_capacity(size + 128);
    let lines = headers
        .iter()
        .filter(|(name, _)| {
            *name != CONTENT_LENGTH && *name != TRANSFER_ENCODING && *name != CONNECTION
        })
        .map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes()));
    let date = (!headers.contains_key(DATE)).then_some(date);
    encode_head_into(&mut out, status, lines, plan, date);
    out
}

/// Appends a response head to `out`: the status line, `lines` (header
/// names and values, none of them a framing or connection header), `date`
/// if given, the plan's headers and the blank line.
pub fn encode_head_into<'a>(
    out: &mut Vec<u8>,
    status: StatusCode,
    lines: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    plan: &ResponsePlan,
    date: Option<&[u8; DATE_LEN]>,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in lines {
        line(out, name, value);
    }
    if let Some(date) = date {
        line(out, b"date", date);
    }
    if let Some(n) = plan.content_length {
        let digits = itoa_u64(n);
        line(out, b"content-length", digits.as_slice());
    }
    if plan.framing == Framing::Chunked {
        line(out, b"transfer-encoding", b"chunked");
    }
    match (plan.keep_alive, plan.version) {
        (false, Version::HTTP_11) => line(out, b"connection", b"close"),
        (true, Version::HTTP_10) => line(out, b"connection", b"keep-alive"),
        _ => {}
    }
    out.extend_from_slice(b"\r\n");
}

fn line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The size line of one chunk (RFC 9112 §7.1): hex length and CRLF.
pub fn chunk_size_line(len: usize) -> Vec<u8> {
    format!("{len:x}\r\n").into_bytes()
}

/// The last chunk and the end of the (empty) trailer section.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Decimal digits of a `u64`, without allocating.
struct Digits {
    buf: [u8; 20],
    start: usize,
}

impl Digits {
    fn as_slice(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or_default()
    }
}

fn itoa_u64(mut n: u64) -> Digits {
    let mut d = Digits {
        buf: [b'0'; 20],
        start: 20,
    };
    loop {
        d.start -= 1;
        if let Some(slot) = d.buf.get_mut(d.start) {
            *slot = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || d.start == 0 {
            return d;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const GET_11: RequestInfo = RequestInfo {
        is_head: false,
        version: Version::HTTP_11,
        keep_alive: true,
    };

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn head(status: StatusCode, h: &HeaderMap, plan: &ResponsePlan) -> String {
        String::from_utf8(encode_head(
            status,
            h,
            plan,
            b"Sun, 06 Nov 1994 08:49:37 GMT",
        ))
        .unwrap()
    }

    #[test]
    fn exact_bodies_get_a_length_and_stay_open() {
        let h = headers(&[("content-type", "video/mp4")]);
        let plan = plan_response(GET_11, StatusCode::OK, &h, Some(51_234), false);
        assert_eq!(plan.framing, Framing::Length(51_234));
        assert!(plan.keep_alive);
        assert_eq!(
            head(StatusCode::OK, &h, &plan),
            "HTTP/1.1 200 OK\r\ncontent-type: video/mp4\r\ndate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
             content-length: 51234\r\n\r\n"
        );
    }

    #[test]
    fn unknown_lengths_are_chunked_in_1_1_and_close_delimited_in_1_0() {
        let h = HeaderMap::new();
        let plan = plan_response(GET_11, StatusCode::OK, &h, None, false);
        assert_eq!(plan.framing, Framing::Chunked);
        assert!(plan.keep_alive);
        assert!(head(StatusCode::OK, &h, &plan).contains("transfer-encoding: chunked\r\n"));
        let v10 = RequestInfo {
            version: Version::HTTP_10,
            ..GET_11
        };
        let plan = plan_response(v10, StatusCode::OK, &h, None, false);
        assert_eq!(plan.framing, Framing::UntilClose);
        assert!(!plan.keep_alive, "the close ends the body");
        let text = head(StatusCode::OK, &h, &plan);
        assert!(
            !text.contains("connection"),
            "1.0 closes by default: {text}"
        );
        assert!(!text.contains("transfer-encoding"));
    }

    #[test]
    fn keep_alive_rules() {
        let h = HeaderMap::new();
        // 1.0 keep-alive is confirmed in the head.
        let v10 = RequestInfo {
            version: Version::HTTP_10,
            ..GET_11
        };
        let plan = plan_response(v10, StatusCode::OK, &h, Some(1), false);
        assert!(plan.keep_alive);
        assert!(head(StatusCode::OK, &h, &plan).contains("connection: keep-alive\r\n"));
        // The client's close, the handler's close and draining all close.
        let close = RequestInfo {
            keep_alive: false,
            ..GET_11
        };
        for (req, h, draining) in [
            (close, HeaderMap::new(), false),
            (GET_11, headers(&[("connection", "close")]), false),
            (GET_11, HeaderMap::new(), true),
        ] {
            let plan = plan_response(req, StatusCode::OK, &h, Some(1), draining);
            assert!(!plan.keep_alive);
            let text = head(StatusCode::OK, &h, &plan);
            assert_eq!(text.matches("connection: close\r\n").count(), 1, "{text}");
        }
    }

    #[test]
    fn head_and_bodiless_statuses_send_no_body() {
        // axum sets the GET length on HEAD answers and empties the body.
        let h = headers(&[("content-length", "4000")]);
        let head_req = RequestInfo {
            is_head: true,
            ..GET_11
        };
        let plan = plan_response(head_req, StatusCode::OK, &h, Some(0), false);
        assert_eq!(plan.framing, Framing::NoBody);
        assert_eq!(plan.content_length, Some(4000));
        let text = head(StatusCode::OK, &h, &plan);
        assert_eq!(text.matches("content-length").count(), 1, "{text}");
        assert!(plan.keep_alive);
        for status in [StatusCode::NO_CONTENT, StatusCode::CONTINUE] {
            let plan = plan_response(GET_11, status, &HeaderMap::new(), Some(0), false);
            assert_eq!(plan.framing, Framing::NoBody);
            assert_eq!(plan.content_length, None);
            assert!(!head(status, &HeaderMap::new(), &plan).contains("content-length"));
        }
        let plan = plan_response(GET_11, StatusCode::NOT_MODIFIED, &h, None, false);
        assert_eq!(plan.framing, Framing::NoBody);
    }

    #[test]
    fn handler_headers_pass_and_framing_headers_are_ours() {
        let h = headers(&[
            ("set-cookie", "a=1"),
            ("set-cookie", "b=2"),
            ("transfer-encoding", "gzip"),
            ("date", "Mon, 07 Nov 1994 08:49:37 GMT"),
            ("content-length", "nonsense"),
        ]);
        let plan = plan_response(GET_11, StatusCode::NOT_FOUND, &h, Some(7), false);
        assert_eq!(
            plan.framing,
            Framing::Length(7),
            "an invalid length is not used"
        );
        let text = head(StatusCode::NOT_FOUND, &h, &plan);
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(text.contains("set-cookie: a=1\r\nset-cookie: b=2\r\n"));
        assert!(!text.contains("gzip") && !text.contains("nonsense"));
        assert_eq!(text.matches("date: ").count(), 1);
        assert!(text.contains("content-length: 7\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
        let custom = StatusCode::from_u16(599).unwrap();
        assert!(head(custom, &HeaderMap::new(), &plan).starts_with("HTTP/1.1 599 \r\n"));
    }

    #[test]
    fn digits_and_chunk_lines() {
        for n in [0u64, 7, 10, 51_234, u64::MAX] {
            assert_eq!(itoa_u64(n).as_slice(), n.to_string().as_bytes());
        }
        assert_eq!(chunk_size_line(0x1f40), b"1f40\r\n");
    }
}
