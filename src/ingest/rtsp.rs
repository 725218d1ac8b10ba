//! Pulling RTSP sources (IP cameras) with retina: DESCRIBE/SETUP/PLAY, the
//! depacketized frames into the hub, reconnects with backoff (see
//! [`super::source`]), and G.711 or Opus audio transcoded to AAC once per
//! path for the readers that cannot play them (HLS, RTMP).
//!
//! Sessions retina depacketizes fully (H.264/H.265, AAC, G.711) are read
//! through its demuxer. A session with an Opus stream, which retina has no
//! depacketizer for, is read in retina's raw packet mode and every stream of
//! it goes through our own depacketizers ([`crate::codec::rtp`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use retina::client::{
    Credentials, Demuxed, InitialTimestampPolicy, PacketItem, PlayOptions, Playing, SessionGroup,
    SessionOptions, SetupOptions, TcpTransportOptions, TeardownPolicy, Transport,
    UdpTransportOptions,
};
use retina::codec::{CodecItem, ParametersRef, VideoParametersCodec};
use tokio::sync::Mutex;
use tracing::Instrument;

use super::source::{self, AttemptError, RetryPolicy};
use crate::codec::rtp::{self, Depacketizer};
use crate::codec::{aac, h264};
use crate::config::{PathSettings, RtspTransport, Source};
use crate::hub::Publisher;
use crate::hub::source::{PullJob, Puller, SourceStatus};
use crate::media::decode_order::DecodeOrder;
use crate::media::{
    CodecParams, Frame, G711Law, G711Params, H265Params, OpusParams, Track, VIDEO_TIMESCALE,
};
use crate::transcode::{AudioTranscoder, G711ToAac, OpusToAac};

/// How long DESCRIBE/SETUP/PLAY may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// With `rtsp_transport = "auto"`, how long to wait for the first UDP packet
/// before trying TCP.
const UDP_FIRST_PACKET: Duration = Duration::from_secs(3);
/// Frames held back while the video parameters are not known yet.
const MAX_PENDING: usize = 256;
/// Stream time of media time 0: room for a track whose first frame comes
/// slightly before the other's.
const START_SECS: i64 = 1;

/// Pulls `rtsp://` sources for the hub.
pub struct RtspPuller {
    group: Arc<SessionGroup>,
}

impl Default for RtspPuller {
    fn default() -> Self {
        RtspPuller {
            group: Arc::new(SessionGroup::default()),
        }
    }
}

impl Puller for RtspPuller {
    fn pull(&self, job: PullJob) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let group = Arc::clone(&self.group);
        let span = tracing::info_span!("rtsp", path = %job.path, source = %job.status.url);
        Box::pin(run(job, group).instrument(span))
    }
}

/// What survives from one attempt to the next.
struct SourceState {
    publisher: Publisher,
    /// `auto` found that UDP does not get through: use TCP from now on.
    prefer_tcp: bool,
}

async fn run(job: PullJob, group: Arc<SessionGroup>) {
    let PullJob {
        path,
        settings,
        publisher,
        status,
        cancel,
    } = job;
    let Source::Rtsp(url) = settings.source.clone() else {
        return;
    };
    let state = Arc::new(Mutex::new(SourceState {
        publisher,
        prefer_tcp: false,
    }));
    let read_timeout = publisher_read_timeout(&state).await;
    source::run(&status, &cancel, RetryPolicy::default(), || {
        let state = Arc::clone(&state);
        let group = Arc::clone(&group);
        let status = Arc::clone(&status);
        let settings = settings.clone();
        let url = url.clone();
        async move {
            let mut state = state.lock().await;
            attempt(&url, &settings, &mut state, &status, &group, read_timeout).await
        }
    })
    .await;
    tracing::info!(path, "source stopped");
}

async fn publisher_read_timeout(state: &Arc<Mutex<SourceState>>) -> Duration {
    state.lock().await.publisher.hub().config().read_timeout
}

fn fail(message: impl Into<String>) -> AttemptError {
    AttemptError {
        message: message.into(),
        auth: false,
        was_ready: false,
    }
}

