//! Serving an axum `Router` over TLS: HTTP/1.1 or HTTP/2 chosen by ALPN
//! (RFC 7301), with the peer address given to handlers as
//! `ConnectInfo<SocketAddr>` like the plain listeners.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tracing::Instrument;

use super::TlsAcceptor;

/// Accepts connections on `listener` until `shutdown`, runs the TLS
/// handshake (bounded by the acceptor's timeout) and serves `router` on each
/// connection; an HTTP/1 request head that takes longer than
/// `header_timeout` to arrive ends its connection (slowloris). On shutdown,
/// connections finish their requests in flight (HTTP/2 gets GOAWAY) and the
/// function returns once they have all ended.
pub async fn serve_tls(
    listener: TcpListener,
    router: Router,
    acceptor: TlsAcceptor,
    shutdown: CancellationToken,
    header_timeout: std::time::Duration,
) {
    serve(listener, router, Some(acceptor), shutdown, header_timeout).await
}

/// [`serve_tls`] without TLS (the control API's plain listener).
pub async fn serve_plain(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    header_timeout: std::time::Duration,
) {
    serve(listener, router, None, shutdown, header_timeout).await
}

async fn serve(
    listener: TcpListener,
    router: Router,
    acceptor: Option<TlsAcceptor>,
    shutdown: CancellationToken,
    header_timeout: std::time::Duration,
) {
    let tasks = TaskTracker::new();
    let name = if acceptor.is_some() { "https" } else { "http" };
    while let Some((tcp, peer)) = crate::net::accept(&listener, name, &shutdown).await {
        let acceptor = acceptor.clone();
        let router = router.clone();
        let shutdown = shutdown.clone();
        let span = tracing::debug_span!("http", %peer, tls = acceptor.is_some());
        tasks.spawn(
            async move {
                let Some(acceptor) = acceptor else {
                    let io = TokioIo::new(tcp);
                    serve_connection(io, peer, router, shutdown, header_timeout).await;
                    return;
                };
                let tls = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    tls = acceptor.accept(tcp) => match tls {
                        Ok(tls) => tls,
                        Err(e) => {
                            tracing::debug!(error = %e, "TLS handshake failed");
                            return;
                        }
                    },
                };
                let io = TokioIo::new(tls);
                serve_connection(io, peer, router, shutdown, header_timeout).await;
            }
            .instrument(span),
        );
    }
    tasks.close();
    tasks.wait().await;
}

