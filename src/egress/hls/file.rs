//! Each segment's bytes kept in a memory file (`memfd_create(2)`) as well as
//! in its parts' `Bytes`, so the plain HTTP/1.1 path can send parts and
//! segments with `sendfile(2)` instead of copying them into every socket
//! ([`crate::net::sendfile`]). A segment is its parts back to back, so its
//! file holds them in order: a part is a range of it, a complete segment
//! the whole file. The muxer writes each part once, when it is cut; the
//! file goes away with the last response still sending from it.
//!
//! Without a file (the call failed, e.g. out of descriptors) or after a
//! failed write, the parts concerned have no range and are sent from their
//! `Bytes` as before.

use std::fs::File;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::net::sendfile::FileRange;

/// Segment files held by windows at most, all paths together (a window holds
/// ~8): past it, new segments are sent by copy, so memory files never take
/// the descriptors that connections need.
const MAX_FILES: usize = 2048;

static FILES: AtomicUsize = AtomicUsize::new(0);

/// A new anonymous memory file, closed on exec.
pub fn memory_file() -> io::Result<File> {
    // SAFETY: the name is a NUL-terminated string; on success the call
    // returns a new descriptor that nothing else owns.
    let fd = unsafe { libc::memfd_create(c"mediarelay-hls".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh, open descriptor owned by no one else.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// A segment's memory file, written part after part.
#[derive(Debug)]
pub struct SegmentFile {
    file: Arc<File>,
    len: u64,
    /// Every part so far is in the file.
    whole: bool,
    /// The count of live files this one is in.
    alive: &'static AtomicUsize,
}

impl SegmentFile {
    /// A new, empty segment file; `None` if [`MAX_FILES`] are alive or the
    /// system gives none (logged).
    pub fn create() -> Option<SegmentFile> {
        Self::create_counted(&FILES, MAX_FILES)
    }

    /// [`SegmentFile::create`] with `alive` counting the live files, at
    /// most `cap` of them.
    fn create_counted(alive: &'static AtomicUsize, cap: usize) -> Option<SegmentFile> {
        if alive.fetch_add(1, Ordering::Relaxed) >= cap {
            alive.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        match memory_file() {
            Ok(file) => Some(SegmentFile {
                file: Arc::new(file),
                len: 0,
                whole: true,
                alive,
            }),
            Err(e) => {
                alive.fetch_sub(1, Ordering::Relaxed);
                tracing::debug!(error = %e, "no memory file for an HLS segment: sent by copy");
                None
            }
        }
    }

    /// Appends a part's bytes; their range in the file, or `None` if this
    /// part (or one before it) could not be written.
    pub fn append(&mut self, data: &[u8]) -> Option<FileRange> {
        if !self.whole {
            return None;
        }
        if let Err(e) = self.file.write_all_at(data, self.len) {
            tracing::debug!(error = %e, "HLS segment file write failed: sent by copy");
            self.whole = false;
            return None;
        }
        let range = FileRange {
            file: Arc::clone(&self.file),
            offset: self.len,
            len: data.len() as u64,
        };
        self.len += data.len() as u64;
        Some(range)
    }

    /// The whole file, if every part is in it.
    pub fn whole(&self) -> Option<FileRange> {
        self.whole.then(|| FileRange {
            file: Arc::clone(&self.file),
            offset: 0,
            len: self.len,
        })
    }
}

impl Drop for SegmentFile {
    fn drop(&mut self) {
        self.alive.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(range: &FileRange) -> Vec<u8> {
        let mut buf = vec![0; range.len as usize];
        range.file.read_exact_at(&mut buf, range.offset).unwrap();
        buf
    }

    #[test]
    fn parts_are_ranges_of_the_segment_in_order() {
        let mut f = SegmentFile::create().expect("memfd_create");
        let a = f.append(b"first part").unwrap();
        let b = f.append(b"second").unwrap();
        assert_eq!((a.offset, a.len, b.offset, b.len), (0, 10, 10, 6));
        assert_eq!(read(&a), b"first part");
        assert_eq!(read(&b), b"second");
        assert_eq!(read(&f.whole().unwrap()), b"first partsecond");
    }

    #[test]
    fn past_the_cap_segments_get_no_file_until_one_goes() {
        static ALIVE: AtomicUsize = AtomicUsize::new(0);
        let mut held: Vec<SegmentFile> =
            std::iter::from_fn(|| SegmentFile::create_counted(&ALIVE, 3))
                .take(10)
                .collect();
        assert_eq!(held.len(), 3, "three files, then none");
        assert_eq!(ALIVE.load(Ordering::Relaxed), 3);
        assert!(SegmentFile::create_counted(&ALIVE, 3).is_none());
        held.pop();
        assert_eq!(
            ALIVE.load(Ordering::Relaxed),
            2,
            "a dropped file is uncounted"
        );
        let again = SegmentFile::create_counted(&ALIVE, 3).expect("a free slot");
        assert!(again.whole().is_some());
        drop(held);
        drop(again);
        assert_eq!(ALIVE.load(Ordering::Relaxed), 0);
    }
}