/// An error from the camera, in words for the API.
fn camera_error(what: &str, e: &retina::Error) -> AttemptError {
    match e.status_code() {
        Some(401) => AttemptError {
            message: "401 Unauthorized from camera (check the credentials)".into(),
            auth: true,
            was_ready: false,
        },
        Some(code) => fail(format!("{what}: {code} from camera: {}", first_line(e))),
        None => fail(format!("{what}: {}", first_line(e))),
    }
}

fn first_line(e: &retina::Error) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}

/// Splits credentials out of the URL (retina takes them separately), or
/// takes them from `source_user`/`source_pass`.
fn url_and_credentials(
    raw: &str,
    settings: &PathSettings,
) -> Result<(url::Url, Option<Credentials>), AttemptError> {
    let mut url = url::Url::parse(raw).map_err(|e| fail(format!("bad source URL: {e}")))?;
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let from_url = (!url.username().is_empty()).then(|| Credentials {
        username: decode(url.username()),
        password: decode(url.password().unwrap_or_default()),
    });
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let creds = from_url.or_else(|| {
        settings.source_user.as_ref().map(|u| Credentials {
            username: u.clone(),
            password: settings.source_pass.clone().unwrap_or_default(),
        })
    });
    Ok((url, creds))
}

/// One connection to the camera, until it fails or the source is stopped
/// (the caller drops this future then).
async fn attempt(
    raw_url: &str,
    settings: &PathSettings,
    state: &mut SourceState,
    status: &SourceStatus,
    group: &Arc<SessionGroup>,
    read_timeout: Duration,
) -> Result<(), AttemptError> {
    let (url, creds) = url_and_credentials(raw_url, settings)?;
    // A camera with a session limit must see the last session torn down
    // before it accepts the next one.
    let _ = tokio::time::timeout(REQUEST_TIMEOUT, group.await_teardown()).await;
    let options = SessionOptions::default()
        .creds(creds)
        .session_group(Arc::clone(group))
        .teardown(TeardownPolicy::Auto)
        .user_agent(format!("mediarelay/{}", env!("CARGO_PKG_VERSION")));
    let mut session = tokio::time::timeout(
        REQUEST_TIMEOUT,
        retina::client::Session::describe(url, options),
    )
    .await
    .map_err(|_| fail("camera did not answer DESCRIBE"))?
    .map_err(|e| camera_error("DESCRIBE", &e))?;

    let chosen = choose_streams(session.streams());
    if chosen.is_empty() {
        return Err(fail(
            "the camera offers no stream the relay can take (H.264/H.265 video, AAC/G.711/Opus audio)",
        ));
    }
    let udp = match settings.rtsp_transport {
        RtspTransport::Udp => true,
        RtspTransport::Tcp => false,
        RtspTransport::Auto => !state.prefer_tcp,
    };
    let transport = if udp {
        Transport::Udp(UdpTransportOptions::default())
    } else {
        Transport::Tcp(TcpTransportOptions::default())
    };
    for c in &chosen {
        let setup = tokio::time::timeout(
            REQUEST_TIMEOUT,
            session.setup(
                c.stream,
                SetupOptions::default().transport(transport.clone()),
            ),
        )
        .await
        .map_err(|_| fail("camera did not answer SETUP"))?;
        if let Err(e) = setup {
            if udp && settings.rtsp_transport == RtspTransport::Auto {
                // The camera does not do UDP (e.g. 461 Unsupported Transport).
                state.prefer_tcp = true;
                return Err(camera_error("SETUP over UDP; trying TCP", &e));
            }
            return Err(camera_error("SETUP", &e));
        }
    }
    let playing = tokio::time::timeout(
        REQUEST_TIMEOUT,
        session.play(PlayOptions::default().initial_timestamp(InitialTimestampPolicy::Permissive)),
    )
    .await
    .map_err(|_| fail("camera did not answer PLAY"))?
    .map_err(|e| camera_error("PLAY", &e))?;
    // retina cannot depacketize Opus: such a session is read packet by
    // packet and depacketized here.
    let raw = chosen.iter().any(|c| c.kind == ChosenKind::Opus);
    let mut media = if raw {
        Media::Raw(playing)
    } else {
        Media::Demuxed(playing.demuxed().map_err(|e| camera_error("PLAY", &e))?)
    };
    tracing::info!(transport = %transport, streams = chosen.len(), raw, "camera playing");

    let max_frame_bytes = state.publisher.hub().config().limits.max_frame_bytes;
    let mut ingest = Ingest::new(chosen, media.streams(), raw, max_frame_bytes)?;
    let mut first = true;
    loop {
        let wait = if first && udp && settings.rtsp_transport == RtspTransport::Auto {
            UDP_FIRST_PACKET
        } else {
            read_timeout
        };
        let item = match tokio::time::timeout(wait, media.next()).await {
            Err(_) if first && udp && settings.rtsp_transport == RtspTransport::Auto => {
                state.prefer_tcp = true;
                return Err(fail("no RTP packets over UDP; trying TCP"));
            }
            Err(_) => return Err(ingest.fail(format!("no media from camera for {wait:?}"))),
            Ok(None) => return Err(ingest.fail("camera ended the session")),
            Ok(Some(Err(e))) => return Err(ingest.fail_with(camera_error("stream", &e))),
            Ok(Some(Ok(item))) => item,
        };
        first = false;
        match item {
            Item::Frame(item) => {
                ingest.on_item(item, media.streams(), &mut state.publisher, status)?
            }
            Item::Packet(pkt) => ingest.on_packet(pkt, &mut state.publisher, status),
        }
    }
}

