//! Webhook delivery: every event on the bus is POSTed, signed, to the
//! endpoints of `[[webhooks]]` that want it; plus the synchronous
//! `[on_publish]` hook asked before a publisher is accepted.
//!
//! A dispatcher task takes events from the bus and offers each to each
//! matching endpoint's bounded queue without waiting (a full queue, or
//! events the dispatcher itself missed on the broadcast, are dropped and
//! counted). One worker per endpoint sends its events in order, retrying
//! with exponential backoff and full jitter ([`backoff`]), behind a circuit
//! breaker ([`breaker`]). Requests are signed with HMAC-SHA256 ([`signing`],
//! RFC 2104).

pub mod backoff;
pub mod breaker;
mod delivery;
pub mod signing;
#[cfg(test)]
mod tests;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

pub use breaker::BreakerState;
pub use signing::verify;

use self::delivery::Endpoint;
use super::{Event, EventBus};
use crate::config::{OnPublishConfig, OnPublishDefault, WebhookConfig, WebhookSettings};

/// Why webhook delivery could not start.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhooks need a tokio runtime: {0}")]
    NoRuntime(String),
    #[error("cannot build the HTTP client for webhooks: {0}")]
    Client(String),
}

/// One endpoint's counters, as the API and metrics show them.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WebhookStats {
    /// The URL, without credentials.
    pub url: String,
    /// Event kinds sent (empty: all).
    pub events: Vec<String>,
    /// Whether requests carry `X-Mediarelay-Signature`.
    pub signed: bool,
    /// Events waiting in the queue now.
    pub queued: usize,
    /// Events answered with 2xx.
    pub delivered: u64,
    /// Requests that failed (non-2xx, timeout, connection error).
    pub failed_attempts: u64,
    /// Events abandoned: out of attempts, or refused with a status that
    /// retrying would not change.
    pub given_up: u64,
    /// Events never queued: the queue was full, or the dispatcher lagged.
    pub dropped: u64,
    /// `closed`, `open` or `half_open`.
    pub breaker: BreakerState,
    /// How many times the breaker has opened.
    pub breaker_opened: u64,
}

/// Webhook delivery: the dispatcher, the endpoints and their workers.
/// Cheap to clone.
#[derive(Clone)]
pub struct Webhooks {
    inner: Arc<Inner>,
}

struct Inner {
    client: reqwest::Client,
    settings: WebhookSettings,
    endpoints: Mutex<Vec<Arc<Endpoint>>>,
    on_publish: Mutex<OnPublishConfig>,
    runtime: tokio::runtime::Handle,
    shutdown: CancellationToken,
    /// Tells the dispatcher to offer what the bus still holds and stop.
    drain: CancellationToken,
    /// Cancelled when the dispatcher has stopped.
    dispatcher_done: CancellationToken,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field("endpoints", &self.inner.endpoints().len())
            .finish()
    }
}

impl Inner {
    fn endpoints(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Endpoint>>> {
        self.endpoints.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn spawn_endpoint(&self, config: &WebhookConfig) -> Arc<Endpoint> {
        let (endpoint, rx) = Endpoint::new(config, &self.settings, self.shutdown.child_token());
        if config.secret.is_none() {
            tracing::info!(url = %endpoint.display_url, "webhook without a secret: requests are not signed");
        }
        self.runtime.spawn(delivery::run(
            Arc::clone(&endpoint),
            rx,
            self.client.clone(),
            self.settings.clone(),
        ));
        endpoint
    }

    /// Offers `event` to every endpoint that wants it; never waits.
    fn offer(&self, event: &Arc<Event>) {
        for ep in self.endpoints().iter().filter(|e| e.wants(event.event)) {
            ep.offer(event);
        }
    }
}

impl Webhooks {
    /// Starts the dispatcher (subscribed to `bus` from now on) and one worker
    /// per endpoint of `config`. Everything stops when `shutdown` is
    /// cancelled. Must be called inside a tokio runtime.
    pub fn start(
        config: &[WebhookConfig],
        settings: &WebhookSettings,
        bus: &EventBus,
        shutdown: CancellationToken,
    ) -> Result<Webhooks, WebhookError> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| WebhookError::NoRuntime(e.to_string()))?;
        let client = reqwest::Client::builder()
            // A signed event goes where it is configured to go, nowhere else.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("mediarelay/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| WebhookError::Client(e.to_string()))?;
        let webhooks = Webhooks {
            inner: Arc::new(Inner {
                client,
                settings: settings.clone(),
                endpoints: Mutex::new(Vec::new()),
                on_publish: Mutex::new(OnPublishConfig::default()),
                runtime,
                shutdown: shutdown.clone(),
                drain: CancellationToken::new(),
                dispatcher_done: CancellationToken::new(),
            }),
        };
        webhooks.reconfigure(config);
        let rx = bus.subscribe();
        webhooks
            .inner
            .runtime
            .spawn(dispatch(Arc::clone(&webhooks.inner), rx, shutdown));
        Ok(webhooks)
    }

