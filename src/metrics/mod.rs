//! `GET /metrics` in the Prometheus text exposition format (version 0.0.4):
//! paths, sources, sessions, events, HTTP requests by status, and the
//! process (CPU, memory, file descriptors) read from `/proc/self`.

mod process;
mod requests;
mod text;

use std::fmt::Write as _;
use std::time::SystemTime;

pub use requests::{RequestCounter, StatusCounts, count_requests};
pub use text::{CONTENT_TYPE, Exposition};

use crate::hub::{Hub, Role};

/// Everything `/metrics` reads from.
pub struct Sources<'a> {
    pub hub: &'a Hub,
    pub started: SystemTime,
    pub requests: &'a RequestCounter,
    /// Extra families written by parts that keep their own counters
    /// (webhooks), appended as they are.
    pub extra: Vec<String>,
}

/// Renders every metric.
pub fn render(src: &Sources<'_>) -> String {
    let mut out = Exposition::default();
    let since = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    };
    out.family("mediarelay_info", "gauge", "Build information (always 1).");
    out.sample(
        "mediarelay_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
    out.family(
        "mediarelay_start_time_seconds",
        "gauge",
        "When the server started, in seconds since the Unix epoch.",
    );
    out.sample("mediarelay_start_time_seconds", &[], since(src.started));

    paths(&mut out, src.hub);
    sessions(&mut out, src.hub);

    out.family(
        "mediarelay_events_total",
        "counter",
        "Events emitted (publish/read start/stop, source ready/error, config changed).",
    );
    out.sample(
        "mediarelay_events_total",
        &[],
        src.hub.events().emitted() as f64,
    );
    src.requests.render(&mut out);
    process::render(&mut out);
    let mut text = out.finish();
    for extra in &src.extra {
        let _ = write!(text, "{extra}");
    }
    text
}

fn paths(out: &mut Exposition, hub: &Hub) {
    let snaps = hub.path_snapshots();
    out.family(
        "mediarelay_path_publishing",
        "gauge",
        "1 while the path has a live stream.",
    );
    for p in &snaps {
        let live = p.stream.is_some() as u8 as f64;
        out.sample("mediarelay_path_publishing", &[("path", &p.name)], live);
    }
    out.family(
        "mediarelay_path_bytes_in_total",
        "counter",
        "Media bytes received for the path.",
    );
    for p in &snaps {
        out.sample(
            "mediarelay_path_bytes_in_total",
            &[("path", &p.name)],
            p.bytes_in as f64,
        );
    }
    out.family(
        "mediarelay_path_bytes_out_total",
        "counter",
        "Bytes sent to the path's readers.",
    );
    for p in &snaps {
        out.sample(
            "mediarelay_path_bytes_out_total",
            &[("path", &p.name)],
            p.bytes_out as f64,
        );
    }
    out.family(
        "mediarelay_path_readers",
        "gauge",
        "Reader sessions of the path by protocol.",
    );
    for p in &snaps {
        for (protocol, n) in &p.readers_by_protocol {
            let protocol = protocol_name(*protocol);
            out.sample(
                "mediarelay_path_readers",
                &[("path", &p.name), ("protocol", protocol)],
                *n as f64,
            );
        }
    }
    out.family(
        "mediarelay_path_frames_dropped",
        "gauge",
        "Frames dropped for the path's current readers that could not keep up.",
    );
    for p in &snaps {
        out.sample(
            "mediarelay_path_frames_dropped",
            &[("path", &p.name)],
            p.frames_dropped as f64,
        );
    }
    out.family(
        "mediarelay_track_bitrate_bits_per_second",
        "gauge",
        "Ingest bitrate of a track, measured over the last second of media.",
    );
    for p in &snaps {
        for t in p.stream.iter().flat_map(|s| &s.tracks) {
            if let Some(b) = t.bitrate {
                let index = t.index.to_string();
                out.sample(
                    "mediarelay_track_bitrate_bits_per_second",
                    &[("path", &p.name), ("track", &index), ("codec", t.codec)],
                    b as f64,
                );
            }
        }
    }
    out.family(
        "mediarelay_source_state",
        "gauge",
        "State of a pulled source: 1 for the current state.",
    );
    for p in &snaps {
        if let Some(st) = p.source.as_ref().and_then(|s| s.status.as_ref()) {
            let state = serde_json::to_value(st.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            out.sample(
                "mediarelay_source_state",
                &[("path", &p.name), ("state", &state)],
                1.0,
            );
        }
    }
    for (name, help, get) in [
        (
            "mediarelay_source_connects_total",
            "Times a pulled source became ready (reconnects = this - 1).",
            (|s: &crate::hub::source::StatusInner| s.connects) as fn(&_) -> u64,
        ),
        (
            "mediarelay_source_failures_total",
            "Failed attempts of a pulled source.",
            |s| s.failures,
        ),
        (
            "mediarelay_source_packets_lost_total",
            "RTP packets a pulled source lost.",
            |s| s.packets_lost,
        ),
        (
            "mediarelay_source_frames_discarded_total",
            "Frames a pulled source discarded up to the next keyframe after a loss.",
            |s| s.frames_discarded,
        ),
    ] {
        out.family(name, "counter", help);
        for p in &snaps {
            if let Some(st) = p.source.as_ref().and_then(|s| s.status.as_ref()) {
                out.sample(name, &[("path", &p.name)], get(st) as f64);
            }
        }
    }
}

fn sessions(out: &mut Exposition, hub: &Hub) {
    let mut counts = std::collections::BTreeMap::new();
    for s in hub.sessions() {
        let role = match s.role {
            Role::Publisher => "publisher",
            Role::Reader => "reader",
        };
        *counts
            .entry((protocol_name(s.protocol), role))
            .or_insert(0u64) += 1;
    }
    out.family(
        "mediarelay_sessions",
        "gauge",
        "Live sessions by protocol and role.",
    );
    for ((protocol, role), n) in counts {
        out.sample(
            "mediarelay_sessions",
            &[("protocol", protocol), ("role", role)],
            n as f64,
        );
    }
}

fn protocol_name(p: crate::hub::Protocol) -> &'static str {
    match p {
        crate::hub::Protocol::Rtmp => "rtmp",
        crate::hub::Protocol::Rtsp => "rtsp",
        crate::hub::Protocol::Hls => "hls",
        crate::hub::Protocol::WebRtc => "webrtc",
    }
}

