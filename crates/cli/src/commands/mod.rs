//! One module per command. Each parses its arguments, validates them before any
//! socket opens, calls one engine and renders the report.

pub mod targets;

use std::path::PathBuf;

/// What every command gets from the global flags.
#[derive(Debug, Clone)]
pub struct Context {
    pub targets_path: Option<PathBuf>,
}

impl Context {
    /// The targets in force: defaults plus `--targets FILE` or `./powertune.toml`.
    pub fn targets(&self) -> anyhow::Result<powertune_core::Targets> {
        Ok(powertune_core::Targets::load(self.targets_path.as_deref())?)
    }
}
