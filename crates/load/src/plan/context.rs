//! What every validation step shares: the error type, where in the file it is, and
//! duration parsing.

use std::path::PathBuf;
use std::time::Duration;

/// Errors reading or validating a scenario file.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("cannot read scenario file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path}:{line}:{column}: {message}")]
    At {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

pub(super) struct Ctx<'a> {
    pub(super) text: &'a str,
    pub(super) path: &'a str,
    pub(super) dir: Option<PathBuf>,
    pub(super) n_series: usize,
    pub(super) n_checks: usize,
}

impl Ctx<'_> {
    pub(super) fn at(&self, offset: usize, message: impl Into<String>) -> PlanError {
        let (line, column) = powertune_core::targets::line_col(self.text, offset);
        PlanError::At {
            path: self.path.to_string(),
            line,
            column,
            message: message.into(),
        }
    }
}

pub(super) fn dur(text: &str, what: &str) -> Result<Duration, String> {
    powertune_core::duration::parse(text).map_err(|e| format!("`{what}`: {e}"))
}

pub(super) fn opt_dur(
    v: &Option<String>,
    what: &str,
    default: Duration,
) -> Result<Duration, String> {
    match v {
        Some(t) => dur(t, what),
        None => Ok(default),
    }
}