/// Webhook delivery families: per endpoint URL, delivered / failed / given
/// up / dropped counters, queue length and breaker state.
pub fn webhook_families(stats: &[crate::events::webhook::WebhookStats]) -> String {
    let mut out = Exposition::default();
    type Get = fn(&crate::events::webhook::WebhookStats) -> f64;
    let families: [(&str, &str, &str, Get); 6] = [
        (
            "mediarelay_webhook_delivered_total",
            "counter",
            "Events a webhook endpoint answered with 2xx.",
            |s| s.delivered as f64,
        ),
        (
            "mediarelay_webhook_failed_attempts_total",
            "counter",
            "Webhook requests that failed (non-2xx, timeout, connection error).",
            |s| s.failed_attempts as f64,
        ),
        (
            "mediarelay_webhook_given_up_total",
            "counter",
            "Events abandoned after the last attempt.",
            |s| s.given_up as f64,
        ),
        (
            "mediarelay_webhook_dropped_total",
            "counter",
            "Events never queued for an endpoint (queue full or dispatcher lag).",
            |s| s.dropped as f64,
        ),
        (
            "mediarelay_webhook_queued",
            "gauge",
            "Events waiting in an endpoint's queue.",
            |s| s.queued as f64,
        ),
        (
            "mediarelay_webhook_breaker_opened_total",
            "counter",
            "Times an endpoint's circuit breaker opened.",
            |s| s.breaker_opened as f64,
        ),
    ];
    for (name, kind, help, get) in families {
        out.family(name, kind, help);
        for s in stats {
            out.sample(name, &[("url", &s.url)], get(s));
        }
    }
    out.family(
        "mediarelay_webhook_breaker_state",
        "gauge",
        "Circuit breaker of an endpoint: 1 for its current state.",
    );
    for s in stats {
        let state = serde_json::to_value(s.breaker)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        out.sample(
            "mediarelay_webhook_breaker_state",
            &[("url", &s.url), ("state", &state)],
            1.0,
        );
    }
    out.finish()
}
