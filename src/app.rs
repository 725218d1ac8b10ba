//! Wiring: the hub, the listeners and the API from one configuration, and an
//! orderly shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{self, ApiState};
use crate::config::Config;
use crate::egress::hls::HlsServer;
use crate::egress::webrtc::WhepServer;
use crate::events::webhook::Webhooks;
use crate::gate::Gate;
use crate::hub::Hub;
use crate::net::ListenAddr;
use crate::server::{self, http::HttpState};
use crate::tls::{TlsAcceptor, TlsReloader};
use crate::webrtc::{Engine, EngineConfig};

/// The server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({key}): {source}")]
    Bind {
        key: &'static str,
        addr: ListenAddr,
        source: std::io::Error,
    },
    /// A part could not be set up from the configuration.
    #[error("{what}: {reason}")]
    Setup { what: &'static str, reason: String },
}

/// The old name of [`StartError`].
pub type BindError = StartError;

/// A running server.
pub struct App {
    pub hub: Hub,
    pub rtmp_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub api_addr: SocketAddr,
    /// The WebRTC UDP port (one for every session), if UDP is on.
    pub webrtc_addr: Option<SocketAddr>,
    /// The HTTPS listener (the routes of `http_addr` over TLS), if on.
    pub https_addr: Option<SocketAddr>,
    /// The RTMPS listener, if on (it needs `tls.cert` and `tls.key`).
    pub rtmps_addr: Option<SocketAddr>,
    hls: Arc<HlsServer>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl App {
    /// Binds every listener and starts serving.
    pub async fn start(config: Config) -> Result<App, StartError> {
        let bind = |key: &'static str, addr: ListenAddr| {
            addr.bind_tcp()
                .map_err(|source| StartError::Bind { key, addr, source })
        };
        let rtmp = bind("rtmp_listen", config.rtmp_listen)?;
        let http = bind("http_listen", config.http_listen)?;
        let api = bind("api_listen", config.api_listen)?;
        let local = |l: &tokio::net::TcpListener, key, addr| {
            l.local_addr()
                .map_err(|source| StartError::Bind { key, addr, source })
        };
        let rtmp_addr = local(&rtmp, "rtmp_listen", config.rtmp_listen)?;
        // TLS: the certificate first (its error names the file), then the
        // listeners that need it.
        let mut tls = TlsListeners::open(&config)?;
        let api_own_tls = ApiTls::open(&config)?;
        let (https_addr, rtmps_addr) = match &tls {
            Some(t) => (t.https_addr()?, t.rtmps_addr()?),
            None => (None, None),
        };
        let shutdown = CancellationToken::new();
        let engine = Engine::start(
            &EngineConfig {
                listen: config.webrtc_listen,
                tcp_listen: config.webrtc_tcp_listen,
                public_addresses: config.webrtc_public_addresses.clone(),
            },
            shutdown.clone(),
        )
        .map_err(|e| StartError::Bind {
            key: "webrtc_listen",
            addr: config
                .webrtc_listen
                .or(config.webrtc_tcp_listen)
                .unwrap_or(ListenAddr::Any(0)),
            source: std::io::Error::other(e.to_string()),
        })?;
        let http_addr = local(&http, "http_listen", config.http_listen)?;
        let api_addr = local(&api, "api_listen", config.api_listen)?;

        let hub = Hub::new(Arc::new(config));
        hub.set_puller(Arc::new(crate::ingest::rtsp::RtspPuller::default()));
        hub.start_pulled_sources();
        let hls = Arc::new(HlsServer::new(hub.clone()));
        let whep = WhepServer::new(hub.clone(), Arc::clone(&engine));
        let whip = crate::ingest::whip::WhipServer::new(hub.clone(), Arc::clone(&engine));
        let tasks = TaskTracker::new();

        // Webhooks, auth and limits, rebuilt whenever the config changes.
        let config = hub.config();
        let webhooks = Webhooks::start(
            &config.webhooks,
            &config.webhook_settings,
            hub.events(),
            shutdown.clone(),
        )
        .map_err(|e| StartError::Setup {
            what: "webhooks",
            reason: e.to_string(),
        })?;
        webhooks.set_on_publish(&config.on_publish);
        let gate =
            Arc::new(
                Gate::new(&config, Some(webhooks)).map_err(|reason| StartError::Setup {
                    what: "auth",
                    reason,
                })?,
            );
        let (mut changes, reconfigure, stop) =
            (hub.config_changes(), Arc::clone(&gate), shutdown.clone());
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    changed = changes.changed() => if changed.is_err() { return },
                }
                let next = Arc::clone(&changes.borrow_and_update());
                reconfigure.reconfigure(&next);
            }
        });

        tasks.spawn(server::rtmp::serve(
            rtmp,
            hub.clone(),
            Arc::clone(&gate),
            shutdown.clone(),
            tasks.clone(),
        ));
        if let Some(t) = &mut tls {
            let watch = Arc::clone(&t.reloader).watch(t.reload_interval, shutdown.clone());
            tasks.spawn(watch);
            if let Some(rtmps) = t.rtmps.take() {
                tasks.spawn(server::rtmp::serve_tls(
                    rtmps,
                    t.rtmps_acceptor.clone(),
                    hub.clone(),
                    Arc::clone(&gate),
                    shutdown.clone(),
                    tasks.clone(),
                ));
            }
        }
        let requests = Arc::new(crate::metrics::RequestCounter::default());
        let http_router = server::http::router(Arc::new(HttpState {
            hls: Arc::clone(&hls),
            whep,
            whip,
            requests: Arc::clone(&requests),
            gate: Arc::clone(&gate),
        }));
        if let Some(t) = &mut tls
            && let Some(https) = t.https.take()
        {
            tasks.spawn(crate::tls::serve_tls(
                https,
                http_router.clone(),
                t.http_acceptor.clone(),
                shutdown.clone(),
            ));
        }
        tasks.spawn(serve_http(http, http_router, shutdown.clone(), "http"));
        // HLS viewers that stopped asking have left.
        let (viewers_hls, viewers_hub, viewers_stop) =
            (Arc::clone(&hls), hub.clone(), shutdown.clone());
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = viewers_stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let idle = viewers_hub.config().hls.viewer_timeout;
                viewers_hls.viewers.expire(idle);
            }
        });
        let api_state = Arc::new(ApiState {
            hub: hub.clone(),
            requests,
            gate: Arc::clone(&gate),
            shutdown: shutdown.clone(),
            ready: Default::default(),
            started: SystemTime::now(),
            listeners: [
                ("rtmp_listen", Some(rtmp_addr)),
                ("http_listen", Some(http_addr)),
                ("api_listen", Some(api_addr)),
                ("webrtc_listen", engine.local_addr()),
                (
                    "webrtc_tcp_listen",
                    engine.tcp_candidates().first().copied(),
                ),
                ("https_listen", https_addr),
                ("rtmps_listen", rtmps_addr),
            ]
            .into_iter()
            .filter_map(|(k, a)| a.map(|a| (k, a.to_string())))
            .collect(),
        });
        let api_router = api::router(Arc::clone(&api_state));
        // The API's own certificate, else the shared one, else plain HTTP.
        let api_acceptor = match (&api_own_tls, &tls) {
            (Some(own), _) => {
                let watch = Arc::clone(&own.reloader).watch(own.reload_interval, shutdown.clone());
                tasks.spawn(watch);
                Some(own.acceptor.clone())
            }
            (None, Some(t)) if hub.config().tls.api_tls => Some(t.http_acceptor.clone()),
            _ => None,
        };
        match api_acceptor {
            Some(acceptor) => tasks.spawn(crate::tls::serve_tls(
                api,
                api_router,
                acceptor,
                shutdown.clone(),
            )),
            None => tasks.spawn(serve_http(api, api_router, shutdown.clone(), "api")),
        };
        api_state.ready.store(true, Ordering::Relaxed);

        let off = |a: Option<SocketAddr>| a.map_or_else(|| "off".to_string(), |a| a.to_string());
        tracing::info!(
            rtmp = %rtmp_addr,
            http = %http_addr,
            api = %api_addr,
            https = %off(https_addr),
            rtmps = %off(rtmps_addr),
            "mediarelay listening"
        );
        let c = hub.config();
        tracing::info!(
            rtsp_listen = %c.rtsp_listen,
            "the RTSP server is not served by this version; that listener is not opened"
        );
        Ok(App {
            hub,
            rtmp_addr,
            http_addr,
            api_addr,
            webrtc_addr: engine.local_addr(),
            https_addr,
            rtmps_addr,
            hls,
            shutdown,
            tasks,
        })
    }

    /// Reloads the configuration from `origin` on SIGHUP and when the file
    /// changes, until shutdown.
    pub fn watch_config(&self, origin: crate::reload::ConfigOrigin) {
        self.tasks.spawn(crate::reload::watch(
            origin,
            self.hub.clone(),
            self.shutdown.clone(),
        ));
    }

    /// Stops accepting, ends every session and waits for the tasks.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.hub.shutdown();
        self.hls.stop_all();
        self.tasks.close();
        let wait = self.tasks.wait();
        if tokio::time::timeout(std::time::Duration::from_secs(5), wait)
            .await
            .is_err()
        {
            tracing::warn!("some sessions did not end within 5 s of shutdown");
        }
    }
}

