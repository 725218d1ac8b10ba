//! A WHEP test client on str0m: a full-ICE (controlling) peer with a host
//! candidate on 127.0.0.1 and its own UDP socket, recvonly video + audio,
//! that POSTs its offer, applies the answer and records what arrives.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::config::DtlsCert;
use str0m::format::Codec;
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::{HttpResponse, http_with};

/// One received video access unit.
#[derive(Debug, Clone)]
pub struct VideoFrame {
    /// RTP time on the 90 kHz clock (extended by str0m, so it does not wrap).
    pub time: u64,
    pub codec: Codec,
    /// The access unit as str0m depacketized it: Annex B (start codes).
    pub data: Option<Arc<[u8]>>,
    pub len: usize,
    /// NAL unit types in order.
    pub nal_types: Vec<u8>,
    /// Contiguous with the previous frame (no RTP loss in between).
    pub contiguous: bool,
    /// Since the POST was sent.
    pub at: Duration,
}

impl VideoFrame {
    pub fn has_idr(&self) -> bool {
        self.nal_types.contains(&5)
    }
    pub fn has_sps(&self) -> bool {
        self.nal_types.contains(&7)
    }
    pub fn has_pps(&self) -> bool {
        self.nal_types.contains(&8)
    }
}

/// One received audio packet.
#[derive(Debug, Clone)]
pub struct AudioPacket {
    pub codec: Codec,
    /// RTP time at `rate` Hz (extended).
    pub time: u64,
    pub rate: u32,
    pub len: usize,
    /// The packet, when the client keeps data.
    pub data: Option<Arc<[u8]>>,
    pub at: Duration,
}

/// Everything a client has seen so far.
#[derive(Debug, Clone, Default)]
pub struct Received {
    pub video: Vec<VideoFrame>,
    pub audio: Vec<AudioPacket>,
    /// Connection events in order (`ice:Checking`, `connected`, `closed` …).
    pub events: Vec<String>,
    /// Since the POST: when ICE + DTLS were up.
    pub connected_at: Option<Duration>,
    /// Since the POST: when the first video frame arrived.
    pub first_video_at: Option<Duration>,
    /// The client loop has ended (peer closed, ICE disconnected, error, or
    /// `close()`), and why.
    pub ended: Option<String>,
    /// Datagrams received from the server.
    pub datagrams: u64,
    /// RTP packets dropped on purpose (`Options::drop_video_every`).
    pub dropped: u64,
    /// RTP packets delivered twice (`Options::duplicate_video_every`).
    pub duplicated: u64,
    /// RTP packets delivered after the one that followed them
    /// (`Options::reorder_video_every`).
    pub reordered: u64,
    /// NACKs this client sent for video (str0m's ingress stats).
    pub video_nacks: u64,
    /// Bytes of RTP datagrams of video size (over 400 bytes) per SSRC, in
    /// the order the SSRCs were first seen, counted as they arrive once
    /// connected, before any is dropped: the video stream first, then its
    /// retransmissions (RTX, RFC 4588), which only come after a NACK.
    pub video_bytes_by_ssrc: Vec<(u32, u64)>,
}

impl Received {
    pub fn disconnected(&self) -> bool {
        self.events
            .iter()
            .any(|e| e == "closed" || e == "ice:Disconnected")
    }
}

/// What the client offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// recvonly video (H.264) + recvonly audio (Opus): what a browser offers.
    H264Opus,
    /// recvonly video (H.265) + recvonly audio (Opus): what a browser with
    /// HEVC support offers.
    H265Opus,
    /// recvonly video with VP8 only, no audio.
    Vp8Only,
    /// A data channel and no media.
    DataChannelOnly,
}

/// How the client is set up.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub offer: Offer,
    /// Keep every frame's bytes (memory: ~40 MB for 50 viewers × 20 s at
    /// 0.3 Mbit/s; turn off for many viewers).
    pub keep_data: bool,
    /// Once connected, drop every n-th incoming RTP packet of video size
    /// (over 400 bytes) before str0m sees it, as a lossy network would; 0
    /// drops nothing. str0m then asks for them again (NACK, RFC 4585 §6.2.1).
    pub drop_video_every: u64,
    /// Deliver every n-th such packet twice; 0: never.
    pub duplicate_video_every: u64,
    /// Hold every n-th such packet back and deliver it after the next
    /// datagram (a swap); 0: never.
    pub reorder_video_every: u64,
    /// Offer `a=setup:passive` instead of `actpass` (RFC 5763 §5): the
    /// server must then be the DTLS client, and sends with the client's
    /// SRTP keys (RFC 5764 §4.2).
    pub dtls_passive: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            offer: Offer::H264Opus,
            keep_data: true,
            drop_video_every: 0,
            duplicate_video_every: 0,
            reorder_video_every: 0,
            dtls_passive: false,
        }
    }
}

