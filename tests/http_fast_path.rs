//! The plain HTTP listener's own HTTP/1.1 path (`server::h1`): keep-alive,
//! HTTP/1.0, HEAD and HTTP/2 with real clients (curl), a connection handed to
//! hyper in the middle, the header timeout, oversized and malformed heads.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One response read from a kept-open connection: (status, head, body).
/// `buf` keeps what was read past it.
async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> (u16, String, Vec<u8>) {
    let deadline = Duration::from_secs(20);
    let end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(deadline, s.read(&mut chunk))
            .await
            .expect("a response head")
            .unwrap();
        assert!(
            n > 0,
            "closed before a response head: {:?}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..end].to_vec()).unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no content-length in {head}"));
    while buf.len() < end + length {
        let mut chunk = [0u8; 65536];
        let n = tokio::time::timeout(deadline, s.read(&mut chunk))
            .await
            .expect("a response body")
            .unwrap();
        assert!(n > 0, "closed in a body");
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[end..end + length].to_vec();
    buf.drain(..end + length);
    (status, head, body)
}

/// Whether the server closes `s` within `limit` (end of stream or reset).
async fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let mut sink = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut sink)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

fn get(target: &str, extra: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: test\r\n{extra}\r\n")
}

fn scratch(name: &str) -> String {
    std::env::temp_dir()
        .join(format!("mediarelay-h1-{}-{name}", std::process::id()))
        .to_string_lossy()
        .into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_clients_get_hls_over_one_connection_http_1_0_head_and_h2() {
    let app = start("").await;
    let _push = push("high_bframes_aac48.mp4", &rtmp_url(&app, "live/fast"), true);
    wait_published(&app, "live/fast").await;
    let base = format!("http://{}/live/fast", app.http_addr);
    let playlist = eventually(Duration::from_secs(30), "a segment", || async {
        let r = http("GET", app.http_addr, "/live/fast/index.m3u8", b"").await;
        (r.status == 200 && r.text().contains("seg_")).then(|| r.text())
    })
    .await;
    let seg = playlist
        .lines()
        .find(|l| l.starts_with("seg_"))
        .unwrap()
        .to_string();
    let init = playlist
        .split("#EXT-X-MAP:URI=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();

    // Three requests, one connection: curl connects once.
    let (f1, f2, f3) = (scratch("1"), scratch("2"), scratch("3"));
    let urls = [
        format!("{base}/index.m3u8"),
        format!("{base}/{init}"),
        format!("{base}/{seg}"),
    ];
    let (ok, out, err) = run(
        "curl",
        &[
            "-s",
            "-o",
            &f1,
            "-o",
            &f2,
            "-o",
            &f3,
            "-w",
            "%{num_connects} %{http_code}\n",
            &urls[0],
            &urls[1],
            &urls[2],
        ],
        Duration::from_secs(30),
    )
    .await;
    assert!(ok, "curl: {err}");
    assert_eq!(out, "1 200\n0 200\n0 200\n", "one connection for all three");
    let segment = std::fs::read(&f3).unwrap();
    assert!(segment.len() > 1000, "a segment: {} bytes", segment.len());
    let direct = http("GET", app.http_addr, &format!("/live/fast/{seg}"), b"").await;
    assert_eq!(direct.body.as_ref(), segment.as_slice(), "the same bytes");
    // Its parts (sent with sendfile from the segment's memory file, as the
    // segment is) are the segment in pieces.
    let msn = seg.trim_start_matches("seg_").trim_end_matches(".m4s");
    let prefix = format!("URI=\"part_{msn}_");
    let mut joined = Vec::new();
    for line in playlist.lines().filter(|l| l.contains(&prefix)) {
        let part = line
            .split("URI=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let r = http("GET", app.http_addr, &format!("/live/fast/{part}"), b"").await;
        assert_eq!(r.status, 200, "{part}");
        joined.extend_from_slice(&r.body);
    }
    assert_eq!(joined, segment, "the parts of {seg} joined");
    assert!(std::fs::read(&f2).unwrap().len() > 100, "an init segment");

    // HEAD: the GET's length, no body.
    let (ok, out, err) = run("curl", &["-s", "-I", &urls[2]], Duration::from_secs(30)).await;
    assert!(ok, "curl -I: {err}");
    assert!(
        out.to_ascii_lowercase()
            .contains(&format!("content-length: {}\r\n", segment.len())),
        "{out}"
    );

    // HTTP/1.0: the whole segment, then the server closes.
    let (ok, out, err) = run(
        "curl",
        &["-s", "-0", "-D", "-", "-o", &f1, &urls[2]],
        Duration::from_secs(30),
    )
    .await;
    assert!(ok, "curl -0: {err}");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(!out.to_ascii_lowercase().contains("keep-alive"), "{out}");
    assert_eq!(std::fs::read(&f1).unwrap(), segment);

    // HTTP/2 with prior knowledge goes to hyper.
    let (ok, out, err) = run(
        "curl",
        &[
            "-s",
            "--http2-prior-knowledge",
            "-o",
            &f1,
            "-w",
            "%{http_version}",
            &urls[2],
        ],
        Duration::from_secs(30),
    )
    .await;
    assert!(ok, "curl --http2-prior-knowledge: {err}");
    assert_eq!(out, "2");
    assert_eq!(std::fs::read(&f1).unwrap(), segment);
    for f in [f1, f2, f3] {
        let _ = std::fs::remove_file(f);
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_is_handed_to_hyper_mid_connection() {
    let app = start("").await;
    let mut s = TcpStream::connect(app.http_addr).await.unwrap();
    let mut buf = Vec::new();
    // Two GETs, pipelined in one write, answered here.
    let two = format!("{}{}", get("/live/cam/", ""), get("/live/cam/", ""));
    s.write_all(two.as_bytes()).await.unwrap();
    let (status, head, page) = read_response(&mut s, &mut buf).await;
    assert_eq!(status, 200, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/html"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("access-control-allow-origin: *"),
        "CORS: {head}"
    );
    let (status, _, again) = read_response(&mut s, &mut buf).await;
    assert_eq!((status, &again), (200, &page));
    // A POST with a body: hyper takes over, the fast path's bytes replayed.
    let offer = b"v=0\r\nnot an offer\r\n";
    let post = format!(
        "POST /live/cam/whep HTTP/1.1\r\nHost: test\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n",
        offer.len()
    );
    s.write_all(post.as_bytes()).await.unwrap();
    s.write_all(offer).await.unwrap();
    let (status, head, body) = read_response(&mut s, &mut buf).await;
    assert!((400..500).contains(&status), "{head}");
    let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(error["error"].is_string(), "{error}");
    // The same connection goes on, served by hyper.
    s.write_all(get("/live/cam/", "").as_bytes()).await.unwrap();
    let (status, _, third) = read_response(&mut s, &mut buf).await;
    assert_eq!((status, &third), (200, &page));
    app.shutdown().await;
}

/// A request head sent one byte every 100 ms (it would take 6 s) is cut
/// off at the 1 s header timeout.
async fn assert_trickled_head_is_dropped(addr: SocketAddr, target: &str) {
    let slow = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    let (mut reader, mut writer) = slow.into_split();
    let trickle = async move {
        for b in get(target, "X-Slow: 1234567890abcdefghijklmnopqrstuvwxyz\r\n").bytes() {
            if writer.write_all(&[b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let closed = async {
        let mut sink = [0u8; 64];
        matches!(
            tokio::time::timeout(Duration::from_secs(5), reader.read(&mut sink)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    };
    let mut trickle = Box::pin(trickle);
    let closed = tokio::select! {
        c = closed => c,
        _ = &mut trickle => panic!("the whole head was sent before a close"),
    };
    assert!(closed, "the slow client is dropped");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "dropped after {took:?}"
    );
    drop(trickle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_heads_are_dropped_and_idle_keep_alive_is_kept() {
    let app = start("handshake_timeout = \"1s\"\n").await;
    let addr: SocketAddr = app.http_addr;

    // Slowloris: a head trickled a byte at a time never completes; on the
    // API listener (hyper's HTTP/1 with a header timer) too.
    assert_trickled_head_is_dropped(addr, "/live/cam/").await;
    assert_trickled_head_is_dropped(app.api_addr, "/healthz").await;

    // A connection that never sends a request is dropped too.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    assert!(closed_within(&mut silent, Duration::from_secs(3)).await);

    // An idle keep-alive connection between requests is not.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    let mut buf = Vec::new();
    idle.write_all(get("/live/cam/", "").as_bytes())
        .await
        .unwrap();
    assert_eq!(read_response(&mut idle, &mut buf).await.0, 200);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    idle.write_all(get("/live/cam/", "").as_bytes())
        .await
        .unwrap();
    assert_eq!(read_response(&mut idle, &mut buf).await.0, 200);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_get_431_garbage_gets_400_and_serving_goes_on() {
    let app = start("").await;
    let addr = app.http_addr;
    let page = http("GET", addr, "/live/cam/", b"").await;
    assert_eq!(page.status, 200);

    // A 15 KiB head is served; a 20 KiB one is refused.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut buf = Vec::new();
    let big = format!("X-Big: {}\r\n", "a".repeat(15 * 1024));
    s.write_all(get("/live/cam/", &big).as_bytes())
        .await
        .unwrap();
    assert_eq!(read_response(&mut s, &mut buf).await.0, 200);
    let huge = format!("X-Big: {}\r\n", "a".repeat(20 * 1024));
    s.write_all(get("/live/cam/", &huge).as_bytes())
        .await
        .unwrap();
    let (status, head, _) = read_response(&mut s, &mut buf).await;
    assert_eq!(status, 431, "{head}");
    assert!(closed_within(&mut s, Duration::from_secs(3)).await);

    // Garbage: 400 (from hyper), then the connection ends.
    let mut g = TcpStream::connect(addr).await.unwrap();
    g.write_all(b"\x01\x02 garbage \xff\r\n\r\n").await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), g.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    assert!(
        raw.starts_with(b"HTTP/1.1 400"),
        "{:?}",
        String::from_utf8_lossy(&raw)
    );

    // Others are served as before.
    let again = http("GET", addr, "/live/cam/", b"").await;
    assert_eq!((again.status, &again.body), (200, &page.body));
    app.shutdown().await;
}
