//! One baseline file format for every command that compares against an earlier run
//! (`--save-baseline FILE` writes it, `--baseline FILE` reads it).
//!
//! ```json
//! { "schema": "powertune.baseline/v1", "kind": "redis", "saved_at": "2026-01-01T00:00:00Z",
//!   "source": "redis://cache:6379/0", "data": { ... } }
//! ```
//!
//! `kind` names the command whose `data` it holds; reading a file of another kind, of
//! another schema or that is not JSON is one clear error naming the file, what it is
//! and what was expected. `source` is always stored redacted. Files larger than
//! [`MAX_BYTES`] are refused before they are read.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The schema string of every baseline file.
pub const SCHEMA: &str = "powertune.baseline/v1";

/// The largest baseline or report file any command reads (64 MiB).
pub const MAX_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("{path}: cannot read baseline: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path}: cannot write baseline: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// A baseline as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Baseline<T> {
    pub schema: String,
    /// The command whose data this is (`redis`, `gateway`, `apm`, ...).
    pub kind: String,
    /// RFC 3339 time of saving.
    pub saved_at: String,
    /// Where it was taken from, redacted.
    #[serde(default)]
    pub source: String,
    pub data: T,
}

impl<T> Baseline<T> {
    pub fn new(kind: &str, source: &str, data: T) -> Baseline<T> {
        Baseline {
            schema: SCHEMA.to_string(),
            kind: kind.to_string(),
            saved_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            source: crate::redact::url(source),
            data,
        }
    }
}

/// Writes `data` as a baseline of `kind` taken from `source`.
pub fn save<T: Serialize>(
    path: &Path,
    kind: &str,
    source: &str,
    data: &T,
) -> Result<(), BaselineError> {
    let b = Baseline::new(kind, source, data);
    let text = serde_json::to_string_pretty(&b).map_err(|e| BaselineError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    std::fs::write(path, text + "\n").map_err(|e| BaselineError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Reads a baseline of `kind`, checking its schema and kind.
pub fn load<T: DeserializeOwned>(path: &Path, kind: &str) -> Result<Baseline<T>, BaselineError> {
    let text = read_limited(path).map_err(|reason| BaselineError::Read {
        path: path.to_path_buf(),
        reason,
    })?;
    parse(&text, kind).map_err(|reason| BaselineError::Invalid {
        path: path.to_path_buf(),
        reason,
    })
}

/// Parses baseline JSON of `kind`; the error says what the text is and what was expected.
pub fn parse<T: DeserializeOwned>(text: &str, kind: &str) -> Result<Baseline<T>, String> {
    let expected = format!(
        "a {kind} baseline (schema \"{SCHEMA}\", kind \"{kind}\"; write one with --save-baseline)"
    );
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON ({e}); expected {expected}"))?;
    let schema = v.get("schema").and_then(|s| s.as_str()).unwrap_or("");
    if schema != SCHEMA {
        let what = if schema.is_empty() {
            "a JSON file without a schema".to_string()
        } else {
            format!("a file of schema \"{schema}\"")
        };
        return Err(format!("{what}; expected {expected}"));
    }
    let got = v.get("kind").and_then(|s| s.as_str()).unwrap_or("");
    if got != kind {
        return Err(format!("a {got} baseline; expected {expected}"));
    }
    serde_json::from_value(v).map_err(|e| format!("{e}; expected {expected}"))
}

/// Reads a file of at most [`MAX_BYTES`], refusing larger ones before reading them;
/// a device or pipe that reports no size (`/dev/zero`) is read no further than the
/// limit either.
pub fn read_limited(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let too_large = |size: String| {
        format!(
            "{size} is larger than the {} powertune reads of a file it holds whole",
            crate::units::bytes(MAX_BYTES)
        )
    };
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if meta.is_dir() {
        return Err("is a directory".into());
    }
    if meta.len() > MAX_BYTES {
        return Err(too_large(crate::units::bytes(meta.len())));
    }
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut text = String::new();
    file.take(MAX_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > MAX_BYTES {
        // A device or pipe: its size is unknown, only that it goes on past the cap.
        return Err(too_large("what it holds".to_string()));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endless_device_is_read_no_further_than_the_limit() {
        if Path::new("/dev/zero").exists() {
            let e = read_limited(Path::new("/dev/zero")).unwrap_err();
            assert!(e.contains("larger than"), "{e}");
        }
        assert!(read_limited(Path::new("/"))
            .unwrap_err()
            .contains("directory"));
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Ops {
        ops: f64,
    }

    #[test]
    fn round_trips_and_redacts_the_source() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.json");
        save(
            &p,
            "redis",
            "redis://:pw123@cache:6379/0",
            &Ops { ops: 12.5 },
        )
        .unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(!text.contains("pw123"), "{text}");
        let b: Baseline<Ops> = load(&p, "redis").unwrap();
        assert_eq!(b.data, Ops { ops: 12.5 });
        assert_eq!(b.kind, "redis");
        assert_eq!(b.source, "redis://:***@cache:6379/0");
    }

    #[test]
    fn other_files_are_refused_with_what_they_are() {
        let e = parse::<Ops>(
            r#"{"schema":"powertune.report/v2","command":"db"}"#,
            "redis",
        )
        .unwrap_err();
        assert!(e.contains("schema \"powertune.report/v2\""), "{e}");
        assert!(e.contains("expected a redis baseline"), "{e}");
        let e = parse::<Ops>(
            r#"{"schema":"powertune.baseline/v1","kind":"gateway","saved_at":"x","data":{}}"#,
            "redis",
        )
        .unwrap_err();
        assert!(
            e.starts_with("a gateway baseline; expected a redis baseline"),
            "{e}"
        );
        let e = parse::<Ops>("not json", "apm").unwrap_err();
        assert!(e.starts_with("not JSON"), "{e}");
        let e = parse::<Ops>("{}", "apm").unwrap_err();
        assert!(e.starts_with("a JSON file without a schema"), "{e}");
    }

    #[test]
    fn missing_files_name_the_path() {
        let e = load::<Ops>(Path::new("/nonexistent/b.json"), "redis").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/nonexistent/b.json: cannot read"),
            "{e}"
        );
    }
}
