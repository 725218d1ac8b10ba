//! Each segment's bytes kept in a file as well as in its parts' `Bytes`, so
//! the plain HTTP/1.1 path can send parts and segments with `sendfile(2)`
//! instead of copying them into every socket ([`crate::net::sendfile`]). A
//! segment is its parts back to back, so its file holds them in order: a
//! part is a range of it, a complete segment the whole file. The muxer
//! writes each part once, when it is cut; the file goes away with the last
//! response still sending from it.
//!
//! The file is an unnamed one (`open(2)` with `O_TMPFILE`) in a directory
//! (`hls.segment_dir`, by default the system's temporary directory), or a
//! memory file (`memfd_create(2)`). Both are page-cache pages that
//! `sendfile` hands to the socket; a directory's files are the cheaper to
//! send from: the kernel reads a regular file's pages in batches (and, on
//! file systems with large folios, a folio per several pages), where a
//! memory file's are looked up and locked one page at a time
//! (BENCHMARKS.md, "Thirteenth session": the kernel's page work per request
//! 4.1 → 2.0 µs at 10 000 connections). A segment in a directory is
//! written to disk only if it outlives the kernel's dirty-page expiry
//! (30 s by default), longer than the default window. Where no file can be
//! made or written in the directory, memory files are used (logged once).
//!
//! Without a file (the call failed, e.g. out of descriptors) or after a
//! failed write, the parts concerned have no range and are sent from their
//! `Bytes` as before.

use std::fs::File;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::net::sendfile::FileRange;

/// Segment files held by windows at most, all paths together (a window holds
/// ~8): past it, new segments are sent by copy, so memory files never take
/// the descriptors that connections need.
const MAX_FILES: usize = 2048;

static FILES: AtomicUsize = AtomicUsize::new(0);

/// Where a muxer makes its segment files (`hls.segment_dir`).
#[derive(Debug, Clone, Default)]
pub enum FileStore {
    /// Memory files (`"memory"`).
    #[default]
    Memory,
    /// Unnamed files in a directory (a path, or `""` for the system's
    /// temporary directory: `TMPDIR`, else `/tmp`).
    Dir(Arc<SegmentDir>),
}

/// A directory for segment files.
#[derive(Debug)]
pub struct SegmentDir {
    path: PathBuf,
    /// A file could not be made or written here: the muxer's later segments
    /// are memory files (a full or read-only directory stays so).
    failed: AtomicBool,
}

impl SegmentDir {
    /// Logs, once, that this directory failed; later segments get memory
    /// files.
    fn failed(&self, what: &str, e: &io::Error) {
        if !self.failed.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                dir = %self.path.display(),
                error = %e,
                "HLS segment files: {what} in the directory (hls.segment_dir); this stream's segments are kept in memory files instead"
            );
        }
    }
}

impl FileStore {
    /// The store a `hls.segment_dir` setting names.
    pub fn from_setting(setting: &str) -> FileStore {
        let path = match setting {
            "memory" => return FileStore::Memory,
            "" => std::env::temp_dir(),
            dir => PathBuf::from(dir),
        };
        FileStore::Dir(Arc::new(SegmentDir {
            path,
            failed: AtomicBool::new(false),
        }))
    }

    /// A new, empty file of this store, with the directory it is in; a
    /// memory file where the directory fails (logged once).
    fn create(&self) -> io::Result<(File, Option<Arc<SegmentDir>>)> {
        match self {
            FileStore::Dir(dir) if !dir.failed.load(Ordering::Relaxed) => {
                match unnamed_file(&dir.path) {
                    Ok(file) => Ok((file, Some(Arc::clone(dir)))),
                    Err(e) => {
                        dir.failed("cannot make a file", &e);
                        memory_file().map(|f| (f, None))
                    }
                }
            }
            _ => memory_file().map(|f| (f, None)),
        }
    }
}

/// A new unnamed file in `dir` (`O_TMPFILE`: no name, gone when closed),
/// closed on exec, without access times.
fn unnamed_file(dir: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE | libc::O_CLOEXEC | libc::O_NOATIME)
        .open(dir)
}

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

/// A segment's file, written part after part.
#[derive(Debug)]
pub struct SegmentFile {
    file: Arc<File>,
    len: u64,
    /// Every part so far is in the file.
    whole: bool,
    /// The directory it is in, if it is not a memory file.
    dir: Option<Arc<SegmentDir>>,
    /// The count of live files this one is in.
    alive: &'static AtomicUsize,
}

