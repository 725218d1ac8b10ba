//! The control API (JSON under `/v1`, plus `/healthz` and `/readyz`), served
//! on its own listener, loopback by default. Its OpenAPI document is served
//! at `/v1/openapi.json` ([`openapi`]).

mod config;
pub mod openapi;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::hub::{Hub, Protocol, Role, Session};

pub struct ApiState {
    pub hub: Hub,
    /// Requests answered by the HTTP and API listeners, for `/metrics`.
    pub requests: Arc<crate::metrics::RequestCounter>,
    /// Admission and authorization (the API's own guard), and webhooks.
    pub gate: Arc<crate::gate::Gate>,
    /// Ends long-lived answers (the SSE stream) at shutdown.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Set once every listener is bound and the config is loaded.
    pub ready: AtomicBool,
    pub started: SystemTime,
    /// Bound listeners by config key (`rtmp_listen` → `0.0.0.0:1935`), for
    /// `GET /v1/info`.
    pub listeners: std::collections::BTreeMap<&'static str, String>,
}

/// Declares the routes served with [`ApiState`] once: the list
/// ([`STATE_ROUTES`]) and the router built from it ([`state_routes`]).
macro_rules! api_routes {
    ($($method:ident $path:literal => $handler:path),* $(,)?) => {
        /// Method and axum path of every route served with [`ApiState`].
        const STATE_ROUTES: &[(&str, &str)] = &[$((stringify!($method), $path)),*];

        /// A router with every route of [`STATE_ROUTES`].
        fn state_routes() -> Router<Arc<ApiState>> {
            Router::new()
                $(.route($path, on(MethodFilter::$method, $handler)))*
        }
    };
}

api_routes! {
    GET "/healthz" => healthz,
    GET "/metrics" => metrics,
    GET "/readyz" => readyz,
    GET "/v1/info" => info,
    GET "/v1/paths" => list_paths,
    GET "/v1/paths/{*name}" => get_path,
    GET "/v1/sessions" => list_sessions,
    GET "/v1/sessions/{id}" => get_session,
    POST "/v1/sessions/{id}/kick" => kick_session,
    GET "/v1/config" => config::get_config,
    PATCH "/v1/config" => config::patch_config,
    GET "/v1/config/paths/{*name}" => config::get_rule,
    PUT "/v1/config/paths/{*name}" => config::put_rule,
    PATCH "/v1/config/paths/{*name}" => config::patch_rule,
    DELETE "/v1/config/paths/{*name}" => config::delete_rule,
    GET "/v1/webhooks" => webhooks,
    GET "/v1/openapi.json" => openapi::openapi_json,
}

/// Every route of the API listener as (method, axum path): the routes
/// served with [`ApiState`] and the SSE route merged from
/// [`crate::events::sse`]. `{*name}` takes the rest of the URL. The OpenAPI
/// document covers exactly these (see [`openapi::doc_path`]).
pub fn routes() -> Vec<(&'static str, &'static str)> {
    let mut all = STATE_ROUTES.to_vec();
    all.push(("GET", crate::events::sse::PATH));
    all
}

/// The API router: the routes of [`routes`] behind the API middleware
/// (IP rules, rate limit, authentication), the body limit and the request
/// counter.
pub fn router(state: Arc<ApiState>) -> Router {
    let counting = state.requests.listener("api");
    state_routes()
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such API route") })
        .method_not_allowed_fallback(|| async {
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this route",
            )
        })
        .with_state(Arc::clone(&state))
        .merge(crate::events::sse::router(
            state.hub.events().clone(),
            state.shutdown.clone(),
        ))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state.gate),
            crate::gate::guard_api,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(
            state.gate.limits().max_body_bytes,
        ))
        .layer(axum::middleware::from_fn_with_state(
            counting,
            crate::metrics::count_requests,
        ))
}

/// The webhook endpoints (`GET /v1/webhooks`).
#[derive(Serialize, ToSchema)]
struct WebhookList {
    items: Vec<crate::events::webhook::WebhookStats>,
}

/// Delivery counters and breaker state of every webhook endpoint.
#[utoipa::path(
    get,
    path = "/v1/webhooks",
    tag = "events",
    responses((status = 200, description = "Every configured endpoint, in config order.", body = WebhookList))
)]
async fn webhooks(State(s): State<Arc<ApiState>>) -> Response {
    let items = s.gate.webhooks().map(|w| w.snapshot()).unwrap_or_default();
    axum::Json(WebhookList { items }).into_response()
}

