//! Micro-benchmarks of the per-frame and per-request hot paths:
//! FLV tag parsing (RTMP ingest), fMP4 fragment headers (HLS), LL-HLS
//! playlist rendering, AVCC → Annex B (WebRTC), RTP depacketization of an
//! H.264 frame (RFC 6184 FU-A, RTSP ingest), RTP packetization of one
//! (once per path for every WebRTC viewer), RTMP chunking of a frame
//! (RTMP egress, once per frame for all players), and hub fan-out to
//! 1 / 100 / 1000 readers.
//!
//! `cargo bench --features bench --bench hot_paths` (not built by the test
//! suite: the bench target needs the `bench` feature). Results and method:
//! BENCHMARKS.md.

use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures_util::FutureExt;
use mediarelay::codec::h264;
use mediarelay::codec::rtp::{Depacketizer, Packet};
use mediarelay::config::Config;
use mediarelay::container::flv_file::{FlvFile, TAG_AUDIO, TAG_VIDEO};
use mediarelay::container::fmp4::{SampleInfo, TrackRun, fragment_header};
use mediarelay::egress::hls::playlist::{PlaylistParams, render};
use mediarelay::egress::hls::window::{Part, Segment, Window};
use mediarelay::hub::{Hub, Protocol, Role, SessionSpec, StartAt};
use mediarelay::ingest::flv::FlvIngest;
use mediarelay::media::Frame;

fn fixture(name: &str) -> Bytes {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/media")
        .join(name);
    Bytes::from(std::fs::read(path).expect("fixtures/media (fixtures/generate.sh)"))
}

/// Every tag of an FLV file through the RTMP ingest's FLV parser.
fn flv_ingest(c: &mut Criterion) {
    let file = fixture("res_a_320x240.flv");
    let mut tags = Vec::new();
    let mut reader = FlvFile::new(file.clone()).expect("an FLV file");
    while let Some(Ok(tag)) = reader.next_tag() {
        tags.push(tag);
    }
    let mut g = c.benchmark_group("flv_ingest");
    g.throughput(Throughput::Elements(tags.len() as u64));
    g.bench_function("tags_of_a_file", |b| {
        b.iter(|| {
            let mut ingest = FlvIngest::new();
            let mut out = Vec::new();
            for tag in &tags {
                let _ = match tag.tag_type {
                    TAG_VIDEO => ingest.on_video(tag.timestamp, &tag.body, &mut out),
                    TAG_AUDIO => ingest.on_audio(tag.timestamp, &tag.body, &mut out),
                    _ => Ok(()),
                };
            }
            black_box(out.len())
        })
    });
    g.finish();
}

/// `moof` + `mdat` header of a 200 ms part: 5 video and 10 audio samples.
fn fmp4_fragment(c: &mut Criterion) {
    let video: Vec<SampleInfo> = (0..5)
        .map(|i| SampleInfo {
            duration: 3600,
            size: 6000,
            keyframe: i == 0,
            composition_offset: 0,
        })
        .collect();
    let audio: Vec<SampleInfo> = (0..10)
        .map(|_| SampleInfo {
            duration: 1024,
            size: 300,
            keyframe: true,
            composition_offset: 0,
        })
        .collect();
    c.bench_function("fmp4_fragment_header/part_5v_10a", |b| {
        let mut seq = 0u32;
        b.iter(|| {
            seq = seq.wrapping_add(1);
            let runs = [
                TrackRun {
                    track_id: 1,
                    base_decode_time: u64::from(seq) * 18_000,
                    samples: &video,
                    is_video: true,
                },
                TrackRun {
                    track_id: 2,
                    base_decode_time: u64::from(seq) * 10_240,
                    samples: &audio,
                    is_video: false,
                },
            ];
            black_box(fragment_header(seq, &runs).expect("a header"))
        })
    });
}

/// A full window: 7 complete segments of 5 parts, and one in progress.
fn window() -> Window {
    let part = |i: usize| {
        Arc::new(Part::new(
            200_000_000,
            i == 0,
            &[0; 200],
            &[Bytes::from_static(&[0; 6000])],
        ))
    };
    let segments: VecDeque<Segment> = (0..8u64)
        .map(|msn| Segment {
            msn,
            start_nanos: msn as i64 * 1_000_000_000,
            parts: (0..if msn == 7 { 3 } else { 5 }).map(part).collect(),
            init_id: 0,
            discontinuity: false,
            duration_nanos: (msn < 7).then_some(1_000_000_000),
            file: None,
        })
        .collect();
    let mut w = Window::default();
    w.segments = segments;
    w.inits = vec![(0, Bytes::from_static(&[0; 700]))];
    w
}

fn playlist(c: &mut Criterion) {
    let w = window();
    let mut g = c.benchmark_group("ll_hls_playlist");
    for skip in [false, true] {
        let p = PlaylistParams {
            target_duration_secs: 4,
            part_target: Duration::from_millis(200),
            anchor: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            skip,
        };
        let name = if skip { "delta_update" } else { "full" };
        g.bench_function(name, |b| b.iter(|| black_box(render(&w, &p))));
    }
    g.finish();
}

/// AVCC → Annex B of a 30 KB keyframe (SPS/PPS prepended), once per frame
/// for every WebRTC viewer of a path.
fn annexb(c: &mut Criterion) {
    let mut avcc = Vec::new();
    for len in [12_000usize, 9_000, 9_000] {
        avcc.extend_from_slice(&(len as u32).to_be_bytes());
        avcc.push(0x65);
        avcc.extend(std::iter::repeat_n(0x11, len - 1));
    }
    let mut g = c.benchmark_group("avcc_to_annexb");
    g.throughput(Throughput::Bytes(avcc.len() as u64));
    g.bench_function("keyframe_30k", |b| {
        b.iter(|| black_box(h264::avcc_to_annexb(&avcc, None)))
    });
    g.finish();
}