impl SegmentFile {
    /// A new, empty segment file of `store`; `None` if [`MAX_FILES`] are
    /// alive or the system gives none (logged).
    pub fn create(store: &FileStore) -> Option<SegmentFile> {
        Self::create_counted(store, &FILES, MAX_FILES)
    }

    /// [`SegmentFile::create`] with `alive` counting the live files, at
    /// most `cap` of them.
    fn create_counted(
        store: &FileStore,
        alive: &'static AtomicUsize,
        cap: usize,
    ) -> Option<SegmentFile> {
        if alive.fetch_add(1, Ordering::Relaxed) >= cap {
            alive.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        match store.create() {
            Ok((file, dir)) => Some(SegmentFile {
                file: Arc::new(file),
                len: 0,
                whole: true,
                dir,
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
            if let Some(dir) = &self.dir {
                dir.failed("cannot write a file", &e);
            }
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
        let mut f = SegmentFile::create(&FileStore::Memory).expect("memfd_create");
        let a = f.append(b"first part").unwrap();
        let b = f.append(b"second").unwrap();
        assert_eq!((a.offset, a.len, b.offset, b.len), (0, 10, 10, 6));
        assert_eq!(read(&a), b"first part");
        assert_eq!(read(&b), b"second");
        assert_eq!(read(&f.whole().unwrap()), b"first partsecond");
    }

    /// What the segment's descriptor names, as /proc shows it.
    fn target(f: &SegmentFile) -> String {
        use std::os::fd::AsRawFd;
        let link = format!("/proc/self/fd/{}", f.file.as_raw_fd());
        std::fs::read_link(link).unwrap().display().to_string()
    }

    #[test]
    fn a_directory_holds_unnamed_files_and_one_that_fails_gives_memory_files() {
        let dir = crate::tls::testing::TempDir::new("hls-segments");
        let store = FileStore::from_setting(dir.path().to_str().unwrap());
        let mut f = SegmentFile::create(&store).expect("a file");
        assert!(
            target(&f).starts_with(dir.path().to_str().unwrap()),
            "{}",
            target(&f)
        );
        let a = f.append(b"part").unwrap();
        assert_eq!(read(&a), b"part");
        assert_eq!(read(&f.whole().unwrap()), b"part");
        assert!(
            std::fs::read_dir(dir.path()).unwrap().next().is_none(),
            "no name in the directory"
        );
        // "" is the system's temporary directory; "memory" memory files.
        let FileStore::Dir(tmp) = FileStore::from_setting("") else {
            panic!("a directory")
        };
        assert_eq!(tmp.path, std::env::temp_dir());
        let memory = SegmentFile::create(&FileStore::from_setting("memory")).unwrap();
        assert!(
            target(&memory).starts_with("/memfd:"),
            "{}",
            target(&memory)
        );
        // A directory that is not there: a memory file, and no second try.
        let gone = FileStore::from_setting(dir.path().join("gone").to_str().unwrap());
        let f = SegmentFile::create(&gone).expect("a memory file instead");
        assert!(target(&f).starts_with("/memfd:"), "{}", target(&f));
        let FileStore::Dir(d) = &gone else {
            panic!("a directory")
        };
        assert!(d.failed.load(Ordering::Relaxed));
        assert!(f.dir.is_none());
    }

    #[test]
    fn past_the_cap_segments_get_no_file_until_one_goes() {
        static ALIVE: AtomicUsize = AtomicUsize::new(0);
        let mut held: Vec<SegmentFile> =
            std::iter::from_fn(|| SegmentFile::create_counted(&FileStore::Memory, &ALIVE, 3))
                .take(10)
                .collect();
        assert_eq!(held.len(), 3, "three files, then none");
        assert_eq!(ALIVE.load(Ordering::Relaxed), 3);
        assert!(SegmentFile::create_counted(&FileStore::Memory, &ALIVE, 3).is_none());
        held.pop();
        assert_eq!(
            ALIVE.load(Ordering::Relaxed),
            2,
            "a dropped file is uncounted"
        );
        let again =
            SegmentFile::create_counted(&FileStore::Memory, &ALIVE, 3).expect("a free slot");
        assert!(again.whole().is_some());
        drop(held);
        drop(again);
        assert_eq!(ALIVE.load(Ordering::Relaxed), 0);
    }
}
