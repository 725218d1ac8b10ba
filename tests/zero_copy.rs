//! Zero-copy, checked with a counting allocator: fanning a frame out to a
//! thousand readers and serving an HLS segment to a hundred viewers never
//! copies the media payload. Only allocations made on the test's own
//! thread, inside the measured closure, are counted (the server's other
//! tasks keep running meanwhile).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures_util::FutureExt;
use mediarelay::config::Config;
use mediarelay::egress::hls::HlsFile;
use mediarelay::hub::{Hub, Protocol, Role, SessionSpec, StartAt};
use mediarelay::media::Frame;

struct Counting;

thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static BYTES: Cell<usize> = const { Cell::new(0) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn record(size: usize) {
    let _ = TRACKING.try_with(|t| {
        if t.get() {
            BYTES.with(|b| b.set(b.get() + size));
            COUNT.with(|c| c.set(c.get() + 1));
            LARGEST.with(|l| l.set(l.get().max(size)));
        }
    });
}

// SAFETY: forwards every call to the system allocator unchanged; the
// bookkeeping touches only const-initialised thread-locals (no allocation).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[derive(Debug, Default, Clone, Copy)]
struct Allocated {
    bytes: usize,
    count: usize,
    largest: usize,
}

/// Runs `f` and returns what it allocated on this thread.
fn measured<T>(f: impl FnOnce() -> T) -> (T, Allocated) {
    BYTES.with(|b| b.set(0));
    COUNT.with(|c| c.set(0));
    LARGEST.with(|l| l.set(0));
    TRACKING.with(|t| t.set(true));
    let out = f();
    TRACKING.with(|t| t.set(false));
    let a = Allocated {
        bytes: BYTES.with(Cell::get),
        count: COUNT.with(Cell::get),
        largest: LARGEST.with(Cell::get),
    };
    (out, a)
}

fn spec(path: &str, role: Role) -> SessionSpec {
    SessionSpec {
        protocol: Protocol::Rtmp,
        role,
        path: path.into(),
        remote: None,
        query: String::new(),
        token: None,
    }
}

/// What writing one 256 KiB frame to `readers` readers allocates.
async fn fan_out(readers: usize) -> Allocated {
    let hub = Hub::new(Arc::new(Config::default()));
    let mut publisher = hub.publish(spec("live/z", Role::Publisher)).unwrap();
    publisher.start(mediarelay::media::testing::av()).unwrap();
    let mut reading = Vec::new();
    for _ in 0..readers {
        reading.push(
            hub.read(spec("live/z", Role::Reader), StartAt::LatestKeyframe)
                .await
                .unwrap(),
        );
    }
    let payload = Bytes::from(vec![7u8; 256 * 1024]);
    let track = publisher.track(0).unwrap();
    let frame = |i: i64| {
        Frame::new(
            Arc::clone(&track),
            i * 3000,
            i * 3000,
            i == 0,
            payload.clone(),
        )
    };
    // Warm up: queues and the GOP cache reach their working size.
    for i in 0..4 {
        publisher.write(frame(i));
    }
    for r in &mut reading {
        while let Some(f) = r.reader.recv().now_or_never().flatten() {
            drop(f);
        }
    }
    let next = frame(4);
    let ((), allocated) = measured(|| publisher.write(next));
    // Every reader got it, and it is the same buffer.
    for r in &mut reading {
        let f = r.reader.recv().now_or_never().flatten().expect("the frame");
        assert_eq!(f.data.as_ptr(), payload.as_ptr(), "a copy of the payload");
    }
    allocated
}

#[tokio::test(flavor = "current_thread")]
async fn fan_out_to_a_thousand_readers_copies_no_payload() {
    let one = fan_out(1).await;
    let many = fan_out(1000).await;
    eprintln!("one reader: {one:?}; 1000 readers: {many:?}");
    assert!(
        many.largest < 16 * 1024,
        "an allocation of {} bytes while fanning out a 256 KiB frame",
        many.largest
    );
    // Nothing at all is allocated per reader: the frame is one `Arc` that
    // every queue shares.
    assert_eq!(
        (many.count, many.bytes),
        (one.count, one.bytes),
        "allocations grow with the readers: {one:?} → {many:?}"
    );
    assert!(many.bytes < 4096, "{many:?}");
}

/// Serving a complete segment to a hundred viewers: the body is the
/// segment's shared chunks, not a copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hls_segment_is_served_without_copying() {
    let app = start("").await;
    let _push = push("baseline_aac44_mono.mp4", &rtmp_url(&app, "live/zc"), true);
    wait_published(&app, "live/zc").await;
    // The playlist names a complete segment once the muxer has one.
    let segment = eventually(Duration::from_secs(15), "a segment", || async {
        let r = http("GET", app.http_addr, "/live/zc/index.m3u8", b"").await;
        r.text()
            .lines()
            .find(|l| l.starts_with("seg_"))
            .map(str::to_string)
    })
    .await;
    let msn: u64 = segment
        .trim_start_matches("seg_")
        .trim_end_matches(".m4s")
        .parse()
        .unwrap();
    let hls = Arc::clone(app.hls());
    let serve = || {
        hls.serve("live/zc", HlsFile::Segment(msn), None)
            .now_or_never()
            .expect("a complete segment is answered at once")
    };
    let first = serve();
    assert_eq!(first.status, 200);
    let len = first.body.len() as usize;
    assert!(len > 10_000, "segment of {len} bytes");
    let (responses, allocated) = measured(|| (0..100).map(|_| serve()).collect::<Vec<_>>());
    assert!(responses.iter().all(|r| r.status == 200));
    eprintln!("100 answers of a {len}-byte segment: {allocated:?}");
    assert!(
        allocated.largest < len / 2,
        "an allocation of {} bytes for a {len}-byte segment",
        allocated.largest
    );
    // The answer and the list of the segment's parts (shared, one pointer
    // each); nothing that grows with the segment's bytes.
    assert!(
        allocated.bytes / 100 < 2048,
        "{} bytes per answer for a {len}-byte segment",
        allocated.bytes / 100
    );
    drop(responses);
    app.shutdown().await;
}
