//! WHIP ingest (RFC 9725): `POST /{path}/whip` with an SDP offer (OBS 30+
//! "WHIP" output, browsers) publishes H.264 + Opus on the path. Opus is
//! transcoded to AAC once, as an extra track, for the readers that cannot
//! play Opus (RTMP; HLS in Safari); WebRTC readers get the Opus as is.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use str0m::Event;
use str0m::format::Codec;
use str0m::media::{KeyframeRequestKind, MediaData, MediaKind, Mid};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::codec::h264;
use crate::hub::{Hub, Protocol, PublishError, Publisher, Role, SessionSpec};
use crate::media::decode_order::DecodeOrder;
use crate::media::{CodecParams, Frame, OpusParams, Track, VIDEO_TIMESCALE, timestamp};
use crate::transcode::{AudioTranscoder, OpusToAac};
use crate::webrtc::{Engine, Session, SessionEvent};

/// Largest SDP offer accepted.
pub const MAX_OFFER: usize = 64 * 1024;
/// Frames held back until the first SPS/PPS arrive.
const MAX_PENDING: usize = 512;
/// Browsers' encoders send keyframes only when asked: ask when none came for
/// this long, so HLS segments and new WebRTC viewers do not wait.
const KEYFRAME_EVERY: Duration = Duration::from_secs(2);

/// Why a WHIP request failed, with its HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum WhipError {
    #[error("invalid SDP offer: {0}")]
    BadOffer(String),
    #[error("the offer sends neither H.264 video nor Opus audio")]
    NoCodec,
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("no WHIP session {0}")]
    NoSession(String),
}

impl WhipError {
    pub fn status(&self) -> u16 {
        match self {
            WhipError::BadOffer(_) => 400,
            WhipError::NoCodec => 406,
            WhipError::Publish(PublishError::Busy { .. }) => 409,
            WhipError::Publish(PublishError::NotPublishable { .. }) => 403,
            WhipError::Publish(PublishError::TooManyPaths { .. }) => 503,
            WhipError::Publish(_) => 400,
            WhipError::NoSession(_) => 404,
        }
    }
}

pub struct Created {
    pub id: u64,
    pub answer: String,
}

struct Entry {
    path: String,
    cancel: CancellationToken,
}

/// The WHIP side of the HTTP server.
pub struct WhipServer {
    hub: Hub,
    engine: Arc<Engine>,
    sessions: Mutex<HashMap<u64, Entry>>,
}

