//! Who may do what, against a running server: users, JWT and the
//! protocols' own refusals (RTMP status codes, HTTP 401/403), rate limits
//! (429), IP rules and connection caps.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use common::whep::{Offer, Offerer, post_offer};
use common::*;
use mediarelay::protocol::rtmp::ClientEvent;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const JWT_SECRET: &str = "0123456789abcdef0123456789abcdef";

/// `[[users]]` with an argon2 hash made here (the viewer), a `plain:` one
/// (the publisher), an admin for the API and metrics, and HS256 JWTs.
fn users_toml() -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(b"mediarelay-test!").unwrap();
    // Cheap parameters: a test, not a deployment.
    let argon = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(1024, 1, 1, None).unwrap(),
    );
    let hash = argon.hash_password(b"viewpass", &salt).unwrap().to_string();
    format!(
        r#"
[[users]]
user = "pub"
pass = "plain:pubpass"
permissions = [{{ action = "publish", path = "live/*" }}]

[[users]]
user = "viewer"
pass = "{hash}"
permissions = [{{ action = "read" }}]

[[users]]
user = "admin"
pass = "plain:adminpass"
permissions = [{{ action = "api" }}, {{ action = "metrics" }}]

[auth.jwt]
secret = "{JWT_SECRET}"
"#
    )
}

