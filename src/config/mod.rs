//! Configuration: types, embedded defaults, file + environment + flag layering,
//! and validation with errors that name the file, the key and the reason.

mod auth;
pub mod live;
mod load;
mod path_name;
mod webhook;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use auth::{
    ANY_USER, Action, AuthConfig, HookConfig, JwtConfig, PASS_FORM_ERROR, PassKind, Permission,
    REDACTED, Secret, UserConfig,
};
pub use load::{ConfigError, ENV_PREFIX, Overrides, load, load_text};
pub use path_name::{PathNameError, glob_match, validate_path_name, validate_rule_name};
pub use webhook::{OnPublishConfig, OnPublishDefault, WebhookConfig, WebhookSettings};

use crate::limits::{IpNetwork, IpRule};
use crate::net::ListenAddr;

/// The whole configuration. Every key has a default, so an empty file (or no
/// file) is a working configuration: any RTMP push to any path is accepted.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `error`, `warn`, `info`, `debug` or `trace`, or a `tracing` filter
    /// such as `info,mediarelay::hub=debug`.
    pub log_level: String,
    /// RTMP listener (publish and play).
    pub rtmp_listen: ListenAddr,
    /// HTTP listener: HLS, WHEP/WHIP, player page.
    pub http_listen: ListenAddr,
    /// Control API listener. Loopback by default: never public unless you say so.
    pub api_listen: ListenAddr,
    /// HTTPS listener serving the same routes as `http_listen` with the
    /// `[tls]` certificate; `""` (the default) turns it off.
    #[serde(with = "optional_listen")]
    pub https_listen: Option<ListenAddr>,
    /// RTMP over TLS (RTMPS). Opened only when `tls.cert` and `tls.key` are
    /// set; `""` turns it off.
    #[serde(with = "optional_listen")]
    pub rtmps_listen: Option<ListenAddr>,
    /// WebRTC UDP port shared by all sessions (WHEP, WHIP); `""` for ICE
    /// over TCP only.
    #[serde(with = "optional_listen")]
    pub webrtc_listen: Option<ListenAddr>,
    /// ICE over TCP for clients whose UDP is blocked; `""` turns it off.
    #[serde(with = "optional_listen")]
    pub webrtc_tcp_listen: Option<ListenAddr>,
    /// Addresses (IPs or hostnames) to advertise as ICE host candidates,
    /// besides the local ones: the public address behind NAT, in Docker, in
    /// Kubernetes.
    pub webrtc_public_addresses: Vec<String>,
    /// RTSP listener: every path is readable at `rtsp://HOST:PORT/{path}`
    /// (RTP over TCP interleaved, or UDP with the two ports below); `""`
    /// turns it off.
    #[serde(with = "optional_listen")]
    pub rtsp_listen: Option<ListenAddr>,
    /// RTSP over TLS (RTSPS, RTP interleaved in the TLS connection). Opened
    /// only when `tls.cert` and `tls.key` (or `tls.rtsps_cert`/`_key`) are
    /// set; `""` turns it off.
    #[serde(with = "optional_listen")]
    pub rtsps_listen: Option<ListenAddr>,
    /// An RTSP session that is playing or recording and sends nothing (no
    /// request, no RTCP over TCP or to the UDP RTCP port) for this long is
    /// closed; announced in `Session: …;timeout=`.
    #[serde(with = "humantime_serde")]
    pub rtsp_session_timeout: Duration,
    /// UDP port RTSP readers get RTP from (`server_port`); `""` offers RTP
    /// over TCP only.
    #[serde(with = "optional_listen")]
    pub rtsp_udp_rtp_listen: Option<ListenAddr>,
    /// UDP port of the RTCP that goes with it (sender reports); needed with
    /// `rtsp_udp_rtp_listen`.
    #[serde(with = "optional_listen")]
    pub rtsp_udp_rtcp_listen: Option<ListenAddr>,
    /// A connection that sends nothing for this long is closed (an idle
    /// HTTP keep-alive connection between requests is not timed).
    #[serde(with = "humantime_serde")]
    pub read_timeout: Duration,
    /// A write to a peer that does not complete in this long closes it (on
    /// the HTTP listener: the writes of one response).
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
    /// An RTMP connection must have published or started playing this long
    /// after it was accepted (handshake and commands), however slowly its
    /// bytes come. HTTP(S): a request head must arrive within it (from the
    /// connection's start for its first request, from the first byte for
    /// the next ones).
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Frames queued per reader before it is considered lagging and skips to
    /// the next keyframe.
    pub reader_queue_frames: usize,
    /// Upper bound for the bytes each stream's GOP cache holds.
    pub gop_cache_max_bytes: usize,
    /// RTMP players get their frames in batches spanning this much media
    /// time (one wake and one socket write per batch: more players per core,
    /// this much more latency, like SRS's `mw_latency`). Zero: each video
    /// frame goes out as it arrives, the audio before it riding along.
    #[serde(with = "humantime_serde")]
    pub rtmp_merge_writes: Duration,
    /// On SIGTERM/SIGINT: how long sessions get to end (players are told
    /// the stream is gone) and queued webhook events to be delivered before
    /// the process exits anyway.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    pub hls: HlsConfig,
    /// Certificate and key for `https_listen`, `rtmps_listen` and `api_tls`.
    pub tls: TlsConfig,
    /// Admission control: request and connection rates, connection caps,
    /// body sizes.
    pub limits: LimitsConfig,
    /// Who may connect to each listener.
    pub ip_rules: IpRulesConfig,
    /// Settings for every path that no `[paths."…"]` rule names.
    pub path_defaults: PathRule,
    /// Path rules: an exact path name, or a pattern where `*` matches within
    /// one path segment and `**` matches across segments.
    pub paths: BTreeMap<String, PathRule>,
    /// Endpoints that get every event (or the kinds they name) as a signed
    /// POST (`[[webhooks]]`).
    pub webhooks: Vec<WebhookConfig>,
    /// Delivery tunables shared by every webhook.
    pub webhook_settings: WebhookSettings,
    /// A synchronous hook asked before a publisher is accepted.
    pub on_publish: OnPublishConfig,
    /// Users and what they may do (`[[users]]`). None at all (and no
    /// `[auth.jwt]`, no `[auth.hook]`): everyone may do everything.
    pub users: Vec<UserConfig>,
    /// JWT and the external auth hook.
    pub auth: AuthConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            log_level: "info".into(),
            rtmp_listen: ListenAddr::Any(1935),
            http_listen: ListenAddr::Any(8080),
            api_listen: ListenAddr::Addr(([127, 0, 0, 1], 9997).into()),
            https_listen: None,
            rtmps_listen: Some(ListenAddr::Any(1936)),
            webrtc_listen: Some(ListenAddr::Any(8189)),
            webrtc_tcp_listen: Some(ListenAddr::Any(8189)),
            webrtc_public_addresses: Vec::new(),
            rtsp_listen: Some(ListenAddr::Any(8554)),
            rtsps_listen: Some(ListenAddr::Any(8322)),
            rtsp_session_timeout: Duration::from_secs(60),
            rtsp_udp_rtp_listen: Some(ListenAddr::Any(8000)),
            rtsp_udp_rtcp_listen: Some(ListenAddr::Any(8001)),
            read_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            reader_queue_frames: 512,
            gop_cache_max_bytes: 32 << 20,
            rtmp_merge_writes: Duration::ZERO,
            shutdown_timeout: Duration::from_secs(5),
            hls: HlsConfig::default(),
            tls: TlsConfig::default(),
            limits: LimitsConfig::default(),
            ip_rules: IpRulesConfig::default(),
            path_defaults: PathRule::default(),
            paths: BTreeMap::new(),
            webhooks: Vec::new(),
            webhook_settings: WebhookSettings::default(),
            on_publish: OnPublishConfig::default(),
            users: Vec::new(),
            auth: AuthConfig::default(),
        }
    }
}