/// The playing session: frames from retina's demuxer, or raw packets for
/// our depacketizers.
enum Media {
    Demuxed(Demuxed),
    Raw(retina::client::Session<Playing>),
}

enum Item {
    Frame(CodecItem),
    Packet(PacketItem),
}

impl Media {
    async fn next(&mut self) -> Option<Result<Item, retina::Error>> {
        match self {
            Media::Demuxed(d) => d.next().await.map(|r| r.map(Item::Frame)),
            Media::Raw(s) => s.next().await.map(|r| r.map(Item::Packet)),
        }
    }

    fn streams(&self) -> &[retina::client::Stream] {
        match self {
            Media::Demuxed(d) => d.streams(),
            Media::Raw(s) => s.streams(),
        }
    }
}

/// A stream of the camera the relay takes.
#[derive(Debug, Clone)]
pub(crate) struct Chosen {
    pub(crate) stream: usize,
    pub(crate) kind: ChosenKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChosenKind {
    Video,
    Aac,
    G711(G711Law),
    Opus,
}

/// The first video stream the relay can carry, and the first audio one.
fn choose_streams(streams: &[retina::client::Stream]) -> Vec<Chosen> {
    let mut out = Vec::new();
    let mut have_video = false;
    let mut have_audio = false;
    for (i, s) in streams.iter().enumerate() {
        let enc = s.encoding_name();
        let kind = match (s.media(), enc) {
            ("video", "h264" | "h265") if !have_video => Some(ChosenKind::Video),
            ("audio", "mpeg4-generic") if !have_audio => Some(ChosenKind::Aac),
            ("audio", "pcma") if !have_audio => Some(ChosenKind::G711(G711Law::ALaw)),
            ("audio", "pcmu") if !have_audio => Some(ChosenKind::G711(G711Law::MuLaw)),
            ("audio", "opus") if !have_audio => Some(ChosenKind::Opus),
            _ => None,
        };
        match kind {
            Some(k) => {
                have_video |= k == ChosenKind::Video;
                have_audio |= k != ChosenKind::Video;
                out.push(Chosen { stream: i, kind: k });
            }
            None => tracing::info!(
                stream = i,
                media = s.media(),
                encoding = enc,
                "camera stream not taken (supported: H.264, H.265, AAC, G.711, Opus)"
            ),
        }
    }
    // Opus needs the raw path (codec::rtp), which takes H.265 parameters only
    // from the SDP: with an H.265 camera that sends them in-band only, the
    // video comes first and the Opus audio is left out.
    let h265_in_band_only = out.iter().any(|c| {
        c.kind == ChosenKind::Video
            && streams
                .get(c.stream)
                .is_some_and(|s| s.encoding_name() == "h265" && s.parameters().is_none())
    });
    if h265_in_band_only && out.iter().any(|c| c.kind == ChosenKind::Opus) {
        tracing::info!(
            "camera's Opus audio not taken: with H.265 whose parameter sets are only in-band \
             (no sprop-* in the SDP), the stream is read without it"
        );
        out.retain(|c| c.kind != ChosenKind::Opus);
    }
    out
}

/// Turns retina's frames (or, in raw mode, our depacketizers' units) into
/// hub frames for one connection. Also what an RTSP publisher's
/// `RECORD` session feeds (`server::rtsp`, raw mode, [`Ingest::from_params`]).
pub(crate) struct Ingest {
    chosen: Vec<Chosen>,
    /// Track index in the hub stream per chosen stream.
    track_of: Vec<usize>,
    /// Parameters per track; video may be unknown until the first frame.
    params: Vec<Option<CodecParams>>,
    /// The G.711/Opus → AAC transcoder and the index of its track.
    transcoder: Option<(Box<dyn AudioTranscoder>, usize)>,
    /// Raw mode: our depacketizer per chosen stream.
    depacketizers: Vec<Option<Depacketizer>>,
    tracks: Vec<Arc<Track>>,
    pending_raw: Vec<(usize, i64, i64, bool, Bytes)>,
    decode_order: Option<DecodeOrder<(bool, Bytes)>>,
    sr_sync: SrSync,
    started: bool,
    /// Video lost packets: drop frames up to the next keyframe.
    need_keyframe: bool,
}

impl Ingest {
    fn new(
        chosen: Vec<Chosen>,
        streams: &[retina::client::Stream],
        raw: bool,
        max_frame_bytes: usize,
    ) -> Result<Self, AttemptError> {
        let described = chosen
            .iter()
            .map(|c| {
                let stream = streams.get(c.stream);
                let p = stream.and_then(|s| stream_params(c.kind, s));
                let encoding = stream.map(|s| s.encoding_name()).unwrap_or_default();
                (p, encoding.to_string())
            })
            .collect();
        Self::from_params(chosen, described, raw, max_frame_bytes)
    }

