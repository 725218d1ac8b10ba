//! `GET /v1/events`: the event bus as a Server-Sent Events stream (WHATWG
//! HTML, "Server-sent events"). Each event is sent as `id: <id>`,
//! `event: <kind>`, `data: <json>`. A client that reconnects with
//! `Last-Event-ID` (the header browsers send; `?last_event_id=` for the
//! first connection) gets the kept events after that id, then live ones,
//! none twice. Events it can no longer get (they fell out of the ring, or
//! the client lagged the live broadcast) are announced as
//! `event: missed` / `data: {"missed": n}` (no `id`), and the stream goes
//! on. `?events=publish_start,read_stop` sends only those kinds.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{self, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::Stream;
use serde::Deserialize;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

use super::{Event, EventBus, EventKind};

/// How the stream behaves.
#[derive(Debug, Clone)]
pub struct SseOptions {
    /// A comment line is sent after this long without events, so proxies
    /// and clients see the connection alive.
    pub keep_alive: Duration,
    /// Ends every stream (graceful shutdown would otherwise wait for them).
    pub shutdown: CancellationToken,
}

impl SseOptions {
    pub fn new(shutdown: CancellationToken) -> SseOptions {
        SseOptions {
            keep_alive: Duration::from_secs(15),
            shutdown,
        }
    }
}

#[derive(Clone)]
pub(crate) struct SseState {
    bus: EventBus,
    options: SseOptions,
}

/// The route of the event stream.
pub const PATH: &str = "/v1/events";

/// A router serving `GET /v1/events`, with keep-alives every 15 s; merge it
/// into the API router (it carries its own state).
pub fn router(bus: EventBus, shutdown: CancellationToken) -> Router {
    router_with(bus, SseOptions::new(shutdown))
}

/// [`router`] with explicit options.
pub fn router_with(bus: EventBus, options: SseOptions) -> Router {
    Router::new()
        .route(PATH, get(events))
        .with_state(SseState { bus, options })
}

/// Query parameters of `GET /v1/events`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventsQuery {
    /// The id to resume after, for a first connection (the
    /// `Last-Event-ID` header wins).
    #[param(value_type = Option<u64>)]
    last_event_id: Option<String>,
    /// Comma-separated event kinds to send (default: all), e.g.
    /// `publish_start,read_stop`.
    #[param(example = "publish_start,read_stop")]
    events: Option<String>,
}

fn bad_request(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(serde_json::json!({ "error": message })),
    )
        .into_response()
}

/// Which kinds a `?events=` list names (`None`: all).
fn parse_filter(list: Option<&str>) -> Result<Option<Vec<EventKind>>, String> {
    let Some(list) = list.map(str::trim).filter(|l| !l.is_empty()) else {
        return Ok(None);
    };
    list.split(',')
        .map(|name| name.trim().parse::<EventKind>())
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
        .map_err(|e| format!("events: {e}"))
}

/// The id to resume after: the `Last-Event-ID` header (what a reconnecting
/// browser sends), else `?last_event_id=`.
fn parse_last_id(headers: &HeaderMap, query: Option<&str>) -> Result<Option<u64>, String> {
    let (what, text) = match headers.get("last-event-id") {
        Some(v) => (
            "Last-Event-ID",
            v.to_str()
                .map_err(|_| "Last-Event-ID: not text".to_string())?,
        ),
        None => match query {
            Some(q) => ("last_event_id", q),
            None => return Ok(None),
        },
    };
    let text = text.trim();
    if text.is_empty() {
        // The spec's way of saying "no id yet".
        return Ok(None);
    }
    text.parse::<u64>()
        .map(Some)
        .map_err(|_| format!("{what}: {text:?} is not an event id"))
}

/// The event stream (Server-Sent Events): each event as `id: <id>`,
/// `event: <kind>`, `data: <Event as JSON>`; `event: missed` with
/// `data: {"missed": n}` (no id) when events could not be delivered.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "events",
    params(
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this event id (what a reconnecting browser sends); the kept events after it come first."),
        EventsQuery,
    ),
    responses(
        (status = 200, description = "A stream of events until the client leaves or the server stops; `data` is an `Event` (see components), keep-alive comments every 15 s.", content_type = "text/event-stream", body = String),
        (status = 400, description = "An unknown event kind in `events`, or a bad event id.", body = crate::api::openapi::ErrorBody),
    )
)]
pub(crate) async fn events(
    State(state): State<SseState>,
    headers: HeaderMap,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Response {
    let query = match query {
        Ok(Query(q)) => q,
        Err(e) => return bad_request(e.body_text()),
    };
    let filter = match parse_filter(query.events.as_deref()) {
        Ok(f) => f,
        Err(e) => return bad_request(e),
    };
    let last_id = match parse_last_id(&headers, query.last_event_id.as_deref()) {
        Ok(id) => id,
        Err(e) => return bad_request(e),
    };
    let stream = event_stream(&state.bus, last_id, filter, state.options.shutdown.clone());
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(state.options.keep_alive))
        .into_response()
}

/// What one connection has yet to send, and where it is.
struct Cursor {
    pending: VecDeque<sse::Event>,
    live: broadcast::Receiver<Arc<Event>>,
    filter: Option<Vec<EventKind>>,
    /// The last id sent (or skipped by the filter): nothing at or below it
    /// is sent again.
    last: u64,
    shutdown: CancellationToken,
}

impl Cursor {
    fn wants(&self, e: &Event) -> bool {
        self.filter.as_ref().is_none_or(|f| f.contains(&e.event))
    }
}

fn to_sse(e: &Event) -> sse::Event {
    sse::Event::default()
        .id(e.id.to_string())
        .event(e.event.as_str())
        .data(e.to_json())
}

fn missed(n: u64) -> sse::Event {
    sse::Event::default()
        .event("missed")
        .data(serde_json::json!({ "missed": n }).to_string())
}

/// The events after `last_id` (kept ones first, then live), filtered.
fn event_stream(
    bus: &EventBus,
    last_id: Option<u64>,
    filter: Option<Vec<EventKind>>,
    shutdown: CancellationToken,
) -> impl Stream<Item = Result<sse::Event, Infallible>> + use<> {
    let sub = bus.resume(last_id);
    let mut cursor = Cursor {
        pending: VecDeque::with_capacity(sub.backlog.len() + 1),
        live: sub.live,
        filter,
        last: last_id.unwrap_or(0),
        shutdown,
    };
    if sub.missed > 0 {
        cursor.pending.push_back(missed(sub.missed));
    }
    for e in &sub.backlog {
        cursor.last = cursor.last.max(e.id);
        if cursor.wants(e) {
            cursor.pending.push_back(to_sse(e));
        }
    }
    futures_util::stream::unfold(cursor, |mut c| async move {
        if let Some(e) = c.pending.pop_front() {
            return Some((Ok(e), c));
        }
        loop {
            let received = tokio::select! {
                _ = c.shutdown.cancelled() => return None,
                r = c.live.recv() => r,
            };
            match received {
                Ok(e) if e.id <= c.last => continue,
                Ok(e) => {
                    c.last = e.id;
                    if c.wants(&e) {
                        return Some((Ok(to_sse(&e)), c));
                    }
                }
                Err(RecvError::Lagged(n)) => return Some((Ok(missed(n)), c)),
                Err(RecvError::Closed) => return None,
            }
        }
    })
}

#[cfg(test)]
mod tests;
