//! Request heads (RFC 9112 §2–§5): a `GET` or `HEAD` without a body is a
//! [`RawRequest`] borrowed from the read buffer (and, for a router, an
//! `http::Request<()>` made from it); anything this module does not answer
//! itself is [`RawParsed::Handoff`], for a full HTTP server to read again
//! from its first byte.

use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version};

/// Header lines parsed at most; a head with more is handed off (the full
/// server decides: it allows more, or answers 431).
pub const MAX_HEADERS: usize = 64;

/// A `GET` or `HEAD` request with no body.
#[derive(Debug)]
pub struct SimpleRequest {
    /// Method, URI, version and headers; no extensions.
    pub request: Request<()>,
    /// Bytes of the head, the blank line included: the next request (if
    /// pipelined) starts there.
    pub head_len: usize,
    /// Whether the client wants the connection kept open (RFC 9112 §9.3).
    pub keep_alive: bool,
}

/// A `GET` or `HEAD` request head without a body, borrowed from the
/// buffer it was read into (`'b`) and the header slots it was parsed into
/// (`'h`): what a server answers from without building an
/// `http::Request`.
#[derive(Debug)]
pub struct RawRequest<'b, 'h> {
    pub method: Method,
    /// The request target as sent (RFC 9112 §3.2): origin form, absolute
    /// form, or `*`. Not checked against `http::Uri`: see
    /// [`RawRequest::into_simple`].
    pub target: &'b str,
    pub version: Version,
    /// The header lines in order: names are tokens and values hold no
    /// control characters but tab (`httparse` checks both, as
    /// `http::HeaderName` and `HeaderValue` would).
    pub headers: &'h [httparse::Header<'b>],
    /// Bytes of the head, the blank line included.
    pub head_len: usize,
    /// Whether the client wants the connection kept open (RFC 9112 §9.3).
    pub keep_alive: bool,
}

/// What a buffer holding the start of a request is ([`parse_raw`]).
#[derive(Debug)]
pub enum RawParsed<'b, 'h> {
    /// The head is not complete yet.
    Partial,
    /// A request answered without the full server.
    Simple(RawRequest<'b, 'h>),
    /// Anything else: another method, a body, `Upgrade`, `Expect`, HTTP/2's
    /// preface (RFC 9113 §3.4), or bytes this parser is not sure of. The full
    /// server reads the connection from the request's first byte, and
    /// answers malformed requests itself (400, 431, 414).
    Handoff,
}

/// The header slots [`parse_raw`] fills.
pub type HeaderSlots<'b> = [httparse::Header<'b>; MAX_HEADERS];

/// An empty set of header slots.
pub const fn header_slots<'b>() -> HeaderSlots<'b> {
    [httparse::EMPTY_HEADER; MAX_HEADERS]
}

/// Parses the request at the start of `buf` (RFC 9112 §2.2: empty lines
/// before the request line are skipped) into `slots`, without copying.
pub fn parse_raw<'b, 'h>(buf: &'b [u8], slots: &'h mut HeaderSlots<'b>) -> RawParsed<'b, 'h> {
    let mut req = httparse::Request::new(slots);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return RawParsed::Partial,
        Err(_) => return RawParsed::Handoff,
    };
    let method = match req.method {
        Some("GET") => Method::GET,
        Some("HEAD") => Method::HEAD,
        _ => return RawParsed::Handoff,
    };
    let version = match req.version {
        Some(0) => Version::HTTP_10,
        Some(1) => Version::HTTP_11,
        _ => return RawParsed::Handoff,
    };
    let Some(target) = req.path else {
        return RawParsed::Handoff;
    };
    let headers: &'h [httparse::Header<'b>] = req.headers;
    if needs_full_server(headers) {
        return RawParsed::Handoff;
    }
    let keep_alive = wants_keep_alive(version, values(headers, "connection"));
    RawParsed::Simple(RawRequest {
        method,
        target,
        version,
        headers,
        head_len,
        keep_alive,
    })
}

impl RawRequest<'_, '_> {
    /// The values of the header `name` (lowercase), in order.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        values(self.headers, name)
    }

    /// The request as an `http::Request<()>`; `None` when its target is no
    /// valid URI (the full server answers that).
    pub fn into_simple(self) -> Option<SimpleRequest> {
        let uri = self.target.parse::<Uri>().ok()?;
        let mut headers = HeaderMap::with_capacity(self.headers.len());
        for h in self.headers {
            let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
            let value = HeaderValue::from_bytes(h.value).ok()?;
            headers.append(name, value);
        }
        let mut request = Request::new(());
        *request.method_mut() = self.method;
        *request.uri_mut() = uri;
        *request.version_mut() = self.version;
        *request.headers_mut() = headers;
        Some(SimpleRequest {
            request,
            head_len: self.head_len,
            keep_alive: self.keep_alive,
        })
    }
}

