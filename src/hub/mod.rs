//! The hub: paths, their publisher slot and stream, readers, sessions.
//!
//! Every ingest and egress talks to the hub through the small handles here:
//! a [`Publisher`] writes frames into a path's [`Stream`]; a [`Reader`] takes
//! them out through its own bounded queue. The hub never waits on a reader.

mod gop;
mod reader;
mod session;
mod stream;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

pub use gop::StartAt;
pub use reader::{Reader, Recv};
pub use session::{Counters, Protocol, Role, Session, SessionSpec};
pub use stream::Stream;

use crate::config::{Config, PathNameError, PathSettings, validate_path_name};
use crate::media::{CodecParams, Frame, Track, timestamp};
use session::Registry;

/// Why a publish was refused.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("invalid path name {path:?}: {source}")]
    InvalidPath { path: String, source: PathNameError },
    #[error("path {path:?} already has a publisher (session {session_id})")]
    Busy { path: String, session_id: u64 },
    #[error("path {path:?} takes its media from {source_kind:?}, not from a publisher")]
    NotPublishable { path: String, source_kind: String },
}

/// Why a read was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("invalid path name {path:?}: {source}")]
    InvalidPath { path: String, source: PathNameError },
    #[error("no stream is published on path {path:?}")]
    NotFound { path: String },
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
}

/// A named path: at most one publisher, any number of readers.
pub struct Path {
    pub name: String,
    pub created: SystemTime,
    pub counters: Arc<Counters>,
    state: Mutex<PathState>,
}

struct PathState {
    stream: Option<Arc<Stream>>,
    publisher: Option<Arc<Session>>,
    /// Bumped whenever the publisher slot changes, so a stale grace timer
    /// knows it is stale.
    epoch: u64,
}

impl Path {
    fn lock(&self) -> MutexGuard<'_, PathState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A registered session; dropping it removes it from the registry.
pub struct SessionHandle {
    session: Arc<Session>,
    hub: Hub,
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
                config: RwLock::new(config),
                paths: Mutex::new(HashMap::new()),
                sessions: Registry::default(),
                next_id: AtomicU64::new(0),
                shutdown: CancellationToken::new(),
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

    fn get_or_create_path(&self, name: &str) -> Arc<Path> {
        let mut paths = self.paths();
        Arc::clone(paths.entry(name.to_string()).or_insert_with(|| {
            Arc::new(Path {
                name: name.to_string(),
                created: SystemTime::now(),
                counters: Arc::new(Counters::default()),
                state: Mutex::new(PathState {
                    stream: None,
                    publisher: None,
                    epoch: 0,
                }),
            })
        }))
    }

    /// Removes a path that has neither publisher nor stream.
    fn forget_if_idle(&self, path: &Arc<Path>) {
        let mut paths = self.paths();
        let st = path.lock();
        if st.publisher.is_none()
            && st.stream.is_none()
            && paths.get(&path.name).is_some_and(|p| Arc::ptr_eq(p, path))
        {
            paths.remove(&path.name);
        }
    }

