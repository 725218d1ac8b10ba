//! The entrance every server passes a client through: IP rules, rate
//! limits and connection caps (`limits`), then authentication and
//! permissions (`auth`), and the synchronous `on_publish` hook. Built from
//! the configuration and rebuilt when it changes, so protocol servers only
//! ask "may this client do this?".

use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::{
    Action, AuthError, AuthRequest, Authenticator, Credentials, Identity, WWW_AUTHENTICATE,
};
use crate::config::{Config, IpRulesConfig};
use crate::events::webhook::Webhooks;
use crate::events::{Event, EventKind};
use crate::limits::{ConnectionGuard, IpRule, Limits, RateLimiter, Refusal};

/// Which listener a connection or request came in on (for its IP rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Api,
    Http,
    Rtmp,
    Rtsp,
}

struct Current {
    auth: Authenticator,
    limits: Arc<Limits>,
    ip_rules: IpRulesConfig,
}

/// Admission and authorization for every server.
pub struct Gate {
    current: RwLock<Arc<Current>>,
    webhooks: Option<Webhooks>,
}

impl Gate {
    /// Builds the gate; `webhooks` carries the `on_publish` hook.
    pub fn new(config: &Config, webhooks: Option<Webhooks>) -> Result<Gate, String> {
        Ok(Gate {
            current: RwLock::new(Arc::new(Self::build(config)?)),
            webhooks,
        })
    }

    fn build(config: &Config) -> Result<Current, String> {
        Ok(Current {
            auth: Authenticator::from_config(config)?,
            limits: Arc::new(Limits::new(&config.limits)),
            ip_rules: config.ip_rules.clone(),
        })
    }

    fn now(&self) -> Arc<Current> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Rebuilds from a changed configuration. Rate-limit buckets start
    /// over; open connections keep their places (their guards belong to
    /// the limiter they were admitted by).
    pub fn reconfigure(&self, config: &Config) {
        match Self::build(config) {
            Ok(next) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
                if let Some(w) = &self.webhooks {
                    w.reconfigure(&config.webhooks);
                    w.set_on_publish(&config.on_publish);
                }
            }
            Err(e) => tracing::error!("access settings not changed: {e}"),
        }
    }

    pub fn limits(&self) -> Arc<Limits> {
        Arc::clone(&self.now().limits)
    }

    pub fn webhooks(&self) -> Option<&Webhooks> {
        self.webhooks.as_ref()
    }

    fn rule(&self, listener: Listener) -> IpRule {
        let c = self.now();
        Self::rule_of(&c, listener).clone()
    }

    fn rule_of(c: &Current, listener: Listener) -> &IpRule {
        match listener {
            Listener::Api => &c.ip_rules.api,
            Listener::Http => &c.ip_rules.http,
            Listener::Rtmp => &c.ip_rules.rtmp,
            Listener::Rtsp => &c.ip_rules.rtsp,
        }
    }

    /// Whether `listener`'s IP rule lets `ip` in.
    pub fn permits(&self, listener: Listener, ip: IpAddr) -> bool {
        Self::rule_of(&self.now(), listener).permits(ip)
    }

    /// A new RTMP (or RTSP) connection from `ip`: its listener's IP rule,
    /// the connection rate and the connection caps. Keep the guard for the
    /// life of the connection.
    pub fn admit_connection(
        &self,
        listener: Listener,
        ip: IpAddr,
    ) -> Result<ConnectionGuard, Refusal> {
        let limits = self.limits();
        let rate = match listener {
            Listener::Rtsp => &limits.rtsp_connect,
            _ => &limits.rtmp_connect,
        };
        limits.admit_connection(&self.rule(listener), rate, ip)
    }

    /// May `credentials` from `ip` do `action` on `path`? The path's IP
    /// rule for the action (from `config`) first, then authentication and
    /// permissions.
    #[allow(clippy::too_many_arguments)]
    pub async fn authorize_path(
        &self,
        config: &Config,
        action: Action,
        path: &str,
        protocol: &str,
        credentials: &Credentials,
        ip: Option<IpAddr>,
        query: &str,
        session_id: Option<u64>,
    ) -> Result<Identity, AuthError> {
        if let Some(ip) = ip {
            let settings = config.path_settings(path);
            let rule = match action {
                Action::Publish => Some(&settings.publish_ips),
                Action::Read => Some(&settings.read_ips),
                _ => None,
            };
            if rule.is_some_and(|r| !r.permits(ip)) {
                return Err(AuthError::Forbidden(format!(
                    "{ip} may not {action} {path:?}"
                )));
            }
        }
        self.authorize(&AuthRequest {
            action,
            path,
            protocol,
            credentials,
            ip,
            query,
            session_id,
        })
        .await
    }

    /// Authentication and permissions alone.
    pub async fn authorize(&self, req: &AuthRequest<'_>) -> Result<Identity, AuthError> {
        let auth = self.now().auth.clone();
        auth.authorize(req).await
    }

    /// Whether no credentials are ever needed (no users, JWT or hook).
    pub fn is_open(&self) -> bool {
        self.now().auth.is_open()
    }

    /// The `on_publish` hook's answer for a publisher about to start.
    pub async fn allow_publish(
        &self,
        path: &str,
        protocol: crate::hub::Protocol,
        remote: Option<std::net::SocketAddr>,
    ) -> Result<(), String> {
        let Some(w) = &self.webhooks else {
            return Ok(());
        };
        let mut e = Event::new(EventKind::PublishStart);
        e.path = Some(path.to_string());
        e.protocol = Some(protocol);
        e.remote_addr = remote.map(|a| a.to_string());
        w.allow_publish(&e).await
    }
}

