//! The SSE endpoint over real HTTP: a local server and a plain streaming
//! client that parses the event stream itself.

use std::net::SocketAddr;
use std::time::Duration;

use super::*;
use crate::events::RING_CAPACITY;

/// One parsed SSE frame (the lines up to a blank line).
#[derive(Debug, Default, Clone, PartialEq)]
struct Frame {
    id: Option<u64>,
    event: Option<String>,
    data: Option<String>,
    /// Only comment lines: a keep-alive.
    comment_only: bool,
}

struct Client {
    resp: reqwest::Response,
    buf: String,
}

async fn serve(bus: &EventBus, keep_alive: Duration) -> (SocketAddr, CancellationToken) {
    let shutdown = CancellationToken::new();
    let app = router_with(
        bus.clone(),
        SseOptions {
            keep_alive,
            shutdown: shutdown.clone(),
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, shutdown)
}

async fn get(addr: SocketAddr, query: &str, last_id: Option<u64>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(format!("http://{addr}/v1/events{query}"));
    if let Some(id) = last_id {
        req = req.header("Last-Event-ID", id.to_string());
    }
    req.send().await.unwrap()
}

impl Client {
    async fn connect(addr: SocketAddr, query: &str, last_id: Option<u64>) -> Client {
        let resp = get(addr, query, last_id).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        Client {
            resp,
            buf: String::new(),
        }
    }

    /// The next frame, or `None` if none comes within `within`.
    async fn frame(&mut self, within: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let text: String = self.buf.drain(..end + 2).collect();
                let mut f = Frame {
                    comment_only: true,
                    ..Frame::default()
                };
                for line in text.lines().filter(|l| !l.is_empty()) {
                    if line.starts_with(':') {
                        continue;
                    }
                    f.comment_only = false;
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value).to_string();
                    match field {
                        "id" => f.id = Some(value.parse().unwrap()),
                        "event" => f.event = Some(value),
                        "data" => f.data = Some(value),
                        other => panic!("unexpected field {other:?}"),
                    }
                }
                return Some(f);
            }
            let chunk = tokio::time::timeout_at(deadline, self.resp.chunk())
                .await
                .ok()?;
            let chunk = chunk.unwrap().expect("stream ended");
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// The next frame that is not a keep-alive.
    async fn event(&mut self) -> Frame {
        loop {
            let f = self
                .frame(Duration::from_secs(5))
                .await
                .expect("no event within 5 s");
            if !f.comment_only {
                return f;
            }
        }
    }

    /// Asserts that nothing but keep-alives arrives for `d`.
    async fn assert_quiet(&mut self, d: Duration) {
        let deadline = tokio::time::Instant::now() + d;
        while let Some(f) = self.frame(deadline - tokio::time::Instant::now()).await {
            assert!(f.comment_only, "unexpected {f:?}");
        }
    }
}

fn emit(bus: &EventBus, kind: EventKind) -> u64 {
    let mut e = Event::new(kind);
    e.path = Some("live/cam".into());
    bus.emit(e).id
}

fn check(f: &Frame, id: u64, kind: EventKind) {
    assert_eq!(f.id, Some(id), "{f:?}");
    assert_eq!(f.event.as_deref(), Some(kind.as_str()));
    let json: serde_json::Value = serde_json::from_str(f.data.as_deref().unwrap()).unwrap();
    assert_eq!(json["id"], id);
    assert_eq!(json["event"], kind.as_str());
    assert_eq!(json["path"], "live/cam");
}

#[tokio::test]
async fn streams_live_events_and_resumes_after_last_event_id_without_repeats() {
    let bus = EventBus::new();
    emit(&bus, EventKind::ConfigChanged); // before anyone connects: not sent
    let (addr, _shutdown) = serve(&bus, Duration::from_millis(50)).await;
    let mut c = Client::connect(addr, "", None).await;
    let kinds = [
        EventKind::PublishStart,
        EventKind::ReadStart,
        EventKind::ReadStop,
    ];
    let ids: Vec<u64> = kinds.iter().map(|k| emit(&bus, *k)).collect();
    for (id, kind) in ids.iter().zip(kinds) {
        check(&c.event().await, *id, kind);
    }
    // Keep-alives while idle.
    let f = c.frame(Duration::from_secs(1)).await.unwrap();
    assert!(f.comment_only, "{f:?}");
    drop(c);

    // Missed while away, then a reconnect after the second event.
    let away = [
        emit(&bus, EventKind::PublishStop),
        emit(&bus, EventKind::ReadStart),
    ];
    let mut c = Client::connect(addr, "", Some(ids[1])).await;
    check(&c.event().await, ids[2], EventKind::ReadStop);
    check(&c.event().await, away[0], EventKind::PublishStop);
    check(&c.event().await, away[1], EventKind::ReadStart);
    let live = emit(&bus, EventKind::SourceReady);
    check(&c.event().await, live, EventKind::SourceReady);
    c.assert_quiet(Duration::from_millis(200)).await;

    // The query form, for a first connection; the header wins over it.
    let mut c = Client::connect(addr, &format!("?last_event_id={live}"), None).await;
    let next = emit(&bus, EventKind::ReadStop);
    check(&c.event().await, next, EventKind::ReadStop);
    let mut c = Client::connect(addr, "?last_event_id=1", Some(next)).await;
    c.assert_quiet(Duration::from_millis(150)).await;
}