    /// An ingest of streams whose parameters (and encoding names, for a
    /// video stream whose parameters come in-band) are known already.
    pub(crate) fn from_params(
        chosen: Vec<Chosen>,
        described: Vec<(Option<CodecParams>, String)>,
        raw: bool,
        max_frame_bytes: usize,
    ) -> Result<Self, AttemptError> {
        let mut params = Vec::new();
        let mut track_of = Vec::new();
        let mut transcoder = None;
        let mut depacketizers = Vec::new();
        for (c, (p, encoding)) in chosen.iter().zip(described) {
            track_of.push(params.len());
            let encoding = encoding.as_str();
            if raw {
                depacketizers.push(match (&p, encoding) {
                    (Some(p), _) => Some(Depacketizer::new(p)),
                    // Parameter sets only in-band: learned from the stream.
                    (None, "h264") => {
                        Some(Depacketizer::H26x(rtp::h26x::H26xDepacketizer::h264(None)))
                    }
                    (None, "h265") => {
                        Some(Depacketizer::H26x(rtp::h26x::H26xDepacketizer::h265(None)))
                    }
                    _ => None,
                });
                if let Some(Some(d)) = depacketizers.last_mut() {
                    d.set_max_access_unit(max_frame_bytes);
                }
            }
            params.push(p);
            let made: Option<Result<Box<dyn AudioTranscoder>, _>> = match (c.kind, params.last()) {
                (ChosenKind::G711(law), Some(Some(CodecParams::G711(g)))) => Some(
                    G711ToAac::new(law, g.sample_rate, g.channels)
                        .map(|t| Box::new(t) as Box<dyn AudioTranscoder>),
                ),
                (ChosenKind::G711(_), _) => return Err(fail("G.711 stream without a clock rate")),
                (ChosenKind::Opus, Some(Some(CodecParams::Opus(o)))) => {
                    Some(OpusToAac::new(o).map(|t| Box::new(t) as Box<dyn AudioTranscoder>))
                }
                _ => None,
            };
            match made {
                Some(Ok(t)) => {
                    let output = t.output().clone();
                    transcoder = Some((t, params.len()));
                    params.push(Some(output));
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "audio → AAC transcoder unavailable; HLS and RTMP get no audio")
                }
                None => {}
            }
        }
        Ok(Ingest {
            chosen,
            track_of,
            params,
            transcoder,
            depacketizers,
            tracks: Vec::new(),
            pending_raw: Vec::new(),
            decode_order: None,
            sr_sync: SrSync::default(),
            started: false,
            need_keyframe: true,
        })
    }

