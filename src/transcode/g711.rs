//! G.711 (ITU-T G.711) A-law and µ-law expansion to 16-bit linear PCM.
//!
//! Pure, allocation-free except for the output buffer, and total: every byte
//! decodes to a sample. The tables are the ITU-T G.711 expansion (the same as
//! FFmpeg's `pcm_alaw`/`pcm_mulaw` decoders and the classic Sun `g711.c`):
//! A-law's 13-bit and µ-law's 14-bit linear values are scaled to 16 bits, so
//! A-law spans ±32256 and µ-law ±32124.

/// Expands one A-law byte (ITU-T G.711 Table 1a/2a, even bits inverted).
pub const fn alaw_to_linear(byte: u8) -> i16 {
    let a = byte ^ 0x55;
    let mantissa = (a & 0x0F) as i32;
    let segment = ((a >> 4) & 0x07) as i32;
    let magnitude = if segment == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (segment - 1)
    };
    // Sign bit set means positive in A-law (after the 0x55 inversion).
    if a & 0x80 != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

/// Expands one µ-law byte (ITU-T G.711 Table 2b, all bits inverted).
pub const fn mulaw_to_linear(byte: u8) -> i16 {
    let u = !byte;
    let mantissa = (u & 0x0F) as i32;
    let exponent = ((u >> 4) & 0x07) as i32;
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    if u & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

const fn build_table(alaw: bool) -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = if alaw {
            alaw_to_linear(i as u8)
        } else {
            mulaw_to_linear(i as u8)
        };
        i += 1;
    }
    table
}

/// A-law byte → linear sample.
pub static ALAW_TABLE: [i16; 256] = build_table(true);
/// µ-law byte → linear sample.
pub static MULAW_TABLE: [i16; 256] = build_table(false);

/// Appends the linear samples of `data` (A-law bytes) to `out`.
pub fn decode_alaw(data: &[u8], out: &mut Vec<i16>) {
    out.extend(data.iter().map(|&b| ALAW_TABLE[b as usize]));
}

/// Appends the linear samples of `data` (µ-law bytes) to `out`.
pub fn decode_mulaw(data: &[u8], out: &mut Vec<i16>) {
    out.extend(data.iter().map(|&b| MULAW_TABLE[b as usize]));
}

/// Test-only G.711 compressors (the Sun `g711.c` reference algorithm), used to
/// produce G.711 input for round-trip tests.
#[cfg(test)]
pub(crate) mod encode {
    /// Linear → A-law.
    pub fn linear_to_alaw(pcm: i16) -> u8 {
        const SEG_END: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
        let mut v = (pcm as i32) >> 3;
        let mask: u8 = if v >= 0 {
            0xD5
        } else {
            v = -v - 1;
            0x55
        };
        let Some(seg) = SEG_END.iter().position(|&end| v <= end) else {
            return 0x7F ^ mask;
        };
        let mut aval = (seg as u8) << 4;
        aval |= if seg < 2 {
            ((v >> 1) & 0x0F) as u8
        } else {
            ((v >> seg) & 0x0F) as u8
        };
        aval ^ mask
    }

    /// Linear → µ-law.
    pub fn linear_to_mulaw(pcm: i16) -> u8 {
        const BIAS: i32 = 0x84;
        const CLIP: i32 = 32635;
        let mut v = pcm as i32;
        let sign: u8 = if v < 0 {
            v = -v;
            0x80
        } else {
            0
        };
        v = v.min(CLIP) + BIAS;
        // v >> 7 is in 1..=255: the exponent is the position of its top bit.
        let exponent = 31 - ((v >> 7) as u32).leading_zeros();
        let mantissa = ((v >> (exponent + 3)) & 0x0F) as u8;
        !(sign | ((exponent as u8) << 4) | mantissa)
    }
}

#[cfg(test)]
mod tests {
    use super::encode::{linear_to_alaw, linear_to_mulaw};
    use super::*;