/// A connected WHEP viewer.
pub struct WhepClient {
    http: SocketAddr,
    pub response: HttpResponse,
    location: String,
    state: Arc<Mutex<Received>>,
    stalled: Arc<AtomicBool>,
    pli: Arc<AtomicBool>,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
    started: Instant,
}

/// One DTLS certificate for every test client (making one costs tens of ms).
fn client_cert() -> DtlsCert {
    static CERT: OnceLock<DtlsCert> = OnceLock::new();
    CERT.get_or_init(|| {
        str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate()
            .expect("a DTLS certificate")
    })
    .clone()
}

/// A peer with its offer, not posted yet.
pub struct Offerer {
    pub rtc: Rtc,
    pub pending: SdpPendingOffer,
    pub sdp: String,
    pub socket: UdpSocket,
    pub local: SocketAddr,
    pub video_mid: Option<Mid>,
    pub audio_mid: Option<Mid>,
}

impl Offerer {
    pub async fn new(offer: Offer) -> Offerer {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let local = socket.local_addr().unwrap();
        let mut config = RtcConfig::new()
            .set_dtls_cert(client_cert())
            .set_stats_interval(Some(Duration::from_millis(500)))
            .clear_codecs();
        config = match offer {
            Offer::H264Opus => config.enable_h264(true).enable_opus(true, false),
            Offer::H265Opus => config.enable_h265(true).enable_opus(true, false),
            Offer::Vp8Only => config.enable_vp8(true),
            Offer::DataChannelOnly => config,
        };
        let mut rtc = config.build(Instant::now());
        rtc.add_local_candidate(Candidate::host(local, "udp").unwrap());
        let mut api = rtc.sdp_api();
        let (mut video_mid, mut audio_mid) = (None, None);
        match offer {
            Offer::H264Opus | Offer::H265Opus => {
                video_mid =
                    Some(api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None));
                audio_mid =
                    Some(api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None));
            }
            Offer::Vp8Only => {
                video_mid =
                    Some(api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None));
            }
            Offer::DataChannelOnly => {
                api.add_channel("data".into());
            }
        }
        let (sdp, pending) = api.apply().expect("an offer");
        Offerer {
            rtc,
            pending,
            sdp: sdp.to_sdp_string(),
            socket,
            local,
            video_mid,
            audio_mid,
        }
    }
}

/// POSTs `sdp` to `/{path}/whep` with extra headers.
pub async fn post_offer(
    http: SocketAddr,
    path: &str,
    sdp: &str,
    headers: &[(&str, &str)],
) -> HttpResponse {
    let mut h = vec![("Content-Type", "application/sdp")];
    h.extend_from_slice(headers);
    http_with("POST", http, &format!("/{path}/whep"), &h, sdp.as_bytes()).await
}

impl WhepClient {
    /// Offers H.264 + Opus, expects 201 and starts receiving; an error is
    /// the status and body of the refusal.
    pub async fn connect(http: SocketAddr, path: &str) -> Result<WhepClient, (u16, String)> {
        Self::connect_with(http, path, Options::default()).await
    }

