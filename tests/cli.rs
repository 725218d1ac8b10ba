//! The `mediarelay` binary itself: flags, environment, config errors, signals.

mod common;

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_mediarelay");

async fn output(cmd: &mut Command) -> (i32, String) {
    let out = tokio::time::timeout(Duration::from_secs(20), cmd.output())
        .await
        .expect("exits in time")
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test]
async fn runs_with_flags_answers_the_api_and_stops_on_sigterm() {
    let mut child = Command::new(BIN)
        .args([
            "--rtmp-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--api-listen",
            "127.0.0.1:0",
            "--webrtc-listen",
            "127.0.0.1:0",
            "--webrtc-tcp-listen",
            "",
            "--rtsp-listen",
            "",
        ])
        .env("MEDIARELAY_HLS_SEGMENT_COUNT", "5")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let api = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("a 'listening' log line");
            if let Some(rest) = line.split("api=").nth(1) {
                return rest.split_whitespace().next().unwrap().to_string();
            }
        }
    })
    .await
    .unwrap();
    let mut s = tokio::net::TcpStream::connect(&api).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");

    let pid = child.id().unwrap().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn a_bad_config_names_the_file_the_key_and_the_reason() {
    let path = std::env::temp_dir().join(format!("mediarelay-cli-{}.toml", std::process::id()));
    std::fs::write(&path, "[hls]\npart_duration = \"9s\"\n").unwrap();
    let (code, text) = output(Command::new(BIN).arg("--config").arg(&path)).await;
    let _ = std::fs::remove_file(&path);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains(path.to_str().unwrap()), "{text}");
    assert!(text.contains("hls.part_duration"), "{text}");
    assert!(text.contains("between 50ms and 5s"), "{text}");

    let (code, text) = output(Command::new(BIN).env("MEDIARELAY_RTMP_LISTEN", "1935")).await;
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("MEDIARELAY_RTMP_LISTEN") && text.contains("rtmp_listen"),
        "{text}"
    );

    let (code, text) = output(Command::new(BIN).args(["--http-listen", "nonsense"])).await;
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("--http-listen"), "{text}");

    let (code, text) = output(Command::new(BIN).arg("--config").arg("/nonexistent/x.toml")).await;
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("/nonexistent/x.toml") && text.contains("cannot read"),
        "{text}"
    );
}

#[tokio::test]
async fn a_listener_that_cannot_bind_is_reported() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, text) = output(Command::new(BIN).args([
        "--rtmp-listen",
        &addr,
        "--http-listen",
        "127.0.0.1:0",
        "--api-listen",
        "127.0.0.1:0",
        "--webrtc-listen",
        "127.0.0.1:0",
        "--webrtc-tcp-listen",
        "",
        "--rtsp-listen",
        "",
    ]))
    .await;
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("rtmp_listen") && text.contains(&addr),
        "{text}"
    );
}

/// Log lines of a running binary, collected in the background.
struct Logs(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl Logs {
    fn follow(out: tokio::process::ChildStdout) -> Logs {
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let l = std::sync::Arc::clone(&lines);
        tokio::spawn(async move {
            let mut r = BufReader::new(out).lines();
            while let Ok(Some(line)) = r.next_line().await {
                l.lock().unwrap().push(line);
            }
        });
        Logs(lines)
    }

    /// The address of listener `name` (`api`, `rtmp`, …) from the
    /// "listening" line.
    async fn listener(&self, name: &str) -> String {
        let key = format!("{name}=");
        let line = self.wait_for(&key).await;
        line.split(&key)
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap()
            .to_string()
    }

    /// Waits for a line containing `text`; returns it.
    async fn wait_for(&self, text: &str) -> String {
        for _ in 0..200 {
            if let Some(l) = self.0.lock().unwrap().iter().find(|l| l.contains(text)) {
                return l.clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "no log line with {text:?} in:\n{}",
            self.0.lock().unwrap().join("\n")
        );
    }
}

/// The binary with `--config path`, its stdout followed.
fn spawn_with_config(path: &std::path::Path) -> (tokio::process::Child, Logs) {
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let logs = Logs::follow(child.stdout.take().unwrap());
    (child, logs)
}

async fn get_json(addr: &str, target: &str) -> serde_json::Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).await.unwrap();
    let body = reply.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {reply}"))
}

