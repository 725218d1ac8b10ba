//! RTMP playback. Every frame's RTMP message is serialised once for all
//! players of the path (memoised on the frame) and the same `Bytes` is queued
//! to every player's socket; only the per-player preamble (metadata, sequence
//! headers) is built per player.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::container::flv;
use crate::hub::{Reading, WakePolicy};
use crate::media::{CodecParams, Frame, MemoKey, Track, TrackKind, timestamp};
use crate::protocol::rtmp::{Amf0Value, MediaKind, ServerEvent, encode_media_message};
use crate::server::conn::{ConnError, RtmpConn};

/// Frames taken from the queue per write.
const BATCH: usize = 64;

/// Runs a playing connection until the player leaves, the stream ends or the
/// session is kicked.
/// `merge`: the media time one write may span (`rtmp_merge_writes`).
pub async fn run(
    mut conn: RtmpConn,
    mut reading: Reading,
    merge: Duration,
) -> Result<(), ConnError> {
    // Audio rides with the next video frame: one wake and one write per
    // video frame instead of one per message (see hub::reader::WakePolicy).
    reading.reader.set_wake_policy(WakePolicy {
        hold_audio: true,
        merge,
    });
    conn.session.accept_play();
    conn.session.resume()?;
    let tracks = reading.reader.stream().tracks();
    let mut player = Player::new(&tracks);
    conn.session.send_play_metadata(&metadata(&tracks, &player));
    conn.flush().await?;
    tracing::info!("playing started");

    let mut batch: Vec<Arc<Frame>> = Vec::with_capacity(BATCH);
    let result = loop {
        tokio::select! {
            biased;
            read = conn.read_input_untimed() => {
                if let Err(e) = read {
                    break Err(e);
                }
                let mut finished = false;
                while let Some(event) = conn.session.poll_event() {
                    if matches!(event, ServerEvent::PlayFinished) {
                        finished = true;
                    }
                }
                if finished {
                    break Ok("player stopped");
                }
            }
            first = reading.reader.recv() => {
                let Some(first) = first else {
                    let shutdown = reading.session.hub().is_shutting_down();
                    if reading.reader.kicked() && !shutdown {
                        break Ok("kicked");
                    }
                    // The stream ended, or the server is going away: players
                    // are told the stream is gone (UnpublishNotify).
                    conn.session.notify_unpublished();
                    let _ = conn.flush().await;
                    break Ok(if shutdown { "server shutting down" } else { "stream ended" });
                };
                batch.push(first);
                reading.reader.drain_into(&mut batch, BATCH - 1);
                for frame in batch.drain(..) {
                    player.queue(&mut conn, &frame);
                }
            }
        }
        match conn.flush().await {
            Ok(n) => reading.session.add_bytes_out(n),
            Err(e) => break Err(e),
        }
    };
    match result {
        Ok(why) => {
            tracing::info!(dropped = reading.reader.dropped(), "playing ended: {why}");
            Ok(())
        }
        Err(ConnError::Closed) => {
            tracing::info!(dropped = reading.reader.dropped(), "player disconnected");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// What one player has been sent.
struct Player {
    /// Per track index: whether RTMP carries it to this player.
    carried: Vec<bool>,
    /// The track generation whose sequence header the player has, per index.
    headers: Vec<Option<Arc<Track>>>,
    /// Video is held back until a keyframe.
    video_started: bool,
}

impl Player {
    /// RTMP (legacy FLV) carries H.264 and AAC: the first of each. Other
    /// tracks (H.265, G.711, Opus) are left out with one log line; a G.711
    /// camera's audio reaches RTMP as its transcoded AAC track.
    fn new(tracks: &[Arc<Track>]) -> Player {
        let first = |f: fn(&CodecParams) -> bool| tracks.iter().position(|t| f(&t.params));
        let video = first(|p| matches!(p, CodecParams::H264(_)));
        let audio = first(|p| matches!(p, CodecParams::Aac(_)));
        let carried = (0..tracks.len())
            .map(|i| Some(i) == video || Some(i) == audio)
            .collect::<Vec<_>>();
        for (t, _) in tracks.iter().zip(&carried).filter(|(_, c)| !**c) {
            tracing::info!(
                track = t.index,
                codec = t.params.name(),
                "track not carried over RTMP (FLV has H.264 and AAC)"
            );
        }
        Player {
            carried,
            headers: Vec::new(),
            video_started: false,
        }
    }

    fn queue(&mut self, conn: &mut RtmpConn, frame: &Arc<Frame>) {
        let track = &frame.track;
        if !self.carried.get(track.index).copied().unwrap_or(false) {
            return;
        }
        let is_video = track.kind() == TrackKind::Video;
        if is_video && !self.video_started {
            if !frame.keyframe {
                return;
            }
            self.video_started = true;
        }
        let ms = rtmp_time(frame.dts, track.timescale());
        if self.headers.len() <= track.index {
            self.headers.resize(track.index + 1, None);
        }
        let slot = &mut self.headers[track.index];
        if !slot.as_ref().is_some_and(|t| Arc::ptr_eq(t, track)) {
            if let Some(header) = sequence_header(track, ms) {
                conn.session.queue_encoded(header);
            }
            *slot = Some(Arc::clone(track));
        }
        if let Some(message) = message(frame, ms) {
            conn.session.queue_encoded(message);
        }
    }
}

/// RTMP timestamps are 32-bit milliseconds that wrap.
fn rtmp_time(ticks: i64, timescale: u32) -> u32 {
    timestamp::ticks_to_millis(ticks, timescale) as u32
}

/// The frame's RTMP message, built by the first player that needs it and
/// shared by all others.
fn message(frame: &Frame, ms: u32) -> Option<Bytes> {
    let kind = match &frame.track.params {
        CodecParams::H264(_) => MediaKind::Video,
        CodecParams::Aac(_) => MediaKind::Audio,
        _ => return None,
    };
    Some(frame.memo.get_or_init(MemoKey::RtmpChunks, || {
        if kind == MediaKind::Video {
            let cts = timestamp::ticks_to_millis(frame.pts - frame.dts, frame.track.timescale());
            let header = flv::avc_frame_header(frame.keyframe, cts as i32);
            encode_media_message(kind, ms, &[&header, &frame.data])
        } else {
            encode_media_message(kind, ms, &[&flv::AAC_FRAME_HEADER, &frame.data])
        }
    }))
}

/// The FLV sequence header of a track, with the timestamp of the frame it
/// precedes.
fn sequence_header(track: &Track, ms: u32) -> Option<Bytes> {
    Some(match &track.params {
        CodecParams::H264(h) => encode_media_message(
            MediaKind::Video,
            ms,
            &[&flv::avc_sequence_header_prefix(), &h.avcc],
        ),
        CodecParams::Aac(a) => encode_media_message(
            MediaKind::Audio,
            ms,
            &[&flv::AAC_SEQUENCE_HEADER_PREFIX, &a.asc],
        ),
        _ => return None,
    })
}

/// `onMetaData` for players (FLV spec E.5).
fn metadata(tracks: &[Arc<Track>], player: &Player) -> Vec<(&'static str, Amf0Value)> {
    let mut props = vec![("duration", Amf0Value::Number(0.0))];
    for t in tracks
        .iter()
        .filter(|t| player.carried.get(t.index).copied().unwrap_or(false))
    {
        match &t.params {
            CodecParams::H264(h) => {
                props.push(("width", Amf0Value::Number(f64::from(h.width))));
                props.push(("height", Amf0Value::Number(f64::from(h.height))));
                props.push(("videocodecid", Amf0Value::Number(7.0)));
            }
            CodecParams::Aac(a) => {
                props.push(("audiocodecid", Amf0Value::Number(10.0)));
                props.push((
                    "audiosamplerate",
                    Amf0Value::Number(f64::from(a.sample_rate)),
                ));
                props.push(("stereo", Amf0Value::Boolean(a.channels > 1)));
            }
            _ => {}
        }
    }
    props
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::AacParams;

    #[test]
    fn a_frame_is_serialised_once_for_every_player() {
        let track = Arc::new(Track::new(
            0,
            0,
            CodecParams::Aac(AacParams {
                asc: Bytes::from_static(&[0x11, 0x90]),
                object_type: 2,
                sample_rate: 48_000,
                channels: 2,
                samples_per_frame: 1024,
            }),
        ));
        let frame = Frame::new(track, 48_000, 48_000, true, Bytes::from(vec![7u8; 5000]));
        let a = message(&frame, 1000).unwrap();
        let b = message(&frame, 1000).unwrap();
        assert_eq!(
            a.as_ptr(),
            b.as_ptr(),
            "the second player gets the same bytes"
        );
        // One type-0 header, then type-3 continuation chunks every 4096 bytes.
        assert_eq!(a[0] & 0xc0, 0);
        assert_eq!(a.len(), 12 + 5002 + 1);
    }
}