/// An HTTP answer for a refused request: 401 with `WWW-Authenticate`, 403
/// or 503, and the reason as JSON.
pub fn auth_error_response(e: &AuthError) -> Response {
    let status = e.status();
    let mut r = (
        status,
        axum::Json(serde_json::json!({ "error": e.to_string() })),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(WWW_AUTHENTICATE),
        );
    }
    r
}

/// The client address of a request served with connect info.
fn peer(req: &Request) -> Option<IpAddr> {
    req.extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| crate::net::canonical_peer(c.0).ip())
}

/// Middleware for the API listener: its IP rule (403), the API rate limit
/// (429 with `Retry-After`), then the `api` permission (or `metrics` for
/// `/metrics`; `/healthz` and `/readyz` are open to whoever passes the IP
/// rule, for probes).
pub async fn guard_api(State(gate): State<Arc<Gate>>, req: Request, next: Next) -> Response {
    let ip = peer(&req);
    if let Some(ip) = ip {
        if !gate.permits(Listener::Api, ip) {
            return refused(StatusCode::FORBIDDEN, format!("{ip} may not use the API"));
        }
        if let Err(wait) = rate(&gate.limits().api, ip) {
            return crate::limits::http::too_many_requests(wait);
        }
    }
    let path = req.uri().path();
    let action = match path {
        p if crate::api::openapi::UNAUTHENTICATED.contains(&p) => None,
        "/metrics" => Some(Action::Metrics),
        _ => Some(Action::Api),
    };
    if let Some(action) = action
        && !gate.is_open()
    {
        let credentials = match credentials_of(&req) {
            Ok(c) => c,
            Err(e) => return auth_error_response(&e),
        };
        let query = req.uri().query().unwrap_or("");
        let question = AuthRequest {
            action,
            path: "",
            protocol: "api",
            credentials: &credentials,
            ip,
            query,
            session_id: None,
        };
        if let Err(e) = gate.authorize(&question).await {
            tracing::info!(?ip, %path, "API request refused: {e}");
            return auth_error_response(&e);
        }
    }
    next.run(req).await
}

/// Middleware for the public HTTP listener: its IP rule (403) and, for
/// WHEP/WHIP POSTs, the rate limit (429).
pub async fn guard_http(State(gate): State<Arc<Gate>>, req: Request, next: Next) -> Response {
    if let Some(ip) = peer(&req) {
        if !gate.permits(Listener::Http, ip) {
            return refused(StatusCode::FORBIDDEN, format!("{ip} is not allowed here"));
        }
        if req.method() == axum::http::Method::POST
            && let Err(wait) = rate(&gate.limits().webrtc_post, ip)
        {
            return crate::limits::http::too_many_requests(wait);
        }
    }
    next.run(req).await
}

fn rate(limiter: &RateLimiter, ip: IpAddr) -> Result<(), std::time::Duration> {
    limiter.check(ip)
}

fn refused(status: StatusCode, message: String) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

/// Credentials of an HTTP request: `Authorization` (Basic or Bearer) over
/// the query string (`user`/`pass`, `token`/`jwt`).
pub fn credentials_of(req: &Request) -> Result<Credentials, AuthError> {
    let from_headers = Credentials::from_headers(req.headers())?;
    let from_query = Credentials::from_query(req.uri().query().unwrap_or(""));
    Ok(from_headers.merge(from_query))
}
