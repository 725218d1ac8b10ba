//! WHEP playback (draft-ietf-wish-whep; the WHIP resource model of RFC 9725):
//! `POST /{path}/whep` with an SDP offer creates a session that plays the
//! path over WebRTC; `DELETE` on its `Location` ends it.
//!
//! Per path, the work that is the same for every viewer is done once: each
//! frame is packetized into RTP payloads once
//! ([`codec::rtp::packetize`](crate::codec::rtp::packetize)), memoised on
//! the frame, and every viewer's session sends the same `Arc<[u8]>`
//! payloads, keeping them by reference count for NACKs: per viewer remain
//! the RTP header, SRTP and RTCP. str0m answers the offer and runs ICE and
//! DTLS; the session sends the media itself
//! ([`Session::send_own`](crate::webrtc::Session::send_own)). AAC is
//! transcoded to Opus once per path (a derived track of the stream, see
//! [`bridge`]).

mod bridge;
mod catch_up;
mod sdp;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use str0m::Event;
use str0m::format::Codec;
use str0m::media::{Mid, Pt};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use self::catch_up::{Backlog, CatchUp};
use crate::codec::rtp::packetize;
use crate::hub::{Hub, Protocol, ReadError, Reading, Role, SessionSpec, StartAt};
use crate::media::{CodecParams, Frame, timestamp};
use crate::webrtc::{Engine, Session, SessionEvent};

/// Largest SDP offer accepted.
pub const MAX_OFFER: usize = 64 * 1024;
/// Video packets a viewer's session keeps to resend on a NACK (RFC 4585
/// §6.2.1, as RTX, RFC 4588). A NACK comes about one round trip after the
/// lost packet left (the receiver sees the gap when the next one arrives,
/// within a frame interval), so the buffer must hold RTT × packet rate: a
/// 2 Mbit/s stream is ~200 packets/s of ~1.2 KB, and 256 packets are
/// ~1.2 s of P-frames, or a whole keyframe (30–60 packets sent at once)
/// and a second more. A packet that is already gone is not resent; the
/// viewer then sends a PLI and gets the cached GOP again
/// ([`VideoTiming::on_pli`]). The payloads in the buffer are the path's
/// shared ones; per viewer a kept packet costs 32 bytes (its numbers and
/// the `Arc`; 256 ≈ 8 KiB). With str0m's buffer a slot cost ~430 bytes, and
/// 64 of them (~300 ms) were 27 KiB.
const SEND_BUFFER_VIDEO: usize = 256;
/// Audio packets kept for NACK: 16 Opus packets are 320 ms (browsers rarely
/// NACK audio at all, and only with RTX negotiated is anything resent).
const SEND_BUFFER_AUDIO: usize = 16;

/// Why a WHEP request failed, with its HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum WhepError {
    #[error("invalid SDP offer: {0}")]
    BadOffer(String),
    #[error("the offer has no codec this stream can be sent with ({0})")]
    NoCodec(String),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("no WHEP session {0}")]
    NoSession(String),
    #[error("ICE restart is not supported")]
    IceRestart,
}

impl WhepError {
    pub fn status(&self) -> u16 {
        match self {
            WhepError::BadOffer(_) => 400,
            WhepError::NoCodec(_) => 406,
            WhepError::Read(ReadError::NotFound { .. }) => 404,
            WhepError::Read(ReadError::NotReady { .. }) => 503,
            WhepError::Read(ReadError::TooManyReaders { .. }) => 503,
            WhepError::Read(_) => 400,
            WhepError::NoSession(_) => 404,
            WhepError::IceRestart => 422,
        }
    }
}

/// A created session, for the HTTP answer.
pub struct Created {
    pub id: u64,
    pub answer: String,
    pub etag: String,
    /// The video has B-frames, which browsers' WebRTC stacks do not reorder
    /// (they drop frames): players should prefer LL-HLS for this path.
    pub b_frames: bool,
}

struct Entry {
    path: String,
    /// Cancelling it also stops the session's reader at once (a kick), which
    /// a connected session sees without polling the token every turn.
    session: Arc<crate::hub::Session>,
    etag: String,
}

