//! What every validation step shares: the error type (core's `ConfigError`, read as
//! `FILE:LINE:COL: KEY: WHY, e.g. RIGHT`), where in the file a key is, and duration
//! parsing.

use powertune_core::config_file::{line_col, offset_of, ConfigError, Source};
use std::path::PathBuf;
use std::time::Duration;

/// Errors reading or validating a scenario file: `FILE:LINE:COL: KEY: WHY`, the shape
/// of every configuration error (`powertune_core::config_file`).
pub type PlanError = ConfigError;

/// The longest any duration of a scenario file (or `--duration`) may be: 30 days.
/// Longer values are refused, so no sum or scaling of them can overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

/// The highest arrival rate (iterations per second, after `time_unit`) an
/// arrival-rate scenario may ask for: 10,000,000/s, as `--rate`.
pub const MAX_RATE_PER_S: f64 = 10_000_000.0;

/// The most iterations an arrival-rate scenario may queue for a busy VU.
pub const MAX_BACKLOG: u64 = 10_000_000;

pub(super) struct Ctx<'a> {
    pub(super) source: &'a Source,
    /// CSV data files and CA certificates are read relative to it.
    pub(super) dir: Option<PathBuf>,
    pub(super) n_series: usize,
    pub(super) n_checks: usize,
}

impl Ctx<'_> {
    /// An error about `key` (dotted: `scenarios.login.steps[1].url`), placed where the
    /// key is written, or else where the nearest key enclosing it is.
    pub(super) fn error(&self, key: &str, why: impl Into<String>) -> ConfigError {
        let text = &self.source.text;
        let mut k = key;
        let offset = loop {
            if let Some(o) = offset_of(text, k) {
                break Some(o);
            }
            match k.rfind(['.', '[']) {
                Some(i) => k = &k[..i],
                None => break None,
            }
        };
        self.error_at(offset, key, why)
    }

    /// An error about `key` at a byte offset of the file (a span the parser kept).
    pub(super) fn error_at(
        &self,
        offset: Option<usize>,
        key: &str,
        why: impl Into<String>,
    ) -> ConfigError {
        let (line, column) = offset.map_or((0, 0), |o| line_col(&self.source.text, o));
        ConfigError {
            path: self.source.path.clone(),
            line,
            column,
            key: key.to_string(),
            message: why.into(),
        }
    }

    /// The duration written at `key` (`"30s"`, `"250ms"`), at most [`MAX_DURATION`].
    pub(super) fn dur(&self, text: &str, key: &str) -> Result<Duration, ConfigError> {
        let d = powertune_core::duration::parse(text).map_err(|e| self.error(key, e))?;
        if d > MAX_DURATION {
            return Err(self.error(
                key,
                format!(
                    "`{}` is longer than the {} a load run may last, e.g. \"30m\"",
                    text.trim(),
                    powertune_core::duration::format(MAX_DURATION)
                ),
            ));
        }
        Ok(d)
    }

    /// A duration at `key` that must be above zero (zero would mean nothing).
    pub(super) fn positive(
        &self,
        d: Duration,
        key: &str,
        example: &str,
    ) -> Result<Duration, ConfigError> {
        if d.is_zero() {
            return Err(self.error(key, format!("must be above 0, e.g. {example}")));
        }
        Ok(d)
    }

    /// The duration at `key` when it is written, else `default`.
    pub(super) fn opt_dur(
        &self,
        v: &Option<String>,
        key: &str,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match v {
            Some(t) => self.dur(t, key),
            None => Ok(default),
        }
    }
}
