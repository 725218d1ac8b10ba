//! Applying a new configuration to a running hub: only the paths whose
//! source settings changed are touched; everything else keeps going.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{Hub, Path};
use crate::config::live::ConfigDiff;
use crate::config::{Config, PathSettings};
use crate::events::{Event, EventKind};

/// How long a restarted source may take to let go of its path before the
/// new one is started anyway.
const SOURCE_STOP_WAIT: Duration = Duration::from_secs(5);

/// Whether two settings pull the same source the same way. Other settings
/// (takeover, grace, start timeout) are read when they are used, so a
/// change to them needs nothing done now.
fn same_source(a: &PathSettings, b: &PathSettings) -> bool {
    a.source == b.source
        && a.rtsp_transport == b.rtsp_transport
        && a.source_user == b.source_user
        && a.source_pass == b.source_pass
        && a.on_demand == b.on_demand
        && a.on_demand_close_after == b.on_demand_close_after
}

impl Hub {
    /// Makes `new` the running configuration. Paths whose source settings
    /// changed are restarted (a camera whose URL changed), stopped (a rule
    /// removed) or started (a camera added); publishers of a path that is
    /// now pulled are ended. Other paths, their publishers and readers are
    /// not touched. Emits `config_changed` (with `cause`, e.g. `api` or
    /// `reload`) unless nothing changed.
    pub fn apply_config(&self, new: Config, cause: &str) -> ConfigDiff {
        let new = Arc::new(new);
        let old = {
            let mut slot = self.inner.config.write().unwrap_or_else(|e| e.into_inner());
            std::mem::replace(&mut *slot, Arc::clone(&new))
        };
        let diff = ConfigDiff::between(&old, &new);
        if diff.is_empty() {
            return diff;
        }
        self.inner.config_tx.send_replace(Arc::clone(&new));

        let mut names: BTreeSet<String> = self.paths().keys().cloned().collect();
        names.extend(old.paths.keys().filter(|k| !k.contains('*')).cloned());
        names.extend(new.paths.keys().filter(|k| !k.contains('*')).cloned());
        let mut restarted = Vec::new();
        for name in names {
            let (was, now) = (old.path_settings(&name), new.path_settings(&name));
            if same_source(&was, &now) {
                continue;
            }
            let path = self.paths().get(&name).cloned();
            if let Some(path) = &path {
                let st = path.lock();
                if st.source.is_some() || now.source.is_pulled() {
                    // A pulled source (restarted below if still wanted) or a
                    // publisher on a path that is now pulled.
                    if let Some(p) = &st.publisher {
                        tracing::info!(path = %name, "config change: stopping the path's source");
                        p.cancel();
                    }
                }
            }
            let wanted = now.source.is_pulled()
                && (!now.on_demand || path.as_ref().is_some_and(|p| self.has_readers(p)));
            if wanted {
                restarted.push(name.clone());
                self.start_source_when_free(name, now);
            }
        }

        tracing::info!(
            cause,
            global = ?diff.global,
            added = ?diff.paths_added,
            removed = ?diff.paths_removed,
            changed = ?diff.paths_changed,
            "configuration changed"
        );
        let mut e = Event::new(EventKind::ConfigChanged);
        e.detail = Some(serde_json::json!({
            "cause": cause,
            "global": diff.global,
            "paths_added": diff.paths_added,
            "paths_removed": diff.paths_removed,
            "paths_changed": diff.paths_changed,
            "sources_started": restarted,
        }));
        self.inner.events.emit(e);
        diff
    }

    /// Computes a new configuration from the running one with `change` and
    /// applies it, one change at a time. An error from `change` leaves the
    /// running configuration as it was.
    pub fn change_config<E>(
        &self,
        cause: &str,
        change: impl FnOnce(&Config) -> Result<Config, E>,
    ) -> Result<(Arc<Config>, ConfigDiff), E> {
        let _one_at_a_time = self
            .inner
            .config_change
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let next = change(&self.config())?;
        let diff = self.apply_config(next, cause);
        Ok((self.config(), diff))
    }

    /// Changes of the running configuration, for parts that keep their own
    /// state from it (webhooks, auth, limits).
    pub fn config_changes(&self) -> tokio::sync::watch::Receiver<Arc<Config>> {
        self.inner.config_tx.subscribe()
    }

    fn has_readers(&self, path: &Arc<Path>) -> bool {
        path.waiters.load(Ordering::Relaxed) > 0
            || path
                .lock()
                .stream
                .as_ref()
                .is_some_and(|s| s.reader_count() > 0)
    }

    /// Starts the source of `name` once the one that ran there has let go
    /// of the path (it stops asynchronously), unless the configuration
    /// changed again meanwhile.
    fn start_source_when_free(&self, name: String, settings: PathSettings) {
        let hub = self.clone();
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + SOURCE_STOP_WAIT;
            loop {
                let path = hub.get_or_create_path(&name);
                let busy = {
                    let st = path.lock();
                    st.source.is_some() || st.publisher.is_some()
                };
                if !busy || tokio::time::Instant::now() >= deadline {
                    if hub.config().path_settings(&name) == settings {
                        hub.ensure_source(&path, &settings);
                    }
                    hub.forget_if_idle(&path);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }
}
