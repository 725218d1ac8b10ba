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
    /// The RTSP listener, if on.
    pub rtsp_addr: Option<SocketAddr>,
    /// The RTSPS listener, if on (it needs a TLS pair).
    pub rtsps_addr: Option<SocketAddr>,
    /// The UDP ports RTSP readers get RTP and RTCP from, if on.
    pub rtsp_udp_addrs: Option<(SocketAddr, SocketAddr)>,
    hls: Arc<HlsServer>,
    hls_shortcut: Arc<server::hls_shortcut::HlsShortcut>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    webhooks: Webhooks,
    /// Stops webhook delivery, after the flush at shutdown.
    webhooks_stop: CancellationToken,
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
        let rtsp = match config.rtsp_listen {
            Some(addr) => {
                let l = bind("rtsp_listen", addr)?;
                let a = local(&l, "rtsp_listen", addr)?;
                Some((l, a))
            }
            None => None,
        };
        let rtsp_udp = match (
            rtsp.is_some(),
            config.rtsp_udp_rtp_listen,
            config.rtsp_udp_rtcp_listen,
        ) {
            (true, Some(rtp), Some(rtcp)) => {
                let bind_udp = |key, addr: ListenAddr| {
                    addr.bind_udp()
                        .map_err(|source| StartError::Bind { key, addr, source })
                };
                let rtp_socket = bind_udp("rtsp_udp_rtp_listen", rtp)?;
                let rtcp_socket = bind_udp("rtsp_udp_rtcp_listen", rtcp)?;
                Some(Arc::new(
                    server::rtsp::UdpPorts::new(rtp_socket, rtcp_socket).map_err(|source| {
                        StartError::Bind {
                            key: "rtsp_udp_rtp_listen",
                            addr: rtp,
                            source,
                        }
                    })?,
                ))
            }
            _ => None,
        };
        // TLS: the certificate first (its error names the file), then the
        // listeners that need it.
        let mut tls = TlsSetup::open(&config)?;
        let (https_addr, rtmps_addr) = (tls.https_addr, tls.rtmps_addr);
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
        hub.set_puller(Arc::new(crate::ingest::pull::SchemePuller::default()));
        hub.start_pulled_sources();
        let hls = Arc::new(HlsServer::new(hub.clone()));
        let whep = WhepServer::new(hub.clone(), Arc::clone(&engine));
        let whip = crate::ingest::whip::WhipServer::new(hub.clone(), Arc::clone(&engine));
        let tasks = TaskTracker::new();

        // Webhooks, auth and limits, rebuilt whenever the config changes.
        let config = hub.config();
        let webhooks_stop = CancellationToken::new();
        let webhooks = Webhooks::start(
            &config.webhooks,
            &config.webhook_settings,
            hub.events(),
            webhooks_stop.clone(),
        )
        .map_err(|e| StartError::Setup {
            what: "webhooks",
            reason: e.to_string(),
        })?;
        webhooks.set_on_publish(&config.on_publish);
        let gate = Arc::new(
            Gate::new(&config, Some(webhooks.clone())).map_err(|reason| StartError::Setup {
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
        let rtsp_addr = rtsp.as_ref().map(|(_, a)| *a);
        let rtsp_udp_addrs = rtsp_udp.as_ref().and_then(|u| match u.local_addrs() {
            (Some(a), Some(b)) => Some((a, b)),
            _ => None,
        });
        if let Some((listener, _)) = rtsp {
            tasks.spawn(server::rtsp::serve(
                listener,
                None,
                hub.clone(),
                Arc::clone(&gate),
                rtsp_udp,
                shutdown.clone(),
                tasks.clone(),
            ));
        }
        let rtsps_addr = tls.rtsps_addr;
        if let Some((listener, acceptor)) = tls.rtsps.take() {
            tasks.spawn(server::rtsp::serve(
                listener,
                Some(acceptor),
                hub.clone(),
                Arc::clone(&gate),
                None,
                shutdown.clone(),
                tasks.clone(),
            ));
        }
        for reloader in &tls.reloaders {
            tasks.spawn(Arc::clone(reloader).watch(tls.reload_interval, shutdown.clone()));
        }
        if let Some((rtmps, acceptor)) = tls.rtmps.take() {
            tasks.spawn(server::rtmp::serve_tls(
                rtmps,
                acceptor,
                hub.clone(),
                Arc::clone(&gate),
                shutdown.clone(),
                tasks.clone(),
            ));
        }
        let requests = Arc::new(crate::metrics::RequestCounter::default());
        let http_state = Arc::new(HttpState {
            hls: Arc::clone(&hls),
            whep,
            whip,
            requests: Arc::clone(&requests),
            gate: Arc::clone(&gate),
        });
        let http_router = server::http::router(Arc::clone(&http_state));
        let hls_shortcut = Arc::new(server::hls_shortcut::HlsShortcut::new(http_state));
        if let Some((https, acceptor)) = tls.https.take() {
            tasks.spawn(crate::tls::serve_tls(
                https,
                http_router.clone(),
                acceptor,
                shutdown.clone(),
                hub.config().handshake_timeout,
            ));
        }
        let timeouts_hub = hub.clone();
        tasks.spawn(server::h1::serve(
            http,
            http_router,
            Some(Arc::clone(&hls_shortcut) as Arc<dyn server::h1::Shortcut>),
            move || {
                let c = timeouts_hub.config();
                server::h1::Timeouts {
                    header: c.handshake_timeout,
                    write: c.write_timeout,
                }
            },
            shutdown.clone(),
        ));
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
                ("rtsp_listen", rtsp_addr),
                ("rtsps_listen", rtsps_addr),
                ("rtsp_udp_rtp_listen", rtsp_udp_addrs.map(|(a, _)| a)),
                ("rtsp_udp_rtcp_listen", rtsp_udp_addrs.map(|(_, b)| b)),
            ]
            .into_iter()
            .filter_map(|(k, a)| a.map(|a| (k, a.to_string())))
            .collect(),
        });
        let api_router = api::router(Arc::clone(&api_state));
        let api_acceptor = tls.api.take();
        match api_acceptor {
            Some(acceptor) => tasks.spawn(crate::tls::serve_tls(
                api,
                api_router,
                acceptor,
                shutdown.clone(),
                hub.config().handshake_timeout,
            )),
            None => tasks.spawn(crate::tls::serve_plain(
                api,
                api_router,
                shutdown.clone(),
                hub.config().handshake_timeout,
            )),
        };
        api_state.ready.store(true, Ordering::Relaxed);

        let off = |a: Option<SocketAddr>| a.map_or_else(|| "off".to_string(), |a| a.to_string());
        tracing::info!(
            rtmp = %rtmp_addr,
            http = %http_addr,
            api = %api_addr,
            https = %off(https_addr),
            rtmps = %off(rtmps_addr),
            rtsp = %off(rtsp_addr),
            rtsps = %off(rtsps_addr),
            rtsp_udp = %off(rtsp_udp_addrs.map(|(a, _)| a)),
            "mediarelay listening"
        );
        Ok(App {
            hub,
            rtmp_addr,
            http_addr,
            api_addr,
            webrtc_addr: engine.local_addr(),
            https_addr,
            rtmps_addr,
            rtsp_addr,
            rtsps_addr,
            rtsp_udp_addrs,
            hls,
            hls_shortcut,
            shutdown,
            tasks,
            webhooks,
            webhooks_stop,
        })
    }

    /// The HLS side (muxers and viewers), for tools and tests that serve
    /// requests in process.
    pub fn hls(&self) -> &Arc<HlsServer> {
        &self.hls
    }

    /// The plain HTTP listener's shortcut for HLS file requests, for tests
    /// that ask which requests it takes.
    pub fn hls_shortcut(&self) -> &Arc<server::hls_shortcut::HlsShortcut> {
        &self.hls_shortcut
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

    /// Stops accepting, ends every session (RTMP players are told the
    /// stream is gone), waits for the tasks, then delivers the webhook
    /// events still queued (the sessions' `*_stop` among them); all of it
    /// within `shutdown_timeout`, after which what is left is dropped.
    pub async fn shutdown(self) {
        let limit = self.hub.config().shutdown_timeout;
        let deadline = tokio::time::Instant::now() + limit;
        self.shutdown.cancel();
        self.hub.shutdown();
        self.hls.stop_all();
        self.tasks.close();
        if tokio::time::timeout_at(deadline, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                shutdown_timeout = ?limit,
                "some sessions did not end within shutdown_timeout"
            );
        }
        if !self.webhooks.flush(deadline).await {
            tracing::warn!(
                shutdown_timeout = ?limit,
                "webhook events still undelivered at shutdown_timeout are dropped"
            );
        }
        self.webhooks_stop.cancel();
    }
}

