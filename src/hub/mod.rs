//! The hub: paths, their publisher slot and stream, readers, sessions.
//!
//! Every ingest and egress talks to the hub through the small handles here:
//! a [`Publisher`] writes frames into a path's [`Stream`]; a [`Reader`] takes
//! them out through its own bounded queue. The hub never waits on a reader.

mod gop;
mod meter;
mod reader;
mod reconfigure;
mod session;
pub mod source;
mod stream;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

pub use gop::StartAt;
pub use reader::{AUDIO_HOLD_FRAMES, AUDIO_HOLD_MAX, Reader, Recv, WakePolicy};
pub use session::{Counters, Protocol, Role, Session, SessionSpec};
pub use stream::Stream;

use crate::config::{Config, PathNameError, PathSettings, Source, validate_path_name};
use crate::events::{Event, EventBus};
use crate::media::{CodecParams, Frame, Track, timestamp};
use session::Registry;
use source::{PullJob, Puller, SourceStatus, StatusInner};

/// Why a publish was refused.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("invalid path name {path:?}: {source}")]
    InvalidPath { path: String, source: PathNameError },
    #[error("path {path:?} already has a publisher (session {session_id})")]
    Busy { path: String, session_id: u64 },
    #[error("path {path:?} pulls its media from {source_url}, it takes no publisher")]
    NotPublishable { path: String, source_url: String },
    #[error("path {path:?} would be one more than the {limit} paths allowed (limits.max_paths)")]
    TooManyPaths { path: String, limit: usize },
}

/// Why a read was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("invalid path name {path:?}: {source}")]
    InvalidPath { path: String, source: PathNameError },
    #[error("no stream is published on path {path:?}")]
    NotFound { path: String },
    #[error("the source of path {path:?} is not ready: {reason}")]
    NotReady { path: String, reason: String },
    #[error("path {path:?} has its maximum of {limit} readers")]
    TooManyReaders { path: String, limit: usize },
}

/// The hub. Cheap to clone.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

struct HubInner {
    config: RwLock<Arc<Config>>,
    paths: Mutex<HashMap<String, Arc<Path>>>,
    sessions: Registry,
    next_id: AtomicU64,
    shutdown: CancellationToken,
    puller: OnceLock<Arc<dyn Puller>>,
    events: EventBus,
    /// Tells subscribers about a new running configuration.
    config_tx: tokio::sync::watch::Sender<Arc<Config>>,
    /// Held while a change is computed and applied, so two changes do not
    /// both start from the same configuration.
    config_change: Mutex<()>,
}

/// A named path: at most one publisher, any number of readers.
pub struct Path {
    pub name: String,
    pub created: SystemTime,
    pub counters: Arc<Counters>,
    state: Mutex<PathState>,
    /// Bumped whenever a stream starts, for readers that wait for one.
    started: tokio::sync::watch::Sender<u64>,
    /// Readers waiting for the path's stream (they keep an on-demand source up).
    waiters: AtomicUsize,
}

/// A pulled source running for a path.
struct RunningSource {
    id: u64,
    status: Arc<SourceStatus>,
}

struct PathState {
    stream: Option<Arc<Stream>>,
    publisher: Option<Arc<Session>>,
    source: Option<RunningSource>,
    /// Bumped whenever the publisher slot changes, so a stale grace timer
    /// knows it is stale.
    epoch: u64,
}

