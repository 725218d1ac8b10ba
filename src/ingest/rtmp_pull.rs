//! Pulling `rtmp://` and `rtmps://` sources (origin/edge): the relay
//! connects to another RTMP server as a player (RTMP 1.0 §7.2.1.1 `connect`,
//! §7.2.1.3 `createStream`, §7.2.2.1 `play`) with the sans-IO
//! [`ClientSession`], and publishes what it plays into the path through the
//! pure [`FlvIngest`] converter. Reconnects follow [`super::source`]; the
//! path's publisher slot is held across them, so readers stay connected.
//!
//! The URL is `rtmp[s]://host[:port]/app/key[?query]`: the first path segment
//! is the app, the rest the stream key. The query string (credentials such
//! as `?user=…&pass=…` or `?token=…`) is passed on in the play key, as players
//! do; user information in the URL (or `source_user`/`source_pass`) is
//! passed the same way as `user`/`pass`. None of it is logged or shown: the
//! API and logs see [`redact`](crate::hub::source::redact)ed URLs.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Mutex;
use tracing::Instrument;

use super::flv::{FlvIngest, Output};
use super::source::{self, AttemptError, RetryPolicy};
use crate::config::{PathSettings, Source};
use crate::hub::Publisher;
use crate::hub::source::{PullJob, Puller, SourceStatus};
use crate::media::Track;
use crate::protocol::rtmp::{Amf0Value, ClientEvent, ClientSession};
use crate::server::conn::BoxedStream;

/// How long TCP connect, the TLS and RTMP handshakes and the commands up to
/// `NetStream.Play.Start` may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default ports (RTMP 1.0 §5.2 says 1935; RTMPS runs on HTTPS's port).
const RTMP_PORT: u16 = 1935;
const RTMPS_PORT: u16 = 443;
/// At most this much of a text the origin sent reaches the API.
const MAX_ORIGIN_TEXT: usize = 200;

/// Pulls `rtmp://` and `rtmps://` sources for the hub.
#[derive(Default)]
pub struct RtmpPuller {
    /// The TLS client configuration for `rtmps://`, built on first use.
    tls: std::sync::OnceLock<Result<Arc<rustls::ClientConfig>, String>>,
}

impl Puller for RtmpPuller {
    fn pull(&self, job: PullJob) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let span = tracing::info_span!("rtmp_pull", path = %job.path, source = %job.status.url);
        let tls = match &job.settings.source {
            Source::Rtmp(url) if url.starts_with("rtmps:") => Some(
                self.tls
                    .get_or_init(|| tls_client_config().map_err(|e| e.to_string()))
                    .clone(),
            ),
            _ => None,
        };
        Box::pin(run(job, tls).instrument(span))
    }
}

/// A TLS client trusting the platform's roots (RFC 8446; RFC 5246 for
/// TLS 1.2 origins), on the crate's one crypto provider.
fn tls_client_config() -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()?
        .with_platform_verifier()?
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Where to connect and what to play, from a source URL.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    /// `rtmps://`: TLS to the origin.
    pub tls: bool,
    /// The host as the URL names it (IPv6 in brackets), for the TLS
    /// server name and DNS.
    pub host: String,
    pub port: u16,
    /// The `connect` command's app (the first path segment).
    pub app: String,
    /// The `play` command's stream name: the rest of the path, with the
    /// query string (credentials) appended.
    pub key: String,
    /// `connect`'s `tcUrl`: scheme, host, port and app, without credentials.
    pub tc_url: String,
}

/// The key carries credentials: never print it.
impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("tls", &self.tls)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("app", &self.app)
            .finish_non_exhaustive()
    }
}

