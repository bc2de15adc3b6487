//! The provider P95 baseline of `powertune gateway status`: taken from a snapshot,
//! saved with `--save-baseline FILE` and read back with `--baseline FILE`.

use crate::snapshot::StatusSnapshot;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why a baseline file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("cannot read baseline {} (save one with --save-baseline FILE)", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("baseline {} is not a powertune gateway baseline: {reason} (save one with --save-baseline FILE)", path.display())]
    Parse { path: PathBuf, reason: String },
    #[error("cannot write baseline {}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Provider P95 round trips saved by `powertune gateway status --save-baseline FILE`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Baseline {
    pub version: u32,
    /// Provider name → P95 round trip (ms) and how many calls it is based on.
    pub providers: BTreeMap<String, BaselineEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineEntry {
    pub p95_ms: f64,
    pub count: u64,
}

impl Baseline {
    /// The baseline a snapshot gives (providers with at least one successful call).
    pub fn from_snapshot(s: &StatusSnapshot) -> Baseline {
        Baseline {
            version: 1,
            providers: s
                .providers
                .iter()
                .filter(|p| p.latency_ms.count > 0)
                .map(|p| {
                    (
                        p.provider.clone(),
                        BaselineEntry {
                            p95_ms: p.latency_ms.p95,
                            count: p.latency_ms.count,
                        },
                    )
                })
                .collect(),
        }
    }

    /// Reads a baseline saved by [`Baseline::save`].
    pub fn load(path: &Path) -> Result<Baseline, BaselineError> {
        let text = std::fs::read_to_string(path).map_err(|source| BaselineError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|e| BaselineError::Parse {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }

    /// Writes the baseline as pretty JSON.
    pub fn save(&self, path: &Path) -> Result<(), BaselineError> {
        let write = |source| BaselineError::Write {
            path: path.to_path_buf(),
            source,
        };
        let text = serde_json::to_string_pretty(self).map_err(|e| write(e.into()))?;
        std::fs::write(path, text + "\n").map_err(write)
    }
}