#[tokio::test]
async fn a_filter_sends_only_the_kinds_named_and_bad_requests_get_json_errors() {
    let bus = EventBus::new();
    let (addr, _shutdown) = serve(&bus, Duration::from_secs(15)).await;
    let mut c = Client::connect(addr, "?events=read_stop,publish_start", None).await;
    emit(&bus, EventKind::ReadStart);
    let a = emit(&bus, EventKind::ReadStop);
    emit(&bus, EventKind::SourceError);
    let b = emit(&bus, EventKind::PublishStart);
    check(&c.event().await, a, EventKind::ReadStop);
    check(&c.event().await, b, EventKind::PublishStart);

    for (query, last, needle) in [
        ("?events=read_stop,nope", None, "unknown event \"nope\""),
        ("?last_event_id=abc", None, "last_event_id"),
        ("", Some("12x"), "Last-Event-ID"),
    ] {
        let mut req = reqwest::Client::new().get(format!("http://{addr}/v1/events{query}"));
        if let Some(l) = last {
            req = req.header("Last-Event-ID", l);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 400, "{query}");
        let body: serde_json::Value = resp.json().await.unwrap();
        let error = body["error"].as_str().unwrap();
        assert!(error.contains(needle), "{error}");
    }
}

#[tokio::test]
async fn events_gone_from_the_ring_are_announced_as_missed() {
    let bus = EventBus::new();
    for _ in 0..RING_CAPACITY + 10 {
        emit(&bus, EventKind::ReadStart);
    }
    let (addr, _shutdown) = serve(&bus, Duration::from_secs(15)).await;
    // Ids 1..=1034 were emitted; the ring keeps 11..=1034; after 1, ids
    // 2..=10 are gone.
    let mut c = Client::connect(addr, "", Some(1)).await;
    let f = c.event().await;
    assert_eq!((f.event.as_deref(), f.id), (Some("missed"), None));
    assert_eq!(f.data.as_deref(), Some(r#"{"missed":9}"#));
    check(&c.event().await, 11, EventKind::ReadStart);
}

#[tokio::test]
async fn a_lagging_client_is_told_how_many_it_missed_and_goes_on() {
    let bus = EventBus::new();
    let (addr, _shutdown) = serve(&bus, Duration::from_secs(15)).await;
    let mut c = Client::connect(addr, "", None).await;
    // One thread: the server does not run while these are emitted, so its
    // subscriber falls behind the broadcast by all but its capacity.
    let first = bus.next_id();
    let n = 3 * RING_CAPACITY as u64;
    for _ in 0..n {
        emit(&bus, EventKind::ReadStart);
    }
    let f = c.event().await;
    assert_eq!(f.event.as_deref(), Some("missed"));
    let missed: serde_json::Value = serde_json::from_str(f.data.as_deref().unwrap()).unwrap();
    let missed = missed["missed"].as_u64().unwrap();
    assert_eq!(missed, n - RING_CAPACITY as u64);
    // Then the rest, in order.
    for id in first + missed..first + n {
        check(&c.event().await, id, EventKind::ReadStart);
    }
}

#[tokio::test]
async fn shutdown_ends_the_streams() {
    let bus = EventBus::new();
    let (addr, shutdown) = serve(&bus, Duration::from_secs(15)).await;
    let mut c = Client::connect(addr, "", None).await;
    shutdown.cancel();
    let end = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match c.resp.chunk().await {
                Ok(Some(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("the stream did not end");
    assert!(matches!(end, Ok(None)), "{end:?}");
}