    pub async fn connect_with(
        http: SocketAddr,
        path: &str,
        options: Options,
    ) -> Result<WhepClient, (u16, String)> {
        let offerer = Offerer::new(options.offer).await;
        let started = Instant::now();
        let sdp = if options.dtls_passive {
            offerer.sdp.replace("a=setup:actpass", "a=setup:passive")
        } else {
            offerer.sdp.clone()
        };
        let response = post_offer(http, path, &sdp, &[]).await;
        if response.status != 201 {
            return Err((response.status, response.text()));
        }
        let Offerer {
            mut rtc,
            pending,
            socket,
            local,
            video_mid,
            audio_mid,
            ..
        } = offerer;
        let answer = SdpAnswer::from_sdp_string(&response.text())
            .map_err(|e| (response.status, format!("unparsable answer: {e}")))?;
        rtc.sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| (response.status, format!("answer not accepted: {e}")))?;
        let location = response
            .header("location")
            .ok_or((response.status, "no Location".to_string()))?
            .to_string();
        let state = Arc::new(Mutex::new(Received::default()));
        let stalled = Arc::new(AtomicBool::new(false));
        let pli = Arc::new(AtomicBool::new(false));
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(
            rtc,
            socket,
            local,
            Mids {
                video: video_mid,
                audio: audio_mid,
            },
            Arc::clone(&state),
            Arc::clone(&stalled),
            Arc::clone(&pli),
            stop.clone(),
            started,
            options,
        ));
        Ok(WhepClient {
            http,
            response,
            location,
            state,
            stalled,
            pli,
            stop,
            task: Some(task),
            started,
        })
    }

    /// The session resource (`/{path}/whep/{id}`).
    pub fn location(&self) -> &str {
        &self.location
    }

    pub fn etag(&self) -> Option<&str> {
        self.response.header("etag")
    }

    /// What has arrived so far.
    pub fn received(&self) -> Received {
        self.state.lock().unwrap().clone()
    }

    pub fn video_count(&self) -> usize {
        self.state.lock().unwrap().video.len()
    }

    pub fn audio_count(&self) -> usize {
        self.state.lock().unwrap().audio.len()
    }

    /// Lets the client receive for `d`, then returns what it has.
    pub async fn run_for(&self, d: Duration) -> Received {
        tokio::time::sleep(d).await;
        self.received()
    }

    /// Waits until ICE + DTLS are up and a first video frame arrived.
    pub async fn wait_video(&self, limit: Duration) -> Result<(), Received> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            {
                let r = self.state.lock().unwrap();
                if !r.video.is_empty() {
                    return Ok(());
                }
                if r.ended.is_some() {
                    return Err(r.clone());
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(self.received())
    }

    /// Stops reading the socket and driving the peer (a frozen viewer: its
    /// socket buffer fills and the kernel drops what the server sends).
    pub fn stall(&self) {
        self.stalled.store(true, Ordering::Relaxed);
    }

    /// Sends a picture loss indication (RTCP PLI, RFC 4585 §6.3.1) for the
    /// video track, as a browser does when it lost a reference picture.
    pub fn request_keyframe(&self) {
        self.pli.store(true, Ordering::Relaxed);
    }

    /// `DELETE` on the session resource; returns the status.
    pub async fn delete(&self) -> u16 {
        http_with("DELETE", self.http, &self.location, &[], b"")
            .await
            .status
    }

    /// `PATCH` on the session resource.
    pub async fn patch(&self, content_type: &str, body: &str) -> HttpResponse {
        http_with(
            "PATCH",
            self.http,
            &self.location,
            &[("Content-Type", content_type)],
            body.as_bytes(),
        )
        .await
    }

    /// Ends the client loop (no DELETE) and returns what it received.
    pub async fn close(mut self) -> Received {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        self.received()
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

impl Drop for WhepClient {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

struct Mids {
    video: Option<Mid>,
    audio: Option<Mid>,
}

#[allow(clippy::too_many_arguments)]
async fn run(
    mut rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    mids: Mids,
    state: Arc<Mutex<Received>>,
    stalled: Arc<AtomicBool>,
    pli: Arc<AtomicBool>,
    stop: CancellationToken,
    started: Instant,
    options: Options,
) {
    let keep_data = options.keep_data;
    let mut video_rtp = 0u64;
    // A datagram held back to be delivered after the next one.
    let mut held: Option<Vec<u8>> = None;
    let mut buf = vec![0u8; 2048];
    let end = |state: &Arc<Mutex<Received>>, why: String| {
        state.lock().unwrap().ended = Some(why);
    };
    loop {
        // Let str0m do everything it can now.
        let timeout = loop {
            match rtc.poll_output() {
                Ok(Output::Transmit(t)) => {
                    let _ = socket.try_send_to(&t.contents, t.destination);
                }
                Ok(Output::Timeout(at)) => break at,
                Ok(Output::Event(e)) => record(&mids, &state, e, started, keep_data),
                Err(e) => {
                    end(&state, format!("str0m error: {e}"));
                    return;
                }
            }
        };
        if !rtc.is_alive() {
            end(&state, "peer closed".into());
            return;
        }
        if pli.swap(false, Ordering::Relaxed) {
            let sent = mids
                .video
                .and_then(|mid| rtc.writer(mid))
                .map(|mut w| w.request_keyframe(None, KeyframeRequestKind::Pli));
            let event = match sent {
                Some(Ok(())) => "pli-sent".to_string(),
                other => format!("pli-failed:{other:?}"),
            };
            state.lock().unwrap().events.push(event);
            // str0m sends it on its next timeout, which is now.
            if let Err(e) = rtc.handle_input(Input::Timeout(Instant::now())) {
                end(&state, format!("str0m input error: {e}"));
                return;
            }
            continue;
        }
        if stalled.load(Ordering::Relaxed) {
            stop.cancelled().await;
            end(&state, "stopped while stalled".into());
            return;
        }
        let wait = timeout.saturating_duration_since(Instant::now());
        let input = tokio::select! {
            _ = stop.cancelled() => {
                end(&state, "stopped".into());
                return;
            }
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, source)) => Some((n, source)),
                Err(e) => {
                    end(&state, format!("socket: {e}"));
                    return;
                }
            },
            _ = tokio::time::sleep(wait) => None,
        };
        let result = match input {
            Some((n, source)) => {
                // What a bad network makes of this datagram: gone, twice,
                // or late (after the next one).
                let mut deliver: Vec<Vec<u8>> = vec![buf[..n].to_vec()];
                {
                    let mut s = state.lock().unwrap();
                    s.datagrams += 1;
                    if s.connected_at.is_some() && n > 400 && is_rtp(&buf[..n]) {
                        let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
                        match s.video_bytes_by_ssrc.iter_mut().find(|(k, _)| *k == ssrc) {
                            Some((_, bytes)) => *bytes += n as u64,
                            None => s.video_bytes_by_ssrc.push((ssrc, n as u64)),
                        }
                    }
                    let impaired = options.drop_video_every > 0
                        || options.duplicate_video_every > 0
                        || options.reorder_video_every > 0;
                    if impaired && s.connected_at.is_some() && n > 400 && is_rtp(&buf[..n]) {
                        video_rtp += 1;
                        let every = |k: u64| k > 0 && video_rtp.is_multiple_of(k);
                        if every(options.drop_video_every) {
                            s.dropped += 1;
                            continue;
                        }
                        if every(options.duplicate_video_every) {
                            s.duplicated += 1;
                            deliver.push(buf[..n].to_vec());
                        }
                        if every(options.reorder_video_every) && held.is_none() {
                            s.reordered += 1;
                            held = deliver.pop();
                            deliver.clear();
                        }
                    }
                }
                if !deliver.is_empty()
                    && let Some(late) = held.take()
                {
                    deliver.push(late);
                }
                let mut result = Ok(());
                for datagram in &deliver {
                    let Ok(contents) = datagram.as_slice().try_into() else {
                        continue;
                    };
                    result = rtc.handle_input(Input::Receive(
                        Instant::now(),
                        Receive {
                            proto: Protocol::Udp,
                            source,
                            destination: local,
                            contents,
                        },
                    ));
                    if result.is_err() {
                        break;
                    }
                }
                result
            }
            None => rtc.handle_input(Input::Timeout(Instant::now())),
        };
        if let Err(e) = result {
            end(&state, format!("str0m input error: {e}"));
            return;
        }
    }
}

