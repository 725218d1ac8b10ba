//! The public HTTP listener: HLS below `/{path}/`. Path names contain
//! slashes, so one handler takes the whole URL and splits off the file name.

use std::sync::Arc;

use axum::Router;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower_http::cors::{Any, CorsLayer};

use crate::config::validate_path_name;
use crate::egress::hls::viewers::{Admitted, Caller, Refusal};
use crate::egress::hls::{HlsAnswer, HlsFile, HlsServer};
use crate::egress::webrtc::{MAX_OFFER, WhepServer};
use crate::ingest::whip::WhipServer;

pub struct HttpState {
    pub hls: Arc<HlsServer>,
    pub whep: Arc<WhepServer>,
    pub whip: Arc<WhipServer>,
    pub requests: Arc<crate::metrics::RequestCounter>,
    pub gate: Arc<crate::gate::Gate>,
}

/// The response headers browsers let players on other origins read (CORS).
pub(crate) const EXPOSED_HEADERS: [HeaderName; 5] = [
    header::LOCATION,
    header::ETAG,
    header::LINK,
    header::CONTENT_LENGTH,
    HeaderName::from_static(B_FRAMES_HEADER),
];

/// The router of the public HTTP listener.
pub fn router(state: Arc<HttpState>) -> Router {
    // Browser players on any origin may read everything here, and (for WHEP
    // and WHIP later) see the session headers.
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers(Any)
        .expose_headers(EXPOSED_HEADERS);
    let counting = state.requests.listener("http");
    let gate = Arc::clone(&state.gate);
    Router::new()
        .fallback(handle)
        .layer(axum::middleware::from_fn_with_state(
            gate,
            crate::gate::guard_http,
        ))
        .layer(cors)
        .layer(axum::middleware::from_fn_with_state(
            counting,
            crate::metrics::count_requests,
        ))
        .with_state(state)
}

fn not_found(message: String) -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({ "error": message })),
    )
        .into_response()
}

/// Set on a WHEP answer when the video has B-frames: the embedded player
/// then prefers LL-HLS (browsers' WebRTC stacks drop reordered frames).
pub const B_FRAMES_HEADER: &str = "x-mediarelay-video-reordering";

fn json_error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "error": message.into() })),
    )
        .into_response()
}

/// Where a request's URL path leads (the query aside).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Route<'a> {
    /// No slash after the leading ones: nothing is served there.
    Nowhere(&'a str),
    /// `/{path}/whep/{id}`: a WHEP session resource.
    WhepResource { path: &'a str, id: &'a str },
    /// `/{path}/whip/{id}`: a WHIP session resource.
    WhipResource { path: &'a str, id: &'a str },
    /// `/{path}/{file}`: `file` may be empty, `path` is not checked yet.
    File { path: &'a str, file: &'a str },
}

impl<'a> Route<'a> {
    pub(crate) fn of(uri_path: &'a str) -> Route<'a> {
        let uri_path = uri_path.trim_start_matches('/');
        let Some((path, file)) = uri_path.rsplit_once('/') else {
            return Route::Nowhere(uri_path);
        };
        if let Some(path) = path.strip_suffix("/whep") {
            return Route::WhepResource { path, id: file };
        }
        if let Some(path) = path.strip_suffix("/whip") {
            return Route::WhipResource { path, id: file };
        }
        Route::File { path, file }
    }

    /// The HLS file below a valid path name this route is, if it is one.
    pub(crate) fn hls_file(&self) -> Option<(&'a str, HlsFile)> {
        match *self {
            Route::File { path, file } if validate_path_name(path).is_ok() => {
                HlsFile::parse(file).map(|f| (path, f))
            }
            _ => None,
        }
    }
}

async fn handle(
    State(state): State<Arc<HttpState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let uri_path = req.uri().path().to_string();
    let (path, file) = match Route::of(&uri_path) {
        Route::Nowhere(rest) => {
            return not_found(format!("nothing at /{rest}: try /{{path}}/index.m3u8"));
        }
        Route::WhepResource { path, id } => return whep_resource(&state, req, path, id).await,
        Route::WhipResource { path, id } => {
            return match req.method().clone() {
                Method::DELETE => match state.whip.delete(path, id) {
                    Ok(()) => StatusCode::OK.into_response(),
                    Err(e) => json_error(
                        StatusCode::from_u16(e.status()).unwrap_or(StatusCode::NOT_FOUND),
                        e.to_string(),
                    ),
                },
                // Trickled candidates need nothing from an ICE-lite server.
                Method::PATCH => StatusCode::NO_CONTENT.into_response(),
                m => json_error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    format!("{m} is not served on a WHIP session"),
                ),
            };
        }
        Route::File { path, file } => (path, file),
    };
    if let Err(e) = validate_path_name(path) {
        return json_error(
            StatusCode::BAD_REQUEST,
            format!("invalid path name {path:?}: {e}"),
        );
    }
    match (req.method().clone(), file) {
        (Method::POST, "whep") => whep_create(&state, req, path, peer).await,
        (Method::POST, "whip") => whip_create(&state, req, path, peer).await,
        (Method::GET | Method::HEAD, "") => static_reply(
            "text/html; charset=utf-8",
            crate::web::PLAYER_HTML.as_bytes(),
        ),
        (Method::GET | Method::HEAD, "hls.min.js") => {
            static_reply("text/javascript; charset=utf-8", crate::web::HLS_JS)
        }
        (Method::GET | Method::HEAD, "hls_watchdog.js") => static_reply(
            "text/javascript; charset=utf-8",
            crate::web::HLS_WATCHDOG_JS.as_bytes(),
        ),
        (Method::GET | Method::HEAD, _) => match HlsFile::parse(file) {
            Some(f) => {
                let canonical = crate::net::canonical_peer(peer);
                let caller =
                    Caller::new(path, req.headers(), req.uri().query(), Some(canonical.ip()));
                let query = req.uri().query().map(str::to_string);
                // A viewer that presents the id of a session that was
                // authorized is not asked again (segment and part requests
                // carry the cookie, not the token).
                if !state.gate.is_open() && !state.hls.viewers.is_authorized(&caller) {
                    let credentials = crate::gate::credentials_of(&req);
                    if let Err(r) = authorize(
                        &state,
                        credentials,
                        crate::auth::Action::Read,
                        path,
                        "hls",
                        peer,
                        query.as_deref().unwrap_or(""),
                    )
                    .await
                    {
                        return r;
                    }
                }
                drop(req);
                hls(&state, caller, f, query.as_deref())
                    .await
                    .into_response()
            }
            None => not_found(format!("no {file:?} below path {path:?}")),
        },
        (m, _) => json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{m} is not served here"),
        ),
    }
}

