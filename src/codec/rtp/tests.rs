//! Tests with RTP captured from the test camera (fixtures/rtp, made by
//! fixtures/capture_rtp.py) and seeded mutations of it.

use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};
use rand::{Rng, SeedableRng, rngs::StdRng};

use super::*;
use crate::codec::{aac as aac_config, h264, h265};
use crate::media::{H265Params, OpusParams};

/// The RTP packets of one stream of a capture, as retina would hand them
/// over: timestamps extended from the stream's first, loss from sequence gaps.
fn capture(name: &str, stream: u8) -> Vec<Packet> {
    let path = crate::repo_dir().join(format!("fixtures/rtp/{name}.bin"));
    let raw = std::fs::read(&path).unwrap();
    let mut out = Vec::new();
    let mut at = 0;
    let mut first_ts: Option<u32> = None;
    let mut last: Option<(u32, i64, u16)> = None;
    while at < raw.len() {
        let s = raw[at];
        let len = u16::from_be_bytes([raw[at + 1], raw[at + 2]]) as usize;
        let rtp = Bytes::copy_from_slice(&raw[at + 3..at + 3 + len]);
        at += 3 + len;
        if s != stream {
            continue;
        }
        out.push(parse_rtp(rtp, &mut first_ts, &mut last));
    }
    assert!(!out.is_empty(), "{name}: no packets of stream {stream}");
    out
}

/// RFC 3550 §5.1 header: version 2, CSRCs, extension, padding.
fn parse_rtp(rtp: Bytes, first_ts: &mut Option<u32>, last: &mut Option<(u32, i64, u16)>) -> Packet {
    assert_eq!(rtp[0] >> 6, 2);
    let cc = usize::from(rtp[0] & 0x0f);
    let mut start = 12 + 4 * cc;
    if rtp[0] & 0x10 != 0 {
        let words = u16::from_be_bytes([rtp[start + 2], rtp[start + 3]]) as usize;
        start += 4 + 4 * words;
    }
    let mut end = rtp.len();
    if rtp[0] & 0x20 != 0 {
        end -= usize::from(rtp[end - 1]);
    }
    let seq = u16::from_be_bytes([rtp[2], rtp[3]]);
    let ts = u32::from_be_bytes([rtp[4], rtp[5], rtp[6], rtp[7]]);
    first_ts.get_or_insert(ts);
    let (extended, loss) = match *last {
        Some((prev_ts, prev_ext, prev_seq)) => (
            prev_ext + i64::from(ts.wrapping_sub(prev_ts) as i32),
            seq.wrapping_sub(prev_seq).wrapping_sub(1),
        ),
        None => (0, 0),
    };
    *last = Some((ts, extended, seq));
    Packet {
        sequence_number: seq,
        timestamp: extended,
        mark: rtp[1] & 0x80 != 0,
        loss,
        payload: rtp.slice(start..end),
    }
}

fn sdp(name: &str) -> String {
    std::fs::read_to_string(crate::repo_dir().join(format!("fixtures/rtp/{name}.sdp"))).unwrap()
}

fn fmtp_value(sdp: &str, key: &str) -> String {
    sdp.split([';', ' ', '\r', '\n'])
        .find_map(|p| p.strip_prefix(&format!("{key}=")))
        .unwrap()
        .to_string()
}

fn b64(s: &str) -> Bytes {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .unwrap()
        .into()
}

/// The H.264 parameters of the capture's SDP (`sprop-parameter-sets`).
fn h264_sdp_params() -> CodecParams {
    let sets = fmtp_value(&sdp("h264_opus"), "sprop-parameter-sets");
    let (sps, pps) = sets.split_once(',').unwrap();
    let record = h264::record_from_parameter_sets(&[b64(sps)], &[b64(pps)]).unwrap();
    CodecParams::H264(h264::h264_params(&record).unwrap().0)
}

fn h265_params() -> CodecParams {
    CodecParams::H265(H265Params {
        hvcc: Bytes::new(),
        parameter_sets: Vec::new(),
        codec: "hvc1".into(),
        width: 320,
        height: 240,
    })
}

fn aac_params() -> CodecParams {
    let config = fmtp_value(&sdp("h265_aac"), "config");
    let asc: Vec<u8> = (0..config.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&config[i..i + 2], 16).unwrap())
        .collect();
    CodecParams::Aac(aac_config::parse_audio_specific_config(&asc.into()).unwrap())
}

