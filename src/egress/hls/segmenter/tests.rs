use std::sync::Arc;

use bytes::Bytes;
use shiguredo_mp4::Decode;
use shiguredo_mp4::boxes::MoofBox;

use super::*;
use crate::media::{Frame, Track};

const MS: i64 = 1_000_000;

fn cfg() -> SegmenterConfig {
    SegmenterConfig {
        part_target_nanos: 200 * MS,
        segment_min_nanos: 1000 * MS,
        target_duration_nanos: 4000 * MS,
    }
}

use crate::media::testing::{aac, h264};

fn tracks() -> Vec<Arc<Track>> {
    vec![
        Arc::new(Track::new(0, 0, h264(640))),
        Arc::new(Track::new(1, 0, aac())),
    ]
}

/// Interleaves 30 fps video (keyframe every `gop` frames, B-frame style pts)
/// and 48 kHz AAC by time, for `secs` seconds.
fn av_frames(t: &[Arc<Track>], secs: i64, gop: i64) -> Vec<Arc<Frame>> {
    let mut out = vec![];
    let (mut v, mut a) = (0i64, 0i64);
    loop {
        let vt = v * 3000 * 1_000_000_000 / 90_000;
        let at = a * 1024 * 1_000_000_000 / 48_000;
        if vt.min(at) >= secs * 1_000_000_000 {
            break;
        }
        if vt <= at {
            let pts = v * 3000 + if v % gop == 0 { 0 } else { 6000 };
            out.push(Arc::new(Frame::new(
                t[0].clone(),
                v * 3000,
                pts,
                v % gop == 0,
                Bytes::from(vec![v as u8; 100]),
            )));
            v += 1;
        } else {
            out.push(Arc::new(Frame::new(
                t[1].clone(),
                a * 1024,
                a * 1024,
                true,
                Bytes::from(vec![a as u8; 10]),
            )));
            a += 1;
        }
    }
    out
}

#[test]
fn cuts_segments_at_keyframes_and_parts_within_the_target() {
    let t = tracks();
    let mut s = Segmenter::new(cfg(), t.clone(), 10);
    for f in av_frames(&t, 4, 30) {
        s.push(f);
    }
    s.finish();
    let w = &s.window;
    assert_eq!(w.segments.len(), 4);
    for seg in &w.segments {
        assert_eq!(seg.duration_nanos, Some(1000 * MS), "msn {}", seg.msn);
        assert!(seg.parts[0].independent);
        assert_eq!(seg.parts.len(), 5);
        for (i, p) in seg.parts.iter().enumerate() {
            assert!(
                p.duration_nanos <= 200 * MS,
                "part {i}: {}",
                p.duration_nanos
            );
            assert!(
                p.duration_nanos >= 166 * MS,
                "part {i}: {}",
                p.duration_nanos
            );
            if i > 0 {
                assert!(!p.independent);
            }
        }
        let total: i64 = seg.parts.iter().map(|p| p.duration_nanos).sum();
        assert_eq!(total, 1000 * MS);
    }
    assert!(w.ended);
}

#[test]
fn parts_carry_both_tracks_with_exact_timing() {
    let t = tracks();
    let mut s = Segmenter::new(cfg(), t.clone(), 10);
    let frames = av_frames(&t, 2, 30);
    let audio_total = frames.iter().filter(|f| f.track.index == 1).count();
    let video_total = frames.iter().filter(|f| f.track.index == 0).count();
    for f in frames {
        s.push(f);
    }
    s.finish();
    let (mut v, mut a) = (0usize, 0usize);
    let mut next_audio_dts = 0u64;
    for seg in &s.window.segments {
        for p in &seg.parts {
            let (moof, moof_len) = MoofBox::decode(p.header()).unwrap();
            assert_eq!(p.header().len(), moof_len + 8);
            for traf in &moof.traf_boxes {
                let n = traf.trun_boxes[0].samples.len();
                let tfdt = traf.tfdt_box.as_ref().unwrap().base_media_decode_time;
                match traf.tfhd_box.track_id {
                    1 => {
                        assert_eq!(tfdt, v as u64 * 3000);
                        let s0 = &traf.trun_boxes[0].samples;
                        // B-frame composition offsets survive.
                        let expect = if v % 30 == 0 { None } else { Some(6000) };
                        assert_eq!(s0[0].composition_time_offset.filter(|&c| c != 0), expect);
                        v += n;
                    }
                    2 => {
                        assert_eq!(tfdt, next_audio_dts, "audio continues without gaps");
                        next_audio_dts += traf.trun_boxes[0]
                            .samples
                            .iter()
                            .map(|s| u64::from(s.duration.unwrap()))
                            .sum::<u64>();
                        a += n;
                    }
                    other => panic!("track {other}"),
                }
            }
            let payload = p.payload().len();
            let mdat = u32::from_be_bytes(p.header()[moof_len..moof_len + 4].try_into().unwrap());
            assert_eq!(mdat as usize, payload + 8);
        }
    }
    assert_eq!(v, video_total);
    assert_eq!(
        a, audio_total,
        "audio after the last video frame is kept too"
    );
}

