//! axum middleware for the HTTP listeners: per-client request rates
//! (429 Too Many Requests with `Retry-After`, RFC 6585 §4 and RFC 9110
//! §10.2.3) and IP allow/deny lists (403).
//!
//! Use with `axum::middleware::from_fn_with_state`:
//!
//! ```ignore
//! let router = api::router(state)
//!     .layer(from_fn_with_state(Arc::clone(&limits_api), limit_requests))
//!     .layer(from_fn_with_state(Arc::new(ip_rules.api.clone()), filter_ips))
//!     .layer(axum::extract::DefaultBodyLimit::max(limits.max_body_bytes));
//! ```
//!
//! The peer address comes from `ConnectInfo<SocketAddr>`: the router must be
//! served with `into_make_service_with_connect_info::<SocketAddr>()` (or by
//! [`crate::tls::serve_tls`], which adds it). A request without it is
//! answered 500, so a wiring mistake shows at once.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{IpRule, RateLimiter};

/// Limits every request by the client's rate.
pub async fn limit_requests(
    State(limiter): State<Arc<RateLimiter>>,
    req: Request,
    next: Next,
) -> Response {
    limit(&limiter, req, next).await
}

/// Limits `POST` requests only (new WHEP/WHIP sessions); `PATCH` (trickle
/// ICE), `DELETE` and `OPTIONS` pass.
pub async fn limit_posts(
    State(limiter): State<Arc<RateLimiter>>,
    req: Request,
    next: Next,
) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    limit(&limiter, req, next).await
}

/// Answers 403 to clients the rule does not permit.
pub async fn filter_ips(State(rule): State<Arc<IpRule>>, req: Request, next: Next) -> Response {
    if rule.is_open() {
        return next.run(req).await;
    }
    let Some(ip) = peer_ip(&req) else {
        return no_peer_address();
    };
    if !rule.permits(ip) {
        tracing::debug!(%ip, "HTTP request refused by IP rule");
        return error(StatusCode::FORBIDDEN, "your address is not allowed here");
    }
    next.run(req).await
}

async fn limit(limiter: &RateLimiter, req: Request, next: Next) -> Response {
    if !limiter.is_on() {
        return next.run(req).await;
    }
    let Some(ip) = peer_ip(&req) else {
        return no_peer_address();
    };
    match limiter.check(ip) {
        Ok(()) => next.run(req).await,
        Err(retry_after) => {
            tracing::debug!(%ip, ?retry_after, "HTTP request rate limited");
            too_many_requests(retry_after)
        }
    }
}

/// The client's address (IPv4-mapped IPv6 shown as IPv4), if the server
/// provided it.
pub fn peer_ip(req: &Request) -> Option<IpAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| a.ip().to_canonical())
}

/// `Retry-After` in whole seconds: rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

/// 429 with `Retry-After` and a JSON error body.
pub fn too_many_requests(retry_after: Duration) -> Response {
    let secs = retry_after_secs(retry_after);
    let mut resp = error(
        StatusCode::TOO_MANY_REQUESTS,
        &format!("too many requests; retry in {secs} s"),
    );
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    resp
}

fn no_peer_address() -> Response {
    tracing::error!("HTTP limits need the peer address: serve with connect info");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the server does not know the client address",
    )
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::middleware::from_fn_with_state;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1000)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(7)), 7);
    }

    /// One HTTP/1.1 request on a new connection; returns the status, the
    /// header block and the body.
    async fn request(addr: SocketAddr, method: &str, path: &str) -> (u16, String, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).await.unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let status = head[9..12].parse().unwrap();
        (status, head.to_ascii_lowercase(), body.to_string())
    }

    async fn serve(router: Router) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .unwrap();
        });
        addr
    }

    #[tokio::test]
    async fn rate_limited_requests_get_429_with_retry_after_then_pass_again() {
        // 2 per second, burst 4.
        let limiter = Arc::new(RateLimiter::per_second(2));
        let router = Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(from_fn_with_state(limiter, limit_requests));
        let addr = serve(router).await;
        for i in 0..4 {
            assert_eq!(request(addr, "GET", "/").await.0, 200, "request {i}");
        }
        let (status, head, body) = request(addr, "GET", "/").await;
        assert_eq!(status, 429);
        assert!(head.contains("retry-after: 1\r\n"), "{head}");
        assert!(head.contains("content-type: application/json"), "{head}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(
            json["error"].as_str().unwrap().contains("too many"),
            "{body}"
        );
        // One token comes back every 500 ms.
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(request(addr, "GET", "/").await.0, 200);
        assert_eq!(request(addr, "GET", "/").await.0, 429);
    }

    #[tokio::test]
    async fn post_limit_spares_other_methods() {
        let limiter = Arc::new(RateLimiter::per_second(1));
        let router = Router::new()
            .route("/whep", get(|| async { "get" }).post(|| async { "post" }))
            .layer(from_fn_with_state(limiter, limit_posts));
        let addr = serve(router).await;
        assert_eq!(request(addr, "POST", "/whep").await.0, 200);
        assert_eq!(request(addr, "POST", "/whep").await.0, 200);
        assert_eq!(request(addr, "POST", "/whep").await.0, 429);
        for _ in 0..5 {
            assert_eq!(request(addr, "GET", "/whep").await.0, 200);
        }
    }

    #[tokio::test]
    async fn ip_filter_answers_403_and_lets_allowed_in() {
        let deny_local = Arc::new(IpRule {
            allow: vec![],
            deny: vec!["127.0.0.0/8".parse().unwrap()],
        });
        let router = Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(from_fn_with_state(deny_local, filter_ips));
        let addr = serve(router).await;
        let (status, _, body) = request(addr, "GET", "/").await;
        assert_eq!(status, 403);
        assert!(body.contains("\"error\""), "{body}");

        let allow_local = Arc::new(IpRule {
            allow: vec!["127.0.0.1".parse().unwrap()],
            deny: vec![],
        });
        let router = Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(from_fn_with_state(allow_local, filter_ips));
        let addr = serve(router).await;
        assert_eq!(request(addr, "GET", "/").await.0, 200);
    }

    #[tokio::test]
    async fn missing_connect_info_is_a_500_not_a_pass() {
        let limiter = Arc::new(RateLimiter::per_second(1));
        let router = Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(from_fn_with_state(limiter, limit_requests));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        assert_eq!(request(addr, "GET", "/").await.0, 500);
    }
}
