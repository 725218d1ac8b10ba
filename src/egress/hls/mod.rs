//! LL-HLS egress (RFC 8216bis with the low-latency extension): fMP4 parts and
//! segments kept in memory, served from one muxer per path to every viewer.
//!
//! URLs below `http://HOST/{path}/`: `index.m3u8` (media playlist, with
//! blocking reload `_HLS_msn`/`_HLS_part` and delta updates `_HLS_skip`),
//! `init_{id}.mp4`, `seg_{msn}.m4s`, `part_{msn}_{n}.m4s`.

pub mod answer;
mod body;
pub mod file;
mod muxer;
pub mod playlist;
pub mod segmenter;
pub mod viewers;
pub mod window;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use tokio::time::Instant;

use crate::hub::{Hub, ReadError};
pub use answer::{HlsAnswer, HlsBody};
pub use muxer::Muxer;

/// Content type of playlists (RFC 8216bis §4).
pub const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";
/// Content type of init segments, segments and parts.
pub const MP4_TYPE: &str = "video/mp4";

/// The HLS side of the HTTP server: muxers by path.
pub struct HlsServer {
    hub: Hub,
    muxers: Mutex<HashMap<String, Arc<Muxer>>>,
    pub viewers: viewers::Viewers,
}

/// A file below a path that the HLS server serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HlsFile {
    Playlist,
    Init(u32),
    Segment(u64),
    Part(u64, usize),
}

impl HlsFile {
    /// Recognises the HLS file names (see [`playlist::init_name`] and friends).
    pub fn parse(name: &str) -> Option<HlsFile> {
        if name == "index.m3u8" {
            return Some(HlsFile::Playlist);
        }
        if let Some(id) = name
            .strip_prefix("init_")
            .and_then(|s| s.strip_suffix(".mp4"))
        {
            return id.parse().ok().map(HlsFile::Init);
        }
        if let Some(msn) = name
            .strip_prefix("seg_")
            .and_then(|s| s.strip_suffix(".m4s"))
        {
            return msn.parse().ok().map(HlsFile::Segment);
        }
        let rest = name.strip_prefix("part_")?.strip_suffix(".m4s")?;
        let (msn, part) = rest.split_once('_')?;
        Some(HlsFile::Part(msn.parse().ok()?, part.parse().ok()?))
    }
}

/// Blocking-reload directives of a playlist request (RFC 8216bis §6.2.5.2).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Directives {
    pub msn: Option<u64>,
    pub part: Option<usize>,
    pub skip: bool,
}

impl Directives {
    pub fn parse(query: Option<&str>) -> Result<Directives, String> {
        let mut d = Directives::default();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "_HLS_msn" => d.msn = Some(v.parse().map_err(|_| format!("bad _HLS_msn {v:?}"))?),
                "_HLS_part" => {
                    d.part = Some(v.parse().map_err(|_| format!("bad _HLS_part {v:?}"))?)
                }
                "_HLS_skip" => d.skip = v == "YES" || v == "v2",
                _ => {}
            }
        }
        if d.part.is_some() && d.msn.is_none() {
            return Err("_HLS_part without _HLS_msn".into());
        }
        Ok(d)
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> HlsAnswer {
    HlsAnswer::error(status, message)
}

/// Live playlists change every part: never cached.
const NO_CACHE: &str = "no-cache";
/// Parts, segments and init segments never change once served.
const IMMUTABLE: &str = "public, max-age=86400, immutable";

impl HlsServer {
    pub fn new(hub: Hub) -> Self {
        HlsServer {
            viewers: viewers::Viewers::new(hub.clone()),
            hub,
            muxers: Mutex::new(HashMap::new()),
        }
    }

    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The path's muxer if it runs for a stream that has not ended.
    /// Every request but a stream's first finds it: such a muxer serves the
    /// path's live stream (the hub ends a path's stream whenever it replaces
    /// or removes it), so the path itself is not looked up.
    fn running_muxer(&self, path: &str) -> Option<Arc<Muxer>> {
        self.muxers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(path)
            .filter(|m| m.is_alive() && !m.stream.has_ended())
            .cloned()
    }

    /// The path's running muxer, started on the first request.
    async fn muxer(&self, path: &str) -> Result<Arc<Muxer>, ReadError> {
        if let Some(m) = self.running_muxer(path) {
            return Ok(m);
        }
        let live = self.hub.stream(path);
        // Only asked when the stream is gone: resolving a path's settings
        // clones its rule, too much for every part request.
        let pulled = live.is_none() && self.hub.config().path_settings(path).source.is_pulled();
        {
            let mut muxers = self.muxers.lock().unwrap_or_else(|e| e.into_inner());
            muxers.retain(|_, m| m.is_alive());
            if let Some(m) = muxers.get(path) {
                match &live {
                    // A muxer of an ended stream keeps serving its ENDLIST
                    // playlist until a new stream replaces it (a pulled
                    // source is started again instead).
                    None if !pulled => return Ok(Arc::clone(m)),
                    Some(s) if s.id == m.stream.id => return Ok(Arc::clone(m)),
                    _ => m.stop(),
                }
            }
        }
        // Not under the lock: this may wait for an on-demand source.
        let cfg = self.hub.config().hls.clone();
        // Boxed: the wait for a stream is large, and every request's future
        // would carry its size.
        let m = Box::pin(Muxer::start(&self.hub, path, &cfg)).await?;
        let mut muxers = self.muxers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(other) = muxers.get(path)
            && other.is_alive()
            && other.stream.id == m.stream.id
        {
            // A concurrent first request started one too: keep the first.
            m.stop();
            return Ok(Arc::clone(other));
        }
        muxers.insert(path.to_string(), Arc::clone(&m));
        Ok(m)
    }

