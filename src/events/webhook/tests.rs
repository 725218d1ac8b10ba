//! Delivery against a real local HTTP receiver that checks every signature.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use tokio_util::sync::CancellationToken;

use super::signing::{DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use super::*;
use crate::events::{EventBus, EventKind};

const SECRET: &str = "s3cret";

/// What the receiver accepted.
#[derive(Debug, Clone)]
struct Got {
    path: String,
    kind: String,
    id: u64,
}

struct Recv {
    /// The status to answer with.
    status: AtomicU16,
    requests: AtomicU64,
    /// When each request arrived.
    times: Mutex<Vec<Instant>>,
    bad: AtomicU64,
    got: Mutex<Vec<Got>>,
}

impl Recv {
    fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
    fn times(&self) -> Vec<Instant> {
        self.times.lock().unwrap().clone()
    }
    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }
}

/// Checks what a webhook request must carry; `Err` says what is wrong.
fn check(headers: &HeaderMap, body: &[u8]) -> Result<Got, String> {
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or(format!("no {name}"))
    };
    if h("content-type")? != "application/json" {
        return Err("content type".into());
    }
    let ts: u64 = h(TIMESTAMP_HEADER)?.parse().map_err(|_| "timestamp")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if now.abs_diff(ts) > 5 {
        return Err("stale timestamp".into());
    }
    let sig = h(SIGNATURE_HEADER)?;
    if !verify(SECRET.as_bytes(), ts, body, &sig) {
        return Err(format!("bad signature {sig}"));
    }
    let json: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let kind = h(EVENT_HEADER)?;
    let id: u64 = h(DELIVERY_HEADER)?.parse().map_err(|_| "delivery id")?;
    if json["event"] != kind.as_str() || json["id"] != id {
        return Err(format!("headers {kind}/{id} do not match body {json}"));
    }
    Ok(Got {
        path: String::new(),
        kind,
        id,
    })
}

async fn hook(State(r): State<Arc<Recv>>, uri: Uri, headers: HeaderMap, body: Bytes) -> StatusCode {
    r.requests.fetch_add(1, Ordering::SeqCst);
    r.times.lock().unwrap().push(Instant::now());
    let mut got = match check(&headers, &body) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("receiver: {e}");
            r.bad.fetch_add(1, Ordering::SeqCst);
            return StatusCode::BAD_REQUEST;
        }
    };
    let status = StatusCode::from_u16(r.status.load(Ordering::SeqCst)).unwrap();
    if status.is_success() {
        got.path = uri.path().to_string();
        r.got.lock().unwrap().push(got);
    }
    status
}

async fn receiver() -> (SocketAddr, Arc<Recv>) {
    let recv = Arc::new(Recv {
        status: AtomicU16::new(200),
        requests: AtomicU64::new(0),
        times: Mutex::new(Vec::new()),
        bad: AtomicU64::new(0),
        got: Mutex::new(Vec::new()),
    });
    let app = axum::Router::new()
        .route("/{*path}", axum::routing::post(hook))
        .with_state(Arc::clone(&recv));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, recv)
}

fn hook_at(addr: SocketAddr, path: &str, events: &[&str]) -> WebhookConfig {
    WebhookConfig {
        url: format!("http://{addr}{path}"),
        secret: Some(SECRET.into()),
        events: events.iter().map(|s| s.to_string()).collect(),
    }
}

