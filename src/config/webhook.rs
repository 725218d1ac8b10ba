//! Configuration of webhook delivery (`[[webhooks]]`, `[webhook_settings]`)
//! and of the synchronous `[on_publish]` hook. Secrets never appear in
//! `Debug` output, so a logged config does not leak them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One webhook endpoint (`[[webhooks]]`).
#[derive(Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://` or `https://` URL the events are POSTed to.
    pub url: String,
    /// HMAC-SHA256 key for `X-Mediarelay-Signature`; without it the
    /// endpoint gets unsigned requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Event kinds to send (`publish_start` …); empty: all of them.
    #[serde(default)]
    pub events: Vec<String>,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &crate::hub::source::redact(&self.url))
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("events", &self.events)
            .finish()
    }
}

/// Delivery tunables shared by every webhook (`[webhook_settings]`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSettings {
    /// One request (connect, send, answer) must complete in this long.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Events waiting per endpoint; more are dropped and counted.
    pub queue_size: usize,
    /// Requests per event (the first one included) before it is given up.
    pub max_attempts: u32,
    /// Delay bound before the first retry; doubles per retry up to
    /// `retry_max`; the actual delay is uniformly random below the bound
    /// (full jitter).
    #[serde(with = "humantime_serde")]
    pub retry_initial: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
    /// Consecutive failed requests that open an endpoint's circuit breaker.
    pub breaker_failures: u32,
    /// How long an open breaker makes no request before one probe.
    #[serde(with = "humantime_serde")]
    pub breaker_cooldown: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            timeout: Duration::from_secs(5),
            queue_size: 1024,
            max_attempts: 8,
            retry_initial: Duration::from_millis(500),
            retry_max: Duration::from_secs(30),
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(30),
        }
    }
}

/// What a publish is told when the `on_publish` hook cannot be asked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnPublishDefault {
    #[default]
    Allow,
    Deny,
}

/// The synchronous hook asked before a publisher is accepted
/// (`[on_publish]`, like nginx-rtmp's and SRS's `on_publish`).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OnPublishConfig {
    /// `http(s)://` URL to ask; `""`: no hook, every publish is allowed.
    pub url: String,
    /// HMAC-SHA256 key, as for `[[webhooks]]`; empty: unsigned.
    pub secret: String,
    /// How long to wait for the answer.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// `allow` or `deny` when the hook times out or cannot be reached.
    pub default: OnPublishDefault,
}

impl Default for OnPublishConfig {
    fn default() -> Self {
        OnPublishConfig {
            url: String::new(),
            secret: String::new(),
            timeout: Duration::from_secs(2),
            default: OnPublishDefault::Allow,
        }
    }
}

impl std::fmt::Debug for OnPublishConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnPublishConfig")
            .field("url", &crate::hub::source::redact(&self.url))
            .field(
                "secret",
                &if self.secret.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("timeout", &self.timeout)
            .field("default", &self.default)
            .finish()
    }
}

/// Checks that `url` is an absolute `http://` or `https://` URL with a host.
pub(crate) fn check_http_url(url: &str) -> Result<(), String> {
    match url::Url::parse(url) {
        Ok(u)
            if matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some_and(|h| !h.is_empty()) =>
        {
            Ok(())
        }
        _ => Err(format!("{:?} is not an http(s) URL", without_password(url))),
    }
}

/// `url` as written, unless it carries credentials: then without them.
fn without_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) if !u.username().is_empty() || u.password().is_some() => {
            crate::hub::source::redact(url)
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_secrets() {
        let w = WebhookConfig {
            url: "http://u:pw@127.0.0.1:9000/hook".into(),
            secret: Some("s3cret".into()),
            events: vec![],
        };
        let text = format!("{w:?}");
        assert!(!text.contains("s3cret") && !text.contains("pw"), "{text}");
        let p = OnPublishConfig {
            secret: "s3cret".into(),
            ..Default::default()
        };
        assert!(!format!("{p:?}").contains("s3cret"));
    }

    #[test]
    fn only_http_urls_with_a_host_pass() {
        assert!(check_http_url("http://127.0.0.1:9000/hook").is_ok());
        assert!(check_http_url("https://hooks.example.com").is_ok());
        assert_eq!(
            check_http_url("ftp://x").unwrap_err(),
            "\"ftp://x\" is not an http(s) URL"
        );
        assert!(check_http_url("not a url").is_err());
        assert!(check_http_url("http://").is_err());
    }
}