impl Path {
    fn new(name: &str) -> Path {
        Path {
            name: name.to_string(),
            created: SystemTime::now(),
            counters: Arc::new(Counters::default()),
            state: Mutex::new(PathState {
                stream: None,
                publisher: None,
                source: None,
                epoch: 0,
            }),
            started: tokio::sync::watch::Sender::new(0),
            waiters: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PathState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A registered session; dropping it removes it from the registry.
pub struct SessionHandle {
    session: Arc<Session>,
    hub: Hub,
}

impl SessionHandle {
    /// The session itself, to keep beyond the handle.
    pub fn arc(&self) -> &Arc<Session> {
        &self.session
    }

    /// The hub the session is registered with.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }
}

impl std::ops::Deref for SessionHandle {
    type Target = Session;
    fn deref(&self) -> &Session {
        &self.session
    }
}

impl Drop for SessionHandle {
    fn drop(&mut self) {
        self.hub.inner.sessions.remove(self.session.id);
        self.hub
            .inner
            .events
            .emit(Event::session_stop(&self.session));
    }
}

/// A reader session: the reader and its registry entry.
pub struct Reading {
    pub reader: Reader,
    pub session: SessionHandle,
}

impl Hub {
    pub fn new(config: Arc<Config>) -> Hub {
        Hub {
            inner: Arc::new(HubInner {
                config_tx: tokio::sync::watch::Sender::new(Arc::clone(&config)),
                config_change: Mutex::new(()),
                config: RwLock::new(config),
                paths: Mutex::new(HashMap::new()),
                sessions: Registry::default(),
                next_id: AtomicU64::new(0),
                shutdown: CancellationToken::new(),
                puller: OnceLock::new(),
                events: EventBus::new(),
            }),
        }
    }

    /// The running configuration.
    pub fn config(&self) -> Arc<Config> {
        self.inner
            .config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn paths(&self) -> MutexGuard<'_, HashMap<String, Arc<Path>>> {
        self.inner.paths.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn next_id(&self) -> u64 {
        self.inner.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The path `name`, created if it does not exist and fewer than `limit`
    /// paths do (`0`: no limit); `None` when it would be one too many.
    fn get_or_create_path_within(&self, name: &str, limit: usize) -> Option<Arc<Path>> {
        let mut paths = self.paths();
        if let Some(path) = paths.get(name) {
            return Some(Arc::clone(path));
        }
        if limit != 0 && paths.len() >= limit {
            return None;
        }
        let path = Arc::new(Path::new(name));
        paths.insert(name.to_string(), Arc::clone(&path));
        Some(path)
    }

    fn get_or_create_path(&self, name: &str) -> Arc<Path> {
        let mut paths = self.paths();
        Arc::clone(
            paths
                .entry(name.to_string())
                .or_insert_with(|| Arc::new(Path::new(name))),
        )
    }

    /// Removes a path that has neither publisher nor stream.
    fn forget_if_idle(&self, path: &Arc<Path>) {
        let mut paths = self.paths();
        let st = path.lock();
        if st.publisher.is_none()
            && st.stream.is_none()
            && st.source.is_none()
            && path.waiters.load(Ordering::Relaxed) == 0
            && paths.get(&path.name).is_some_and(|p| Arc::ptr_eq(p, path))
        {
            paths.remove(&path.name);
        }
    }

    /// Refuses a new reader of `path` when it has `limits.max_readers_per_path`
    /// reader sessions already (every protocol counts).
    pub fn check_reader_limit(&self, path: &str) -> Result<(), ReadError> {
        let limit = self.config().limits.max_readers_per_path as usize;
        if limit == 0 {
            return Ok(());
        }
        let readers = self
            .inner
            .sessions
            .all()
            .iter()
            .filter(|s| s.role == Role::Reader && s.path == path)
            .count();
        if readers >= limit {
            return Err(ReadError::TooManyReaders {
                path: path.to_string(),
                limit,
            });
        }
        Ok(())
    }

    /// The counters of the path `name` (detached ones if there is no such
    /// path): a holder counts into them without looking the path up.
    pub fn path_counters(&self, name: &str) -> Arc<Counters> {
        self.paths()
            .get(name)
            .map(|p| Arc::clone(&p.counters))
            .unwrap_or_default()
    }

    /// Registers a session that is not a publisher or a queue reader of
    /// the hub (an HLS viewer, served by the path's muxer). It counts
    /// towards its path's bytes and ends when the handle is dropped.
    pub fn register_session(&self, spec: SessionSpec) -> SessionHandle {
        let counters = self.path_counters(&spec.path);
        self.register(spec, counters)
    }

    fn register(&self, spec: SessionSpec, counters: Arc<Counters>) -> SessionHandle {
        let session = self.inner.sessions.insert(spec, counters);
        self.inner.events.emit(Event::session_start(&session));
        // A hub shutdown cancels every session: those registered before it
        // in `shutdown`, this one here if it came after.
        if self.inner.shutdown.is_cancelled() {
            session.cancel();
        }
        SessionHandle {
            session,
            hub: self.clone(),
        }
    }

    /// Takes the publisher slot of `spec.path`.
    ///
    /// A path with a publisher refuses a second one unless its rule allows a
    /// takeover, in which case the first is kicked and the second continues
    /// the same stream.
    pub fn publish(&self, spec: SessionSpec) -> Result<Publisher, PublishError> {
        validate_path_name(&spec.path).map_err(|source| PublishError::InvalidPath {
            path: spec.path.clone(),
            source,
        })?;
        let settings = self.config().path_settings(&spec.path);
        if let Some(url) = settings.source.pull_url() {
            return Err(PublishError::NotPublishable {
                path: spec.path,
                source_url: source::redact(url),
            });
        }
        let limit = self.config().limits.max_paths as usize;
        let Some(path) = self.get_or_create_path_within(&spec.path, limit) else {
            return Err(PublishError::TooManyPaths {
                path: spec.path,
                limit,
            });
        };
        let mut st = path.lock();
        if let Some(current) = &st.publisher {
            if !settings.takeover {
                return Err(PublishError::Busy {
                    path: spec.path,
                    session_id: current.id,
                });
            }
            tracing::info!(path = %path.name, old = current.id, "publisher taken over");
            current.cancel();
        }
        let session = self.register(spec, Arc::clone(&path.counters));
        st.publisher = Some(Arc::clone(&session.session));
        st.epoch += 1;
        drop(st);
        Ok(Publisher {
            hub: self.clone(),
            path,
            session,
            settings,
            stream: None,
            continue_from: None,
            offset: None,
        })
    }

    /// Registers the implementation that pulls sources (set once, at start).
    pub fn set_puller(&self, puller: Arc<dyn Puller>) {
        let _ = self.inner.puller.set(puller);
    }

    /// Starts the sources that are pulled all the time (`on_demand = false`).
    pub fn start_pulled_sources(&self) {
        let config = self.config();
        for name in config.always_pulled() {
            let settings = config.path_settings(&name);
            let path = self.get_or_create_path(&name);
            self.ensure_source(&path, &settings);
        }
    }

    /// Starts the path's pulled source unless it runs already.
    fn ensure_source(
        &self,
        path: &Arc<Path>,
        settings: &PathSettings,
    ) -> Option<Arc<SourceStatus>> {
        let (Some(url), Some(kind)) = (settings.source.pull_url(), settings.source.kind()) else {
            return None;
        };
        let puller = self.inner.puller.get()?.clone();
        let mut st = path.lock();
        if let Some(running) = &st.source {
            return Some(Arc::clone(&running.status));
        }
        let id = self.next_id();
        let session = self.register(
            SessionSpec {
                protocol: source_protocol(&settings.source),
                role: Role::Publisher,
                path: path.name.clone(),
                remote: None,
                query: String::new(),
                token: None,
            },
            Arc::clone(&path.counters),
        );
        st.publisher = Some(Arc::clone(&session.session));
        st.epoch += 1;
        let status = Arc::new(
            SourceStatus::new(kind, source::redact(url))
                .with_events(self.inner.events.clone(), path.name.clone()),
        );
        let cancel = session.session.cancel_token();
        st.source = Some(RunningSource {
            id,
            status: Arc::clone(&status),
        });
        drop(st);
        tracing::info!(path = %path.name, source = %status.url, on_demand = settings.on_demand, "starting pulled source");
        let publisher = Publisher {
            hub: self.clone(),
            path: Arc::clone(path),
            session,
            settings: settings.clone(),
            stream: None,
            continue_from: None,
            offset: None,
        };
        let job = PullJob {
            path: path.name.clone(),
            settings: settings.clone(),
            publisher,
            status: Arc::clone(&status),
            cancel: cancel.clone(),
        };
        let hub = self.clone();
        let p = Arc::clone(path);
        tokio::spawn(async move {
            puller.pull(job).await;
            let mut st = p.lock();
            if st.source.as_ref().is_some_and(|s| s.id == id) {
                st.source = None;
            }
            drop(st);
            hub.forget_if_idle(&p);
        });
        if settings.on_demand {
            self.watch_idle(Arc::clone(path), cancel, settings.on_demand_close_after);
        }
        Some(status)
    }

    /// Stops an on-demand source once nobody read its path for `close_after`.
    fn watch_idle(&self, path: Arc<Path>, cancel: CancellationToken, close_after: Duration) {
        let hub = self.clone();
        tokio::spawn(async move {
            let tick = Duration::from_millis(250).min(close_after);
            let mut idle = Duration::ZERO;
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(tick) => {}
                }
                let readers = hub.stream(&path.name).map_or(0, |s| s.reader_count())
                    + path.waiters.load(Ordering::Relaxed);
                if readers > 0 {
                    idle = Duration::ZERO;
                    continue;
                }
                idle += tick;
                if idle >= close_after {
                    tracing::info!(path = %path.name, "on-demand source stopped: no readers for {close_after:?}");
                    cancel.cancel();
                    return;
                }
            }
        });
    }

    /// Adds a reader session to the stream of `spec.path`, waiting for a
    /// pulled source to start when the path has one (bounded by its
    /// `on_demand_start_timeout`).
    pub async fn read(&self, spec: SessionSpec, start: StartAt) -> Result<Reading, ReadError> {
        self.check_reader_limit(&spec.path)?;
        let reader = self.read_internal(&spec.path, start).await?;
        let counters = self
            .paths()
            .get(&spec.path)
            .map(|p| Arc::clone(&p.counters))
            .unwrap_or_default();
        let session = self.register(spec, counters);
        session.set_reader(Arc::clone(&reader.queue));
        Ok(Reading { reader, session })
    }

    /// A reader that is not a session of its own (the HLS muxer of a path,
    /// which serves many viewers).
    pub async fn read_internal(&self, path: &str, start: StartAt) -> Result<Reader, ReadError> {
        validate_path_name(path).map_err(|source| ReadError::InvalidPath {
            path: path.to_string(),
            source,
        })?;
        let capacity = self.config().reader_queue_frames;
        if let Some(stream) = self.stream(path) {
            return Ok(stream.attach(self.next_id(), start, capacity));
        }
        let settings = self.config().path_settings(path);
        if !settings.source.is_pulled() {
            return Err(ReadError::NotFound { path: path.into() });
        }
        let p = self.get_or_create_path(path);
        p.waiters.fetch_add(1, Ordering::Relaxed);
        let result = self.wait_for_stream(&p, &settings).await;
        p.waiters.fetch_sub(1, Ordering::Relaxed);
        let stream = result?;
        Ok(stream.attach(self.next_id(), start, capacity))
    }

    async fn wait_for_stream(
        &self,
        p: &Arc<Path>,
        settings: &PathSettings,
    ) -> Result<Arc<Stream>, ReadError> {
        let mut started = p.started.subscribe();
        let status = self.ensure_source(p, settings);
        let deadline = tokio::time::Instant::now() + settings.on_demand_start_timeout;
        loop {
            if let Some(stream) = self.stream(&p.name) {
                return Ok(stream);
            }
            tokio::select! {
                changed = started.changed() => if changed.is_err() { break },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        let reason = match status.map(|s| s.snapshot()) {
            Some(StatusInner {
                last_error: Some(e),
                ..
            }) => e,
            Some(_) => format!("no media within {:?}", settings.on_demand_start_timeout),
            None => "no source is configured to pull it".into(),
        };
        Err(ReadError::NotReady {
            path: p.name.clone(),
            reason,
        })
    }

    /// The live stream of a path, if any.
    pub fn stream(&self, path: &str) -> Option<Arc<Stream>> {
        let p = self.paths().get(path).cloned()?;
        let st = p.lock();
        st.stream.clone().filter(|s| !s.has_ended())
    }

    /// Every live session.
    pub fn sessions(&self) -> Vec<Arc<Session>> {
        self.inner.sessions.all()
    }

    pub fn session(&self, id: u64) -> Option<Arc<Session>> {
        self.inner.sessions.get(id)
    }

    /// Ends a session; returns false when there is no such session.
    pub fn kick(&self, id: u64) -> bool {
        match self.inner.sessions.get(id) {
            Some(s) => {
                tracing::info!(session = id, path = %s.path, "session kicked");
                s.cancel();
                true
            }
            None => false,
        }
    }

    /// Where path and session events go (SSE, webhooks).
    pub fn events(&self) -> &EventBus {
        &self.inner.events
    }

    /// Cancels every session (server shutdown).
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
        for s in self.inner.sessions.all() {
            s.cancel();
        }
    }

    /// Whether the server is shutting down (sessions end because of it).
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutdown.is_cancelled()
    }

    /// A snapshot of every path (live ones and configured pulled ones),
    /// sorted by name.
    pub fn path_snapshots(&self) -> Vec<PathSnapshot> {
        let live: Vec<Arc<Path>> = self.paths().values().cloned().collect();
        let sessions = self.sessions();
        let mut out: Vec<PathSnapshot> = live.iter().map(|p| snapshot(p, &sessions)).collect();
        let config = self.config();
        for (name, _) in config.paths.iter().filter(|(n, _)| !n.contains('*')) {
            if !out.iter().any(|p| &p.name == name)
                && let Some(idle) = idle_pulled_snapshot(&config, name)
            {
                out.push(idle);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// A snapshot of one path.
    pub fn path_snapshot(&self, name: &str) -> Option<PathSnapshot> {
        match self.paths().get(name).cloned() {
            Some(p) => Some(snapshot(&p, &self.sessions())),
            None => idle_pulled_snapshot(&self.config(), name),
        }
    }

    fn unpublish(&self, path: &Arc<Path>, session_id: u64, grace: Duration) {
        let mut st = path.lock();
        if st.publisher.as_ref().map(|s| s.id) != Some(session_id) {
            return; // replaced by a takeover
        }
        st.publisher = None;
        st.epoch += 1;
        let epoch = st.epoch;
        let Some(stream) = st.stream.clone() else {
            drop(st);
            self.forget_if_idle(path);
            return;
        };
        if grace.is_zero() {
            stream.end();
            st.stream = None;
            drop(st);
            self.forget_if_idle(path);
            return;
        }
        drop(st);
        tracing::info!(path = %path.name, ?grace, "publisher gone; stream kept for the grace period");
        let hub = self.clone();
        let path = Arc::clone(path);
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let mut st = path.lock();
            if st.epoch == epoch && st.publisher.is_none() {
                if let Some(s) = st.stream.take() {
                    tracing::info!(path = %path.name, "stream ended");
                    s.end();
                }
                drop(st);
                hub.forget_if_idle(&path);
            }
        });
    }
}

/// The write side of a path, held by an ingest session. Dropping it releases
/// the path; the stream stays for the grace period so that a publisher that
/// reconnects continues it.
pub struct Publisher {
    hub: Hub,
    path: Arc<Path>,
    session: SessionHandle,
    settings: PathSettings,
    stream: Option<Arc<Stream>>,
    /// Media time (ns) where this publisher continues an existing stream.
    continue_from: Option<i64>,
    /// Offset (ns) added to this publisher's timestamps, fixed by its first frame.
    offset: Option<i64>,
}

/// A publisher lost its slot to a takeover or a kick.
#[derive(Debug, thiserror::Error)]
#[error("publisher of {path:?} was replaced or kicked")]
pub struct Replaced {
    pub path: String,
}

impl Publisher {
    pub fn session(&self) -> &Session {
        &self.session
    }

    pub fn path(&self) -> &str {
        &self.path.name
    }

    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Starts the stream with these tracks, or continues the path's stream
    /// when the previous publisher left within the grace period and the track
    /// layout is the same (parameter changes become new track generations).
    pub fn start(&mut self, params: Vec<CodecParams>) -> Result<(), Replaced> {
        let mut st = self.path.lock();
        if st.publisher.as_ref().map(|s| s.id) != Some(self.session.id) {
            return Err(Replaced {
                path: self.path.name.clone(),
            });
        }
        let reusable = st
            .stream
            .as_ref()
            .filter(|s| !s.has_ended() && s.same_layout(&params))
            .cloned();
        let stream = match reusable {
            Some(s) => {
                for (i, p) in params.into_iter().enumerate() {
                    s.set_params(i, p);
                }
                self.continue_from = s.continuation_nanos();
                tracing::info!(path = %self.path.name, "publisher continues the stream");
                s
            }
            None => {
                if let Some(old) = st.stream.take() {
                    old.end();
                }
                let s = Arc::new(Stream::new(
                    self.hub.next_id(),
                    self.path.name.clone(),
                    params,
                    self.hub.config().gop_cache_max_bytes,
                ));
                st.stream = Some(Arc::clone(&s));
                s
            }
        };
        self.stream = Some(stream);
        // A publisher that starts again (a source reconnecting) rebases its
        // new timestamps on its first frame.
        self.offset = None;
        drop(st);
        self.path.started.send_modify(|n| *n += 1);
        Ok(())
    }

    /// The current generation of track `index` (after [`Publisher::start`]).
    pub fn track(&self, index: usize) -> Option<Arc<Track>> {
        self.stream.as_ref()?.track(index)
    }

    /// New parameters for a track (e.g. a new SPS): returns the track frames
    /// must point to from now on.
    pub fn set_params(&self, index: usize, params: CodecParams) -> Option<Arc<Track>> {
        self.stream.as_ref()?.set_params(index, params)
    }

    /// Writes one frame. Timestamps are rebased when this publisher continues
    /// an earlier stream, and kept monotonic per track.
    pub fn write(&mut self, mut frame: Frame) {
        let Some(stream) = &self.stream else {
            return;
        };
        let offset_nanos = *self.offset.get_or_insert_with(|| match self.continue_from {
            Some(c) => c - frame.dts_nanos(),
            None => 0,
        });
        if offset_nanos != 0 {
            let off = timestamp::rescale(offset_nanos, 1_000_000_000, frame.track.timescale());
            frame.dts += off;
            frame.pts += off;
        }
        if let Some(last) = stream.last_dts(frame.track.index)
            && frame.dts < last
        {
            tracing::debug!(path = %self.path.name, track = frame.track.index, dts = frame.dts, last, "dts went backwards; clamped");
            frame.pts += last - frame.dts;
            frame.dts = last;
        }
        self.session.add_bytes_in(frame.data.len() as u64);
        stream.write(frame);
    }

    /// Whether a reader asked for a keyframe since the last call.
    pub fn keyframe_requested(&self) -> bool {
        self.stream
            .as_ref()
            .is_some_and(|s| s.take_keyframe_request())
    }

    /// Resolves when this publisher is kicked or replaced.
    pub async fn cancelled(&self) {
        self.session.cancelled().await
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.hub
            .unpublish(&self.path, self.session.id, self.settings.publisher_grace);
    }
}

/// What the API shows of a path.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PathSnapshot {
    pub name: String,
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created: SystemTime,
    /// `publishing`, `waiting_for_publisher` (in the grace period),
    /// `waiting_for_source` (a pulled source that is not ready) or `idle`.
    #[schema(value_type = String, example = "publishing")]
    pub state: &'static str,
    pub source: Option<SourceSnapshot>,
    pub stream: Option<StreamSnapshot>,
    pub readers: Vec<ReaderSnapshot>,
    /// Reader sessions by protocol (`rtmp`, `webrtc`, `hls` …).
    pub readers_by_protocol: BTreeMap<Protocol, usize>,
    /// Frames dropped for readers that could not keep up, over the readers
    /// connected now.
    pub frames_dropped: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SourceSnapshot {
    #[serde(rename = "type")]
    pub kind: Protocol,
    pub session_id: Option<u64>,
    pub remote_addr: Option<String>,
    /// Pulled sources: the URL (without credentials) and how it is doing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Pulled sources: the source's status, flattened into this object.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = flattened_status_schema)]
    pub status: Option<StatusInner>,
}

/// The schema of [`SourceSnapshot::status`]: [`StatusInner`]'s keys, all
/// optional (pulled sources have them, publishers none).
fn flattened_status_schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
    use utoipa::PartialSchema;
    let mut schema = StatusInner::schema();
    if let utoipa::openapi::RefOr::T(utoipa::openapi::Schema::Object(o)) = &mut schema {
        o.required.clear();
        o.description = Some("Pulled sources only: how the source is doing.".into());
    }
    schema
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StreamSnapshot {
    pub id: u64,
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub online_since: SystemTime,
    pub tracks: Vec<TrackSnapshot>,
    pub frames_in: u64,
    pub gop_cache_bytes: usize,
    /// The video has B-frames: WebRTC players (browsers) drop many of them;
    /// LL-HLS plays them.
    pub b_frames: bool,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TrackSnapshot {
    pub index: usize,
    pub kind: crate::media::TrackKind,
    #[schema(value_type = String, example = "h264")]
    pub codec: &'static str,
    pub codec_string: String,
    pub generation: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channels: Option<u8>,
    /// Measured over the last second of media, in bits per second.
    pub bitrate: Option<u64>,
    /// Measured frames per second (video).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fps: Option<f64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReaderSnapshot {
    pub session_id: u64,
    pub protocol: Protocol,
    pub remote_addr: Option<String>,
    pub frames_dropped: u64,
}

/// A configured pulled path that is not running (on demand, nobody reading).
fn idle_pulled_snapshot(config: &Config, name: &str) -> Option<PathSnapshot> {
    if !config.paths.contains_key(name) {
        return None;
    }
    let settings = config.path_settings(name);
    let (Some(url), Some(kind)) = (settings.source.pull_url(), settings.source.kind()) else {
        return None;
    };
    let status = SourceStatus::new(kind, source::redact(url));
    Some(PathSnapshot {
        name: name.to_string(),
        created: SystemTime::now(),
        state: "idle",
        source: Some(SourceSnapshot {
            kind: source_protocol(&settings.source),
            session_id: None,
            remote_addr: None,
            url: Some(status.url.clone()),
            status: Some(status.snapshot()),
        }),
        stream: None,
        readers: Vec::new(),
        readers_by_protocol: BTreeMap::new(),
        frames_dropped: 0,
        bytes_in: 0,
        bytes_out: 0,
    })
}

/// The protocol a pulled source speaks (the publisher session's protocol).
fn source_protocol(source: &Source) -> Protocol {
    match source {
        Source::Rtmp(_) => Protocol::Rtmp,
        Source::Rtsp(_) | Source::Publisher => Protocol::Rtsp,
    }
}

/// Times in API output are RFC 3339 strings.
pub fn rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*t))
}

fn snapshot(path: &Arc<Path>, sessions: &[Arc<Session>]) -> PathSnapshot {
    let st = path.lock();
    let stream = st.stream.as_ref().filter(|s| !s.has_ended());
    let state = match (&st.source, &st.publisher, stream) {
        (_, Some(_), Some(_)) => "publishing",
        (Some(_), _, None) => "waiting_for_source",
        (None, Some(_), None) => "publishing",
        (None, None, Some(_)) => "waiting_for_publisher",
        (_, None, _) => "idle",
    };
    PathSnapshot {
        name: path.name.clone(),
        created: path.created,
        state,
        source: match (&st.source, &st.publisher) {
            (Some(src), publisher) => Some(SourceSnapshot {
                kind: src.status.protocol(),
                session_id: publisher.as_ref().map(|s| s.id),
                remote_addr: None,
                url: Some(src.status.url.clone()),
                status: Some(src.status.snapshot()),
            }),
            (None, Some(s)) => Some(SourceSnapshot {
                kind: s.protocol,
                session_id: Some(s.id),
                remote_addr: s.remote.map(|a| a.to_string()),
                url: None,
                status: None,
            }),
            (None, None) => None,
        },
        stream: stream.map(|s| StreamSnapshot {
            id: s.id,
            online_since: s.created(),
            tracks: {
                let rates = s.track_rates();
                s.tracks()
                    .iter()
                    .map(|t| track_snapshot(t, rates.get(t.index)))
                    .collect()
            },
            frames_in: s.frames_in(),
            gop_cache_bytes: s.gop_cache_bytes(),
            b_frames: s.has_b_frames(),
        }),
        readers: sessions
            .iter()
            .filter(|s| s.role == Role::Reader && s.path == path.name)
            .map(|s| ReaderSnapshot {
                session_id: s.id,
                protocol: s.protocol,
                remote_addr: s.remote.map(|a| a.to_string()),
                frames_dropped: s.frames_dropped(),
            })
            .collect(),
        readers_by_protocol: {
            let mut by = BTreeMap::new();
            for s in sessions
                .iter()
                .filter(|s| s.role == Role::Reader && s.path == path.name)
            {
                *by.entry(s.protocol).or_insert(0) += 1;
            }
            by
        },
        frames_dropped: sessions
            .iter()
            .filter(|s| s.role == Role::Reader && s.path == path.name)
            .map(|s| s.frames_dropped())
            .sum(),
        bytes_in: path.counters.bytes_in.load(Ordering::Relaxed),
        bytes_out: path.counters.bytes_out.load(Ordering::Relaxed),
    }
}

fn track_snapshot(t: &Track, rates: Option<&(Option<u64>, Option<f64>)>) -> TrackSnapshot {
    let (width, height) = t.params.dimensions().unzip();
    let (bitrate, fps) = rates.copied().unwrap_or_default();
    let (sample_rate, channels) = t.params.audio_format().unzip();
    TrackSnapshot {
        index: t.index,
        kind: t.kind(),
        codec: t.params.name(),
        codec_string: t.params.codec_string(),
        generation: t.generation,
        width,
        height,
        sample_rate,
        channels,
        bitrate,
        fps: fps.filter(|_| t.kind() == crate::media::TrackKind::Video),
    }
}

#[cfg(test)]
mod tests;
