//! Test support: the server in-process on ephemeral ports, real ffmpeg and
//! ffprobe processes, a small HTTP client, and an RTMP client built on the
//! project's own sans-IO client session.
#![allow(dead_code)]

pub mod camera;
pub mod whep;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use mediarelay::app::App;
use mediarelay::config::{Config, Overrides};
use mediarelay::protocol::rtmp::{ClientEvent, ClientSession};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// The checkout the tests run from. Read at run time (cargo and nextest set
/// it) before the compile-time value: a target directory shared between
/// clones at different paths can hand one clone test binaries built in the
/// other.
pub fn repo_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

pub fn fixture(name: &str) -> PathBuf {
    repo_dir().join("fixtures/media").join(name)
}

/// Config for tests: every listener on an ephemeral loopback port, plus
/// whatever `toml` sets. A listener key that `toml` sets itself (e.g.
/// `webrtc_listen = ""` to turn UDP off) is left as the test wrote it.
pub fn config(toml: &str) -> Config {
    let path = std::env::temp_dir().join(format!(
        "mediarelay-test-{}-{}.toml",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::write(&path, toml).unwrap();
    let set_by_test = |key: &str| {
        toml.lines().any(|l| {
            l.trim_start().starts_with(&format!("{key} "))
                || l.trim_start().starts_with(&format!("{key}="))
        })
    };
    let overrides = Overrides {
        values: [
            "rtmp_listen",
            "http_listen",
            "api_listen",
            "webrtc_listen",
            "webrtc_tcp_listen",
            "rtsp_listen",
            "rtsps_listen",
            "rtsp_udp_rtp_listen",
            "rtsp_udp_rtcp_listen",
        ]
        .into_iter()
        .filter(|k| !set_by_test(k))
        .map(|k| (k, "127.0.0.1:0".into()))
        .collect(),
    };
    let mut c = mediarelay::config::load(Some(&path), Vec::new(), &overrides).unwrap();
    let _ = std::fs::remove_file(path);
    // Tests open many connections and poll the API fast from one address:
    // rate limits are off unless the test sets [limits] itself.
    if !toml.contains("[limits]") {
        c.limits.api_rate = 0;
        c.limits.webrtc_post_rate = 0;
        c.limits.connection_rate = 0;
    }
    c
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "mediarelay=info".into()),
        )
        .with_test_writer()
        .try_init();
}

pub async fn start(toml: &str) -> App {
    init_logs();
    App::start(config(toml)).await.unwrap()
}

pub fn rtmp_url(app: &App, path: &str) -> String {
    format!("rtmp://{}/{path}", app.rtmp_addr)
}

pub fn hls_url(app: &App, path: &str) -> String {
    format!("http://{}/{path}/index.m3u8", app.http_addr)
}

/// A child process that is killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

/// `ffmpeg -re [-stream_loop -1] -i FILE -c copy -f flv URL`, as OBS-like
/// publishers are tested.
pub fn push(file: &str, url: &str, looped: bool) -> Proc {
    let mut input = vec!["-re"];
    if looped {
        input.extend(["-stream_loop", "-1"]);
    }
    push_with(file, url, &input)
}

/// ffmpeg with these input options (e.g. `-readrate 4`, `-stream_loop 2`).
pub fn push_with(file: &str, url: &str, input_options: &[&str]) -> Proc {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error"]);
    cmd.args(input_options);
    cmd.arg("-i")
        .arg(fixture(file))
        .args(["-c", "copy", "-f", "flv"])
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    Proc(cmd.spawn().expect("ffmpeg must be installed (see README)"))
}

/// Runs a command to completion with a time limit; returns (status ok, stdout, stderr).
pub async fn run(program: &str, args: &[&str], limit: Duration) -> (bool, String, String) {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{program} must be installed (see README): {e}"));
    match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(Ok(out)) => (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ),
        Ok(Err(e)) => panic!("{program}: {e}"),
        Err(_) => panic!("{program} {args:?} did not finish within {limit:?}"),
    }
}

/// ffprobe as JSON.
pub async fn ffprobe(url: &str, extra: &[&str]) -> Value {
    let mut args = vec!["-v", "error", "-of", "json"];
    args.extend_from_slice(extra);
    args.push(url);
    let (ok, out, err) = run("ffprobe", &args, Duration::from_secs(60)).await;
    assert!(ok, "ffprobe {url} failed: {err}");
    serde_json::from_str(&out).unwrap()
}

