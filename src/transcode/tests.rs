//! Round trips through [`G711ToAac`], decoded with FFmpeg's AAC decoder.

use super::aac::test_decoder::Decoder;
use super::g711::encode::{linear_to_alaw, linear_to_mulaw};
use super::*;

const IN_RATE: u32 = 8000;
const OUT_RATE: i64 = 48_000;
const RATIO: i64 = OUT_RATE / IN_RATE as i64;

/// `n` samples of a `freq` Hz sine at `amp`, starting at input sample `start`.
fn sine(freq: f64, amp: f64, start: i64, n: usize) -> Vec<i16> {
    (0..n)
        .map(|i| {
            let t = (start + i as i64) as f64 / IN_RATE as f64;
            (amp * 32767.0 * (2.0 * std::f64::consts::PI * freq * t).sin()).round() as i16
        })
        .collect()
}

fn compand(law: G711Law, pcm: &[i16]) -> Vec<u8> {
    pcm.iter()
        .map(|&s| match law {
            G711Law::ALaw => linear_to_alaw(s),
            G711Law::MuLaw => linear_to_mulaw(s),
        })
        .collect()
}

/// Pushes `data` (`channels` interleaved) starting at `pts` in packets of
/// `sizes` bytes, cycling.
fn push_all(
    t: &mut G711ToAac,
    pts: i64,
    data: &[u8],
    sizes: &[usize],
    out: &mut Vec<EncodedFrame>,
) {
    let channels = match t.output() {
        CodecParams::Aac(a) => usize::from(a.channels),
        _ => 1,
    };
    let mut off = 0;
    let mut i = 0;
    while off < data.len() {
        let n = sizes[i % sizes.len()].min(data.len() - off);
        let pts = pts + (off / channels) as i64;
        out.extend(t.push(pts, &data[off..off + n]).unwrap());
        off += n;
        i += 1;
    }
}

fn asc(t: &G711ToAac) -> Bytes {
    match t.output() {
        CodecParams::Aac(a) => a.asc.clone(),
        other => panic!("output is {other:?}"),
    }
}

/// Decodes `frames` in order; returns (output tick, sample) pairs from each
/// frame's pts.
fn decode(asc: &[u8], frames: &[EncodedFrame]) -> Vec<(i64, f32)> {
    let mut dec = Decoder::new(asc);
    let mut out = Vec::new();
    for f in frames {
        let pcm = dec.decode(&f.data);
        assert_eq!(pcm.len(), 1024, "one AAC frame decodes to 1024 samples");
        out.extend(
            pcm.into_iter()
                .enumerate()
                .map(|(j, s)| (f.pts + j as i64, s)),
        );
    }
    assert_eq!(dec.rate(), OUT_RATE as u32);
    assert_eq!(dec.channels(), 1);
    out
}

pub(super) fn goertzel_power(x: &[f32], freq: f64, rate: f64) -> f64 {
    let coeff = 2.0 * (2.0 * std::f64::consts::PI * freq / rate).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s = v as f64 + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (x.len() as f64).powi(2)
}

fn assert_spaced(frames: &[EncodedFrame]) {
    for w in frames.windows(2) {
        assert_eq!(w[1].pts - w[0].pts, 1024, "pts {} → {}", w[0].pts, w[1].pts);
    }
}