#[test]
fn a_long_gop_makes_long_segments_cut_at_keyframes() {
    let t = tracks();
    let mut s = Segmenter::new(cfg(), t.clone(), 10);
    for f in av_frames(&t, 17, 240) {
        s.push(f);
    }
    s.finish();
    let durations: Vec<i64> = s
        .window
        .segments
        .iter()
        .map(|s| s.duration_nanos.unwrap() / MS)
        .collect();
    assert_eq!(durations, vec![8000, 8000, 1000]);
    for seg in &s.window.segments {
        assert!(seg.parts.iter().all(|p| p.duration_nanos <= 200 * MS));
    }
}

#[test]
fn a_parameter_change_starts_a_new_init_after_a_discontinuity() {
    let t = tracks();
    let mut s = Segmenter::new(cfg(), t.clone(), 10);
    for f in av_frames(&t, 2, 30) {
        s.push(f);
    }
    let wide = vec![Arc::new(Track::new(0, 1, h264(1280))), t[1].clone()];
    for f in av_frames(&wide, 2, 30) {
        // Continue the timeline after the first two seconds.
        let f = Frame::new(
            f.track.clone(),
            f.dts + if f.track.index == 0 { 180_000 } else { 96_000 },
            f.pts + if f.track.index == 0 { 180_000 } else { 96_000 },
            f.keyframe,
            f.data.clone(),
        );
        s.push(Arc::new(f));
    }
    s.finish();
    let inits: Vec<u32> = s.window.segments.iter().map(|s| s.init_id).collect();
    let disc: Vec<bool> = s.window.segments.iter().map(|s| s.discontinuity).collect();
    assert_eq!(inits, vec![1, 1, 2, 2]);
    assert_eq!(disc, vec![false, false, true, false]);
    assert!(s.window.init(2).is_some());
}

#[test]
fn audio_only_streams_are_cut_by_time() {
    let t = vec![Arc::new(Track::new(0, 0, aac()))];
    let mut s = Segmenter::new(cfg(), t.clone(), 10);
    for i in 0..200i64 {
        s.push(Arc::new(Frame::new(
            t[0].clone(),
            i * 1024,
            i * 1024,
            true,
            Bytes::from_static(b"a"),
        )));
    }
    s.finish();
    let w = &s.window;
    assert_eq!(w.segments.len(), 5);
    for seg in w.segments.iter().take(4) {
        let d = seg.duration_nanos.unwrap();
        assert!((1000 * MS..1022 * MS).contains(&d), "{d}");
        assert!(seg.parts.iter().all(|p| p.duration_nanos <= 200 * MS));
    }
}

#[test]
fn the_window_keeps_a_bounded_number_of_segments() {
    let t = tracks();
    let mut s = Segmenter::new(cfg(), t.clone(), 3);
    for f in av_frames(&t, 8, 30) {
        s.push(f);
    }
    assert_eq!(s.window.complete_count(), 3);
    assert_eq!(s.window.segments.front().unwrap().msn, 4);
    assert!(s.window.current().is_some());
}

#[test]
fn a_part_is_its_header_then_its_frames_bytes_in_one_buffer() {
    let t = tracks();
    let mut s = Segmenter::new(cfg(), t.clone(), 10);
    let frames = av_frames(&t, 2, 30);
    let total = frames.len();
    for f in frames {
        s.push(f);
    }
    s.finish();
    // Walk each part's payload by its trun sample sizes, track by track in
    // moof order: video frame i is 100 bytes of i, audio frame i 10 of i.
    let (mut v, mut a) = (0usize, 0usize);
    for seg in &s.window.segments {
        for p in &seg.parts {
            assert_eq!(p.len(), p.header().len() + p.payload().len());
            let (moof, _) = MoofBox::decode(p.header()).unwrap();
            let mut at = 0usize;
            for traf in &moof.traf_boxes {
                for sample in &traf.trun_boxes[0].samples {
                    let size = sample.size.unwrap() as usize;
                    let bytes = &p.payload()[at..at + size];
                    at += size;
                    let (n, len) = match traf.tfhd_box.track_id {
                        1 => (&mut v, 100),
                        _ => (&mut a, 10),
                    };
                    assert_eq!(bytes, vec![*n as u8; len].as_slice());
                    *n += 1;
                }
            }
            assert_eq!(at, p.payload().len(), "nothing after the samples");
        }
    }
    assert_eq!(v + a, total, "every frame once");
}
