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

/// The init segment a playlist names (`EXT-X-MAP`).
fn map_uri(playlist: &str) -> String {
    let after = playlist
        .split("#EXT-X-MAP:URI=\"")
        .nth(1)
        .expect("EXT-X-MAP");
    after.split('"').next().unwrap().to_string()
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
    let init = map_uri(&playlist);

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

/// Shutdown closes a keep-alive connection that waits for its next request
/// at once, not at `shutdown_timeout`: the connection's one shutdown wait
/// stays registered between requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_at_shutdown() {
    let app = start("shutdown_timeout = \"30s\"").await;
    let mut s = TcpStream::connect(app.http_addr).await.unwrap();
    let mut buf = Vec::new();
    for _ in 0..2 {
        s.write_all(get("/live/cam/", "").as_bytes()).await.unwrap();
        let (status, head, _) = read_response(&mut s, &mut buf).await;
        assert_eq!(status, 200, "{head}");
    }
    let stopped = tokio::spawn(app.shutdown());
    let mut rest = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut rest))
        .await
        .expect("the idle connection is closed before shutdown_timeout")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without a byte");
    tokio::time::timeout(Duration::from_secs(10), stopped)
        .await
        .expect("shutdown does not wait for the idle connection")
        .unwrap();
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

/// One request on a connection of its own: (status, head, body).
/// The answer to `HEAD` has no body: it ends with its head.
async fn one_request(addr: SocketAddr, request: &[u8]) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    if request.starts_with(b"HEAD ") {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut chunk))
                .await
                .expect("a response head")
                .unwrap();
            assert!(n > 0, "closed before a response head");
            buf.extend_from_slice(&chunk[..n]);
        }
        let head = String::from_utf8(buf).unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        let end = head.find("\r\n\r\n").unwrap() + 4;
        return (
            status,
            head[..end].to_string(),
            head.as_bytes()[end..].to_vec(),
        );
    }
    read_response(&mut s, &mut buf).await
}

/// The playlist of `path` once it is published and lists two segments
/// (the first of them complete).
async fn two_segments(app: &mediarelay::app::App, path: &str) -> String {
    wait_published(app, path).await;
    let target = format!("/{path}/index.m3u8");
    eventually(Duration::from_secs(30), "two segments", || async {
        let r = http("GET", app.http_addr, &target, b"").await;
        (r.status == 200 && r.text().matches("\nseg_").count() >= 2).then(|| r.text())
    })
    .await
}

/// A response head without its status line and `Date`, the lines sorted
/// (their order carries nothing between different names), a new viewer
/// id masked; `content-length` too where the body may differ.
fn comparable(head: &str, with_length: bool) -> Vec<String> {
    let mut lines: Vec<String> = head
        .lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(str::to_ascii_lowercase)
        .filter(|l| !l.starts_with("date:"))
        .filter(|l| with_length || !l.starts_with("content-length:"))
        .map(|l| match l.split_once("mediarelay_hls=") {
            Some((before, after)) if l.starts_with("set-cookie:") => {
                format!("{before}mediarelay_hls=<id>{}", &after[32..])
            }
            _ => l,
        })
        .collect();
    lines.sort();
    lines
}

