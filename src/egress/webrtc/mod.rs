//! WHEP playback (draft-ietf-wish-whep; the WHIP resource model of RFC 9725):
//! `POST /{path}/whep` with an SDP offer creates a session that plays the
//! path over WebRTC; `DELETE` on its `Location` ends it.
//!
//! Per path, the work that is the same for every viewer is done once: the
//! Annex B form of each video frame is memoised on the frame and handed to
//! every viewer's packetizer as the same `Arc<[u8]>`; AAC is transcoded to
//! Opus once per path (a derived track of the stream, see [`bridge`]).

mod bridge;
mod sdp;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use str0m::format::Codec;
use str0m::media::{Frequency, MediaTime, Mid, Pt};
use str0m::{Event, change::SdpOffer};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::codec::h264;
use crate::hub::{Hub, Protocol, ReadError, Reading, Role, SessionSpec, StartAt};
use crate::media::{CodecParams, Frame, Track, TrackKind, timestamp};
use crate::webrtc::{Engine, Session, SessionEvent};

/// Largest SDP offer accepted.
pub const MAX_OFFER: usize = 64 * 1024;
/// Packets kept for retransmission per stream (~0.5 s of 2–4 Mbit/s video).
const SEND_BUFFER_VIDEO: usize = 200;
const SEND_BUFFER_AUDIO: usize = 32;

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
    cancel: CancellationToken,
    etag: String,
}

/// The WHEP side of the HTTP server.
pub struct WhepServer {
    hub: Hub,
    engine: Arc<Engine>,
    sessions: Mutex<HashMap<u64, Entry>>,
    bridges: bridge::Bridges,
    b_frame_paths: Mutex<std::collections::HashSet<String>>,
}