/// The config file is reloaded when it changes and on SIGHUP; a broken file
/// leaves the running configuration alone, and a listener change waits for
/// a restart.
#[tokio::test]
async fn the_config_file_is_reloaded_on_change_and_on_sighup() {
    let path = std::env::temp_dir().join(format!("mediarelay-reload-{}.toml", std::process::id()));
    let base = "rtmp_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\napi_listen = \"127.0.0.1:0\"\nwebrtc_listen = \"127.0.0.1:0\"\nwebrtc_tcp_listen = \"\"\nrtsp_listen = \"\"\n";
    std::fs::write(&path, format!("{base}[hls]\nsegment_count = 7\n")).unwrap();
    let (mut child, logs) = spawn_with_config(&path);
    let api = logs.listener("api").await;
    assert_eq!(
        get_json(&api, "/v1/config").await["hls"]["segment_count"],
        7
    );

    // The file changes: picked up without a signal.
    std::fs::write(
        &path,
        format!("{base}[hls]\nsegment_count = 9\n[paths.\"live/*\"]\ntakeover = true\n"),
    )
    .unwrap();
    logs.wait_for("the configuration file changed").await;
    logs.wait_for("configuration changed").await;
    let c = get_json(&api, "/v1/config").await;
    assert_eq!(c["hls"]["segment_count"], 9);
    assert_eq!(c["paths"]["live/*"]["takeover"], true);

    let pid = child.id().unwrap().to_string();
    let hup = || async {
        let ok = Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .await
            .unwrap();
        assert!(ok.success());
    };
    // A broken file: logged, and the running configuration stays.
    std::fs::write(&path, format!("{base}[hls]\nsegment_count = 1\n")).unwrap();
    hup().await;
    let line = logs.wait_for("configuration not reloaded").await;
    assert!(line.contains("hls.segment_count"), "{line}");
    assert_eq!(
        get_json(&api, "/v1/config").await["hls"]["segment_count"],
        9
    );

    // A listener change waits for a restart; the rest applies.
    let moved = base.replace(
        "rtmp_listen = \"127.0.0.1:0\"",
        "rtmp_listen = \"127.0.0.1:1\"",
    );
    std::fs::write(&path, format!("{moved}[hls]\nsegment_count = 8\n")).unwrap();
    hup().await;
    logs.wait_for("rtmp_listen changed").await;
    let c = get_json(&api, "/v1/config").await;
    assert_eq!(c["hls"]["segment_count"], 8);
    assert_eq!(c["rtmp_listen"], "127.0.0.1:0");
    assert!(c["paths"].as_object().unwrap().is_empty(), "{c}");
    // Still alive and well.
    assert_eq!(get_json(&api, "/healthz").await["status"], "ok");
    let _ = child.kill().await;
    let _ = std::fs::remove_file(&path);
}

/// A webhook receiver that answers 200 after `delay` and records the
/// `event` of every POST body.
async fn slow_webhook_receiver(
    delay: Duration,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let g = std::sync::Arc::clone(&got);
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let g = std::sync::Arc::clone(&g);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).into_owned();
                    let Some((head, body)) = text.split_once("\r\n\r\n") else {
                        continue;
                    };
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().to_string())
                        })
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    if body.len() < len {
                        continue;
                    }
                    let event: serde_json::Value = serde_json::from_str(&body[..len]).unwrap();
                    tokio::time::sleep(delay).await;
                    g.lock()
                        .unwrap()
                        .push(event["event"].as_str().unwrap_or("").to_string());
                    let _ = s
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        )
                        .await;
                    return;
                }
            });
        }
    });
    (addr, got)
}

/// SIGTERM with a publisher, a player and a slow webhook endpoint: the
/// player is told the stream is gone, the sessions' stop events are
/// delivered before the process exits, and it exits within
/// `shutdown_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_tells_players_flushes_webhooks_and_exits_in_time() {
    use common::RtmpClient;
    use mediarelay::protocol::rtmp::ClientEvent;
    let (hook, got) = slow_webhook_receiver(Duration::from_millis(150)).await;
    let path = std::env::temp_dir().join(format!("mediarelay-stop-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        format!(
            "rtmp_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\napi_listen = \"127.0.0.1:0\"\n\
             webrtc_listen = \"127.0.0.1:0\"\nwebrtc_tcp_listen = \"\"\nrtsp_listen = \"\"\nshutdown_timeout = \"8s\"\n\
             [[webhooks]]\nurl = \"http://{hook}/hook\"\nevents = [\"publish_stop\", \"read_stop\"]\n"
        ),
    )
    .unwrap();
    let (mut child, logs) = spawn_with_config(&path);
    let rtmp: std::net::SocketAddr = logs.listener("rtmp").await.parse().unwrap();
    let _publisher = common::push(
        "baseline_aac44_mono.mp4",
        &format!("rtmp://{rtmp}/live/a"),
        true,
    );
    let mut player = None;
    for _ in 0..100 {
        if let Ok(p) = RtmpClient::play(rtmp, "live", "a").await {
            player = Some(p);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut player = player.expect("the stream plays");
    let (events, _) = player.events_for(Duration::from_millis(500)).await;
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ClientEvent::Video { .. }))
    );

    let t0 = std::time::Instant::now();
    let pid = child.id().unwrap().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let (events, open) = player.events_for(Duration::from_secs(5)).await;
    assert!(!open, "the server closes the player's connection");
    assert!(
        events.iter().any(|e| matches!(e, ClientEvent::Status { code, .. } if code == "NetStream.Play.UnpublishNotify")),
        "the player is told the stream is gone: {events:?}"
    );
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits within shutdown_timeout")
        .unwrap();
    assert!(status.success(), "{status}");
    assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
    // Delivered before the exit (each took 150 ms to answer).
    let mut got = got.lock().unwrap().clone();
    got.sort();
    assert_eq!(got, ["publish_stop", "read_stop"], "{got:?}");
    let _ = std::fs::remove_file(&path);
}
