//! The OpenAPI document of the control API (`GET /v1/openapi.json`) against
//! a running server: a real validator accepts it, it documents every route
//! the API serves, and every documented operation answers.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

async fn fetch_document(api: std::net::SocketAddr) -> Value {
    let r = http("GET", api, "/v1/openapi.json", b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{:?}",
        r.headers
    );
    r.json()
}

/// (METHOD, path) of every operation in the document.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if METHODS.contains(&method.as_str()) {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_valid_openapi_with_the_crate_version() {
    let app = start("").await;
    let doc = fetch_document(app.api_addr).await;
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );

    let file = std::env::temp_dir().join(format!("mediarelay-openapi-{}.json", std::process::id()));
    std::fs::write(&file, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let (ok, out, err) = run(
        "python3",
        &["-m", "openapi_spec_validator", file.to_str().unwrap()],
        Duration::from_secs(60),
    )
    .await;
    let _ = std::fs::remove_file(&file);
    assert!(
        ok,
        "openapi-spec-validator refused the document (or is not installed: scripts/test.sh \
         installs it):\n{out}\n{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_documented_and_every_documented_operation_answers() {
    let app = start("").await;
    let doc = fetch_document(app.api_addr).await;
    let documented = operations(&doc);

    // The routes the API serves (the same list builds the router): each is
    // in the document, wildcard captures as plain parameters.
    let served: BTreeSet<(String, String)> = mediarelay::api::routes()
        .into_iter()
        .map(|(m, p)| (m.to_string(), p.replace("{*", "{")))
        .collect();
    // And the ones this test knows of, so a route dropped from both the
    // list and the document is noticed too.
    let known = [
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/v1/info"),
        ("GET", "/metrics"),
        ("GET", "/v1/paths"),
        ("GET", "/v1/paths/{name}"),
        ("GET", "/v1/sessions"),
        ("GET", "/v1/sessions/{id}"),
        ("POST", "/v1/sessions/{id}/kick"),
        ("GET", "/v1/config"),
        ("PATCH", "/v1/config"),
        ("GET", "/v1/config/paths/{name}"),
        ("PUT", "/v1/config/paths/{name}"),
        ("PATCH", "/v1/config/paths/{name}"),
        ("DELETE", "/v1/config/paths/{name}"),
        ("GET", "/v1/events"),
        ("GET", "/v1/webhooks"),
        ("GET", "/v1/openapi.json"),
    ];
    for (m, p) in known {
        let pair = (m.to_string(), p.to_string());
        assert!(documented.contains(&pair), "{m} {p} is not documented");
        assert!(served.contains(&pair), "{m} {p} is not in api::routes()");
    }
    assert_eq!(documented, served, "the document and the routes differ");

    // Every documented operation is a route of the running server (not the
    // router's 404, not 405), answering a status the document lists, with
    // the documented content type.
    for (method, path) in &documented {
        let op = &doc["paths"][path][method.to_lowercase()];
        let target = path.replace("{name}", "live/cam1").replace("{id}", "1");
        let body: &[u8] = if op["requestBody"].is_object() {
            b"{}"
        } else {
            b""
        };
        let streams = op["responses"]["200"]["content"]["text/event-stream"].is_object();
        let r = probe(method, app.api_addr, &target, body, streams).await;
        let what = format!("{method} {target} -> {} {}", r.status, r.text);
        assert_ne!(r.status, 405, "{what}");
        assert!(
            !(r.status == 404 && r.text.contains("no such API route")),
            "{what}"
        );
        let response = resolve(&doc, &op["responses"][r.status.to_string()]);
        assert!(response.is_object(), "{what}: status not documented");
        match (response["content"].as_object(), &r.content_type) {
            (Some(content), Some(got)) => assert!(
                content
                    .keys()
                    .any(|k| got.starts_with(k.split(';').next().unwrap())),
                "{what}: content type {got} not in {:?}",
                content.keys().collect::<Vec<_>>()
            ),
            (None, got) => assert!(r.text.is_empty(), "{what}: undocumented body ({got:?})"),
            (Some(_), None) => panic!("{what}: no content type"),
        }
    }
}

/// A `$ref` to a shared response, followed.
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v["$ref"].as_str() {
        Some(r) => {
            let name = r.rsplit('/').next().unwrap();
            &doc["components"]["responses"][name]
        }
        None => v,
    }
}

struct Probe {
    status: u16,
    content_type: Option<String>,
    /// The body (empty for an event stream, which does not end).
    text: String,
}

/// One request. An event stream is left after its headers.
async fn probe(
    method: &str,
    addr: std::net::SocketAddr,
    target: &str,
    body: &[u8],
    streams: bool,
) -> Probe {
    if !streams {
        let r = http_with(
            method,
            addr,
            target,
            &[("Content-Type", "application/json")],
            body,
        )
        .await;
        return Probe {
            status: r.status,
            content_type: r.header("content-type").map(str::to_string),
            text: r.text(),
        };
    }
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf))
            .await
            .expect("response headers within 30 s")
            .unwrap();
        assert!(n > 0, "connection closed before the headers");
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let content_type = head
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.trim().to_string());
    Probe {
        status: head.split(' ').nth(1).unwrap().parse().unwrap(),
        content_type,
        text: String::new(),
    }
}