/// A listener that may be off: `""` in the file.
mod optional_listen {
    use super::ListenAddr;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<ListenAddr>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(a) => s.collect_str(a),
            None => s.serialize_str(""),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ListenAddr>, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() {
            return Ok(None);
        }
        s.parse().map(Some).map_err(serde::de::Error::custom)
    }
}

/// LL-HLS settings (RFC 8216bis).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HlsConfig {
    /// Partial segment target duration (`PART-TARGET`); no part is longer.
    #[serde(with = "humantime_serde")]
    pub part_duration: Duration,
    /// A segment is cut at the first keyframe after this much media.
    #[serde(with = "humantime_serde")]
    pub segment_duration: Duration,
    /// `EXT-X-TARGETDURATION`: fixed for the life of a playlist. A GOP longer
    /// than this still ends its segment at the next keyframe (logged once).
    #[serde(with = "humantime_serde")]
    pub target_duration: Duration,
    /// Complete segments kept in the playlist window (and in memory).
    pub segment_count: usize,
    /// A muxer with no HLS request for this long is stopped.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// How long the first request for a path waits for its first segment.
    #[serde(with = "humantime_serde")]
    pub start_timeout: Duration,
    /// An HLS viewer (a session recognised by cookie, `hls_session` query
    /// parameter, or address and User-Agent) with no request for this long
    /// has left.
    #[serde(with = "humantime_serde")]
    pub viewer_timeout: Duration,
    /// Where each segment's bytes are kept for `sendfile(2)`: unnamed files
    /// in this directory (`""`: the system's temporary directory), or
    /// `"memory"` for memory files (`egress::hls::file`).
    pub segment_dir: String,
}