#[test]
fn sine_round_trip_both_laws() {
    for law in [G711Law::MuLaw, G711Law::ALaw] {
        let mut t = G711ToAac::new(law, IN_RATE, 1).unwrap();
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
            (2, 48_000, 1, 1024)
        );
        assert_eq!(&p.asc[..2], &[0x11, 0x88], "AAC-LC, 48 kHz, mono");

        let start = 8000; // 1 s
        let n = 3 * IN_RATE as usize;
        let g711 = compand(law, &sine(1000.0, 0.5, start, n));
        let mut frames = Vec::new();
        push_all(&mut t, start, &g711, &[160, 37, 400], &mut frames);
        // Everything but the last partial frame, the resampler's few held-back
        // samples and the one frame in the encoder is out before finish().
        let before_finish = frames.len();
        assert!(before_finish >= 138, "{before_finish}");
        frames.extend(t.finish().unwrap());
        let expected = (n * RATIO as usize).div_ceil(1024);
        assert_eq!(
            frames.len(),
            expected,
            "{law:?}: 144000 samples → 141 frames"
        );
        assert_eq!(
            frames[0].pts,
            start * RATIO,
            "first input pts anchors the output"
        );
        assert_spaced(&frames);
        assert!(matches!(t.push(0, &[0xFF]), Err(TranscodeError::Finished)));
        assert_eq!(t.stats().output_frames, expected as u64);

        // ~48 kbit/s.
        let bytes: usize = frames.iter().map(|f| f.data.len()).sum();
        let kbps = bytes as f64 * 8.0 / (frames.len() as f64 * 1024.0 / 48_000.0) / 1000.0;
        assert!((24.0..80.0).contains(&kbps), "{kbps} kbit/s");

        let decoded = decode(&asc(&t), &frames);
        // Skip the first and last frame (fade-in, padding).
        let steady: Vec<f32> = decoded[1024..decoded.len() - 2048]
            .iter()
            .map(|s| s.1)
            .collect();
        let rate = OUT_RATE as f64;
        let p1k = goertzel_power(&steady, 1000.0, rate);
        let total = steady.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / steady.len() as f64;
        // A sine of amplitude A has mean power A²/2 and a Goertzel power of A²/4.
        assert!((p1k - 0.0625).abs() < 0.01, "{law:?}: 1 kHz power {p1k}");
        assert!(
            p1k * 2.0 / total > 0.98,
            "{law:?}: {p1k} of {total} at 1 kHz"
        );
        for f in [300.0, 500.0, 1500.0, 2000.0, 3000.0] {
            let p = goertzel_power(&steady, f, rate);
            assert!(p < p1k / 1000.0, "{law:?}: {f} Hz has {p} vs {p1k}");
        }
        eprintln!(
            "{law:?}: {kbps:.1} kbit/s, 1 kHz holds {:.4} of the power",
            p1k * 2.0 / total
        );
    }
}

/// Signal-to-noise ratio (dB) of decoded samples against the ideal sine at
/// their pts: only high if the pts say exactly when each sample plays.
fn snr_db(decoded: &[(i64, f32)], freq: f64, amp: f64) -> f64 {
    let (mut sig, mut noise) = (0.0, 0.0);
    for &(tick, s) in decoded {
        let ideal = amp * (2.0 * std::f64::consts::PI * freq * tick as f64 / OUT_RATE as f64).sin();
        sig += ideal * ideal;
        noise += (s as f64 - ideal).powi(2);
    }
    10.0 * (sig / noise).log10()
}

#[test]
fn decoded_audio_lines_up_with_input_pts() {
    // Silence, then a tone from input tick `onset` on; the start pts is odd.
    let start = 12_345i64;
    let onset = start + 2000;
    let mut pcm = vec![0i16; 2000];
    pcm.extend(sine(1000.0, 0.5, onset, 8000));
    let mut t = G711ToAac::new(G711Law::ALaw, IN_RATE, 1).unwrap();
    let mut frames = Vec::new();
    push_all(
        &mut t,
        start,
        &compand(G711Law::ALaw, &pcm),
        &[160],
        &mut frames,
    );
    frames.extend(t.finish().unwrap());
    assert_eq!(frames[0].pts, start * RATIO);
    let decoded = decode(&asc(&t), &frames);

    let first_loud = decoded.iter().find(|s| s.1.abs() > 0.25).unwrap().0;
    let want = onset * RATIO;
    assert!(
        (first_loud - want).abs() <= 24,
        "tone starts at output tick {first_loud}, input says {want}"
    );
    // Sample-exact timing over the tone: a 1 kHz sine is 48 ticks per cycle,
    // so a shift by one AAC frame (1024) or even a few ticks ruins the SNR.
    let tone: Vec<(i64, f32)> = decoded
        .iter()
        .copied()
        .filter(|s| s.0 >= want + 2048 && s.0 < (onset + 7000) * RATIO)
        .collect();
    let snr = snr_db(&tone, 1000.0, 0.5);
    let shifted: Vec<(i64, f32)> = tone.iter().map(|&(t, s)| (t + 3, s)).collect();
    let snr_shifted = snr_db(&shifted, 1000.0, 0.5);
    eprintln!("SNR {snr:.1} dB at the reported pts, {snr_shifted:.1} dB 3 ticks off");
    assert!(snr > 25.0, "SNR {snr} dB");
    assert!(snr > snr_shifted + 3.0);
}

