//! TLS listeners end to end: ffmpeg publishes over RTMPS and reads back over
//! RTMP, RTMPS and HLS on the HTTPS listener; the API over TLS; certificate
//! files replaced while a publisher is live; junk on the RTMPS port.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use mediarelay::app::App;
use rustls_pki_types::ServerName;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A certificate and key for 127.0.0.1 and localhost in a directory removed
/// on drop.
struct Certs {
    dir: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Certs {
    fn new(tag: &str) -> Certs {
        let dir =
            std::env::temp_dir().join(format!("mediarelay-tls-e2e-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let certs = Certs {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            dir,
        };
        certs.renew();
        certs
    }

    /// Writes a new self-signed pair over the files; returns its DER.
    fn renew(&self) -> Vec<u8> {
        let generated =
            rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
                .unwrap();
        std::fs::write(&self.key, generated.signing_key.serialize_pem()).unwrap();
        std::fs::write(&self.cert, generated.cert.pem()).unwrap();
        generated.cert.der().to_vec()
    }

    fn der(&self) -> Vec<u8> {
        cert_der(&self.cert)
    }

    /// The `[tls]` table for these files.
    fn toml(&self, extra: &str) -> String {
        format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\n{extra}",
            self.cert.display(),
            self.key.display()
        )
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn cert_der(path: &Path) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::from_pem_file(path)
        .unwrap()
        .to_vec()
}

/// A rustls client that trusts exactly `der`.
fn client_trusting(der: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from(der.to_vec()))
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Completes a TLS handshake with `addr` trusting `der`; returns the
/// certificate the server presented, or the error.
async fn handshake(
    addr: SocketAddr,
    der: &[u8],
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    tokio::time::timeout(
        Duration::from_secs(5),
        tokio_rustls::TlsConnector::from(client_trusting(der)).connect(name, tcp),
    )
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "handshake timed out"))?
}