    fn fail(&self, message: impl Into<String>) -> AttemptError {
        self.fail_with(fail(message))
    }

    fn fail_with(&self, mut e: AttemptError) -> AttemptError {
        e.was_ready = self.started;
        e
    }

    fn chosen_index(&self, stream_id: usize) -> Option<usize> {
        self.chosen.iter().position(|c| c.stream == stream_id)
    }

    /// A frame from retina's demuxer.
    fn on_item(
        &mut self,
        item: CodecItem,
        streams: &[retina::client::Stream],
        publisher: &mut Publisher,
        status: &SourceStatus,
    ) -> Result<(), AttemptError> {
        match item {
            CodecItem::VideoFrame(frame) => {
                let Some(ci) = self.chosen_index(frame.stream_id()) else {
                    return Ok(());
                };
                let track = self.track_of[ci];
                let new_params = if frame.has_new_parameters() || self.params[track].is_none() {
                    streams
                        .get(frame.stream_id())
                        .and_then(|s| stream_params(ChosenKind::Video, s))
                } else {
                    None
                };
                // retina counts only IDR pictures; CRA pictures (x265 and
                // many cameras after the first IDR) are random access points
                // too (checked in `on_video`).
                let keyframe = frame.is_random_access_point();
                let loss = frame.loss();
                let pts = frame.timestamp().elapsed();
                let data = Bytes::from(frame.into_data());
                self.on_video(
                    track, new_params, loss, keyframe, pts, data, publisher, status,
                );
            }
            CodecItem::AudioFrame(frame) => {
                let Some(ci) = self.chosen_index(frame.stream_id()) else {
                    return Ok(());
                };
                let track = self.track_of[ci];
                let rate = i64::from(frame.timestamp().clock_rate().get());
                let data = Bytes::copy_from_slice(frame.data());
                let (loss, elapsed) = (frame.loss(), frame.timestamp().elapsed());
                self.on_audio(track, loss, elapsed, rate, data, publisher, status);
            }
            CodecItem::Rtcp(rtcp) => self.on_rtcp(&rtcp),
            CodecItem::MessageFrame(_) => {}
            _ => {}
        }
        Ok(())
    }

    /// A packet in raw mode: through our depacketizer of its stream.
    fn on_packet(&mut self, item: PacketItem, publisher: &mut Publisher, status: &SourceStatus) {
        let pkt = match item {
            PacketItem::Rtp(pkt) => pkt,
            PacketItem::Rtcp(rtcp) => return self.on_rtcp(&rtcp),
            _ => return,
        };
        let Some(ci) = self.chosen_index(pkt.stream_id()) else {
            return;
        };
        let rate = i64::from(pkt.timestamp().clock_rate().get());
        let packet = rtp::Packet {
            sequence_number: pkt.sequence_number(),
            timestamp: pkt.timestamp().elapsed(),
            mark: pkt.mark(),
            loss: pkt.loss(),
            payload: pkt.into_payload_bytes(),
        };
        self.on_rtp(ci, rate, packet, publisher, status);
    }