    #[test]
    fn known_values() {
        assert_eq!(mulaw_to_linear(0xFF), 0);
        assert_eq!(mulaw_to_linear(0x7F), 0);
        assert_eq!(mulaw_to_linear(0x00), -32124);
        assert_eq!(mulaw_to_linear(0x80), 32124);
        assert_eq!(mulaw_to_linear(0xFE), 8);
        assert_eq!(mulaw_to_linear(0x7E), -8);
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xAA), 32256);
        assert_eq!(alaw_to_linear(0x2A), -32256);
        assert_eq!(alaw_to_linear(0xD4), 24);
        assert_eq!(MULAW_TABLE[0x00], -32124);
        assert_eq!(ALAW_TABLE[0xD5], 8);
    }

    #[test]
    fn tables_are_symmetric_and_monotonic() {
        // µ-law: codes 0x00..=0x7F are negative, descending in magnitude;
        // 0x80..=0xFF mirror them.
        for i in 0..128usize {
            assert_eq!(MULAW_TABLE[i], -MULAW_TABLE[i + 128], "mulaw {i:#x}");
            assert_eq!(ALAW_TABLE[i], -ALAW_TABLE[i + 128], "alaw {i:#x}");
        }
        let mut mu: Vec<i16> = MULAW_TABLE.to_vec();
        mu.sort_unstable();
        mu.dedup();
        assert_eq!(mu.len(), 255, "µ-law has +0 and -0 only as a duplicate");
        let mut a: Vec<i16> = ALAW_TABLE.to_vec();
        a.sort_unstable();
        a.dedup();
        assert_eq!(a.len(), 256);
    }

    #[test]
    fn encoder_round_trip() {
        for b in 0..=255u8 {
            let m = mulaw_to_linear(b);
            assert_eq!(mulaw_to_linear(linear_to_mulaw(m)), m, "mulaw {b:#x}");
            let a = alaw_to_linear(b);
            assert_eq!(linear_to_alaw(a), b, "alaw {b:#x}");
        }
        // Quantisation error is bounded by half a step of the top segment.
        for x in (i16::MIN..=i16::MAX).step_by(7) {
            let ea = (alaw_to_linear(linear_to_alaw(x)) as i32 - x as i32).abs();
            let em = (mulaw_to_linear(linear_to_mulaw(x)) as i32 - x as i32).abs();
            assert!(ea <= 1024, "alaw {x}: {ea}");
            assert!(em <= 1024, "mulaw {x}: {em}");
        }
    }

    /// Compares all 256 codes of both laws with FFmpeg's `pcm_alaw`/`pcm_mulaw`
    /// decoders (the `ffmpeg` CLI); skipped when it is not installed.
    #[test]
    fn tables_match_ffmpeg_cli() {
        for (fmt, table) in [("alaw", &ALAW_TABLE), ("mulaw", &MULAW_TABLE)] {
            let dir = std::env::temp_dir();
            let input = dir.join(format!("mr-g711-{}-{fmt}.raw", std::process::id()));
            let all: Vec<u8> = (0..=255u8).collect();
            std::fs::write(&input, &all).unwrap();
            let out = std::process::Command::new("ffmpeg")
                .args(["-v", "error", "-f", fmt, "-ar", "8000", "-ac", "1", "-i"])
                .arg(&input)
                .args(["-f", "s16le", "-"])
                .output();
            let _ = std::fs::remove_file(&input);
            let Ok(out) = out else {
                eprintln!("ffmpeg CLI not found; skipping");
                return;
            };
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let decoded: Vec<i16> = out
                .stdout
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
            assert_eq!(decoded.as_slice(), table.as_slice(), "{fmt}");
        }
    }

    #[test]
    fn decode_appends() {
        let mut out = vec![1];
        decode_mulaw(&[0xFF, 0x00], &mut out);
        decode_alaw(&[0xD5, 0x55], &mut out);
        assert_eq!(out, vec![1, 0, -32124, 8, -8]);
    }
}
