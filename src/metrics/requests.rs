//! HTTP requests by listener and status, counted by a middleware and by the
//! plain listener's HLS shortcut.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::Exposition;

/// The status codes counted one by one: every code `http::StatusCode`
/// holds (RFC 9110 §15: three digits, 100–999).
const FIRST_STATUS: u16 = 100;
const STATUS_CODES: usize = 900;

/// Requests answered, by (listener, status code).
#[derive(Default, Debug)]
pub struct RequestCounter {
    /// One entry per listener, made at its first request (a handful in
    /// all: `api`, `http`, `https`).
    listeners: Mutex<Vec<(&'static str, Arc<StatusCounts>)>>,
}

/// Requests answered by one listener, by status code: a counter each, so
/// counting takes no lock (a part request counts itself on the HLS path).
#[derive(Debug)]
pub struct StatusCounts(Box<[AtomicU64]>);

impl Default for StatusCounts {
    fn default() -> Self {
        StatusCounts((0..STATUS_CODES).map(|_| AtomicU64::new(0)).collect())
    }
}

impl StatusCounts {
    /// Counts an answer with `status`; one outside 100–999 (which
    /// `StatusCode` does not hold) is not counted.
    pub fn add(&self, status: u16) {
        if let Some(n) = status
            .checked_sub(FIRST_STATUS)
            .and_then(|i| self.0.get(usize::from(i)))
        {
            n.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// (status, count) of every status counted at least once, in order.
    fn counted(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        (FIRST_STATUS..)
            .zip(self.0.iter())
            .map(|(status, n)| (status, n.load(Ordering::Relaxed)))
            .filter(|&(_, n)| n > 0)
    }
}

impl RequestCounter {
    /// The counts of `listener`, to count its requests without a lookup.
    pub fn listener(&self, listener: &'static str) -> Arc<StatusCounts> {
        let mut all = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, counts)) = all.iter().find(|(name, _)| *name == listener) {
            return Arc::clone(counts);
        }
        let counts = Arc::new(StatusCounts::default());
        all.push((listener, Arc::clone(&counts)));
        counts
    }

    pub fn add(&self, listener: &'static str, status: u16) {
        self.listener(listener).add(status);
    }

    pub(super) fn render(&self, out: &mut Exposition) {
        let mut listeners = self
            .listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        listeners.sort_by_key(|(name, _)| *name);
        out.family(
            "mediarelay_http_requests_total",
            "counter",
            "HTTP requests answered, by listener (api, http) and status code.",
        );
        for (listener, counts) in listeners {
            for (status, n) in counts.counted() {
                let status = status.to_string();
                out.sample(
                    "mediarelay_http_requests_total",
                    &[("listener", listener), ("status", &status)],
                    n as f64,
                );
            }
        }
    }
}

/// Middleware: counts every answered request in `counts` (a listener's,
/// from [`RequestCounter::listener`]).
pub async fn count_requests(
    State(counts): State<Arc<StatusCounts>>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    counts.add(response.status().as_u16());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_listener_and_status() {
        let c = RequestCounter::default();
        let http = c.listener("http");
        http.add(200);
        http.add(200);
        c.add("http", 404);
        c.add("api", 200);
        c.add("api", 999);
        // Not a status code: not counted, not a panic.
        c.add("api", 99);
        c.add("api", 1000);
        c.add("api", 0);
        assert_eq!(http.counted().collect::<Vec<_>>(), [(200, 2), (404, 1)]);
        let api = c.listener("api");
        assert_eq!(api.counted().collect::<Vec<_>>(), [(200, 1), (999, 1)]);
    }
}
