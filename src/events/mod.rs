//! One event model for everything that happens to paths and sessions
//! (`publish_start`, `read_stop`, `source_error`, `config_changed` …), and
//! the bus that hands events to the SSE stream and the webhook deliverer.
//!
//! Emitting never blocks and never allocates per subscriber: an event is one
//! `Arc`, kept in a bounded ring (for `Last-Event-ID` resumes) and sent on a
//! bounded broadcast channel. A subscriber that falls behind loses the oldest
//! events and is told how many (`RecvError::Lagged`); media never waits.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::broadcast;

use crate::hub::{Protocol, Role, Session};

pub mod sse;
pub mod webhook;

/// Events kept for resumption (`Last-Event-ID`) and the broadcast capacity.
pub const RING_CAPACITY: usize = 1024;

/// What happened.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    PublishStart,
    PublishStop,
    ReadStart,
    ReadStop,
    SourceReady,
    SourceError,
    ConfigChanged,
}

impl EventKind {
    pub const ALL: [EventKind; 7] = [
        EventKind::PublishStart,
        EventKind::PublishStop,
        EventKind::ReadStart,
        EventKind::ReadStop,
        EventKind::SourceReady,
        EventKind::SourceError,
        EventKind::ConfigChanged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::PublishStart => "publish_start",
            EventKind::PublishStop => "publish_stop",
            EventKind::ReadStart => "read_start",
            EventKind::ReadStop => "read_stop",
            EventKind::SourceReady => "source_ready",
            EventKind::SourceError => "source_error",
            EventKind::ConfigChanged => "config_changed",
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for EventKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        EventKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<_> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
                format!("unknown event {s:?}; known: {}", known.join(", "))
            })
    }
}

/// One event, as the SSE stream and webhook bodies carry it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Event {
    /// Increasing from 1 for the life of the process (SSE `id:`).
    pub id: u64,
    pub event: EventKind,
    #[serde(serialize_with = "crate::hub::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub time: SystemTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_addr: Option<String>,
    /// The session's (or source's) counters when it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_in: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_out: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frames_dropped: Option<u64>,
    /// `source_error`: what went wrong, in words (credentials redacted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `config_changed`: what changed (`paths` added/removed/changed,
    /// `global` keys) and what caused it (`api`, `reload`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub detail: Option<serde_json::Value>,
}

impl Event {
    /// An event about nothing in particular yet; fill in what applies.
    pub fn new(event: EventKind) -> Event {
        Event {
            id: 0,
            event,
            time: SystemTime::now(),
            path: None,
            session_id: None,
            protocol: None,
            remote_addr: None,
            bytes_in: None,
            bytes_out: None,
            frames_dropped: None,
            error: None,
            detail: None,
        }
    }

    /// `publish_start` / `read_start` for a session that just registered.
    pub fn session_start(s: &Session) -> Event {
        let kind = match s.role {
            Role::Publisher => EventKind::PublishStart,
            Role::Reader => EventKind::ReadStart,
        };
        Event::for_session(kind, s)
    }

    /// `publish_stop` / `read_stop` for a session that ended, with its
    /// counters.
    pub fn session_stop(s: &Session) -> Event {
        let kind = match s.role {
            Role::Publisher => EventKind::PublishStop,
            Role::Reader => EventKind::ReadStop,
        };
        let mut e = Event::for_session(kind, s);
        e.bytes_in = Some(s.counters.bytes_in.load(Ordering::Relaxed));
        e.bytes_out = Some(s.counters.bytes_out.load(Ordering::Relaxed));
        e.frames_dropped = Some(s.frames_dropped());
        e
    }

    fn for_session(kind: EventKind, s: &Session) -> Event {
        Event {
            path: Some(s.path.clone()),
            session_id: Some(s.id),
            protocol: Some(s.protocol),
            remote_addr: s.remote.map(|a: SocketAddr| a.to_string()),
            ..Event::new(kind)
        }
    }

    /// The event as JSON text (SSE data, webhook body).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }
}

/// Where events go: a bounded ring of the latest ones and a broadcast to
/// live subscribers. Cheap to clone.
#[derive(Clone)]
pub struct EventBus {
    inner: Arc<BusInner>,
}

struct BusInner {
    next_id: AtomicU64,
    ring: Mutex<VecDeque<Arc<Event>>>,
    tx: broadcast::Sender<Arc<Event>>,
    emitted: AtomicU64,
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus")
            .field("next_id", &self.next_id())
            .finish()
    }
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus::new()
    }
}