/// Authorizes `action` on `path` for an HTTP client; the refusal as an
/// answer (401 with `WWW-Authenticate`, 403, 503).
async fn authorize(
    state: &HttpState,
    credentials: Result<crate::auth::Credentials, crate::auth::AuthError>,
    action: crate::auth::Action,
    path: &str,
    protocol: &str,
    peer: SocketAddr,
    query: &str,
) -> Result<(), Response> {
    let credentials = credentials.map_err(|e| crate::gate::auth_error_response(&e))?;
    let peer = crate::net::canonical_peer(peer);
    state
        .gate
        .authorize_path(
            &state.hls.hub().config(),
            action,
            path,
            protocol,
            &credentials,
            Some(peer.ip()),
            query,
            None,
        )
        .await
        .map(|_| ())
        .map_err(|e| {
            tracing::info!(path, protocol, %peer, "{action} refused: {e}");
            crate::gate::auth_error_response(&e)
        })
}

/// An HLS request, counted for its viewer's session (see
/// [`crate::egress::hls::viewers`]): what both HTTP paths answer it with.
pub(crate) async fn hls(
    state: &HttpState,
    caller: Caller<'_>,
    file: HlsFile,
    query: Option<&str>,
) -> HlsAnswer {
    let admitted = match state.hls.viewers.enter(&caller) {
        Ok(admitted) => admitted,
        Err(Refusal::Kicked) => {
            return HlsAnswer::error(
                StatusCode::FORBIDDEN,
                "this HLS session was ended by the server",
            );
        }
        Err(Refusal::Full(e)) => {
            return HlsAnswer::error(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
        }
    };
    let mut answer = state.hls.serve(caller.path(), file, query).await;
    if answer.status.is_success() {
        record(state, admitted, &caller, &mut answer);
    }
    answer
}

/// [`hls`]'s answer when it is a success given at once (see
/// [`crate::egress::hls::HlsServer::serve_now`]); `None` leaves the
/// request to `hls`, nothing recorded for it. No future, no wait: what
/// the plain listener answers while it handles the request's read.
pub(crate) fn hls_now(
    state: &HttpState,
    caller: &Caller<'_>,
    file: HlsFile,
    query: Option<&str>,
) -> Option<HlsAnswer> {
    // A refusal is `hls`'s to answer (`enter` changes nothing that a
    // second call would see differently).
    let admitted = state.hls.viewers.enter(caller).ok()?;
    let mut answer = state.hls.serve_now(caller.path(), file, query)?;
    record(state, admitted, caller, &mut answer);
    Some(answer)
}

/// Records a served answer on its viewer (started if new): its bytes, and
/// the cookie to set.
fn record(state: &HttpState, admitted: Admitted, caller: &Caller<'_>, answer: &mut HlsAnswer) {
    let served = admitted.served(&state.hls.viewers, caller);
    // The path's count is the muxer's (HlsServer::serve).
    served
        .session
        .counters
        .bytes_out
        .fetch_add(answer.body.len(), std::sync::atomic::Ordering::Relaxed);
    if let Some(cookie) = served.set_cookie {
        answer.set_cookie = HeaderValue::from_str(&cookie).ok();
    }
}

fn static_reply(content_type: &'static str, body: &'static [u8]) -> Response {
    let mut r = Response::new(axum::body::Body::from(body));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    r
}

/// `POST /{path}/whep`: an SDP offer in, `201 Created` with the answer and
/// the session's `Location` out.
async fn whep_create(state: &HttpState, req: Request, path: &str, peer: SocketAddr) -> Response {
    let query = req.uri().query().unwrap_or_default().to_string();
    let credentials = crate::gate::credentials_of(&req);
    if let Err(r) = authorize(
        state,
        credentials,
        crate::auth::Action::Read,
        path,
        "webrtc",
        peer,
        &query,
    )
    .await
    {
        return r;
    }
    let offer = match read_offer(req, state.gate.limits().max_body_bytes).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let offer = offer.as_str();
    let remote = Some(crate::net::canonical_peer(peer));
    match state.whep.create(path, offer, remote, query).await {
        Ok(created) => {
            let mut r = Response::new(axum::body::Body::from(created.answer));
            *r.status_mut() = StatusCode::CREATED;
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/sdp"),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("/{path}/whep/{}", created.id)) {
                h.insert(header::LOCATION, v);
            }
            if let Ok(v) = HeaderValue::from_str(&created.etag) {
                h.insert(header::ETAG, v);
            }
            if created.b_frames {
                h.insert(B_FRAMES_HEADER, HeaderValue::from_static("b-frames"));
            }
            r
        }
        Err(e) => {
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
            tracing::info!(path, error = %e, "WHEP offer refused");
            json_error(status, e.to_string())
        }
    }
}