fn run(d: &mut Depacketizer, packets: impl IntoIterator<Item = Packet>) -> (Vec<Unit>, usize) {
    let mut units = Vec::new();
    let mut errors = 0;
    for p in packets {
        if d.push(p).is_err() {
            errors += 1;
        }
        while let Some(u) = d.pull() {
            units.push(u);
        }
    }
    (units, errors)
}

fn nal_types(u: &Unit, codec: h26x::Codec) -> Vec<u8> {
    h264::avcc_nal_units(&u.data)
        .map(|n| match codec {
            h26x::Codec::H264 => h264::nal_type(&n).unwrap(),
            h26x::Codec::H265 => h265::nal_type(&n).unwrap(),
        })
        .collect()
}

fn distinct_timestamps(packets: &[Packet]) -> Vec<i64> {
    let mut ts: Vec<i64> = packets.iter().map(|p| p.timestamp).collect();
    ts.dedup();
    ts
}

#[test]
fn h264_access_units_from_a_camera_capture() {
    let packets = capture("h264_opus", 0);
    assert!(
        packets.iter().any(|p| p.payload[0] & 0x1f == 28),
        "the capture has FU-A packets"
    );
    let mut d = Depacketizer::new(&h264_sdp_params());
    let (units, errors) = run(&mut d, packets.clone());
    assert_eq!(errors, 0);
    // One unit per RTP timestamp, each ended by its marker bit.
    let ts: Vec<i64> = units.iter().map(|u| u.timestamp).collect();
    assert_eq!(ts, distinct_timestamps(&packets));
    assert!(ts.windows(2).all(|w| w[1] - w[0] == 6000), "15 fps: {ts:?}");
    // Every NAL unit's bytes arrive, length-prefixed.
    for u in &units {
        assert_eq!(
            h264::normalize_nal_lengths(u.data.clone(), 4).unwrap(),
            u.data
        );
    }
    let keyframes: Vec<&Unit> = units.iter().filter(|u| u.keyframe).collect();
    assert!(keyframes.len() >= 2, "a keyframe every second");
    for k in &keyframes {
        let types = nal_types(k, h26x::Codec::H264);
        assert!(
            types.contains(&7) && types.contains(&8) && types.contains(&5),
            "{types:?}"
        );
    }
    assert!(
        units
            .iter()
            .filter(|u| !u.keyframe)
            .all(|u| !nal_types(u, h26x::Codec::H264).contains(&5))
    );
    // In-band SPS/PPS equal to the SDP's: no new parameters.
    assert!(units.iter().all(|u| u.new_params.is_none() && u.loss == 0));
}

#[test]
fn access_units_over_the_frame_limit_are_dropped_and_the_rest_pass() {
    let packets = capture("h264_opus", 0);
    let mut whole = Depacketizer::new(&h264_sdp_params());
    let (units, _) = run(&mut whole, packets.clone());
    let sizes: Vec<usize> = units.iter().map(|u| u.data.len()).collect();
    let limit = *sizes.iter().max().unwrap() - 1;
    let over = sizes.iter().filter(|&&n| n > limit).count();
    assert!(over >= 1);
    let mut d = Depacketizer::new(&h264_sdp_params());
    d.set_max_access_unit(limit);
    let (limited, errors) = run(&mut d, packets);
    assert!(errors >= 1, "the biggest unit is refused");
    assert!(limited.iter().all(|u| u.data.len() <= limit));
    // Every unit under the limit still comes out (those after a refused
    // one may wait for the next keyframe downstream, not here).
    assert!(
        limited.len() + over >= units.len() - 1,
        "{} of {}",
        limited.len(),
        units.len()
    );
}

#[test]
fn h264_parameters_come_in_band_without_sdp() {
    let mut d = Depacketizer::H26x(h26x::H26xDepacketizer::h264(None));
    let (units, _) = run(&mut d, capture("h264_opus", 0));
    let first_key = units.iter().position(|u| u.keyframe).unwrap();
    let with_params: Vec<usize> = units
        .iter()
        .enumerate()
        .filter(|(_, u)| u.new_params.is_some())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(with_params, vec![first_key], "once, then unchanged");
    assert_eq!(units[first_key].new_params, Some(h264_sdp_params()));
    let Depacketizer::H26x(h) = &d else { panic!() };
    assert_eq!(h.params().and_then(|p| p.dimensions()), Some((320, 240)));
}

