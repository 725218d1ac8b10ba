//! LL-HLS media playlist rendering (RFC 8216bis §4.4, Appendix B of the
//! low-latency extension): written by hand because no crate supports
//! `EXT-X-PART`, `EXT-X-PRELOAD-HINT`, `EXT-X-SERVER-CONTROL` or `EXT-X-SKIP`.

use std::fmt::Write;
use std::time::{Duration, SystemTime};

use super::window::{Segment, Window};

/// What the playlist needs besides the window.
#[derive(Debug, Clone, Copy)]
pub struct PlaylistParams {
    /// `EXT-X-TARGETDURATION`, whole seconds, fixed for the playlist's life.
    pub target_duration_secs: u64,
    /// `PART-TARGET`.
    pub part_target: Duration,
    /// Wall-clock time of media time 0 (for `EXT-X-PROGRAM-DATE-TIME`).
    pub anchor: Option<SystemTime>,
    /// Render a delta update (`_HLS_skip=YES`, §6.2.5.1).
    pub skip: bool,
}

/// File names below `http://HOST/{path}/`.
pub fn init_name(id: u32) -> String {
    format!("init_{id}.mp4")
}
pub fn segment_name(msn: u64) -> String {
    format!("seg_{msn}.m4s")
}
pub fn part_name(msn: u64, part: usize) -> String {
    format!("part_{msn}_{part}.m4s")
}

fn secs(nanos: i64) -> f64 {
    nanos as f64 / 1e9
}

impl PlaylistParams {
    /// `PART-HOLD-BACK`: at least three part targets (§4.4.3.8).
    pub fn part_hold_back(&self) -> f64 {
        3.0 * self.part_target.as_secs_f64()
    }

    /// `CAN-SKIP-UNTIL`: six target durations (§4.4.3.8).
    pub fn can_skip_until(&self) -> f64 {
        6.0 * self.target_duration_secs as f64
    }
}

