//! The ops/s baseline (`--save-baseline FILE` writes it, `--baseline FILE` reads it),
//! in the one baseline format of `powertune_core::baseline` (schema
//! `powertune.baseline/v1`, kind `redis`, the figures under `data`). Files of the
//! earlier `powertune.redis-baseline/v1` schema are still read.

use crate::error::RedisError;
use powertune_core::baseline as file;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The kind of the baseline files `powertune redis` writes.
pub const KIND: &str = "redis";
/// The schema of the redis-only files written before the shared format; still read.
pub const LEGACY_SCHEMA: &str = "powertune.redis-baseline/v1";

/// A saved baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Baseline {
    /// `instantaneous_ops_per_sec` when it was saved.
    pub instantaneous_ops_per_sec: f64,
    /// `total_commands_processed / uptime_in_seconds` when it was saved.
    pub avg_ops_per_sec: f64,
    /// RFC 3339 time of saving.
    pub saved_at: String,
    /// The server it was taken from (password removed).
    #[serde(default)]
    pub redis_url: String,
}

/// What a `redis` baseline file holds under `data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Ops {
    instantaneous_ops_per_sec: f64,
    avg_ops_per_sec: f64,
}

/// A file of [`LEGACY_SCHEMA`]: the fields at the top level.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacyFile {
    #[serde(rename = "schema")]
    _schema: String,
    #[serde(flatten)]
    baseline: Baseline,
}

impl Baseline {
    /// Reads and validates a baseline file.
    pub fn load(path: &Path) -> Result<Baseline, RedisError> {
        let err = |reason: String| RedisError::Baseline {
            path: path.display().to_string(),
            reason,
        };
        let text = file::read_limited(path).map_err(err)?;
        Self::parse(&text).map_err(err)
    }

    /// Parses baseline JSON; the error names the problem and shows a right file.
    pub fn parse(text: &str) -> Result<Baseline, String> {
        let example = format!(
            r#"example: {{"schema": "{}", "kind": "{KIND}", "saved_at": "2026-01-01T00:00:00Z", "data": {{"instantaneous_ops_per_sec": 1200, "avg_ops_per_sec": 950}}}}"#,
            file::SCHEMA
        );
        let legacy = serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .is_some_and(|v| v.get("schema").and_then(|s| s.as_str()) == Some(LEGACY_SCHEMA));
        let b = if legacy {
            let f: LegacyFile =
                serde_json::from_str(text).map_err(|e| format!("{e} ({example})"))?;
            f.baseline
        } else {
            let f: file::Baseline<Ops> =
                file::parse(text, KIND).map_err(|e| format!("{e} ({example})"))?;
            Baseline {
                instantaneous_ops_per_sec: f.data.instantaneous_ops_per_sec,
                avg_ops_per_sec: f.data.avg_ops_per_sec,
                saved_at: f.saved_at,
                redis_url: f.source,
            }
        };
        for (name, v) in [
            ("instantaneous_ops_per_sec", b.instantaneous_ops_per_sec),
            ("avg_ops_per_sec", b.avg_ops_per_sec),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(format!("{name} {v} must be a number >= 0 ({example})"));
            }
        }
        Ok(b)
    }

    /// Writes the baseline file (kind `redis`, the URL redacted).
    pub fn save(&self, path: &Path) -> Result<(), RedisError> {
        let ops = Ops {
            instantaneous_ops_per_sec: self.instantaneous_ops_per_sec,
            avg_ops_per_sec: self.avg_ops_per_sec,
        };
        let mut f = file::Baseline::new(KIND, &self.redis_url, ops);
        f.saved_at = self.saved_at.clone();
        let err = |reason: String| RedisError::Baseline {
            path: path.display().to_string(),
            reason,
        };
        let text = serde_json::to_string_pretty(&f).map_err(|e| err(e.to_string()))?;
        std::fs::write(path, text + "\n").map_err(|e| err(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(redis_url: &str) -> Baseline {
        Baseline {
            instantaneous_ops_per_sec: 12.0,
            avg_ops_per_sec: 3.0,
            saved_at: "t".into(),
            redis_url: redis_url.into(),
        }
    }

    #[test]
    fn round_trips_and_rejects_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.json");
        let b = sample("redis://h/0");
        b.save(&p).unwrap();
        assert_eq!(Baseline::load(&p).unwrap(), b);
        let e = Baseline::parse(
            r#"{"schema":"x","instantaneous_ops_per_sec":1,"avg_ops_per_sec":1,"saved_at":"t"}"#,
        )
        .unwrap_err();
        assert!(e.contains("example"), "{e}");
        let e = Baseline::parse(r#"{"schema":"powertune.redis-baseline/v1","instantaneous_ops_per_sec":-1,"avg_ops_per_sec":1,"saved_at":"t"}"#).unwrap_err();
        assert!(e.contains(">= 0"), "{e}");
        assert!(Baseline::load(&dir.path().join("missing.json"))
            .unwrap_err()
            .to_string()
            .contains("missing.json"));
    }

    #[test]
    fn writes_the_shared_format_and_still_reads_the_legacy_one() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.json");
        let b = sample("redis://:pw@h/0");
        b.save(&p).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        assert_eq!(v["schema"], "powertune.baseline/v1");
        assert_eq!(v["kind"], "redis");
        assert_eq!(v["source"], "redis://:***@h/0");
        assert_eq!(v["data"]["instantaneous_ops_per_sec"], 12.0);
        let old = Baseline::parse(r#"{"schema":"powertune.redis-baseline/v1","instantaneous_ops_per_sec":5,"avg_ops_per_sec":4,"saved_at":"then","redis_url":"redis://h/1"}"#).unwrap();
        assert_eq!(
            (old.instantaneous_ops_per_sec, old.saved_at.as_str()),
            (5.0, "then")
        );
        let e = Baseline::parse(
            r#"{"schema":"powertune.baseline/v1","kind":"gateway","saved_at":"t","data":{}}"#,
        )
        .unwrap_err();
        assert!(
            e.contains("a gateway baseline") && e.contains("example"),
            "{e}"
        );
    }
}