/// Prometheus metrics (text exposition format 0.0.4).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "metrics",
    responses((status = 200, description = "Metrics in the Prometheus text format.", content_type = "text/plain; version=0.0.4; charset=utf-8", body = String))
)]
async fn metrics(State(s): State<Arc<ApiState>>) -> Response {
    let text = crate::metrics::render(&crate::metrics::Sources {
        hub: &s.hub,
        started: s.started,
        requests: &s.requests,
        extra: s
            .gate
            .webhooks()
            .map(|w| crate::metrics::webhook_families(&w.snapshot()))
            .into_iter()
            .collect(),
    });
    (
        [(
            axum::http::header::CONTENT_TYPE,
            crate::metrics::CONTENT_TYPE,
        )],
        text,
    )
        .into_response()
}

/// An error reply: `{"error": "..."}`.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    ApiError(status, message.into()).into_response()
}

/// A request that cannot be answered: a status and the reason.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(openapi::ErrorBody { error: self.1 })).into_response()
    }
}

/// `{"status": "ok"}` / `{"status": "ready"}`.
#[derive(Serialize, ToSchema)]
struct Health {
    #[schema(example = "ok")]
    status: &'static str,
}

/// What `GET /v1/info` answers.
#[derive(Serialize, ToSchema)]
struct ServerInfo {
    /// The crate version.
    #[schema(example = "0.1.0")]
    version: &'static str,
    /// When the server started (RFC 3339).
    #[serde(serialize_with = "crate::hub::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    started: SystemTime,
    uptime_seconds: u64,
    /// Bound listeners by config key, e.g. `"rtmp_listen": "[::]:1935"`;
    /// listeners that are off are left out.
    listeners: std::collections::BTreeMap<&'static str, String>,
}

/// Server information: version, uptime, listeners.
#[utoipa::path(
    get,
    path = "/v1/info",
    tag = "health",
    responses((status = 200, description = "Version, start time, uptime and bound listeners.", body = ServerInfo))
)]
async fn info(State(s): State<Arc<ApiState>>) -> Response {
    axum::Json(ServerInfo {
        version: env!("CARGO_PKG_VERSION"),
        started: s.started,
        uptime_seconds: s.started.elapsed().map(|d| d.as_secs()).unwrap_or(0),
        listeners: s.listeners.clone(),
    })
    .into_response()
}

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    responses((status = 200, description = "The server is up: `{\"status\": \"ok\"}`.", body = Health))
)]
async fn healthz() -> Response {
    axum::Json(Health { status: "ok" }).into_response()
}

/// Readiness: every listener is bound and the config is loaded.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    responses(
        (status = 200, description = "Ready: `{\"status\": \"ready\"}`.", body = Health),
        (status = 503, description = "Still starting.", body = openapi::ErrorBody),
    )
)]
async fn readyz(State(s): State<Arc<ApiState>>) -> Response {
    if s.ready.load(Ordering::Relaxed) {
        axum::Json(Health { status: "ready" }).into_response()
    } else {
        error(StatusCode::SERVICE_UNAVAILABLE, "starting")
    }
}

/// `?page=&items_per_page=` of the list routes.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct Paging {
    /// The page, from 0.
    #[param(value_type = Option<u64>, minimum = 0)]
    page: Option<String>,
    /// Items on a page, 1–1000 (default 100).
    #[param(value_type = Option<u64>, minimum = 1, maximum = 1000)]
    items_per_page: Option<String>,
}

/// One page of a list.
#[derive(Serialize, ToSchema)]
struct Page<T> {
    /// Pages in all, at this page size.
    page_count: usize,
    /// Items in all.
    item_count: usize,
    items: Vec<T>,
}

/// `?page=` (from 0) and `?items_per_page=` (1–1000, default 100).
fn paginate<T>(items: Vec<T>, paging: &Paging) -> Result<Page<T>, ApiError> {
    let parse = |v: &Option<String>, name: &str, default: usize| match v {
        None => Ok(default),
        Some(s) => s.parse::<usize>().map_err(|_| {
            ApiError(
                StatusCode::BAD_REQUEST,
                format!("{name} must be a whole number"),
            )
        }),
    };
    let page = parse(&paging.page, "page", 0)?;
    let per = parse(&paging.items_per_page, "items_per_page", 100)?;
    if !(1..=1000).contains(&per) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "items_per_page must be between 1 and 1000".into(),
        ));
    }
    let item_count = items.len();
    Ok(Page {
        page_count: item_count.div_ceil(per),
        item_count,
        items: items
            .into_iter()
            .skip(page.saturating_mul(per))
            .take(per)
            .collect(),
    })
}

