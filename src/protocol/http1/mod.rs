//! The simple half of HTTP/1.1 (RFC 9112): enough to answer `GET` and
//! `HEAD` requests without a body on a keep-alive connection, and to tell
//! every other request apart so a full HTTP server can take the connection
//! over.
//!
//! - [`request`]: a request head (RFC 9112 §2–§5) parsed with `httparse`
//!   into an `http::Request<()>`, or the verdict that the request needs the
//!   full server ([`Parsed::Handoff`]); where a head ends
//!   ([`request::head_end_in`]).
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

pub use request::{Parsed, SimpleRequest, parse_request};
pub use response::{Framing, ResponsePlan, encode_head, plan_response};

/// Whether a `Connection` header list (RFC 9110 §7.6.1) names `token`,
/// case-insensitively.
pub fn connection_has(headers: &http::HeaderMap, token: &str) -> bool {
    headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}
