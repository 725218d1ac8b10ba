//! The RTMP listener: accepts a connection, runs the handshake and the
//! commands up to `publish` or `play`, then hands the connection to the RTMP
//! ingest or egress. A bad peer ends only its own connection.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::conn::{ConnError, RtmpConn};
use crate::auth::{Action, AuthError, Credentials};
use crate::gate::{Gate, Listener};
use crate::hub::{Hub, Protocol, Role, SessionSpec};
use crate::protocol::rtmp::{ServerConfig, ServerEvent, ServerSession};

/// Accepts RTMP connections until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    hub: Hub,
    gate: Arc<Gate>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    loop {
        let (socket, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: wait a little instead of spinning.
                    tracing::warn!(error = %e, "RTMP accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let peer = crate::net::canonical_peer(peer);
        // IP rule, connection rate and caps: a refused client is dropped.
        let admitted = match gate.admit_connection(Listener::Rtmp, peer.ip()) {
            Ok(guard) => guard,
            Err(refusal) => {
                tracing::debug!(%peer, "RTMP connection refused: {refusal}");
                drop(socket);
                continue;
            }
        };
        let hub = hub.clone();
        let gate = Arc::clone(&gate);
        let span = tracing::info_span!("rtmp", %peer);
        tasks.spawn(
            async move {
                let _admitted = admitted;
                match handle(socket, peer, hub, gate).await {
                    Ok(()) | Err(ConnError::Closed) => tracing::debug!("connection closed"),
                    Err(e) => tracing::info!(error = %e, "connection ended"),
                }
            }
            .instrument(span),
        );
    }
}

/// Splits what an RTMP client asked for into a path and a query string:
/// app `live`, key `cam1?token=x` → (`live/cam1`, `token=x`).
pub fn path_from(app: &str, stream_key: &str) -> (String, String) {
    let (app, app_query) = app.split_once('?').unwrap_or((app, ""));
    let (key, key_query) = stream_key.split_once('?').unwrap_or((stream_key, ""));
    let app = app.trim_matches('/');
    let key = key.trim_matches('/');
    let path = match (app.is_empty(), key.is_empty()) {
        (true, _) => key.to_string(),
        (false, true) => app.to_string(),
        (false, false) => format!("{app}/{key}"),
    };
    let query = if key_query.is_empty() {
        app_query
    } else {
        key_query
    };
    (path, query.to_string())
}

/// The RTMP status code for a refusal: `…Unauthorized` when credentials
/// are missing or wrong (an encoder shows it as such), `…Forbidden` when
/// they do not allow this.
fn refusal_code(kind: &str, e: &AuthError) -> String {
    match e {
        AuthError::Unauthenticated(_) => format!("NetStream.{kind}.Unauthorized"),
        AuthError::Forbidden(_) => format!("NetStream.{kind}.Forbidden"),
        AuthError::Unavailable(_) => format!("NetStream.{kind}.Failed"),
    }
}

async fn handle(
    socket: TcpStream,
    peer: SocketAddr,
    hub: Hub,
    gate: Arc<Gate>,
) -> Result<(), ConnError> {
    let _ = socket.set_nodelay(true);
    let config = hub.config();
    let session = ServerSession::new(ServerConfig::default());
    let mut conn = RtmpConn::new(
        socket,
        peer,
        session,
        config.read_timeout,
        config.write_timeout,
    );
    let mut app = String::new();
    loop {
        conn.read_input().await?;
        loop {
            while let Some(event) = conn.session.poll_event() {
                match event {
                    ServerEvent::ConnectRequested { app: a, tc_url } => {
                        tracing::debug!(app = %a, ?tc_url, "connect");
                        app = a;
                        conn.session.accept_connect();
                    }
                    ServerEvent::PublishRequested { stream_key, .. } => {
                        let (path, query) = path_from(&app, &stream_key);
                        let credentials = Credentials::from_query(&query);
                        if let Err(e) = gate
                            .authorize_path(
                                &hub.config(),
                                Action::Publish,
                                &path,
                                "rtmp",
                                &credentials,
                                Some(peer.ip()),
                                &query,
                                None,
                            )
                            .await
                        {
                            tracing::info!(path = %path, "publish refused: {e}");
                            conn.session
                                .reject_publish(&refusal_code("Publish", &e), &e.to_string());
                            conn.flush().await?;
                            return Ok(());
                        }
                        if let Err(e) = gate.allow_publish(&path, Protocol::Rtmp, Some(peer)).await
                        {
                            tracing::info!(path = %path, "publish refused by on_publish: {e}");
                            conn.session
                                .reject_publish("NetStream.Publish.Rejected", &e);
                            conn.flush().await?;
                            return Ok(());
                        }
                        let spec = SessionSpec {
                            protocol: Protocol::Rtmp,
                            role: Role::Publisher,
                            path: path.clone(),
                            remote: Some(peer),
                            query,
                            token: None,
                        };
                        return match hub.publish(spec) {
                            Ok(publisher) => {
                                conn.session.accept_publish();
                                conn.flush().await?;
                                let span = tracing::info_span!("publish", path = %path, session = publisher.session().id);
                                crate::ingest::rtmp::run(conn, publisher)
                                    .instrument(span)
                                    .await
                            }
                            Err(e) => {
                                tracing::info!(path = %path, error = %e, "publish refused");
                                conn.session
                                    .reject_publish("NetStream.Publish.BadName", &e.to_string());
                                conn.flush().await?;
                                Ok(())
                            }
                        };
                    }
                    ServerEvent::PlayRequested { stream_key } => {
                        let (path, query) = path_from(&app, &stream_key);
                        let credentials = Credentials::from_query(&query);
                        if let Err(e) = gate
                            .authorize_path(
                                &hub.config(),
                                Action::Read,
                                &path,
                                "rtmp",
                                &credentials,
                                Some(peer.ip()),
                                &query,
                                None,
                            )
                            .await
                        {
                            tracing::info!(path = %path, "play refused: {e}");
                            conn.session
                                .reject_play(&refusal_code("Play", &e), &e.to_string());
                            conn.flush().await?;
                            return Ok(());
                        }
                        let spec = SessionSpec {
                            protocol: Protocol::Rtmp,
                            role: Role::Reader,
                            path: path.clone(),
                            remote: Some(peer),
                            query,
                            token: None,
                        };
                        return match hub.read(spec, crate::hub::StartAt::LatestKeyframe).await {
                            Ok(reading) => {
                                let span = tracing::info_span!("play", path = %path, session = reading.session.id);
                                crate::egress::rtmp::run(conn, reading)
                                    .instrument(span)
                                    .await
                            }
                            Err(e) => {
                                tracing::info!(path = %path, error = %e, "play refused");
                                conn.session
                                    .reject_play("NetStream.Play.StreamNotFound", &e.to_string());
                                conn.flush().await?;
                                Ok(())
                            }
                        };
                    }
                    other => tracing::trace!(?other, "ignored before publish/play"),
                }
            }
            conn.flush().await?;
            // Commands the client sent without waiting for our answers.
            if !conn.session.resume()? {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::path_from;

    #[test]
    fn paths_from_app_and_key() {
        let p = |a, k| path_from(a, k);
        assert_eq!(p("live", "cam1"), ("live/cam1".into(), "".into()));
        assert_eq!(
            p("live", "cam1?token=x"),
            ("live/cam1".into(), "token=x".into())
        );
        assert_eq!(p("live/sub", "cam1"), ("live/sub/cam1".into(), "".into()));
        assert_eq!(p("", "cam1"), ("cam1".into(), "".into()));
        assert_eq!(
            p("live?token=y", "cam1"),
            ("live/cam1".into(), "token=y".into())
        );
        assert_eq!(p("live", ""), ("live".into(), "".into()));
    }
}
