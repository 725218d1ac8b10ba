//! A real RTSP camera for tests: GStreamer's RTSP server, run from
//! `tests/camera/camera.py` with the system Python.
//!
//! Mounts (all H.264 320x240 at 15 fps, one keyframe a second, shared by
//! every client; RTP over TCP or UDP):
//! `h264_pcmu`, `h264_pcma`, `h264_aac` (48 kHz stereo), `h264_opus`,
//! `h265_aac`, `video_only`, `secure` (H.264 + PCMU, Digest auth with
//! [`USER`]/[`PASSWORD`]) and `inband` (no `sprop-parameter-sets` in the SDP).
//!
//! ```ignore
//! let cam = common::camera::Camera::start().await;
//! let url = cam.url("h264_aac");
//! ```

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStdin, Command};

/// Credentials of the `secure` mount.
pub const USER: &str = "admin";
pub const PASSWORD: &str = "secret";

/// Every mount the camera serves.
pub const MOUNTS: &[&str] = &[
    "h264_pcmu",
    "h264_pcma",
    "h264_aac",
    "h264_opus",
    "h265_aac",
    "video_only",
    "h264_bframes",
    "tcp_only",
    "secure",
    "inband",
];

const PYTHON: &str = "/usr/bin/python3";
const READY_LIMIT: Duration = Duration::from_secs(15);
const STOP_LIMIT: Duration = Duration::from_secs(10);
const INSTALL_HINT: &str = "the test camera needs GStreamer's RTSP server for the system Python: \
     apt-get install python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good \
     gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav \
     (scripts/test.sh does)";

/// A running camera process; killed when dropped.
pub struct Camera {
    pub port: u16,
    child: Child,
    /// Held open: the camera exits when this pipe closes (the test died).
    _stdin: ChildStdin,
    stderr: Arc<Mutex<String>>,
}

impl Camera {
    /// The camera server's process id (to freeze it with SIGSTOP: a camera
    /// unplugged from the network sends nothing and no RST).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Starts a camera on a free loopback port (the camera binds port 0 and
    /// reports the one it got).
    pub async fn start() -> Camera {
        Self::spawn(0).await
    }

    /// Starts a camera on `port` (e.g. the port of a stopped camera, to
    /// simulate a reboot). Retries while the port is still taken, within the
    /// same time limit.
    pub async fn start_on(port: u16) -> Camera {
        assert_ne!(port, 0, "start_on needs a port; use start()");
        Self::spawn(port).await
    }

    /// `rtsp://127.0.0.1:PORT/mount`.
    pub fn url(&self, mount: &str) -> String {
        format!(
            "rtsp://127.0.0.1:{}/{}",
            self.port,
            mount.trim_start_matches('/')
        )
    }

    /// `rtsp://user:pass@127.0.0.1:PORT/mount` (user and pass as given, not
    /// escaped).
    pub fn url_with_creds(&self, mount: &str, user: &str, pass: &str) -> String {
        format!(
            "rtsp://{user}:{pass}@127.0.0.1:{}/{}",
            self.port,
            mount.trim_start_matches('/')
        )
    }

