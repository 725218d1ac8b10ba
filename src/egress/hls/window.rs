//! The in-memory window of an LL-HLS stream: init segments, complete segments
//! and the segment in progress, each made of parts.
//!
//! A part is one buffer, its fMP4 header followed by its samples, written
//! once when the part is cut: serving a part or a whole segment hands out
//! those `Bytes` by reference count (one chunk per part, whatever the number
//! of frames), never a copy per request.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

use super::file::{FileStore, SegmentFile};
use crate::net::sendfile::FileRange;

/// One partial segment (RFC 8216bis §4.4.4.9).
#[derive(Debug)]
pub struct Part {
    pub duration_nanos: i64,
    /// Starts with a keyframe (`INDEPENDENT=YES`).
    pub independent: bool,
    /// The `moof` + `mdat` header, then the samples in order: the part's
    /// bytes as served.
    pub data: Bytes,
    /// Length of the header at the start of `data`.
    pub header_len: usize,
    /// The same bytes in the segment's memory file, when they are there.
    pub file: Option<FileRange>,
}

impl Part {
    /// A part of `header` followed by `payloads`, copied once into one
    /// buffer. Sending a part as one chunk instead of one per frame (a 2 s
    /// segment has ~150 frames) makes every response a few large writes
    /// instead of many small ones; the copy is made once per part, not per
    /// viewer.
    pub fn new<'a>(
        duration_nanos: i64,
        independent: bool,
        header: &[u8],
        payloads: impl IntoIterator<Item = &'a Bytes> + Clone,
    ) -> Part {
        let len = header.len() + payloads.clone().into_iter().map(Bytes::len).sum::<usize>();
        let mut data = Vec::with_capacity(len);
        data.extend_from_slice(header);
        for p in payloads {
            data.extend_from_slice(p);
        }
        Part {
            duration_nanos,
            independent,
            data: Bytes::from(data),
            header_len: header.len(),
            file: None,
        }
    }

    /// The `moof` + `mdat` header.
    pub fn header(&self) -> &[u8] {
        self.data.get(..self.header_len).unwrap_or_default()
    }

    /// The samples after the header.
    pub fn payload(&self) -> &[u8] {
        self.data.get(self.header_len..).unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A media segment: the concatenation of its parts.
#[derive(Debug)]
pub struct Segment {
    pub msn: u64,
    /// Media time of the first frame (ns on the stream's timeline).
    pub start_nanos: i64,
    pub parts: Vec<Arc<Part>>,
    /// Init segment this segment needs (`EXT-X-MAP`).
    pub init_id: u32,
    /// Preceded by `EXT-X-DISCONTINUITY` (new init after a parameter change).
    pub discontinuity: bool,
    /// Set once the segment is closed.
    pub duration_nanos: Option<i64>,
    /// The parts' bytes back to back in a memory file, for `sendfile`.
    pub file: Option<SegmentFile>,
}

impl Segment {
    pub fn is_complete(&self) -> bool {
        self.duration_nanos.is_some()
    }

    /// The complete segment's bytes in its memory file, if all are there.
    pub fn file_range(&self) -> Option<FileRange> {
        self.is_complete()
            .then(|| self.file.as_ref().and_then(SegmentFile::whole))
            .flatten()
    }
}

/// Everything a playlist and the file requests are served from.
#[derive(Debug, Default)]
pub struct Window {
    /// Complete segments, oldest first, then possibly the one in progress.
    pub segments: VecDeque<Segment>,
    /// Init segments still referenced by a segment in the window.
    pub inits: Vec<(u32, Bytes)>,
    /// Discontinuities that left the window (`EXT-X-DISCONTINUITY-SEQUENCE`).
    pub discontinuity_sequence: u64,
    /// Bumped on every change, for waiters and playlist caching.
    pub version: u64,
    /// The stream ended: no more parts will come.
    pub ended: bool,
    pub(crate) max_segments: usize,
    /// Where the segments' files are made.
    pub(crate) store: FileStore,
}

impl Window {
    pub fn new(max_segments: usize) -> Self {
        Window {
            max_segments,
            ..Default::default()
        }
    }

    /// The segment in progress, if any.
    pub fn current(&self) -> Option<&Segment> {
        self.segments.back().filter(|s| !s.is_complete())
    }

    pub fn segment(&self, msn: u64) -> Option<&Segment> {
        let first = self.segments.front()?.msn;
        self.segments
            .get(usize::try_from(msn.checked_sub(first)?).ok()?)
    }

    pub fn init(&self, id: u32) -> Option<Bytes> {
        self.inits
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, b)| b.clone())
    }

    /// The msn the next segment will get.
    pub fn next_msn(&self) -> u64 {
        self.segments.back().map_or(0, |s| s.msn + 1)
    }

    /// Number of complete segments.
    pub fn complete_count(&self) -> usize {
        self.segments.iter().filter(|s| s.is_complete()).count()
    }

    /// The last complete segment's msn and the number of parts published so
    /// far in the segment after it: the position blocking requests wait for.
    pub fn position(&self) -> (Option<u64>, u64, usize) {
        let last_complete = self
            .segments
            .iter()
            .rev()
            .find(|s| s.is_complete())
            .map(|s| s.msn);
        match self.current() {
            Some(cur) => (last_complete, cur.msn, cur.parts.len()),
            None => (last_complete, self.next_msn(), 0),
        }
    }

    pub(crate) fn add_init(&mut self, id: u32, init: Bytes) {
        self.inits.push((id, init));
        self.version += 1;
    }

    pub(crate) fn start_segment(&mut self, start_nanos: i64, init_id: u32, discontinuity: bool) {
        let msn = self.next_msn();
        self.segments.push_back(Segment {
            msn,
            start_nanos,
            parts: Vec::new(),
            init_id,
            discontinuity,
            duration_nanos: None,
            file: SegmentFile::create(&self.store),
        });
        self.version += 1;
    }

    pub(crate) fn push_part(&mut self, mut part: Part) {
        if let Some(seg) = self.segments.back_mut().filter(|s| !s.is_complete()) {
            part.file = seg.file.as_mut().and_then(|f| f.append(&part.data));
            seg.parts.push(Arc::new(part));
            self.version += 1;
        }
    }

    pub(crate) fn close_segment(&mut self, end_nanos: i64) {
        if let Some(seg) = self.segments.back_mut().filter(|s| !s.is_complete()) {
            seg.duration_nanos = Some((end_nanos - seg.start_nanos).max(0));
            self.version += 1;
        }
        self.trim();
    }

    fn trim(&mut self) {
        while self.complete_count() > self.max_segments {
            if let Some(old) = self.segments.pop_front() {
                if let Some(next) = self.segments.front()
                    && next.discontinuity
                {
                    self.discontinuity_sequence += 1;
                }
                let _ = old;
            }
        }
        let oldest_init = self.segments.front().map(|s| s.init_id);
        if let Some(oldest) = oldest_init {
            self.inits.retain(|(id, _)| *id >= oldest);
        }
    }

    pub(crate) fn end(&mut self) {
        self.ended = true;
        self.version += 1;
    }
}