/// The capture's parameter sets, single NAL unit packets, repacked as one
/// STAP-A (RFC 6184 §5.7.1): the same access unit comes out.
#[test]
fn h264_stap_a_gives_the_same_access_unit() {
    let packets = capture("h264_opus", 0);
    let mut d = Depacketizer::new(&h264_sdp_params());
    let (units, _) = run(&mut d, packets.clone());
    let key_ts = units.iter().find(|u| u.keyframe).unwrap().timestamp;
    let of_key: Vec<Packet> = packets
        .iter()
        .filter(|p| p.timestamp == key_ts)
        .cloned()
        .collect();
    let is_set = |p: &Packet| matches!(p.payload[0] & 0x1f, 7 | 8);
    // Each run of consecutive parameter set packets becomes one STAP-A.
    let mut repacked: Vec<Packet> = Vec::new();
    let mut stap = BytesMut::new();
    let mut aggregated = 0;
    for p in &of_key {
        if is_set(p) {
            if stap.is_empty() {
                stap.put_u8(24 | (p.payload[0] & 0x60));
            }
            stap.put_u16(p.payload.len() as u16);
            stap.put_slice(&p.payload);
            aggregated += 1;
            continue;
        }
        if !stap.is_empty() {
            repacked.push(Packet {
                payload: std::mem::take(&mut stap).freeze(),
                mark: false,
                ..p.clone()
            });
        }
        repacked.push(p.clone());
    }
    assert!(aggregated >= 2);
    assert!(repacked.len() < of_key.len());
    let mut d2 = Depacketizer::new(&h264_sdp_params());
    let (again, errors) = run(&mut d2, repacked);
    assert_eq!(errors, 0);
    let original = units.iter().find(|u| u.keyframe).unwrap();
    assert_eq!(again, vec![original.clone()]);
}

#[test]
fn a_lost_fragment_drops_its_access_unit_only() {
    let packets = capture("h264_opus", 0);
    // A fragment after the first of a NAL unit.
    let (lost_at, lost) = packets
        .iter()
        .enumerate()
        .find(|(_, p)| p.payload[0] & 0x1f == 28 && p.payload[1] & 0x80 == 0)
        .unwrap();
    let lost_ts = lost.timestamp;
    let mut kept: Vec<Packet> = packets.clone();
    kept.remove(lost_at);
    kept[lost_at].loss = 1;
    let mut d = Depacketizer::new(&h264_sdp_params());
    let (units, errors) = run(&mut d, kept);
    assert_eq!(errors, 0, "loss is not an error");
    let ts: Vec<i64> = units.iter().map(|u| u.timestamp).collect();
    let mut expected = distinct_timestamps(&packets);
    expected.retain(|t| *t != lost_ts);
    assert_eq!(ts, expected);
    let after = units.iter().find(|u| u.timestamp > lost_ts).unwrap();
    assert_eq!(after.loss, 1, "the next unit says so");
    assert_eq!(units.iter().map(|u| u.loss as u32).sum::<u32>(), 1);
}

#[test]
fn a_lost_last_packet_drops_that_unit_and_the_next_starts_clean() {
    let packets = capture("h264_opus", 0);
    // The marker packet of a unit followed by a unit starting with a slice.
    let i = packets
        .iter()
        .position(|p| p.mark && p.timestamp > 0)
        .unwrap();
    let mut kept = packets.clone();
    let lost = kept.remove(i);
    kept[i].loss = 1;
    let mut d = Depacketizer::new(&h264_sdp_params());
    let (units, _) = run(&mut d, kept);
    let ts: Vec<i64> = units.iter().map(|u| u.timestamp).collect();
    assert!(!ts.contains(&lost.timestamp));
    assert!(
        ts.contains(&packets[i + 1].timestamp),
        "the next unit starts with the first slice of a picture: kept"
    );
}

#[test]
fn without_marker_bits_units_end_at_the_next_timestamp() {
    let packets: Vec<Packet> = capture("h264_opus", 0)
        .into_iter()
        .map(|p| Packet { mark: false, ..p })
        .collect();
    let mut d = Depacketizer::new(&h264_sdp_params());
    let (units, errors) = run(&mut d, packets.clone());
    assert_eq!(errors, 0);
    let mut expected = distinct_timestamps(&packets);
    expected.pop(); // the last one waits for a successor
    assert_eq!(
        units.iter().map(|u| u.timestamp).collect::<Vec<_>>(),
        expected
    );
}