    /// What the camera wrote on stderr so far (GStreamer warnings, errors).
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Stops the camera with SIGTERM and waits for it to exit (SIGKILL if it
    /// does not within 10 s). Its clients see their connections close.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        match tokio::time::timeout(STOP_LIMIT, self.child.wait()).await {
            Ok(Ok(status)) => assert!(
                status.success(),
                "camera exited with {status}: {}",
                self.stderr()
            ),
            Ok(Err(e)) => panic!("waiting for the camera: {e}"),
            Err(_) => {
                let _ = self.child.kill().await;
                panic!(
                    "camera did not stop within {STOP_LIMIT:?} of SIGTERM: {}",
                    self.stderr()
                );
            }
        }
    }

    async fn spawn(port: u16) -> Camera {
        let deadline = tokio::time::Instant::now() + READY_LIMIT;
        loop {
            match Self::try_spawn(port, deadline).await {
                Ok(cam) => return cam,
                // The previous camera on this port may still be going away.
                Err(Failure::PortBusy(_)) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(Failure::PortBusy(err)) => {
                    panic!("camera could not listen on port {port} within {READY_LIMIT:?}: {err}")
                }
                Err(Failure::Other(msg)) => panic!("{msg}"),
            }
        }
    }

    async fn try_spawn(port: u16, deadline: tokio::time::Instant) -> Result<Camera, Failure> {
        let python = if std::path::Path::new(PYTHON).exists() {
            PYTHON
        } else {
            "python3"
        };
        let mut child = Command::new(python)
            .arg(script())
            .args(["--port", &port.to_string()])
            .args(["--user", USER, "--password", PASSWORD, "--exit-with-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Failure::Other(format!("cannot run {python}: {e}; {INSTALL_HINT}")))?;
        let stdin = child.stdin.take().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let stderr_done = collect(child.stderr.take().unwrap(), stderr.clone());
        let mut stdout = BufReader::new(child.stdout.take().unwrap());

        let mut line = String::new();
        let ready = tokio::time::timeout_at(deadline, stdout.read_line(&mut line)).await;
        let bound = match ready {
            Ok(Ok(n)) if n > 0 => line
                .trim()
                .strip_prefix("READY ")
                .and_then(|p| p.parse::<u16>().ok()),
            _ => None,
        };
        let Some(bound) = bound else {
            let timed_out = ready.is_err();
            let _ = child.kill().await;
            // The process is gone: its stderr ends soon.
            let _ = tokio::time::timeout(Duration::from_secs(2), stderr_done).await;
            let err = stderr.lock().unwrap().clone();
            if err.contains("cannot listen") {
                return Err(Failure::PortBusy(err));
            }
            let what = if timed_out {
                format!("camera not ready within {READY_LIMIT:?}")
            } else {
                format!("camera exited before READY (stdout {line:?})")
            };
            return Err(Failure::Other(format!(
                "{what}; {INSTALL_HINT}\ncamera stderr:\n{err}"
            )));
        };
        // Keep reading stdout so the pipe never fills.
        tokio::spawn(async move {
            let mut sink = Vec::new();
            let _ = stdout.read_to_end(&mut sink).await;
        });
        Ok(Camera {
            port: bound,
            child,
            _stdin: stdin,
            stderr,
        })
    }
}

enum Failure {
    PortBusy(String),
    Other(String),
}

fn script() -> PathBuf {
    super::repo_dir().join("tests/camera/camera.py")
}

/// Reads `from` into `into` (its last 64 KiB) until EOF, in a task.
fn collect(
    from: impl AsyncRead + Unpin + Send + 'static,
    into: Arc<Mutex<String>>,
) -> tokio::task::JoinHandle<()> {
    const KEEP: usize = 64 * 1024;
    tokio::spawn(async move {
        let mut from = from;
        let mut buf = [0u8; 4096];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let mut s = into.lock().unwrap();
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                    if s.len() > 2 * KEEP {
                        let mut cut = s.len() - KEEP;
                        while !s.is_char_boundary(cut) {
                            cut += 1;
                        }
                        s.drain(..cut);
                    }
                }
            }
        }
    })
}

/// An RTSP `DESCRIBE` of `url` (`rtsp://host:port/path`, no credentials):
/// the status code, the headers and the body (the SDP on 200).
pub async fn describe(url: &str) -> (u16, Vec<(String, String)>, String) {
    let rest = url.strip_prefix("rtsp://").expect("an rtsp:// URL");
    let host = rest.split('/').next().unwrap();
    let mut s = TcpStream::connect(host).await.unwrap();
    let req = format!("DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                if raw.len() >= end + 4 + len {
                    break;
                }
            }
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "camera closed the connection during DESCRIBE");
            raw.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("DESCRIBE answered within 15 s");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}