/// The WHEP side of the HTTP server.
pub struct WhepServer {
    hub: Hub,
    engine: Arc<Engine>,
    sessions: Mutex<HashMap<u64, Entry>>,
    bridges: bridge::Bridges,
    b_frame_paths: Mutex<std::collections::HashSet<String>>,
    catch_up: Arc<CatchUp>,
}

impl WhepServer {
    pub fn new(hub: Hub, engine: Arc<Engine>) -> Arc<Self> {
        Arc::new(WhepServer {
            bridges: bridge::Bridges::new(hub.clone()),
            hub,
            engine,
            sessions: Mutex::new(HashMap::new()),
            b_frame_paths: Mutex::new(Default::default()),
            catch_up: Arc::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Entry>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Answers an offer and starts playing `path` to it.
    pub async fn create(
        self: &Arc<Self>,
        path: &str,
        offer: &str,
        remote: Option<SocketAddr>,
        query: String,
    ) -> Result<Created, WhepError> {
        let offer = crate::webrtc::sdp::parse_offer(offer).map_err(WhepError::BadOffer)?;
        let spec = SessionSpec {
            protocol: Protocol::WebRtc,
            role: Role::Reader,
            path: path.to_string(),
            remote,
            query,
            token: None,
        };
        let reading = self.hub.read(spec, StartAt::LatestKeyframe).await?;
        // From here (not while the hub waits for an on-demand source) until
        // its first frame, backlogs make way for this viewer.
        let backlog = self.catch_up.join();
        // Derived tracks (a bridge's Opus) are fed by their bridge: plan on
        // the publisher's own tracks.
        let tracks = reading.reader.stream().primary_tracks();
        let plan = sdp::Plan::for_tracks(&tracks);
        if plan.video.is_none() && plan.audio.is_none() {
            return Err(WhepError::NoCodec(
                "the stream has no track WebRTC can carry".into(),
            ));
        }
        let mut config = self
            .engine
            .rtc_config()
            .set_rtp_mode(true)
            .set_extension_map(sdp::header_extensions());
        config = plan.enable_codecs(config);
        let mut session = self.engine.open(config);
        let answer = crate::webrtc::sdp::accept_offer(&mut session.rtc, offer)
            .map_err(WhepError::BadOffer)?
            .to_sdp_string();
        let mut routes = plan.routes(&mut session, &answer);
        if routes.video.is_none() && routes.audio.is_none() {
            return Err(WhepError::NoCodec(plan.describe()));
        }
        // The session sends the media itself, not str0m (see
        // `webrtc::send_stream`): stream 0 is the video, if any, then audio.
        // A section the answer sends nothing on (the offer made it inactive
        // or send-only) has no stream: that track is not sent.
        let mut own = Vec::new();
        for (slot, keep) in [
            (&mut routes.video, SEND_BUFFER_VIDEO),
            (&mut routes.audio, SEND_BUFFER_AUDIO),
        ] {
            let Some(route) = slot.as_mut() else { continue };
            let clock = clock_rate(route.codec) as u32;
            if let Some(spec) = sdp::take_stream(&mut session, route, clock, &answer) {
                route.stream = own.len();
                own.push((spec, keep));
            } else {
                tracing::debug!(mid = %route.mid, "the answer sends nothing in this media section");
                *slot = None;
            }
        }
        if own.is_empty() {
            return Err(WhepError::NoCodec(plan.describe()));
        }
        session.send_own(own);
        // AAC reaches browsers as Opus, transcoded once per path.
        let bridge = match &routes.audio {
            Some(a) if a.transcode => self.bridges.get(path, reading.reader.stream(), a.source),
            _ => None,
        };
        let b_frames = reading.reader.stream().has_b_frames() && routes.video.is_some();
        if b_frames {
            self.warn_b_frames(path);
        }
        let id = session.id();
        let cancel = reading.session.cancel_token();
        let etag = format!("\"{id}\"");
        self.lock().insert(
            id,
            Entry {
                path: path.to_string(),
                session: Arc::clone(reading.session.arc()),
                etag: etag.clone(),
            },
        );
        tracing::info!(path, session = reading.session.id, webrtc = id, video = ?routes.video.as_ref().map(|v| v.codec), audio = ?routes.audio.as_ref().map(|a| a.codec), "WHEP session created");
        let server = Arc::clone(self);
        let path_owned = path.to_string();
        let span = tracing::info_span!("whep", path = %path_owned, session = reading.session.id);
        tokio::spawn(
            async move {
                if let Err(e) = play(session, reading, routes, cancel, bridge, backlog).await {
                    tracing::info!(webrtc = id, error = %e, "WHEP session ended");
                }
                server.lock().remove(&id);
            }
            .instrument(span),
        );
        Ok(Created {
            id,
            answer,
            etag,
            b_frames,
        })
    }

    /// Says once per path that its video has B-frames.
    fn warn_b_frames(&self, path: &str) {
        let mut warned = self.b_frame_paths.lock().unwrap_or_else(|e| e.into_inner());
        if warned.insert(path.to_string()) {
            tracing::warn!(
                path,
                "video has B-frames: browsers' WebRTC players drop many frames; LL-HLS plays it (set the encoder to no B-frames, e.g. OBS x264 option bframes=0, for WebRTC)"
            );
        }
    }

    /// `DELETE` of a session resource.
    pub fn delete(&self, path: &str, id: &str) -> Result<(), WhepError> {
        let entry = self.lookup(path, id)?;
        entry.session.cancel();
        Ok(())
    }

    /// `PATCH` of a session resource with trickled candidates. ICE-lite
    /// learns the peer's addresses from its checks, so candidates need no
    /// action; an ICE restart (new credentials) is refused.
    pub fn patch(&self, path: &str, id: &str, fragment: &str) -> Result<String, WhepError> {
        let entry = self.lookup(path, id)?;
        if fragment
            .lines()
            .any(|l| l.starts_with("a=ice-ufrag:") || l.starts_with("a=ice-pwd:"))
        {
            return Err(WhepError::IceRestart);
        }
        Ok(entry.etag)
    }

    fn lookup(&self, path: &str, id: &str) -> Result<Entry, WhepError> {
        let parsed: u64 = id
            .parse()
            .map_err(|_| WhepError::NoSession(id.to_string()))?;
        let sessions = self.lock();
        match sessions.get(&parsed) {
            Some(e) if e.path == path => Ok(Entry {
                path: e.path.clone(),
                session: Arc::clone(&e.session),
                etag: e.etag.clone(),
            }),
            _ => Err(WhepError::NoSession(id.to_string())),
        }
    }

    /// Live WHEP sessions.
    pub fn session_count(&self) -> usize {
        self.lock().len()
    }
}

/// Where a stream track goes in the session.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub mid: Mid,
    pub pt: Pt,
    pub codec: Codec,
    /// The stream track that feeds it.
    pub source: usize,
    /// Audio only: the source is AAC and goes through the Opus bridge.
    pub transcode: bool,
    /// Its stream among those the session sends ([`Session::send_own`]).
    pub stream: usize,
}

#[derive(Debug, Default)]
pub(crate) struct Routes {
    pub video: Option<Route>,
    pub audio: Option<Route>,
}

/// Most a keyframe replay may hold (frames, bytes); a longer cached GOP is
/// not replayed and the viewer resumes at the next keyframe.
const REPLAY_MAX_FRAMES: usize = 900;
const REPLAY_MAX_BYTES: usize = 4 * 1024 * 1024;
/// A request this soon after a replay is taken as a repeat of the one the
/// replay answered (a viewer asks again while the answer is in flight) and
/// is ignored.
const REPLAY_MIN_INTERVAL: Duration = Duration::from_secs(1);

/// How a viewer's picture loss indication is answered.
#[derive(Debug, PartialEq)]
enum PliAnswer {
    /// Send these frames of the cached GOP again at these (RTP, wall clock) times.
    Replay(Vec<(u64, Instant)>),
    /// A replay went out moments ago: nothing to do.
    InFlight,
    /// Drop video until the next keyframe.
    NextKeyframe,
}

/// One viewer's video RTP timing, and its answer to picture loss.
///
/// Frames go out at their presentation time. A viewer that lost its
/// reference picture (PLI, RFC 4585 §6.3.1) gets the cached GOP again — the
/// keyframe and every frame after it — squeezed in one tick apart right
/// after the last RTP time it was sent, so it decodes up to the live edge at
/// once instead of waiting for the next keyframe; live frames already
/// covered by the replay are skipped. Streams with B-frames are not
/// replayed (their RTP times are not in decoding order, so they cannot be
/// squeezed in order); they resume at the next keyframe.
#[derive(Debug, Default)]
struct VideoTiming {
    /// RTP time (90 kHz) and wall clock of the last video frame sent.
    last: Option<(u64, Instant)>,
    /// Frames of this (track generation, up to dts) went out in a replay.
    replayed_through: Option<(u32, i64)>,
    last_replay: Option<Instant>,
}

impl VideoTiming {
    /// RTP time and wall clock for a live frame; `None` when the replay
    /// already sent it.
    fn live(&mut self, frame: &Frame, clock: &WallClock) -> Option<(u64, Instant)> {
        if let Some((generation, dts)) = self.replayed_through {
            if frame.track.generation == generation && frame.dts <= dts {
                return None;
            }
            self.replayed_through = None;
        }
        let mut rtp = frame.pts.max(0) as u64;
        let wallclock = clock.at(timestamp::ticks_to_nanos(
            frame.pts,
            frame.track.timescale(),
        ));
        if let Some((last, _)) = self.last
            && rtp <= last
            && self.last_replay.is_some()
        {
            // Just after a replay, a frame whose time the replay used.
            rtp = last + 1;
        }
        self.last = Some((rtp, wallclock));
        Some((rtp, wallclock))
    }

    /// Answers a picture loss indication, given the cached GOP (the
    /// keyframe and what follows it).
    fn on_pli(&mut self, gop: &[Arc<Frame>], b_frames: bool, now: Instant) -> PliAnswer {
        if self
            .last_replay
            .is_some_and(|t| now.duration_since(t) < REPLAY_MIN_INTERVAL)
        {
            return PliAnswer::InFlight;
        }
        self.replay(gop, b_frames, now)
            .map_or(PliAnswer::NextKeyframe, PliAnswer::Replay)
    }

    /// Times for replaying `gop`, or `None` when it cannot be replayed.
    fn replay(
        &mut self,
        gop: &[Arc<Frame>],
        b_frames: bool,
        now: Instant,
    ) -> Option<Vec<(u64, Instant)>> {
        let (last_rtp, last_wall) = self.last?;
        let newest = gop.last()?;
        if b_frames
            || !gop.first()?.keyframe
            || gop.len() > REPLAY_MAX_FRAMES
            || gop.iter().map(|f| f.data.len()).sum::<usize>() > REPLAY_MAX_BYTES
        {
            return None;
        }
        // Live frames after the replay must come later than it: the next one
        // is at least a frame interval after the newest cached frame.
        let step = gop
            .windows(2)
            .map(|w| w[1].pts - w[0].pts)
            .filter(|d| *d > 0)
            .min()
            .unwrap_or(i64::MAX);
        if gop.len() as i64 >= step {
            return None;
        }
        self.last_replay = Some(now);
        self.replayed_through = Some((newest.track.generation, newest.dts));
        let times: Vec<(u64, Instant)> = (1..=gop.len() as u64)
            .map(|i| (last_rtp + i, last_wall))
            .collect();
        self.last = times.last().copied();
        Some(times)
    }
}

/// Maps the stream's timeline to the `Instant`s str0m wants as wall clock,
/// so audio and video keep the sync they had at the source.
struct WallClock {
    base: Instant,
}

impl WallClock {
    fn new(anchor: Option<SystemTime>) -> Self {
        let since = anchor
            .and_then(|a| SystemTime::now().duration_since(a).ok())
            .unwrap_or_default();
        WallClock {
            base: Instant::now()
                .checked_sub(since)
                .unwrap_or_else(Instant::now),
        }
    }

    fn at(&self, nanos: i64) -> Instant {
        self.base + Duration::from_nanos(nanos.max(0) as u64)
    }
}

async fn play(
    mut session: Box<Session>,
    mut reading: Reading,
    routes: Routes,
    cancel: CancellationToken,
    _bridge: Option<Arc<bridge::Bridge>>,
    mut backlog: Backlog,
) -> Result<(), str0m::RtcError> {
    let join_deadline = tokio::time::Instant::now() + catch_up::JOIN_PRIORITY;
    let clock = WallClock::new(reading.reader.stream().anchor());
    let mut events = Vec::new();
    let mut connected = false;
    let mut need_keyframe = true;
    let mut timing = VideoTiming::default();
    let mut batch: Vec<Arc<Frame>> = Vec::with_capacity(32);
    let connect_deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let audio_track = |routes: &Routes| routes.audio.as_ref().map(|a| a.source);
    // Events that came while the previous ones were handled (every write
    // drives the session) are handled before waiting again.
    let mut handling = Vec::new();
    // Made once, not per wait: the loop turns for every frame, and each
    // cancellation waiter or timer made per turn would be registered and
    // taken out again every time. Once connected the token is not polled:
    // cancelling the hub session (a kick, a DELETE, shutdown) also kicks its
    // reader, whose `recv` then ends at once.
    let cancelled = cancel.cancelled();
    let join_timer = tokio::time::sleep_until(join_deadline);
    let connect_timer = tokio::time::sleep_until(connect_deadline);
    tokio::pin!(cancelled, join_timer, connect_timer);
    loop {
        session.drive(&mut events)?;
        while !events.is_empty() {
            std::mem::swap(&mut events, &mut handling);
            for e in handling.drain(..) {
                let keyframe_request = match e {
                    SessionEvent::Closed => {
                        tracing::info!(dropped = reading.reader.dropped(), "WHEP viewer gone");
                        return Ok(());
                    }
                    SessionEvent::Rtc(e) => {
                        if matches!(*e, Event::Connected) {
                            if !session.can_send() {
                                tracing::warn!(
                                    "WHEP connected without SRTP keys or a peer address: ending the session"
                                );
                                session.close();
                                let _ = session.drive(&mut events);
                                return Ok(());
                            }
                            connected = true;
                            tracing::debug!("WHEP connected");
                        }
                        false
                    }
                    SessionEvent::KeyframeRequest(stream) => {
                        routes.video.as_ref().is_some_and(|v| v.stream == stream)
                    }
                };
                if !keyframe_request {
                    continue;
                }
                // Ask the publisher for a keyframe when it can (WHIP
                // passes it to its encoder); meanwhile replay the cached
                // one, or resume at the next.
                let stream = reading.reader.stream();
                stream.request_keyframe();
                if let Some(v) = routes.video.as_ref() {
                    let gop = stream.cached_gop(v.source);
                    match timing.on_pli(&gop, stream.has_b_frames(), Instant::now()) {
                        PliAnswer::Replay(times) => {
                            tracing::debug!(frames = gop.len(), "PLI: replaying the cached GOP");
                            need_keyframe = false;
                            for (i, (f, (rtp, wallclock))) in gop.iter().zip(times).enumerate() {
                                if i > 0 {
                                    backlog.pause().await;
                                }
                                write(&mut session, v, f, rtp, wallclock);
                            }
                        }
                        PliAnswer::InFlight => {}
                        PliAnswer::NextKeyframe => need_keyframe = true,
                    }
                }
            }
        }
        tokio::select! {
            biased;
            _ = &mut cancelled, if !connected => {
                session.close();
                let _ = session.drive(&mut events);
                return Ok(());
            }
            _ = &mut join_timer, if backlog.is_joining() => {
                backlog.done();
            }
            _ = &mut connect_timer, if !connected => {
                tracing::info!("WHEP peer never connected");
                session.close();
                let _ = session.drive(&mut events);
                return Ok(());
            }
            r = session.input() => r?,
            f = reading.reader.recv(), if connected => {
                let Some(f) = f else {
                    if reading.reader.kicked() {
                        tracing::info!("WHEP session cancelled");
                    } else {
                        tracing::info!("stream ended");
                    }
                    session.close();
                    let _ = session.drive(&mut events);
                    return Ok(());
                };
                // A keyframe is the heavy part of a viewer's work (tens of
                // packets to packetize, encrypt and send, right here): let
                // the other readers the frame woke (RTMP players, one write
                // each) go first.
                if f.keyframe {
                    tokio::task::yield_now().await;
                }
                batch.push(f);
                reading.reader.drain_into(&mut batch, 31);
                let bridged = routes.audio.as_ref().is_some_and(|a| a.transcode);
                let mut video_sent = false;
                for f in batch.drain(..) {
                    let index = f.track.index;
                    if let Some(v) = routes.video.as_ref().filter(|v| v.source == index) {
                        if need_keyframe && !f.keyframe {
                            continue;
                        }
                        need_keyframe = false;
                        if let Some((rtp, wallclock)) = timing.live(&f, &clock) {
                            if video_sent {
                                backlog.pause().await;
                            }
                            write(&mut session, v, &f, rtp, wallclock);
                            backlog.done();
                            video_sent = true;
                        }
                    } else if let Some(a) = routes.audio.as_ref() {
                        let wanted = if bridged {
                            matches!(f.track.params, CodecParams::Opus(_)) && Some(index) != audio_track(&routes)
                        } else {
                            a.source == index
                        };
                        if wanted {
                            let rtp = f.pts.max(0) as u64;
                            let wallclock = clock.at(timestamp::ticks_to_nanos(f.pts, f.track.timescale()));
                            write(&mut session, a, &f, rtp, wallclock);
                            // With video, joining ends with the keyframe.
                            if routes.video.is_none() {
                                backlog.done();
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The RTP clock rate of a codec on the wire (RFC 7587 §4.1: Opus is always
/// 48 kHz; RFC 3551 §4.5.14: G.711 8 kHz; video 90 kHz).
fn clock_rate(codec: Codec) -> u64 {
    match codec {
        Codec::Opus => 48_000,
        Codec::PCMU | Codec::PCMA => 8_000,
        _ => 90_000,
    }
}

/// Sends one frame at RTP time `rtp` (in the track's clock) as the path's
/// shared RTP payloads (packetized by the first viewer that sends the
/// frame; SPS/PPS with every keyframe) on the route's stream, at once.
fn write(session: &mut Session, route: &Route, frame: &Frame, rtp: u64, wallclock: Instant) {
    let track = &frame.track;
    let packets = packetize::of_frame(frame);
    if packets.is_empty() {
        return;
    }
    let clock = clock_rate(route.codec);
    let timescale = u64::from(track.timescale().max(1));
    let rtp = if timescale == clock {
        rtp
    } else {
        (u128::from(rtp) * u128::from(clock) / u128::from(timescale)) as u64
    };
    for p in packets.iter() {
        let offset = u64::from(p.time_offset);
        // RTP time is 32 bits on the wire (RFC 3550 §5.1): it wraps.
        let time = rtp.wrapping_add(offset) as u32;
        let at = wallclock + Duration::from_nanos(offset * 1_000_000_000 / clock);
        session.send_rtp(route.stream, time, p.marker, &p.data, at);
    }
    session.flush();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{Track, testing};
    use crate::webrtc::{SendStream, StreamSpec};
    use bytes::Bytes;

    /// Two viewers' streams send a frame: it is packetized once, and both
    /// keep the very same payload allocations for resending, by reference
    /// count, not copies.
    #[test]
    fn viewers_share_the_frames_rtp_payloads() {
        let track = Arc::new(Track::new(0, 0, testing::h264(640)));
        let mut data = vec![0, 0, 0x0b, 0xb8, 0x65];
        data.extend((1..3000).map(|i| i as u8));
        let frame = Frame::new(track, 0, 0, true, Bytes::from(data));
        let mut made = 0;
        let spec = StreamSpec {
            ssrc: 1,
            pt: 96,
            rtx: Some((2, 97)),
            clock: 90_000,
            extensions: Default::default(),
            cname: Vec::new(),
        };
        let mut viewers: Vec<SendStream> = (0..2)
            .map(|_| SendStream::new(spec.clone(), SEND_BUFFER_VIDEO))
            .collect();
        let mut sent = Vec::new();
        let mut header = Vec::new();
        for stream in &mut viewers {
            let packets = frame.memo.rtp_packets(|| {
                made += 1;
                packetize::packetize(
                    &frame.track.params,
                    true,
                    &frame.data,
                    packetize::MAX_PAYLOAD,
                )
            });
            for p in packets.iter() {
                stream.next(0, p.marker, &p.data, Instant::now(), &mut header);
            }
            sent.push(packets);
        }
        assert_eq!(made, 1, "packetized once");
        assert!(Arc::ptr_eq(&sent[0], &sent[1]));
        assert_eq!(sent[0].len(), 3, "3000 bytes: three fragments");
        for p in sent[0].iter() {
            // The memo (and its `Bytes` view for RTSP readers), and one
            // reference in each viewer's resend buffer.
            assert_eq!(Arc::strong_count(&p.data), 4);
        }
        drop(viewers);
        assert!(sent[0].iter().all(|p| Arc::strong_count(&p.data) == 2));
    }

    /// 30 fps on the 90 kHz clock, a keyframe at `key`, no B-frames.
    fn frames(track: &Arc<Track>, from: i64, n: i64, key: i64) -> Vec<Arc<Frame>> {
        (from..from + n)
            .map(|i| {
                Arc::new(Frame::new(
                    Arc::clone(track),
                    i * 3000,
                    i * 3000,
                    i == key,
                    Bytes::from_static(b"x"),
                ))
            })
            .collect()
    }

    #[test]
    fn a_pli_replays_the_cached_gop_right_after_the_last_time_sent() {
        let track = Arc::new(Track::new(0, 0, testing::h264(640)));
        let clock = WallClock::new(None);
        let mut t = VideoTiming::default();
        let live = frames(&track, 0, 10, 0);
        for f in &live[..5] {
            assert_eq!(t.live(f, &clock).map(|x| x.0), Some(f.pts as u64));
        }
        // The cache holds frames 0..8 (6..8 still queued for this viewer).
        let gop = &live[..8];
        let PliAnswer::Replay(times) = t.on_pli(gop, false, Instant::now()) else {
            panic!("no replay");
        };
        let rtp: Vec<u64> = times.iter().map(|x| x.0).collect();
        assert_eq!(rtp, (12_001..=12_008).collect::<Vec<_>>());
        // Frames the replay covered are not sent again; the next live one
        // goes out at its own time, after the replay.
        for f in &live[5..8] {
            assert_eq!(t.live(f, &clock), None);
        }
        assert_eq!(t.live(&live[8], &clock).map(|x| x.0), Some(24_000));
        // A second request within a second is the first one again.
        assert_eq!(
            t.on_pli(&live[..9], false, Instant::now()),
            PliAnswer::InFlight
        );
        let later = Instant::now() + Duration::from_secs(2);
        assert!(matches!(
            t.on_pli(&live[..9], false, later),
            PliAnswer::Replay(_)
        ));
    }

    #[test]
    fn no_replay_without_a_keyframe_with_b_frames_or_before_anything_was_sent() {
        let track = Arc::new(Track::new(0, 0, testing::h264(640)));
        let clock = WallClock::new(None);
        let live = frames(&track, 0, 4, 0);
        let mut t = VideoTiming::default();
        assert!(
            t.replay(&live, false, Instant::now()).is_none(),
            "nothing sent yet"
        );
        t.live(&live[0], &clock);
        assert!(t.replay(&live, true, Instant::now()).is_none(), "B-frames");
        assert!(
            t.replay(&live[1..], false, Instant::now()).is_none(),
            "no keyframe"
        );
        assert!(t.replay(&[], false, Instant::now()).is_none());
        assert!(
            t.replay(&live[..1], false, Instant::now()).is_some(),
            "a lone keyframe"
        );
    }

    #[test]
    fn a_new_generation_ends_the_replay_window() {
        let old = Arc::new(Track::new(0, 0, testing::h264(640)));
        let new = Arc::new(Track::new(0, 1, testing::h264(320)));
        let clock = WallClock::new(None);
        let mut t = VideoTiming::default();
        let live = frames(&old, 0, 4, 0);
        t.live(&live[0], &clock);
        t.replay(&live, false, Instant::now()).unwrap();
        // The new generation's frames are live, even at dts the replay used;
        // RTP time stays after the replay.
        let next = Frame::new(new, 2, 2, true, Bytes::from_static(b"x"));
        assert_eq!(t.live(&next, &clock).map(|x| x.0), Some(5));
    }
}