#[test]
fn h265_access_units_from_a_camera_capture() {
    let packets = capture("h265_aac", 0);
    assert!(
        packets.iter().any(|p| (p.payload[0] >> 1) & 0x3f == 49),
        "FUs"
    );
    let mut d = Depacketizer::new(&h265_params());
    let (units, errors) = run(&mut d, packets.clone());
    assert_eq!(errors, 0);
    assert_eq!(
        units.iter().map(|u| u.timestamp).collect::<Vec<_>>(),
        distinct_timestamps(&packets)
    );
    let first = &units[0];
    let types = nal_types(first, h26x::Codec::H265);
    assert!(first.keyframe, "{types:?}");
    assert!([32, 33, 34].iter().all(|t| types.contains(t)), "{types:?}");
    assert!(units.iter().filter(|u| u.keyframe).count() >= 2);
    for u in &units {
        assert_eq!(
            h264::normalize_nal_lengths(u.data.clone(), 4).unwrap(),
            u.data
        );
        assert_eq!(u.keyframe, h265::is_irap(&u.data));
    }
}

/// An aggregation packet (RFC 7798 §4.4.2) of the VPS, SPS and PPS.
#[test]
fn h265_aggregation_packet() {
    let packets = capture("h265_aac", 0);
    let mut d = Depacketizer::new(&h265_params());
    let (units, _) = run(&mut d, packets);
    let sets: Vec<Bytes> = h264::avcc_nal_units(&units[0].data)
        .filter(|n| matches!(h265::nal_type(n), Some(32..=34)))
        .collect();
    let mut ap = BytesMut::new();
    ap.put_slice(&[48 << 1, 1]);
    for s in &sets {
        ap.put_u16(s.len() as u16);
        ap.put_slice(s);
    }
    let mut d = Depacketizer::new(&h265_params());
    d.push(Packet {
        sequence_number: 1,
        timestamp: 0,
        mark: true,
        loss: 0,
        payload: ap.freeze(),
    })
    .unwrap();
    let u = d.pull().unwrap();
    assert_eq!(h264::avcc_nal_units(&u.data).collect::<Vec<_>>(), sets);
    assert!(!u.keyframe, "parameter sets alone are no picture");
}

#[test]
fn aac_frames_from_a_camera_capture() {
    let packets = capture("h265_aac", 1);
    let mut d = Depacketizer::new(&aac_params());
    let (units, errors) = run(&mut d, packets.clone());
    assert_eq!(errors, 0);
    assert!(units.len() >= packets.len());
    assert!(
        units
            .windows(2)
            .all(|w| w[1].timestamp - w[0].timestamp == 1024),
        "contiguous 1024-sample frames"
    );
    // Sizes as the AU headers say, and the data is what follows them.
    let total: usize = units.iter().map(|u| u.data.len()).sum();
    let headers: usize = packets
        .iter()
        .map(|p| 2 + (u16::from_be_bytes([p.payload[0], p.payload[1]]) as usize / 8))
        .sum();
    let payloads: usize = packets.iter().map(|p| p.payload.len()).sum();
    assert_eq!(total, payloads - headers);
    // A raw AAC-LC frame starts with a channel pair element (id 1) here.
    assert!(units.iter().all(|u| u.data[0] >> 5 == 1), "CPE");
}

/// The AAC packetizer's output (RFC 3640 AAC-hbr, what RTSP readers get)
/// depacketizes to the camera's frames, whole or fragmented.
#[test]
fn packetized_aac_depacketizes_to_the_same_frames() {
    let (units, _) = run(
        &mut Depacketizer::new(&aac_params()),
        capture("h265_aac", 1),
    );
    assert!(units.len() > 10);
    for max in [packetize::MAX_PAYLOAD, 100, 9] {
        let mut seq = 0u16;
        let mut packets = Vec::new();
        for u in &units {
            let payloads = packetize::packetize(&aac_params(), true, &u.data, max);
            assert!(!payloads.is_empty());
            assert_eq!(payloads.iter().filter(|p| p.marker).count(), 1);
            assert!(
                payloads.last().unwrap().marker,
                "marker on the last fragment"
            );
            for p in payloads {
                assert!(p.data.len() <= max.max(8), "{max}: {}", p.data.len());
                packets.push(Packet {
                    sequence_number: seq,
                    timestamp: u.timestamp,
                    mark: p.marker,
                    loss: 0,
                    payload: Bytes::copy_from_slice(&p.data),
                });
                seq = seq.wrapping_add(1);
            }
        }
        let (again, errors) = run(&mut Depacketizer::new(&aac_params()), packets);
        assert_eq!(errors, 0, "{max}");
        assert_eq!(again.len(), units.len(), "{max}");
        for (a, b) in again.iter().zip(&units) {
            assert_eq!((a.timestamp, &a.data), (b.timestamp, &b.data), "{max}");
        }
    }
    // Nothing for an empty frame or one the 13-bit size cannot describe.
    assert!(packetize::packetize(&aac_params(), true, &Bytes::new(), 1200).is_empty());
    let huge = Bytes::from(vec![0u8; 0x2000]);
    assert!(packetize::packetize(&aac_params(), true, &huge, 1200).is_empty());
}