fn presented(tls: &tokio_rustls::client::TlsStream<TcpStream>) -> Vec<u8> {
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn codecs(streams: &[Value]) -> Vec<String> {
    let mut c: Vec<String> = streams
        .iter()
        .map(|s| s["codec_name"].as_str().unwrap_or("?").to_string())
        .collect();
    c.sort();
    c
}

/// RTMPS and (unless `https_listen` says otherwise) HTTPS on ephemeral
/// ports, the rest as `common::config` sets.
async fn start_tls(certs: &Certs, https_listen: &str, tls_extra: &str) -> App {
    init_logs();
    let toml = format!(
        "https_listen = \"{https_listen}\"\nrtmps_listen = \"127.0.0.1:0\"\n{}",
        certs.toml(tls_extra)
    );
    App::start(config(&toml)).await.unwrap()
}

/// Frames the path's stream has taken in, with the stream's identity.
fn frames_in(app: &App, path: &str) -> (usize, u64) {
    let s = app.hub.stream(path).expect("published");
    (Arc::as_ptr(&s) as usize, s.frames_in())
}

/// Waits until the path's current stream has taken in more frames than
/// `than`, and checks it is the same stream (the publisher did not restart).
async fn still_flowing(app: &App, path: &str, than: (usize, u64)) {
    eventually(Duration::from_secs(10), "more frames", || async {
        let now = frames_in(app, path);
        assert_eq!(now.0, than.0, "the stream was restarted");
        (now.1 > than.1 + 10).then_some(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_publishes_over_rtmps_and_reads_over_rtmp_rtmps_and_https_hls() {
    let certs = Certs::new("publish");
    let app = start_tls(&certs, "127.0.0.1:0", "").await;
    let (https, rtmps) = (app.https_addr.unwrap(), app.rtmps_addr.unwrap());
    assert_ne!(rtmps, app.rtmp_addr);
    let _push = push(
        "baseline_aac44_mono.mp4",
        &format!("rtmps://{rtmps}/live/tls"),
        true,
    );
    wait_published(&app, "live/tls").await;
    let session = app
        .hub
        .sessions()
        .into_iter()
        .find(|s| s.path == "live/tls")
        .unwrap();
    assert_eq!(session.protocol, mediarelay::hub::Protocol::Rtmp);

    let expected = vec!["aac".to_string(), "h264".to_string()];
    let plain = probe_streams(&rtmp_url(&app, "live/tls")).await;
    assert_eq!(codecs(&plain), expected, "{plain:?}");
    let hls = ffprobe(
        &format!("https://{https}/live/tls/index.m3u8"),
        &["-tls_verify", "0", "-show_streams"],
    )
    .await;
    let hls = hls["streams"].as_array().cloned().unwrap_or_default();
    assert_eq!(codecs(&hls), expected, "{hls:?}");
    let over_tls = probe_streams(&format!("rtmps://{rtmps}/live/tls")).await;
    assert_eq!(codecs(&over_tls), expected, "{over_tls:?}");
    let errors = decode_errors(&format!("rtmps://{rtmps}/live/tls"), 2).await;
    assert!(errors.is_empty(), "decode errors over RTMPS: {errors:?}");

    // The plain HTTP listener still serves the same routes.
    let r = http("GET", app.http_addr, "/live/tls/index.m3u8", b"").await;
    assert_eq!(r.status, 200);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_over_tls_with_api_tls() {
    let certs = Certs::new("api");
    let app = start_tls(&certs, "", "api_tls = true").await;
    assert_eq!(app.https_addr, None, "https_listen = \"\" keeps it closed");
    let client = reqwest::Client::builder()
        .tls_certs_only([
            reqwest::Certificate::from_pem(&std::fs::read(&certs.cert).unwrap()).unwrap(),
        ])
        .build()
        .unwrap();
    let base = format!("https://127.0.0.1:{}", app.api_addr.port());
    let r = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = client.get(format!("{base}/v1/paths")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert!(body.is_object() || body.is_array(), "{body}");
    // Plain HTTP on the API port gets no HTTP answer.
    let mut s = TcpStream::connect(app.api_addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await;
    assert!(!answer.starts_with(b"HTTP/"), "plain HTTP was answered");
    app.shutdown().await;
}

/// Each TLS listener can have its own certificate (the API one from an
/// internal CA, say), the others using the shared pair: a client that
/// trusts only one certificate reaches only the listener that has it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tls_listener_can_have_its_own_certificate() {
    let shared = Certs::new("shared");
    let api_own = Certs::new("api-own");
    let https_own = Certs::new("https-own");
    let extra = format!(
        "api_tls = true\napi_cert = \"{}\"\napi_key = \"{}\"\nhttps_cert = \"{}\"\nhttps_key = \"{}\"",
        api_own.cert.display(),
        api_own.key.display(),
        https_own.cert.display(),
        https_own.key.display(),
    );
    let app = start_tls(&shared, "127.0.0.1:0", &extra).await;
    let trusting = |certs: &Certs| {
        reqwest::Client::builder()
            .tls_certs_only([
                reqwest::Certificate::from_pem(&std::fs::read(&certs.cert).unwrap()).unwrap(),
            ])
            .build()
            .unwrap()
    };
    let api = format!("https://127.0.0.1:{}/healthz", app.api_addr.port());
    let https = format!(
        "https://127.0.0.1:{}/nope/index.m3u8",
        app.https_addr.unwrap().port()
    );
    let r = trusting(&api_own).get(&api).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(trusting(&shared).get(&api).send().await.is_err());
    assert!(trusting(&https_own).get(&https).send().await.is_ok());
    assert!(trusting(&shared).get(&https).send().await.is_err());
    assert!(trusting(&api_own).get(&https).send().await.is_err());
    // RTMPS keeps the shared pair.
    let rtmps = app.rtmps_addr.unwrap();
    let shared_der = shared.der();
    assert_eq!(
        presented(&handshake(rtmps, &shared_der).await.unwrap()),
        shared_der
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_certificate_files_reach_new_connections_and_keep_the_rtmps_publisher() {
    let certs = Certs::new("reload");
    let first = certs.der();
    let app = start_tls(&certs, "127.0.0.1:0", "reload_interval = \"200ms\"").await;
    let (https, rtmps) = (app.https_addr.unwrap(), app.rtmps_addr.unwrap());
    let _push = push(
        "baseline_aac44_mono.mp4",
        &format!("rtmps://{rtmps}/live/reload"),
        true,
    );
    wait_published(&app, "live/reload").await;
    for addr in [https, rtmps] {
        assert_eq!(presented(&handshake(addr, &first).await.unwrap()), first);
    }
    let before = frames_in(&app, "live/reload");

    let second = certs.renew();
    assert_ne!(first, second);
    eventually(Duration::from_secs(10), "the new certificate", || async {
        match handshake(rtmps, &second).await {
            Ok(tls) => Some(presented(&tls)),
            Err(_) => None,
        }
    })
    .await;
    assert_eq!(presented(&handshake(https, &second).await.unwrap()), second);
    assert!(
        handshake(rtmps, &first).await.is_err(),
        "the old certificate is no longer presented"
    );
    // The publisher that connected with the old certificate goes on.
    still_flowing(&app, "live/reload", before).await;
    let hls = ffprobe(
        &format!("https://{https}/live/reload/index.m3u8"),
        &["-show_streams"],
    )
    .await;
    assert_eq!(hls["streams"].as_array().map(Vec::len), Some(2), "{hls}");

    // A broken file keeps the second certificate.
    std::fs::write(&certs.cert, "not a certificate").unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(presented(&handshake(rtmps, &second).await.unwrap()), second);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_on_the_rtmps_port_does_not_disturb_a_plain_rtmp_publisher() {
    let certs = Certs::new("junk");
    let app = start_tls(&certs, "127.0.0.1:0", "").await;
    let rtmps = app.rtmps_addr.unwrap();
    let _push = push(
        "baseline_aac44_mono.mp4",
        &rtmp_url(&app, "live/plain"),
        true,
    );
    wait_published(&app, "live/plain").await;
    let before = frames_in(&app, "live/plain");

    // Clients that never start a handshake, one that stops halfway through
    // its ClientHello, and some that send plain RTMP or garbage.
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(TcpStream::connect(rtmps).await.unwrap());
    }
    let mut half = TcpStream::connect(rtmps).await.unwrap();
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00])
        .await
        .unwrap();
    for junk in [
        &b"\x03plain RTMP C0+C1 instead of TLS"[..],
        &[0xff; 4096][..],
    ] {
        let mut s = TcpStream::connect(rtmps).await.unwrap();
        s.write_all(junk).await.unwrap();
        // The server gives up on it at once (an alert or a close).
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "a junk client was not dropped");
    }

    // Handshakes are not run in the accept loop: a real client still gets in.
    let der = certs.der();
    let tls = handshake(rtmps, &der).await.unwrap();
    assert_eq!(presented(&tls), der);
    drop(tls);
    let over_tls = probe_streams(&format!("rtmps://{rtmps}/live/plain")).await;
    assert_eq!(codecs(&over_tls), vec!["aac".to_string(), "h264".into()]);

    still_flowing(&app, "live/plain", before).await;
    let plain = probe_streams(&rtmp_url(&app, "live/plain")).await;
    assert_eq!(plain.len(), 2);
    drop((silent, half));
    app.shutdown().await;
}

#[tokio::test]
async fn a_missing_certificate_file_is_a_start_error_naming_it() {
    let certs = Certs::new("missing");
    let toml = certs.toml("");
    let mut c = config(&toml);
    std::fs::remove_file(&certs.key).unwrap();
    c.rtmps_listen = Some("127.0.0.1:0".parse().unwrap());
    let err = App::start(c).await.err().expect("no start without the key");
    let text = err.to_string();
    assert!(
        text.starts_with("tls: tls.key: ") && text.contains(&certs.key.display().to_string()),
        "{text}"
    );
}

#[tokio::test]
async fn a_busy_https_port_is_a_bind_error_naming_the_key() {
    let certs = Certs::new("busy");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let toml = format!(
        "https_listen = \"127.0.0.1:{port}\"\nrtmps_listen = \"\"\n{}",
        certs.toml("")
    );
    match App::start(config(&toml)).await {
        Err(mediarelay::app::StartError::Bind { key, .. }) => assert_eq!(key, "https_listen"),
        Err(e) => panic!("another error: {e}"),
        Ok(_) => panic!("started on a busy port"),
    }
}

/// RTSPS: a reader over TLS (RTP interleaved inside it) and a publisher
/// over TLS, with ffmpeg.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_reads_and_publishes_over_rtsps() {
    let certs = Certs::new("rtsps");
    let app = start_tls(&certs, "", "").await;
    let rtsps = app
        .rtsps_addr
        .expect("the RTSPS listener is on with a TLS pair");
    assert_ne!(Some(rtsps), app.rtsp_addr);
    let _push = push(
        fixture("res_a_320x240.flv").to_str().unwrap(),
        &rtmp_url(&app, "live/cam"),
        true,
    );
    wait_published(&app, "live/cam").await;
    let expected = vec!["aac".to_string(), "h264".to_string()];
    let over_tls = probe_streams(&format!("rtsps://{rtsps}/live/cam")).await;
    assert_eq!(codecs(&over_tls), expected, "{over_tls:?}");
    let errors = decode_errors(&format!("rtsps://{rtsps}/live/cam"), 2).await;
    assert!(errors.is_empty(), "decode errors over RTSPS: {errors:?}");

    let file = fixture("res_a_320x240.flv");
    let _publisher = Proc(
        tokio::process::Command::new("ffmpeg")
            .args(["-v", "error", "-re", "-stream_loop", "-1", "-i"])
            .arg(&file)
            .args([
                "-c",
                "copy",
                "-f",
                "rtsp",
                &format!("rtsps://{rtsps}/live/in"),
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap(),
    );
    wait_published(&app, "live/in").await;
    let plain = probe_streams(&rtmp_url(&app, "live/in")).await;
    assert_eq!(codecs(&plain), expected, "{plain:?}");
    app.shutdown().await;
}