    fn register(&self, spec: SessionSpec, counters: Arc<Counters>) -> SessionHandle {
        let session = self.inner.sessions.insert(spec, counters);
        // A hub shutdown cancels every session.
        let token = self.inner.shutdown.clone();
        let s = Arc::clone(&session);
        tokio::spawn(async move {
            tokio::select! {
                _ = token.cancelled() => s.cancel(),
                _ = s.cancelled() => {}
            }
        });
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
        if settings.source != "publisher" {
            return Err(PublishError::NotPublishable {
                path: spec.path,
                source_kind: settings.source,
            });
        }
        let path = self.get_or_create_path(&spec.path);
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

    /// Adds a reader session to the stream of `spec.path`.
    pub fn read(&self, spec: SessionSpec, start: StartAt) -> Result<Reading, ReadError> {
        let reader = self.read_internal(&spec.path, start)?;
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
    pub fn read_internal(&self, path: &str, start: StartAt) -> Result<Reader, ReadError> {
        validate_path_name(path).map_err(|source| ReadError::InvalidPath {
            path: path.to_string(),
            source,
        })?;
        let stream = self
            .stream(path)
            .ok_or_else(|| ReadError::NotFound { path: path.into() })?;
        let capacity = self.config().reader_queue_frames;
        Ok(stream.attach(self.next_id(), start, capacity))
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

    /// Counts bytes sent to readers that are not sessions (HLS viewers).
    pub fn add_bytes_out(&self, path: &str, n: u64) {
        if let Some(p) = self.paths().get(path) {
            p.counters.bytes_out.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Cancels every session (server shutdown).
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
    }

    /// Whether the server is shutting down (sessions end because of it).
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutdown.is_cancelled()
    }

    /// A snapshot of every path, sorted by name.
    pub fn path_snapshots(&self) -> Vec<PathSnapshot> {
        let mut paths: Vec<Arc<Path>> = self.paths().values().cloned().collect();
        paths.sort_by(|a, b| a.name.cmp(&b.name));
        let sessions = self.sessions();
        paths.iter().map(|p| snapshot(p, &sessions)).collect()
    }

    /// A snapshot of one path.
    pub fn path_snapshot(&self, name: &str) -> Option<PathSnapshot> {
        let p = self.paths().get(name).cloned()?;
        Some(snapshot(&p, &self.sessions()))
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
#[derive(Debug, Clone, Serialize)]
pub struct PathSnapshot {
    pub name: String,
    #[serde(serialize_with = "rfc3339")]
    pub created: SystemTime,
    /// `publishing`, `waiting_for_publisher` (in the grace period) or `idle`.
    pub state: &'static str,
    pub source: Option<SourceSnapshot>,
    pub stream: Option<StreamSnapshot>,
    pub readers: Vec<ReaderSnapshot>,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SourceSnapshot {
    #[serde(rename = "type")]
    pub kind: Protocol,
    pub session_id: u64,
    pub remote_addr: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StreamSnapshot {
    pub id: u64,
    #[serde(serialize_with = "rfc3339")]
    pub online_since: SystemTime,
    pub tracks: Vec<TrackSnapshot>,
    pub frames_in: u64,
    pub gop_cache_bytes: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrackSnapshot {
    pub index: usize,
    pub kind: crate::media::TrackKind,
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
}

#[derive(Debug, Clone, Serialize)]
pub struct ReaderSnapshot {
    pub session_id: u64,
    pub protocol: Protocol,
    pub remote_addr: Option<String>,
    pub frames_dropped: u64,
}

/// Times in API output are RFC 3339 strings.
pub fn rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*t))
}

fn snapshot(path: &Arc<Path>, sessions: &[Arc<Session>]) -> PathSnapshot {
    let st = path.lock();
    let stream = st.stream.as_ref().filter(|s| !s.has_ended());
    let state = match (&st.publisher, stream) {
        (Some(_), _) => "publishing",
        (None, Some(_)) => "waiting_for_publisher",
        (None, None) => "idle",
    };
    PathSnapshot {
        name: path.name.clone(),
        created: path.created,
        state,
        source: st.publisher.as_ref().map(|s| SourceSnapshot {
            kind: s.protocol,
            session_id: s.id,
            remote_addr: s.remote.map(|a| a.to_string()),
        }),
        stream: stream.map(|s| StreamSnapshot {
            id: s.id,
            online_since: s.created(),
            tracks: s.tracks().iter().map(|t| track_snapshot(t)).collect(),
            frames_in: s.frames_in(),
            gop_cache_bytes: s.gop_cache_bytes(),
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
        bytes_in: path.counters.bytes_in.load(Ordering::Relaxed),
        bytes_out: path.counters.bytes_out.load(Ordering::Relaxed),
    }
}

fn track_snapshot(t: &Track) -> TrackSnapshot {
    let (width, height) = t.params.dimensions().unzip();
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
    }
}

#[cfg(test)]
mod tests;