fn record(mids: &Mids, state: &Mutex<Received>, e: Event, started: Instant, keep_data: bool) {
    let at = started.elapsed();
    let mut s = state.lock().unwrap();
    match e {
        Event::Connected => {
            s.connected_at = Some(at);
            s.events.push("connected".into());
        }
        Event::IceConnectionStateChange(c) => s.events.push(format!("ice:{c:?}")),
        Event::Closed => s.events.push("closed".into()),
        Event::MediaData(m) => {
            let spec = m.params.spec();
            if Some(m.mid) == mids.video || spec.codec.is_video() {
                let nal_types = match spec.codec {
                    Codec::H264 => nal_types(&m.data),
                    Codec::H265 => h265_nal_types(&m.data),
                    _ => Vec::new(),
                };
                s.first_video_at.get_or_insert(at);
                s.video.push(VideoFrame {
                    time: m.time.rebase(str0m::media::Frequency::NINETY_KHZ).numer(),
                    codec: spec.codec,
                    len: m.data.len(),
                    data: keep_data.then(|| Arc::clone(&m.data)),
                    nal_types,
                    contiguous: m.contiguous,
                    at,
                });
            } else if Some(m.mid) == mids.audio || spec.codec.is_audio() {
                s.audio.push(AudioPacket {
                    codec: spec.codec,
                    time: m.time.numer(),
                    rate: m.time.frequency().get(),
                    len: m.data.len(),
                    data: keep_data.then(|| Arc::clone(&m.data)),
                    at,
                });
            }
        }
        Event::KeyframeRequest(_) => s.events.push("keyframe-request".into()),
        Event::MediaIngressStats(m) if Some(m.mid) == mids.video => {
            s.video_nacks = s.video_nacks.max(m.nacks);
        }
        _ => {}
    }
}