#[test]
fn lost_packet_is_filled_and_clock_does_not_drift() {
    let mut t = G711ToAac::new(G711Law::MuLaw, IN_RATE, 1).unwrap();
    let pcm = compand(G711Law::MuLaw, &sine(1000.0, 0.5, 0, 16_000));
    let mut frames = Vec::new();
    for (i, chunk) in pcm.chunks(160).enumerate() {
        if i == 20 {
            continue; // lost in the network
        }
        frames.extend(t.push(i as i64 * 160, chunk).unwrap());
    }
    frames.extend(t.finish().unwrap());
    assert_eq!(t.stats().filled_samples, 160);
    assert_eq!(t.stats().reanchors, 0);
    assert_eq!(frames.len(), (16_000 * RATIO as usize).div_ceil(1024));
    assert_spaced(&frames);
    // Timing still exact after the hole.
    let decoded = decode(&asc(&t), &frames);
    let tail: Vec<(i64, f32)> = decoded
        .iter()
        .copied()
        .filter(|s| s.0 >= 5000 * RATIO && s.0 < 15_000 * RATIO)
        .collect();
    let snr = snr_db(&tail, 1000.0, 0.5);
    assert!(snr > 25.0, "SNR {snr} dB after a lost packet");
}

#[test]
fn jitter_and_duplicates_keep_the_sample_count() {
    let mut t = G711ToAac::new(G711Law::MuLaw, IN_RATE, 1).unwrap();
    let pcm = compand(G711Law::MuLaw, &sine(1000.0, 0.5, 0, 8000));
    let mut frames = Vec::new();
    for (i, chunk) in pcm.chunks(160).enumerate() {
        // Millisecond rounding (±1 ms = 8 ticks) is ignored.
        let jitter = [0, 8, -8, 3][i % 4];
        frames.extend(t.push(i as i64 * 160 + jitter, chunk).unwrap());
        if i == 10 {
            // A duplicated packet is dropped.
            frames.extend(t.push(i as i64 * 160, chunk).unwrap());
        }
    }
    frames.extend(t.finish().unwrap());
    let s = t.stats();
    assert_eq!(
        (s.reanchors, s.filled_samples, s.trimmed_samples),
        (0, 0, 160)
    );
    assert_eq!(frames.len(), (8000 * RATIO as usize).div_ceil(1024));
    assert_spaced(&frames);
}

#[test]
fn jumps_reanchor() {
    for jump in [8000i64 * 5, -8000 * 5] {
        let mut t = G711ToAac::new(G711Law::ALaw, IN_RATE, 1).unwrap();
        let pcm = compand(G711Law::ALaw, &sine(1000.0, 0.5, 0, 8000));
        let base = 100_000i64;
        let mut frames = Vec::new();
        push_all(&mut t, base, &pcm, &[160], &mut frames);
        let second = base + 8000 + jump;
        push_all(&mut t, second, &pcm, &[160], &mut frames);
        frames.extend(t.finish().unwrap());
        assert_eq!(t.stats().reanchors, 1);
        // Each timeline: 48000 samples → 47 frames, the last one padded.
        assert_eq!(frames.len(), 2 * 47, "jump {jump}");
        let (a, b) = frames.split_at(47);
        assert_eq!(a[0].pts, base * RATIO);
        assert_eq!(b[0].pts, second * RATIO, "re-anchored at the new pts");
        assert_spaced(a);
        assert_spaced(b);
        // Both timelines decode in time (the sine starts at phase 0 at each).
        let decoded = decode(&asc(&t), &frames);
        for origin in [base, second] {
            let range = (origin + 1000) * RATIO..(origin + 7000) * RATIO;
            let part: Vec<(i64, f32)> = decoded
                .iter()
                .filter(|s| range.contains(&s.0))
                .map(|&(tick, s)| (tick - origin * RATIO, s))
                .collect();
            assert_eq!(part.len(), 36_000);
            let snr = snr_db(&part, 1000.0, 0.5);
            assert!(snr > 20.0, "jump {jump}: SNR {snr} dB in {range:?}");
        }
    }
}