/// Renders the media playlist for the window as it is now.
pub fn render(w: &Window, p: &PlaylistParams) -> String {
    let mut out = String::with_capacity(4096);
    let first_msn = w.segments.front().map_or(0, |s| s.msn);
    let _ = write!(
        out,
        "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:{}\n\
         #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL={:.1},PART-HOLD-BACK={:.3}\n\
         #EXT-X-PART-INF:PART-TARGET={:.5}\n#EXT-X-MEDIA-SEQUENCE:{}\n",
        p.target_duration_secs,
        p.can_skip_until(),
        p.part_hold_back(),
        p.part_target.as_secs_f64(),
        first_msn,
    );
    if w.discontinuity_sequence > 0 {
        let _ = writeln!(
            out,
            "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
            w.discontinuity_sequence
        );
    }
    out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");

    // Where the live edge is, to decide which segments are skipped and which
    // still list their parts.
    let end_nanos = w
        .segments
        .back()
        .map(|s| s.start_nanos + s.duration_nanos.unwrap_or_else(|| parts_nanos(s)))
        .unwrap_or(0);
    let skip_until = (p.can_skip_until() * 1e9) as i64;
    let parts_window = 3 * p.target_duration_secs as i64 * 1_000_000_000;

    let skipped = if p.skip {
        w.segments
            .iter()
            .take_while(|s| s.is_complete() && end_nanos - segment_end(s) > skip_until)
            .count()
    } else {
        0
    };
    if skipped > 0 {
        let _ = writeln!(out, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}");
    }

    let mut map: Option<u32> = None;
    for seg in w.segments.iter().skip(skipped) {
        if seg.discontinuity && map.is_some() {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if map != Some(seg.init_id) {
            let _ = writeln!(out, "#EXT-X-MAP:URI=\"{}\"", init_name(seg.init_id));
            map = Some(seg.init_id);
        }
        if let Some(anchor) = p.anchor {
            let at = anchor + Duration::from_nanos(seg.start_nanos.max(0) as u64);
            let _ = writeln!(
                out,
                "#EXT-X-PROGRAM-DATE-TIME:{}",
                humantime::format_rfc3339_millis(at)
            );
        }
        if end_nanos - segment_end(seg) <= parts_window || !seg.is_complete() {
            for (i, part) in seg.parts.iter().enumerate() {
                let _ = write!(
                    out,
                    "#EXT-X-PART:DURATION={:.5},URI=\"{}\"",
                    secs(part.duration_nanos),
                    part_name(seg.msn, i)
                );
                if part.independent {
                    out.push_str(",INDEPENDENT=YES");
                }
                out.push('\n');
            }
        }
        if let Some(d) = seg.duration_nanos {
            let _ = writeln!(out, "#EXTINF:{:.5},\n{}", secs(d), segment_name(seg.msn));
        }
    }
    if w.ended {
        out.push_str("#EXT-X-ENDLIST\n");
    } else {
        let (msn, part) = match w.current() {
            Some(cur) => (cur.msn, cur.parts.len()),
            None => (w.next_msn(), 0),
        };
        let _ = writeln!(
            out,
            "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}\"",
            part_name(msn, part)
        );
    }
    out
}

fn parts_nanos(s: &Segment) -> i64 {
    s.parts.iter().map(|p| p.duration_nanos).sum()
}

fn segment_end(s: &Segment) -> i64 {
    s.start_nanos + s.duration_nanos.unwrap_or_else(|| parts_nanos(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::hls::window::Part;
    use bytes::Bytes;

    fn part(ms: i64, independent: bool) -> Part {
        Part::new(ms * 1_000_000, independent, &[], &[] as &[Bytes])
    }

    fn window(segments: u64) -> Window {
        let mut w = Window::new(100);
        w.add_init(1, Bytes::from_static(b"init"));
        for i in 0..segments {
            w.start_segment(i as i64 * 1_000_000_000, 1, false);
            for j in 0..5 {
                w.push_part(part(200, j == 0));
            }
            w.close_segment((i as i64 + 1) * 1_000_000_000);
        }
        w.start_segment(segments as i64 * 1_000_000_000, 1, false);
        w.push_part(part(200, true));
        w
    }

    fn params() -> PlaylistParams {
        PlaylistParams {
            target_duration_secs: 1,
            part_target: Duration::from_millis(200),
            anchor: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            skip: false,
        }
    }

    #[test]
    fn renders_ll_hls_tags() {
        let text = render(&window(3), &params());
        let expected_head = "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:1\n\
            #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=6.0,PART-HOLD-BACK=0.600\n\
            #EXT-X-PART-INF:PART-TARGET=0.20000\n#EXT-X-MEDIA-SEQUENCE:0\n\
            #EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-MAP:URI=\"init_1.mp4\"\n\
            #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.000Z\n\
            #EXT-X-PART:DURATION=0.20000,URI=\"part_0_0.m4s\",INDEPENDENT=YES\n\
            #EXT-X-PART:DURATION=0.20000,URI=\"part_0_1.m4s\"\n";
        assert!(text.starts_with(expected_head), "{text}");
        assert!(text.contains("#EXTINF:1.00000,\nseg_2.m4s\n"));
        assert!(text.contains("#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:23.000Z\n#EXT-X-PART:DURATION=0.20000,URI=\"part_3_0.m4s\",INDEPENDENT=YES\n"));
        assert!(
            text.ends_with("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part_3_1.m4s\"\n"),
            "{text}"
        );
    }

    #[test]
    fn old_segments_drop_their_parts_and_can_be_skipped() {
        let w = window(12);
        let text = render(&w, &params());
        // Parts only within three target durations of the live edge.
        assert!(!text.contains("part_0_0.m4s"));
        assert!(text.contains("part_9_0.m4s"));
        assert!(text.contains("seg_0.m4s"));
        let delta = render(
            &w,
            &PlaylistParams {
                skip: true,
                ..params()
            },
        );
        assert!(
            delta.contains("#EXT-X-SKIP:SKIPPED-SEGMENTS=6\n"),
            "{delta}"
        );
        assert!(!delta.contains("seg_5.m4s"));
        assert!(delta.contains("seg_6.m4s"));
    }

    #[test]
    fn discontinuities_and_end() {
        let mut w = window(1);
        w.close_segment(1_200_000_000);
        w.add_init(2, Bytes::from_static(b"init2"));
        w.start_segment(1_200_000_000, 2, true);
        w.push_part(part(200, true));
        w.close_segment(1_400_000_000);
        w.end();
        let text = render(&w, &params());
        assert!(
            text.contains("seg_1.m4s\n#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"init_2.mp4\"\n"),
            "{text}"
        );
        assert!(text.ends_with("#EXT-X-ENDLIST\n"));
        assert!(!text.contains("PRELOAD-HINT"));
    }
}
