//! Reloading the config: swap in a validated generation, keep the breaker state of
//! unchanged credentials, and tell a listener what happened.

use super::gateway::Gateway;
use super::live::{build_live, ReloadSummary};
use super::source::{ConfigSource, EnvLookup, ReloadError, ReloadEvent, ReloadListener};
use crate::breaker::StateName;
use crate::config::{check_exposure, Config};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl Gateway {
    /// Where [`Gateway::reload_from_source`] (SIGHUP, `POST /admin/reload`) reads the
    /// config from, and how it looks up API keys.
    pub fn set_config_source(&self, path: PathBuf, env: EnvLookup) {
        *self.source.lock() = Some(ConfigSource { path, env });
    }

    /// Swaps in a validated config. Unchanged (provider, credential) pairs (same
    /// provider name, kind and base URL; same credential name and key) keep their
    /// breaker; disabled ones are re-enabled; new or changed pairs start closed. The
    /// listen address stays (changing it needs a restart).
    pub fn reload(&self, mut cfg: Config) -> ReloadSummary {
        let mut w = self.live.write();
        let old = w.clone();
        cfg.listen = old.cfg.listen;
        // [shared] is read at start, like the listen address
        cfg.shared = old.cfg.shared.clone();
        cfg.telemetry = old.cfg.telemetry.clone();
        let generation = old.generation + 1;
        let now = self.clock.now();
        match build_live(cfg, generation, Some(&old), now) {
            Ok((live, mut summary)) => {
                for (p, c) in &summary.reenabled_credentials {
                    let pi = live.cfg.provider_index(p);
                    let ci = pi.and_then(|pi| {
                        live.cfg.providers[pi]
                            .credentials
                            .iter()
                            .position(|d| &d.name == c)
                    });
                    if let (Some(pi), Some(ci)) = (pi, ci) {
                        self.log_transition(
                            &live,
                            (pi, ci),
                            StateName::Disabled,
                            StateName::Closed,
                            0,
                            "reload",
                        );
                    }
                }
                *w = Arc::new(live);
                summary.reloaded = true;
                summary
            }
            // only a header value can fail, and validation already refused those
            Err(_) => ReloadSummary::default(),
        }
    }

    /// Re-reads and validates the config file given to [`Gateway::set_config_source`]
    /// and swaps it in; a bad file changes nothing. The file's deprecation lines come
    /// back in [`ReloadSummary::warnings`].
    pub fn reload_from_source(&self) -> Result<ReloadSummary, ReloadError> {
        let loaded = {
            let src = self.source.lock();
            let src = src.as_ref().ok_or(ReloadError::NoSource)?;
            let env = src.env.clone();
            Config::load_with(&src.path, &move |k| env(k))?
        };
        check_exposure(
            self.config().listen,
            &loaded.config.clients,
            self.allow_unauthenticated.load(Ordering::Relaxed),
        )
        .map_err(ReloadError::Exposed)?;
        let telemetry_changed = loaded.config.telemetry != self.config().telemetry;
        let mut summary = self.reload(loaded.config);
        summary.warnings = loaded.warnings;
        if telemetry_changed {
            summary
                .warnings
                .push("telemetry: [telemetry] changed; it takes effect at the next restart".into());
        }
        Ok(summary)
    }

    /// Whom [`Gateway::reload_reported`] tells of each reload (the CLI prints it).
    pub fn set_reload_listener(&self, listener: ReloadListener) {
        *self.listener.lock() = Some(listener);
    }

    /// [`Gateway::reload_from_source`], told to the reload listener either way.
    pub fn reload_reported(&self, trigger: &str) -> Result<ReloadSummary, ReloadError> {
        let result = self.reload_from_source();
        let listener = self.listener.lock().clone();
        if let Some(listener) = listener {
            listener(&ReloadEvent {
                trigger,
                result: &result,
                generation: self.live.read().generation,
            });
        }
        result
    }

    /// Reloads on every SIGHUP (call inside the runtime).
    #[cfg(unix)]
    pub fn spawn_sighup_reloader(self: &Arc<Self>) -> std::io::Result<tokio::task::JoinHandle<()>> {
        let mut sig = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let gw = self.clone();
        Ok(tokio::spawn(async move {
            while sig.recv().await.is_some() {
                let _ = gw.reload_reported("SIGHUP");
            }
        }))
    }
}
