//! The registry of live sessions (publishers and readers of every protocol),
//! for the API: list, inspect, kick.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::reader::ReaderQueue;

/// The protocol a session speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Rtmp,
    Rtsp,
    Hls,
    #[serde(rename = "webrtc")]
    WebRtc,
}

/// Whether a session brings media in or takes it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Publisher,
    Reader,
}

/// Byte counters of a path, shared by its sessions.
#[derive(Debug, Default)]
pub struct Counters {
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
}

/// One live session.
#[derive(Debug)]
pub struct Session {
    pub id: u64,
    pub protocol: Protocol,
    pub role: Role,
    pub path: String,
    /// Peer address, IPv4-mapped addresses shown as IPv4.
    pub remote: Option<SocketAddr>,
    /// The query string the client sent with the path (kept for auth).
    pub query: String,
    /// A bearer token the client sent (WHIP's `Authorization`; kept for auth).
    pub token: Option<String>,
    pub started: SystemTime,
    pub counters: Counters,
    path_counters: Arc<Counters>,
    cancel: CancellationToken,
    /// Set with `cancel` by [`Session::cancel`], the only way a session is
    /// cancelled: what [`Session::is_cancelled`] reads, a flag beside the
    /// counters a request updates anyway rather than the token's node
    /// behind a lock (HLS asks on every request).
    cancelled: AtomicBool,
    reader: OnceLock<Arc<ReaderQueue>>,
}

impl Session {
    pub fn add_bytes_in(&self, n: u64) {
        self.counters.bytes_in.fetch_add(n, Ordering::Relaxed);
        self.path_counters.bytes_in.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_bytes_out(&self, n: u64) {
        self.counters.bytes_out.fetch_add(n, Ordering::Relaxed);
        self.path_counters.bytes_out.fetch_add(n, Ordering::Relaxed);
    }

    /// Cancelled when the session is kicked (or replaced by a takeover).
    pub fn cancelled(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.cancel.cancelled()
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    pub(crate) fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
        self.cancel.cancel();
        if let Some(queue) = self.reader.get() {
            queue.kick();
        }
    }

    /// A token cancelled with the session, for a task to wait on and to
    /// stop with: cancelling it ends what waits on it (and its clones), not
    /// the session, which only [`Session::cancel`] cancels.
    pub(crate) fn cancel_token(&self) -> CancellationToken {
        self.cancel.child_token()
    }

    pub(crate) fn set_reader(&self, queue: Arc<ReaderQueue>) {
        if self.is_cancelled() {
            queue.kick();
        }
        let _ = self.reader.set(queue);
    }

    /// Frames this session lost as a slow reader.
    pub fn frames_dropped(&self) -> u64 {
        self.reader.get().map_or(0, |q| q.dropped())
    }

    /// Frames this session took from its queue.
    pub fn frames_delivered(&self) -> u64 {
        self.reader.get().map_or(0, |q| q.delivered())
    }
}

/// Every live session by id.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    sessions: Mutex<BTreeMap<u64, Arc<Session>>>,
    next_id: AtomicU64,
}

/// What a new session is.
#[derive(Debug, Clone)]
pub struct SessionSpec {
    pub protocol: Protocol,
    pub role: Role,
    pub path: String,
    pub remote: Option<SocketAddr>,
    pub query: String,
    pub token: Option<String>,
}

impl Registry {
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(crate) fn insert(&self, spec: SessionSpec, path_counters: Arc<Counters>) -> Arc<Session> {
        let session = Arc::new(Session {
            id: self.next_id(),
            protocol: spec.protocol,
            role: spec.role,
            path: spec.path,
            remote: spec.remote,
            query: spec.query,
            token: spec.token,
            started: SystemTime::now(),
            counters: Counters::default(),
            path_counters,
            cancel: CancellationToken::new(),
            cancelled: AtomicBool::new(false),
            reader: OnceLock::new(),
        });
        self.lock().insert(session.id, Arc::clone(&session));
        session
    }

    pub(crate) fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    pub(crate) fn get(&self, id: u64) -> Option<Arc<Session>> {
        self.lock().get(&id).cloned()
    }

    pub(crate) fn all(&self) -> Vec<Arc<Session>> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Session>>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_cancel_cancels_a_session_and_the_tasks_tokens_follow_it() {
        let registry = Registry::default();
        let session = registry.insert(
            SessionSpec {
                protocol: Protocol::Rtmp,
                role: Role::Publisher,
                path: "p".into(),
                remote: None,
                query: String::new(),
                token: None,
            },
            Arc::default(),
        );
        let task = session.cancel_token();
        let waiting = task.clone();
        task.cancel();
        assert!(waiting.is_cancelled(), "the task's clones stop with it");
        assert!(
            !session.is_cancelled(),
            "a task's token stops the task alone"
        );
        let other = session.cancel_token();
        assert!(!other.is_cancelled());
        session.cancel();
        assert!(session.is_cancelled());
        assert!(
            other.is_cancelled(),
            "cancelling the session stops its tasks"
        );
    }
}
