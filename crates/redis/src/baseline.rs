//! The ops/s baseline file (`--save-baseline FILE` writes it, `--baseline FILE` reads
//! it): JSON, `{"schema": "powertune.redis-baseline/v1", ...}`.

use crate::error::RedisError;
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const SCHEMA: &str = "powertune.redis-baseline/v1";

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

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    schema: String,
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
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        Self::parse(&text).map_err(err)
    }

    /// Parses baseline JSON; the error names the problem and shows a right file.
    pub fn parse(text: &str) -> Result<Baseline, String> {
        let example = format!(
            r#"example: {{"schema": "{SCHEMA}", "instantaneous_ops_per_sec": 1200, "avg_ops_per_sec": 950, "saved_at": "2026-01-01T00:00:00Z"}}"#
        );
        let f: File = serde_json::from_str(text).map_err(|e| format!("{e} ({example})"))?;
        if f.schema != SCHEMA {
            return Err(format!(
                "schema {:?} is not {SCHEMA:?} ({example})",
                f.schema
            ));
        }
        let b = f.baseline;
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

    /// Writes the baseline file.
    pub fn save(&self, path: &Path) -> Result<(), RedisError> {
        let file = File {
            schema: SCHEMA.to_string(),
            baseline: self.clone(),
        };
        let text = serde_json::to_string_pretty(&file).map_err(|e| RedisError::Baseline {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        std::fs::write(path, text + "\n").map_err(|e| RedisError::Baseline {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.json");
        let b = Baseline {
            instantaneous_ops_per_sec: 12.0,
            avg_ops_per_sec: 3.0,
            saved_at: "t".into(),
            redis_url: "redis://h/0".into(),
        };
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
}