impl WhepServer {
    pub fn new(hub: Hub, engine: Arc<Engine>) -> Arc<Self> {
        Arc::new(WhepServer {
            bridges: bridge::Bridges::new(hub.clone()),
            hub,
            engine,
            sessions: Mutex::new(HashMap::new()),
            b_frame_paths: Mutex::new(Default::default()),
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
        let offer = SdpOffer::from_sdp_string(offer).map_err(|e| {
            tracing::debug!(error = %e, "unparsable SDP offer");
            WhepError::BadOffer("the body is not an SDP offer".into())
        })?;
        let spec = SessionSpec {
            protocol: Protocol::WebRtc,
            role: Role::Reader,
            path: path.to_string(),
            remote,
            query,
            token: None,
        };
        let reading = self.hub.read(spec, StartAt::LatestKeyframe).await?;
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
            .set_send_buffer_video(SEND_BUFFER_VIDEO)
            .set_send_buffer_audio(SEND_BUFFER_AUDIO);
        config = plan.enable_codecs(config);
        let mut session = self.engine.open(config);
        let answer = session
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| WhepError::BadOffer(e.to_string()))?;
        let answer = answer.to_sdp_string();
        let routes = plan.routes(&mut session, &answer);
        if routes.video.is_none() && routes.audio.is_none() {
            return Err(WhepError::NoCodec(plan.describe()));
        }
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
                cancel: cancel.clone(),
                etag: etag.clone(),
            },
        );
        tracing::info!(path, session = reading.session.id, webrtc = id, video = ?routes.video.as_ref().map(|v| v.codec), audio = ?routes.audio.as_ref().map(|a| a.codec), "WHEP session created");
        let server = Arc::clone(self);
        let path_owned = path.to_string();
        let span = tracing::info_span!("whep", path = %path_owned, session = reading.session.id);
        tokio::spawn(
            async move {
                if let Err(e) = play(session, reading, routes, cancel, bridge).await {
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
        entry.cancel.cancel();
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
                cancel: e.cancel.clone(),
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
}

#[derive(Debug, Default)]
pub(crate) struct Routes {
    pub video: Option<Route>,
    pub audio: Option<Route>,
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
    mut session: Session,
    mut reading: Reading,
    routes: Routes,
    cancel: CancellationToken,
    _bridge: Option<Arc<bridge::Bridge>>,
) -> Result<(), str0m::RtcError> {
    let clock = WallClock::new(reading.reader.stream().anchor());
    let mut events = Vec::new();
    let mut connected = false;
    let mut need_keyframe = true;
    let mut batch: Vec<Arc<Frame>> = Vec::with_capacity(32);
    let connect_deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let audio_track = |routes: &Routes| routes.audio.as_ref().map(|a| a.source);
    loop {
        session.drive(&mut events)?;
        for e in events.drain(..) {
            match e {
                SessionEvent::Closed => {
                    tracing::info!(dropped = reading.reader.dropped(), "WHEP viewer gone");
                    return Ok(());
                }
                SessionEvent::Rtc(e) => match *e {
                    Event::Connected => {
                        connected = true;
                        tracing::debug!("WHEP connected");
                    }
                    Event::KeyframeRequest(_) => {
                        // Resume at the next keyframe, and ask the publisher
                        // for one when it can (WHIP passes it to its encoder).
                        need_keyframe = true;
                        reading.reader.stream().request_keyframe();
                    }
                    _ => {}
                },
            }
        }
        tokio::select! {
            biased;
            _ = cancel.cancelled() => {
                session.close();
                let _ = session.drive(&mut events);
                return Ok(());
            }
            _ = tokio::time::sleep_until(connect_deadline), if !connected => {
                tracing::info!("WHEP peer never connected");
                session.close();
                let _ = session.drive(&mut events);
                return Ok(());
            }
            r = session.input() => r?,
            f = reading.reader.recv(), if connected => {
                let Some(f) = f else {
                    tracing::info!("stream ended");
                    session.close();
                    let _ = session.drive(&mut events);
                    return Ok(());
                };
                batch.push(f);
                reading.reader.drain_into(&mut batch, 31);
                let bridged = routes.audio.as_ref().is_some_and(|a| a.transcode);
                for f in batch.drain(..) {
                    let index = f.track.index;
                    if let Some(v) = routes.video.as_ref().filter(|v| v.source == index) {
                        if need_keyframe && !f.keyframe {
                            continue;
                        }
                        need_keyframe = false;
                        write(&mut session, v, &f, &clock)?;
                    } else if let Some(a) = routes.audio.as_ref() {
                        let wanted = if bridged {
                            matches!(f.track.params, CodecParams::Opus(_)) && Some(index) != audio_track(&routes)
                        } else {
                            a.source == index
                        };
                        if wanted {
                            write(&mut session, a, &f, &clock)?;
                        }
                    }
                }
            }
        }
    }
}

/// Writes one frame: video as an Annex B access unit (SPS/PPS with every
/// keyframe), built once per frame for all viewers; audio as is.
fn write(
    session: &mut Session,
    route: &Route,
    frame: &Frame,
    clock: &WallClock,
) -> Result<(), str0m::RtcError> {
    let track: &Track = &frame.track;
    let payload = frame.memo.rtp_payload(|| match &track.params {
        CodecParams::H264(h) => {
            let with_params = frame.keyframe.then_some(h);
            let annexb = h264::avcc_to_annexb(&frame.data, with_params);
            Arc::from(&annexb[..])
        }
        CodecParams::H265(h) => {
            let sets = frame.keyframe.then_some(&h.parameter_sets[..]);
            Arc::from(&annexb_h265(&frame.data, sets)[..])
        }
        _ => Arc::from(&frame.data[..]),
    });
    let rate = track.timescale();
    let frequency = match track.kind() {
        TrackKind::Video => Frequency::NINETY_KHZ,
        TrackKind::Audio => Frequency::new(rate).unwrap_or(Frequency::FORTY_EIGHT_KHZ),
    };
    let rtp_time = MediaTime::new(frame.pts.max(0) as u64, frequency);
    let wallclock = clock.at(timestamp::ticks_to_nanos(frame.pts, rate));
    let Some(writer) = session.rtc.writer(route.mid) else {
        return Ok(());
    };
    writer.write(route.pt, wallclock, rtp_time, payload)
}

/// Annex B from 4-byte length-prefixed H.265 NAL units, with VPS/SPS/PPS
/// first for keyframes.
fn annexb_h265(avcc: &[u8], sets: Option<&[bytes::Bytes]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(avcc.len() + 64);
    for s in sets.unwrap_or_default() {
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(s);
    }
    let mut rest = avcc;
    while rest.len() >= 4 {
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let Some(nal) = rest.get(4..4 + len) else {
            break;
        };
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(nal);
        rest = &rest[4 + len..];
    }
    out
}