/// An RTP (not RTCP, RFC 5761 §4) packet: version 2, and a payload type
/// outside RTCP's 200–206 range (72–78 with the marker bit taken off).
fn is_rtp(datagram: &[u8]) -> bool {
    datagram.len() > 12 && datagram[0] >> 6 == 2 && !(72..=78).contains(&(datagram[1] & 0x7f))
}

/// NAL unit types of an Annex B access unit, in order.
pub fn nal_types(annexb: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 3 < annexb.len() {
        if annexb[i] == 0 && annexb[i + 1] == 0 && annexb[i + 2] == 1 {
            out.push(annexb[i + 3] & 0x1f);
            i += 3;
        } else {
            i += 1;
        }
    }
    out
}

/// NAL unit types of an Annex B H.265 access unit, in order (RFC 7798
/// §1.1.4: the type is bits 1..7 of the first header byte).
pub fn h265_nal_types(annexb: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 3 < annexb.len() {
        if annexb[i] == 0 && annexb[i + 1] == 0 && annexb[i + 2] == 1 {
            out.push((annexb[i + 3] >> 1) & 0x3f);
            i += 3;
        } else {
            i += 1;
        }
    }
    out
}

/// Decodes concatenated Annex B access units with ffprobe (`format` is
/// `h264` or `hevc`); returns the pictures decoded and the decoder's errors.
pub async fn decode_annexb(format: &str, units: &[Arc<[u8]>]) -> (u64, Vec<String>) {
    let file = std::env::temp_dir().join(format!(
        "mediarelay-whep-{}-{}.{format}",
        std::process::id(),
        units.len()
    ));
    let all: Vec<u8> = units.iter().flat_map(|u| u.iter().copied()).collect();
    std::fs::write(&file, all).unwrap();
    let (ok, out, err) = super::run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-f",
            format,
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "csv=p=0",
            file.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    )
    .await;
    let _ = std::fs::remove_file(&file);
    assert!(ok, "ffprobe failed: {err}");
    let frames = out.trim().parse().unwrap_or(0);
    (frames, err.lines().map(str::to_string).collect())
}

/// Decodes Opus packets with FFmpeg; returns the RMS level of the first
/// channel in dBFS (silence is -inf) and the number of samples decoded.
pub fn opus_level_dbfs(packets: &[Arc<[u8]>]) -> (f64, usize) {
    use ffmpeg_next as ff;
    let codec = ff::decoder::find(ff::codec::Id::OPUS).expect("an Opus decoder");
    let mut ctx = ff::codec::Context::new_with_codec(codec);
    // SAFETY: plain field writes on a context not opened yet.
    unsafe {
        let p = ctx.as_mut_ptr();
        (*p).sample_rate = 48_000;
        ff::ffi::av_channel_layout_default(&mut (*p).ch_layout, 2);
    }
    let mut dec = ctx.decoder().audio().expect("open the Opus decoder");
    let mut frame = ff::frame::Audio::empty();
    let (mut sum, mut n) = (0f64, 0usize);
    for p in packets {
        dec.send_packet(&ff::Packet::copy(p))
            .expect("an Opus packet");
        while dec.receive_frame(&mut frame).is_ok() {
            let samples = frame.samples();
            let plane: &[f32] = &frame.plane::<f32>(0)[..samples];
            sum += plane.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>();
            n += samples;
        }
    }
    (10.0 * (sum / n.max(1) as f64).log10(), n)
}
