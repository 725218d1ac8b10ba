//! The control API (JSON under `/v1`, plus `/healthz` and `/readyz`), served
//! on its own listener, loopback by default.

mod config;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

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
}

pub fn router(state: Arc<ApiState>) -> Router {
    let counting = (Arc::clone(&state.requests), "api");
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/readyz", get(readyz))
        .route("/v1/paths", get(list_paths))
        .route("/v1/paths/{*name}", get(get_path))
        .route("/v1/sessions", get(list_sessions))
        .route("/v1/sessions/{id}", get(get_session))
        .route("/v1/sessions/{id}/kick", post(kick_session))
        .route(
            "/v1/config",
            get(config::get_config).patch(config::patch_config),
        )
        .route(
            "/v1/config/paths/{*name}",
            get(config::get_rule)
                .put(config::put_rule)
                .patch(config::patch_rule)
                .delete(config::delete_rule),
        )
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such API route") })
        .method_not_allowed_fallback(|| async {
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this route",
            )
        })
        .route("/v1/webhooks", get(webhooks))
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

/// Delivery counters and breaker state of every webhook endpoint.
async fn webhooks(State(s): State<Arc<ApiState>>) -> Response {
    let stats = s.gate.webhooks().map(|w| w.snapshot()).unwrap_or_default();
    axum::Json(serde_json::json!({ "items": stats })).into_response()
}

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
        (self.0, axum::Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

async fn healthz() -> Response {
    axum::Json(serde_json::json!({ "status": "ok" })).into_response()
}

async fn readyz(State(s): State<Arc<ApiState>>) -> Response {
    if s.ready.load(Ordering::Relaxed) {
        axum::Json(serde_json::json!({ "status": "ready" })).into_response()
    } else {
        error(StatusCode::SERVICE_UNAVAILABLE, "starting")
    }
}

#[derive(Deserialize)]
struct Paging {
    page: Option<String>,
    items_per_page: Option<String>,
}

#[derive(Serialize)]
struct Page<T> {
    page_count: usize,
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

async fn list_paths(State(s): State<Arc<ApiState>>, Query(paging): Query<Paging>) -> Response {
    match paginate(s.hub.path_snapshots(), &paging) {
        Ok(page) => axum::Json(page).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn get_path(State(s): State<Arc<ApiState>>, Path(name): Path<String>) -> Response {
    match s.hub.path_snapshot(&name) {
        Some(p) => axum::Json(p).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no path {name:?}")),
    }
}

#[derive(Serialize)]
struct SessionView {
    id: u64,
    protocol: Protocol,
    role: Role,
    path: String,
    remote_addr: Option<String>,
    #[serde(serialize_with = "crate::hub::rfc3339")]
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

async fn kick_session(State(s): State<Arc<ApiState>>, Path(id): Path<String>) -> Response {
    let id = match session_id(&id) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    if s.hub.kick(id) {
        axum::Json(serde_json::json!({ "kicked": id })).into_response()
    } else {
        error(StatusCode::NOT_FOUND, format!("no session {id}"))
    }
}
