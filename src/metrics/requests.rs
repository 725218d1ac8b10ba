//! HTTP requests by listener and status, counted by a middleware.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::Exposition;

/// Requests answered, by (listener, status code).
#[derive(Default, Debug)]
pub struct RequestCounter {
    counts: Mutex<BTreeMap<(&'static str, u16), u64>>,
}

impl RequestCounter {
    pub fn add(&self, listener: &'static str, status: u16) {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        *c.entry((listener, status)).or_insert(0) += 1;
    }

    pub(super) fn render(&self, out: &mut Exposition) {
        let counts = self
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        out.family(
            "mediarelay_http_requests_total",
            "counter",
            "HTTP requests answered, by listener (api, http) and status code.",
        );
        for ((listener, status), n) in counts {
            let status = status.to_string();
            out.sample(
                "mediarelay_http_requests_total",
                &[("listener", listener), ("status", &status)],
                n as f64,
            );
        }
    }
}

/// Middleware: counts every answered request of `listener`.
pub async fn count_requests(
    State((counter, listener)): State<(Arc<RequestCounter>, &'static str)>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    counter.add(listener, response.status().as_u16());
    response
}