impl Default for HlsConfig {
    fn default() -> Self {
        HlsConfig {
            part_duration: Duration::from_millis(200),
            segment_duration: Duration::from_secs(1),
            target_duration: Duration::from_secs(4),
            segment_count: 7,
            idle_timeout: Duration::from_secs(60),
            start_timeout: Duration::from_secs(10),
            viewer_timeout: Duration::from_secs(15),
            segment_dir: String::new(),
        }
    }
}

/// TLS (RFC 8446, and RFC 5246 for TLS 1.2 clients) for the HTTPS, RTMPS and
/// API listeners: one certificate chain and key for all of them, re-read when
/// the files change.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM file with the certificate chain, leaf first; `""`: no TLS.
    pub cert: String,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: String,
    /// Serve the control API over TLS instead of plain HTTP.
    pub api_tls: bool,
    /// A listener's own certificate and key, instead of `cert` and `key`
    /// (`""`: the shared pair): the API's (e.g. from an internal CA), the
    /// HTTPS listener's, the RTMPS listener's.
    pub api_cert: String,
    pub api_key: String,
    pub https_cert: String,
    pub https_key: String,
    pub rtmps_cert: String,
    pub rtmps_key: String,
    /// A pair for `rtsps_listen` only (else `cert`/`key`).
    pub rtsps_cert: String,
    pub rtsps_key: String,
    /// How often the files' modification times are checked; a change loads
    /// the new pair (a broken pair keeps the old one and logs an error).
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert: String::new(),
            key: String::new(),
            api_tls: false,
            api_cert: String::new(),
            api_key: String::new(),
            https_cert: String::new(),
            https_key: String::new(),
            rtmps_cert: String::new(),
            rtmps_key: String::new(),
            rtsps_cert: String::new(),
            rtsps_key: String::new(),
            reload_interval: Duration::from_secs(5),
        }
    }
}

impl TlsConfig {
    /// Whether a certificate and key are configured.
    pub fn is_configured(&self) -> bool {
        !self.cert.is_empty() && !self.key.is_empty()
    }
}

/// Admission control. Rates are per client (an IPv4 address, or an IPv6 /64
/// prefix), with a burst of twice the rate; `0` turns a limit off.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Control API requests per second per client.
    pub api_rate: u32,
    /// WHEP/WHIP POSTs (new WebRTC sessions) per second per client.
    pub webrtc_post_rate: u32,
    /// New RTMP/RTMPS/RTSP connections per second per client.
    pub connection_rate: u32,
    /// Open RTMP/RTMPS/RTSP connections per client.
    pub max_connections_per_ip: u32,
    /// Open RTMP/RTMPS/RTSP connections in all.
    pub max_connections: u32,
    /// Readers of one path (every protocol); `0`: unlimited.
    pub max_readers_per_path: u32,
    /// Largest request body the API and WHEP/WHIP accept.
    pub max_body_bytes: usize,
    /// Paths with a publisher or a stream at once; a publish that would
    /// open one more is refused. `0`: unlimited.
    pub max_paths: u32,
    /// Largest media frame (one access unit) an ingest accepts: an RTMP
    /// message longer than this (plus its tag header) or an RTP access unit
    /// that grows past it ends the publisher's session.
    pub max_frame_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            api_rate: 20,
            webrtc_post_rate: 5,
            connection_rate: 10,
            max_connections_per_ip: 64,
            max_connections: 4096,
            max_readers_per_path: 0,
            max_body_bytes: 1 << 20,
            max_paths: 1000,
            max_frame_bytes: 8 << 20,
        }
    }
}