fn fast() -> WebhookSettings {
    WebhookSettings {
        timeout: Duration::from_secs(2),
        queue_size: 64,
        max_attempts: 3,
        retry_initial: Duration::from_millis(10),
        retry_max: Duration::from_millis(20),
        breaker_failures: 2,
        breaker_cooldown: Duration::from_millis(400),
    }
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn publish(bus: &EventBus, path: &str) -> u64 {
    let mut e = Event::new(EventKind::PublishStart);
    e.path = Some(path.into());
    bus.emit(e).id
}

#[tokio::test]
async fn signed_delivery_survives_an_outage_through_the_breaker() {
    let (addr, recv) = receiver().await;
    let bus = EventBus::new();
    let shutdown = CancellationToken::new();
    let hooks = Webhooks::start(
        &[hook_at(addr, "/hook", &[])],
        &fast(),
        &bus,
        shutdown.clone(),
    )
    .unwrap();
    let stats = || hooks.snapshot().remove(0);

    // Up: delivered, signed.
    let first = publish(&bus, "live/a");
    wait_for("first delivery", || stats().delivered == 1).await;

    // Down (500): two failed requests open the breaker.
    recv.status.store(500, Ordering::SeqCst);
    let during = publish(&bus, "live/b");
    wait_for("breaker open", || stats().breaker == BreakerState::Open).await;
    let s = stats();
    assert_eq!(
        (s.failed_attempts, s.breaker_opened, s.delivered),
        (2, 1, 1)
    );
    let requests = recv.requests();
    assert_eq!(requests, 3);
    // While open: no request at all, even with more events waiting.
    let later = publish(&bus, "live/c");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(recv.requests(), requests, "a request went out while open");
    assert_eq!(stats().breaker, BreakerState::Open);

    // Up again: after the cooldown one probe goes out, succeeds, closes it.
    recv.status.store(200, Ordering::SeqCst);
    wait_for("probe and queued event delivered", || {
        stats().delivered >= 3
    })
    .await;
    assert_eq!(
        recv.requests(),
        requests + 2,
        "one probe, then the queued event"
    );
    let times = recv.times();
    let quiet = times[3] - times[2];
    assert!(
        quiet >= Duration::from_millis(400),
        "the probe came {quiet:?} after the failure that opened the breaker"
    );
    let s = stats();
    assert_eq!(s.breaker, BreakerState::Closed);
    assert_eq!(
        (s.breaker_opened, s.failed_attempts, s.given_up, s.dropped),
        (1, 2, 0, 0)
    );

    let last = publish(&bus, "live/d");
    wait_for("later delivery", || stats().delivered == 4).await;
    let ids: Vec<u64> = recv.got().iter().map(|g| g.id).collect();
    assert_eq!(ids, [first, during, later, last], "in order, each once");
    assert!(
        recv.got()
            .iter()
            .all(|g| g.kind == "publish_start" && g.path == "/hook")
    );
    assert_eq!(recv.bad.load(Ordering::SeqCst), 0);
    shutdown.cancel();
}

#[tokio::test]
async fn refusals_are_given_up_at_once_and_failures_after_max_attempts() {
    let (addr, recv) = receiver().await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let bus = EventBus::new();
    let settings = WebhookSettings {
        breaker_failures: 100,
        ..fast()
    };
    let hooks = Webhooks::start(
        &[hook_at(addr, "/x", &[]), hook_at(closed, "/", &[])],
        &settings,
        &bus,
        CancellationToken::new(),
    )
    .unwrap();
    recv.status.store(404, Ordering::SeqCst);
    publish(&bus, "live/a");
    wait_for("both given up", || {
        hooks.snapshot().iter().all(|s| s.given_up == 1)
    })
    .await;
    let s = hooks.snapshot();
    assert_eq!(recv.requests(), 1, "a 404 is not retried");
    assert_eq!(s[0].failed_attempts, 1);
    assert_eq!(
        s[0].breaker,
        BreakerState::Closed,
        "a 404 says the endpoint is up"
    );
    assert_eq!(
        s[1].failed_attempts, 3,
        "connection refused: retried up to max_attempts"
    );
    assert_eq!(s[1].delivered, 0);

    // 429 and 503 are retried.
    recv.status.store(429, Ordering::SeqCst);
    publish(&bus, "live/b");
    wait_for("429 given up", || hooks.snapshot()[0].given_up == 2).await;
    assert_eq!(recv.requests(), 1 + 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_endpoint_drops_and_counts_without_holding_up_emit() {
    // Accepts connections (the kernel does) but never answers.
    let stuck = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = stuck.local_addr().unwrap();
    let bus = EventBus::new();
    let settings = WebhookSettings {
        timeout: Duration::from_secs(60),
        queue_size: 8,
        ..fast()
    };
    let hooks = Webhooks::start(
        &[hook_at(addr, "/", &[])],
        &settings,
        &bus,
        CancellationToken::new(),
    )
    .unwrap();
    let started = Instant::now();
    for _ in 0..10_000 {
        publish(&bus, "live/a");
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "emit was held up: {took:?}");
    // Every event is accounted for: one in flight, 8 queued, the rest
    // dropped (queue full, or lagged on the broadcast).
    wait_for("all counted", || {
        let s = &hooks.snapshot()[0];
        s.dropped + s.queued as u64 + 1 == 10_000
    })
    .await;
    let s = &hooks.snapshot()[0];
    assert_eq!(s.queued, 8);
    assert!(s.dropped > 0);
    assert_eq!(s.delivered + s.given_up, 0);
    drop(stuck);
}

#[tokio::test]
async fn reconfigure_keeps_unchanged_endpoints_and_filters_by_kind() {
    let (addr, recv) = receiver().await;
    let bus = EventBus::new();
    let all = hook_at(addr, "/all", &[]);
    let stops = hook_at(addr, "/stops", &["read_stop"]);
    let hooks = Webhooks::start(
        &[all.clone(), stops],
        &fast(),
        &bus,
        CancellationToken::new(),
    )
    .unwrap();
    publish(&bus, "live/a");
    bus.emit(Event::new(EventKind::ReadStop));
    wait_for("deliveries", || {
        let s = hooks.snapshot();
        s[0].delivered == 2 && s[1].delivered == 1
    })
    .await;
    assert_eq!(recv.got().iter().filter(|g| g.path == "/stops").count(), 1);

    let added = hook_at(addr, "/added", &["publish_start"]);
    hooks.reconfigure(&[added, all]);
    let s = hooks.snapshot();
    assert_eq!(s.len(), 2);
    assert_eq!(
        (s[0].url.as_str(), s[0].delivered),
        (&*format!("http://{addr}/added"), 0)
    );
    assert_eq!(s[1].delivered, 2, "unchanged endpoint keeps its counters");

    publish(&bus, "live/b");
    bus.emit(Event::new(EventKind::ReadStop));
    wait_for("after reconfigure", || {
        let s = hooks.snapshot();
        s[0].delivered == 1 && s[1].delivered == 4
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let got = recv.got();
    assert_eq!(
        got.iter().filter(|g| g.path == "/stops").count(),
        1,
        "removed endpoint gets nothing"
    );
    assert_eq!(got.iter().filter(|g| g.path == "/added").count(), 1);
}

#[tokio::test]
async fn on_publish_allows_refuses_and_falls_back_to_its_default() {
    let (addr, recv) = receiver().await;
    let bus = EventBus::new();
    let hooks = Webhooks::start(&[], &fast(), &bus, CancellationToken::new()).unwrap();
    let mut event = Event::new(EventKind::PublishStart);
    event.path = Some("live/cam".into());
    event.id = 7;
    assert_eq!(
        hooks.allow_publish(&event).await,
        Ok(()),
        "no hook: allowed"
    );

    let mut config = OnPublishConfig {
        url: format!("http://{addr}/on_publish"),
        secret: SECRET.into(),
        timeout: Duration::from_millis(300),
        default: OnPublishDefault::Deny,
    };
    hooks.set_on_publish(&config);
    assert_eq!(hooks.allow_publish(&event).await, Ok(()));
    let got = recv.got();
    assert_eq!(
        (got[0].kind.as_str(), got[0].id, got[0].path.as_str()),
        ("publish_start", 7, "/on_publish")
    );
    recv.status.store(403, Ordering::SeqCst);
    let e = hooks.allow_publish(&event).await.unwrap_err();
    assert!(e.contains("403"), "{e}");
    assert_eq!(recv.bad.load(Ordering::SeqCst), 0, "signed");

    // Not answering: the default decides.
    let stuck = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    config.url = format!("http://{}/", stuck.local_addr().unwrap());
    hooks.set_on_publish(&config);
    let started = Instant::now();
    let e = hooks.allow_publish(&event).await.unwrap_err();
    assert!(e.contains("not reachable"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "timeout honoured"
    );
    config.default = OnPublishDefault::Allow;
    hooks.set_on_publish(&config);
    assert_eq!(hooks.allow_publish(&event).await, Ok(()));
}

#[tokio::test]
async fn flush_delivers_what_the_bus_and_queues_hold_before_it_returns() {
    let (addr, recv) = receiver().await;
    let bus = EventBus::new();
    let stop = CancellationToken::new();
    let hooks =
        Webhooks::start(&[hook_at(addr, "/all", &[])], &fast(), &bus, stop.clone()).unwrap();
    // Emitted right before the flush: some still on the bus, some queued.
    let ids: Vec<u64> = (0..20)
        .map(|i| publish(&bus, &format!("live/{i}")))
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    assert!(hooks.flush(deadline).await, "flushed in time");
    let got: Vec<u64> = recv.got().iter().map(|g| g.id).collect();
    assert_eq!(got, ids, "every event, in order, when flush returns");
    stop.cancel();
}

#[tokio::test]
async fn flush_stops_waiting_at_the_deadline_when_the_endpoint_fails() {
    let (addr, recv) = receiver().await;
    recv.status.store(500, Ordering::SeqCst);
    let bus = EventBus::new();
    let stop = CancellationToken::new();
    let settings = WebhookSettings {
        max_attempts: 8,
        retry_initial: Duration::from_secs(1),
        retry_max: Duration::from_secs(1),
        breaker_failures: 100,
        ..fast()
    };
    let hooks = Webhooks::start(
        &[hook_at(addr, "/down", &[])],
        &settings,
        &bus,
        stop.clone(),
    )
    .unwrap();
    publish(&bus, "live/a");
    let t0 = Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
    assert!(!hooks.flush(deadline).await, "not delivered");
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_secs(2),
        "{took:?}"
    );
    stop.cancel();
    assert!(recv.requests() >= 1);
}