    /// An RTP packet of chosen stream `ci` (its time extended to 64 bits,
    /// counted from the stream's first packet) at clock rate `rate`.
    pub(crate) fn on_rtp(
        &mut self,
        ci: usize,
        rate: i64,
        packet: rtp::Packet,
        publisher: &mut Publisher,
        status: &SourceStatus,
    ) {
        let Some(&track) = self.track_of.get(ci) else {
            return;
        };
        let is_video = self
            .chosen
            .get(ci)
            .is_some_and(|c| c.kind == ChosenKind::Video);
        let Some(Some(depacketizer)) = self.depacketizers.get_mut(ci) else {
            return;
        };
        if let Err(e) = depacketizer.push(packet) {
            tracing::debug!(error = %e, "RTP packet not depacketized");
            if is_video {
                self.need_keyframe = true;
            }
            if self.started {
                status.add_discarded();
            }
        }
        let mut units = Vec::new();
        while let Some(u) = depacketizer.pull() {
            units.push(u);
        }
        for u in units {
            if is_video {
                self.on_video(
                    track,
                    u.new_params,
                    u.loss,
                    u.keyframe,
                    u.timestamp,
                    u.data,
                    publisher,
                    status,
                );
            } else {
                self.on_audio(track, u.loss, u.timestamp, rate, u.data, publisher, status);
            }
        }
    }

    /// One video access unit: `pts` is the RTP time since the stream's
    /// start (90 kHz); `new_params` when the stream's parameters changed.
    #[allow(clippy::too_many_arguments)]
    fn on_video(
        &mut self,
        track: usize,
        new_params: Option<CodecParams>,
        loss: u16,
        keyframe: bool,
        pts: i64,
        data: Bytes,
        publisher: &mut Publisher,
        status: &SourceStatus,
    ) {
        if let Some(p) = new_params {
            if self.started
                && self.params[track].as_ref() != Some(&p)
                && let Some(t) = publisher.set_params(track, p.clone())
            {
                self.tracks[track] = t;
            }
            self.params[track] = Some(p);
        }
        if loss > 0 {
            tracing::debug!(lost = loss, "video packets lost; waiting for a keyframe");
            status.add_lost(u64::from(loss));
            self.need_keyframe = true;
        }
        let keyframe = keyframe
            || (matches!(self.params[track], Some(CodecParams::H265(_)))
                && crate::codec::h265::is_irap(&data));
        if self.need_keyframe && !keyframe {
            if self.started {
                status.add_discarded();
            }
            return;
        }
        self.need_keyframe = false;
        let pts = pts + START_SECS * i64::from(VIDEO_TIMESCALE);
        // RTP carries presentation time only: derive decoding time
        // (B-frames; the depth comes from the SPS when it says).
        let order = self.decode_order.get_or_insert_with(|| {
            let depth = match &self.params[track] {
                Some(CodecParams::H264(h)) => {
                    h.sps.first().and_then(|s| h264::max_reorder_frames(s))
                }
                _ => None,
            };
            DecodeOrder::new(depth)
        });
        for (dts, pts, (keyframe, data)) in order.push(pts, (keyframe, data)) {
            self.emit(track, dts, pts, keyframe, data, publisher, status);
        }
    }

    /// One audio frame: `elapsed` is the RTP time since the stream's start
    /// at `rate`.
    #[allow(clippy::too_many_arguments)]
    fn on_audio(
        &mut self,
        track: usize,
        loss: u16,
        elapsed: i64,
        rate: i64,
        data: Bytes,
        publisher: &mut Publisher,
        status: &SourceStatus,
    ) {
        if loss > 0 {
            status.add_lost(u64::from(loss));
        }
        let shift = (self.sr_sync.audio_shift_secs() * rate as f64).round() as i64;
        let pts = elapsed + START_SECS * rate + shift;
        if let Some((tx, aac_track)) = &mut self.transcoder {
            match tx.push(pts, &data) {
                Ok(out) => {
                    let aac_track = *aac_track;
                    for f in out {
                        self.emit(aac_track, f.pts, f.pts, true, f.data, publisher, status);
                    }
                }
                Err(e) => tracing::debug!(error = %e, "transcode failed for one packet"),
            }
        }
        self.emit(track, pts, pts, true, data, publisher, status);
    }