/// The body of an SDP offer: `application/sdp`, at most [`MAX_OFFER`]
/// bytes or `limit` (`limits.max_body_bytes`), whichever is smaller.
async fn read_offer(req: Request, limit: usize) -> Result<String, Response> {
    let limit = limit.min(MAX_OFFER);
    let is_sdp = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/sdp"))
        });
    if !is_sdp {
        return Err(json_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the offer must be application/sdp",
        ));
    }
    let body = axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|_| {
            json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the offer is larger than {limit} bytes"),
            )
        })?;
    String::from_utf8(body.to_vec())
        .map_err(|_| json_error(StatusCode::BAD_REQUEST, "the offer is not UTF-8"))
}

/// `POST /{path}/whip`: publish from WebRTC (OBS's WHIP output).
async fn whip_create(state: &HttpState, req: Request, path: &str, peer: SocketAddr) -> Response {
    let query = req.uri().query().unwrap_or_default().to_string();
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let credentials = crate::gate::credentials_of(&req);
    if let Err(r) = authorize(
        state,
        credentials,
        crate::auth::Action::Publish,
        path,
        "webrtc",
        peer,
        &query,
    )
    .await
    {
        return r;
    }
    let remote = Some(crate::net::canonical_peer(peer));
    if let Err(e) = state
        .gate
        .allow_publish(path, crate::hub::Protocol::WebRtc, remote)
        .await
    {
        tracing::info!(path, "WHIP publish refused by on_publish: {e}");
        return json_error(StatusCode::FORBIDDEN, format!("publishing refused: {e}"));
    }
    let offer = match read_offer(req, state.gate.limits().max_body_bytes).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    match state.whip.create(path, &offer, remote, query, token).await {
        Ok(created) => {
            let mut r = Response::new(axum::body::Body::from(created.answer));
            *r.status_mut() = StatusCode::CREATED;
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/sdp"),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("/{path}/whip/{}", created.id)) {
                h.insert(header::LOCATION, v);
            }
            r
        }
        Err(e) => {
            tracing::info!(path, error = %e, "WHIP offer refused");
            json_error(
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
                e.to_string(),
            )
        }
    }
}

/// `DELETE` ends a WHEP session; `PATCH` takes trickled ICE candidates.
async fn whep_resource(state: &HttpState, req: Request, path: &str, id: &str) -> Response {
    match req.method().clone() {
        Method::DELETE => match state.whep.delete(path, id) {
            Ok(()) => StatusCode::OK.into_response(),
            Err(e) => json_error(
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::NOT_FOUND),
                e.to_string(),
            ),
        },
        Method::PATCH => {
            let is_frag = req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/trickle-ice-sdpfrag"));
            if !is_frag {
                return json_error(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "candidates must be application/trickle-ice-sdpfrag",
                );
            }
            let body = match axum::body::to_bytes(req.into_body(), MAX_OFFER).await {
                Ok(b) => b,
                Err(_) => return json_error(StatusCode::PAYLOAD_TOO_LARGE, "fragment too large"),
            };
            let fragment = String::from_utf8_lossy(&body);
            match state.whep.patch(path, id, &fragment) {
                Ok(etag) => {
                    let mut r = StatusCode::NO_CONTENT.into_response();
                    if let Ok(v) = HeaderValue::from_str(&etag) {
                        r.headers_mut().insert(header::ETAG, v);
                    }
                    r
                }
                Err(e) => json_error(
                    StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
                    e.to_string(),
                ),
            }
        }
        m => json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{m} is not served on a WHEP session"),
        ),
    }
}