impl WhipServer {
    pub fn new(hub: Hub, engine: Arc<Engine>) -> Arc<Self> {
        Arc::new(WhipServer {
            hub,
            engine,
            sessions: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Entry>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Answers an offer and starts publishing `path` from it. `token` is the
    /// `Authorization: Bearer` the client sent (kept with the session).
    pub async fn create(
        self: &Arc<Self>,
        path: &str,
        offer: &str,
        remote: Option<SocketAddr>,
        query: String,
        token: Option<String>,
    ) -> Result<Created, WhipError> {
        let offer = crate::webrtc::sdp::parse_offer(offer).map_err(WhipError::BadOffer)?;
        let publisher = self.hub.publish(SessionSpec {
            protocol: Protocol::WebRtc,
            role: Role::Publisher,
            path: path.to_string(),
            remote,
            query,
            token,
        })?;
        let config = self
            .engine
            .rtc_config()
            .enable_h264(true)
            .enable_opus(true, false);
        let mut session = self.engine.open(config);
        let answer = crate::webrtc::sdp::accept_offer(&mut session.rtc, offer)
            .map_err(WhipError::BadOffer)?
            .to_sdp_string();
        let sections = crate::webrtc::sdp::media_sections(&answer);
        let video = sections
            .iter()
            .find(|(k, _)| *k == MediaKind::Video)
            .map(|(_, m)| *m);
        let audio = sections
            .iter()
            .find(|(k, _)| *k == MediaKind::Audio)
            .map(|(_, m)| *m);
        if video.is_none() && audio.is_none() {
            return Err(WhipError::NoCodec);
        }
        let id = session.id();
        let cancel = publisher.session().cancel_token();
        self.lock().insert(
            id,
            Entry {
                path: path.to_string(),
                cancel: cancel.clone(),
            },
        );
        tracing::info!(
            path,
            session = publisher.session().id,
            webrtc = id,
            "WHIP session created"
        );
        let server = Arc::clone(self);
        let span = tracing::info_span!("whip", path = %path, session = publisher.session().id);
        tokio::spawn(
            async move {
                let ingest = Ingest::new(video, audio);
                if let Err(e) = receive(session, publisher, ingest, cancel).await {
                    tracing::info!(error = %e, "WHIP session ended");
                }
                server.lock().remove(&id);
            }
            .instrument(span),
        );
        Ok(Created { id, answer })
    }

    /// `DELETE` of a session resource: the publisher stops.
    pub fn delete(&self, path: &str, id: &str) -> Result<(), WhipError> {
        let parsed: u64 = id
            .parse()
            .map_err(|_| WhipError::NoSession(id.to_string()))?;
        match self.lock().get(&parsed) {
            Some(e) if e.path == path => {
                e.cancel.cancel();
                Ok(())
            }
            _ => Err(WhipError::NoSession(id.to_string())),
        }
    }
}

async fn receive(
    mut session: Box<Session>,
    mut publisher: Publisher,
    mut ingest: Ingest,
    cancel: CancellationToken,
) -> Result<(), str0m::RtcError> {
    let mut events = Vec::new();
    let connect_deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    let mut connected = false;
    // Made once, not per wait: the loop turns for every datagram.
    let cancelled = cancel.cancelled();
    let connect_timer = tokio::time::sleep_until(connect_deadline);
    tokio::pin!(cancelled, connect_timer);
    loop {
        session.drive(&mut events)?;
        for e in events.drain(..) {
            match e {
                SessionEvent::Rtc(e) if matches!(*e, Event::Connected) => {
                    connected = true;
                    tracing::info!("WHIP connected");
                    // Start from a keyframe at once.
                    if let Some(mid) = ingest.video_mid
                        && let Some(mut w) = session.rtc.writer(mid)
                    {
                        let _ = w.request_keyframe(None, KeyframeRequestKind::Pli);
                    }
                }
                SessionEvent::Closed => {
                    tracing::info!("WHIP publisher gone");
                    return Ok(());
                }
                SessionEvent::Rtc(e) => {
                    if let Event::MediaData(data) = *e {
                        ingest.on_media(data, &mut publisher);
                    }
                }
                // Only sessions that send media themselves (WHEP) have these.
                SessionEvent::KeyframeRequest(_) => {}
            }
        }
        let viewer_asked = publisher.keyframe_requested() && ingest.may_ask();
        if (ingest.keyframe_due() || viewer_asked)
            && let Some(mid) = ingest.video_mid
            && let Some(mut w) = session.rtc.writer(mid)
            && w.request_keyframe(None, KeyframeRequestKind::Pli).is_ok()
        {
            ingest.asked_keyframe = Some(Instant::now());
        }
        tokio::select! {
            biased;
            _ = &mut cancelled => {
                session.close();
                let _ = session.drive(&mut events);
                return Ok(());
            }
            _ = &mut connect_timer, if !connected => {
                tracing::info!("WHIP peer never connected");
                session.close();
                let _ = session.drive(&mut events);
                return Ok(());
            }
            r = session.input() => r?,
        }
    }
}

/// Turns depacketized WebRTC media into hub tracks and frames.
struct Ingest {
    video_mid: Option<Mid>,
    audio_mid: Option<Mid>,
    video: Option<CodecParams>,
    opus: Option<CodecParams>,
    transcoder: Option<OpusToAac>,
    /// Track index per kind once started: video, opus, aac.
    tracks: Vec<Arc<Track>>,
    index: [Option<usize>; 3],
    started: bool,
    pending: Vec<(usize, i64, i64, bool, Bytes)>,
    /// Each track's RTP time is anchored at the arrival of its first packet.
    epoch: Option<Instant>,
    first: [Option<(u64, i64)>; 2],
    decode_order: DecodeOrder<(bool, Bytes)>,
    need_keyframe: bool,
    last_keyframe: Option<Instant>,
    asked_keyframe: Option<Instant>,
}

const VIDEO: usize = 0;
const OPUS: usize = 1;
const AAC: usize = 2;

impl Ingest {
    fn new(video_mid: Option<Mid>, audio_mid: Option<Mid>) -> Self {
        let opus = audio_mid.map(|_| CodecParams::Opus(OpusParams { channels: 2 }));
        let transcoder = match OpusToAac::new(&OpusParams { channels: 2 }) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!(error = %e, "Opus → AAC transcoder unavailable; RTMP and HLS readers get no audio");
                None
            }
        };
        Ingest {
            video_mid,
            audio_mid,
            video: None,
            opus,
            transcoder: audio_mid.and(transcoder),
            tracks: Vec::new(),
            index: [None; 3],
            started: false,
            pending: Vec::new(),
            epoch: None,
            first: [None; 2],
            decode_order: DecodeOrder::new(None),
            need_keyframe: true,
            last_keyframe: None,
            asked_keyframe: None,
        }
    }

    /// Whether asking again is not too soon (a burst of viewers' PLIs makes
    /// one request).
    fn may_ask(&self) -> bool {
        self.asked_keyframe
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(300))
    }