/// One access unit fragmented over three packets (RFC 3640 §3.2.3.1).
#[test]
fn aac_fragmented_access_unit() {
    let packets = capture("h265_aac", 1);
    let mut d = Depacketizer::new(&aac_params());
    let (units, _) = run(&mut d, packets.iter().take(1).cloned());
    let frame = units[0].data.clone();
    let third = frame.len() / 3;
    let header = ((frame.len() as u16) << 3).to_be_bytes();
    let pieces = [
        &frame[..third],
        &frame[third..2 * third],
        &frame[2 * third..],
    ];
    let mut d = Depacketizer::new(&aac_params());
    for (i, piece) in pieces.iter().enumerate() {
        let mut p = BytesMut::new();
        p.put_slice(&[0, 16]);
        p.put_slice(&header);
        p.put_slice(piece);
        d.push(Packet {
            sequence_number: i as u16,
            timestamp: 4096,
            mark: i == 2,
            loss: 0,
            payload: p.freeze(),
        })
        .unwrap();
        assert_eq!(d.pull().is_some(), i == 2);
    }
    // A lost middle fragment: nothing comes out, and the error names the packet.
    let mut d = Depacketizer::new(&aac_params());
    let make = |i: usize, loss: u16| {
        let mut p = BytesMut::new();
        p.put_slice(&[0, 16]);
        p.put_slice(&header);
        p.put_slice(pieces[i]);
        Packet {
            sequence_number: 10 + i as u16,
            timestamp: 4096,
            mark: i == 2,
            loss,
            payload: p.freeze(),
        }
    };
    d.push(make(0, 0)).unwrap();
    let e = d.push(make(2, 1)).unwrap_err();
    assert_eq!(e.sequence_number, 12);
    assert!(d.pull().is_none());
}

#[test]
fn opus_packets_pass_through_one_to_one() {
    let packets = capture("h264_opus", 1);
    let mut d = Depacketizer::new(&CodecParams::Opus(OpusParams { channels: 2 }));
    let (units, errors) = run(&mut d, packets.clone());
    assert_eq!(errors, 0);
    assert_eq!(units.len(), packets.len());
    for (u, p) in units.iter().zip(&packets) {
        assert_eq!(u.data, p.payload);
        assert_eq!(u.timestamp, p.timestamp);
        // RFC 6716 §3.1 TOC: opusenc's default 20 ms CELT frames, stereo.
        assert_eq!(u.data[0] >> 3, 31, "config 31: CELT FB 20 ms");
        assert_ne!(u.data[0] & 0x04, 0, "stereo");
    }
    assert!(
        units
            .windows(2)
            .all(|w| w[1].timestamp - w[0].timestamp == 960)
    );
}

#[test]
fn errors_carry_the_sequence_number() {
    let mut d = Depacketizer::new(&h264_sdp_params());
    // Each at its own timestamp: after an error the rest of that access
    // unit is skipped.
    let pkt = |seq: u16, payload: &'static [u8]| Packet {
        sequence_number: seq,
        timestamp: i64::from(seq) * 3000,
        mark: false,
        loss: 0,
        payload: Bytes::from_static(payload),
    };
    let e = d.push(pkt(7, &[0x7c, 0x05, 1, 2])).unwrap_err(); // FU-A, no start
    assert_eq!(e.sequence_number, 7);
    assert!(e.to_string().contains("never started"), "{e}");
    let e = d.push(pkt(8, &[0x19, 0])).unwrap_err(); // STAP-B
    assert!(
        e.to_string().contains("unsupported NAL unit type 25"),
        "{e}"
    );
    let e = d.push(pkt(9, &[0x78, 0, 9, 0x67])).unwrap_err(); // STAP-A too short
    assert!(e.to_string().contains("does not fit"), "{e}");
}