/// HLS file requests are answered by the plain listener's shortcut (no
/// router): the same answer as the router gives. Each request is sent as
/// it is (the shortcut takes it, which is checked) and again with a
/// one-byte body, which hands the connection to hyper and the router:
/// status, headers but `Date`, and body must be the same; the shortcut's
/// answers are counted as the router's are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hls_shortcut_answers_what_the_router_answers() {
    use mediarelay::protocol::http1::{RawParsed, parse_raw, request::header_slots};
    use mediarelay::server::h1::Shortcut;

    let app = start("").await;
    let _push = push(
        "high_bframes_aac48.mp4",
        &rtmp_url(&app, "live/short"),
        true,
    );
    // A complete segment (one with a segment after it in the playlist).
    let playlist = two_segments(&app, "live/short").await;
    let seg = playlist.lines().find(|l| l.starts_with("seg_")).unwrap();
    let msn = seg.trim_start_matches("seg_").trim_end_matches(".m4s");
    let init = map_uri(&playlist);
    let viewer = "Cookie: other=1; mediarelay_hls=0123456789abcdef0123456789abcdef\r\n";
    let base = "/live/short";
    let cases: Vec<(&str, String, &str, u16)> = vec![
        ("GET", format!("{base}/{init}"), viewer, 200),
        ("GET", format!("{base}/{seg}"), viewer, 200),
        ("GET", format!("{base}/part_{msn}_0.m4s"), viewer, 200),
        ("GET", format!("{base}/part_{msn}_1.m4s"), "", 200),
        (
            "GET",
            format!("{base}/part_{msn}_2.m4s"),
            "Origin: http://player.example\r\nUser-Agent: test\r\n",
            200,
        ),
        ("HEAD", format!("{base}/{seg}"), viewer, 200),
        ("GET", format!("{base}/part_{msn}_99.m4s"), viewer, 404),
        ("GET", format!("{base}/seg_99999999.m4s"), viewer, 404),
        ("GET", format!("/live/none/{seg}"), viewer, 404),
        ("GET", format!("{base}/index.m3u8?_HLS_part=1"), viewer, 400),
        ("GET", format!("{base}/index.m3u8"), viewer, 200),
    ];
    let counted = |m: &str, status: &str| {
        m.lines()
            .find(|l| {
                l.starts_with("mediarelay_http_requests_total{")
                    && l.contains("listener=\"http\"")
                    && l.contains(&format!("status=\"{status}\""))
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let metrics = || async { http("GET", app.api_addr, "/metrics", b"").await.text() };
    let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    // Each is the shortcut's (taking a request it answers at once answers
    // and counts it: asked before the counts are read).
    for (method, target, extra, _) in &cases {
        let request = format!("{method} {target} HTTP/1.1\r\nHost: t\r\n{extra}\r\n");
        let mut slots = header_slots();
        let RawParsed::Simple(raw) = parse_raw(request.as_bytes(), &mut slots) else {
            panic!("{request}")
        };
        assert!(
            app.hls_shortcut().take(&raw, peer).is_some(),
            "the shortcut takes {method} {target}"
        );
    }
    let before = metrics().await;
    for (method, target, extra, status) in &cases {
        let request = format!("{method} {target} HTTP/1.1\r\nHost: t\r\n{extra}\r\n");
        let (s1, head1, body1) = one_request(app.http_addr, request.as_bytes()).await;
        let routed =
            format!("{method} {target} HTTP/1.1\r\nHost: t\r\n{extra}Content-Length: 1\r\n\r\nx");
        let (s2, head2, body2) = one_request(app.http_addr, routed.as_bytes()).await;
        assert_eq!(
            (s1, s2),
            (*status, *status),
            "{method} {target}: {head1}{head2}"
        );
        // A live playlist may gain a part between the two requests.
        let same_body = !target.ends_with("index.m3u8");
        assert_eq!(
            comparable(&head1, same_body),
            comparable(&head2, same_body),
            "{method} {target}"
        );
        if same_body {
            assert_eq!(body1, body2, "{method} {target}");
        } else {
            assert!(body1.starts_with(b"#EXTM3U") && body2.starts_with(b"#EXTM3U"));
        }
        if *method == "HEAD" {
            assert!(body1.is_empty());
        }
    }
    // Twice each, both ways: the shortcut's answers are counted.
    let after = metrics().await;
    for status in ["200", "404", "400"] {
        let n = cases.iter().filter(|c| c.3.to_string() == status).count() as f64;
        assert_eq!(
            counted(&after, status) - counted(&before, status),
            2.0 * n,
            "status {status}"
        );
    }

    // Not taken: what the router refuses or must decide.
    for (request, why) in [
        (
            format!("GET {base}/hls.min.js HTTP/1.1\r\n\r\n"),
            "not an HLS file",
        ),
        (
            format!("GET http://h{base}/{seg} HTTP/1.1\r\n\r\n"),
            "absolute form",
        ),
        (
            format!("GET {base}/whep/{seg} HTTP/1.1\r\n\r\n"),
            "a WHEP resource",
        ),
        (
            format!("GET /a/../{seg} HTTP/1.1\r\n\r\n"),
            "an invalid path",
        ),
        (
            format!("GET {base}/{seg}?x=\"1\" HTTP/1.1\r\n\r\n"),
            "a query to encode",
        ),
    ] {
        let mut slots = header_slots();
        let RawParsed::Simple(raw) = parse_raw(request.as_bytes(), &mut slots) else {
            panic!("{request}")
        };
        assert!(app.hls_shortcut().take(&raw, peer).is_none(), "{why}");
    }
    app.shutdown().await;
}

/// With authentication on, a viewer without credentials is the router's
/// (401); one whose session was authorized is the shortcut's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hls_shortcut_leaves_authorization_to_the_router() {
    use mediarelay::protocol::http1::{RawParsed, parse_raw, request::header_slots};
    use mediarelay::server::h1::Shortcut;

    let app = start(
        r#"
[[users]]
user = "pub"
pass = "plain:pubpass"
permissions = [{ action = "publish" }]

[[users]]
user = "viewer"
pass = "plain:secret"
permissions = [{ action = "read" }]
"#,
    )
    .await;
    let _push = push(
        "high_bframes_aac48.mp4",
        &rtmp_url(&app, "live/auth?user=pub&pass=pubpass"),
        true,
    );
    wait_published(&app, "live/auth").await;
    let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let takes = |request: &str| {
        let mut slots = header_slots();
        let RawParsed::Simple(raw) = parse_raw(request.as_bytes(), &mut slots) else {
            panic!("{request}")
        };
        app.hls_shortcut().take(&raw, peer).is_some()
    };
    let anonymous = "GET /live/auth/index.m3u8 HTTP/1.1\r\nHost: t\r\n\r\n";
    assert!(!takes(anonymous));
    let (status, head, _) = one_request(app.http_addr, anonymous.as_bytes()).await;
    assert_eq!(status, 401, "{head}");
    // Authorized once (Basic), the viewer's cookie is its pass.
    let (status, head, _) = eventually(Duration::from_secs(30), "a playlist", || async {
        let r = one_request(
            app.http_addr,
            b"GET /live/auth/index.m3u8 HTTP/1.1\r\nHost: t\r\nAuthorization: Basic dmlld2VyOnNlY3JldA==\r\n\r\n",
        )
        .await;
        (r.0 == 200).then_some(r)
    })
    .await;
    assert_eq!(status, 200);
    let cookie = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("set-cookie: ")
                .map(str::to_string)
        })
        .expect("a session cookie");
    let id = cookie.split(';').next().unwrap();
    let with_cookie =
        format!("GET /live/auth/index.m3u8 HTTP/1.1\r\nHost: t\r\nCookie: {id}\r\n\r\n");
    assert!(takes(&with_cookie), "an authorized viewer's request");
    let (status, head, _) = one_request(app.http_addr, with_cookie.as_bytes()).await;
    assert_eq!(status, 200, "{head}");
    app.shutdown().await;
}

