//! Round trips through [`AacToOpus`] and [`OpusToAac`]: AAC made with the
//! AAC encoder of [`aac`](super::aac), Opus made with [`OpusEncoder`], and the
//! output decoded in process (FFmpeg's `aac` decoder, `libopus`) and checked
//! for the tone, its level and its timing against the input pts.

use super::aac::test_decoder::Decoder as AacDecoder;
use super::aac::{AacEncoder, AacEncoderConfig};
use super::opus::{OpusDecoder, OpusEncoder};
use super::tests::goertzel_power;
use super::*;
use crate::media::{AacParams, OpusParams};

const PI2: f64 = 2.0 * std::f64::consts::PI;

/// Interleaved `channels` samples of a `freq` Hz sine at `rate`, from tick
/// `start` on; channel `c` has amplitude `amp / (c + 1)`. Ticks before `onset`
/// are silent.
fn sine(freq: f64, amp: f64, rate: u32, start: i64, n: usize, channels: usize) -> Vec<i16> {
    sine_from(freq, amp, rate, start, n, channels, i64::MIN)
}

fn sine_from(
    freq: f64,
    amp: f64,
    rate: u32,
    start: i64,
    n: usize,
    channels: usize,
    onset: i64,
) -> Vec<i16> {
    let mut out = Vec::with_capacity(n * channels);
    for i in 0..n {
        let tick = start + i as i64;
        let v = if tick < onset {
            0.0
        } else {
            (PI2 * freq * tick as f64 / rate as f64).sin()
        };
        for c in 0..channels {
            out.push((amp / (c + 1) as f64 * 32767.0 * v).round() as i16);
        }
    }
    out
}

/// AAC-LC frames of `pcm` (interleaved, `rate` Hz) starting at `start`, made
/// by the crate's AAC encoder; their pts line up with the PCM.
fn make_aac(rate: u32, channels: u8, start: i64, pcm: &[i16]) -> (AacParams, Vec<EncodedFrame>) {
    let mut enc = AacEncoder::new(AacEncoderConfig {
        input_rate: rate,
        channels,
        output_rate: rate,
        bit_rate: 64_000 * u32::from(channels),
        cutoff: None,
    })
    .unwrap();
    let mut frames = Vec::new();
    enc.anchor(start, &mut frames).unwrap();
    enc.push_pcm(pcm, &mut frames).unwrap();
    enc.finish(&mut frames).unwrap();
    let CodecParams::Aac(p) = enc.params().clone() else {
        panic!()
    };
    (p, frames)
}

/// Opus packets of `pcm` (interleaved, 48 kHz) from `start` on, `frame`
/// samples each.
fn make_opus(channels: u8, frame: usize, start: i64, pcm: &[i16]) -> Vec<EncodedFrame> {
    let mut enc = OpusEncoder::new(OpusEncoderConfig {
        frame_samples: frame,
        ..OpusEncoderConfig::new(channels)
    })
    .unwrap();
    let ch = usize::from(channels);
    let mut out = Vec::new();
    enc.anchor(start, &mut out).unwrap();
    for chunk in pcm.chunks(777 * ch) {
        enc.push_with(&mut out, |fifo| {
            for (c, buf) in fifo.iter_mut().enumerate() {
                buf.extend(
                    chunk
                        .iter()
                        .skip(c)
                        .step_by(ch)
                        .map(|&s| s as f32 / 32768.0),
                );
            }
            Ok(())
        })
        .unwrap();
    }
    enc.finish(&mut out).unwrap();
    out
}

/// Decoded audio: `ticks[i]` is when sample `i` plays, per its frame's pts.
struct Decoded {
    ticks: Vec<i64>,
    ch: Vec<Vec<f32>>,
}

impl Decoded {
    /// Channel `c`'s (tick, sample) pairs with tick in `range`.
    fn window(&self, c: usize, range: std::ops::Range<i64>) -> Vec<(i64, f32)> {
        self.ticks
            .iter()
            .zip(&self.ch[c])
            .filter(|(t, _)| range.contains(t))
            .map(|(&t, &s)| (t, s))
            .collect()
    }
}

/// Decodes Opus packets with libopus; every packet must decode to `frame`
/// samples.
fn decode_opus(frames: &[EncodedFrame], channels: u8, frame: usize) -> Decoded {
    let mut dec = OpusDecoder::new(channels, OpusImplementation::LibOpus).unwrap();
    let ch = usize::from(channels);
    let mut d = Decoded {
        ticks: Vec::new(),
        ch: vec![Vec::new(); ch],
    };
    let mut pcm = Vec::new();
    for f in frames {
        pcm.clear();
        let n = dec.decode(&f.data, &mut pcm).unwrap();
        assert_eq!(n, frame, "Opus packet at {} decodes to {n} samples", f.pts);
        d.ticks.extend((0..n as i64).map(|j| f.pts + j));
        for (c, out) in d.ch.iter_mut().enumerate() {
            out.extend(pcm.iter().skip(c).step_by(ch).map(|&s| s as f32 / 32768.0));
        }
    }
    d
}