    /// A sender report of chosen stream `ci`: NTP time `ntp` at `elapsed`
    /// seconds of the stream's time.
    pub(crate) fn on_sender_report(&mut self, ci: usize, ntp: u64, elapsed: f64) {
        if let Some(c) = self.chosen.get(ci) {
            self.sr_sync
                .observe(c.kind == ChosenKind::Video, ntp, elapsed);
        }
    }

    fn on_rtcp(&mut self, rtcp: &retina::rtcp::ReceivedCompoundPacket) {
        let Some(ci) = self.chosen_index(rtcp.stream_id()) else {
            return;
        };
        let report = rtcp
            .pkts()
            .find_map(|p| p.as_sender_report().ok().flatten())
            .map(|sr| sr.ntp_timestamp().0);
        if let (Some(ntp), Some(ts)) = (report, rtcp.rtp_timestamp()) {
            let kind = self.chosen[ci].kind;
            self.sr_sync
                .observe(kind == ChosenKind::Video, ntp, ts.elapsed_secs());
        }
    }

    /// Hands a frame to the hub, or holds it until every track's parameters
    /// are known and the stream can start.
    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        track: usize,
        dts: i64,
        pts: i64,
        keyframe: bool,
        data: Bytes,
        publisher: &mut Publisher,
        status: &SourceStatus,
    ) {
        if !self.started {
            if self.pending_raw.len() >= MAX_PENDING {
                self.pending_raw.remove(0);
            }
            self.pending_raw.push((track, dts, pts, keyframe, data));
            if self.params.iter().all(Option::is_some) {
                self.start(publisher, status);
            }
            return;
        }
        if let Some(t) = self.tracks.get(track) {
            publisher.write(Frame::new(Arc::clone(t), dts, pts, keyframe, data));
        }
    }

    fn start(&mut self, publisher: &mut Publisher, status: &SourceStatus) {
        let params: Vec<CodecParams> = self.params.iter().flatten().cloned().collect();
        let names: Vec<&str> = params.iter().map(|p| p.name()).collect();
        if publisher.start(params).is_err() {
            return;
        }
        self.tracks = (0..self.params.len())
            .filter_map(|i| publisher.track(i))
            .collect();
        self.started = true;
        status.set_ready();
        tracing::info!(tracks = ?names, "RTSP stream ready");
        for (track, dts, pts, keyframe, data) in std::mem::take(&mut self.pending_raw) {
            if let Some(t) = self.tracks.get(track) {
                publisher.write(Frame::new(Arc::clone(t), dts, pts, keyframe, data));
            }
        }
    }
}

/// Aligns audio to video through RTCP sender reports (RFC 3550 §6.4.1):
/// each maps a stream's RTP time to the sender's NTP wall clock. Without
/// `RTP-Info` (which retina's permissive policy falls back from), both
/// streams' time starts at their first packet, which may differ from the
/// capture by tens of milliseconds; the first pair of reports measures that
/// and audio is shifted once to match.
#[derive(Debug, Default)]
struct SrSync {
    /// (NTP seconds − stream seconds) of the latest report per kind.
    video: Option<f64>,
    audio: Option<f64>,
    shift_secs: Option<f64>,
}

/// Below this the tracks are taken as aligned already (RTP-Info worked).
const SR_MIN_SHIFT: f64 = 0.02;
/// Above this a report is not believed (broken camera clocks).
const SR_MAX_SHIFT: f64 = 10.0;

impl SrSync {
    /// A sender report of video (`is_video`) or audio: NTP time (64-bit
    /// fixed point) at the stream time `elapsed` seconds.
    fn observe(&mut self, is_video: bool, ntp: u64, elapsed: f64) {
        let wall = (ntp >> 32) as f64 + (ntp & 0xffff_ffff) as f64 / 4_294_967_296.0;
        let origin = Some(wall - elapsed);
        if is_video {
            self.video = origin;
        } else {
            self.audio = origin;
        }
        if self.shift_secs.is_none()
            && let (Some(v), Some(a)) = (self.video, self.audio)
        {
            // Audio stream time 0 was captured `a - v` seconds after video's.
            let shift = a - v;
            let applied = if (SR_MIN_SHIFT..SR_MAX_SHIFT).contains(&shift.abs()) {
                tracing::info!(
                    shift_ms = (shift * 1000.0).round(),
                    "audio aligned to video by RTCP sender reports"
                );
                shift
            } else {
                0.0
            };
            self.shift_secs = Some(applied);
        }
    }

