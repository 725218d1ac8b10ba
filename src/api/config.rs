//! Live configuration: `GET`/`PATCH /v1/config` and `GET`/`PUT`/`PATCH`/
//! `DELETE /v1/config/paths/{name}`. A change is checked as the file is
//! (a 400 names the field) and applied to the running hub, touching only
//! the paths it affects.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::ApiState;
use crate::config::live::{self, ChangeError};
use crate::config::validate_rule_name;

/// A refused change: 400 with the field and the reason.
fn refused(e: ChangeError) -> Response {
    let body = serde_json::json!({ "error": e.to_string(), "field": e.key });
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

fn parse_body(body: &[u8]) -> Result<Value, ChangeError> {
    serde_json::from_slice(body).map_err(|e| ChangeError {
        key: String::new(),
        reason: format!("the body is not JSON: {e}"),
    })
}

pub(super) async fn get_config(State(s): State<Arc<ApiState>>) -> Response {
    axum::Json(live::redacted_json(&s.hub.config())).into_response()
}

pub(super) async fn patch_config(State(s): State<Arc<ApiState>>, body: Bytes) -> Response {
    let patch = match parse_body(&body) {
        Ok(v) => v,
        Err(e) => return refused(e),
    };
    match s
        .hub
        .change_config("api", |current| live::patch_global(current, &patch))
    {
        Ok((config, _)) => axum::Json(live::redacted_json(&config)).into_response(),
        Err(e) => refused(e),
    }
}

fn rule_json(config: &crate::config::Config, name: &str) -> Option<Value> {
    let mut v = serde_json::to_value(config.paths.get(name)?).ok()?;
    live::redact(&mut v);
    Some(v)
}

pub(super) async fn get_rule(State(s): State<Arc<ApiState>>, Path(name): Path<String>) -> Response {
    match rule_json(&s.hub.config(), &name) {
        Some(v) => axum::Json(v).into_response(),
        None => super::error(StatusCode::NOT_FOUND, format!("no path rule {name:?}")),
    }
}

async fn put_or_patch(s: Arc<ApiState>, name: String, body: Bytes, patch: bool) -> Response {
    if let Err(e) = validate_rule_name(&name) {
        return refused(ChangeError {
            key: format!("paths.{name:?}"),
            reason: e.to_string(),
        });
    }
    let body = match parse_body(&body) {
        Ok(v) => v,
        Err(e) => return refused(e),
    };
    let existed = s.hub.config().paths.contains_key(&name);
    if patch && !existed {
        return super::error(StatusCode::NOT_FOUND, format!("no path rule {name:?}"));
    }
    match s.hub.change_config("api", |current| {
        live::put_rule(current, &name, &body, patch)
    }) {
        Ok((config, _)) => {
            let status = if existed {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            let rule = rule_json(&config, &name).unwrap_or(Value::Null);
            (status, axum::Json(rule)).into_response()
        }
        Err(e) => refused(e),
    }
}

pub(super) async fn put_rule(
    State(s): State<Arc<ApiState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    put_or_patch(s, name, body, false).await
}

pub(super) async fn patch_rule(
    State(s): State<Arc<ApiState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    put_or_patch(s, name, body, true).await
}

pub(super) async fn delete_rule(
    State(s): State<Arc<ApiState>>,
    Path(name): Path<String>,
) -> Response {
    if !s.hub.config().paths.contains_key(&name) {
        return super::error(StatusCode::NOT_FOUND, format!("no path rule {name:?}"));
    }
    match s
        .hub
        .change_config("api", |current| live::delete_rule(current, &name))
    {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => super::error(StatusCode::NOT_FOUND, e.to_string()),
    }
}
