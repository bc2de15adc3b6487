//! Where a reload reads the config from, and whom it tells what happened.

use super::live::ReloadSummary;
use crate::config::ConfigError;
use std::path::PathBuf;
use std::sync::Arc;

/// How API keys are looked up by name (the environment, in the CLI).
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Told of every reload that [`super::Gateway::reload_reported`] runs (SIGHUP,
/// `POST /admin/reload`), accepted or refused.
pub type ReloadListener = Arc<dyn Fn(&ReloadEvent<'_>) + Send + Sync>;

/// The config file a reload re-reads, and how its API keys are looked up.
pub(crate) struct ConfigSource {
    pub(crate) path: PathBuf,
    pub(crate) env: EnvLookup,
}

/// Why a reload was refused (the previous config keeps serving).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("this gateway was not started from a config file, so there is nothing to reload (start it with --config gateway.toml)")]
    NoSource,
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The new file would leave a gateway reachable beyond loopback without client keys.
    #[error("{0}")]
    Exposed(String),
}

/// One reload as a listener sees it; its `Display` is the one line to show.
#[derive(Debug)]
pub struct ReloadEvent<'a> {
    /// What asked for it (`SIGHUP`, `POST /admin/reload`).
    pub trigger: &'a str,
    pub result: &'a Result<ReloadSummary, ReloadError>,
    /// The config generation serving after it.
    pub generation: u64,
}

impl ReloadEvent<'_> {
    /// The deprecation lines of an accepted file, each to be shown on a line of its
    /// own after the event's line.
    pub fn warnings(&self) -> &[String] {
        match self.result {
            Ok(s) => &s.warnings,
            Err(_) => &[],
        }
    }
}

impl std::fmt::Display for ReloadEvent<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let trigger = self.trigger;
        match self.result {
            Ok(s) => write!(f, "reload ({trigger}): {s}"),
            Err(e) => write!(
                f,
                "reload ({trigger}) refused, still serving config generation {}: {e}",
                self.generation
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_event_reads_as_one_line() {
        let ok = Ok(ReloadSummary {
            reloaded: true,
            generation: 2,
            kept: 1,
            fresh: 2,
            reenabled: 0,
            removed: 3,
            warnings: vec!["g.toml:3: retry.base_ms: deprecated; write base = \"1ms\"".into()],
            ..Default::default()
        });
        let e = ReloadEvent {
            trigger: "SIGHUP",
            result: &ok,
            generation: 2,
        };
        assert_eq!(
            e.to_string(),
            "reload (SIGHUP): config generation 2: 1 credentials kept their breaker state, 2 new or changed start closed, 0 re-enabled, 3 removed"
        );
        assert_eq!(e.warnings().len(), 1);
        assert!(e.warnings()[0].contains("retry.base_ms: deprecated"));
        let refused = Err(ReloadError::NoSource);
        let e = ReloadEvent {
            trigger: "POST /admin/reload",
            result: &refused,
            generation: 4,
        };
        let line = e.to_string();
        assert!(e.warnings().is_empty());
        assert!(
            line.starts_with("reload (POST /admin/reload) refused, still serving config generation 4: this gateway was not started"),
            "{line}"
        );
    }
}
