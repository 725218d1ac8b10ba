//! H.265 helpers (ITU-T H.265): NAL unit types of length-prefixed access units.

/// The NAL unit type of an H.265 NAL unit (§7.3.1.2: bits 1..7 of byte 0).
pub fn nal_type(nal: &[u8]) -> Option<u8> {
    nal.first().map(|b| (b >> 1) & 0x3f)
}

/// Whether an access unit (4-byte length-prefixed NAL units) is an intra
/// random access point: its VCL NAL units are BLA, IDR or CRA pictures
/// (types 16..=23, §7.4.2.2). A decoder can start at a CRA picture too (it
/// skips the RASL pictures that follow), which is what x265 and many cameras
/// send after the first IDR.
pub fn is_irap(avcc: &[u8]) -> bool {
    let mut rest = avcc;
    let mut irap = false;
    while rest.len() >= 4 {
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let Some(nal) = rest.get(4..4 + len) else {
            return false;
        };
        match nal_type(nal) {
            Some(16..=23) => irap = true,
            Some(0..=15) => return false, // a non-IRAP VCL NAL unit
            _ => {}
        }
        rest = &rest[4 + len..];
    }
    irap
}

#[cfg(test)]
mod tests {
    use super::*;

    fn au(types: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for t in types {
            out.extend_from_slice(&3u32.to_be_bytes());
            out.extend_from_slice(&[t << 1, 1, 0xaa]);
        }
        out
    }

    #[test]
    fn idr_and_cra_are_random_access_points() {
        assert!(is_irap(&au(&[35, 39, 19]))); // AUD, SEI, IDR_W_RADL
        assert!(is_irap(&au(&[32, 33, 34, 21, 21]))); // VPS SPS PPS CRA (2 slices)
        assert!(!is_irap(&au(&[1, 1]))); // TRAIL_R
        assert!(!is_irap(&au(&[35]))); // no picture
        assert!(!is_irap(&[0, 0, 0, 9, 1]), "truncated");
    }
}