/// The values of the header `name` (lowercase) among `headers`.
fn values<'a>(
    headers: &'a [httparse::Header<'_>],
    name: &'a str,
) -> impl Iterator<Item = &'a [u8]> + 'a {
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

/// A body (`Transfer-Encoding`, or a `Content-Length` other than one `0`),
/// a protocol switch (`Upgrade`, `Connection: upgrade`) or `Expect`.
fn needs_full_server(headers: &[httparse::Header<'_>]) -> bool {
    let has = |name| values(headers, name).next().is_some();
    if has("transfer-encoding")
        || has("upgrade")
        || has("expect")
        || super::tokens_have(values(headers, "connection"), "upgrade")
    {
        return true;
    }
    let mut lengths = values(headers, "content-length");
    match (lengths.next(), lengths.next()) {
        (None, _) => false,
        (Some(v), None) => v.trim_ascii() != b"0",
        (Some(_), Some(_)) => true,
    }
}

/// RFC 9112 §9.3: HTTP/1.1 stays open unless the client says `close`;
/// HTTP/1.0 closes unless it says `keep-alive`. `connection` is the values
/// of the request's `Connection` headers.
pub fn wants_keep_alive<'a>(version: Version, connection: impl Iterator<Item = &'a [u8]>) -> bool {
    if version == Version::HTTP_11 {
        !super::tokens_have(connection, "close")
    } else {
        super::tokens_have(connection, "keep-alive")
    }
}

/// Whether `buf[from..]` ends a head: an empty line (`\n\n` or `\n\r\n`,
/// RFC 9112 §2.2 lets a recipient take a bare LF as a line end). Searching
/// only the new bytes (and the 2 before them) keeps a head that arrives a
/// byte at a time linear to scan.
pub fn head_end_in(buf: &[u8], from: usize) -> bool {
    let start = from.saturating_sub(2).min(buf.len());
    let tail = buf.get(start..).unwrap_or_default();
    tail.iter().enumerate().any(|(i, &b)| {
        b == b'\n' && matches!(tail.get(i + 1..), Some([b'\n', ..] | [b'\r', b'\n', ..]))
    })
}

/// Whether `buf` (the bytes of a head so far) may still become a request:
/// what does not start like one is handed to the full server at once,
/// which refuses it, instead of waiting for a line end.
pub fn could_be_request(buf: &[u8]) -> bool {
    // RFC 9112 §2.2: empty lines before the request line are skipped; the
    // method is a token (RFC 9110 §5.6.2), ended by a space.
    let start = buf
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n'))
        .unwrap_or(buf.len());
    let rest = buf.get(start..).unwrap_or_default();
    rest.iter()
        .take_while(|&&b| b != b' ')
        .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether `buf[from..]` holds a line end: the request line is complete,
/// so a malformed one can be told at once.
pub fn line_end_in(buf: &[u8], from: usize) -> bool {
    buf.get(from..).unwrap_or_default().contains(&b'\n')
}

#[cfg(test)]
mod tests {
    #[test]
    fn what_cannot_start_a_request_is_told_from_the_first_bytes() {
        for ok in [
            &b""[..],
            b"G",
            b"GET",
            b"GET /x",
            b"\r\nGET /",
            b"M-SEARCH * HTTP/1.1",
            b"PRI * HTTP/2.0",
        ] {
            assert!(could_be_request(ok), "{:?}", String::from_utf8_lossy(ok));
        }
        for bad in [
            &b"\x16\x03\x01\x02\x00"[..],
            b"GE\x00T",
            b"{\"json\"",
            b"\r\n\x80",
        ] {
            assert!(!could_be_request(bad), "{bad:?}");
        }
    }

    use super::*;

    fn simple(buf: &[u8]) -> SimpleRequest {
        let mut slots = header_slots();
        match parse_raw(buf, &mut slots) {
            RawParsed::Simple(raw) => raw.into_simple().expect("a valid URI"),
            other => panic!("not simple: {other:?}"),
        }
    }

    fn is_handoff(buf: &[u8]) -> bool {
        let mut slots = header_slots();
        match parse_raw(buf, &mut slots) {
            RawParsed::Handoff => true,
            RawParsed::Simple(raw) => raw.into_simple().is_none(),
            RawParsed::Partial => false,
        }
    }

    #[test]
    fn parses_a_get_into_a_request() {
        let head = b"GET /live/cam/seg_3.m4s?_HLS_msn=4 HTTP/1.1\r\nHost: a\r\nCookie: x=1\r\nCookie: y=2\r\n\r\n";
        let mut buf = head.to_vec();
        buf.extend_from_slice(b"GET /next HTTP/1.1\r\n");
        let s = simple(&buf);
        assert_eq!(
            s.head_len,
            head.len(),
            "the pipelined request is not part of it"
        );
        assert!(s.keep_alive);
        let r = &s.request;
        assert_eq!(r.method(), Method::GET);
        assert_eq!(r.version(), Version::HTTP_11);
        assert_eq!(r.uri().path(), "/live/cam/seg_3.m4s");
        assert_eq!(r.uri().query(), Some("_HLS_msn=4"));
        assert_eq!(r.headers()["host"], "a");
        let cookies: Vec<_> = r.headers().get_all("cookie").iter().collect();
        assert_eq!(cookies, ["x=1", "y=2"]);
    }

    #[test]
    fn head_and_http_1_0_and_absolute_form() {
        let s = simple(b"\r\nHEAD http://h/x/index.m3u8 HTTP/1.0\n\n");
        assert_eq!(s.request.method(), Method::HEAD);
        assert_eq!(s.request.version(), Version::HTTP_10);
        assert_eq!(s.request.uri().path(), "/x/index.m3u8");
        assert!(!s.keep_alive, "HTTP/1.0 closes by default");
        let s = simple(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        assert!(s.keep_alive);
        let s = simple(b"GET / HTTP/1.1\r\nConnection: foo, CLOSE\r\n\r\n");
        assert!(!s.keep_alive);
        let s = simple(b"GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        assert!(s.keep_alive, "an empty body is no body");
    }

    #[test]
    fn incomplete_heads_are_partial() {
        let full = b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n";
        for n in 0..full.len() {
            assert!(
                matches!(
                    parse_raw(&full[..n], &mut header_slots()),
                    RawParsed::Partial
                ),
                "{n} bytes"
            );
        }
    }

    #[test]
    fn everything_else_goes_to_the_full_server() {
        assert!(is_handoff(
            b"POST /a/whep HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
        ));
        assert!(is_handoff(b"OPTIONS * HTTP/1.1\r\n\r\n"));
        assert!(is_handoff(b"DELETE /a/whep/1 HTTP/1.1\r\n\r\n"));
        assert!(is_handoff(
            b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
        ));
        assert!(is_handoff(
            b"GET / HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n"
        ));
        assert!(is_handoff(
            b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
        assert!(is_handoff(
            b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        ));
        assert!(is_handoff(b"GET / HTTP/1.1\r\nConnection: upgrade\r\n\r\n"));
        assert!(is_handoff(
            b"GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n"
        ));
        // HTTP/2 with prior knowledge (RFC 9113 §3.4): known at its first line.
        assert!(is_handoff(b"PRI * HTTP/2.0\r\n"));
        assert!(is_handoff(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
        assert!(is_handoff(
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n"
        ));
        assert!(is_handoff(b"GET /a b HTTP/1.1\r\n\r\n"));
        assert!(is_handoff(b"GET / HTTP/1.1\r\nbad header\r\n\r\n"));
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("x-{i}: 1\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert!(is_handoff(&many));
    }

    #[test]
    fn finds_the_end_of_a_head_in_new_bytes_only() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        // Fed a byte at a time, the end shows only once the last byte is in.
        for n in 1..head.len() {
            assert!(!head_end_in(&head[..n], n - 1), "{n}");
        }
        assert!(head_end_in(head, head.len() - 1));
        assert!(head_end_in(b"GET / HTTP/1.0\n\n", 15));
        assert!(!head_end_in(b"GET / HTTP/1.1\r\nA: b\r\n", 0));
        assert!(line_end_in(b"GET / HTTP/1.1\r\n", 10));
        assert!(!line_end_in(b"GET / HTTP/1.1\r", 0));
        assert!(!head_end_in(b"", 5), "a position past the end is no panic");
    }
}
