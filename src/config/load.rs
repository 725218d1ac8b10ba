//! Layering: embedded defaults ← config file ← `MEDIARELAY_*` environment ←
//! command-line flags, then validation.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use toml::{Table, Value};

use super::{
    ANY_USER, AuthConfig, Config, HookConfig, JwtConfig, PassKind, PathRule, Secret, UserConfig,
    validate_rule_name,
};

/// Prefix of environment variables that override settings.
pub const ENV_PREFIX: &str = "MEDIARELAY_";

/// A configuration that cannot be used, with where the bad value came from.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: {key}: {reason}")]
pub struct ConfigError {
    /// The file, environment variable or flag that set the value.
    pub origin: String,
    /// Dotted key, e.g. `hls.part_duration` (empty for a file that does not parse).
    pub key: String,
    pub reason: String,
}

/// Settings given as command-line flags; they win over file and environment.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `(key, value)` pairs for top-level keys, e.g. `("rtmp_listen", ":1935")`.
    pub values: Vec<(&'static str, String)>,
}

/// Loads the configuration from an optional file, the environment and flags.
pub fn load(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: &Overrides,
) -> Result<Config, ConfigError> {
    match file {
        None => load_text("embedded defaults", None, env, overrides),
        Some(path) => {
            let origin = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
                origin: origin.clone(),
                key: String::new(),
                reason: format!("cannot read: {e}"),
            })?;
            load_text(&origin, Some(&text), env, overrides)
        }
    }
}

/// [`load`] with the file's text given (`None`: embedded defaults);
/// `file_origin` names it in errors.
pub fn load_text(
    file_origin: &str,
    text: Option<&str>,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: &Overrides,
) -> Result<Config, ConfigError> {
    let file_origin = file_origin.to_string();
    let mut table = match text {
        None => Table::new(),
        Some(text) => text.parse::<Table>().map_err(|e| ConfigError {
            origin: file_origin.clone(),
            key: String::new(),
            reason: e.to_string().trim_end().to_string(),
        })?,
    };
    let mut origins: BTreeMap<String, String> = BTreeMap::new();

    let known = known_keys();
    for (name, raw) in env {
        let Some(suffix) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if suffix == "CONFIG" {
            continue; // the config file path itself (a flag's env form)
        }
        let lower = suffix.to_ascii_lowercase();
        let Some(key) = known.iter().find(|k| k.replace('.', "_") == lower) else {
            return Err(ConfigError {
                origin: format!("environment variable {name}"),
                key: lower,
                reason: "not a setting (see config/mediarelay.toml for the keys)".into(),
            });
        };
        set_dotted(&mut table, key, parse_scalar(&raw));
        origins.insert(key.clone(), format!("environment variable {name}"));
    }
    for (key, raw) in &overrides.values {
        set_dotted(&mut table, key, Value::String(raw.clone()));
        origins.insert(key.to_string(), format!("flag --{}", key.replace('_', "-")));
    }

    let origin_of = |key: &str| {
        origins
            .iter()
            .find(|(k, _)| {
                key.strip_prefix(k.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
            })
            .map(|(_, o)| o.clone())
            .unwrap_or_else(|| file_origin.clone())
    };

    let config: Config = serde_path_to_error::deserialize(Value::Table(table)).map_err(|e| {
        let key = e.path().to_string();
        ConfigError {
            origin: origin_of(&key),
            reason: e.into_inner().to_string().trim_end().to_string(),
            key,
        }
    })?;
    validate(&config).map_err(|(key, reason)| ConfigError {
        origin: origin_of(&key),
        key,
        reason,
    })?;
    Ok(config)
}

/// Dotted names of every scalar setting an environment variable may set.
fn known_keys() -> Vec<String> {
    let mut keys = Vec::new();
    let full_rule = PathRule {
        source: Some(String::new()),
        takeover: Some(false),
        publisher_grace: Some(Duration::ZERO),
        on_demand: Some(false),
        on_demand_start_timeout: Some(Duration::ZERO),
        on_demand_close_after: Some(Duration::ZERO),
        rtsp_transport: Some(super::RtspTransport::Auto),
        source_user: Some(String::new()),
        source_pass: Some(String::new()),
        publish_allow: Some(Vec::new()),
        publish_deny: Some(Vec::new()),
        read_allow: Some(Vec::new()),
        read_deny: Some(Vec::new()),
    };
    let defaults = Config {
        path_defaults: full_rule,
        auth: AuthConfig {
            jwt: Some(JwtConfig {
                secret: Some(Secret::default()),
                jwks_file: Some(Default::default()),
            }),
            hook: Some(HookConfig::default()),
        },
        ..Config::default()
    };
    /// Keys of nested tables: `hls.part_duration`, `auth.jwt.secret`.
    fn nested(prefix: &str, t: &Table, keys: &mut Vec<String>) {
        for (k, v) in t {
            let key = format!("{prefix}.{k}");
            if let Value::Table(inner) = v {
                nested(&key, inner, keys);
            }
            keys.push(key);
        }
    }
    if let Ok(Value::Table(t)) = Value::try_from(&defaults) {
        for (k, v) in t {
            // A table as a whole takes a TOML inline table
            // (MEDIARELAY_PATHS='{ "live/*" = { takeover = true } }').
            if let Value::Table(inner) = &v
                && k != "paths"
            {
                nested(&k, inner, &mut keys);
            }
            keys.push(k);
        }
    }
    keys
}

/// An environment value is read as a TOML value when it is one (`5`, `true`,
/// `"x"`), and as a plain string otherwise (`:1935`, `200ms`).
fn parse_scalar(raw: &str) -> Value {
    match format!("v = {raw}").parse::<Table>() {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| Value::String(raw.into())),
        Err(_) => Value::String(raw.into()),
    }
}