/// IP allow/deny lists per listener (see [`IpRule`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IpRulesConfig {
    /// The control API listener.
    pub api: IpRule,
    /// `http_listen` and `https_listen` (HLS, WHEP/WHIP, player page).
    pub http: IpRule,
    /// `rtmp_listen` and `rtmps_listen`.
    pub rtmp: IpRule,
    /// `rtsp_listen`.
    pub rtsp: IpRule,
}

/// How an RTSP source asks the camera to send RTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RtspTransport {
    /// UDP, and TCP (interleaved) when no UDP packets arrive.
    Auto,
    Tcp,
    Udp,
}

/// A path rule. Keys left out fall back to `[path_defaults]`, then to the
/// built-in defaults.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PathRule {
    /// Where the path's media comes from: `publisher` (pushed by a client),
    /// or an `rtsp://` / `rtsps://` URL to pull (a camera).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// A second publisher on a live path replaces the first (instead of being
    /// refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub takeover: Option<bool>,
    /// A publisher that comes back within this time continues the same stream:
    /// readers stay connected and timestamps continue.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, example = "10s")]
    pub publisher_grace: Option<Duration>,
    /// Pull the source only while someone reads the path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_demand: Option<bool>,
    /// How long the first reader of an on-demand source waits for it.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, example = "10s")]
    pub on_demand_start_timeout: Option<Duration>,
    /// An on-demand source with no reader for this long is stopped.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, example = "10s")]
    pub on_demand_close_after: Option<Duration>,
    /// RTP transport of an RTSP source: `auto`, `tcp` or `udp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtsp_transport: Option<RtspTransport>,
    /// Credentials for the source, when they are not in its URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_user: Option<String>,
    /// Shown redacted by the API; sending the redacted value back keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_pass: Option<String>,
    /// Who may publish to the path: only these networks (empty or left out:
    /// anyone not in `publish_deny`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>, example = json!(["192.0.2.0/24"]))]
    pub publish_allow: Option<Vec<IpNetwork>>,
    /// Networks that may not publish to the path (wins over `publish_allow`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>, example = json!(["192.0.2.0/24"]))]
    pub publish_deny: Option<Vec<IpNetwork>>,
    /// Who may read the path (any protocol).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>, example = json!(["192.0.2.0/24"]))]
    pub read_allow: Option<Vec<IpNetwork>>,
    /// Networks that may not read the path (wins over `read_allow`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>, example = json!(["192.0.2.0/24"]))]
    pub read_deny: Option<Vec<IpNetwork>>,
}

/// Where a path's media comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Pushed by a client (RTMP).
    Publisher,
    /// Pulled from an RTSP server (an IP camera): `rtsp://` or `rtsps://`.
    Rtsp(String),
    /// Pulled from another RTMP server (origin/edge): `rtmp://` or
    /// `rtmps://host[:port]/app/key[?query]`.
    Rtmp(String),
}

impl Source {
    fn parse(text: &str) -> Result<Source, String> {
        if text == "publisher" {
            return Ok(Source::Publisher);
        }
        const SUPPORTED: &str = "\"publisher\" or an rtsp://, rtsps://, rtmp:// or rtmps:// URL";
        let make: fn(String) -> Source = match text.split_once("://") {
            Some(("rtsp" | "rtsps", _)) => Source::Rtsp,
            Some(("rtmp" | "rtmps", _)) => Source::Rtmp,
            Some((scheme, _)) => {
                return Err(format!(
                    "pulling from {scheme}:// sources is not supported; use {SUPPORTED}"
                ));
            }
            None => return Err(format!("unknown source {text:?}; expected {SUPPORTED}")),
        };
        match text.parse::<url::Url>() {
            Ok(u) if u.host_str().is_some_and(|h| !h.is_empty()) => {
                let source = make(text.to_string());
                if matches!(source, Source::Rtmp(_))
                    && u.path_segments()
                        .is_none_or(|s| s.filter(|s| !s.is_empty()).count() < 2)
                {
                    return Err(
                        "an RTMP source needs an app and a stream key: rtmp://host[:port]/app/key"
                            .into(),
                    );
                }
                Ok(source)
            }
            Ok(_) => Err("the source URL has no host".into()),
            Err(e) => Err(format!("source URL is not a URL: {e}")),
        }
    }

