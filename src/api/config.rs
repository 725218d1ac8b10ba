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
use super::openapi::{ErrorBody, RefusedChange};
use crate::config::live::{self, ChangeError};
use crate::config::validate_rule_name;

/// A refused change: 400 with the field and the reason.
fn refused(e: ChangeError) -> Response {
    let body = RefusedChange {
        error: e.to_string(),
        field: e.key,
    };
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

/// What the `{name}` parameter of the rule routes says.
const RULE_NAME: &str = "The rule name as in `[paths.\"name\"]`: a path name or a pattern; it may contain `/` (`/v1/config/paths/live/cam1`).";

fn parse_body(body: &[u8]) -> Result<Value, ChangeError> {
    serde_json::from_slice(body).map_err(|e| ChangeError {
        key: String::new(),
        reason: format!("the body is not JSON: {e}"),
    })
}

/// The running configuration, secrets redacted.
#[utoipa::path(
    get,
    path = "/v1/config",
    tag = "config",
    responses((status = 200, description = "The configuration as JSON: the keys of config/mediarelay.toml, secrets shown as `<redacted>`.", body = Object))
)]
pub(super) async fn get_config(State(s): State<Arc<ApiState>>) -> Response {
    axum::Json(live::redacted_json(&s.hub.config())).into_response()
}

/// Changes global settings with a JSON merge patch (RFC 7396). Path rules
/// are changed through `/v1/config/paths/{name}`; keys that need a restart
/// (listen addresses, `log_level`) are refused.
#[utoipa::path(
    patch,
    path = "/v1/config",
    tag = "config",
    request_body(
        description = "A JSON merge patch (RFC 7396) of the configuration's JSON form (keys as in config/mediarelay.toml); `null` removes a key (back to its default).",
        content(
            (Object = "application/merge-patch+json"),
            (Object = "application/json"),
        )
    ),
    responses(
        (status = 200, description = "Applied; the new configuration, secrets redacted.", body = Object),
        (status = 400, description = "Refused: not JSON, not valid, or a key that needs a restart. Nothing was changed.", body = RefusedChange),
        (status = 413, description = "The body is larger than `limits.max_body_bytes`.", content_type = "text/plain", body = String),
    )
)]
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

/// One path rule (`[paths."name"]`), secrets redacted.
#[utoipa::path(
    get,
    path = "/v1/config/paths/{name}",
    tag = "config",
    params(("name" = String, Path, description = RULE_NAME, example = "live/cam1")),
    responses(
        (status = 200, description = "The rule as configured (keys left out fall back to `path_defaults`).", body = crate::config::PathRule),
        (status = 404, description = "No rule with that name.", body = ErrorBody),
    )
)]
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

/// Creates or replaces a path rule.
#[utoipa::path(
    put,
    path = "/v1/config/paths/{name}",
    tag = "config",
    params(("name" = String, Path, description = RULE_NAME, example = "live/cam1")),
    request_body(description = "The whole rule.", content((crate::config::PathRule = "application/json"))),
    responses(
        (status = 200, description = "Replaced; the rule, secrets redacted.", body = crate::config::PathRule),
        (status = 201, description = "Created; the rule, secrets redacted.", body = crate::config::PathRule),
        (status = 400, description = "Refused: a bad name, not JSON, or not valid. Nothing was changed.", body = RefusedChange),
        (status = 413, description = "The body is larger than `limits.max_body_bytes`.", content_type = "text/plain", body = String),
    )
)]
pub(super) async fn put_rule(
    State(s): State<Arc<ApiState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    put_or_patch(s, name, body, false).await
}

/// Changes a path rule with a JSON merge patch (RFC 7396).
#[utoipa::path(
    patch,
    path = "/v1/config/paths/{name}",
    tag = "config",
    params(("name" = String, Path, description = RULE_NAME, example = "live/cam1")),
    request_body(
        description = "A JSON merge patch (RFC 7396) of the rule: keys given replace, `null` removes.",
        content(
            (Object = "application/merge-patch+json"),
            (Object = "application/json"),
        )
    ),
    responses(
        (status = 200, description = "Applied; the rule, secrets redacted.", body = crate::config::PathRule),
        (status = 400, description = "Refused: a bad name, not JSON, or not valid. Nothing was changed.", body = RefusedChange),
        (status = 404, description = "No rule with that name.", body = ErrorBody),
        (status = 413, description = "The body is larger than `limits.max_body_bytes`.", content_type = "text/plain", body = String),
    )
)]
pub(super) async fn patch_rule(
    State(s): State<Arc<ApiState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    put_or_patch(s, name, body, true).await
}

/// Removes a path rule; a path it served is stopped.
#[utoipa::path(
    delete,
    path = "/v1/config/paths/{name}",
    tag = "config",
    params(("name" = String, Path, description = RULE_NAME, example = "live/cam1")),
    responses(
        (status = 204, description = "Removed."),
        (status = 404, description = "No rule with that name.", body = ErrorBody),
    )
)]
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