/// Streams of `url` by codec type.
pub async fn probe_streams(url: &str) -> Vec<Value> {
    let v = ffprobe(url, &["-show_streams"]).await;
    v["streams"].as_array().cloned().unwrap_or_default()
}

/// ffprobe's streams as sorted `codec/size` (video) or `codec/rate`
/// (audio) names.
pub fn codec_names(streams: &[Value]) -> Vec<String> {
    let mut c: Vec<String> = streams
        .iter()
        .map(|s| {
            let extra = match s["codec_type"].as_str() {
                Some("audio") => format!("/{}", s["sample_rate"].as_str().unwrap_or("")),
                _ => format!("/{}x{}", s["width"], s["height"]),
            };
            format!("{}{}", s["codec_name"].as_str().unwrap_or(""), extra)
        })
        .collect();
    c.sort();
    c
}

/// Decodes `secs` of `url` with ffmpeg; returns the error lines that are
/// decode errors (not the muxer's complaints about millisecond timestamps,
/// which nginx-rtmp's output triggers just the same).
pub async fn decode_errors(url: &str, secs: u32) -> Vec<String> {
    let t = secs.to_string();
    let (ok, _, err) = run(
        "ffmpeg",
        &["-v", "error", "-i", url, "-t", &t, "-f", "null", "-"],
        Duration::from_secs(60),
    )
    .await;
    assert!(ok, "ffmpeg could not read {url}: {err}");
    err.lines()
        .filter(|l| !l.contains("non monotonically increasing dts"))
        .map(str::to_string)
        .collect()
}

/// A minimal HTTP/1.1 response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }
}

/// One HTTP request on a fresh connection (`Connection: close`).
pub async fn http(
    method: &str,
    addr: std::net::SocketAddr,
    target: &str,
    body: &[u8],
) -> HttpResponse {
    http_with(method, addr, target, &[], body).await
}

pub async fn http_with(
    method: &str,
    addr: std::net::SocketAddr,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut raw))
        .await
        .expect("HTTP response within 60 s")
        .unwrap();
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> HttpResponse {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("HTTP header end");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..end]).unwrap().trim(), 16)
                .unwrap();
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[end + 2..end + 2 + size]);
            rest = &rest[end + 2 + size + 2..];
        }
        body = out;
    }
    HttpResponse {
        status,
        headers,
        body: Bytes::from(body),
    }
}

/// Waits until `f` returns Some, polling every 50 ms, at most `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the path is published (stream started).
pub async fn wait_published(app: &App, path: &str) {
    eventually(
        Duration::from_secs(15),
        &format!("{path} to be published"),
        || async { app.hub.stream(path).map(|_| ()) },
    )
    .await
}

/// An RTMP client connection driven by the project's sans-IO client.
pub struct RtmpClient {
    pub socket: TcpStream,
    pub session: ClientSession,
    buf: Vec<u8>,
}

impl RtmpClient {
    pub async fn connect(addr: std::net::SocketAddr, app: &str) -> RtmpClient {
        let socket = TcpStream::connect(addr).await.unwrap();
        Self::connect_on(socket, addr, app).await
    }

    /// Like `connect`, with a tiny receive buffer (for a reader that stalls).
    pub async fn connect_small_buffer(addr: std::net::SocketAddr, app: &str) -> RtmpClient {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let socket = socket.connect(addr).await.unwrap();
        Self::connect_on(socket, addr, app).await
    }

    async fn connect_on(socket: TcpStream, addr: std::net::SocketAddr, app: &str) -> RtmpClient {
        let mut c = RtmpClient {
            socket,
            session: ClientSession::new(),
            buf: vec![0; 65536],
        };
        c.session.connect(app, &format!("rtmp://{addr}/{app}"));
        c.flush().await;
        c.wait_for(|e| matches!(e, ClientEvent::Connected)).await;
        c
    }

    pub async fn flush(&mut self) {
        while let Some(b) = self.session.take_output() {
            self.socket.write_all(&b).await.unwrap();
        }
    }

