//! Changing the running configuration: JSON merge patches (RFC 7396) on the
//! config's JSON form, secrets redacted on the way out and restored on the
//! way in, and what a change touches.

use serde_json::{Map, Value};

use super::{Config, PathRule, load::validate};

/// What the API shows instead of a secret (a password, a webhook secret).
/// Sent back unchanged (a client that GETs, edits and PUTs), it stands for
/// the value already there.
pub use super::REDACTED;
/// What the API shows instead of the password in a URL (`rtsp://user:***@…`;
/// `<redacted>` would be percent-encoded there).
pub const URL_REDACTED: &str = "***";

/// Top-level keys that only take effect at start (listeners, logging): a
/// change through the API is refused; a reloaded file that changes them is
/// applied without them, with a warning.
pub const RESTART_KEYS: &[&str] = &[
    "log_level",
    "rtmp_listen",
    "http_listen",
    "api_listen",
    "webrtc_listen",
    "webrtc_tcp_listen",
    "webrtc_public_addresses",
    "rtsp_listen",
    "rtsps_listen",
    "rtsp_udp_rtp_listen",
    "rtsp_udp_rtcp_listen",
    "https_listen",
    "rtmps_listen",
    "tls",
];

/// Keys whose values are secrets wherever they appear.
const SECRET_KEYS: &[&str] = &["pass", "source_pass", "secret", "password"];
/// Keys holding URLs whose user information is a secret.
const URL_KEYS: &[&str] = &["source", "url"];

/// A refused change: the field and the reason, for a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct ChangeError {
    pub key: String,
    pub reason: String,
}

