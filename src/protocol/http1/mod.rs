//! The simple half of HTTP/1.1 (RFC 9112): enough to answer `GET` and
//! `HEAD` requests without a body on a keep-alive connection, and to tell
//! every other request apart so a full HTTP server can take the connection
//! over.
//!
//! - [`request`]: a request head (RFC 9112 §2–§5) parsed with `httparse`
//!   into a borrowed [`RawRequest`] (and from it an `http::Request<()>`),
//!   or the verdict that the request needs the full server
//!   ([`RawParsed::Handoff`]); where a head ends ([`request::head_end_in`]).
//! - [`response`]: how a response is framed (RFC 9112 §6: `Content-Length`,
//!   `chunked`, or the end of the connection), whether the connection
//!   stays open (RFC 9112 §9.3), and the response head's bytes.
//! - [`date`]: the `Date` header's IMF-fixdate (RFC 9110 §5.6.7).
//!
//! Nothing here panics on peer input: the files deny `unwrap`, `expect`,
//! indexing and `panic!` outside tests.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

pub mod date;
pub mod request;
pub mod response;

pub use request::{RawParsed, RawRequest, SimpleRequest, parse_raw};
pub use response::{
    Framing, HandlerFraming, ResponsePlan, encode_head, encode_head_into, plan, plan_response,
};

/// Whether a `Connection` header list (RFC 9110 §7.6.1) names `token`,
/// case-insensitively.
pub fn connection_has(headers: &http::HeaderMap, token: &str) -> bool {
    tokens_have(
        headers
            .get_all(http::header::CONNECTION)
            .iter()
            .map(|v| v.as_bytes()),
        token,
    )
}

/// Whether comma-separated token lists (the values of one header) name
/// `token`, case-insensitively.
pub fn tokens_have<'a>(values: impl Iterator<Item = &'a [u8]>, token: &str) -> bool {
    values
        .flat_map(|v| v.split(|&b| b == b','))
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}
