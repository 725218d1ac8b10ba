//! The OpenAPI 3.1 document of the control API, `GET /v1/openapi.json`,
//! generated from the handlers' `#[utoipa::path]` annotations and the
//! response types' `ToSchema` derives (OpenAPI Specification 3.1.0).
//!
//! Routes with a wildcard capture (`/v1/paths/{*name}`: a path name has
//! slashes) appear as `/v1/paths/{name}`, the parameter saying that it may
//! contain `/` ([`doc_path`]). What the API middleware answers on every
//! route (401, 403, 429, 503) is added once, as shared responses
//! ([`SharedResponses`]).

use std::sync::OnceLock;

use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{
    Content, OpenApi as Document, Ref, RefOr, Response as DocResponse, ResponseBuilder,
};
use utoipa::{Modify, OpenApi, ToSchema};

/// `{"error": "..."}`: every error the API answers.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// What went wrong, in words.
    pub error: String,
}

/// A configuration change that was refused (400): the reason and the key
/// it is about (`paths."live/cam1".source`, `hls.segment_duration`; empty
/// when the body as a whole is wrong).
#[derive(Debug, Serialize, ToSchema)]
pub struct RefusedChange {
    pub error: String,
    pub field: String,
}

/// Routes the API middleware does not authenticate (only IP rules and the
/// rate limit apply), as `crate::gate::guard_api` decides.
pub const UNAUTHENTICATED: &[&str] = &["/healthz", "/readyz"];

/// A shared response of the API middleware: the JSON error body, and a
/// header (name, type, description) where it sends one.
fn middleware_response(description: &str, header: Option<(&str, Type, &str)>) -> DocResponse {
    let mut r = ResponseBuilder::new().description(description).content(
        "application/json",
        Content::new(Some(Ref::from_schema_name("Error"))),
    );
    if let Some((name, kind, text)) = header {
        let header = HeaderBuilder::new()
            .schema(ObjectBuilder::new().schema_type(kind))
            .description(Some(text));
        r = r.header(name, header.build());
    }
    r.build()
}

/// The API middleware's answers (`crate::gate::guard_api`), as shared
/// responses (`components.responses`) that every operation refers to: 403
/// and 429 everywhere, 401 and 503 where it authenticates.
pub struct SharedResponses;

impl Modify for SharedResponses {
    fn modify(&self, doc: &mut Document) {
        let shared = [
            (
                "Unauthorized",
                middleware_response(
                    "No credentials, or wrong ones (when authentication is configured).",
                    Some((
                        "WWW-Authenticate",
                        Type::String,
                        "`Basic realm=\"mediarelay\", charset=\"UTF-8\"`",
                    )),
                ),
            ),
            (
                "Forbidden",
                middleware_response(
                    "The client's address may not use the API (`ip_rules`), or the user lacks \
                     the permission (`api`; `metrics` for `/metrics`).",
                    None,
                ),
            ),
            (
                "TooManyRequests",
                middleware_response(
                    "Over the API rate limit.",
                    Some((
                        "Retry-After",
                        Type::Integer,
                        "Seconds to wait before trying again.",
                    )),
                ),
            ),
            (
                "AuthUnavailable",
                middleware_response("The authentication hook could not be asked.", None),
            ),
        ];
        let components = doc.components.get_or_insert_with(Default::default);
        for (name, response) in shared {
            components
                .responses
                .insert(name.to_string(), RefOr::T(response));
        }
        for (path, item) in doc.paths.paths.iter_mut() {
            let authenticated = !UNAUTHENTICATED.contains(&path.as_str());
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in operations.into_iter().flatten() {
                add_shared(op, authenticated);
            }
        }
    }
}

fn add_shared(op: &mut Operation, authenticated: bool) {
    let mut shared = vec![("403", "Forbidden"), ("429", "TooManyRequests")];
    if authenticated {
        shared.push(("401", "Unauthorized"));
        shared.push(("503", "AuthUnavailable"));
    }
    for (status, name) in shared {
        op.responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
    }
}

/// Sets `info` from the crate (name, version, description).
struct Info;