    /// At shutdown, once every session has ended (their `*_stop` events
    /// are on the bus): offers what the bus still holds to the endpoints
    /// and waits until every queue is empty and no request is in flight,
    /// or until `deadline`. Returns whether everything was delivered (or
    /// given up per the retry settings) in time. The workers keep running
    /// until the `shutdown` token given to [`start`](Self::start) is
    /// cancelled, which the caller does next.
    pub async fn flush(&self, deadline: tokio::time::Instant) -> bool {
        self.inner.drain.cancel();
        let dispatched = tokio::time::timeout_at(deadline, self.inner.dispatcher_done.cancelled());
        if dispatched.await.is_err() {
            return false;
        }
        loop {
            if self.inner.endpoints().iter().all(|ep| ep.idle()) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Replaces the set of endpoints. An endpoint whose config is unchanged
    /// keeps its queue, breaker, counters and worker; removed ones stop
    /// (their queued events are dropped); new ones start empty. The
    /// delivery settings stay those given to [`start`](Self::start).
    pub fn reconfigure(&self, webhooks: &[WebhookConfig]) {
        let mut endpoints = self.inner.endpoints();
        let mut old: Vec<Option<Arc<Endpoint>>> = endpoints.drain(..).map(Some).collect();
        let mut new = Vec::with_capacity(webhooks.len());
        for config in webhooks {
            let kept = old
                .iter_mut()
                .find(|o| o.as_ref().is_some_and(|e| e.config == *config))
                .and_then(Option::take);
            new.push(match kept {
                Some(ep) => ep,
                None => self.inner.spawn_endpoint(config),
            });
        }
        for ep in old.into_iter().flatten() {
            ep.cancel.cancel();
        }
        *endpoints = new;
    }

    /// The counters of every endpoint, in config order.
    pub fn snapshot(&self) -> Vec<WebhookStats> {
        let now = tokio::time::Instant::now();
        self.inner
            .endpoints()
            .iter()
            .map(|ep| {
                let c = &ep.counters;
                let breaker = ep.breaker();
                WebhookStats {
                    url: ep.display_url.clone(),
                    events: ep.config.events.clone(),
                    signed: ep.config.secret.is_some(),
                    queued: ep.queued(),
                    delivered: c.delivered.load(Ordering::Relaxed),
                    failed_attempts: c.failed_attempts.load(Ordering::Relaxed),
                    given_up: c.given_up.load(Ordering::Relaxed),
                    dropped: c.dropped.load(Ordering::Relaxed),
                    breaker: breaker.state(now),
                    breaker_opened: breaker.times_opened(),
                }
            })
            .collect()
    }

    /// Sets (or, with an empty `url`, turns off) the `on_publish` hook.
    pub fn set_on_publish(&self, config: &OnPublishConfig) {
        *self
            .inner
            .on_publish
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = config.clone();
    }

    /// Asks the `on_publish` hook whether the publish `event` describes
    /// (a `publish_start` event, not necessarily emitted yet: its `id` may be
    /// 0) may go ahead: the event's JSON is POSTed, signed as webhooks are;
    /// any 2xx allows it, any other status refuses it; when the hook times
    /// out or cannot be reached, `on_publish.default` decides. Without a
    /// hook every publish is allowed. The `Err` text says why, for the log
    /// and the publisher.
    pub async fn allow_publish(&self, event: &Event) -> Result<(), String> {
        let config = self
            .inner
            .on_publish
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if config.url.is_empty() {
            return Ok(());
        }
        let secret = (!config.secret.is_empty()).then_some(config.secret.as_bytes());
        let body = Bytes::from(event.to_json());
        let req = delivery::request(
            &self.inner.client,
            &config.url,
            secret,
            event,
            body,
            config.timeout,
        );
        let display_url = crate::hub::source::redact(&config.url);
        match req.send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!(
                "refused by the on_publish hook (HTTP {})",
                r.status().as_u16()
            )),
            Err(e) => {
                let e = e.without_url();
                match config.default {
                    OnPublishDefault::Allow => {
                        tracing::warn!(url = %display_url, error = %e, path = ?event.path, "on_publish hook not reachable; allowing (on_publish.default = \"allow\")");
                        Ok(())
                    }
                    OnPublishDefault::Deny => Err(format!(
                        "on_publish hook not reachable ({e}); refusing (on_publish.default = \"deny\")"
                    )),
                }
            }
        }
    }
}

/// Takes events from the bus and offers them to the endpoints.
async fn dispatch(
    inner: Arc<Inner>,
    mut rx: tokio::sync::broadcast::Receiver<Arc<Event>>,
    shutdown: CancellationToken,
) {
    let _done = inner.dispatcher_done.clone().drop_guard();
    loop {
        let received = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = inner.drain.cancelled() => {
                loop {
                    match rx.try_recv() {
                        Ok(event) => inner.offer(&event),
                        Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => {}
                        Err(_) => return,
                    }
                }
            }
            r = rx.recv() => r,
        };
        match received {
            Ok(event) => inner.offer(&event),
            Err(RecvError::Lagged(n)) => {
                // Which kinds were lost is unknown: every endpoint counts them.
                for ep in inner.endpoints().iter() {
                    ep.counters.dropped.fetch_add(n, Ordering::Relaxed);
                }
                tracing::warn!(
                    missed = n,
                    "webhook dispatcher fell behind the event bus; events dropped"
                );
            }
            Err(RecvError::Closed) => return,
        }
    }
}
