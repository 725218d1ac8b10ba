//! One LL-HLS muxer per path: a hub reader feeding the segmenter, shared by
//! every HLS viewer of the path, stopped when nobody asked for a while.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::file::FileStore;
use super::playlist::{self, PlaylistParams};
use super::segmenter::{Segmenter, SegmenterConfig};
use super::window::Window;
use crate::config::HlsConfig;
use crate::hub::{Counters, Hub, ReadError, StartAt, Stream};

pub struct Muxer {
    pub path: String,
    pub stream: Arc<Stream>,
    /// The path's counters while this stream runs (bytes served count
    /// there without a lookup of the path by name).
    pub path_counters: Arc<Counters>,
    segmenter: Mutex<Segmenter>,
    version: watch::Sender<u64>,
    last_request: Mutex<Instant>,
    /// Requests being answered (a blocked request keeps the muxer alive).
    in_flight: AtomicUsize,
    alive: AtomicBool,
    cancel: CancellationToken,
    params: PlaylistParams,
    /// The last rendered playlists (full and delta), by window version.
    cache: Mutex<[Option<(u64, Bytes)>; 2]>,
}

impl Muxer {
    /// Starts a muxer on the path's stream, from the GOP cache's previous
    /// keyframe so the first playlist has a complete segment at once.
    pub async fn start(hub: &Hub, path: &str, cfg: &HlsConfig) -> Result<Arc<Muxer>, ReadError> {
        let mut reader = hub.read_internal(path, StartAt::PreviousKeyframe).await?;
        let stream = Arc::clone(reader.stream());
        let nanos = |d: Duration| d.as_nanos().min(i64::MAX as u128) as i64;
        let mut segmenter = Segmenter::new(
            SegmenterConfig {
                part_target_nanos: nanos(cfg.part_duration),
                segment_min_nanos: nanos(cfg.segment_duration),
                target_duration_nanos: nanos(cfg.target_duration),
            },
            stream.tracks(),
            cfg.segment_count,
        );
        segmenter.keep_files_in(FileStore::from_setting(&cfg.segment_dir));
        let muxer = Arc::new(Muxer {
            path: path.to_string(),
            stream,
            path_counters: hub.path_counters(path),
            segmenter: Mutex::new(segmenter),
            version: watch::Sender::new(0),
            last_request: Mutex::new(Instant::now()),
            in_flight: AtomicUsize::new(0),
            alive: AtomicBool::new(true),
            cancel: CancellationToken::new(),
            params: PlaylistParams {
                target_duration_secs: cfg.target_duration.as_secs().max(1),
                part_target: cfg.part_duration,
                anchor: None,
                skip: false,
            },
            cache: Mutex::new([None, None]),
        });
        tracing::info!(path, "HLS muxer started");
        let m = Arc::clone(&muxer);
        let idle_timeout = cfg.idle_timeout;
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(256);
            let mut ended = false;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = m.cancel.cancelled() => break,
                    _ = reader.ready(), if !ended => {
                        let more = reader.drain_into(&mut batch, 256);
                        let version = {
                            let mut seg = m.lock();
                            for f in batch.drain(..) {
                                seg.push(f);
                            }
                            if !more {
                                seg.finish();
                                ended = true;
                            }
                            seg.window.version
                        };
                        m.version.send_replace(version);
                    }
                    _ = tick.tick() => {
                        let idle = m.last_request.lock().unwrap_or_else(|e| e.into_inner()).elapsed();
                        if idle > idle_timeout && m.in_flight.load(Ordering::Relaxed) == 0 {
                            tracing::info!(path = %m.path, "HLS muxer stopped: no requests for {idle_timeout:?}");
                            break;
                        }
                    }
                }
            }
            m.alive.store(false, Ordering::Relaxed);
            // A stopped muxer stays in the server's map until the next HLS
            // request; its window (the parts' bytes, the segments' memory
            // files) is let go now.
            m.lock().window.segments.clear();
        });
        Ok(muxer)
    }

    fn lock(&self) -> MutexGuard<'_, Segmenter> {
        self.segmenter.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }

    pub fn stop(&self) {
        self.cancel.cancel();
    }

    /// Records a request; the muxer does not idle out while the returned
    /// guard lives.
    pub fn request(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        RequestGuard(Arc::clone(self))
    }

    fn touch(&self) {
        *self.last_request.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    /// Reads the window.
    pub fn with_window<R>(&self, f: impl FnOnce(&Window) -> R) -> R {
        f(&self.lock().window)
    }

    /// Waits until `ready(window)` holds, the stream ends or `deadline`
    /// passes; returns whether `ready` held.
    pub async fn wait_until(&self, deadline: Instant, ready: impl Fn(&Window) -> bool) -> bool {
        let mut rx = self.version.subscribe();
        loop {
            let (ok, ended) = self.with_window(|w| (ready(w), w.ended));
            if ok {
                return true;
            }
            if ended || !self.is_alive() {
                return false;
            }
            tokio::select! {
                changed = rx.changed() => if changed.is_err() { return false },
                _ = tokio::time::sleep_until(deadline) => return self.with_window(|w| ready(w)),
            }
        }
    }

    pub fn target_duration(&self) -> Duration {
        Duration::from_secs(self.params.target_duration_secs)
    }

    /// The playlist as of now, rendered once per window version and shared.
    pub fn playlist(&self, skip: bool) -> Bytes {
        let seg = self.lock();
        let version = seg.window.version;
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let slot = &mut cache[usize::from(skip)];
        if let Some((v, text)) = slot
            && *v == version
        {
            return text.clone();
        }
        let params = PlaylistParams {
            anchor: self.stream.anchor(),
            skip,
            ..self.params
        };
        let text = Bytes::from(playlist::render(&seg.window, &params));
        *slot = Some((version, text.clone()));
        text
    }
}

/// A request in progress (see [`Muxer::request`]).
pub struct RequestGuard(Arc<Muxer>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
