//! One endpoint: its bounded queue, counters, breaker, and the worker that
//! sends its events in order, with retries and the breaker in the way.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rand::Rng;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::backoff;
use super::breaker::{Breaker, Permit};
use super::signing::{
    DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, signature,
};
use crate::config::{WebhookConfig, WebhookSettings};
use crate::events::{Event, EventKind};

/// Counters of one endpoint, for metrics and the API.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub delivered: AtomicU64,
    pub failed_attempts: AtomicU64,
    pub given_up: AtomicU64,
    pub dropped: AtomicU64,
}

/// One configured endpoint and the handle to its worker.
pub(super) struct Endpoint {
    pub config: WebhookConfig,
    /// The URL without credentials, for logs and the API.
    pub display_url: String,
    kinds: Vec<EventKind>,
    tx: mpsc::Sender<Arc<Event>>,
    pub counters: Counters,
    pub breaker: Mutex<Breaker>,
    /// Stops the worker when the endpoint is removed (or at shutdown).
    pub cancel: CancellationToken,
    /// Events queued or being sent (attempts and waits included): counted
    /// up before an event enters the queue and down once the worker is
    /// done with it, so it is never zero while an event is on its way.
    pending: AtomicUsize,
}

impl Endpoint {
    /// A new endpoint and the receiving end of its queue (for [`run`]).
    pub fn new(
        config: &WebhookConfig,
        settings: &WebhookSettings,
        cancel: CancellationToken,
    ) -> (Arc<Endpoint>, mpsc::Receiver<Arc<Event>>) {
        let (tx, rx) = mpsc::channel(settings.queue_size.max(1));
        let endpoint = Endpoint {
            config: config.clone(),
            display_url: crate::hub::source::redact(&config.url),
            // Validated at load; a name that does not parse matches nothing.
            kinds: config
                .events
                .iter()
                .filter_map(|k| k.parse().ok())
                .collect(),
            tx,
            counters: Counters::default(),
            breaker: Mutex::new(Breaker::new(
                settings.breaker_failures,
                settings.breaker_cooldown,
            )),
            cancel,
            pending: AtomicUsize::new(0),
        };
        (Arc::new(endpoint), rx)
    }

    /// Nothing queued and nothing being sent.
    pub fn idle(&self) -> bool {
        self.pending.load(Ordering::SeqCst) == 0
    }

    /// Whether this endpoint wants events of `kind`.
    pub fn wants(&self, kind: EventKind) -> bool {
        self.config.events.is_empty() || self.kinds.contains(&kind)
    }

