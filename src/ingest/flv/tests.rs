use bytes::Bytes;

use super::*;
use crate::container::flv_file::{FlvFile, TAG_AUDIO, TAG_VIDEO, Tag};

fn tags(name: &str) -> Vec<Tag> {
    let path = crate::repo_dir().join(format!("fixtures/media/{name}"));
    let data = Bytes::from(std::fs::read(path).unwrap());
    FlvFile::new(data).unwrap().map(Result::unwrap).collect()
}

fn feed(ingest: &mut FlvIngest, tags: &[Tag], shift_ms: u32, out: &mut Vec<Output>) {
    for t in tags {
        let ts = t.timestamp.wrapping_add(shift_ms);
        match t.tag_type {
            TAG_VIDEO => ingest.on_video(ts, &t.body, out).unwrap(),
            TAG_AUDIO => ingest.on_audio(ts, &t.body, out).unwrap(),
            _ => ingest.on_metadata(Some(true), Some(true)),
        }
    }
}

fn frames(out: &[Output], index: usize) -> Vec<(i64, i64, bool)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Frame {
                index: i,
                dts,
                pts,
                keyframe,
                ..
            } if *i == index => Some((*dts, *pts, *keyframe)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_real_flv_becomes_two_tracks_with_exact_timestamps() {
    let mut ingest = FlvIngest::new();
    let mut out = vec![];
    feed(&mut ingest, &tags("res_a_320x240.flv"), 0, &mut out);
    let Output::Start(params) = &out[0] else {
        panic!("starts first: {:?}", out[0]);
    };
    assert_eq!(params.len(), 2);
    let CodecParams::H264(h) = &params[0] else {
        panic!()
    };
    assert_eq!((h.width, h.height), (320, 240));
    let CodecParams::Aac(a) = &params[1] else {
        panic!()
    };
    assert_eq!((a.sample_rate, a.channels), (48_000, 2));

    let video = frames(&out, 0);
    assert_eq!(video.len(), 60);
    assert!(video[0].2, "first video frame is a keyframe");
    assert!(video.windows(2).all(|w| w[1].0 > w[0].0), "dts increases");
    assert!(video.iter().all(|v| v.1 >= v.0), "pts >= dts");
    assert!(
        video.iter().any(|v| v.1 != v.0),
        "B-frames keep their composition time"
    );
    let audio = frames(&out, 1);
    assert_eq!(audio.len(), 95);
    assert!(
        audio.windows(2).all(|w| w[1].0 - w[0].0 == 1024),
        "AAC clock is exact"
    );
}

#[test]
fn a_new_sequence_header_mid_stream_changes_the_track() {
    let mut ingest = FlvIngest::new();
    let mut out = vec![];
    feed(&mut ingest, &tags("res_a_320x240.flv"), 0, &mut out);
    feed(&mut ingest, &tags("res_b_640x360.flv"), 2100, &mut out);
    let changes: Vec<&Output> = out
        .iter()
        .filter(|o| matches!(o, Output::Params { .. }))
        .collect();
    assert_eq!(changes.len(), 1, "only video changed");
    let Output::Params {
        index: 0,
        params: CodecParams::H264(h),
    } = changes[0]
    else {
        panic!("{:?}", changes[0]);
    };
    assert_eq!((h.width, h.height), (640, 360));
    assert_eq!(frames(&out, 0).len(), 120);
}

#[test]
fn without_metadata_a_video_only_stream_starts_after_a_second() {
    let mut ingest = FlvIngest::new();
    let mut out = vec![];
    let only_video: Vec<Tag> = tags("res_a_320x240.flv")
        .into_iter()
        .filter(|t| t.tag_type == TAG_VIDEO)
        .collect();
    for t in &only_video {
        ingest.on_video(t.timestamp, &t.body, &mut out).unwrap();
    }
    let Output::Start(params) = &out[0] else {
        panic!()
    };
    assert_eq!(params.len(), 1);
    assert_eq!(frames(&out, 0).len(), 60, "frames held back are not lost");
}

#[test]
fn timestamps_keep_counting_across_the_32_bit_wrap() {
    let mut ingest = FlvIngest::new();
    let mut out = vec![];
    feed(
        &mut ingest,
        &tags("res_a_320x240.flv"),
        u32::MAX - 1000,
        &mut out,
    );
    let video = frames(&out, 0);
    assert!(video.windows(2).all(|w| w[1].0 > w[0].0));
    assert!(video.last().unwrap().0 > 90 * 1900);
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let mut out = vec![];
    // An AVC sequence header whose SPS is garbage.
    let bad_sps = Bytes::from_static(&[
        0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 4, 0x67, 0xff, 0xff, 0xff, 1, 0, 2,
        0x68, 0,
    ]);
    assert!(matches!(
        FlvIngest::new().on_video(0, &bad_sps, &mut out),
        Err(IngestError::AvcConfig(_))
    ));
    // A frame whose NAL length runs past the end of the tag.
    let mut ingest = FlvIngest::new();
    let header = tags("res_a_320x240.flv")
        .into_iter()
        .find(|t| t.tag_type == TAG_VIDEO)
        .unwrap();
    ingest.on_video(0, &header.body, &mut out).unwrap();
    let lying = Bytes::from_static(&[0x17, 1, 0, 0, 0, 0, 0, 1, 0, 0x65, 1, 2]);
    assert!(matches!(
        ingest.on_video(40, &lying, &mut out),
        Err(IngestError::AvcFrame { .. })
    ));
    // Enhanced RTMP HEVC is refused with a clear message.
    let hevc = Bytes::from_static(&[0x90, b'h', b'v', b'c', b'1', 0, 0]);
    let err = FlvIngest::new().on_video(0, &hevc, &mut out).unwrap_err();
    assert!(err.to_string().contains("hvc1"), "{err}");
    // A tag with nothing in it.
    assert!(
        FlvIngest::new()
            .on_audio(0, &Bytes::new(), &mut out)
            .is_err()
    );
}

#[test]
fn a_track_that_arrives_first_with_a_later_timestamp_keeps_the_offset() {
    // Interleaved chunks: a small audio message (46 ms) completes before the
    // big keyframe at 0 ms sent alongside it.
    let all = tags("res_a_320x240.flv");
    let header = |t: u8| all.iter().find(|x| x.tag_type == t).unwrap().body.clone();
    let frames_of = |t: u8| {
        all.iter()
            .filter(move |x| x.tag_type == t)
            .skip(1)
            .cloned()
            .collect::<Vec<_>>()
    };
    let (video, audio) = (frames_of(TAG_VIDEO), frames_of(TAG_AUDIO));
    let mut ingest = FlvIngest::new();
    let mut out = vec![];
    ingest.on_video(0, &header(TAG_VIDEO), &mut out).unwrap();
    ingest.on_audio(0, &header(TAG_AUDIO), &mut out).unwrap();
    ingest.on_audio(46, &audio[2].body, &mut out).unwrap();
    ingest.on_video(0, &video[0].body, &mut out).unwrap();
    ingest.on_video(34, &video[1].body, &mut out).unwrap();
    ingest.on_audio(67, &audio[3].body, &mut out).unwrap();
    let v = frames(&out, 0);
    let a = frames(&out, 1);
    assert_eq!(
        v[1].0 - v[0].0,
        34 * 90,
        "the second frame keeps its own time"
    );
    // Audio keeps its offset to video: 46 ms after the first video frame.
    assert_eq!(a[0].0 * 90 / 48, v[0].0 + 46 * 90);
}

#[test]
fn a_jumping_publisher_clock_keeps_the_timeline_continuous() {
    let all = tags("res_a_320x240.flv");
    let mut ingest = FlvIngest::new();
    let mut out = vec![];
    for (i, t) in all.iter().enumerate() {
        // One hour forward half way through.
        let ts = if i > all.len() / 2 {
            t.timestamp + 3_600_000
        } else {
            t.timestamp
        };
        match t.tag_type {
            TAG_VIDEO => ingest.on_video(ts, &t.body, &mut out).unwrap(),
            TAG_AUDIO => ingest.on_audio(ts, &t.body, &mut out).unwrap(),
            _ => {}
        }
    }
    let v = frames(&out, 0);
    assert!(
        v.windows(2)
            .all(|w| w[1].0 > w[0].0 && w[1].0 - w[0].0 < 90 * 100),
        "{v:?}"
    );
    let a = frames(&out, 1);
    assert!(
        a.windows(2)
            .all(|w| w[1].0 - w[0].0 == 1024 || (w[1].0 - w[0].0).abs() < 48 * 100)
    );
    assert!(v.last().unwrap().0 < 90 * 3000);
}
