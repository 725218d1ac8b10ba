//! The RTMP and RTMPS listeners: accept a connection, run the TLS handshake
//! (RTMPS), the RTMP handshake and the commands up to `publish` or `play`,
//! then hand the connection to the RTMP ingest or egress. A bad peer ends
//! only its own connection.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::conn::{BoxedStream, ConnError, RtmpConn};
use crate::auth::{Action, AuthError, Credentials};
use crate::gate::{Gate, Listener};
use crate::hub::{Hub, Protocol, Role, SessionSpec};
use crate::protocol::rtmp::chunk::ChunkLimits;
use crate::protocol::rtmp::{ServerConfig, ServerEvent, ServerSession};
use crate::tls::TlsAcceptor;

/// Accepts RTMP connections until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    hub: Hub,
    gate: Arc<Gate>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    accept_loop(listener, None, hub, gate, shutdown, tasks).await
}

/// Accepts RTMPS connections until `shutdown`. Each connection runs its TLS
/// handshake (bounded by the acceptor's timeout) in its own task, then the
/// same RTMP session as [`serve`].
pub async fn serve_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    hub: Hub,
    gate: Arc<Gate>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    accept_loop(listener, Some(acceptor), hub, gate, shutdown, tasks).await
}

/// The accept loop of both listeners (RTMPS with `tls`: RTMP inside TLS,
/// RFC 8446, after the acceptor's handshake): admission right after accept,
/// then one task per connection. Nothing here waits on a peer.
async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    hub: Hub,
    gate: Arc<Gate>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    let name = if tls.is_some() { "rtmps" } else { "rtmp" };
    while let Some((socket, peer)) = crate::net::accept(&listener, name, &shutdown).await {
        // IP rule, connection rate and caps: a refused client is dropped.
        let admitted = match gate.admit_connection(Listener::Rtmp, peer.ip()) {
            Ok(guard) => guard,
            Err(refusal) => {
                tracing::debug!(listener = name, %peer, "RTMP connection refused: {refusal}");
                drop(socket);
                continue;
            }
        };
        let (hub, gate) = (hub.clone(), Arc::clone(&gate));
        let (tls, shutdown) = (tls.clone(), shutdown.clone());
        let span = if tls.is_some() {
            tracing::info_span!("rtmps", %peer)
        } else {
            tracing::info_span!("rtmp", %peer)
        };
        tasks.spawn(
            async move {
                let _admitted = admitted;
                let Some(stream) = super::conn::open(socket, tls.as_ref(), &shutdown).await else {
                    return;
                };
                match handle(stream, peer, hub, gate).await {
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

/// May the client at `peer` do `action` on `path`, with the credentials of
/// its stream key's query string (`cam1?user=…&pass=…`, `?token=…`)?
async fn authorize(
    gate: &Gate,
    hub: &Hub,
    action: Action,
    path: &str,
    query: &str,
    peer: SocketAddr,
) -> Result<(), AuthError> {
    let credentials = Credentials::from_query(query);
    gate.authorize_path(
        &hub.config(),
        action,
        path,
        "rtmp",
        &credentials,
        Some(peer.ip()),
        query,
        None,
    )
    .await
    .map(|_| ())
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
    socket: BoxedStream,
    peer: SocketAddr,
    hub: Hub,
    gate: Arc<Gate>,
) -> Result<(), ConnError> {
    let config = hub.config();
    // Room for the FLV tag header (5 bytes for AVC, 2 for AAC, more for
    // Enhanced RTMP) above the largest frame.
    let session = ServerSession::new(ServerConfig {
        limits: ChunkLimits::for_message_size(config.limits.max_frame_bytes + 1024),
        ..ServerConfig::default()
    });
    let mut conn = RtmpConn::new(
        socket,
        peer,
        session,
        config.read_timeout,
        config.write_timeout,
    );
    let mut app = String::new();
    // However slowly the bytes come (each within read_timeout), the
    // handshake and the commands up to publish or play end by this time.
    let deadline = tokio::time::Instant::now() + config.handshake_timeout;
    loop {
        tokio::time::timeout_at(deadline, conn.read_input())
            .await
            .map_err(|_| ConnError::HandshakeTimeout(config.handshake_timeout))??;
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
                        if let Err(e) =
                            Box::pin(authorize(&gate, &hub, Action::Publish, &path, &query, peer))
                                .await
                        {
                            tracing::info!(path = %path, "publish refused: {e}");
                            conn.session
                                .reject_publish(&refusal_code("Publish", &e), &e.to_string());
                            conn.flush().await?;
                            return Ok(());
                        }
                        if let Err(e) =
                            Box::pin(gate.allow_publish(&path, Protocol::Rtmp, Some(peer))).await
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
                                Box::pin(crate::ingest::rtmp::run(conn, publisher).instrument(span))
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
                        if let Err(e) =
                            Box::pin(authorize(&gate, &hub, Action::Read, &path, &query, peer))
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
                        let read = hub.read(spec, crate::hub::StartAt::LatestKeyframe);
                        return match Box::pin(read).await {
                            Ok(reading) => {
                                let span = tracing::info_span!("play", path = %path, session = reading.session.id);
                                let merge = hub.config().rtmp_merge_writes;
                                Box::pin(
                                    crate::egress::rtmp::run(conn, reading, merge).instrument(span),
                                )
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