/// Decodes AAC frames (channel 0); each must decode to 1024 samples.
fn decode_aac(asc: &[u8], frames: &[EncodedFrame]) -> Decoded {
    let mut dec = AacDecoder::new(asc);
    let mut d = Decoded {
        ticks: Vec::new(),
        ch: vec![Vec::new()],
    };
    for f in frames {
        let pcm = dec.decode(&f.data);
        assert_eq!(pcm.len(), 1024);
        d.ticks.extend((0..1024).map(|j| f.pts + j));
        d.ch[0].extend(pcm);
    }
    d
}

/// SNR (dB) of `decoded` against the ideal sine at each sample's tick (on a
/// `rate` clock): only high if the ticks say exactly when samples play.
fn snr_db(decoded: &[(i64, f32)], freq: f64, amp: f64, rate: u32, shift: i64) -> f64 {
    let (mut sig, mut noise) = (0.0, 0.0);
    for &(tick, s) in decoded {
        let ideal = amp * (PI2 * freq * (tick + shift) as f64 / rate as f64).sin();
        sig += ideal * ideal;
        noise += (s as f64 - ideal).powi(2);
    }
    10.0 * (sig / noise).log10()
}

/// The shift (ticks, within ±`range`) at which `part` best fits the ideal
/// sine, and the SNR there.
fn best_shift(part: &[(i64, f32)], amp: f64, rate: u32, range: i64) -> (i64, f64) {
    (-range..=range)
        .map(|s| (s, snr_db(part, 1000.0, amp, rate, s)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap()
}

/// Asserts timing to within `tolerance` ticks (0: sample-exact) and a
/// minimum SNR there. A 1 kHz sine is 48 ticks per cycle at 48 kHz, so an
/// error of an Opus or AAC frame, or of the 312-sample encoder delay, shows.
fn assert_in_time(
    what: &str,
    part: &[(i64, f32)],
    amp: f64,
    rate: u32,
    min_snr: f64,
    tolerance: i64,
) -> i64 {
    assert!(part.len() > 1000, "{what}: {} samples", part.len());
    let snr = snr_db(part, 1000.0, amp, rate, 0);
    let (shift, best) = best_shift(part, amp, rate, 24);
    eprintln!("{what}: SNR {snr:.1} dB at the pts; best {best:.1} dB {shift:+} ticks off");
    assert!(shift.abs() <= tolerance, "{what}: {shift:+} ticks off");
    assert!(best > min_snr, "{what}: SNR {best:.1} dB");
    shift
}

/// libopus at 32 kbit/s mono may code a pure tone in its SILK or hybrid
/// modes, whose output is a sample or two off CELT's timing (and noisier);
/// stereo at 64 kbit/s is CELT and sample-exact. A 2-sample (42 µs) offset
/// is far below anything audible or visible in A/V sync.
const MONO_TOLERANCE: i64 = 3;
const MONO_SNR: f64 = 12.0;

fn assert_spaced(frames: &[EncodedFrame], step: i64) {
    for w in frames.windows(2) {
        assert_eq!(w[1].pts - w[0].pts, step, "pts {} → {}", w[0].pts, w[1].pts);
    }
}

/// The tick of the first decoded sample of channel 0 above 0.25 (the tone
/// has amplitude 0.5), which must be within 24 ticks (half a cycle of
/// 1 kHz) of `onset`: with [`assert_in_time`], timing is then exact, not
/// just modulo a cycle (an error of one 960- or 1024-sample frame is a
/// whole number of 1 kHz cycles).
fn assert_onset(what: &str, d: &Decoded, onset: i64) -> i64 {
    let first_loud = d
        .ticks
        .iter()
        .zip(&d.ch[0])
        .find(|(_, s)| s.abs() > 0.25)
        .unwrap()
        .0;
    eprintln!("{what}: tone at {first_loud}, input says {onset}");
    assert!(
        (first_loud - onset).abs() <= 24,
        "{what}: tone starts at {first_loud}, input says {onset}"
    );
    *first_loud
}

fn opus_channels(t: &dyn AudioTranscoder) -> u8 {
    match t.output() {
        CodecParams::Opus(p) => p.channels,
        other => panic!("output {other:?}"),
    }
}

/// Packets with the Opus packets expected for `n` samples at 48 kHz: the
/// timeline is the encoder's pre-pad plus the input, padded to whole packets,
/// and the first (priming) packet is dropped while the flush adds one.
fn expected_opus_packets(t: &AacToOpus, n48: usize) -> usize {
    let pre_pad = (960 - t.encoder().delay() % 960) % 960;
    (n48 + pre_pad).div_ceil(960)
}

fn push_all(t: &mut dyn AudioTranscoder, frames: &[EncodedFrame]) -> Vec<EncodedFrame> {
    let mut out = Vec::new();
    for f in frames {
        out.extend(t.push(f.pts, &f.data).unwrap());
    }
    out.extend(t.finish().unwrap());
    out
}

#[test]
fn aac_to_opus_48k_stereo() {
    let start = 48_000i64; // 1 s
    let n = 3 * 48_000;
    let onset = start + 4800;
    let pcm = sine_from(1000.0, 0.5, 48_000, start, n, 2, onset);
    let (params, aac) = make_aac(48_000, 2, start, &pcm);
    assert_eq!(aac.len(), 141);
    let mut t = AacToOpus::new(&params).unwrap();
    assert_eq!(t.encoder().codec_name(), "libopus");
    assert_eq!(t.encoder().delay(), 312, "libopus lookahead in audio mode");
    assert_eq!(opus_channels(&t), 2);
    assert_eq!(t.output(), &CodecParams::Opus(OpusParams { channels: 2 }));
    let out = push_all(&mut t, &aac);
    assert_eq!(out[0].pts, start, "the first input pts anchors the output");
    assert_spaced(&out, 960);
    assert_eq!(out.len(), expected_opus_packets(&t, 141 * 1024));
    assert_eq!(out.len(), 152);
    let s = t.stats();
    assert_eq!((s.input_packets, s.output_frames), (141, 152));
    assert_eq!(
        (s.reanchors, s.filled_samples, s.trimmed_samples),
        (0, 0, 0)
    );
    assert!(matches!(
        t.push(0, &aac[0].data),
        Err(TranscodeError::Finished)
    ));

    // ~64 kbit/s.
    let bytes: usize = out.iter().map(|f| f.data.len()).sum();
    let kbps = bytes as f64 * 8.0 / (out.len() as f64 * 0.02) / 1000.0;
    eprintln!("AAC → Opus stereo: {kbps:.1} kbit/s");
    assert!((40.0..90.0).contains(&kbps), "{kbps} kbit/s");

    let d = decode_opus(&out, 2, 960);
    assert_onset("48k stereo", &d, onset);
    let steady = onset + 4800..start + n as i64 - 4800;
    for (c, amp) in [(0, 0.5), (1, 0.25)] {
        let part = d.window(c, steady.clone());
        let x: Vec<f32> = part.iter().map(|s| s.1).collect();
        let p1k = goertzel_power(&x, 1000.0, 48_000.0);
        let total = x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / x.len() as f64;
        let want = amp * amp / 4.0;
        assert!(
            (p1k - want).abs() < want * 0.15,
            "ch {c}: 1 kHz power {p1k}"
        );
        assert!(
            p1k * 2.0 / total > 0.98,
            "ch {c}: {p1k} of {total} at 1 kHz"
        );
        // CELT at 64 kbit/s: sample-exact.
        assert_in_time(&format!("48k stereo ch {c}"), &part, amp, 48_000, 25.0, 0);
    }
}

#[test]
fn aac_to_opus_lines_up_with_input_pts() {
    // Silence, then a tone from `onset` on; odd start pts.
    let start = 12_345i64;
    let onset = start + 10_000;
    let n = 48_000;
    let pcm = sine_from(1000.0, 0.5, 48_000, start, n, 1, onset);
    let (params, aac) = make_aac(48_000, 1, start, &pcm);
    let mut t = AacToOpus::new(&params).unwrap();
    assert_eq!(opus_channels(&t), 1);
    // Real AAC frame sizes, one at a time.
    let out = push_all(&mut t, &aac);
    assert_eq!(out[0].pts, start);
    assert_spaced(&out, 960);
    let d = decode_opus(&out, 1, 960);
    assert_onset("48k mono", &d, onset);
    let part = d.window(0, onset + 2048..start + n as i64 - 2048);
    assert_in_time("48k mono", &part, 0.5, 48_000, MONO_SNR, MONO_TOLERANCE);
}

#[test]
fn aac_to_opus_44k1() {
    let start = 44_100i64;
    let n = 2 * 44_100;
    for channels in [1u8, 2] {
        let what = format!("44.1k, {channels} ch");
        let pcm = sine_from(
            1000.0,
            0.5,
            44_100,
            start,
            n,
            usize::from(channels),
            start + 4410,
        );
        let (params, aac) = make_aac(44_100, channels, start, &pcm);
        assert_eq!(params.sample_rate, 44_100);
        let mut t = AacToOpus::new(&params).unwrap();
        assert_eq!(opus_channels(&t), channels);
        let out = push_all(&mut t, &aac);
        assert_eq!(out[0].pts, 48_000, "1 s at 44.1 kHz is 1 s at 48 kHz");
        assert_spaced(&out, 960);
        // 87 AAC frames = 89088 samples at 44.1 kHz = 96966.5 at 48 kHz.
        let n48 = (aac.len() * 1024 * 48_000).div_ceil(44_100);
        let want = expected_opus_packets(&t, n48);
        assert!(
            out.len().abs_diff(want) <= 1,
            "{what}: {} packets, ~{want} expected",
            out.len()
        );
        assert!(out.last().unwrap().pts + 960 >= 48_000 + n48 as i64);
        let d = decode_opus(&out, channels, 960);
        assert_onset(&what, &d, 48_000 + 4800);
        let part = d.window(0, 48_000 + 9600..48_000 + 96_000 - 4800);
        let x: Vec<f32> = part.iter().map(|s| s.1).collect();
        let p1k = goertzel_power(&x, 1000.0, 48_000.0);
        assert!((p1k - 0.0625).abs() < 0.01, "{what}: 1 kHz power {p1k}");
        // The input's time (tick/44100) is the output's (tick/48000):
        // swresample is phase-aligned, exact with CELT (stereo).
        if channels == 2 {
            assert_in_time(&what, &part, 0.5, 48_000, 25.0, 0);
        } else {
            assert_in_time(&what, &part, 0.5, 48_000, MONO_SNR, MONO_TOLERANCE);
        }
    }
}

/// HE-AAC signalled explicitly (AOT 5, SBR to 48 kHz) over an AAC-LC core
/// at 24 kHz. Debian's FFmpeg has no HE-AAC encoder (no libfdk_aac), so the
/// bitstream carries no SBR data: the decoder still runs its SBR path (QMF
/// upsampling, 2048 samples per frame at 48 kHz) with an empty high band,
/// which is what this transcoder must handle (rate ≠ the track timescale).
#[test]
fn aac_to_opus_he_aac_signalling() {
    let start = 24_000i64;
    let n = 2 * 24_000;
    let onset = start + 2400; // at 24 kHz; 52800 at 48 kHz
    let pcm = sine_from(1000.0, 0.5, 24_000, start, n, 1, onset);
    let (lc, aac) = make_aac(24_000, 1, start, &pcm);
    assert_eq!(&lc.asc[..2], &[0x13, 0x08], "AAC-LC 24 kHz mono");
    // AOT 5, 24 kHz (6), mono, SBR at 48 kHz (3), core AOT 2, GASpecificConfig 0.
    let asc = Bytes::from_static(&[0x2B, 0x09, 0x88, 0x00]);
    for (object_type, asc, want_channels) in [
        (5u8, asc, 1u8),
        // AOT 29 (HE-AACv2, parametric stereo): a mono core decodes to stereo.
        (29, Bytes::from_static(&[0xEB, 0x09, 0x88, 0x00]), 2),
    ] {
        let params = AacParams {
            asc,
            object_type,
            sample_rate: 24_000,
            channels: 1,
            samples_per_frame: 1024,
        };
        let mut t = AacToOpus::new(&params).unwrap();
        assert_eq!(opus_channels(&t), want_channels);
        let out = push_all(&mut t, &aac);
        assert_eq!(out[0].pts, 48_000, "24 kHz pts scaled to 48 kHz");
        assert_spaced(&out, 960);
        assert_eq!(t.stats().input_samples, aac.len() as u64 * 2048);
        assert_eq!(
            out.len(),
            expected_opus_packets(&t, aac.len() * 2048),
            "AOT {object_type}"
        );
        assert_eq!(t.stats().reanchors, 0);
        let d = decode_opus(&out, want_channels, 960);
        let part = d.window(0, 48_000 + 19_200..48_000 + 96_000 - 9600);
        let x: Vec<f32> = part.iter().map(|s| s.1).collect();
        let p1k = goertzel_power(&x, 1000.0, 48_000.0);
        let total = x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / x.len() as f64;
        assert!(p1k * 2.0 / total > 0.95, "AOT {object_type}: tone lost");
        assert!(p1k > 0.01, "AOT {object_type}: 1 kHz power {p1k}");
        // FFmpeg's SBR path (QMF analysis and synthesis) delays the core;
        // a real HE-AAC encoder's priming covers that, this synthetic stream
        // has none. Measure and report the delay; the transcoder itself adds
        // nothing (see the LC tests).
        let amp = (p1k * 4.0).sqrt();
        let first_loud = d
            .ticks
            .iter()
            .zip(&d.ch[0])
            .find(|(_, s)| f64::from(s.abs()) > amp / 2.0)
            .unwrap()
            .0;
        let (fine, snr) = best_shift(&part, amp, 48_000, 24);
        let coarse = first_loud - 2 * onset;
        // The delay is `coarse` rounded to the whole cycles that agree with `fine`.
        let delay = ((coarse + fine) as f64 / 48.0).round() as i64 * 48 - fine;
        eprintln!(
            "AOT {object_type}: 1 kHz amplitude {amp:.3}, decoded {delay} ticks after the \
             input pts (onset {coarse}, phase fit {fine:+}, {snr:.1} dB)"
        );
        assert!((0..2048).contains(&delay), "AOT {object_type}: {delay}");
    }
}

#[test]
fn aac_to_opus_lost_frame_is_filled() {
    let pcm = sine(1000.0, 0.5, 48_000, 0, 3 * 48_000, 1);
    let (params, aac) = make_aac(48_000, 1, 0, &pcm);
    let mut t = AacToOpus::new(&params).unwrap();
    let mut out = Vec::new();
    for (i, f) in aac.iter().enumerate() {
        if i == 40 {
            continue; // lost
        }
        out.extend(t.push(f.pts, &f.data).unwrap());
        if i == 80 {
            out.extend(t.push(f.pts, &f.data).unwrap()); // duplicated
        }
    }
    out.extend(t.finish().unwrap());
    let s = t.stats();
    assert_eq!(
        (s.filled_samples, s.trimmed_samples, s.reanchors),
        (1024, 1024, 0)
    );
    assert_eq!(out.len(), expected_opus_packets(&t, aac.len() * 1024));
    assert_spaced(&out, 960);
    let d = decode_opus(&out, 1, 960);
    let part = d.window(0, 60 * 1024..3 * 48_000 - 4800);
    assert_in_time(
        "after a lost frame",
        &part,
        0.5,
        48_000,
        MONO_SNR,
        MONO_TOLERANCE,
    );
}

#[test]
fn aac_to_opus_jumps_reanchor() {
    let pcm = sine_from(1000.0, 0.5, 48_000, 0, 48_000, 1, 4800);
    let (params, aac) = make_aac(48_000, 1, 0, &pcm);
    for jump in [5 * 48_000i64, -5 * 48_000] {
        let base = 1_000_000i64;
        let second = base + 48_000 + jump;
        let mut t = AacToOpus::new(&params).unwrap();
        let mut out = Vec::new();
        for origin in [base, second] {
            for f in &aac {
                out.extend(t.push(origin + f.pts, &f.data).unwrap());
            }
        }
        out.extend(t.finish().unwrap());
        assert_eq!(t.stats().reanchors, 1);
        let split = out.iter().position(|f| f.pts == second).unwrap();
        let (a, b) = out.split_at(split);
        assert_eq!(a[0].pts, base);
        assert_spaced(a, 960);
        assert_spaced(b, 960);
        assert_eq!(a.len(), expected_opus_packets(&t, aac.len() * 1024));
        // The sine restarts at phase 0 at each origin; both decode in time.
        let d = decode_opus(&out, 1, 960);
        for origin in [base, second] {
            let mut d = Decoded {
                ticks: d.ticks.iter().map(|t| t - origin).collect(),
                ch: d.ch.clone(),
            };
            // Only this timeline (the other may be earlier or later).
            for (t, s) in d.ticks.iter().zip(d.ch[0].iter_mut()) {
                if !(0..48_000).contains(t) {
                    *s = 0.0;
                }
            }
            assert_onset(&format!("jump {jump} @ {origin}"), &d, 4800);
            let part: Vec<(i64, f32)> = d.window(0, 9600..43_200).into_iter().collect();
            assert_in_time(
                &format!("jump {jump} @ {origin}"),
                &part,
                0.5,
                48_000,
                MONO_SNR,
                MONO_TOLERANCE,
            );
        }
    }
}

#[test]
fn opus_to_aac_all_frame_durations() {
    for (channels, frame) in [(2u8, 960usize), (1, 480), (2, 1920), (1, 2880), (2, 240)] {
        let start = 96_000i64;
        let n = 2 * 48_000;
        let onset = start + 4800;
        let pcm = sine_from(1000.0, 0.5, 48_000, start, n, usize::from(channels), onset);
        let opus = make_opus(channels, frame, start, &pcm);
        assert_eq!(opus[0].pts, start);
        assert_spaced(&opus, frame as i64);
        let mut t = OpusToAac::new(&OpusParams { channels }).unwrap();
        assert_eq!(t.decoder_name(), "libopus");
        let CodecParams::Aac(p) = t.output().clone() else {
            panic!()
        };
        assert_eq!(
            (
                p.object_type,
                p.sample_rate,
                p.channels,
                p.samples_per_frame
            ),
            (2, 48_000, channels, 1024)
        );
        let out = push_all(&mut t, &opus);
        let what = format!("{channels} ch, {frame}-sample packets");
        assert_eq!(out[0].pts, start, "{what}");
        assert_spaced(&out, 1024);
        let decoded = opus.len() * frame;
        assert_eq!(t.stats().input_samples, decoded as u64);
        assert_eq!(out.len(), decoded.div_ceil(1024), "{what}");
        let s = t.stats();
        assert_eq!(
            (s.reanchors, s.filled_samples, s.trimmed_samples),
            (0, 0, 0)
        );

        let bytes: usize = out.iter().map(|f| f.data.len()).sum();
        let kbps = bytes as f64 * 8.0 / (out.len() as f64 * 1024.0 / 48_000.0) / 1000.0;
        assert!(kbps > 30.0 * f64::from(channels), "{what}: {kbps} kbit/s");

        let d = decode_aac(&p.asc, &out);
        assert_onset(&what, &d, onset);
        let part = d.window(0, onset + 4800..start + n as i64 - 4800);
        let x: Vec<f32> = part.iter().map(|s| s.1).collect();
        let p1k = goertzel_power(&x, 1000.0, 48_000.0);
        assert!((p1k - 0.0625).abs() < 0.01, "{what}: 1 kHz power {p1k}");
        // The Opus input comes from libopus: CELT (stereo, 64 kbit/s) is
        // sample-exact, SILK/hybrid (mono, 32 kbit/s) within a few samples.
        if channels == 2 {
            assert_in_time(&what, &part, 0.5, 48_000, 20.0, 0);
        } else {
            assert_in_time(&what, &part, 0.5, 48_000, MONO_SNR, MONO_TOLERANCE);
        }
    }
}

#[test]
fn opus_to_aac_lines_up_with_input_pts() {
    let start = 7_777i64;
    let onset = start + 20_000;
    let pcm = sine_from(1000.0, 0.5, 48_000, start, 48_000, 1, onset);
    let opus = make_opus(1, 960, start, &pcm);
    let mut t = OpusToAac::new(&OpusParams { channels: 1 }).unwrap();
    let out = push_all(&mut t, &opus);
    assert_eq!(out[0].pts, start);
    let CodecParams::Aac(p) = t.output().clone() else {
        panic!()
    };
    let d = decode_aac(&p.asc, &out);
    assert_onset("Opus → AAC", &d, onset);
}

/// Packets of different durations in one stream (the encoder's choice may
/// change), a lost packet, a duplicate and millisecond jitter.
#[test]
fn opus_to_aac_mixed_durations_loss_and_jitter() {
    let pcm = sine(1000.0, 0.5, 48_000, 0, 96_000, 2);
    let mut input = make_opus(2, 480, 0, &pcm[..2 * 48_000]);
    input.truncate(100); // 1 s of 10 ms packets
    let tail = make_opus(2, 2880, 48_000, &pcm[2 * 48_000..]);
    input.extend(tail.into_iter().take(16)); // 0.96 s of 60 ms packets
    let mut t = OpusToAac::new(&OpusParams { channels: 2 }).unwrap();
    let mut out = Vec::new();
    for (i, f) in input.iter().enumerate() {
        if i == 50 {
            continue; // lost
        }
        let jitter = [0, 48, -48, 0][i % 4];
        out.extend(t.push(f.pts + jitter, &f.data).unwrap());
        if i == 110 {
            // A duplicate (of a 60 ms packet: a 10 ms one is within the
            // clock's 15 ms jitter tolerance and would count as audio).
            out.extend(t.push(f.pts, &f.data).unwrap());
        }
    }
    out.extend(t.finish().unwrap());
    let s = t.stats();
    assert_eq!(
        (s.reanchors, s.filled_samples, s.trimmed_samples),
        (0, 480, 2880)
    );
    let total: usize = 48_000 + 16 * 2880;
    assert_eq!(out.len(), total.div_ceil(1024));
    assert_spaced(&out, 1024);
}

#[test]
fn opus_to_aac_jump_reanchors() {
    let pcm = sine(1000.0, 0.5, 48_000, 0, 48_000, 1);
    let opus = make_opus(1, 960, 0, &pcm);
    let mut t = OpusToAac::new(&OpusParams { channels: 1 }).unwrap();
    let mut out = Vec::new();
    for origin in [0i64, 10 * 48_000] {
        for f in &opus {
            out.extend(t.push(origin + f.pts, &f.data).unwrap());
        }
    }
    out.extend(t.finish().unwrap());
    assert_eq!(t.stats().reanchors, 1);
    let per = (opus.len() * 960).div_ceil(1024);
    assert_eq!(out.len(), 2 * per);
    assert_eq!(out[per].pts, 10 * 48_000);
    assert_spaced(&out[..per], 1024);
    assert_spaced(&out[per..], 1024);
}

/// The native FFmpeg codecs, used when FFmpeg lacks libopus.
#[test]
fn native_opus_codecs() {
    let start = 48_000i64;
    let pcm = sine(1000.0, 0.5, 48_000, start, 96_000, 1);
    let mut enc = OpusEncoder::new(OpusEncoderConfig {
        implementation: OpusImplementation::Native,
        ..OpusEncoderConfig::new(1)
    })
    .unwrap();
    assert_eq!(enc.codec_name(), "opus");
    eprintln!("native Opus encoder delay: {}", enc.delay());
    let mut out = Vec::new();
    enc.anchor(start, &mut out).unwrap();
    enc.push_with(&mut out, |fifo| {
        fifo[0].extend(pcm.iter().map(|&s| s as f32 / 32768.0));
        Ok(())
    })
    .unwrap();
    enc.finish(&mut out).unwrap();
    assert_eq!(out[0].pts, start);
    assert_spaced(&out, 960);
    let d = decode_opus(&out, 1, 960);
    let part = d.window(0, start + 4800..start + 96_000 - 4800);
    assert_in_time("native encoder", &part, 0.5, 48_000, 15.0, 0);

    let mut t =
        OpusToAac::with_decoder(&OpusParams { channels: 1 }, OpusImplementation::Native).unwrap();
    assert_eq!(t.decoder_name(), "opus");
    let opus = make_opus(1, 960, start, &pcm);
    let aac = push_all(&mut t, &opus);
    assert_eq!(aac[0].pts, start);
    let CodecParams::Aac(p) = t.output().clone() else {
        panic!()
    };
    let d = decode_aac(&p.asc, &aac);
    let part = d.window(0, start + 4800..start + 96_000 - 4800);
    assert_in_time(
        "native decoder",
        &part,
        0.5,
        48_000,
        MONO_SNR,
        MONO_TOLERANCE,
    );
}

#[test]
fn bad_configs_are_errors() {
    let good = make_aac(48_000, 2, 0, &[0; 2048]).0;
    for bad in [
        AacParams {
            asc: Bytes::new(),
            ..good.clone()
        },
        AacParams {
            asc: Bytes::from_static(&[0xFF, 0xFF, 0xFF]),
            ..good.clone()
        },
        AacParams {
            asc: Bytes::from_static(&[0x00, 0x00]),
            ..good.clone()
        },
        AacParams {
            sample_rate: 0,
            ..good.clone()
        },
        AacParams {
            asc: Bytes::from(vec![0x12; 100_000]),
            ..good.clone()
        },
    ] {
        match AacToOpus::new(&bad) {
            Err(e) => assert!(!e.to_string().is_empty()),
            // FFmpeg may accept a config and fail on the frames instead.
            Ok(mut t) => {
                for i in 0..5 {
                    let _ = t.push(i * 1024, &[0x21, 0x10, 0x04, 0x60, 0x8c, 0x1c]);
                }
                t.finish().unwrap();
            }
        }
    }
    for channels in [0u8, 3, 255] {
        assert!(OpusToAac::new(&OpusParams { channels }).is_err());
        assert!(
            OpusEncoder::new(OpusEncoderConfig::new(channels)).is_err(),
            "{channels}"
        );
    }
    for frame_samples in [0, 100, 960 * 4] {
        let c = OpusEncoderConfig {
            frame_samples,
            ..OpusEncoderConfig::new(1)
        };
        assert!(OpusEncoder::new(c).is_err());
    }
}

/// A small xorshift generator for reproducible garbage.
fn rng(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}

fn garbage_round(t: &mut dyn AudioTranscoder, seed: u64) -> (usize, usize) {
    let mut rnd = rng(seed);
    let mut pts = 0i64;
    let (mut errors, mut frames) = (0, 0);
    for i in 0..300 {
        let len = (rnd() % 1500) as usize;
        let data: Vec<u8> = (0..len).map(|_| rnd() as u8).collect();
        pts = match i % 7 {
            0 => rnd() as i64,
            1 => i64::MAX - (rnd() % 1000) as i64,
            2 => i64::MIN + (rnd() % 1000) as i64,
            _ => pts.wrapping_add(1024),
        };
        match t.push(pts, &data) {
            Ok(out) => {
                frames += out.len();
                assert!(out.iter().all(|f| !f.data.is_empty()));
            }
            Err(e) => {
                errors += 1;
                assert!(!e.to_string().is_empty());
            }
        }
    }
    (errors, frames)
}

#[test]
fn garbage_input_is_an_error_not_a_panic() {
    let pcm = sine(1000.0, 0.5, 48_000, 0, 48_000, 2);
    let (params, aac) = make_aac(48_000, 2, 0, &pcm);
    let mut t = AacToOpus::new(&params).unwrap();
    let (errors, frames) = garbage_round(&mut t, 0x2545_f491_4f6c_dd1d);
    eprintln!("AAC → Opus: 300 garbage packets → {errors} errors, {frames} frames");
    assert!(errors > 100);
    // A real stream afterwards still works (new timeline, audible).
    let base = 1 << 40;
    let mut out = Vec::new();
    for f in &aac {
        out.extend(t.push(base + f.pts, &f.data).unwrap());
    }
    out.extend(t.finish().unwrap());
    let real = base..base + 10 * 48_000;
    let good: Vec<EncodedFrame> = out.into_iter().filter(|f| real.contains(&f.pts)).collect();
    assert_eq!(good[0].pts, base);
    assert!(good.len() >= 49);
    let mut d = decode_opus(&good, 2, 960);
    for t in &mut d.ticks {
        *t -= base; // the sine starts at phase 0 at `base`
    }
    let part = d.window(0, 9600..38_400);
    assert_in_time("after garbage", &part, 0.5, 48_000, 25.0, 0);

    let opus = make_opus(1, 960, 0, &pcm[..48_000]);
    let mut t = OpusToAac::new(&OpusParams { channels: 1 }).unwrap();
    let (errors, frames) = garbage_round(&mut t, 0x9e37_79b9_7f4a_7c15);
    eprintln!("Opus → AAC: 300 garbage packets → {errors} errors, {frames} frames");
    let mut out = Vec::new();
    for f in &opus {
        out.extend(t.push(base + f.pts, &f.data).unwrap());
    }
    out.extend(t.finish().unwrap());
    assert!(out.iter().filter(|f| real.contains(&f.pts)).count() >= 23);
    assert!(t.push(0, &opus[0].data).is_err());
    assert!(t.finish().is_err());
    // Empty packets are ignored.
    let mut t = OpusToAac::new(&OpusParams { channels: 2 }).unwrap();
    assert!(t.push(0, &[]).unwrap().is_empty());
    let mut t = AacToOpus::new(&params).unwrap();
    assert!(t.push(0, &[]).unwrap().is_empty());
}

fn _assert_send() {
    fn is_send<T: Send>() {}
    is_send::<AacToOpus>();
    is_send::<OpusToAac>();
}

/// Cost of 20 s of 48 kHz stereo each way (printed; loose bound for debug
/// builds on a slow machine).
#[test]
fn realtime_factor() {
    let secs = 20;
    let pcm = sine(440.0, 0.3, 48_000, 0, 48_000 * secs, 2);
    let (params, aac) = make_aac(48_000, 2, 0, &pcm);
    let mut t = AacToOpus::new(&params).unwrap();
    let started = std::time::Instant::now();
    let out = push_all(&mut t, &aac);
    let took = started.elapsed();
    eprintln!(
        "AAC → Opus: {secs} s of 48 kHz stereo in {took:?} ({:.0}× real time)",
        secs as f64 / took.as_secs_f64()
    );
    assert!(took.as_secs_f64() < secs as f64 / 2.0, "{took:?}");

    let mut t = OpusToAac::new(&OpusParams { channels: 2 }).unwrap();
    let started = std::time::Instant::now();
    let aac = push_all(&mut t, &out);
    let took = started.elapsed();
    assert!(aac.len() > 900);
    eprintln!(
        "Opus → AAC: {secs} s of 48 kHz stereo in {took:?} ({:.0}× real time)",
        secs as f64 / took.as_secs_f64()
    );
    assert!(took.as_secs_f64() < secs as f64 / 2.0, "{took:?}");
}

/// An Ogg Opus file (RFC 7845) of `packets`, one page per packet, pre-skip 0.
fn ogg_opus(channels: u8, packets: &[EncodedFrame]) -> Vec<u8> {
    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0u32;
        for &b in data {
            crc ^= u32::from(b) << 24;
            for _ in 0..8 {
                crc = if crc & 0x8000_0000 != 0 {
                    (crc << 1) ^ 0x04C1_1DB7
                } else {
                    crc << 1
                };
            }
        }
        crc
    }
    let mut file = Vec::new();
    let mut page = |flags: u8, granule: i64, seq: u32, data: &[u8]| {
        let mut p = Vec::new();
        p.extend_from_slice(b"OggS\0");
        p.push(flags);
        p.extend_from_slice(&granule.to_le_bytes());
        p.extend_from_slice(&0x6d72u32.to_le_bytes());
        p.extend_from_slice(&seq.to_le_bytes());
        p.extend_from_slice(&[0; 4]);
        let mut lacing = vec![255u8; data.len() / 255];
        lacing.push((data.len() % 255) as u8);
        p.push(lacing.len() as u8);
        p.extend_from_slice(&lacing);
        p.extend_from_slice(data);
        let crc = crc32(&p);
        p[22..26].copy_from_slice(&crc.to_le_bytes());
        file.extend_from_slice(&p);
    };
    page(0x02, 0, 0, &super::opus::opus_head(channels));
    let mut tags = b"OpusTags".to_vec();
    tags.extend_from_slice(&4u32.to_le_bytes());
    tags.extend_from_slice(b"test");
    tags.extend_from_slice(&0u32.to_le_bytes());
    page(0, 0, 1, &tags);
    for (i, f) in packets.iter().enumerate() {
        let last = i + 1 == packets.len();
        let granule = (i as i64 + 1) * 960;
        page(if last { 0x04 } else { 0 }, granule, i as u32 + 2, &f.data);
    }
    file
}

/// The Opus packets in an Ogg file, decoded by the `ffmpeg` CLI (its own
/// demuxer and its native Opus decoder): an independent consumer hears the
/// tone, at the time the pts say. Skipped when the CLI is not installed.
#[test]
fn ogg_opus_decodes_with_ffmpeg_cli() {
    let start = 48_000i64;
    let onset = start + 9600;
    let pcm = sine_from(1000.0, 0.5, 48_000, start, 96_000, 2, onset);
    let (params, aac) = make_aac(48_000, 2, start, &pcm);
    let mut t = AacToOpus::new(&params).unwrap();
    let out = push_all(&mut t, &aac);
    assert_eq!(out[0].pts, start);
    let path = std::env::temp_dir().join(format!("mr-aac-opus-{}.opus", std::process::id()));
    std::fs::write(&path, ogg_opus(2, &out)).unwrap();
    let probe = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-show_entries"])
        .arg("stream=codec_name,sample_rate,channels")
        .args(["-of", "compact"])
        .arg(&path)
        .output();
    let decoded = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&path)
        .args(["-f", "f32le", "-"])
        .output();
    let _ = std::fs::remove_file(&path);
    let (Ok(probe), Ok(decoded)) = (probe, decoded) else {
        eprintln!("ffmpeg/ffprobe not found; skipping");
        return;
    };
    assert_eq!(
        String::from_utf8_lossy(&probe.stdout).trim(),
        "stream|codec_name=opus|sample_rate=48000|channels=2"
    );
    assert!(decoded.status.success());
    let pcm: Vec<f32> = decoded
        .stdout
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(pcm.len(), out.len() * 960 * 2, "every packet, no pre-skip");
    // Sample i (left channel) plays at start + i.
    let d = Decoded {
        ticks: (0..pcm.len() as i64 / 2).map(|i| start + i).collect(),
        ch: vec![pcm.iter().step_by(2).copied().collect()],
    };
    assert_onset("ffmpeg CLI", &d, onset);
    let part = d.window(0, onset + 4800..start + 96_000 - 4800);
    assert_in_time("ffmpeg CLI", &part, 0.5, 48_000, 25.0, 0);
}
