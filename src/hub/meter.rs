//! Measured rates of a track (bitrate, frame rate), over windows of media
//! time, so that a burst of frames delivered late does not read as a spike.

/// Length of one measurement window, in media time.
const WINDOW_NANOS: i64 = 1_000_000_000;

/// Bytes and frames of one track over the last complete window.
#[derive(Debug, Default, Clone)]
pub(crate) struct Meter {
    start: Option<i64>,
    bytes: u64,
    frames: u64,
    /// Bits per second and frames per second of the last complete window.
    last: Option<(u64, f64)>,
}

impl Meter {
    /// Counts a frame of `len` bytes at decoding time `dts_nanos`.
    pub(crate) fn add(&mut self, dts_nanos: i64, len: usize) {
        let start = *self.start.get_or_insert(dts_nanos);
        let elapsed = dts_nanos - start;
        if !(0..WINDOW_NANOS * 10).contains(&elapsed) {
            // Time went back (a new generation) or jumped: start over.
            *self = Meter {
                start: Some(dts_nanos),
                last: self.last,
                ..Meter::default()
            };
        } else if elapsed >= WINDOW_NANOS {
            let secs = elapsed as f64 / 1e9;
            self.last = Some((
                (self.bytes as f64 * 8.0 / secs) as u64,
                self.frames as f64 / secs,
            ));
            self.start = Some(dts_nanos);
            self.bytes = 0;
            self.frames = 0;
        }
        self.bytes += len as u64;
        self.frames += 1;
    }

    /// Bits per second over the last complete window.
    pub(crate) fn bitrate(&self) -> Option<u64> {
        self.last.map(|l| l.0)
    }

    /// Frames per second over the last complete window, to 0.01.
    pub(crate) fn fps(&self) -> Option<f64> {
        self.last.map(|l| (l.1 * 100.0).round() / 100.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_bitrate_and_frame_rate_over_media_time() {
        let mut m = Meter::default();
        assert_eq!(m.bitrate(), None);
        // 25 fps, 1000 bytes a frame: 200 kbit/s.
        for i in 0..=50 {
            m.add(i * 40_000_000, 1000);
        }
        assert_eq!(m.bitrate(), Some(200_000));
        assert_eq!(m.fps(), Some(25.0));
    }

    #[test]
    fn a_jump_back_starts_a_new_window_and_keeps_the_last_reading() {
        let mut m = Meter::default();
        for i in 0..=25 {
            m.add(i * 40_000_000, 500);
        }
        let before = m.bitrate();
        assert!(before.is_some());
        m.add(0, 500);
        assert_eq!(m.bitrate(), before);
    }
}