fn set_dotted(table: &mut Table, key: &str, value: Value) {
    match key.split_once('.') {
        None => match (table.get_mut(key), value) {
            // A table given as a whole merges into what the file says.
            (Some(Value::Table(existing)), Value::Table(new)) => merge(existing, new),
            (_, value) => {
                table.insert(key.to_string(), value);
            }
        },
        Some((head, rest)) => {
            let entry = table
                .entry(head.to_string())
                .or_insert_with(|| Value::Table(Table::new()));
            if !entry.is_table() {
                *entry = Value::Table(Table::new());
            }
            if let Value::Table(inner) = entry {
                set_dotted(inner, rest, value);
            }
        }
    }
}

/// Merges `new` into `into`, table by table; `new` wins on scalars.
fn merge(into: &mut Table, new: Table) {
    for (k, v) in new {
        match (into.get_mut(&k), v) {
            (Some(Value::Table(a)), Value::Table(b)) => merge(a, b),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

pub(crate) fn validate(c: &Config) -> Result<(), (String, String)> {
    let err = |key: &str, reason: String| Err((key.to_string(), reason));
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&c.log_level) {
        return err("log_level", format!("not a log level or filter: {e}"));
    }
    for (key, d) in [
        ("read_timeout", c.read_timeout),
        ("write_timeout", c.write_timeout),
        ("handshake_timeout", c.handshake_timeout),
    ] {
        if d < Duration::from_secs(1) {
            return err(key, "must be at least 1s".into());
        }
    }
    if !(16..=1_000_000).contains(&c.reader_queue_frames) {
        return err(
            "reader_queue_frames",
            "must be between 16 and 1000000".into(),
        );
    }
    if c.shutdown_timeout > Duration::from_secs(600) {
        return err("shutdown_timeout", "must be at most 10m".into());
    }
    if c.rtmp_merge_writes > Duration::from_secs(2) {
        return err("rtmp_merge_writes", "must be at most 2s".into());
    }
    if c.gop_cache_max_bytes < 1 << 20 {
        return err(
            "gop_cache_max_bytes",
            "must be at least 1048576 (1 MiB)".into(),
        );
    }
    let h = &c.hls;
    if !(Duration::from_millis(50)..=Duration::from_secs(5)).contains(&h.part_duration) {
        return err("hls.part_duration", "must be between 50ms and 5s".into());
    }
    if h.segment_duration < h.part_duration {
        return err(
            "hls.segment_duration",
            "must be at least hls.part_duration".into(),
        );
    }
    if h.target_duration < h.segment_duration
        || h.target_duration.subsec_nanos() != 0
        || h.target_duration.is_zero()
    {
        return err(
            "hls.target_duration",
            "must be whole seconds (EXT-X-TARGETDURATION is an integer) and at least hls.segment_duration".into(),
        );
    }
    if !(3..=100).contains(&h.segment_count) {
        return err("hls.segment_count", "must be between 3 and 100".into());
    }
    if h.idle_timeout < Duration::from_secs(1) {
        return err("hls.idle_timeout", "must be at least 1s".into());
    }
    if c.rtsp_session_timeout < Duration::from_secs(1) {
        return err("rtsp_session_timeout", "must be at least 1s".into());
    }
    if h.viewer_timeout < Duration::from_secs(1) {
        return err("hls.viewer_timeout", "must be at least 1s".into());
    }
    if h.start_timeout < Duration::from_millis(100) {
        return err("hls.start_timeout", "must be at least 100ms".into());
    }
    if !matches!(h.segment_dir.as_str(), "" | "memory")
        && !std::path::Path::new(&h.segment_dir).is_dir()
    {
        return err(
            "hls.segment_dir",
            format!(
                "{:?} is not a directory (\"\" = the system's temporary directory, \"memory\" = memory files)",
                h.segment_dir
            ),
        );
    }
    validate_tls(c)?;
    validate_limits(&c.limits)?;
    validate_rule(&c.path_defaults, "path_defaults")?;
    for (name, rule) in &c.paths {
        let key = format!("paths.{name:?}");
        if let Err(e) = validate_rule_name(name) {
            return err(&key, e.to_string());
        }
        validate_rule(rule, &key)?;
    }
    validate_webhooks(c)?;
    validate_users(&c.users)?;
    validate_auth(&c.auth)?;
    Ok(())
}

fn validate_webhooks(c: &Config) -> Result<(), (String, String)> {
    use super::webhook::check_http_url;
    for (i, w) in c.webhooks.iter().enumerate() {
        let key = format!("webhooks[{i}]");
        check_http_url(&w.url).map_err(|reason| (format!("{key}.url"), reason))?;
        if w.secret.as_deref() == Some("") {
            return Err((
                format!("{key}.secret"),
                "is empty; leave the key out to send unsigned requests".into(),
            ));
        }
        for (j, name) in w.events.iter().enumerate() {
            name.parse::<crate::events::EventKind>()
                .map_err(|reason| (format!("{key}.events[{j}]"), reason))?;
        }
    }
    let s = &c.webhook_settings;
    let min = Duration::from_millis(10);
    for (name, d) in [
        ("timeout", s.timeout),
        ("retry_initial", s.retry_initial),
        ("breaker_cooldown", s.breaker_cooldown),
    ] {
        if d < min {
            return Err((
                format!("webhook_settings.{name}"),
                "must be at least 10ms".into(),
            ));
        }
    }
    if s.retry_max < s.retry_initial {
        return Err((
            "webhook_settings.retry_max".into(),
            "must be at least webhook_settings.retry_initial".into(),
        ));
    }
    if !(1..=1_000_000).contains(&s.queue_size) {
        return Err((
            "webhook_settings.queue_size".into(),
            "must be between 1 and 1000000".into(),
        ));
    }
    if !(1..=100).contains(&s.max_attempts) {
        return Err((
            "webhook_settings.max_attempts".into(),
            "must be between 1 and 100".into(),
        ));
    }
    if s.breaker_failures == 0 {
        return Err((
            "webhook_settings.breaker_failures".into(),
            "must be at least 1".into(),
        ));
    }
    let p = &c.on_publish;
    if !p.url.is_empty() {
        check_http_url(&p.url).map_err(|reason| ("on_publish.url".to_string(), reason))?;
    }
    if p.timeout < min {
        return Err(("on_publish.timeout".into(), "must be at least 10ms".into()));
    }
    Ok(())
}

/// `[[users]]`: names, passwords (argon2 PHC or `plain:`), permissions.
fn validate_users(users: &[UserConfig]) -> Result<(), (String, String)> {
    for (i, u) in users.iter().enumerate() {
        let key = format!("users[{i}]");
        if u.user.is_empty() {
            return Err((format!("{key}.user"), "must not be empty".into()));
        }
        // RFC 7617 §2: the user-id of Basic authentication cannot contain ':'.
        if u.user.contains(':') || u.user.chars().any(char::is_control) {
            return Err((
                format!("{key}.user"),
                "must not contain ':' or control characters".into(),
            ));
        }
        if let Some(j) = users[..i].iter().position(|o| o.user == u.user) {
            return Err((
                format!("{key}.user"),
                format!("{:?} is already users[{j}]", u.user),
            ));
        }
        match (&u.pass, u.user == ANY_USER) {
            (Some(_), true) => {
                return Err((
                    format!("{key}.pass"),
                    format!("user {ANY_USER:?} is everyone and takes no password"),
                ));
            }
            (None, false) => {
                return Err((
                    format!("{key}.pass"),
                    format!("missing; every user but {ANY_USER:?} needs one"),
                ));
            }
            (Some(pass), false) => {
                PassKind::parse(pass.expose()).map_err(|reason| (format!("{key}.pass"), reason))?;
            }
            (None, true) => {}
        }
        for (j, p) in u.permissions.iter().enumerate() {
            let key = format!("{key}.permissions[{j}].path");
            match p.path.as_deref() {
                None | Some("") => {}
                Some(path) if p.action.has_path() => {
                    if let Err(e) = validate_rule_name(path) {
                        return Err((key, e.to_string()));
                    }
                }
                Some(_) => {
                    return Err((
                        key,
                        format!(
                            "{} permissions are not scoped to paths; leave path out",
                            p.action
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// `[auth.jwt]` and `[auth.hook]`.
fn validate_auth(auth: &AuthConfig) -> Result<(), (String, String)> {
    if let Some(jwt) = &auth.jwt {
        if jwt.secret.is_none() && jwt.jwks_file.is_none() {
            return Err((
                "auth.jwt".into(),
                "set secret (HS256) or jwks_file (RS256/ES256), or leave [auth.jwt] out".into(),
            ));
        }
        if let Some(secret) = &jwt.secret
            && secret.expose().len() < crate::auth::MIN_HS256_SECRET_BYTES
        {
            return Err((
                "auth.jwt.secret".into(),
                format!(
                    "must be at least {} bytes (RFC 7518 §3.2: a key as long as the hash)",
                    crate::auth::MIN_HS256_SECRET_BYTES
                ),
            ));
        }
        if let Some(path) = &jwt.jwks_file {
            crate::auth::read_jwks_file(path)
                .map_err(|reason| ("auth.jwt.jwks_file".to_string(), reason))?;
        }
    }
    if let Some(hook) = &auth.hook {
        match url::Url::parse(&hook.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
            Ok(_) => {
                return Err((
                    "auth.hook.url".into(),
                    "must be an http:// or https:// URL with a host".into(),
                ));
            }
            Err(e) => return Err(("auth.hook.url".into(), format!("not a URL: {e}"))),
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(60)).contains(&hook.timeout) {
            return Err((
                "auth.hook.timeout".into(),
                "must be between 100ms and 60s".into(),
            ));
        }
        if hook.cache > Duration::from_secs(3600) {
            return Err(("auth.hook.cache".into(), "must be at most 1h".into()));
        }
    }
    Ok(())
}

fn validate_tls(c: &Config) -> Result<(), (String, String)> {
    let t = &c.tls;
    // Every pair: both or neither, and readable now, so a bad file stops
    // the start with its name. (name, cert, key, used by, in use)
    let pairs = [
        ("", &t.cert, &t.key, "", true),
        (
            "api_",
            &t.api_cert,
            &t.api_key,
            "tls.api_tls = true",
            t.api_tls,
        ),
        (
            "https_",
            &t.https_cert,
            &t.https_key,
            "https_listen",
            c.https_listen.is_some(),
        ),
        (
            "rtmps_",
            &t.rtmps_cert,
            &t.rtmps_key,
            "rtmps_listen",
            c.rtmps_listen.is_some(),
        ),
    ];
    for (name, cert, key, used_by, in_use) in pairs {
        let (cert_key, key_key) = (format!("tls.{name}cert"), format!("tls.{name}key"));
        match (cert.is_empty(), key.is_empty()) {
            (false, true) => return Err((key_key, format!("must be set with {cert_key}"))),
            (true, false) => return Err((cert_key, format!("must be set with {key_key}"))),
            (true, true) => continue,
            (false, false) if !in_use => {
                return Err((cert_key, format!("is used only with {used_by}")));
            }
            (false, false) => {}
        }
        crate::tls::load_certified_key(Path::new(cert), Path::new(key)).map_err(|e| {
            (
                e.key.replacen("tls.", &format!("tls.{name}"), 1),
                format!("{}: {}", e.path.display(), e.reason),
            )
        })?;
    }
    let shared = t.is_configured();
    if c.https_listen.is_some() && !shared && t.https_cert.is_empty() {
        return Err((
            "https_listen".into(),
            "needs tls.cert and tls.key, or tls.https_cert and tls.https_key (or \"\" to turn it off)"
                .into(),
        ));
    }
    if t.api_tls && !shared && t.api_cert.is_empty() {
        return Err((
            "tls.api_tls".into(),
            "needs tls.cert and tls.key (or tls.api_cert and tls.api_key)".into(),
        ));
    }
    if t.reload_interval < Duration::from_millis(100) {
        return Err((
            "tls.reload_interval".into(),
            "must be at least 100ms".into(),
        ));
    }
    Ok(())
}

fn validate_limits(l: &super::LimitsConfig) -> Result<(), (String, String)> {
    for (key, rate) in [
        ("limits.api_rate", l.api_rate),
        ("limits.webrtc_post_rate", l.webrtc_post_rate),
        ("limits.connection_rate", l.connection_rate),
    ] {
        if rate > 1_000_000 {
            return Err((
                key.into(),
                "must be at most 1000000 (0 turns it off)".into(),
            ));
        }
    }
    if l.max_body_bytes < 4096 {
        return Err((
            "limits.max_body_bytes".into(),
            "must be at least 4096 (an SDP offer is a few KiB)".into(),
        ));
    }
    if !(65_536..=256 << 20).contains(&l.max_frame_bytes) {
        return Err((
            "limits.max_frame_bytes".into(),
            "must be from 65536 to 268435456 (a 4K keyframe is a few MiB)".into(),
        ));
    }
    Ok(())
}

fn validate_rule(rule: &PathRule, key: &str) -> Result<(), (String, String)> {
    let source = rule
        .parsed_source()
        .map_err(|reason| (format!("{key}.source"), reason))?;
    let pulled = source.as_ref().is_some_and(|s| s.is_pulled());
    if pulled && key.contains('*') {
        return Err((
            format!("{key}.source"),
            "a pulled source needs an exact path name, not a pattern".into(),
        ));
    }
    for (name, d) in [
        ("on_demand_start_timeout", rule.on_demand_start_timeout),
        ("on_demand_close_after", rule.on_demand_close_after),
    ] {
        if d.is_some_and(|d| d < Duration::from_millis(100)) {
            return Err((format!("{key}.{name}"), "must be at least 100ms".into()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::ListenAddr;

    fn write(text: &str) -> tempfile_path::TempPath {
        tempfile_path::TempPath::with(text)
    }

    /// Minimal temp file helper (no extra dependency).
    mod tempfile_path {
        pub struct TempPath(pub std::path::PathBuf);
        impl TempPath {
            pub fn with(text: &str) -> Self {
                use std::sync::atomic::{AtomicU32, Ordering};
                static N: AtomicU32 = AtomicU32::new(0);
                let p = std::env::temp_dir().join(format!(
                    "mediarelay-cfg-{}-{}.toml",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::write(&p, text).unwrap();
                TempPath(p)
            }
        }
        impl Drop for TempPath {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }

    fn no_env() -> Vec<(String, String)> {
        Vec::new()
    }

    #[test]
    fn embedded_defaults_load() {
        let c = load(None, no_env(), &Overrides::default()).unwrap();
        assert_eq!(c.rtmp_listen, ListenAddr::Any(1935));
        assert_eq!(c.api_listen.to_string(), "127.0.0.1:9997");
        assert_eq!(c.hls.part_duration, Duration::from_millis(200));
    }

    #[test]
    fn file_env_and_flags_layer_in_that_order() {
        let f = write(
            "rtmp_listen = \":1000\"\nhttp_listen = \":2000\"\n[hls]\npart_duration = \"300ms\"\n[paths.\"live/*\"]\ntakeover = true\n",
        );
        let env = vec![
            ("MEDIARELAY_HTTP_LISTEN".to_string(), ":3000".to_string()),
            ("MEDIARELAY_HLS_SEGMENT_COUNT".to_string(), "9".to_string()),
            (
                "MEDIARELAY_PATH_DEFAULTS_PUBLISHER_GRACE".to_string(),
                "2s".to_string(),
            ),
            (
                "MEDIARELAY_PATHS".to_string(),
                "{ \"cam/*\" = { publisher_grace = \"9s\" } }".to_string(),
            ),
            ("OTHER".to_string(), "x".to_string()),
        ];
        let flags = Overrides {
            values: vec![("rtmp_listen", "127.0.0.1:4000".into())],
        };
        let c = load(Some(&f.0), env, &flags).unwrap();
        assert_eq!(c.rtmp_listen.to_string(), "127.0.0.1:4000");
        assert_eq!(c.http_listen, ListenAddr::Any(3000));
        assert_eq!(c.hls.part_duration, Duration::from_millis(300));
        assert_eq!(c.hls.segment_count, 9);
        assert_eq!(
            c.path_defaults.publisher_grace,
            Some(Duration::from_secs(2))
        );
        assert!(c.path_settings("live/a").takeover);
        assert_eq!(
            c.path_settings("cam/x").publisher_grace,
            Duration::from_secs(9)
        );
    }

    #[test]
    fn errors_name_origin_key_and_reason() {
        let f = write("[hls]\npart_duration = \"fast\"\n");
        let e = load(Some(&f.0), no_env(), &Overrides::default()).unwrap_err();
        assert_eq!(e.key, "hls.part_duration");
        assert!(e.origin.ends_with(".toml"), "{e}");

        let f = write("rtmp_listn = \":1\"\n");
        let e = load(Some(&f.0), no_env(), &Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("rtmp_listn"), "{e}");

        let f = write("[paths.\"a/../b\"]\n");
        let e = load(Some(&f.0), no_env(), &Overrides::default()).unwrap_err();
        assert!(e.key.starts_with("paths."), "{e}");
        assert!(e.reason.contains(".."), "{e}");

        let f = write("[paths.\"cam\"]\nsource = \"srt://10.0.0.5/x\"\n");
        let e = load(Some(&f.0), no_env(), &Overrides::default()).unwrap_err();
        assert_eq!(e.key, "paths.\"cam\".source");
        assert!(e.reason.contains("rtmp://"), "{e}");
        let f = write("[paths.\"cam/*\"]\nsource = \"rtsp://10.0.0.5/x\"\n");
        let e = load(Some(&f.0), no_env(), &Overrides::default()).unwrap_err();
        assert!(e.reason.contains("exact path name"), "{e}");
        let f = write("[paths.\"cam\"]\nrtsp_transport = \"quic\"\n");
        let e = load(Some(&f.0), no_env(), &Overrides::default()).unwrap_err();
        assert_eq!(e.key, "paths.cam.rtsp_transport");
        let f = write(
            "[paths.\"door\"]\nsource = \"rtsp://u:p@10.0.0.5:554/Streaming/Channels/101\"\nrtsp_transport = \"tcp\"\non_demand = true\n",
        );
        let c = load(Some(&f.0), no_env(), &Overrides::default()).unwrap();
        let s = c.path_settings("door");
        assert!(s.on_demand);
        assert_eq!(s.rtsp_transport, super::super::RtspTransport::Tcp);
        assert!(matches!(s.source, super::super::Source::Rtsp(_)));
        let f = write("[paths.\"edge\"]\nsource = \"rtmp://origin:1935/live/src?token=t\"\n");
        let c = load(Some(&f.0), no_env(), &Overrides::default()).unwrap();
        let s = c.path_settings("edge");
        assert!(matches!(s.source, super::super::Source::Rtmp(_)));
        assert_eq!(s.source.kind(), Some("rtmp"));
        let f = write("[paths.\"edge\"]\nsource = \"rtmp://origin/live\"\n");
        let e = load(Some(&f.0), no_env(), &Overrides::default()).unwrap_err();
        assert!(e.reason.contains("app and a stream key"), "{e}");
        let f = write("[paths.\"edge/*\"]\nsource = \"rtmps://origin/live/src\"\n");
        let e = load(Some(&f.0), no_env(), &Overrides::default()).unwrap_err();
        assert!(e.reason.contains("exact path name"), "{e}");

        let f = write("this is not toml");
        let e = load(Some(&f.0), no_env(), &Overrides::default()).unwrap_err();
        assert!(e.origin.ends_with(".toml"));

        let env = vec![(
            "MEDIARELAY_HLS_PART_DURATION".to_string(),
            "10s".to_string(),
        )];
        let e = load(None, env, &Overrides::default()).unwrap_err();
        assert_eq!(
            e.origin,
            "environment variable MEDIARELAY_HLS_PART_DURATION"
        );
        assert_eq!(e.key, "hls.part_duration");

        let env = vec![("MEDIARELAY_NOPE".to_string(), "1".to_string())];
        assert!(load(None, env, &Overrides::default()).is_err());

        let flags = Overrides {
            values: vec![("rtmp_listen", "1935".into())],
        };
        let e = load(None, no_env(), &flags).unwrap_err();
        assert_eq!(e.origin, "flag --rtmp-listen");
        assert_eq!(e.key, "rtmp_listen");
    }

    #[test]
    fn webhook_errors_name_the_entry_and_key() {
        let f = write(
            "[[webhooks]]\nurl = \"http://127.0.0.1:9000/hook\"\n[[webhooks]]\nurl = \"ftp://x\"\n",
        );
        let e = load(Some(&f.0), no_env(), &Overrides::default()).unwrap_err();
        assert_eq!(e.key, "webhooks[1].url");
        assert_eq!(e.reason, "\"ftp://x\" is not an http(s) URL");

        let f =
            write("[[webhooks]]\nurl = \"http://h/\"\nevents = [\"publish_start\", \"nope\"]\n");
        let e = load(Some(&f.0), no_env(), &Overrides::default()).unwrap_err();
        assert_eq!(e.key, "webhooks[0].events[1]");
        assert!(
            e.reason
                .starts_with("unknown event \"nope\"; known: publish_start"),
            "{e}"
        );

        let f = write("[[webhooks]]\nurl = \"http://h/\"\nsecret = \"\"\n");
        let e = load(Some(&f.0), no_env(), &Overrides::default()).unwrap_err();
        assert_eq!(e.key, "webhooks[0].secret");

        let f = write("[[webhooks]]\nurl = \"http://h/\"\nsecrte = \"x\"\n");
        let e = load(Some(&f.0), no_env(), &Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("secrte"), "{e}");

        let f = write("[webhook_settings]\nretry_initial = \"2s\"\nretry_max = \"1s\"\n");
        let e = load(Some(&f.0), no_env(), &Overrides::default()).unwrap_err();
        assert_eq!(e.key, "webhook_settings.retry_max");

        let f = write("[on_publish]\nurl = \"rtmp://h/\"\n");
        let e = load(Some(&f.0), no_env(), &Overrides::default()).unwrap_err();
        assert_eq!(e.key, "on_publish.url");

        let f = write(
            "[[webhooks]]\nurl = \"https://hooks.example.com/x\"\nsecret = \"s\"\nevents = [\"read_stop\"]\n[webhook_settings]\nbreaker_cooldown = \"50ms\"\n[on_publish]\nurl = \"http://127.0.0.1:9/auth\"\ndefault = \"deny\"\n",
        );
        let env = vec![(
            "MEDIARELAY_WEBHOOK_SETTINGS_QUEUE_SIZE".to_string(),
            "16".to_string(),
        )];
        let c = load(Some(&f.0), env, &Overrides::default()).unwrap();
        let env = vec![(
            "MEDIARELAY_WEBHOOKS".to_string(),
            "[{ url = \"http://10.0.0.1/a\", events = [\"nope\"] }]".to_string(),
        )];
        let e = load(None, env, &Overrides::default()).unwrap_err();
        assert_eq!(e.origin, "environment variable MEDIARELAY_WEBHOOKS");
        assert_eq!(e.key, "webhooks[0].events[0]");
        assert_eq!(c.webhooks.len(), 1);
        assert_eq!(c.webhooks[0].events, ["read_stop"]);
        assert_eq!(c.webhook_settings.queue_size, 16);
        assert_eq!(
            c.webhook_settings.breaker_cooldown,
            Duration::from_millis(50)
        );
        assert_eq!(c.on_publish.default, super::super::OnPublishDefault::Deny);
    }
}

#[cfg(test)]
mod auth_keys {
    use super::*;

    fn load_text(text: &str) -> Result<Config, ConfigError> {
        let path = std::env::temp_dir().join(format!(
            "mediarelay-auth-cfg-{}-{:x}.toml",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::write(&path, text).unwrap();
        let r = load(Some(&path), Vec::new(), &Overrides::default());
        let _ = std::fs::remove_file(&path);
        r
    }

    fn refused(text: &str, key: &str, reason: &str) {
        let e = load_text(text).unwrap_err();
        assert_eq!(e.key, key, "{e}");
        assert!(e.reason.contains(reason), "{e}");
    }

    const ARGON: &str =
        "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$PE2ecYUJaPR+mm1q6C0yIXUpz3/6Wk2GmXjFl+zEuO4";

    #[test]
    fn users_load() {
        let c = load_text(&format!(
            "[[users]]\nuser = \"obs\"\npass = \"{ARGON}\"\npermissions = [{{ action = \"publish\", path = \"live/*\" }}, {{ action = \"read\" }}]\n\n[[users]]\nuser = \"any\"\npermissions = [{{ action = \"read\" }}]\n"
        ))
        .unwrap();
        assert_eq!(c.users.len(), 2);
        assert_eq!(c.users[0].permissions[0].path.as_deref(), Some("live/*"));
        assert_eq!(c.users[0].pass.as_ref().unwrap().expose(), ARGON);
        assert!(c.users[1].pass.is_none());
    }

    #[test]
    fn the_segment_directory_is_memory_the_temporary_one_or_an_existing_one() {
        for ok in ["", "memory", "/"] {
            let c = load_text(&format!("[hls]\nsegment_dir = {ok:?}\n")).unwrap();
            assert_eq!(c.hls.segment_dir, ok);
        }
        refused(
            "[hls]\nsegment_dir = \"/no/such/dir\"\n",
            "hls.segment_dir",
            "\"/no/such/dir\" is not a directory",
        );
    }

    #[test]
    fn bad_users_are_refused_naming_the_key() {
        refused(
            "[[users]]\nuser = \"obs\"\npass = \"hunter2\"\n",
            "users[0].pass",
            "a plaintext password must be written \"plain:…\"; store an argon2 hash (\"$argon2id$…\")",
        );
        refused(
            "[[users]]\nuser = \"a\"\npass = \"plain:x\"\n[[users]]\nuser = \"b\"\npass = \"plain:x\"\npermissions = [{ action = \"view\" }]\n",
            "users[1].permissions[0].action",
            "unknown action \"view\"; expected publish, read, api or metrics",
        );
        refused("[[users]]\nuser = \"obs\"\n", "users[0].pass", "missing");
        refused(
            "[[users]]\nuser = \"any\"\npass = \"plain:x\"\n",
            "users[0].pass",
            "takes no password",
        );
        refused(
            "[[users]]\nuser = \"a\"\npass = \"plain:x\"\n[[users]]\nuser = \"a\"\npass = \"plain:y\"\n",
            "users[1].user",
            "already users[0]",
        );
        refused(
            "[[users]]\nuser = \"a:b\"\npass = \"plain:x\"\n",
            "users[0].user",
            "':'",
        );
        refused(
            "[[users]]\nuser = \"a\"\npass = \"plain:x\"\npermissions = [{ action = \"api\", path = \"live/*\" }]\n",
            "users[0].permissions[0].path",
            "not scoped to paths",
        );
        refused(
            "[[users]]\nuser = \"a\"\npass = \"plain:x\"\npermissions = [{ action = \"read\", path = \"/live/*\" }]\n",
            "users[0].permissions[0].path",
            "empty segment",
        );
        refused(
            "[[users]]\nuser = \"a\"\npass = \"$argon2id$nonsense\"\n",
            "users[0].pass",
            "argon2",
        );
    }

    #[test]
    fn bad_auth_tables_are_refused_naming_the_key() {
        refused("[auth.jwt]\n", "auth.jwt", "secret");
        refused(
            "[auth.jwt]\nsecret = \"short\"\n",
            "auth.jwt.secret",
            "at least 32 bytes",
        );
        refused(
            "[auth.jwt]\njwks_file = \"/nonexistent/jwks.json\"\n",
            "auth.jwt.jwks_file",
            "cannot read /nonexistent/jwks.json",
        );
        refused("[auth.hook]\nurl = \"ftp://x/\"\n", "auth.hook.url", "http");
        refused(
            "[auth.hook]\nurl = \"nope\"\n",
            "auth.hook.url",
            "not a URL",
        );
        refused(
            "[auth.hook]\nurl = \"http://127.0.0.1:9000/auth\"\ntimeout = \"0s\"\n",
            "auth.hook.timeout",
            "between",
        );
        refused("[auth]\nldap = true\n", "auth.ldap", "unknown field");
        let c = load_text("[auth.hook]\nurl = \"http://127.0.0.1:9000/auth\"\n").unwrap();
        let hook = c.auth.hook.unwrap();
        assert_eq!(hook.timeout, Duration::from_secs(2));
        assert_eq!(hook.cache, Duration::from_secs(10));
    }

    #[test]
    fn secrets_from_the_environment() {
        let secret = "x".repeat(40);
        let env = vec![("MEDIARELAY_AUTH_JWT_SECRET".to_string(), secret.clone())];
        let c = load(None, env, &Overrides::default()).unwrap();
        let jwt = c.auth.jwt.unwrap();
        assert_eq!(jwt.secret.unwrap().expose(), secret);
        let env = vec![(
            "MEDIARELAY_USERS".to_string(),
            "[{ user = \"any\", permissions = [{ action = \"read\" }] }]".to_string(),
        )];
        let c = load(None, env, &Overrides::default()).unwrap();
        assert_eq!(c.users[0].user, "any");
    }

    #[test]
    fn serialized_config_is_redacted_unless_asked() {
        let secret = "s".repeat(40);
        let c = load_text(&format!(
            "[[users]]\nuser = \"obs\"\npass = \"plain:hunter2\"\n[auth.jwt]\nsecret = \"{secret}\"\n"
        ))
        .unwrap();
        let shown = serde_json::to_string(&c).unwrap();
        assert!(
            !shown.contains("hunter2") && !shown.contains(&secret),
            "{shown}"
        );
        assert!(shown.contains(crate::config::REDACTED));
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2") && !shown.contains(&secret));

        // Redacted TOML does not load back (the placeholder is no password)…
        let redacted = toml::to_string(&c).unwrap();
        assert!(load_text(&redacted).is_err());
        // …the unredacted form does, to the same config.
        let full = c.to_toml_with_secrets().unwrap();
        let back = load_text(&full).unwrap();
        assert_eq!(back.users, c.users);
        assert_eq!(back.auth, c.auth);
    }
}

#[cfg(test)]
mod admission_and_tls {
    use super::*;
    use crate::net::ListenAddr;

    struct TempFile(std::path::PathBuf);
    impl TempFile {
        fn new(name: &str, text: &str) -> TempFile {
            let p = std::env::temp_dir()
                .join(format!("mediarelay-cfg-adm-{}-{name}", std::process::id()));
            std::fs::write(&p, text).unwrap();
            TempFile(p)
        }
    }
    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn load_text(text: &str) -> Result<Config, ConfigError> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let f = TempFile::new(&format!("{}.toml", N.fetch_add(1, Ordering::Relaxed)), text);
        load(Some(&f.0), Vec::new(), &Overrides::default())
    }

    #[test]
    fn ip_rules_and_path_rules_load_and_merge() {
        let c = load_text(
            r#"
[ip_rules]
api = { allow = ["127.0.0.0/8", "::1"] }
rtmp = { deny = ["203.0.113.0/24"] }
[path_defaults]
read_deny = ["198.51.100.0/24"]
publish_deny = ["192.0.2.66"]
[paths."live/*"]
publish_allow = ["10.0.0.0/8"]
[paths."open/*"]
read_deny = []
"#,
        )
        .unwrap();
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        assert!(c.ip_rules.api.permits(ip("127.0.0.1")));
        assert!(c.ip_rules.api.permits(ip("::1")));
        assert!(!c.ip_rules.api.permits(ip("192.0.2.1")));
        assert!(!c.ip_rules.rtmp.permits(ip("203.0.113.1")));
        assert!(c.ip_rules.http.permits(ip("203.0.113.1")));
        let live = c.path_settings("live/a");
        assert!(live.publish_ips.permits(ip("10.1.2.3")));
        assert!(!live.publish_ips.permits(ip("192.168.1.1")));
        assert!(
            !live.read_ips.permits(ip("198.51.100.9")),
            "from path_defaults"
        );
        let open = c.path_settings("open/a");
        assert!(
            open.read_ips.permits(ip("198.51.100.9")),
            "an explicit empty list wins"
        );
        assert!(!open.publish_ips.permits(ip("192.0.2.66")));
        let other = c.path_settings("x");
        assert!(other.publish_ips.permits(ip("192.168.1.1")));
        assert!(!other.publish_ips.permits(ip("192.0.2.66")));
    }

    #[test]
    fn bad_networks_name_the_key_and_the_text() {
        let e = load_text(
            "[ip_rules]
api = { allow = [\"10.0.0.0/8\", \"10.0.0.0/33\"] }
",
        )
        .unwrap_err();
        assert_eq!(e.key, "ip_rules.api.allow[1]");
        assert!(
            e.to_string()
                .contains("ip_rules.api.allow[1]: \"10.0.0.0/33\" is not an IP network: "),
            "{e}"
        );
        let e = load_text(
            "[paths.\"live/*\"]
read_deny = [\"nope\"]
",
        )
        .unwrap_err();
        assert_eq!(e.key, "paths.live/*.read_deny[0]");
        let e = load_text(
            "[ip_rules]
rtmp = { alow = [] }
",
        )
        .unwrap_err();
        assert!(e.to_string().contains("alow"), "{e}");
        let env = vec![(
            "MEDIARELAY_IP_RULES_API".to_string(),
            "{ deny = [\"::1\"] }".to_string(),
        )];
        let c = load(None, env, &Overrides::default()).unwrap();
        assert!(!c.ip_rules.api.permits("::1".parse().unwrap()));
    }

    #[test]
    fn limits_load_from_file_and_env_and_are_checked() {
        let env = vec![
            ("MEDIARELAY_LIMITS_API_RATE".to_string(), "0".to_string()),
            (
                "MEDIARELAY_LIMITS_MAX_CONNECTIONS".to_string(),
                "9".to_string(),
            ),
        ];
        let c = load(None, env, &Overrides::default()).unwrap();
        assert_eq!(c.limits.api_rate, 0);
        assert_eq!(c.limits.max_connections, 9);
        assert_eq!(c.limits.webrtc_post_rate, 5);
        let e = load_text(
            "[limits]
max_body_bytes = 100
",
        )
        .unwrap_err();
        assert_eq!(e.key, "limits.max_body_bytes");
        let e = load_text(
            "[limits]
api_rate = -1
",
        )
        .unwrap_err();
        assert_eq!(e.key, "limits.api_rate");
    }

    #[test]
    fn a_listener_s_own_pair_is_checked_like_the_shared_one() {
        let e = load_text("[tls]\nhttps_cert = \"/x.pem\"\n").unwrap_err();
        assert_eq!(e.key, "tls.https_key");
        let e = load_text("[tls]\nrtmps_key = \"/x.pem\"\n").unwrap_err();
        assert_eq!(e.key, "tls.rtmps_cert");
        let e = load_text("[tls]\napi_cert = \"/x.pem\"\napi_key = \"/y.pem\"\n").unwrap_err();
        assert_eq!(e.key, "tls.api_cert");
        assert!(e.reason.contains("api_tls"), "{e}");
        let e = load_text(
            "https_listen = \":8443\"\n[tls]\nhttps_cert = \"/no/cert.pem\"\nhttps_key = \"/no/key.pem\"\n",
        )
        .unwrap_err();
        assert_eq!(e.key, "tls.https_cert");
        assert!(e.reason.contains("/no/cert.pem"), "{e}");
        let e = load_text("rtmps_listen = \"\"\n[tls]\nrtmps_cert = \"/a\"\nrtmps_key = \"/b\"\n")
            .unwrap_err();
        assert_eq!(e.key, "tls.rtmps_cert");
        assert!(e.reason.contains("rtmps_listen"), "{e}");
    }

    #[test]
    fn tls_listeners_need_a_readable_pair() {
        let c = load(None, Vec::new(), &Overrides::default()).unwrap();
        assert_eq!(c.https_listen, None);
        assert_eq!(c.rtmps_listen, Some(ListenAddr::Any(1936)));
        assert!(!c.tls.is_configured());

        let flags = Overrides {
            values: vec![("https_listen", ":8443".into())],
        };
        let e = load(None, Vec::new(), &flags).unwrap_err();
        assert_eq!(e.key, "https_listen");
        assert_eq!(e.origin, "flag --https-listen");
        let flags = Overrides {
            values: vec![("rtmps_listen", "".into())],
        };
        assert_eq!(load(None, Vec::new(), &flags).unwrap().rtmps_listen, None);
        let e = load_text(
            "[tls]
cert = \"/x.pem\"
",
        )
        .unwrap_err();
        assert_eq!(e.key, "tls.key");
        let e = load_text(
            "[tls]
api_tls = true
",
        )
        .unwrap_err();
        assert_eq!(e.key, "tls.api_tls");

        let dir = crate::tls::testing::TempDir::new("cfg");
        let (cert, key) = crate::tls::testing::write_self_signed(&dir, "c", "localhost");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let e = load_text(&format!(
            "[tls]
cert = {:?}
key = {:?}
",
            empty.display().to_string(),
            key.display().to_string()
        ))
        .unwrap_err();
        assert_eq!(e.key, "tls.cert");
        assert_eq!(
            e.reason,
            format!("{}: no certificate found", empty.display())
        );
        let env = vec![
            (
                "MEDIARELAY_TLS_CERT".to_string(),
                cert.display().to_string(),
            ),
            ("MEDIARELAY_TLS_KEY".to_string(), key.display().to_string()),
            (
                "MEDIARELAY_HTTPS_LISTEN".to_string(),
                "127.0.0.1:8443".to_string(),
            ),
        ];
        let c = load(None, env, &Overrides::default()).unwrap();
        assert!(c.tls.is_configured());
        assert_eq!(c.https_listen.unwrap().to_string(), "127.0.0.1:8443");
    }
}

#[cfg(test)]
mod example_file {
    use super::*;

    /// The example config loads, and documents every key there is.
    #[test]
    fn example_config_loads_and_documents_every_key() {
        let path = crate::repo_dir().join("config/mediarelay.toml");
        let c = load(Some(&path), Vec::new(), &Overrides::default()).unwrap();
        let defaults = Config::default();
        assert_eq!(c.rtmp_listen, defaults.rtmp_listen);
        let text = std::fs::read_to_string(&path).unwrap();
        for key in known_keys() {
            let leaf = key.rsplit('.').next().unwrap();
            assert!(
                text.lines().any(|l| {
                    let l = l.trim_start_matches(['#', ' ']);
                    l.starts_with(&format!("{leaf} ="))
                        || l.starts_with(&format!("[{leaf}"))
                        || l.starts_with(&format!("[[{leaf}]]"))
                        || l.starts_with(&format!("[{key}]"))
                }),
                "config/mediarelay.toml does not document {key}"
            );
        }
        assert!(text.contains("[paths."), "path rules are documented");
    }
}
