//! Layering: embedded defaults ← config file ← `MEDIARELAY_*` environment ←
//! command-line flags, then validation.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use toml::{Table, Value};

use super::{Config, PathRule, validate_rule_name};

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
    let file_origin = file
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "embedded defaults".to_string());
    let mut table = match file {
        None => Table::new(),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
                origin: file_origin.clone(),
                key: String::new(),
                reason: format!("cannot read: {e}"),
            })?;
            text.parse::<Table>().map_err(|e| ConfigError {
                origin: file_origin.clone(),
                key: String::new(),
                reason: e.to_string().trim_end().to_string(),
            })?
        }
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
            .find(|(k, _)| key == k.as_str() || key.starts_with(&format!("{k}.")))
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
        ..Config::default()
    };
    if let Ok(Value::Table(t)) = Value::try_from(&defaults) {
        for (k, v) in t {
            // A table as a whole takes a TOML inline table
            // (MEDIARELAY_PATHS='{ "live/*" = { takeover = true } }').
            if let Value::Table(inner) = &v
                && k != "paths"
            {
                keys.extend(inner.keys().map(|ik| format!("{k}.{ik}")));
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

fn validate(c: &Config) -> Result<(), (String, String)> {
    let err = |key: &str, reason: String| Err((key.to_string(), reason));
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&c.log_level) {
        return err("log_level", format!("not a log level or filter: {e}"));
    }
    for (key, d) in [
        ("read_timeout", c.read_timeout),
        ("write_timeout", c.write_timeout),
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
    if h.start_timeout < Duration::from_millis(100) {
        return err("hls.start_timeout", "must be at least 100ms".into());
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
    Ok(())
}

fn validate_tls(c: &Config) -> Result<(), (String, String)> {
    let t = &c.tls;
    match (t.cert.is_empty(), t.key.is_empty()) {
        (false, true) => return Err(("tls.key".into(), "must be set with tls.cert".into())),
        (true, false) => return Err(("tls.cert".into(), "must be set with tls.key".into())),
        _ => {}
    }
    if !t.is_configured() {
        if c.https_listen.is_some() {
            return Err((
                "https_listen".into(),
                "needs tls.cert and tls.key (or \"\" to turn it off)".into(),
            ));
        }
        if t.api_tls {
            return Err(("tls.api_tls".into(), "needs tls.cert and tls.key".into()));
        }
        return Ok(());
    }
    if t.reload_interval < Duration::from_millis(100) {
        return Err((
            "tls.reload_interval".into(),
            "must be at least 100ms".into(),
        ));
    }
    // Read the pair now, so a bad file stops the start with its name.
    crate::tls::load_certified_key(Path::new(&t.cert), Path::new(&t.key))
        .map(|_| ())
        .map_err(|e| {
            (
                e.key.to_string(),
                format!("{}: {}", e.path.display(), e.reason),
            )
        })
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
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/mediarelay.toml");
        let c = load(Some(&path), Vec::new(), &Overrides::default()).unwrap();
        let defaults = Config::default();
        assert_eq!(c.rtmp_listen, defaults.rtmp_listen);
        let text = std::fs::read_to_string(&path).unwrap();
        for key in known_keys() {
            let leaf = key.rsplit('.').next().unwrap();
            assert!(
                text.lines().any(|l| {
                    let l = l.trim_start_matches(['#', ' ']);
                    l.starts_with(&format!("{leaf} =")) || l.starts_with(&format!("[{leaf}"))
                }),
                "config/mediarelay.toml does not document {key}"
            );
        }
        assert!(text.contains("[paths."), "path rules are documented");
    }
}
