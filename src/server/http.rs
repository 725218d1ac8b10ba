//! The public HTTP listener: HLS below `/{path}/`. Path names contain
//! slashes, so one handler takes the whole URL and splits off the file name.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower_http::cors::{Any, CorsLayer};

use crate::config::validate_path_name;
use crate::egress::hls::{HlsFile, HlsServer};

pub struct HttpState {
    pub hls: Arc<HlsServer>,
}

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
        .expose_headers([
            header::LOCATION,
            header::ETAG,
            header::LINK,
            header::CONTENT_LENGTH,
        ]);
    Router::new().fallback(handle).layer(cors).with_state(state)
}

fn not_found(message: String) -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({ "error": message })),
    )
        .into_response()
}

async fn handle(State(state): State<Arc<HttpState>>, req: Request) -> Response {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            axum::Json(
                serde_json::json!({ "error": format!("{} is not served here", req.method()) }),
            ),
        )
            .into_response();
    }
    let uri_path = req.uri().path().trim_start_matches('/');
    let Some((path, file)) = uri_path.rsplit_once('/') else {
        return not_found(format!("nothing at /{uri_path}: try /{{path}}/index.m3u8"));
    };
    if let Err(e) = validate_path_name(path) {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({ "error": format!("invalid path name {path:?}: {e}") })),
        )
            .into_response();
    }
    match HlsFile::parse(file) {
        Some(f) => state.hls.serve(path, f, req.uri().query()).await,
        None => not_found(format!("no {file:?} below path {path:?}")),
    }
}