fn jwt(permissions: serde_json::Value, expires_in: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = json!({
        "sub": "token-user",
        "exp": now + expires_in,
        "mediarelay_permissions": permissions,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

/// The status code of a refused RTMP publish or play.
fn rtmp_code(r: Result<RtmpClient, ClientEvent>) -> String {
    match r {
        Ok(_) => "accepted".into(),
        Err(ClientEvent::Status { code, .. }) => code,
        Err(other) => format!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_and_read_need_the_right_credentials_on_every_protocol() {
    let app = start(&users_toml()).await;

    // RTMP publish: none, wrong, not allowed, allowed.
    let rtmp = app.rtmp_addr;
    let code =
        |key: &'static str| async move { rtmp_code(RtmpClient::publish(rtmp, "live", key).await) };
    assert_eq!(code("cam1").await, "NetStream.Publish.Unauthorized");
    assert_eq!(
        code("cam1?user=pub&pass=wrong").await,
        "NetStream.Publish.Unauthorized"
    );
    assert_eq!(
        code("cam1?user=viewer&pass=viewpass").await,
        "NetStream.Publish.Forbidden"
    );
    assert_eq!(
        rtmp_code(RtmpClient::publish(app.rtmp_addr, "other", "cam1?user=pub&pass=pubpass").await),
        "NetStream.Publish.Forbidden",
        "pub may publish only below live/"
    );
    let _push = push(
        "baseline_aac44_mono.mp4",
        &rtmp_url(&app, "live/cam1?user=pub&pass=pubpass"),
        true,
    );
    wait_published(&app, "live/cam1").await;

    // RTMP play.
    assert_eq!(
        rtmp_code(RtmpClient::play(app.rtmp_addr, "live", "cam1").await),
        "NetStream.Play.Unauthorized"
    );
    assert_eq!(
        rtmp_code(RtmpClient::play(app.rtmp_addr, "live", "cam1?user=pub&pass=pubpass").await),
        "NetStream.Play.Forbidden"
    );
    assert_eq!(
        rtmp_code(RtmpClient::play(app.rtmp_addr, "live", "cam1?user=viewer&pass=viewpass").await),
        "accepted"
    );
    let token = jwt(json!([{"action": "read", "path": "live/*"}]), 300);
    assert_eq!(
        rtmp_code(RtmpClient::play(app.rtmp_addr, "live", &format!("cam1?token={token}")).await),
        "accepted"
    );

    // HLS: 401 with a challenge, then Basic, query credentials, a token.
    let playlist = "/live/cam1/index.m3u8";
    let r = http("GET", app.http_addr, playlist, b"").await;
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").unwrap().starts_with("Basic"));
    let r = http_with(
        "GET",
        app.http_addr,
        playlist,
        &[("Authorization", &basic("viewer", "wrong"))],
        b"",
    )
    .await;
    assert_eq!(r.status, 401);
    let r = http_with(
        "GET",
        app.http_addr,
        playlist,
        &[("Authorization", &basic("pub", "pubpass"))],
        b"",
    )
    .await;
    assert_eq!(r.status, 403);
    let r = http_with(
        "GET",
        app.http_addr,
        playlist,
        &[("Authorization", &basic("viewer", "viewpass"))],
        b"",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // The viewer's cookie carries it through segments and parts.
    let cookie = r
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let segment = r
        .text()
        .lines()
        .find(|l| l.starts_with("seg_"))
        .unwrap()
        .to_string();
    let target = format!("/live/cam1/{segment}");
    assert_eq!(http("GET", app.http_addr, &target, b"").await.status, 401);
    let r = http_with("GET", app.http_addr, &target, &[("Cookie", &cookie)], b"").await;
    assert_eq!(r.status, 200);
    let r = http(
        "GET",
        app.http_addr,
        &format!("{playlist}?user=viewer&pass=viewpass"),
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    let r = http(
        "GET",
        app.http_addr,
        &format!("{playlist}?token={token}"),
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    let expired = jwt(json!([{"action": "read"}]), -60);
    let r = http(
        "GET",
        app.http_addr,
        &format!("{playlist}?token={expired}"),
        b"",
    )
    .await;
    assert_eq!(r.status, 401, "an expired token is refused");
    let publish_only = jwt(json!([{"action": "publish"}]), 300);
    let r = http_with(
        "GET",
        app.http_addr,
        playlist,
        &[("Authorization", &format!("Bearer {publish_only}"))],
        b"",
    )
    .await;
    assert_eq!(r.status, 403);

    // ffprobe with credentials in the URL plays it through.
    let url = format!(
        "http://viewer:viewpass@{}/live/cam1/index.m3u8",
        app.http_addr
    );
    let streams = probe_streams(&url).await;
    assert_eq!(streams[0]["codec_name"], "h264");

    // WHEP: Bearer token, or nothing.
    let offer = Offerer::new(Offer::H264Opus).await;
    let r = post_offer(app.http_addr, "live/cam1", &offer.sdp, &[]).await;
    assert_eq!(r.status, 401);
    let bearer = format!("Bearer {token}");
    let r = post_offer(
        app.http_addr,
        "live/cam1",
        &offer.sdp,
        &[("Authorization", &bearer)],
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    // WHIP publish without credentials (OBS sends a Bearer token).
    let r = http_with(
        "POST",
        app.http_addr,
        "/live/cam2/whip",
        &[("Content-Type", "application/sdp")],
        b"v=0\r\n",
    )
    .await;
    assert_eq!(r.status, 401);

    // The API and metrics: the admin only; health probes stay open.
    assert_eq!(http("GET", app.api_addr, "/healthz", b"").await.status, 200);
    assert_eq!(
        http("GET", app.api_addr, "/v1/paths", b"").await.status,
        401
    );
    let r = http_with(
        "GET",
        app.api_addr,
        "/v1/paths",
        &[("Authorization", &basic("viewer", "viewpass"))],
        b"",
    )
    .await;
    assert_eq!(r.status, 403);
    let admin = basic("admin", "adminpass");
    let r = http_with(
        "GET",
        app.api_addr,
        "/v1/paths",
        &[("Authorization", &admin)],
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(http("GET", app.api_addr, "/metrics", b"").await.status, 401);
    let r = http_with(
        "GET",
        app.api_addr,
        "/metrics",
        &[("Authorization", &admin)],
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    // No password reaches the API's view of the config.
    let r = http_with(
        "GET",
        app.api_addr,
        "/v1/config",
        &[("Authorization", &admin)],
        b"",
    )
    .await;
    let text = r.text();
    assert!(
        !text.contains("pubpass") && !text.contains(JWT_SECRET) && !text.contains("argon2id"),
        "{text}"
    );
    app.shutdown().await;
}

/// Whether the server closes a fresh connection to `addr` without
/// answering (an RTMP handshake gets no S0/S1).
async fn dropped_at_once(addr: std::net::SocketAddr) -> bool {
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return true;
    };
    let mut c0c1 = vec![3u8];
    c0c1.extend(std::iter::repeat_n(0u8, 1536));
    let _ = s.write_all(&c0c1).await;
    let mut buf = [0u8; 16];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_ip_rules_and_connection_caps() {
    let app = start(
        r#"
[limits]
api_rate = 2
webrtc_post_rate = 1
connection_rate = 0
max_connections_per_ip = 2
max_readers_per_path = 1

[paths."private/*"]
publish_allow = ["10.0.0.0/8"]
read_deny = ["127.0.0.0/8"]
"#,
    )
    .await;
    // API: a burst of 4 (2 a second), then 429 with Retry-After.
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..8 {
        let r = http("GET", app.api_addr, "/v1/paths", b"").await;
        if r.status == 429 {
            retry_after = r.header("retry-after").map(str::to_string);
            assert!(r.json()["error"].is_string());
        }
        statuses.push(r.status);
    }
    assert!(statuses.starts_with(&[200, 200, 200, 200]), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    let wait: u64 = retry_after.unwrap().parse().unwrap();
    assert!(wait >= 1);
    tokio::time::sleep(Duration::from_secs(wait)).await;
    assert_eq!(
        http("GET", app.api_addr, "/v1/paths", b"").await.status,
        200
    );

    // WHEP/WHIP POSTs have their own bucket (burst 2).
    let offer = Offerer::new(Offer::H264Opus).await;
    let mut posts = Vec::new();
    for _ in 0..4 {
        posts.push(
            post_offer(app.http_addr, "live/none", &offer.sdp, &[])
                .await
                .status,
        );
    }
    assert_eq!(posts.last(), Some(&429), "{posts:?}");

    // Per-path rules: 127.0.0.1 is neither in publish_allow nor allowed to read.
    assert_eq!(
        rtmp_code(RtmpClient::publish(app.rtmp_addr, "private", "x").await),
        "NetStream.Publish.Forbidden"
    );
    let _push = push(
        "baseline_aac44_mono.mp4",
        &rtmp_url(&app, "live/open"),
        true,
    );
    wait_published(&app, "live/open").await;

    // At most two connections from one address: the third is dropped.
    let a = RtmpClient::play(app.rtmp_addr, "live", "open")
        .await
        .unwrap();
    assert!(
        dropped_at_once(app.rtmp_addr).await,
        "third connection refused"
    );
    // One reader per path: a new HLS viewer is turned away meanwhile.
    let r = http("GET", app.http_addr, "/live/open/index.m3u8", b"").await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("maximum"), "{}", r.text());
    drop(a);
    // (ffmpeg's own connection was the first.)
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b = RtmpClient::play(app.rtmp_addr, "live", "open").await;
    assert!(b.is_ok(), "a place is free again");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_network_cannot_connect_anywhere() {
    let app = start(
        r#"
[ip_rules]
rtmp = { deny = ["127.0.0.0/8"] }
http = { allow = ["10.0.0.0/8"] }
api = { deny = ["127.0.0.1"] }
"#,
    )
    .await;
    assert!(dropped_at_once(app.rtmp_addr).await);
    let r = http("GET", app.http_addr, "/live/x/index.m3u8", b"").await;
    assert_eq!(r.status, 403);
    let r = http("GET", app.api_addr, "/v1/paths", b"").await;
    assert_eq!(r.status, 403);
    assert!(r.json()["error"].as_str().unwrap().contains("127.0.0.1"));
    // Changed live: the API is locked out, so the hub is changed directly,
    // as a reloaded file would.
    let mut open = (*app.hub.config()).clone();
    open.ip_rules = Default::default();
    app.hub.apply_config(open, "test");
    eventually(Duration::from_secs(5), "the rules to lift", || async {
        (http("GET", app.api_addr, "/v1/paths", b"").await.status == 200).then_some(())
    })
    .await;
    assert!(!dropped_at_once(app.rtmp_addr).await);
    app.shutdown().await;
}

/// What the test's auth hook and on_publish hook were asked.
type Asked = std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>;

async fn hooks() -> (std::net::SocketAddr, Asked) {
    use axum::extract::State;
    use axum::http::StatusCode;
    let asked: Asked = Default::default();
    async fn auth(State(a): State<Asked>, body: axum::Json<serde_json::Value>) -> StatusCode {
        let ok = body["user"] == "ok" || body["token"] == "t1";
        a.lock().unwrap().push(body.0);
        if ok {
            StatusCode::NO_CONTENT
        } else {
            StatusCode::FORBIDDEN
        }
    }
    async fn on_publish(body: axum::Json<serde_json::Value>) -> StatusCode {
        if body["path"] == "live/banned" {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::OK
        }
    }
    let app = axum::Router::new()
        .route("/auth", axum::routing::post(auth))
        .route("/on_publish", axum::routing::post(on_publish))
        .with_state(std::sync::Arc::clone(&asked));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, asked)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auth_hook_decides_and_on_publish_can_refuse() {
    let (hook, asked) = hooks().await;
    let app = start(&format!(
        r#"
[auth.hook]
url = "http://{hook}/auth"
cache = "0s"

[on_publish]
url = "http://{hook}/on_publish"
default = "deny"
"#
    ))
    .await;
    assert_eq!(
        rtmp_code(RtmpClient::publish(app.rtmp_addr, "live", "cam?user=bad&pass=x").await),
        "NetStream.Publish.Forbidden"
    );
    assert_eq!(
        rtmp_code(RtmpClient::publish(app.rtmp_addr, "live", "banned?user=ok&pass=x").await),
        "NetStream.Publish.Rejected",
        "the hook allows, on_publish refuses"
    );
    let _push = push(
        "baseline_aac44_mono.mp4",
        &rtmp_url(&app, "live/cam?user=ok&pass=x"),
        true,
    );
    wait_published(&app, "live/cam").await;
    let first = asked.lock().unwrap()[0].clone();
    assert_eq!(first["action"], "publish");
    assert_eq!(first["path"], "live/cam");
    assert_eq!(first["protocol"], "rtmp");
    assert_eq!(first["user"], "bad");
    assert_eq!(first["password"], "x");
    assert_eq!(first["ip"], "127.0.0.1");
    assert_eq!(first["query"], "user=bad&pass=x");
    // HLS with a token the hook knows, and without.
    let playlist = "/live/cam/index.m3u8";
    assert_eq!(http("GET", app.http_addr, playlist, b"").await.status, 401);
    let r = http("GET", app.http_addr, &format!("{playlist}?token=t1"), b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let last = asked.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last["action"], "read");
    assert_eq!(last["protocol"], "hls");
    // The API asks the hook too.
    assert_eq!(
        http("GET", app.api_addr, "/v1/paths", b"").await.status,
        401
    );
    assert_eq!(
        http("GET", app.api_addr, "/v1/paths?token=t1", b"")
            .await
            .status,
        200
    );
    app.shutdown().await;
}