/// One connection, HTTP/1 or HTTP/2, until it ends or, after `shutdown`,
/// its requests in flight are done.
async fn serve_connection<I>(
    io: TokioIo<I>,
    peer: SocketAddr,
    router: Router,
    shutdown: CancellationToken,
    header_timeout: std::time::Duration,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(router.map_request(with_peer(peer)));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout);
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "HTTP connection ended");
                }
                break;
            }
            _ = shutdown.cancelled(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Puts the peer address into each request, as
/// `into_make_service_with_connect_info::<SocketAddr>()` does for plain HTTP.
pub(crate) fn with_peer<B>(
    peer: SocketAddr,
) -> impl Fn(http::Request<B>) -> http::Request<axum::body::Body> + Clone
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    move |req| {
        let mut req = req.map(axum::body::Body::new);
        req.extensions_mut().insert(ConnectInfo(peer));
        req
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::testing::{
        TempDir, cert_der_of, client_trusting, overwrite_self_signed, write_self_signed,
    };
    use crate::tls::{HTTP_ALPN, TlsReloader};
    use axum::routing::get;
    use rustls_pki_types::ServerName;
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::TlsConnector;

    /// One HTTPS GET over a new connection; returns the status line's code,
    /// the body and the certificate the server presented.
    async fn get_over_tls(
        addr: SocketAddr,
        client: Arc<rustls::ClientConfig>,
    ) -> std::io::Result<(u16, String, Vec<u8>)> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = TlsConnector::from(client).connect(name, tcp).await?;
        let presented = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
        tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await?;
        let mut text = String::new();
        tls.read_to_string(&mut text).await?;
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        Ok((head[9..12].parse().unwrap(), body.to_string(), presented))
    }

    #[tokio::test]
    async fn serves_a_router_over_tls_and_picks_up_new_certificates() {
        let dir = TempDir::new("serve");
        let (cert, key) = write_self_signed(&dir, "srv", "localhost");
        let first = cert_der_of(&cert);
        let reloader = TlsReloader::load(&cert, &key).unwrap();
        let acceptor = crate::tls::TlsAcceptor::http(&reloader).unwrap();
        let router = Router::new().route(
            "/",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                format!("hello {}", peer.ip())
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve_tls(
            listener,
            router,
            acceptor,
            shutdown.clone(),
            Duration::from_secs(10),
        ));
        tokio::spawn(Arc::clone(&reloader).watch(Duration::from_millis(50), shutdown.clone()));

        let (status, body, presented) = get_over_tls(addr, client_trusting(&first, &[b"http/1.1"]))
            .await
            .unwrap();
        assert_eq!(status, 200);
        assert_eq!(body, "hello 127.0.0.1");
        assert_eq!(presented, first);

        // ALPN offers HTTP/2.
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let tls = TlsConnector::from(client_trusting(&first, &HTTP_ALPN))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        drop(tls);

        // A new certificate is presented to new connections after a check.
        let second = overwrite_self_signed(&cert, &key, "localhost");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while reloader.current().cert[0].as_ref() != second.as_slice() {
            assert!(tokio::time::Instant::now() < deadline, "not reloaded");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (status, _, presented) = get_over_tls(addr, client_trusting(&second, &[b"http/1.1"]))
            .await
            .unwrap();
        assert_eq!(status, 200);
        assert_eq!(presented, second);
        assert!(
            get_over_tls(addr, client_trusting(&first, &[b"http/1.1"]))
                .await
                .is_err(),
            "the old certificate is gone"
        );

        // A broken file keeps the second certificate.
        std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nbroken\n").unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (status, _, presented) = get_over_tls(addr, client_trusting(&second, &[b"http/1.1"]))
            .await
            .unwrap();
        assert_eq!(status, 200);
        assert_eq!(presented, second);

        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .unwrap()
            .unwrap();
    }

    /// Slowloris over HTTPS: a request head that never completes ends the
    /// connection at the header timeout; a complete one is answered.
    #[tokio::test]
    async fn a_request_head_that_trickles_is_cut_off_at_the_header_timeout() {
        let dir = TempDir::new("slow");
        let (cert, key) = write_self_signed(&dir, "srv", "localhost");
        let first = cert_der_of(&cert);
        let reloader = TlsReloader::load(&cert, &key).unwrap();
        let acceptor = crate::tls::TlsAcceptor::http(&reloader).unwrap();
        let router = Router::new().route("/", get(|| async { "ok" }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        tokio::spawn(serve_tls(
            listener,
            router,
            acceptor,
            shutdown.clone(),
            Duration::from_millis(500),
        ));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = TlsConnector::from(client_trusting(&first, &[b"http/1.1"]))
            .connect(name, tcp)
            .await
            .unwrap();
        let t0 = std::time::Instant::now();
        let mut closed = false;
        for byte in b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaaaaaa" {
            if tls.write_all(&[*byte]).await.is_err() {
                closed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut buf = [0u8; 256];
            if let Ok(r) = tokio::time::timeout(Duration::from_millis(1), tls.read(&mut buf)).await
            {
                // An answer (408) or the end of the connection.
                assert!(!matches!(r, Ok(n) if n > 0 && !buf.starts_with(b"HTTP/1.1 408")));
                closed = true;
                break;
            }
        }
        assert!(closed, "still open after {:?}", t0.elapsed());
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
        let (status, body, _) = get_over_tls(addr, client_trusting(&first, &[b"http/1.1"]))
            .await
            .unwrap();
        assert_eq!((status, body.as_str()), (200, "ok"));
        shutdown.cancel();
    }

    #[tokio::test]
    async fn rtmps_acceptor_carries_bytes_and_times_out_silent_clients() {
        let dir = TempDir::new("rtmps");
        let (cert, key) = write_self_signed(&dir, "srv", "localhost");
        let der = cert_der_of(&cert);
        let reloader = TlsReloader::load(&cert, &key).unwrap();
        let acceptor = crate::tls::TlsAcceptor::rtmps(&reloader)
            .unwrap()
            .with_handshake_timeout(Duration::from_millis(200));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let echo = {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let (tcp, _) = listener.accept().await.unwrap();
                let mut tls = acceptor.accept(tcp).await.unwrap();
                assert_eq!(tls.get_ref().1.alpn_protocol(), None);
                let mut buf = [0u8; 4];
                tls.read_exact(&mut buf).await.unwrap();
                tls.write_all(&buf).await.unwrap();
                tls.flush().await.unwrap();
                // A client that never starts its handshake.
                let (tcp, _) = listener.accept().await.unwrap();
                acceptor.accept(tcp).await.map(|_| ()).unwrap_err()
            })
        };
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut tls = TlsConnector::from(client_trusting(&der, &[]))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        tls.write_all(b"\x03abc").await.unwrap();
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"\x03abc");
        let _silent = tokio::net::TcpStream::connect(addr).await.unwrap();
        let err = tokio::time::timeout(Duration::from_secs(5), echo)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    }
}