    fn audio_shift_secs(&self) -> f64 {
        self.shift_secs.unwrap_or(0.0)
    }
}

/// The hub parameters of a camera stream, when retina knows them.
fn stream_params(kind: ChosenKind, stream: &retina::client::Stream) -> Option<CodecParams> {
    match (kind, stream.parameters()) {
        (ChosenKind::Video, Some(ParametersRef::Video(v))) => match v.codec_params() {
            VideoParametersCodec::H264 { .. } => {
                let record = Bytes::copy_from_slice(v.extra_data());
                match h264::h264_params(&record) {
                    Ok((p, _)) => Some(CodecParams::H264(p)),
                    Err(e) => {
                        tracing::warn!(error = %e, "camera's H.264 parameters do not parse");
                        None
                    }
                }
            }
            VideoParametersCodec::H265 { vps, sps, pps } => {
                let (w, h) = v.pixel_dimensions();
                Some(CodecParams::H265(H265Params {
                    hvcc: Bytes::copy_from_slice(v.extra_data()),
                    parameter_sets: vec![
                        Bytes::copy_from_slice(vps),
                        Bytes::copy_from_slice(sps),
                        Bytes::copy_from_slice(pps),
                    ],
                    codec: v.rfc6381_codec().to_string(),
                    width: u16::try_from(w).unwrap_or(u16::MAX),
                    height: u16::try_from(h).unwrap_or(u16::MAX),
                }))
            }
            _ => None,
        },
        (ChosenKind::Aac, Some(ParametersRef::Audio(a))) => {
            aac::parse_audio_specific_config(&Bytes::copy_from_slice(a.extra_data()))
                .map_err(|e| tracing::warn!(error = %e, "camera's AAC config does not parse"))
                .ok()
                .map(CodecParams::Aac)
        }
        // RFC 7587 §7: the SDP always says 2 channels; a stereo decoder
        // plays mono packets too.
        (ChosenKind::Opus, _) => Some(CodecParams::Opus(OpusParams { channels: 2 })),
        (ChosenKind::G711(law), _) => Some(CodecParams::G711(G711Params {
            law,
            sample_rate: stream.clock_rate_hz(),
            channels: stream
                .channels()
                .map_or(1, |c| u8::try_from(c.get()).unwrap_or(1)),
        })),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ntp(secs: f64) -> u64 {
        ((secs.trunc() as u64) << 32) | ((secs.fract() * 4_294_967_296.0) as u64)
    }

    #[test]
    fn sender_reports_measure_and_fix_the_audio_offset() {
        // Video time 0 was captured at 1000.000 s, audio time 0 at 1000.120 s.
        let mut s = SrSync::default();
        s.observe(true, ntp(1005.0), 5.0);
        assert_eq!(s.audio_shift_secs(), 0.0, "one report is not enough");
        s.observe(false, ntp(1005.5), 5.38);
        assert!(
            (s.audio_shift_secs() - 0.12).abs() < 1e-6,
            "{}",
            s.audio_shift_secs()
        );
        // Applied once: later reports do not move audio again.
        s.observe(false, ntp(1010.5), 10.0);
        assert!((s.audio_shift_secs() - 0.12).abs() < 1e-6);
    }

    #[test]
    fn aligned_streams_and_absurd_reports_change_nothing() {
        let mut s = SrSync::default();
        s.observe(true, ntp(2000.0), 10.0);
        s.observe(false, ntp(2000.005), 10.0);
        assert_eq!(s.audio_shift_secs(), 0.0);
        let mut s = SrSync::default();
        s.observe(true, ntp(2000.0), 10.0);
        s.observe(false, ntp(9000.0), 10.0);
        assert_eq!(s.audio_shift_secs(), 0.0);
    }
}