/// Segments to a reader that takes them slowly (a small receive window,
/// requests pipelined): the socket soon stops taking them at once, so the
/// shortcut's answers are finished later under the write timeout; every
/// byte arrives, in order, and the connection then serves its next
/// request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_the_socket_takes_slowly_arrive_whole() {
    let app = start("").await;
    let _push = push("high_bframes_aac48.mp4", &rtmp_url(&app, "live/slow"), true);
    let playlist = two_segments(&app, "live/slow").await;
    let seg = playlist.lines().find(|l| l.starts_with("seg_")).unwrap();
    let target = format!("/live/slow/{seg}");
    let (status, _, whole) = one_request(app.http_addr, get(&target, "").as_bytes()).await;
    assert_eq!(status, 200);
    // More than a loopback socket's largest send buffer (4 MiB by default)
    // in all, whatever the fixture's segment size.
    let count = (8 << 20) / whole.len().max(1) + 1;

    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut s = socket.connect(app.http_addr).await.unwrap();
    s.write_all(get(&target, "").repeat(count).as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut buf = Vec::new();
    for i in 0..count {
        let (status, head, body) = read_response(&mut s, &mut buf).await;
        assert_eq!(status, 200, "answer {i}: {head}");
        assert!(
            body == whole,
            "answer {i} of {count} is the segment's bytes"
        );
    }
    let init = map_uri(&playlist);
    s.write_all(get(&format!("/live/slow/{init}"), "").as_bytes())
        .await
        .unwrap();
    let (status, head, _) = read_response(&mut s, &mut buf).await;
    assert_eq!(status, 200, "the next request: {head}");
    app.shutdown().await;
}