    /// Queues `event` without waiting; a full queue drops it (counted).
    pub fn offer(&self, event: &Arc<Event>) {
        self.pending.fetch_add(1, Ordering::SeqCst);
        if let Err(e) = self.tx.try_send(Arc::clone(event)) {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            if let mpsc::error::TrySendError::Full(_) = e {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Events waiting in the queue.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    pub fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Unix seconds now (0 for a clock before 1970).
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The POST of `event` (its JSON in `body`) to `url`, with the delivery
/// headers, signed when there is a secret.
pub(super) fn request(
    client: &reqwest::Client,
    url: &str,
    secret: Option<&[u8]>,
    event: &Event,
    body: Bytes,
    timeout: Duration,
) -> reqwest::RequestBuilder {
    let timestamp = unix_now();
    let mut req = client
        .post(url)
        .timeout(timeout)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(EVENT_HEADER, event.event.as_str())
        .header(DELIVERY_HEADER, event.id)
        .header(TIMESTAMP_HEADER, timestamp);
    if let Some(secret) = secret {
        req = req.header(SIGNATURE_HEADER, signature(secret, timestamp, &body));
    }
    req.body(body)
}

/// How one request went.
#[derive(Debug)]
enum Outcome {
    /// 2xx.
    Delivered,
    /// An answer that retrying will not change (3xx, 4xx but 408 and 429).
    Rejected(u16),
    /// 408, 429, 5xx, a timeout or a connection error: worth retrying.
    Failed(String),
}

fn classify(result: Result<reqwest::Response, reqwest::Error>) -> Outcome {
    match result {
        Ok(r) if r.status().is_success() => Outcome::Delivered,
        Ok(r) => {
            let code = r.status().as_u16();
            if code == 408 || code == 429 || code >= 500 {
                Outcome::Failed(format!("HTTP {code}"))
            } else {
                Outcome::Rejected(code)
            }
        }
        // Without the URL: it may carry credentials.
        Err(e) => Outcome::Failed(e.without_url().to_string()),
    }
}

/// The worker of one endpoint: sends queued events one at a time, in order,
/// until the endpoint is removed or the server shuts down.
pub(super) async fn run(
    endpoint: Arc<Endpoint>,
    mut rx: mpsc::Receiver<Arc<Event>>,
    client: reqwest::Client,
    settings: WebhookSettings,
) {
    loop {
        let event = tokio::select! {
            _ = endpoint.cancel.cancelled() => return,
            e = rx.recv() => match e {
                Some(e) => e,
                None => return,
            },
        };
        let delivered = deliver(&endpoint, &client, &settings, &event).await;
        endpoint.pending.fetch_sub(1, Ordering::SeqCst);
        if delivered.is_none() {
            return; // cancelled
        }
    }
}

/// Sends one event until it is delivered, rejected or out of attempts.
/// `None` when cancelled.
async fn deliver(
    ep: &Endpoint,
    client: &reqwest::Client,
    settings: &WebhookSettings,
    event: &Event,
) -> Option<()> {
    let body = Bytes::from(event.to_json());
    let secret = ep.config.secret.as_deref().map(str::as_bytes);
    let mut attempt: u32 = 0;
    loop {
        // While the breaker is open no request goes out; the event waits
        // here and the ones behind it in the queue.
        loop {
            let permit = ep.breaker().permit(Instant::now());
            match permit {
                Permit::Go => break,
                Permit::Wait(d) => sleep_or_cancel(d, &ep.cancel).await?,
            }
        }
        attempt += 1;
        let send = request(
            client,
            &ep.config.url,
            secret,
            event,
            body.clone(),
            settings.timeout,
        )
        .send();
        let outcome = tokio::select! {
            _ = ep.cancel.cancelled() => return None,
            r = send => classify(r),
        };
        let c = &ep.counters;
        match outcome {
            Outcome::Delivered => {
                ep.breaker().on_success();
                c.delivered.fetch_add(1, Ordering::Relaxed);
                return Some(());
            }
            Outcome::Rejected(code) => {
                // The endpoint answers, so it is up: this is about the
                // delivery, not the endpoint's health.
                ep.breaker().on_success();
                c.failed_attempts.fetch_add(1, Ordering::Relaxed);
                c.given_up.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(url = %ep.display_url, event = %event.event, id = event.id, status = code, "webhook refused the event; not retried");
                return Some(());
            }
            Outcome::Failed(reason) => {
                let opened = {
                    let mut b = ep.breaker();
                    let before = b.times_opened();
                    b.on_failure(Instant::now());
                    b.times_opened() > before
                };
                c.failed_attempts.fetch_add(1, Ordering::Relaxed);
                if opened {
                    tracing::warn!(url = %ep.display_url, %reason, cooldown = ?settings.breaker_cooldown, "webhook circuit breaker open");
                }
                if attempt >= settings.max_attempts {
                    c.given_up.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(url = %ep.display_url, event = %event.event, id = event.id, attempts = attempt, %reason, "webhook delivery given up");
                    return Some(());
                }
                tracing::debug!(url = %ep.display_url, id = event.id, attempt, %reason, "webhook delivery failed; retrying");
                let unit = rand::thread_rng().r#gen::<f64>();
                let d = backoff::delay(attempt, settings.retry_initial, settings.retry_max, unit);
                sleep_or_cancel(d, &ep.cancel).await?;
            }
        }
    }
}

async fn sleep_or_cancel(d: Duration, cancel: &CancellationToken) -> Option<()> {
    tokio::select! {
        _ = cancel.cancelled() => None,
        _ = tokio::time::sleep(d) => Some(()),
    }
}