impl Modify for Info {
    fn modify(&self, doc: &mut Document) {
        doc.info.title = "mediarelay control API".into();
        doc.info.version = env!("CARGO_PKG_VERSION").into();
        doc.info.license = None;
        doc.info.description = Some(
            "The control API of mediarelay, a live media relay: paths, sessions, live \
             configuration, events and webhooks. Errors are JSON `{\"error\": \"...\"}`. \
             Every route may also answer 403 (IP rules) and 429 (rate limit), and every \
             route but `/healthz` and `/readyz` 401 (with `WWW-Authenticate`) when \
             authentication is configured."
                .into(),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    paths(
        super::healthz,
        super::readyz,
        super::info,
        super::metrics,
        super::list_paths,
        super::get_path,
        super::list_sessions,
        super::get_session,
        super::kick_session,
        super::config::get_config,
        super::config::patch_config,
        super::config::get_rule,
        super::config::put_rule,
        super::config::patch_rule,
        super::config::delete_rule,
        crate::events::sse::events,
        super::webhooks,
        openapi_json,
    ),
    components(
        // Event: the `data` of the SSE stream (and the webhook body), which
        // no response body names. SourceState: through SourceSnapshot's
        // hand-built flattened status.
        schemas(ErrorBody, RefusedChange, crate::events::Event, crate::hub::source::SourceState)
    ),
    modifiers(&Info, &SharedResponses),
    tags(
        (name = "health", description = "Liveness and readiness"),
        (name = "metrics", description = "Prometheus metrics"),
        (name = "paths", description = "Live paths: source, tracks, readers"),
        (name = "sessions", description = "Publishers and readers"),
        (name = "config", description = "The running configuration (see config/mediarelay.toml for every key)"),
        (name = "events", description = "Events (Server-Sent Events) and webhook delivery"),
        (name = "openapi", description = "This document"),
    )
)]
struct ApiDoc;

/// The document, built once.
pub fn document() -> &'static Document {
    static DOC: OnceLock<Document> = OnceLock::new();
    DOC.get_or_init(ApiDoc::openapi)
}

/// How a route's axum path appears in the document: a wildcard capture
/// `{*name}` becomes the parameter `{name}`.
pub fn doc_path(axum_path: &str) -> String {
    axum_path.replace("{*", "{")
}

/// The OpenAPI document of this API.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "openapi",
    responses((status = 200, description = "This document (OpenAPI 3.1).", content_type = "application/json", body = Object))
)]
pub(super) async fn openapi_json() -> Response {
    axum::Json(document()).into_response()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn documented() -> BTreeSet<(String, String)> {
        let doc = serde_json::to_value(document()).unwrap();
        let mut out = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                if ["get", "put", "post", "delete", "patch"].contains(&method.as_str()) {
                    out.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        out
    }

    #[test]
    fn the_document_covers_exactly_the_routes() {
        let routes: BTreeSet<(String, String)> = crate::api::routes()
            .into_iter()
            .map(|(m, p)| (m.to_string(), doc_path(p)))
            .collect();
        assert_eq!(documented(), routes);
    }

    fn doc() -> serde_json::Value {
        serde_json::to_value(document()).unwrap()
    }

    #[test]
    fn info_version_is_the_crate_version() {
        assert_eq!(doc()["info"]["version"], env!("CARGO_PKG_VERSION"));
        assert!(doc()["openapi"].as_str().unwrap().starts_with("3."));
    }

    #[test]
    fn wildcard_routes_take_a_name_that_may_contain_slashes() {
        assert_eq!(doc_path("/v1/paths/{*name}"), "/v1/paths/{name}");
        let doc = doc();
        for (method, path) in crate::api::routes() {
            if !path.contains("{*") {
                continue;
            }
            let op = &doc["paths"][doc_path(path)][method.to_lowercase()];
            let params = op["parameters"].as_array().unwrap();
            let name = params.iter().find(|p| p["in"] == "path").unwrap();
            assert_eq!(name["name"], "name", "{method} {path}");
            let text = name["description"].as_str().unwrap();
            assert!(text.contains("`/`"), "{method} {path}: {text}");
        }
    }

    #[test]
    fn every_operation_has_the_middleware_answers() {
        let doc = doc();
        for (method, path) in crate::api::routes() {
            let path = doc_path(path);
            let responses = &doc["paths"][&path][method.to_lowercase()]["responses"];
            for status in ["403", "429"] {
                assert!(
                    responses[status]["$ref"].is_string(),
                    "{method} {path} {status}"
                );
            }
            let authenticated = !UNAUTHENTICATED.contains(&path.as_str());
            assert_eq!(
                responses["401"]["$ref"].is_string(),
                authenticated,
                "{method} {path}"
            );
        }
        let shared = &doc["components"]["responses"];
        assert!(shared["Unauthorized"]["headers"]["WWW-Authenticate"].is_object());
        assert!(shared["TooManyRequests"]["headers"]["Retry-After"].is_object());
    }

    /// The documented error schemas have the keys the handlers send.
    #[test]
    fn error_schemas_match_what_is_sent() {
        let doc = doc();
        let keys = |v: serde_json::Value| -> BTreeSet<String> {
            v.as_object().unwrap().keys().cloned().collect()
        };
        let documented =
            |name: &str| keys(doc["components"]["schemas"][name]["properties"].clone());
        let sent = serde_json::to_value(ErrorBody { error: "x".into() }).unwrap();
        assert_eq!(keys(sent), documented("Error"));
        let sent = serde_json::to_value(RefusedChange {
            error: "x".into(),
            field: "y".into(),
        })
        .unwrap();
        assert_eq!(keys(sent), documented("RefusedChange"));
    }
}