/// A 30 KB IDR slice in FU-A fragments of 1200 bytes (RFC 6184 §5.8),
/// through the RTSP ingest's depacketizer.
fn rtp_depacketize(c: &mut Criterion) {
    const MTU: usize = 1200;
    let nal: Vec<u8> = std::iter::once(0x65)
        .chain(std::iter::repeat_n(0x11, 30_000))
        .collect();
    let body = &nal[1..];
    let chunks: Vec<&[u8]> = body.chunks(MTU).collect();
    let packets: Vec<Packet> = chunks
        .iter()
        .enumerate()
        .map(|(i, chunk)| {
            let first = i == 0;
            let last = i + 1 == chunks.len();
            let header = (u8::from(first) << 7) | (u8::from(last) << 6) | 5;
            let mut payload = vec![0x7c, header];
            payload.extend_from_slice(chunk);
            Packet {
                sequence_number: i as u16,
                timestamp: 0,
                mark: last,
                loss: 0,
                payload: Bytes::from(payload),
            }
        })
        .collect();
    let params = mediarelay::media::testing::h264(640);
    let mut g = c.benchmark_group("rtp_depacketize");
    g.throughput(Throughput::Bytes(nal.len() as u64));
    g.bench_function("h264_fu_a_30k", |b| {
        let mut d = Depacketizer::new(&params);
        let mut ts = 0;
        b.iter(|| {
            ts += 3000;
            for p in &packets {
                let mut p = p.clone();
                p.timestamp = ts;
                d.push(p).expect("a valid packet");
            }
            // The unit completes with the next frame's first packet or the
            // marker bit, whichever the depacketizer uses.
            while let Some(unit) = d.pull() {
                black_box(unit);
            }
        })
    });
    g.finish();
}

/// A 30 KB keyframe (three NAL units, 4-byte lengths as the hub holds
/// them) into RTP payloads (RFC 6184 FU-A, the parameter sets in a
/// STAP-A): done once per frame per path, shared by every WebRTC viewer.
fn rtp_packetize(c: &mut Criterion) {
    use mediarelay::codec::rtp::packetize::{MAX_PAYLOAD, packetize};
    let mut frame = Vec::new();
    for len in [12_000usize, 9_000, 9_000] {
        frame.extend_from_slice(&(len as u32).to_be_bytes());
        frame.push(0x65);
        frame.extend(std::iter::repeat_n(0x11, len - 1));
    }
    let frame = Bytes::from(frame);
    let params = mediarelay::media::testing::h264(640);
    let mut g = c.benchmark_group("rtp_packetize");
    g.throughput(Throughput::Bytes(frame.len() as u64));
    g.bench_function("h264_keyframe_30k", |b| {
        b.iter(|| black_box(packetize(&params, true, &frame, MAX_PAYLOAD)))
    });
    g.finish();
}

/// One video frame as RTMP chunks (4096-byte chunks, type-3 continuation
/// headers): built once per frame and shared by every player.
fn rtmp_chunking(c: &mut Criterion) {
    use mediarelay::protocol::rtmp::{MediaKind, encode_media_message};
    let header = [0x17u8, 1, 0, 0, 0];
    let frame = vec![0x22u8; 30_000];
    let mut g = c.benchmark_group("rtmp_chunking");
    g.throughput(Throughput::Bytes(frame.len() as u64));
    g.bench_function("video_30k", |b| {
        b.iter(|| {
            black_box(encode_media_message(
                MediaKind::Video,
                1000,
                &[&header, &frame],
            ))
        })
    });
    g.finish();
}

fn spec(role: Role) -> SessionSpec {
    SessionSpec {
        protocol: Protocol::Rtmp,
        role,
        path: "live/bench".into(),
        remote: None,
        query: String::new(),
        token: None,
    }
}

/// One frame written to a path with N readers, the readers draining.
fn fan_out(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    // The hub spawns a task per session.
    let _in_runtime = rt.enter();
    let mut g = c.benchmark_group("hub_fan_out");
    for readers in [1usize, 100, 1000] {
        let hub = Hub::new(Arc::new(Config::default()));
        let mut publisher = hub.publish(spec(Role::Publisher)).expect("a publisher");
        publisher
            .start(mediarelay::media::testing::av())
            .expect("started");
        let mut reading: Vec<_> = (0..readers)
            .map(|_| {
                rt.block_on(hub.read(spec(Role::Reader), StartAt::LatestKeyframe))
                    .expect("a reader")
            })
            .collect();
        let track = publisher.track(0).expect("video");
        let payload = Bytes::from(vec![0u8; 6000]);
        let mut n = 0i64;
        g.throughput(Throughput::Elements(readers as u64));
        g.bench_with_input(BenchmarkId::from_parameter(readers), &readers, |b, _| {
            b.iter(|| {
                n += 1;
                publisher.write(Frame::new(
                    Arc::clone(&track),
                    n * 3000,
                    n * 3000,
                    n % 30 == 1,
                    payload.clone(),
                ));
                for r in &mut reading {
                    while let Some(f) = r.reader.recv().now_or_never().flatten() {
                        black_box(&f);
                    }
                }
            })
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    flv_ingest,
    fmp4_fragment,
    playlist,
    annexb,
    rtp_depacketize,
    rtp_packetize,
    rtmp_chunking,
    fan_out
);
criterion_main!(benches);