impl Target {
    /// Reads a source URL; credentials in the user information (or the
    /// path's `source_user`/`source_pass`) become `user`/`pass` query
    /// parameters of the play key unless the query names them already.
    pub fn parse(raw: &str, settings: &PathSettings) -> Result<Target, String> {
        let url = url::Url::parse(raw).map_err(|e| format!("bad source URL: {e}"))?;
        let tls = match url.scheme() {
            "rtmp" => false,
            "rtmps" => true,
            other => return Err(format!("not an RTMP URL: {other}://")),
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or("the source URL has no host")?
            .to_string();
        let port = url
            .port()
            .unwrap_or(if tls { RTMPS_PORT } else { RTMP_PORT });
        let path = url.path().trim_start_matches('/');
        let (app, key) = path
            .split_once('/')
            .filter(|(a, k)| !a.is_empty() && !k.is_empty())
            .ok_or("an RTMP source needs an app and a stream key: rtmp://host[:port]/app/key")?;
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let mut query: Vec<String> = url
            .query()
            .filter(|q| !q.is_empty())
            .map(|q| vec![q.to_string()])
            .unwrap_or_default();
        let has = |name: &str| url.query_pairs().any(|(k, _)| k == name);
        let creds = if url.username().is_empty() {
            settings
                .source_user
                .clone()
                .map(|u| (u, settings.source_pass.clone().unwrap_or_default()))
        } else {
            Some((
                decode(url.username()),
                decode(url.password().unwrap_or_default()),
            ))
        };
        if let Some((user, pass)) = creds
            && !has("user")
            && !has("pass")
        {
            let mut s = url::form_urlencoded::Serializer::new(String::new());
            s.append_pair("user", &user);
            if !pass.is_empty() {
                s.append_pair("pass", &pass);
            }
            query.push(s.finish());
        }
        let key = if query.is_empty() {
            key.to_string()
        } else {
            format!("{key}?{}", query.join("&"))
        };
        let scheme = if tls { "rtmps" } else { "rtmp" };
        Ok(Target {
            tls,
            tc_url: format!("{scheme}://{host}:{port}/{app}"),
            host,
            port,
            app: app.to_string(),
            key,
        })
    }
}

async fn run(job: PullJob, tls: Option<Result<Arc<rustls::ClientConfig>, String>>) {
    let PullJob {
        path,
        settings,
        publisher,
        status,
        cancel,
    } = job;
    let Source::Rtmp(url) = settings.source.clone() else {
        return;
    };
    let config = publisher.hub().config();
    let timeouts = Timeouts {
        read: config.read_timeout,
        write: config.write_timeout,
    };
    let publisher = Arc::new(Mutex::new(publisher));
    source::run(&status, &cancel, RetryPolicy::default(), || {
        let publisher = Arc::clone(&publisher);
        let status = Arc::clone(&status);
        let target = Target::parse(&url, &settings);
        let tls = tls.clone();
        async move {
            let target = target.map_err(fail)?;
            let tls = match (target.tls, tls) {
                (false, _) => None,
                (true, Some(Ok(c))) => Some(c),
                (true, Some(Err(e))) => return Err(fail(format!("no TLS client: {e}"))),
                (true, None) => return Err(fail("no TLS client")),
            };
            let mut publisher = publisher.lock().await;
            attempt(&target, tls, &mut publisher, &status, timeouts).await
        }
    })
    .await;
    tracing::info!(path, "source stopped");
}

#[derive(Debug, Clone, Copy)]
struct Timeouts {
    read: Duration,
    write: Duration,
}

fn fail(message: impl Into<String>) -> AttemptError {
    AttemptError {
        message: message.into(),
        auth: false,
        was_ready: false,
    }
}

/// Text the origin sent, bounded and printable, for the API.
fn origin_text(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(MAX_ORIGIN_TEXT)
        .collect()
}

/// An onStatus or `_error` from the origin, in words for the API: the code
/// first (`NetStream.Play.StreamNotFound from origin: …`). Refusals of our
/// credentials count as authentication failures (the backoff then stops
/// hammering the origin).
fn origin_error(code: &str, description: &str) -> AttemptError {
    let code = origin_text(code);
    let description = origin_text(description);
    let auth = [".Unauthorized", ".Forbidden", "Connect.Rejected"]
        .iter()
        .any(|s| code.ends_with(s));
    let message = match (code.is_empty(), description.is_empty()) {
        (true, _) => format!("error from origin: {description}"),
        (false, true) => format!("{code} from origin"),
        (false, false) => format!("{code} from origin: {description}"),
    };
    AttemptError {
        message,
        auth,
        was_ready: false,
    }
}

/// What an event from the origin means for the pull.
#[derive(Debug, PartialEq)]
enum Step {
    /// Nothing to do.
    Continue,
    /// Send `createStream`.
    CreateStream,
    /// Send `play`.
    Play,
    /// `NetStream.Play.Start`.
    Playing,
    /// The attempt is over.
    Fail(AttemptError),
}

/// The pull's reaction to one non-media event (pure).
fn step(event: &ClientEvent) -> Step {
    match event {
        ClientEvent::Connected => Step::CreateStream,
        ClientEvent::StreamCreated { .. } => Step::Play,
        ClientEvent::PlayStarted => Step::Playing,
        ClientEvent::Error {
            command,
            code,
            description,
        } => {
            let mut e = origin_error(code, description);
            e.message = format!("{} (answer to {})", e.message, origin_text(command));
            Step::Fail(e)
        }
        ClientEvent::Status {
            level,
            code,
            description,
        } if level == "error"
            || code == "NetStream.Play.UnpublishNotify"
            || code == "NetStream.Play.Stop"
            || code == "NetStream.Play.Complete" =>
        {
            Step::Fail(origin_error(code, description))
        }
        _ => Step::Continue,
    }
}

/// The socket to the origin.
struct Link {
    stream: BoxedStream,
    buf: Box<[u8]>,
    write_timeout: Duration,
}

impl Link {
    async fn connect(
        target: &Target,
        tls: Option<Arc<rustls::ClientConfig>>,
        write_timeout: Duration,
    ) -> Result<Link, AttemptError> {
        let authority = format!("{}:{}", target.host, target.port);
        let tcp = tokio::time::timeout(REQUEST_TIMEOUT, tokio::net::TcpStream::connect(&authority))
            .await
            .map_err(|_| fail(format!("connecting to {authority} timed out")))?
            .map_err(|e| fail(format!("connecting to {authority}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let stream: BoxedStream = match tls {
            None => Box::new(tcp),
            Some(config) => {
                let name = target.host.trim_start_matches('[').trim_end_matches(']');
                let name = rustls_pki_types::ServerName::try_from(name.to_string())
                    .map_err(|e| fail(format!("TLS server name {name:?}: {e}")))?;
                let connector = tokio_rustls::TlsConnector::from(config);
                let tls = tokio::time::timeout(REQUEST_TIMEOUT, connector.connect(name, tcp))
                    .await
                    .map_err(|_| fail(format!("TLS handshake with {authority} timed out")))?
                    .map_err(|e| fail(format!("TLS handshake with {authority}: {e}")))?;
                Box::new(tls)
            }
        };
        Ok(Link {
            stream,
            buf: vec![0; 64 * 1024].into_boxed_slice(),
            write_timeout,
        })
    }

    /// Writes what the session has queued.
    async fn flush(&mut self, session: &mut ClientSession) -> Result<(), AttemptError> {
        while let Some(bytes) = session.take_output() {
            tokio::time::timeout(self.write_timeout, async {
                self.stream.write_all(&bytes).await?;
                self.stream.flush().await
            })
            .await
            .map_err(|_| {
                fail(format!(
                    "writing to origin took over {:?}",
                    self.write_timeout
                ))
            })?
            .map_err(|e| fail(format!("writing to origin: {e}")))?;
        }
        Ok(())
    }

    /// Reads once (at most `wait`) and feeds the session.
    async fn read(
        &mut self,
        session: &mut ClientSession,
        wait: Duration,
        what: &str,
    ) -> Result<(), AttemptError> {
        let n = tokio::time::timeout(wait, self.stream.read(&mut self.buf))
            .await
            .map_err(|_| fail(format!("{what} from origin for {wait:?}")))?
            .map_err(|e| fail(format!("reading from origin: {e}")))?;
        if n == 0 {
            return Err(fail("origin closed the connection"));
        }
        let data = self.buf.get(..n).unwrap_or_default();
        session
            .handle_input(data)
            .map_err(|e| fail(format!("RTMP error from origin: {e}")))
    }
}

/// One connection to the origin, until it fails or the source is stopped
/// (the caller drops this future then).
async fn attempt(
    target: &Target,
    tls: Option<Arc<rustls::ClientConfig>>,
    publisher: &mut Publisher,
    status: &SourceStatus,
    timeouts: Timeouts,
) -> Result<(), AttemptError> {
    let mut link = Link::connect(target, tls, timeouts.write).await?;
    let mut session = ClientSession::new();
    session.connect(&target.app, &target.tc_url);
    link.flush(&mut session).await?;

    let mut pull = Pull::default();
    let setup_deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
    loop {
        while let Some(event) = session.poll_event() {
            match pull.on_event(event, publisher, status) {
                Step::Continue => {}
                Step::CreateStream => session.create_stream(),
                Step::Play => session.play(&target.key),
                Step::Playing => {
                    pull.playing = true;
                    tracing::info!("origin playing");
                }
                Step::Fail(e) => return Err(pull.fail_with(e)),
            }
        }
        link.flush(&mut session).await?;
        let result = if pull.playing {
            link.read(&mut session, timeouts.read, "no media").await
        } else {
            let left = setup_deadline.saturating_duration_since(tokio::time::Instant::now());
            link.read(&mut session, left, "no answer to connect/play")
                .await
        };
        result.map_err(|e| pull.fail_with(e))?;
    }
}

/// The media side of one connection: FLV tags into the path's stream.
#[derive(Default)]
struct Pull {
    ingest: FlvIngest,
    tracks: Vec<Arc<Track>>,
    out: Vec<Output>,
    playing: bool,
    ready: bool,
}

impl Pull {
    fn fail_with(&self, mut e: AttemptError) -> AttemptError {
        e.was_ready = self.ready;
        e
    }

    fn on_event(
        &mut self,
        event: ClientEvent,
        publisher: &mut Publisher,
        status: &SourceStatus,
    ) -> Step {
        let media = match event {
            ClientEvent::Metadata { properties } => {
                let has = |key: &str| {
                    properties
                        .iter()
                        .find(|(k, _)| k == key)
                        .map(|(_, v)| !matches!(v, Amf0Value::Null | Amf0Value::Undefined))
                };
                self.ingest
                    .on_metadata(has("videocodecid"), has("audiocodecid"));
                Ok(())
            }
            ClientEvent::Video { timestamp, payload } => {
                self.ingest.on_video(timestamp, &payload, &mut self.out)
            }
            ClientEvent::Audio { timestamp, payload } => {
                self.ingest.on_audio(timestamp, &payload, &mut self.out)
            }
            other => return step(&other),
        };
        if let Err(e) = media {
            return Step::Fail(fail(format!("bad media from origin: {e}")));
        }
        if let Err(e) = self.apply(publisher) {
            return Step::Fail(e);
        }
        if !self.ready && self.ingest.started() && !self.tracks.is_empty() {
            self.ready = true;
            status.set_ready();
            tracing::info!(
                tracks = ?self.tracks.iter().map(|t| t.params.codec_string()).collect::<Vec<_>>(),
                "origin stream ready"
            );
        }
        Step::Continue
    }

    /// Hands the converter's outputs to the hub.
    fn apply(&mut self, publisher: &mut Publisher) -> Result<(), AttemptError> {
        super::publish_flv_outputs(publisher, &mut self.tracks, &mut self.out)
            .map_err(|e| fail(format!("publishing into the path: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> PathSettings {
        crate::config::Config::default().path_settings("edge")
    }

    #[test]
    fn app_key_and_query_from_the_url() {
        let t = Target::parse(
            "rtmp://origin.example:1936/live/cam/1?token=abc",
            &settings(),
        )
        .unwrap();
        assert!(!t.tls);
        assert_eq!((t.host.as_str(), t.port), ("origin.example", 1936));
        assert_eq!(t.app, "live");
        assert_eq!(t.key, "cam/1?token=abc");
        assert_eq!(t.tc_url, "rtmp://origin.example:1936/live");

        let t = Target::parse("rtmps://[::1]/live/src", &settings()).unwrap();
        assert!(t.tls);
        assert_eq!((t.host.as_str(), t.port), ("[::1]", 443));
        assert_eq!(t.key, "src");
        assert_eq!(
            Target::parse("rtmp://origin/live/src", &settings())
                .unwrap()
                .port,
            1935
        );
    }

    #[test]
    fn user_information_goes_into_the_play_key_not_the_tc_url() {
        let t = Target::parse("rtmp://edge:p%40ss@origin/live/src", &settings()).unwrap();
        assert_eq!(t.key, "src?user=edge&pass=p%40ss");
        assert!(!t.tc_url.contains("edge") && !t.tc_url.contains("ss"));
        assert!(!format!("{t:?}").contains("ss"), "{t:?}");

        let mut s = settings();
        s.source_user = Some("relay".into());
        s.source_pass = Some("pw".into());
        let t = Target::parse("rtmp://origin/live/src?x=1", &s).unwrap();
        assert_eq!(t.key, "src?x=1&user=relay&pass=pw");
        // The query's own credentials win.
        let t = Target::parse("rtmp://origin/live/src?user=a&pass=b", &s).unwrap();
        assert_eq!(t.key, "src?user=a&pass=b");
    }

    #[test]
    fn urls_without_app_or_key_are_refused() {
        for url in [
            "rtmp://origin/live",
            "rtmp://origin/",
            "rtmp://origin//src",
            "rtsp://x/a/b",
        ] {
            assert!(Target::parse(url, &settings()).is_err(), "{url}");
        }
    }

    #[test]
    fn origin_answers_in_words_and_auth_refusals_flagged() {
        let Step::Fail(e) = step(&ClientEvent::Status {
            level: "error".into(),
            code: "NetStream.Play.StreamNotFound".into(),
            description: "path \"live/x\" has no stream".into(),
        }) else {
            panic!("an error status ends the attempt");
        };
        assert_eq!(
            e.message,
            "NetStream.Play.StreamNotFound from origin: path \"live/x\" has no stream"
        );
        assert!(!e.auth);

        let Step::Fail(e) = step(&ClientEvent::Status {
            level: "error".into(),
            code: "NetStream.Play.Unauthorized".into(),
            description: String::new(),
        }) else {
            panic!();
        };
        assert!(e.auth);
        assert_eq!(e.message, "NetStream.Play.Unauthorized from origin");

        let Step::Fail(e) = step(&ClientEvent::Error {
            command: "connect".into(),
            code: "NetConnection.Connect.Rejected".into(),
            description: "x".repeat(1000) + "\u{1b}[31m",
        }) else {
            panic!();
        };
        assert!(e.auth);
        assert!(e.message.len() < 300 && !e.message.contains('\u{1b}'));

        // The publisher went away on the origin: the attempt ends.
        assert!(matches!(
            step(&ClientEvent::Status {
                level: "status".into(),
                code: "NetStream.Play.UnpublishNotify".into(),
                description: String::new(),
            }),
            Step::Fail(_)
        ));
        // Informational statuses do not.
        assert_eq!(
            step(&ClientEvent::Status {
                level: "status".into(),
                code: "NetStream.Play.Reset".into(),
                description: String::new(),
            }),
            Step::Continue
        );
        assert_eq!(step(&ClientEvent::Connected), Step::CreateStream);
        assert_eq!(
            step(&ClientEvent::StreamCreated { stream_id: 1 }),
            Step::Play
        );
        assert_eq!(step(&ClientEvent::PlayStarted), Step::Playing);
    }
}