    /// Reads until an event matching `pred` arrives; returns it.
    pub async fn wait_for(&mut self, pred: impl Fn(&ClientEvent) -> bool) -> ClientEvent {
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                while let Some(e) = self.session.poll_event() {
                    if pred(&e) {
                        return e;
                    }
                }
                self.read().await;
            }
        })
        .await
        .expect("RTMP event in time")
    }

    /// Reads once; returns false when the server closed the connection.
    pub async fn read(&mut self) -> bool {
        let n = self.socket.read(&mut self.buf).await.unwrap_or(0);
        if n == 0 {
            return false;
        }
        self.session.handle_input(&self.buf[..n]).unwrap();
        self.flush().await;
        true
    }

    /// Reads events for `d`; returns them and whether the connection is
    /// still open.
    pub async fn events_for(&mut self, d: Duration) -> (Vec<ClientEvent>, bool) {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + d;
        let mut open = true;
        while open {
            match tokio::time::timeout_at(deadline, self.read()).await {
                Ok(still_open) => open = still_open,
                Err(_) => break,
            }
            while let Some(e) = self.session.poll_event() {
                out.push(e);
            }
        }
        (out, open)
    }

    /// Timestamps of the video messages received over `d`, and whether the
    /// connection is still open.
    pub async fn video_for(&mut self, d: Duration) -> (Vec<u32>, bool) {
        let (events, open) = self.events_for(d).await;
        let video = events
            .into_iter()
            .filter_map(|e| match e {
                ClientEvent::Video { timestamp, .. } => Some(timestamp),
                _ => None,
            })
            .collect();
        (video, open)
    }

    pub async fn publish(
        addr: std::net::SocketAddr,
        app: &str,
        key: &str,
    ) -> Result<RtmpClient, ClientEvent> {
        let mut c = RtmpClient::connect(addr, app).await;
        c.session.create_stream();
        c.flush().await;
        c.wait_for(|e| matches!(e, ClientEvent::StreamCreated { .. }))
            .await;
        c.session.publish(key);
        c.flush().await;
        match c
            .wait_for(|e| {
                matches!(
                    e,
                    ClientEvent::PublishStarted
                        | ClientEvent::Status { .. }
                        | ClientEvent::Error { .. }
                )
            })
            .await
        {
            ClientEvent::PublishStarted => Ok(c),
            other => Err(other),
        }
    }

    pub async fn play(
        addr: std::net::SocketAddr,
        app: &str,
        key: &str,
    ) -> Result<RtmpClient, ClientEvent> {
        let c = RtmpClient::connect(addr, app).await;
        c.start_play(key).await
    }

    pub async fn start_play(self, key: &str) -> Result<RtmpClient, ClientEvent> {
        let mut c = self;
        c.session.create_stream();
        c.flush().await;
        c.wait_for(|e| matches!(e, ClientEvent::StreamCreated { .. }))
            .await;
        c.session.play(key);
        c.flush().await;
        match c
            .wait_for(|e| {
                matches!(e, ClientEvent::PlayStarted)
                    || matches!(e, ClientEvent::Status { level, .. } if level == "error")
                    || matches!(e, ClientEvent::Error { .. })
            })
            .await
        {
            ClientEvent::PlayStarted => Ok(c),
            other => Err(other),
        }
    }

    /// Sends the tags of an FLV fixture (timestamps shifted by `shift_ms`) in
    /// real time (`realtime`) or as fast as possible.
    pub async fn send_flv(&mut self, file: &str, shift_ms: u32, realtime: bool) -> u32 {
        use mediarelay::container::flv_file::{FlvFile, TAG_AUDIO, TAG_VIDEO};
        let data = Bytes::from(std::fs::read(fixture(file)).unwrap());
        let start = tokio::time::Instant::now();
        let mut last = 0;
        for tag in FlvFile::new(data).unwrap() {
            let tag = tag.unwrap();
            if realtime {
                tokio::time::sleep_until(start + Duration::from_millis(u64::from(tag.timestamp)))
                    .await;
            }
            let ts = tag.timestamp.wrapping_add(shift_ms);
            match tag.tag_type {
                TAG_VIDEO => self.session.send_video(ts, &tag.body),
                TAG_AUDIO => self.session.send_audio(ts, &tag.body),
                _ => {}
            }
            last = tag.timestamp;
            self.flush().await;
        }
        last
    }
}