impl ChangeError {
    fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ChangeError {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// The configuration as JSON with every secret replaced by [`REDACTED`]
/// (passwords, webhook secrets, the password in a camera URL).
pub fn redacted_json(config: &Config) -> Value {
    let mut v = serde_json::to_value(config).unwrap_or(Value::Null);
    redact(&mut v);
    v
}

/// Replaces secrets in `v` (recursively) by [`REDACTED`].
pub fn redact(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, item) in map.iter_mut() {
                match item {
                    Value::String(s) if SECRET_KEYS.contains(&k.as_str()) && !s.is_empty() => {
                        *s = REDACTED.to_string();
                    }
                    Value::String(s) if URL_KEYS.contains(&k.as_str()) => {
                        *s = redact_url_password(s);
                    }
                    _ => redact(item),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// Query keys whose values are credentials in any URL.
const SECRET_QUERY_KEYS: &[&str] = &[
    "pass",
    "password",
    "pwd",
    "token",
    "jwt",
    "secret",
    "key",
    "auth",
    "sign",
    "signature",
];

/// Whether the value of query key `key` in a `scheme` URL is a secret: every
/// value for RTMP (its query string is how a player authenticates to an
/// origin), those of credential-like keys (`pass`, `token` …) otherwise.
pub fn is_secret_query_key(scheme: &str, key: &str) -> bool {
    matches!(scheme, "rtmp" | "rtmps")
        || SECRET_QUERY_KEYS
            .iter()
            .any(|s| key.eq_ignore_ascii_case(s))
}

/// `rtsp://user:secret@host/x` → `rtsp://user:***@host/x`, and secret query
/// values (see [`is_secret_query_key`]) → `***`; other text as is.
pub fn redact_url_password(text: &str) -> String {
    let Ok(mut u) = url::Url::parse(text) else {
        return text.to_string();
    };
    let mut changed = false;
    if u.password().is_some() {
        let _ = u.set_password(Some(URL_REDACTED));
        changed = true;
    }
    let scheme = u.scheme().to_string();
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .map(|(k, v)| {
            let v = if !v.is_empty() && is_secret_query_key(&scheme, &k) {
                changed = true;
                URL_REDACTED.to_string()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    if !changed {
        return text.to_string();
    }
    if !pairs.is_empty() {
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.to_string()
}

/// Puts the current secrets back where `new` carries [`REDACTED`]: `new`
/// and `current` are the same part of the config (the whole config, or one
/// path rule).
pub fn restore_redacted(new: &mut Value, current: &Value) {
    match (new, current) {
        (Value::Object(n), Value::Object(c)) => {
            for (k, item) in n.iter_mut() {
                let Some(old) = c.get(k) else { continue };
                match item {
                    Value::String(s) if s == REDACTED && SECRET_KEYS.contains(&k.as_str()) => {
                        *item = old.clone();
                    }
                    Value::String(s) if URL_KEYS.contains(&k.as_str()) => {
                        if let Some(old) = old.as_str() {
                            *s = restore_url_password(s, old);
                        }
                    }
                    _ => restore_redacted(item, old),
                }
            }
        }
        (Value::Array(n), Value::Array(c)) => {
            for (item, old) in n.iter_mut().zip(c) {
                restore_redacted(item, old);
            }
        }
        _ => {}
    }
}

/// A URL whose password is [`URL_REDACTED`] gets the password of `old` when
/// both name the same user, host and port; query values that are
/// [`URL_REDACTED`] get the value of the same key in `old` when both name the
/// same host, port and path.
fn restore_url_password(new: &str, old: &str) -> String {
    let (Ok(mut n), Ok(o)) = (url::Url::parse(new), url::Url::parse(old)) else {
        return new.to_string();
    };
    if n.host_str() != o.host_str() || n.port_or_known_default() != o.port_or_known_default() {
        return new.to_string();
    }
    let mut changed = false;
    if n.password() == Some(URL_REDACTED) && n.username() == o.username() {
        let _ = n.set_password(o.password());
        changed = true;
    }
    if n.path() == o.path() && n.query_pairs().any(|(_, v)| v == URL_REDACTED) {
        let pairs: Vec<(String, String)> = n
            .query_pairs()
            .map(|(k, v)| {
                let restored = (v == URL_REDACTED)
                    .then(|| o.query_pairs().find(|(ok, _)| *ok == k).map(|(_, ov)| ov))
                    .flatten();
                (k.into_owned(), restored.unwrap_or(v).into_owned())
            })
            .collect();
        n.query_pairs_mut().clear().extend_pairs(pairs);
        changed = true;
    }
    if changed {
        n.to_string()
    } else {
        new.to_string()
    }
}

/// Applies a JSON merge patch (RFC 7396 §2): objects merge key by key,
/// `null` removes a key, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in patch {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// A whole configuration from JSON, checked as the file is: the error
/// names the field.
pub fn config_from_json(v: Value) -> Result<Config, ChangeError> {
    let config: Config = serde_path_to_error::deserialize(v).map_err(|e| {
        let key = e.path().to_string();
        ChangeError::new(key, e.into_inner().to_string())
    })?;
    validate(&config).map_err(|(key, reason)| ChangeError::new(key, reason))?;
    Ok(config)
}

/// A path rule from JSON (same keys as `[paths."name"]`).
pub fn rule_from_json(name: &str, v: Value) -> Result<PathRule, ChangeError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let inner = e.path().to_string();
        let key = if inner == "." || inner.is_empty() {
            format!("paths.{name:?}")
        } else {
            format!("paths.{name:?}.{inner}")
        };
        ChangeError::new(key, e.into_inner().to_string())
    })
}

/// `PATCH /v1/config`: `patch` merged into the global settings of
/// `current`. Path rules are changed through their own routes, and
/// settings that need a restart are refused.
pub fn patch_global(current: &Config, patch: &Value) -> Result<Config, ChangeError> {
    let Value::Object(fields) = patch else {
        return Err(ChangeError::new(
            "",
            "the body must be a JSON object (a merge patch, RFC 7396)",
        ));
    };
    if fields.contains_key("paths") {
        return Err(ChangeError::new(
            "paths",
            "path rules are changed with PUT, PATCH or DELETE on /v1/config/paths/{name}",
        ));
    }
    let before = current.to_json_with_secrets();
    let mut next = before.clone();
    merge_patch(&mut next, patch);
    restore_redacted(&mut next, &before);
    for key in RESTART_KEYS {
        if next.get(key) != before.get(key) {
            return Err(ChangeError::new(
                *key,
                "takes effect only at start: change it in the config file and restart",
            ));
        }
    }
    config_from_json(next)
}

/// `PUT /v1/config/paths/{name}` (`patch` false: `body` is the whole rule)
/// or `PATCH` (`patch` true: merged into the existing rule).
pub fn put_rule(
    current: &Config,
    name: &str,
    body: &Value,
    patch: bool,
) -> Result<Config, ChangeError> {
    if !body.is_object() {
        return Err(ChangeError::new(
            format!("paths.{name:?}"),
            "the body must be a JSON object with the keys of a path rule",
        ));
    }
    let old = current
        .paths
        .get(name)
        .map(|r| serde_json::to_value(r).unwrap_or(Value::Null));
    let mut rule = match (&old, patch) {
        (Some(old), true) => {
            let mut v = old.clone();
            merge_patch(&mut v, body);
            v
        }
        (None, true) => {
            return Err(ChangeError::new(
                format!("paths.{name:?}"),
                "no such path rule (PUT creates one)",
            ));
        }
        (_, false) => body.clone(),
    };
    if let Some(old) = &old {
        restore_redacted(&mut rule, old);
    }
    let rule = rule_from_json(name, rule)?;
    let mut next = current.clone();
    next.paths.insert(name.to_string(), rule);
    validate(&next).map_err(|(key, reason)| ChangeError::new(key, reason))?;
    Ok(next)
}

/// `DELETE /v1/config/paths/{name}`.
pub fn delete_rule(current: &Config, name: &str) -> Result<Config, ChangeError> {
    if !current.paths.contains_key(name) {
        return Err(ChangeError::new(
            format!("paths.{name:?}"),
            "no such path rule",
        ));
    }
    let mut next = current.clone();
    next.paths.remove(name);
    Ok(next)
}

/// What differs between two configurations, for the `config_changed`
/// event and the log.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ConfigDiff {
    /// Top-level keys (other than `paths`) whose values differ.
    pub global: Vec<String>,
    pub paths_added: Vec<String>,
    pub paths_removed: Vec<String>,
    pub paths_changed: Vec<String>,
}

impl ConfigDiff {
    pub fn between(old: &Config, new: &Config) -> ConfigDiff {
        // With secrets, so that a changed password shows as a change.
        let (o, n) = (old.to_json_with_secrets(), new.to_json_with_secrets());
        let mut diff = ConfigDiff::default();
        if let (Value::Object(o), Value::Object(n)) = (&o, &n) {
            let mut keys: Vec<&String> = o.keys().chain(n.keys()).collect();
            keys.sort();
            keys.dedup();
            diff.global = keys
                .into_iter()
                .filter(|k| *k != "paths" && o.get(*k) != n.get(*k))
                .cloned()
                .collect();
        }
        for (name, rule) in &new.paths {
            match old.paths.get(name) {
                None => diff.paths_added.push(name.clone()),
                Some(r) if r != rule => diff.paths_changed.push(name.clone()),
                Some(_) => {}
            }
        }
        diff.paths_removed = old
            .paths
            .keys()
            .filter(|k| !new.paths.contains_key(*k))
            .cloned()
            .collect();
        diff
    }

    pub fn is_empty(&self) -> bool {
        self.global.is_empty()
            && self.paths_added.is_empty()
            && self.paths_removed.is_empty()
            && self.paths_changed.is_empty()
    }
}

/// `new` with the settings that need a restart taken from `running`, and
/// the names of those that differed (a reloaded file).
pub fn keep_restart_keys(running: &Config, mut new: Config) -> (Config, Vec<&'static str>) {
    let mut kept = Vec::new();
    macro_rules! keep {
        ($($field:ident),*) => {$(
            if serde_json::to_value(&new.$field).ok() != serde_json::to_value(&running.$field).ok() {
                kept.push(stringify!($field));
                new.$field = running.$field.clone();
            }
        )*};
    }
    keep!(
        log_level,
        rtmp_listen,
        http_listen,
        api_listen,
        webrtc_listen,
        webrtc_tcp_listen,
        webrtc_public_addresses,
        rtsp_listen,
        rtsps_listen,
        rtsp_udp_rtp_listen,
        rtsp_udp_rtcp_listen,
        https_listen,
        rtmps_listen,
        tls
    );
    (new, kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn with_camera() -> Config {
        let mut c = Config::default();
        c.paths.insert(
            "door".into(),
            PathRule {
                source: Some("rtsp://admin:hunter2@10.0.0.5:554/ch1".into()),
                source_pass: Some("other".into()),
                ..Default::default()
            },
        );
        c
    }

    #[test]
    fn merge_patch_follows_rfc_7396() {
        // RFC 7396 Appendix A, a few of its examples.
        for (target, patch, result) in [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
        ] {
            let mut t = target.clone();
            merge_patch(&mut t, &patch);
            assert_eq!(t, result, "{target} + {patch}");
        }
    }

    #[test]
    fn secrets_are_redacted_and_come_back_when_sent_back() {
        let c = with_camera();
        let shown = redacted_json(&c);
        let text = shown.to_string();
        assert!(
            !text.contains("hunter2") && !text.contains("other"),
            "{text}"
        );
        assert_eq!(
            shown["paths"]["door"]["source"],
            "rtsp://admin:***@10.0.0.5:554/ch1"
        );
        assert_eq!(shown["paths"]["door"]["source_pass"], REDACTED);
        // A client PUTs back what it got, changing one thing.
        let mut body = shown["paths"]["door"].clone();
        body["on_demand"] = json!(true);
        let next = put_rule(&c, "door", &body, false).unwrap();
        let rule = &next.paths["door"];
        assert_eq!(
            rule.source.as_deref(),
            Some("rtsp://admin:hunter2@10.0.0.5:554/ch1")
        );
        assert_eq!(rule.source_pass.as_deref(), Some("other"));
        assert_eq!(rule.on_demand, Some(true));
        // A redacted password is not carried to another camera.
        let body = json!({"source": "rtsp://admin:***@10.0.0.6/ch1"});
        let next = put_rule(&c, "door", &body, false).unwrap();
        assert_eq!(
            next.paths["door"].source.as_deref(),
            Some("rtsp://admin:***@10.0.0.6/ch1")
        );
    }

    #[test]
    fn query_credentials_of_a_source_are_redacted_and_restored() {
        let mut c = with_camera();
        c.paths.insert(
            "edge".into(),
            PathRule {
                source: Some("rtmp://origin:1935/live/src?user=edge&pass=hunter4".into()),
                ..PathRule::default()
            },
        );
        let shown = redacted_json(&c);
        assert_eq!(
            shown["paths"]["edge"]["source"],
            "rtmp://origin:1935/live/src?user=***&pass=***"
        );
        assert!(!shown.to_string().contains("hunter4"));
        let mut body = shown["paths"]["edge"].clone();
        body["on_demand"] = json!(true);
        let next = put_rule(&c, "edge", &body, false).unwrap();
        assert_eq!(
            next.paths["edge"].source.as_deref(),
            Some("rtmp://origin:1935/live/src?user=edge&pass=hunter4")
        );
        // Not carried to another stream.
        let body = json!({"source": "rtmp://origin:1935/live/other?user=***&pass=***"});
        let next = put_rule(&c, "edge", &body, false).unwrap();
        assert_eq!(
            next.paths["edge"].source.as_deref(),
            Some("rtmp://origin:1935/live/other?user=***&pass=***")
        );
        // A camera's ordinary query stays visible.
        assert_eq!(
            redact_url_password("rtsp://cam/realmonitor?channel=1&token=t"),
            "rtsp://cam/realmonitor?channel=1&token=***"
        );
    }

    #[test]
    fn user_passwords_survive_a_change_and_never_show() {
        let mut c = with_camera();
        c.users.push(crate::config::UserConfig {
            user: "obs".into(),
            pass: Some(crate::config::Secret::new("plain:hunter3")),
            permissions: vec![],
        });
        c.webhooks.push(crate::config::WebhookConfig {
            url: "http://127.0.0.1:9/hook".into(),
            secret: Some("whsecret".into()),
            ..Default::default()
        });
        let shown = redacted_json(&c).to_string();
        assert!(
            !shown.contains("hunter3") && !shown.contains("whsecret"),
            "{shown}"
        );
        let next = patch_global(&c, &json!({"hls": {"segment_count": 9}})).unwrap();
        assert_eq!(next.users, c.users);
        assert_eq!(next.webhooks, c.webhooks);
        // Sending the shown users back keeps their passwords.
        let shown = redacted_json(&c);
        let next = patch_global(&c, &json!({"users": shown["users"]})).unwrap();
        assert_eq!(next.users, c.users);
        let next = put_rule(&c, "yard", &json!({}), false).unwrap();
        assert_eq!(next.users, c.users);
        let mut changed = c.clone();
        changed.users[0].pass = Some(crate::config::Secret::new("plain:other"));
        assert_eq!(ConfigDiff::between(&c, &changed).global, ["users"]);
    }

    #[test]
    fn bad_changes_name_the_field_and_leave_the_config_alone() {
        let c = with_camera();
        let e = patch_global(&c, &json!({"hls": {"segment_count": 1}})).unwrap_err();
        assert_eq!(e.key, "hls.segment_count");
        let e = patch_global(&c, &json!({"hls": {"part_duration": "soon"}})).unwrap_err();
        assert_eq!(e.key, "hls.part_duration");
        let e = patch_global(&c, &json!({"rtmp_listen": ":1936"})).unwrap_err();
        assert_eq!(e.key, "rtmp_listen");
        let e = patch_global(&c, &json!({"nope": 1})).unwrap_err();
        assert!(e.reason.contains("nope"), "{e}");
        let e = patch_global(&c, &json!({"paths": {}})).unwrap_err();
        assert_eq!(e.key, "paths");
        let e = put_rule(&c, "cam", &json!({"source": "ftp://x"}), false).unwrap_err();
        assert_eq!(e.key, "paths.\"cam\".source");
        let e = put_rule(&c, "cam", &json!({"takeover": "yes"}), false).unwrap_err();
        assert_eq!(e.key, "paths.\"cam\".takeover");
        let e = put_rule(&c, "a/../b", &json!({}), false).unwrap_err();
        assert_eq!(e.key, "paths.\"a/../b\"");
        assert!(
            put_rule(&c, "cam", &json!({}), true).is_err(),
            "PATCH needs a rule"
        );
        assert!(delete_rule(&c, "cam").is_err());
        let ok = patch_global(&c, &json!({"hls": {"segment_count": 9}})).unwrap();
        assert_eq!(ok.hls.segment_count, 9);
        assert_eq!(ok.paths, c.paths);
    }

    #[test]
    fn the_diff_names_what_changed() {
        let old = with_camera();
        let mut new = old.clone();
        new.hls.segment_count = 9;
        new.paths.remove("door");
        new.paths.insert("yard".into(), PathRule::default());
        let d = ConfigDiff::between(&old, &new);
        assert_eq!(d.global, ["hls"]);
        assert_eq!(d.paths_added, ["yard"]);
        assert_eq!(d.paths_removed, ["door"]);
        assert!(d.paths_changed.is_empty());
        assert!(ConfigDiff::between(&old, &old).is_empty());
    }

    #[test]
    fn a_reload_keeps_listeners_it_cannot_change() {
        let running = Config::default();
        let mut file = Config {
            rtmp_listen: crate::net::ListenAddr::Any(1999),
            ..Config::default()
        };
        file.hls.segment_count = 9;
        let (next, kept) = keep_restart_keys(&running, file);
        assert_eq!(kept, ["rtmp_listen"]);
        assert_eq!(next.rtmp_listen, running.rtmp_listen);
        assert_eq!(next.hls.segment_count, 9);
    }

    #[test]
    fn tls_listeners_and_settings_need_a_restart() {
        let running = Config::default();
        let mut file = Config {
            https_listen: Some(crate::net::ListenAddr::Any(8443)),
            ..Config::default()
        };
        file.tls.api_tls = true;
        file.tls.cert = "/etc/relay/cert.pem".into();
        let (next, kept) = keep_restart_keys(&running, file);
        assert_eq!(kept, ["https_listen", "tls"]);
        assert_eq!(next.https_listen, None);
        assert!(!next.tls.api_tls && next.tls.cert.is_empty());

        let e = patch_global(&running, &json!({"tls": {"api_tls": true}})).unwrap_err();
        assert_eq!(e.key, "tls");
        let e = patch_global(&running, &json!({"rtmps_listen": ":1937"})).unwrap_err();
        assert_eq!(e.key, "rtmps_listen");
    }
}