/// Every path: live ones, and configured pulled ones that are idle.
#[utoipa::path(
    get,
    path = "/v1/paths",
    tag = "paths",
    params(Paging),
    responses(
        (status = 200, description = "One page of paths, by name.", body = Page<crate::hub::PathSnapshot>),
        (status = 400, description = "`page` or `items_per_page` is not valid.", body = openapi::ErrorBody),
    )
)]
async fn list_paths(State(s): State<Arc<ApiState>>, Query(paging): Query<Paging>) -> Response {
    match paginate(s.hub.path_snapshots(), &paging) {
        Ok(page) => axum::Json(page).into_response(),
        Err(e) => e.into_response(),
    }
}

/// One path.
#[utoipa::path(
    get,
    path = "/v1/paths/{name}",
    tag = "paths",
    params(("name" = String, Path, description = "The path name; it may contain `/` (`/v1/paths/live/cam1`).", example = "live/cam1")),
    responses(
        (status = 200, description = "The path.", body = crate::hub::PathSnapshot),
        (status = 404, description = "No such path.", body = openapi::ErrorBody),
    )
)]
async fn get_path(State(s): State<Arc<ApiState>>, Path(name): Path<String>) -> Response {
    match s.hub.path_snapshot(&name) {
        Some(p) => axum::Json(p).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no path {name:?}")),
    }
}

/// A publisher or reader session.
#[derive(Serialize, ToSchema)]
struct SessionView {
    id: u64,
    protocol: Protocol,
    role: Role,
    path: String,
    remote_addr: Option<String>,
    #[serde(serialize_with = "crate::hub::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created: SystemTime,
    bytes_in: u64,
    bytes_out: u64,
    frames_dropped: u64,
}

fn view(s: &Session) -> SessionView {
    SessionView {
        id: s.id,
        protocol: s.protocol,
        role: s.role,
        path: s.path.clone(),
        remote_addr: s.remote.map(|a| a.to_string()),
        created: s.started,
        bytes_in: s.counters.bytes_in.load(Ordering::Relaxed),
        bytes_out: s.counters.bytes_out.load(Ordering::Relaxed),
        frames_dropped: s.frames_dropped(),
    }
}

/// Every session, publishers and readers.
#[utoipa::path(
    get,
    path = "/v1/sessions",
    tag = "sessions",
    params(Paging),
    responses(
        (status = 200, description = "One page of sessions.", body = Page<SessionView>),
        (status = 400, description = "`page` or `items_per_page` is not valid.", body = openapi::ErrorBody),
    )
)]
async fn list_sessions(State(s): State<Arc<ApiState>>, Query(paging): Query<Paging>) -> Response {
    let all = s.hub.sessions().iter().map(|s| view(s)).collect();
    match paginate(all, &paging) {
        Ok(page) => axum::Json(page).into_response(),
        Err(e) => e.into_response(),
    }
}

fn session_id(raw: &str) -> Result<u64, ApiError> {
    raw.parse().map_err(|_| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("session id {raw:?} is not a number"),
        )
    })
}

/// One session.
#[utoipa::path(
    get,
    path = "/v1/sessions/{id}",
    tag = "sessions",
    params(("id" = u64, Path, description = "The session id.")),
    responses(
        (status = 200, description = "The session.", body = SessionView),
        (status = 400, description = "The id is not a number.", body = openapi::ErrorBody),
        (status = 404, description = "No such session.", body = openapi::ErrorBody),
    )
)]
async fn get_session(State(s): State<Arc<ApiState>>, Path(id): Path<String>) -> Response {
    let id = match session_id(&id) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    match s.hub.session(id) {
        Some(session) => axum::Json(view(&session)).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no session {id}")),
    }
}

/// `{"kicked": id}`.
#[derive(Serialize, ToSchema)]
struct Kicked {
    kicked: u64,
}

/// Ends a session: its connection is closed (an HLS viewer gets 403 from
/// then on).
#[utoipa::path(
    post,
    path = "/v1/sessions/{id}/kick",
    tag = "sessions",
    params(("id" = u64, Path, description = "The session id.")),
    responses(
        (status = 200, description = "The session was ended.", body = Kicked),
        (status = 400, description = "The id is not a number.", body = openapi::ErrorBody),
        (status = 404, description = "No such session.", body = openapi::ErrorBody),
    )
)]
async fn kick_session(State(s): State<Arc<ApiState>>, Path(id): Path<String>) -> Response {
    let id = match session_id(&id) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    if s.hub.kick(id) {
        axum::Json(Kicked { kicked: id }).into_response()
    } else {
        error(StatusCode::NOT_FOUND, format!("no session {id}"))
    }
}