    /// Whether to ask the publisher for a keyframe now.
    fn keyframe_due(&self) -> bool {
        let now = Instant::now();
        let stale = |t: Option<Instant>| t.is_none_or(|t| now.duration_since(t) >= KEYFRAME_EVERY);
        self.video_mid.is_some()
            && self.epoch.is_some()
            && stale(self.last_keyframe)
            && stale(self.asked_keyframe)
    }

    /// Stream ticks of an RTP time: relative to the track's first packet,
    /// offset by when that packet arrived after the session's first one.
    fn ticks(&mut self, slot: usize, data: &MediaData, rate: u32) -> i64 {
        let epoch = *self.epoch.get_or_insert(data.network_time);
        let (first_rtp, offset) = *self.first[slot].get_or_insert_with(|| {
            let since = data.network_time.saturating_duration_since(epoch);
            let offset = timestamp::rescale(since.as_nanos() as i64, 1_000_000_000, rate);
            (data.time.numer(), offset + i64::from(rate)) // + 1 s of room
        });
        (data.time.numer() as i64 - first_rtp as i64) + offset
    }

    fn on_media(&mut self, data: MediaData, publisher: &mut Publisher) {
        match data.params.spec().codec {
            Codec::H264 if Some(data.mid) == self.video_mid => {
                if !data.contiguous {
                    self.need_keyframe = true;
                }
                let (avcc, sps, pps, idr) = h264::annexb_to_avcc(&data.data);
                if !sps.is_empty()
                    && !pps.is_empty()
                    && let Some(record) = h264::record_from_parameter_sets(&sps, &pps)
                {
                    match h264::h264_params(&record) {
                        Ok((p, _)) => {
                            let p = CodecParams::H264(p);
                            if self.video.as_ref() != Some(&p) {
                                if self.started
                                    && let Some(i) = self.index[VIDEO]
                                    && let Some(t) = publisher.set_params(i, p.clone())
                                    && let Some(slot) = self.tracks.get_mut(i)
                                {
                                    *slot = t;
                                }
                                self.video = Some(p);
                            }
                        }
                        Err(e) => tracing::debug!(error = %e, "WHIP SPS does not parse"),
                    }
                }
                if idr {
                    self.last_keyframe = Some(Instant::now());
                }
                if avcc.is_empty() || (self.need_keyframe && !idr) {
                    return;
                }
                self.need_keyframe = false;
                let pts = self.ticks(0, &data, VIDEO_TIMESCALE);
                for (dts, pts, (key, avcc)) in self.decode_order.push(pts, (idr, avcc)) {
                    self.emit(VIDEO, dts, pts, key, avcc, publisher);
                }
            }
            Codec::Opus if Some(data.mid) == self.audio_mid => {
                let pts = self.ticks(1, &data, 48_000);
                let packet = Bytes::copy_from_slice(&data.data);
                if let Some(t) = &mut self.transcoder {
                    match t.push(pts, &packet) {
                        Ok(out) => {
                            for f in out {
                                self.emit(AAC, f.pts, f.pts, true, f.data, publisher);
                            }
                        }
                        Err(e) => tracing::debug!(error = %e, "Opus packet not transcoded"),
                    }
                }
                self.emit(OPUS, pts, pts, true, packet, publisher);
            }
            _ => {}
        }
    }

    fn emit(
        &mut self,
        kind: usize,
        dts: i64,
        pts: i64,
        keyframe: bool,
        data: Bytes,
        publisher: &mut Publisher,
    ) {
        if !self.started {
            if self.pending.len() >= MAX_PENDING {
                self.pending.remove(0);
            }
            self.pending.push((kind, dts, pts, keyframe, data));
            let video_ready = self.video_mid.is_none() || self.video.is_some();
            if video_ready {
                self.start(publisher);
            }
            return;
        }
        if let Some(t) = self.index[kind].and_then(|i| self.tracks.get(i)) {
            publisher.write(Frame::new(Arc::clone(t), dts, pts, keyframe, data));
        }
    }

    fn start(&mut self, publisher: &mut Publisher) {
        let mut params = Vec::new();
        if let Some(v) = &self.video {
            self.index[VIDEO] = Some(params.len());
            params.push(v.clone());
        }
        if let Some(o) = &self.opus {
            self.index[OPUS] = Some(params.len());
            params.push(o.clone());
        }
        if let Some(t) = &self.transcoder {
            self.index[AAC] = Some(params.len());
            params.push(t.output().clone());
        }
        if params.is_empty() || publisher.start(params).is_err() {
            return;
        }
        self.tracks = (0..3).filter_map(|i| publisher.track(i)).collect();
        self.started = true;
        tracing::info!(tracks = ?self.tracks.iter().map(|t| t.params.name()).collect::<Vec<_>>(), "WHIP stream started");
        for (kind, dts, pts, key, data) in std::mem::take(&mut self.pending) {
            self.emit(kind, dts, pts, key, data, publisher);
        }
    }
}
