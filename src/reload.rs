//! Reloading the configuration file while running: on SIGHUP and when the
//! file changes (its contents, checked every couple of seconds). A file
//! that does not load is logged and the running configuration stays.
//! Settings that need a restart (listeners, logging) keep their running
//! values, with a warning. Changes made through the API since the last
//! load are replaced by what the file says.

use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{self, Overrides, live};
use crate::hub::Hub;

/// How often the file is checked for changes.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// Where the running configuration came from, to load it again the same way.
#[derive(Debug, Clone)]
pub struct ConfigOrigin {
    pub file: PathBuf,
    /// The `MEDIARELAY_*` environment at start.
    pub env: Vec<(String, String)>,
    pub overrides: Overrides,
}

impl ConfigOrigin {
    /// Loads the file (with the same environment and flags) and applies it.
    /// Returns whether the running configuration changed.
    pub fn reload(&self, hub: &Hub, why: &str) -> bool {
        let new = match config::load(Some(&self.file), self.env.clone(), &self.overrides) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(
                    why,
                    "configuration not reloaded, the running one stays: {e}"
                );
                return false;
            }
        };
        let result = hub.change_config("reload", |running| {
            let (new, kept) = live::keep_restart_keys(running, new);
            for key in kept {
                tracing::warn!(
                    key,
                    "{key} changed in {}; it takes effect only at restart",
                    self.file.display()
                );
            }
            Ok::<_, std::convert::Infallible>(new)
        });
        match result {
            Ok((_, diff)) => {
                if diff.is_empty() {
                    tracing::info!(why, "configuration reloaded: no change");
                }
                !diff.is_empty()
            }
            Err(never) => match never {},
        }
    }
}

/// Reloads on SIGHUP and when the file's contents change, until `shutdown`.
pub async fn watch(origin: ConfigOrigin, hub: Hub, shutdown: CancellationToken) {
    let read = |o: &ConfigOrigin| std::fs::read(&o.file).ok();
    let mut last = read(&origin);
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut tick = tokio::time::interval(WATCH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        #[cfg(unix)]
        let hangup = async {
            match hup.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let hangup = std::future::pending::<()>();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = hangup => {
                tracing::info!(file = %origin.file.display(), "SIGHUP: reloading the configuration");
                last = read(&origin);
                origin.reload(&hub, "SIGHUP");
            }
            _ = tick.tick() => {
                let now = read(&origin);
                if now.is_some() && now != last {
                    last = now;
                    tracing::info!(file = %origin.file.display(), "the configuration file changed: reloading");
                    origin.reload(&hub, "file changed");
                }
            }
        }
    }
}