    /// Whether the relay pulls this source (as opposed to waiting for a push).
    pub fn is_pulled(&self) -> bool {
        !matches!(self, Source::Publisher)
    }

    /// The URL of a pulled source (with its credentials: redact before
    /// showing it).
    pub fn pull_url(&self) -> Option<&str> {
        match self {
            Source::Publisher => None,
            Source::Rtsp(url) | Source::Rtmp(url) => Some(url),
        }
    }

    /// The protocol name of a pulled source (`rtsp`, `rtmp`).
    pub fn kind(&self) -> Option<&'static str> {
        match self {
            Source::Publisher => None,
            Source::Rtsp(_) => Some("rtsp"),
            Source::Rtmp(_) => Some("rtmp"),
        }
    }
}

/// The effective settings of one path, after rule lookup and defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct PathSettings {
    /// The rule that matched (`None`: path defaults).
    pub rule: Option<String>,
    pub source: Source,
    pub takeover: bool,
    pub publisher_grace: Duration,
    pub on_demand: bool,
    pub on_demand_start_timeout: Duration,
    pub on_demand_close_after: Duration,
    pub rtsp_transport: RtspTransport,
    pub source_user: Option<String>,
    pub source_pass: Option<String>,
    /// Who may publish to the path.
    pub publish_ips: IpRule,
    /// Who may read the path.
    pub read_ips: IpRule,
}

impl PathRule {
    fn or(&self, fallback: &PathRule) -> PathRule {
        PathRule {
            source: self.source.clone().or_else(|| fallback.source.clone()),
            takeover: self.takeover.or(fallback.takeover),
            publisher_grace: self.publisher_grace.or(fallback.publisher_grace),
            on_demand: self.on_demand.or(fallback.on_demand),
            on_demand_start_timeout: self
                .on_demand_start_timeout
                .or(fallback.on_demand_start_timeout),
            on_demand_close_after: self
                .on_demand_close_after
                .or(fallback.on_demand_close_after),
            rtsp_transport: self.rtsp_transport.or(fallback.rtsp_transport),
            source_user: self
                .source_user
                .clone()
                .or_else(|| fallback.source_user.clone()),
            source_pass: self
                .source_pass
                .clone()
                .or_else(|| fallback.source_pass.clone()),
            publish_allow: self
                .publish_allow
                .clone()
                .or_else(|| fallback.publish_allow.clone()),
            publish_deny: self
                .publish_deny
                .clone()
                .or_else(|| fallback.publish_deny.clone()),
            read_allow: self
                .read_allow
                .clone()
                .or_else(|| fallback.read_allow.clone()),
            read_deny: self
                .read_deny
                .clone()
                .or_else(|| fallback.read_deny.clone()),
        }
    }

    /// The source this rule names, checked.
    pub fn parsed_source(&self) -> Result<Option<Source>, String> {
        self.source.as_deref().map(Source::parse).transpose()
    }
}

impl Config {
    /// Finds the rule for `path`: an exact name first, then the most specific
    /// matching pattern (longest pattern text), then `[path_defaults]`.
    pub fn rule_for(&self, path: &str) -> Option<(&str, &PathRule)> {
        if let Some((name, rule)) = self.paths.get_key_value(path) {
            return Some((name.as_str(), rule));
        }
        self.paths
            .iter()
            .filter(|(pattern, _)| pattern.contains('*') && glob_match(pattern, path))
            .max_by_key(|(pattern, _)| pattern.len())
            .map(|(name, rule)| (name.as_str(), rule))
    }

    /// The effective settings of `path`.
    pub fn path_settings(&self, path: &str) -> PathSettings {
        let matched = self.rule_for(path);
        let rule = match matched {
            Some((_, rule)) => rule.or(&self.path_defaults),
            None => self.path_defaults.clone(),
        };
        PathSettings {
            rule: matched.map(|(name, _)| name.to_string()),
            // Validated when the config was loaded.
            source: rule
                .parsed_source()
                .ok()
                .flatten()
                .unwrap_or(Source::Publisher),
            takeover: rule.takeover.unwrap_or(false),
            publisher_grace: rule.publisher_grace.unwrap_or(Duration::from_secs(5)),
            on_demand: rule.on_demand.unwrap_or(false),
            on_demand_start_timeout: rule
                .on_demand_start_timeout
                .unwrap_or(Duration::from_secs(10)),
            on_demand_close_after: rule
                .on_demand_close_after
                .unwrap_or(Duration::from_secs(10)),
            rtsp_transport: rule.rtsp_transport.unwrap_or(RtspTransport::Auto),
            source_user: rule.source_user,
            source_pass: rule.source_pass,
            publish_ips: IpRule {
                allow: rule.publish_allow.unwrap_or_default(),
                deny: rule.publish_deny.unwrap_or_default(),
            },
            read_ips: IpRule {
                allow: rule.read_allow.unwrap_or_default(),
                deny: rule.read_deny.unwrap_or_default(),
            },
        }
    }

