//! The `mediarelay` binary itself: flags, environment, config errors, signals.

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
    ]))
    .await;
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("rtmp_listen") && text.contains(&addr),
        "{text}"
    );
}