/// Seeded mutations of the captures (truncation, bit flips, reordering,
/// dropped packets): no panic, and every unit that comes out is well formed.
#[test]
fn mutated_captures_never_panic() {
    let streams: Vec<(CodecParams, Vec<Packet>)> = vec![
        (h264_sdp_params(), capture("h264_opus", 0)),
        (h265_params(), capture("h265_aac", 0)),
        (aac_params(), capture("h265_aac", 1)),
        (
            CodecParams::Opus(OpusParams { channels: 2 }),
            capture("h264_opus", 1),
        ),
    ];
    let mut rng = StdRng::seed_from_u64(0x5eed_7587);
    for round in 0..60 {
        for (params, packets) in &streams {
            let mut mutated: Vec<Packet> = packets.clone();
            for p in mutated.iter_mut() {
                match rng.gen_range(0..10) {
                    0 => {
                        let n = rng.gen_range(0..=p.payload.len());
                        p.payload.truncate(n);
                    }
                    1 if !p.payload.is_empty() => {
                        let mut b = p.payload.to_vec();
                        for _ in 0..rng.gen_range(1..4) {
                            let i = rng.gen_range(0..b.len());
                            b[i] ^= 1 << rng.gen_range(0..8);
                        }
                        p.payload = b.into();
                    }
                    2 => p.mark = !p.mark,
                    3 => p.loss = rng.r#gen(),
                    4 => p.timestamp += rng.gen_range(-3000..3000),
                    _ => {}
                }
            }
            if round % 2 == 1 {
                for _ in 0..mutated.len() / 8 {
                    let i = rng.gen_range(0..mutated.len());
                    let j = rng.gen_range(0..mutated.len());
                    mutated.swap(i, j);
                }
                mutated.retain(|_| rng.gen_range(0..20) != 0);
            }
            let mut d = Depacketizer::new(params);
            let (units, _) = run(&mut d, mutated);
            for u in units {
                assert!(!u.data.is_empty());
                if params.kind() == crate::media::TrackKind::Video {
                    assert_eq!(
                        h264::normalize_nal_lengths(u.data.clone(), 4).unwrap(),
                        u.data
                    );
                }
            }
        }
    }
}

/// Camera access units → our packetizer → our depacketizer: the same
/// units come back (H.264 and H.265 captures, parameter sets in band), one
/// marker per unit, no payload over the limit, at several limits.
#[test]
fn packetized_units_depacketize_to_the_same_units() {
    for (params, name) in [
        (h264_sdp_params(), "h264_opus"),
        (h265_params(), "h265_aac"),
    ] {
        let (units, _) = run(&mut Depacketizer::new(&params), capture(name, 0));
        assert!(units.len() > 10);
        for max in [packetize::MAX_PAYLOAD, 300, 60] {
            let mut seq = 0u16;
            let mut packets = Vec::new();
            for u in &units {
                let payloads = packetize::packetize(&params, u.keyframe, &u.data, max);
                assert_eq!(payloads.iter().filter(|p| p.marker).count(), 1, "{name}");
                assert!(payloads.last().unwrap().marker);
                for p in payloads {
                    assert!(p.data.len() <= max, "{name} {max}: {}", p.data.len());
                    packets.push(Packet {
                        sequence_number: seq,
                        timestamp: u.timestamp,
                        mark: p.marker,
                        loss: 0,
                        payload: Bytes::copy_from_slice(&p.data),
                    });
                    seq = seq.wrapping_add(1);
                }
            }
            let (again, errors) = run(&mut Depacketizer::new(&params), packets);
            assert_eq!(errors, 0, "{name} {max}");
            assert_eq!(again.len(), units.len(), "{name} {max}");
            for (a, b) in again.iter().zip(&units) {
                assert_eq!((a.timestamp, a.keyframe), (b.timestamp, b.keyframe));
                // Access unit delimiters are dropped (as str0m's packetizer
                // did); every other NAL unit comes back as it was.
                let mut expected = BytesMut::new();
                for n in h264::avcc_nal_units(&b.data) {
                    let aud = match params {
                        CodecParams::H264(_) => h264::nal_type(&n) == Some(h264::NAL_AUD),
                        _ => h265::nal_type(&n) == Some(35),
                    };
                    if !aud {
                        expected.put_u32(n.len() as u32);
                        expected.put_slice(&n);
                    }
                }
                assert_eq!(a.data, expected, "{name} {max} at {}", b.timestamp);
            }
        }
    }
}