/// The TLS side of the listeners: one certificate reloader per distinct
/// (cert, key) pair, and a bound listener with its acceptor per TLS
/// listener. Each of `https_listen`, `rtmps_listen` and the API may have
/// its own pair (`tls.https_cert` …), else the shared `tls.cert`/`tls.key`.
struct TlsSetup {
    reloaders: Vec<Arc<TlsReloader>>,
    reload_interval: std::time::Duration,
    https: Option<(tokio::net::TcpListener, TlsAcceptor)>,
    rtmps: Option<(tokio::net::TcpListener, TlsAcceptor)>,
    rtsps: Option<(tokio::net::TcpListener, TlsAcceptor)>,
    /// For the API listener when `tls.api_tls`.
    api: Option<TlsAcceptor>,
    https_addr: Option<SocketAddr>,
    rtmps_addr: Option<SocketAddr>,
    rtsps_addr: Option<SocketAddr>,
}

impl TlsSetup {
    fn open(config: &Config) -> Result<TlsSetup, StartError> {
        let t = &config.tls;
        let mut loaded: Vec<((String, String), Arc<TlsReloader>)> = Vec::new();
        // The reloader for a listener: its own pair, else the shared one,
        // else none (the listener stays closed). Errors name the setting
        // and the file (`tls.https_cert: /path: …`).
        let mut reloader_for =
            |prefix: &str, cert: &str, key: &str| -> Result<Option<Arc<TlsReloader>>, StartError> {
                let (cert, key, prefix) = if !cert.is_empty() {
                    (cert, key, prefix)
                } else if t.is_configured() {
                    (t.cert.as_str(), t.key.as_str(), "tls.")
                } else {
                    return Ok(None);
                };
                if let Some((_, r)) = loaded.iter().find(|(p, _)| p.0 == cert && p.1 == key) {
                    return Ok(Some(Arc::clone(r)));
                }
                let r = TlsReloader::load(cert, key).map_err(|e| StartError::Setup {
                    what: "tls",
                    reason: e.to_string().replacen("tls.", prefix, 1),
                })?;
                loaded.push(((cert.to_string(), key.to_string()), Arc::clone(&r)));
                Ok(Some(r))
            };
        let bind = |key: &'static str, addr: ListenAddr| {
            let listener =
                addr.bind_tcp()
                    .map_err(|source| StartError::Bind { key, addr, source })?;
            let local =
                listener
                    .local_addr()
                    .map_err(|source| StartError::Bind { key, addr, source })?;
            Ok::<_, StartError>((listener, local))
        };
        let mut setup = TlsSetup {
            reloaders: Vec::new(),
            reload_interval: t.reload_interval,
            https: None,
            rtmps: None,
            rtsps: None,
            api: None,
            https_addr: None,
            rtmps_addr: None,
            rtsps_addr: None,
        };
        if let Some(addr) = config.https_listen
            && let Some(r) = reloader_for("tls.https_", &t.https_cert, &t.https_key)?
        {
            let (listener, local) = bind("https_listen", addr)?;
            setup.https = Some((listener, TlsAcceptor::http(&r).map_err(tls_setup)?));
            setup.https_addr = Some(local);
        }
        if let Some(addr) = config.rtmps_listen
            && let Some(r) = reloader_for("tls.rtmps_", &t.rtmps_cert, &t.rtmps_key)?
        {
            let (listener, local) = bind("rtmps_listen", addr)?;
            setup.rtmps = Some((listener, TlsAcceptor::rtmps(&r).map_err(tls_setup)?));
            setup.rtmps_addr = Some(local);
        }
        if config.rtsp_listen.is_some()
            && let Some(addr) = config.rtsps_listen
            && let Some(r) = reloader_for("tls.rtsps_", &t.rtsps_cert, &t.rtsps_key)?
        {
            let (listener, local) = bind("rtsps_listen", addr)?;
            setup.rtsps = Some((listener, TlsAcceptor::rtmps(&r).map_err(tls_setup)?));
            setup.rtsps_addr = Some(local);
        }
        if t.api_tls
            && let Some(r) = reloader_for("tls.api_", &t.api_cert, &t.api_key)?
        {
            setup.api = Some(TlsAcceptor::http(&r).map_err(tls_setup)?);
        }
        setup.reloaders = loaded.into_iter().map(|(_, r)| r).collect();
        Ok(setup)
    }
}

fn tls_setup(e: rustls::Error) -> StartError {
    StartError::Setup {
        what: "tls",
        reason: e.to_string(),
    }
}