async fn serve_http(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    shutdown: CancellationToken,
    name: &'static str,
) {
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    let result = axum::serve(listener, service)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(e) = result {
        tracing::error!(listener = name, error = %e, "HTTP server failed");
    }
}

/// The certificate and the TLS listeners bound at start.
struct TlsListeners {
    reloader: Arc<TlsReloader>,
    reload_interval: std::time::Duration,
    /// `https_listen`, until it is served.
    https: Option<tokio::net::TcpListener>,
    /// `rtmps_listen`, until it is served.
    rtmps: Option<tokio::net::TcpListener>,
    https_listen: Option<ListenAddr>,
    rtmps_listen: Option<ListenAddr>,
    /// For HTTPS and the API (ALPN `h2`, `http/1.1`).
    http_acceptor: TlsAcceptor,
    /// For RTMPS (no ALPN).
    rtmps_acceptor: TlsAcceptor,
}

impl TlsListeners {
    /// Loads `[tls]` and binds `https_listen` and `rtmps_listen`; `None`
    /// when no certificate is configured (the TLS listeners stay closed).
    fn open(config: &Config) -> Result<Option<TlsListeners>, StartError> {
        if !config.tls.is_configured() {
            return Ok(None);
        }
        // The error names the setting and the file (`tls.cert: /path: …`).
        let reloader = TlsReloader::load(&config.tls.cert, &config.tls.key).map_err(|e| {
            StartError::Setup {
                what: "tls",
                reason: e.to_string(),
            }
        })?;
        let bind = |key: &'static str, addr: Option<ListenAddr>| {
            addr.map(|addr| {
                addr.bind_tcp()
                    .map_err(|source| StartError::Bind { key, addr, source })
            })
            .transpose()
        };
        let http_acceptor = TlsAcceptor::http(&reloader).map_err(tls_setup)?;
        let rtmps_acceptor = TlsAcceptor::rtmps(&reloader).map_err(tls_setup)?;
        Ok(Some(TlsListeners {
            reloader,
            http_acceptor,
            rtmps_acceptor,
            reload_interval: config.tls.reload_interval,
            https: bind("https_listen", config.https_listen)?,
            rtmps: bind("rtmps_listen", config.rtmps_listen)?,
            https_listen: config.https_listen,
            rtmps_listen: config.rtmps_listen,
        }))
    }

    fn https_addr(&self) -> Result<Option<SocketAddr>, StartError> {
        Self::local(self.https.as_ref(), "https_listen", self.https_listen)
    }

    fn rtmps_addr(&self) -> Result<Option<SocketAddr>, StartError> {
        Self::local(self.rtmps.as_ref(), "rtmps_listen", self.rtmps_listen)
    }

    fn local(
        listener: Option<&tokio::net::TcpListener>,
        key: &'static str,
        addr: Option<ListenAddr>,
    ) -> Result<Option<SocketAddr>, StartError> {
        let (Some(listener), Some(addr)) = (listener, addr) else {
            return Ok(None);
        };
        listener
            .local_addr()
            .map(Some)
            .map_err(|source| StartError::Bind { key, addr, source })
    }
}

/// The API listener's own certificate (`tls.api_cert`, `tls.api_key`).
struct ApiTls {
    reloader: Arc<TlsReloader>,
    reload_interval: std::time::Duration,
    acceptor: TlsAcceptor,
}

impl ApiTls {
    fn open(config: &Config) -> Result<Option<ApiTls>, StartError> {
        let t = &config.tls;
        if !t.api_tls || t.api_cert.is_empty() {
            return Ok(None);
        }
        let reloader =
            TlsReloader::load(&t.api_cert, &t.api_key).map_err(|e| StartError::Setup {
                what: "tls",
                reason: e.to_string().replacen("tls.", "tls.api_", 1),
            })?;
        let acceptor = TlsAcceptor::http(&reloader).map_err(tls_setup)?;
        Ok(Some(ApiTls {
            reloader,
            reload_interval: t.reload_interval,
            acceptor,
        }))
    }
}

fn tls_setup(e: rustls::Error) -> StartError {
    StartError::Setup {
        what: "tls",
        reason: e.to_string(),
    }
}
