//! Pulled sources (IP cameras): the interface the hub uses to start one, and
//! the status a source reports for the API. The protocol work lives in
//! `ingest`; the hub only starts, stops and watches sources.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{Protocol, Publisher};
use crate::config::PathSettings;
use crate::events::{Event, EventBus, EventKind};

/// What a pulled source is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SourceState {
    /// Not running (on demand, nobody reading).
    Idle,
    /// Connecting to the camera.
    Connecting,
    /// Media is flowing.
    Ready,
    /// The last attempt failed; waiting to try again.
    Retrying,
}

/// The live status of a pulled source, shared between its task and the API.
#[derive(Debug)]
pub struct SourceStatus {
    /// `rtsp` or `rtmp`.
    pub kind: &'static str,
    /// The source URL without credentials.
    pub url: String,
    inner: Mutex<StatusInner>,
    /// Where `source_ready` / `source_error` go, and the path they are about.
    events: Option<(EventBus, String)>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StatusInner {
    pub state: SourceState,
    pub last_error: Option<String>,
    /// Failed attempts since the source was last ready.
    pub retries: u32,
    #[serde(serialize_with = "rfc3339_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_retry: Option<SystemTime>,
    /// Times the source became ready (the first connection and every
    /// reconnection after it).
    pub connects: u64,
    /// Failed attempts in all.
    pub failures: u64,
    /// RTP packets the source lost (sequence gaps), since the path started.
    pub packets_lost: u64,
    /// Video frames not passed on because a loss broke their reference
    /// chain (dropped up to the next keyframe).
    pub frames_discarded: u64,
}

fn rfc3339_opt<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => super::rfc3339(t, s),
        None => s.serialize_none(),
    }
}

impl SourceStatus {
    pub fn new(kind: &'static str, url: String) -> Self {
        SourceStatus {
            kind,
            url,
            inner: Mutex::new(StatusInner {
                state: SourceState::Idle,
                last_error: None,
                retries: 0,
                next_retry: None,
                connects: 0,
                failures: 0,
                packets_lost: 0,
                frames_discarded: 0,
            }),
            events: None,
        }
    }

    /// Reports becoming ready and failed attempts as events about `path`.
    pub fn with_events(mut self, bus: EventBus, path: String) -> Self {
        self.events = Some((bus, path));
        self
    }

    fn emit(&self, kind: EventKind, error: Option<String>) {
        if let Some((bus, path)) = &self.events {
            let mut e = Event::new(kind);
            e.path = Some(path.clone());
            e.protocol = Some(self.protocol());
            e.error = error;
            e.detail = Some(serde_json::json!({ "source": self.url }));
            bus.emit(e);
        }
    }

    /// The protocol the source speaks.
    pub fn protocol(&self) -> Protocol {
        if self.kind == "rtmp" {
            Protocol::Rtmp
        } else {
            Protocol::Rtsp
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StatusInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn snapshot(&self) -> StatusInner {
        self.lock().clone()
    }

    pub fn state(&self) -> SourceState {
        self.lock().state
    }

    pub fn set_connecting(&self) {
        let mut s = self.lock();
        s.state = SourceState::Connecting;
        s.next_retry = None;
    }

    /// Media flows: the retry count starts over.
    pub fn set_ready(&self) {
        let mut s = self.lock();
        s.state = SourceState::Ready;
        s.retries = 0;
        s.connects = s.connects.saturating_add(1);
        s.next_retry = None;
        drop(s);
        self.emit(EventKind::SourceReady, None);
    }

    /// An attempt failed; the next one is at `next_retry`.
    pub fn set_retrying(&self, error: String, next_retry: SystemTime) {
        let mut s = self.lock();
        s.state = SourceState::Retrying;
        s.last_error = Some(error);
        s.retries = s.retries.saturating_add(1);
        s.failures = s.failures.saturating_add(1);
        s.next_retry = Some(next_retry);
        let error = s.last_error.clone();
        drop(s);
        self.emit(EventKind::SourceError, error);
    }

    /// `packets` RTP packets were lost before a frame.
    pub fn add_lost(&self, packets: u64) {
        let mut s = self.lock();
        s.packets_lost = s.packets_lost.saturating_add(packets);
    }

    /// A frame was discarded while waiting for a keyframe after a loss.
    pub fn add_discarded(&self) {
        let mut s = self.lock();
        s.frames_discarded = s.frames_discarded.saturating_add(1);
    }

    pub fn set_idle(&self) {
        let mut s = self.lock();
        s.state = SourceState::Idle;
        s.next_retry = None;
    }
}

/// Everything a pulled source needs to run.
pub struct PullJob {
    pub path: String,
    pub settings: PathSettings,
    /// The path's publisher slot, held for the life of the source (across
    /// reconnects, so readers stay connected).
    pub publisher: Publisher,
    pub status: Arc<SourceStatus>,
    /// Cancelled when the source must stop (idle on demand, shutdown).
    pub cancel: CancellationToken,
}

/// Starts pulled sources; implemented by the RTSP and RTMP ingests (and
/// `ingest::pull::SchemePuller`, which routes to them by URL scheme).
pub trait Puller: Send + Sync + 'static {
    /// Runs the source until `job.cancel` is cancelled, reconnecting by
    /// itself.
    fn pull(&self, job: PullJob) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// A URL with its credentials removed, for logs and the API: the user
/// information goes, and secret query values become `***` (all of them for
/// RTMP, whose query string is how a player authenticates to an origin; see
/// [`is_secret_query_key`](crate::config::live::is_secret_query_key)).
pub fn redact(url: &str) -> String {
    match url::Url::parse(&crate::config::live::redact_url_password(url)) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => "<invalid url>".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_reach_the_api() {
        assert_eq!(
            redact("rtsp://admin:secret@10.0.0.5:554/Streaming/Channels/101"),
            "rtsp://10.0.0.5:554/Streaming/Channels/101"
        );
    }

    #[test]
    fn query_credentials_never_reach_the_api() {
        assert_eq!(
            redact("rtmp://origin:1935/live/src?user=edge&pass=s3cret"),
            "rtmp://origin:1935/live/src?user=***&pass=***"
        );
        assert_eq!(
            redact("rtsp://cam/realmonitor?channel=1&token=abc&subtype=0"),
            "rtsp://cam/realmonitor?channel=1&token=***&subtype=0"
        );
        assert_eq!(redact("rtmp://origin/live/src"), "rtmp://origin/live/src");
    }

    #[test]
    fn status_counts_retries_until_ready() {
        let s = SourceStatus::new("rtsp", "rtsp://x/".into());
        s.set_retrying("401 Unauthorized from camera".into(), SystemTime::now());
        s.set_retrying("401 Unauthorized from camera".into(), SystemTime::now());
        assert_eq!(s.snapshot().retries, 2);
        assert_eq!(s.state(), SourceState::Retrying);
        s.set_ready();
        assert_eq!(s.snapshot().retries, 0);
        assert_eq!(
            s.snapshot().last_error.as_deref(),
            Some("401 Unauthorized from camera")
        );
    }
}
