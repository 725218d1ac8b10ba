//! The plain HTTP listener's shortcut for HLS file requests: a `GET` or
//! `HEAD` of a playlist, init segment, segment or part, from an address
//! the `http` IP rule admits, by a viewer who needs no authorization (the
//! gate is open, or the viewer's session was authorized), is answered
//! without building an `http::Request`, without the router, its
//! middleware and the CORS layer, and without an axum `Response`. What it
//! answers is what the router answers: the same HLS function
//! ([`super::http::hls`]), the same CORS headers, the same request count.
//! Every other request, including each one this module is unsure of, goes
//! to the router as before.
//!
//! Why: serving a part is a few microseconds of work; the router path
//! spent more than that in tower services, header maps and allocations
//! (BENCHMARKS.md, "Fourth session": 44 935 user-space instructions per
//! request before, 15 244 after).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{HeaderName, HeaderValue, header};

use super::h1::{Shortcut, ShortcutAnswer};
use super::http::{EXPOSED_HEADERS, HttpState, Route};
use crate::egress::hls::HlsFile;
use crate::egress::hls::viewers::Caller;
use crate::gate::Listener;
use crate::metrics::StatusCounts;
use crate::protocol::http1::RawRequest;

/// The HLS shortcut of one HTTP server.
pub struct HlsShortcut {
    state: Arc<HttpState>,
    /// The `http` listener's request counts (the router's middleware
    /// counts into the same).
    requests: Arc<StatusCounts>,
    /// The headers the router's CORS layer adds to every answer that is
    /// not a preflight (origin `*`, the exposed headers).
    cors: [(HeaderName, HeaderValue); 2],
}

impl HlsShortcut {
    pub fn new(state: Arc<HttpState>) -> HlsShortcut {
        let exposed = EXPOSED_HEADERS
            .iter()
            .map(HeaderName::as_str)
            .collect::<Vec<_>>()
            .join(",");
        let exposed =
            HeaderValue::from_str(&exposed).unwrap_or_else(|_| HeaderValue::from_static(""));
        HlsShortcut {
            requests: state.requests.listener("http"),
            state,
            cors: [
                (header::ACCESS_CONTROL_EXPOSE_HEADERS, exposed),
                (
                    header::ACCESS_CONTROL_ALLOW_ORIGIN,
                    HeaderValue::from_static("*"),
                ),
            ],
        }
    }
}

impl Shortcut for HlsShortcut {
    fn take(&self, request: &RawRequest<'_, '_>, peer: SocketAddr) -> Option<ShortcutAnswer> {
        let (path, file, query) = hls_target(request.target)?;
        let ip = crate::net::canonical_peer(peer).ip();
        let state = &self.state;
        // Refusals (the IP rule) and authorization are the router's.
        if !state.gate.permits(Listener::Http, ip) {
            return None;
        }
        let caller = Caller::from_header_values(
            path,
            request.header_values("cookie"),
            request.header_values("user-agent").next(),
            query,
            Some(ip),
        );
        if !state.gate.is_open() && !state.hls.viewers.is_authorized(&caller) {
            return None;
        }
        // Most requests (a part, a segment, a playlist without a blocking
        // directive) are answered here and now.
        if let Some(answer) = super::http::hls_now(state, &caller, file, query) {
            self.requests.add(answer.status.as_u16());
            return Some(ShortcutAnswer::Now(answer));
        }
        let state = Arc::clone(state);
        let requests = Arc::clone(&self.requests);
        let caller = caller.into_owned();
        let query = query.map(str::to_owned);
        Some(ShortcutAnswer::Later(Box::pin(async move {
            let answer = super::http::hls(&state, caller, file, query.as_deref()).await;
            requests.add(answer.status.as_u16());
            answer
        })))
    }

    fn common_headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.cors
    }
}

/// The path name, HLS file and query a request target names, if the
/// shortcut may take it (see [`origin_form`] and [`Route::hls_file`]).
pub fn hls_target(target: &str) -> Option<(&str, HlsFile, Option<&str>)> {
    let (uri_path, query) = origin_form(target)?;
    let (path, file) = Route::of(uri_path).hls_file()?;
    Some((path, file, query))
}

/// The path and query of an origin-form target (RFC 9112 §3.2.1) whose
/// query holds only bytes `http::Uri` takes as they are: a target the
/// router's URI parse might see differently (absolute form, a fragment,
/// bytes to percent-encode) is the router's. The path's bytes need no
/// check here: a path name and an HLS file name hold none of those.
fn origin_form(target: &str) -> Option<(&str, Option<&str>)> {
    if !target.starts_with('/') {
        return None;
    }
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    let plain = |b: u8| matches!(b, 0x21 | 0x24..=0x3B | 0x3D | 0x3F..=0x7E);
    if query.is_some_and(|q| !q.bytes().all(plain)) {
        return None;
    }
    Some((path, query))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_origin_form_targets_are_taken() {
        assert_eq!(
            origin_form("/live/cam/part_3_1.m4s"),
            Some(("/live/cam/part_3_1.m4s", None))
        );
        assert_eq!(
            origin_form("/a/index.m3u8?_HLS_msn=4&_HLS_part=1"),
            Some(("/a/index.m3u8", Some("_HLS_msn=4&_HLS_part=1")))
        );
        assert_eq!(
            origin_form("/a/index.m3u8?"),
            Some(("/a/index.m3u8", Some("")))
        );
        for other in [
            "http://h/a/index.m3u8",
            "*",
            "/a/index.m3u8?x=1#f",
            "/a/index.m3u8?x=\"1\"",
            "/a/index.m3u8?x=<1>",
            "/a/index.m3u8?x=\u{e9}",
        ] {
            assert_eq!(origin_form(other), None, "{other}");
        }
    }

    #[test]
    fn every_query_taken_is_one_the_router_parses_alike() {
        for b in 0x21u8..0x7f {
            let target = format!("/a/index.m3u8?k={}", b as char);
            if let Some((_, query)) = origin_form(&target) {
                let uri: axum::http::Uri = target.parse().expect("a URI");
                assert_eq!(uri.query(), query, "{target}");
            }
        }
    }

    #[test]
    fn only_hls_files_below_valid_paths_are_routes_of_the_shortcut() {
        let hls = |p| Route::of(p).hls_file();
        assert_eq!(
            hls("/live/cam/seg_3.m4s"),
            Some(("live/cam", HlsFile::Segment(3)))
        );
        assert_eq!(hls("//a/index.m3u8"), Some(("a", HlsFile::Playlist)));
        assert_eq!(
            hls_target("/a/b/part_1_2.m4s?_HLS_skip=YES"),
            Some(("a/b", HlsFile::Part(1, 2), Some("_HLS_skip=YES")))
        );
        for other in [
            "/index.m3u8",
            "/a/whep/index.m3u8",
            "/a/whip/seg_1.m4s",
            "/a/../seg_1.m4s",
            "/a//seg_1.m4s",
            "/a/hls.min.js",
            "/a/",
            "/a/seg_1.m4s/",
        ] {
            assert_eq!(hls(other), None, "{other}");
        }
    }
}
