//! The provider P95 baseline of `powertune gateway status`: taken from a snapshot,
//! saved with `--save-baseline FILE` and read back with `--baseline FILE`, in the
//! shared baseline file format of `powertune_core::baseline` (kind `gateway`). A file
//! of the earlier gateway-only shape (`{"version": 1, "providers": ...}`) is still read.

use crate::snapshot::StatusSnapshot;
use powertune_core::baseline::{self as file, BaselineError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The `kind` of a gateway baseline file.
pub const KIND: &str = "gateway";

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

    /// Reads a baseline saved by [`Baseline::save`] (or a file of the earlier shape).
    pub fn load(path: &Path) -> Result<Baseline, BaselineError> {
        let text = file::read_limited(path).map_err(|reason| BaselineError::Read {
            path: path.to_path_buf(),
            reason,
        })?;
        Self::parse(&text).map_err(|reason| BaselineError::Invalid {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Parses baseline JSON: the shared format, or a file of the earlier shape.
    pub fn parse(text: &str) -> Result<Baseline, String> {
        let legacy = serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .is_some_and(|v| v.get("schema").is_none() && v.get("version").is_some());
        if legacy {
            return serde_json::from_str(text).map_err(|e| {
                format!("not a gateway baseline ({e}); write one with --save-baseline")
            });
        }
        file::parse::<Baseline>(text, KIND).map(|b| b.data)
    }

    /// Writes the baseline (kind `gateway`; `source`, the gateway's URL, redacted).
    pub fn save(&self, path: &Path, source: &str) -> Result<(), BaselineError> {
        file::save(path, KIND, source, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Baseline {
        Baseline {
            version: 1,
            providers: [(
                "openai".to_string(),
                BaselineEntry {
                    p95_ms: 412.0,
                    count: 1200,
                },
            )]
            .into(),
        }
    }

    #[test]
    fn writes_the_shared_format_and_still_reads_the_earlier_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.json");
        sample()
            .save(&path, "http://user:secret@127.0.0.1:4000")
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["schema"], file::SCHEMA);
        assert_eq!(v["kind"], KIND);
        assert!(!text.contains("secret"), "{text}");
        assert_eq!(Baseline::load(&path).unwrap(), sample());
        let earlier =
            r#"{"version": 1, "providers": {"openai": {"p95_ms": 412.0, "count": 1200}}}"#;
        assert_eq!(Baseline::parse(earlier).unwrap(), sample());
    }

    #[test]
    fn files_of_another_kind_are_refused_with_what_was_expected() {
        let e = Baseline::parse(r#"{"schema": "something else"}"#).unwrap_err();
        assert!(e.contains("expected a gateway baseline"), "{e}");
        let e = Baseline::parse(r#"{"version": 1, "hosts": {}}"#).unwrap_err();
        assert!(e.contains("not a gateway baseline"), "{e}");
        let e = Baseline::parse("[1, 2").unwrap_err();
        assert!(e.contains("not JSON"), "{e}");
    }
}