#[test]
fn stereo() {
    let mut t = G711ToAac::new(G711Law::MuLaw, IN_RATE, 2).unwrap();
    let CodecParams::Aac(p) = t.output().clone() else {
        panic!()
    };
    assert_eq!(p.channels, 2);
    assert_eq!(&p.asc[..2], &[0x11, 0x90], "AAC-LC, 48 kHz, stereo");
    let mono = sine(1000.0, 0.5, 0, 8000);
    let stereo: Vec<i16> = mono.iter().flat_map(|&s| [s, s / 2]).collect();
    let mut frames = Vec::new();
    push_all(
        &mut t,
        0,
        &compand(G711Law::MuLaw, &stereo),
        &[320, 74],
        &mut frames,
    );
    frames.extend(t.finish().unwrap());
    assert_eq!(frames.len(), 47);
    assert_spaced(&frames);
    assert!(t.push(0, &[1, 2, 3]).is_err());
}

#[test]
fn bad_configs_and_inputs_do_not_panic() {
    assert!(G711ToAac::new(G711Law::ALaw, 0, 1).is_err());
    assert!(G711ToAac::new(G711Law::ALaw, 8000, 0).is_err());
    assert!(G711ToAac::new(G711Law::ALaw, 8000, 9).is_err());
    assert!(G711ToAac::new(G711Law::ALaw, u32::MAX, 1).is_err());
    let mut t = G711ToAac::new(G711Law::MuLaw, 8000, 2).unwrap();
    let e = t.push(0, &[0; 161]).unwrap_err();
    assert!(e.to_string().contains("161 bytes"), "{e}");
    assert!(t.push(0, &[]).unwrap().is_empty());

    // Arbitrary bytes, sizes and timestamps, extremes included.
    let mut t = G711ToAac::new(G711Law::MuLaw, 8000, 1).unwrap();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut pts = 0i64;
    for i in 0..400 {
        let len = (rnd() % 3000) as usize;
        let data: Vec<u8> = (0..len).map(|_| rnd() as u8).collect();
        pts = match i % 7 {
            0 => rnd() as i64,
            1 => i64::MAX - (rnd() % 1000) as i64,
            2 => i64::MIN + (rnd() % 1000) as i64,
            _ => pts.wrapping_add(len as i64),
        };
        let frames = t.push(pts, &data).unwrap();
        for f in &frames {
            assert!(!f.data.is_empty());
        }
    }
    t.finish().unwrap();
    // A big packet at once is fine too (chunked internally).
    let mut t = G711ToAac::new(G711Law::ALaw, 8000, 1).unwrap();
    let frames = t.push(0, &vec![0xD5; 8000 * 60]).unwrap();
    assert!(frames.len() >= 2810);
}

#[test]
fn other_rates() {
    // 16 kHz G.711 (RTP can declare it) and an AAC rate of 16 kHz.
    let mut t = G711ToAac::with_output(
        G711Law::ALaw,
        16_000,
        1,
        AacOutput {
            sample_rate: 16_000,
            bit_rate_per_channel: 32_000,
        },
    )
    .unwrap();
    let mut frames = t.push(1600, &vec![0xD5; 16_000]).unwrap();
    frames.extend(t.finish().unwrap());
    assert_eq!(frames[0].pts, 1600);
    assert_eq!(frames.len(), 16);
    assert_spaced(&frames);
    // 8 kHz in, 44.1 kHz out (non-integer ratio).
    let mut t = G711ToAac::with_output(
        G711Law::MuLaw,
        8000,
        1,
        AacOutput {
            sample_rate: 44_100,
            bit_rate_per_channel: 48_000,
        },
    )
    .unwrap();
    let mut frames = Vec::new();
    push_all(&mut t, 8000, &vec![0xFF; 8000], &[160], &mut frames);
    frames.extend(t.finish().unwrap());
    assert_eq!(frames[0].pts, 44_100);
    assert_eq!(frames.len(), 44_100usize.div_ceil(1024));
    assert_spaced(&frames);
    // 8 kHz AAC: a frame (128 ms) outlasts the 100 ms re-anchor threshold; a
    // new timeline still never starts inside the old one's last frame.
    let mut t = G711ToAac::with_output(
        G711Law::MuLaw,
        8000,
        1,
        AacOutput {
            sample_rate: 8000,
            bit_rate_per_channel: 24_000,
        },
    )
    .unwrap();
    let mut frames = Vec::new();
    push_all(&mut t, 0, &vec![0xFF; 1100], &[160], &mut frames);
    // 801 samples (100.1 ms) late: inside the old timeline's second frame.
    push_all(&mut t, 1100 + 801, &vec![0xFF; 3000], &[160], &mut frames);
    frames.extend(t.finish().unwrap());
    assert_eq!(t.stats().reanchors, 1);
    assert_eq!(
        frames[1].pts, 1024,
        "the old timeline: 1000 samples in one frame"
    );
    assert_eq!(
        frames[2].pts, 2048,
        "the new one moved out of the old frame"
    );
    for w in frames.windows(2) {
        assert!(w[1].pts >= w[0].pts + 1024);
    }
}