    /// Stops every muxer (shutdown).
    pub fn stop_all(&self) {
        let muxers = self.muxers.lock().unwrap_or_else(|e| e.into_inner());
        for m in muxers.values() {
            m.stop();
        }
    }

    /// The answer to a request for `file` below `path` if it is a success
    /// that needs no wait: a running muxer has the init segment, the
    /// complete segment or the part now, or the playlist without a blocking
    /// directive it has not reached. [`serve`](Self::serve) answers every
    /// such request the same (it starts here); `None` leaves the request to
    /// it (waits, errors, a muxer to start), and nothing was done for it.
    pub fn serve_now(&self, path: &str, file: HlsFile, query: Option<&str>) -> Option<HlsAnswer> {
        let muxer = self.running_muxer(path)?;
        let answer = match file {
            HlsFile::Playlist => {
                let d = Directives::parse(query).ok()?;
                muxer
                    .with_window(|w| started(w) && d.msn.is_none_or(|msn| reached(w, msn, d.part)))
                    .then(|| {
                        HlsAnswer::ok(
                            PLAYLIST_TYPE,
                            NO_CACHE,
                            HlsBody::Bytes(muxer.playlist(d.skip)),
                        )
                    })?
            }
            HlsFile::Init(id) => HlsAnswer::ok(
                MP4_TYPE,
                IMMUTABLE,
                HlsBody::Bytes(muxer.with_window(|w| w.init(id))?),
            ),
            HlsFile::Segment(msn) => muxer.with_window(|w| complete_segment(w, msn))?,
            HlsFile::Part(msn, part) => {
                part_answer(muxer.with_window(|w| find_part(w, msn, part))?)
            }
        };
        let _request = muxer.request();
        Some(counted(&muxer, answer))
    }

    /// Serves one HLS request for `file` below `path`.
    pub async fn serve(&self, path: &str, file: HlsFile, query: Option<&str>) -> HlsAnswer {
        if let Some(answer) = self.serve_now(path, file, query) {
            return answer;
        }
        let muxer = match self.muxer(path).await {
            Ok(m) => m,
            Err(e @ ReadError::NotFound { .. }) => {
                return error(StatusCode::NOT_FOUND, e.to_string());
            }
            Err(e @ ReadError::NotReady { .. }) => {
                return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
            }
            Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
        };
        let _request = muxer.request();
        let response = match file {
            HlsFile::Playlist => self.playlist(&muxer, query).await,
            HlsFile::Init(id) => match muxer.with_window(|w| w.init(id)) {
                Some(init) => HlsAnswer::ok(MP4_TYPE, IMMUTABLE, HlsBody::Bytes(init)),
                None => error(StatusCode::NOT_FOUND, format!("no init segment {id}")),
            },
            HlsFile::Segment(msn) => self.segment(&muxer, msn).await,
            HlsFile::Part(msn, part) => self.part(&muxer, msn, part).await,
        };
        counted(&muxer, response)
    }

    /// How long a blocking request may wait: three target durations.
    fn block_deadline(muxer: &Muxer) -> Instant {
        Instant::now() + 3 * muxer.target_duration()
    }