    /// The configuration as TOML *with* its secrets (`users[].pass`,
    /// `auth.jwt.secret`), which `Serialize` writes as `"<redacted>"`: for
    /// tests and tools that write a config another process loads. Never
    /// answer a request with this.
    pub fn to_toml_with_secrets(&self) -> Result<String, toml::ser::Error> {
        use toml::Value;
        let mut value = Value::try_from(self)?;
        if let Some(Value::Array(users)) = value.get_mut("users") {
            for (entry, user) in users.iter_mut().zip(&self.users) {
                if let (Value::Table(t), Some(pass)) = (entry, &user.pass) {
                    t.insert("pass".into(), Value::String(pass.expose().into()));
                }
            }
        }
        if let (Some(Value::Table(jwt)), Some(secret)) = (
            value.get_mut("auth").and_then(|a| a.get_mut("jwt")),
            self.auth.jwt.as_ref().and_then(|j| j.secret.as_ref()),
        ) {
            jwt.insert("secret".into(), Value::String(secret.expose().into()));
        }
        toml::to_string(&value)
    }

    /// The configuration as JSON with its [`Secret`]s written out, for
    /// changing it live (a merge patch is applied to this, then read back).
    /// Never answer a request with this: see [`live::redacted_json`].
    pub fn to_json_with_secrets(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        if let Some(serde_json::Value::Array(users)) = value.get_mut("users") {
            for (entry, user) in users.iter_mut().zip(&self.users) {
                if let (serde_json::Value::Object(t), Some(pass)) = (entry, &user.pass) {
                    t.insert("pass".into(), pass.expose().into());
                }
            }
        }
        if let (Some(serde_json::Value::Object(jwt)), Some(secret)) = (
            value.get_mut("auth").and_then(|a| a.get_mut("jwt")),
            self.auth.jwt.as_ref().and_then(|j| j.secret.as_ref()),
        ) {
            jwt.insert("secret".into(), secret.expose().into());
        }
        value
    }

    /// Paths whose source is pulled all the time (`on_demand = false`).
    pub fn always_pulled(&self) -> Vec<String> {
        self.paths
            .keys()
            .filter(|name| !name.contains('*'))
            .filter(|name| {
                let s = self.path_settings(name);
                s.source.is_pulled() && !s.on_demand
            })
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_lookup_prefers_exact_then_specific_pattern() {
        let mut c = Config::default();
        c.path_defaults.takeover = Some(true);
        c.paths.insert(
            "live/*".into(),
            PathRule {
                publisher_grace: Some(Duration::from_secs(1)),
                ..Default::default()
            },
        );
        c.paths.insert(
            "live/cam*".into(),
            PathRule {
                publisher_grace: Some(Duration::from_secs(2)),
                ..Default::default()
            },
        );
        c.paths.insert(
            "live/cam1".into(),
            PathRule {
                takeover: Some(false),
                ..Default::default()
            },
        );
        let s = c.path_settings("live/cam1");
        assert_eq!(s.rule.as_deref(), Some("live/cam1"));
        assert!(!s.takeover);
        assert_eq!(s.publisher_grace, Duration::from_secs(5));
        let s = c.path_settings("live/cam2");
        assert_eq!(s.rule.as_deref(), Some("live/cam*"));
        assert_eq!(s.publisher_grace, Duration::from_secs(2));
        assert!(s.takeover, "falls back to path_defaults");
        let s = c.path_settings("live/x");
        assert_eq!(s.publisher_grace, Duration::from_secs(1));
        let s = c.path_settings("other/x");
        assert_eq!(s.rule, None);
        assert_eq!(s.source, Source::Publisher);
    }
}