fn _assert_send() {
    fn is_send<T: Send>() {}
    is_send::<G711ToAac>();
    is_send::<Box<dyn AudioTranscoder>>();
}

/// Writes the frames as an ADTS file and has the `ffmpeg` CLI probe and decode
/// it: an independent consumer sees AAC-LC, 48 kHz, mono, with the tone.
/// Skipped when the CLI is not installed.
#[test]
fn adts_file_decodes_with_ffmpeg_cli() {
    let mut t = G711ToAac::new(G711Law::MuLaw, IN_RATE, 1).unwrap();
    let g711 = compand(G711Law::MuLaw, &sine(1000.0, 0.5, 0, 16_000));
    let mut frames = Vec::new();
    push_all(&mut t, 0, &g711, &[160], &mut frames);
    frames.extend(t.finish().unwrap());
    let mut adts = Vec::new();
    for f in &frames {
        // ADTS: MPEG-4, no CRC, profile LC (1), frequency index 3, 1 channel.
        let len = f.data.len() + 7;
        adts.extend_from_slice(&[
            0xFF,
            0xF1,
            (1 << 6) | (3 << 2),
            (1 << 6) | (len >> 11) as u8,
            (len >> 3) as u8,
            ((len & 7) << 5) as u8 | 0x1F,
            0xFC,
        ]);
        adts.extend_from_slice(&f.data);
    }
    let path = std::env::temp_dir().join(format!("mr-g711-aac-{}.aac", std::process::id()));
    std::fs::write(&path, &adts).unwrap();
    let probe = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-show_entries"])
        .arg("stream=codec_name,profile,sample_rate,channels")
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
    let probe = String::from_utf8_lossy(&probe.stdout);
    assert_eq!(
        probe.trim(),
        "stream|codec_name=aac|profile=LC|sample_rate=48000|channels=1"
    );
    assert!(decoded.status.success());
    let pcm: Vec<f32> = decoded
        .stdout
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    // The CLI drops the encoder's 1024 priming samples that the ADTS stream
    // does not carry, so it yields at most our frames' worth of samples.
    assert!(
        pcm.len() >= 90_000 && pcm.len() <= frames.len() * 1024,
        "{}",
        pcm.len()
    );
    let steady = &pcm[4096..pcm.len() - 4096];
    let p1k = goertzel_power(steady, 1000.0, OUT_RATE as f64);
    assert!((p1k - 0.0625).abs() < 0.01, "1 kHz power {p1k}");
}

/// Cost: one second of 8 kHz G.711 must take a tiny fraction of a second.
#[test]
fn realtime_factor() {
    let mut t = G711ToAac::new(G711Law::ALaw, IN_RATE, 1).unwrap();
    let g711 = compand(G711Law::ALaw, &sine(440.0, 0.3, 0, 8000 * 30));
    let started = std::time::Instant::now();
    let mut n = 0;
    for (i, chunk) in g711.chunks(160).enumerate() {
        n += t.push(i as i64 * 160, chunk).unwrap().len();
    }
    let took = started.elapsed();
    eprintln!(
        "30 s of G.711 → {n} AAC frames in {took:?} ({:.0}× real time)",
        30.0 / took.as_secs_f64()
    );
    assert!(took.as_secs_f64() < 3.0, "{took:?}");
}