/// What a subscriber gets: the kept events after the one it last saw, then
/// live ones.
pub struct Subscription {
    /// Kept events newer than the `Last-Event-ID` asked for, oldest first.
    pub backlog: Vec<Arc<Event>>,
    /// Events older than the ring that the subscriber missed (its
    /// `Last-Event-ID` fell out of the ring); 0 when nothing was missed.
    pub missed: u64,
    pub live: broadcast::Receiver<Arc<Event>>,
}

impl EventBus {
    pub fn new() -> EventBus {
        let (tx, _) = broadcast::channel(RING_CAPACITY);
        EventBus {
            inner: Arc::new(BusInner {
                next_id: AtomicU64::new(1),
                ring: Mutex::new(VecDeque::with_capacity(RING_CAPACITY)),
                tx,
                emitted: AtomicU64::new(0),
            }),
        }
    }

    /// Numbers `event`, keeps it and hands it to subscribers. Never blocks
    /// on a subscriber.
    pub fn emit(&self, mut event: Event) -> Arc<Event> {
        let mut ring = self.inner.ring.lock().unwrap_or_else(|e| e.into_inner());
        // Numbered under the ring lock, so ids in the ring are in order.
        event.id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let event = Arc::new(event);
        if ring.len() == RING_CAPACITY {
            ring.pop_front();
        }
        ring.push_back(Arc::clone(&event));
        // No subscriber is not an error.
        let _ = self.inner.tx.send(Arc::clone(&event));
        drop(ring);
        self.inner.emitted.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(event = %event.event, path = ?event.path, session = ?event.session_id, "event");
        event
    }

    /// Live events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.inner.tx.subscribe()
    }

    /// Kept events after `last_id` (none for `None`: a fresh SSE client
    /// wants what comes next), then live ones, with nothing lost or repeated
    /// in between: the receiver is subscribed under the ring's lock, which
    /// `emit` holds while it sends.
    pub fn resume(&self, last_id: Option<u64>) -> Subscription {
        let ring = self.inner.ring.lock().unwrap_or_else(|e| e.into_inner());
        let live = self.inner.tx.subscribe();
        let Some(last) = last_id else {
            return Subscription {
                backlog: Vec::new(),
                missed: 0,
                live,
            };
        };
        let oldest = ring.front().map(|e| e.id);
        let backlog: Vec<_> = ring.iter().filter(|e| e.id > last).cloned().collect();
        let missed = match oldest {
            Some(oldest) if last + 1 < oldest => oldest - last - 1,
            _ => 0,
        };
        Subscription {
            backlog,
            missed,
            live,
        }
    }

    /// Events emitted since start.
    pub fn emitted(&self) -> u64 {
        self.inner.emitted.load(Ordering::Relaxed)
    }

    /// The id the next event will get.
    pub fn next_id(&self) -> u64 {
        self.inner.next_id.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emit_n(bus: &EventBus, n: usize) {
        for _ in 0..n {
            bus.emit(Event::new(EventKind::ConfigChanged));
        }
    }

    #[test]
    fn ids_increase_and_resume_returns_what_came_after() {
        let bus = EventBus::new();
        emit_n(&bus, 3);
        let sub = bus.resume(Some(1));
        let ids: Vec<u64> = sub.backlog.iter().map(|e| e.id).collect();
        assert_eq!(ids, [2, 3]);
        assert_eq!(sub.missed, 0);
        assert!(bus.resume(None).backlog.is_empty());
        assert!(bus.resume(Some(3)).backlog.is_empty());
    }

    #[test]
    fn a_resume_from_before_the_ring_says_how_much_was_missed() {
        let bus = EventBus::new();
        emit_n(&bus, RING_CAPACITY + 10);
        let sub = bus.resume(Some(5));
        assert_eq!(sub.backlog.len(), RING_CAPACITY);
        assert_eq!(sub.backlog[0].id, 11);
        assert_eq!(sub.missed, 5, "ids 6..=10 are gone");
    }

    #[tokio::test]
    async fn live_events_follow_the_backlog_without_gap_or_repeat() {
        let bus = EventBus::new();
        emit_n(&bus, 2);
        let mut sub = bus.resume(Some(0));
        emit_n(&bus, 1);
        assert_eq!(sub.backlog.len(), 2);
        assert_eq!(sub.live.recv().await.unwrap().id, 3);
    }

    #[test]
    fn a_lagging_subscriber_does_not_hold_up_emit() {
        let bus = EventBus::new();
        let mut rx = bus.subscribe();
        emit_n(&bus, RING_CAPACITY * 3);
        assert!(matches!(
            rx.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(_))
        ));
    }

    #[test]
    fn kinds_round_trip_through_their_names() {
        for k in EventKind::ALL {
            assert_eq!(k.as_str().parse::<EventKind>(), Ok(k));
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        assert!("nope".parse::<EventKind>().is_err());
    }
}