    async fn playlist(&self, muxer: &Muxer, query: Option<&str>) -> HlsAnswer {
        let d = match Directives::parse(query) {
            Ok(d) => d,
            Err(e) => return error(StatusCode::BAD_REQUEST, e),
        };
        // The first request for a path waits for the first complete segment.
        let start_timeout = self.hub.config().hls.start_timeout;
        let started = muxer
            .wait_until(Instant::now() + start_timeout, started)
            .await;
        if !started {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("stream {:?} has no complete segment yet", muxer.path),
            );
        }
        if let Some(msn) = d.msn {
            let (last_complete, _, _) = muxer.with_window(|w| w.position());
            let limit = last_complete.map_or(2, |l| l + 2);
            if msn > limit {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("_HLS_msn={msn} is more than two segments ahead of the playlist"),
                );
            }
            let part = d.part;
            let ready = muxer
                .wait_until(Self::block_deadline(muxer), |w| reached(w, msn, part))
                .await;
            if !ready && !muxer.with_window(|w| w.ended) {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the requested segment or part did not appear in time",
                );
            }
        }
        HlsAnswer::ok(
            PLAYLIST_TYPE,
            NO_CACHE,
            HlsBody::Bytes(muxer.playlist(d.skip)),
        )
    }

    /// A complete segment; one that is still being written is waited for.
    async fn segment(&self, muxer: &Muxer, msn: u64) -> HlsAnswer {
        let (first, current) =
            muxer.with_window(|w| (w.segments.front().map_or(0, |s| s.msn), w.position().1));
        if msn < first || msn > current + 1 {
            return error(StatusCode::NOT_FOUND, format!("no segment {msn}"));
        }
        muxer
            .wait_until(Self::block_deadline(muxer), |w| {
                w.segment(msn).is_some_and(|s| s.is_complete())
            })
            .await;
        match muxer.with_window(|w| complete_segment(w, msn)) {
            Some(answer) => answer,
            None => error(StatusCode::NOT_FOUND, format!("no segment {msn}")),
        }
    }

    /// A part; the preload-hinted part (or one shortly after it) is waited
    /// for instead of answered with 404.
    async fn part(&self, muxer: &Muxer, msn: u64, part: usize) -> HlsAnswer {
        let find = |w: &window::Window| find_part(w, msn, part);
        let (found, first, current) = muxer.with_window(|w| {
            (
                find(w),
                w.segments.front().map_or(0, |s| s.msn),
                w.position().1,
            )
        });
        let found = match found {
            Some(p) => Some(p),
            None if msn >= first && msn <= current + 1 => {
                muxer
                    .wait_until(Self::block_deadline(muxer), |w| {
                        find(w).is_some() || w.segment(msn).is_some_and(|s| s.is_complete())
                    })
                    .await;
                muxer.with_window(find)
            }
            None => None,
        };
        match found {
            Some(p) => part_answer(p),
            None => error(
                StatusCode::NOT_FOUND,
                format!("no part {part} of segment {msn}"),
            ),
        }
    }
}

/// Whether the playlist can be served: the window has a complete segment
/// (or the stream ended with some). The first request for a path waits
/// for this.
fn started(w: &window::Window) -> bool {
    w.complete_count() > 0 || (w.ended && !w.segments.is_empty())
}

/// Whether the window reached what a blocking reload asks for: segment
/// `msn` complete, or its part `part` (RFC 8216bis §6.2.5.2).
fn reached(w: &window::Window, msn: u64, part: Option<usize>) -> bool {
    let (_, current, parts) = w.position();
    current > msn || part.is_some_and(|p| current == msn && parts > p)
}

/// Segment `msn`'s answer (its parts and file), if it is complete in the
/// window.
fn complete_segment(w: &window::Window, msn: u64) -> Option<HlsAnswer> {
    let s = w.segment(msn).filter(|s| s.is_complete())?;
    Some(
        HlsAnswer::ok(MP4_TYPE, IMMUTABLE, HlsBody::Parts(s.parts.clone()))
            .with_file(s.file_range()),
    )
}

fn find_part(w: &window::Window, msn: u64, part: usize) -> Option<Arc<window::Part>> {
    w.segment(msn).and_then(|s| s.parts.get(part).cloned())
}

fn part_answer(p: Arc<window::Part>) -> HlsAnswer {
    HlsAnswer::ok(MP4_TYPE, IMMUTABLE, HlsBody::Bytes(p.data.clone())).with_file(p.file.clone())
}

/// `answer`, its bytes counted on the stream's path when it is a success
/// (the viewer's session is counted by the caller).
fn counted(muxer: &Muxer, answer: HlsAnswer) -> HlsAnswer {
    if answer.status.is_success() {
        muxer
            .path_counters
            .bytes_out
            .fetch_add(answer.body.len(), Ordering::Relaxed);
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        assert_eq!(HlsFile::parse("index.m3u8"), Some(HlsFile::Playlist));
        assert_eq!(HlsFile::parse("init_3.mp4"), Some(HlsFile::Init(3)));
        assert_eq!(HlsFile::parse("seg_12.m4s"), Some(HlsFile::Segment(12)));
        assert_eq!(HlsFile::parse("part_12_4.m4s"), Some(HlsFile::Part(12, 4)));
        assert_eq!(HlsFile::parse("part_12.m4s"), None);
        assert_eq!(HlsFile::parse("seg_x.m4s"), None);
        assert_eq!(HlsFile::parse("whep"), None);
    }

    #[test]
    fn directives() {
        let d = Directives::parse(Some("_HLS_msn=5&_HLS_part=2&_HLS_skip=YES")).unwrap();
        assert_eq!(
            d,
            Directives {
                msn: Some(5),
                part: Some(2),
                skip: true
            }
        );
        assert!(Directives::parse(Some("_HLS_part=2")).is_err());
        assert!(Directives::parse(Some("_HLS_msn=-1")).is_err());
        assert_eq!(Directives::parse(None).unwrap(), Directives::default());
    }
}
