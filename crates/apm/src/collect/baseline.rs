//! The provider baseline file: read by `--baseline`, written by `--save-baseline`.

use crate::snapshot::Baseline;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("cannot read baseline {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("baseline {path}: {why} (example: {{\"providers\": {{\"openai/gpt-4o\": 850.0}}}})")]
    Parse { path: String, why: String },
    #[error("cannot write baseline {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// Reads a baseline file.
pub fn read(path: &Path) -> Result<Baseline, BaselineError> {
    let text = std::fs::read_to_string(path).map_err(|source| BaselineError::Read {
        path: path.display().to_string(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| BaselineError::Parse {
        path: path.display().to_string(),
        why: e.to_string(),
    })
}

/// Writes a baseline file (pretty JSON, one trailing newline).
pub fn write(path: &Path, b: &Baseline) -> Result<(), BaselineError> {
    let werr = |source| BaselineError::Write {
        path: path.display().to_string(),
        source,
    };
    let text = serde_json::to_string_pretty(b).map_err(|e| werr(std::io::Error::other(e)))?;
    std::fs::write(path, text + "\n").map_err(werr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_names_the_file_on_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("base.json");
        let b = Baseline {
            providers: [("openai/gpt-4o".to_string(), 850.0)].into(),
        };
        write(&p, &b).unwrap();
        assert!(std::fs::read_to_string(&p).unwrap().ends_with("}\n"));
        assert_eq!(read(&p).unwrap(), b);
        std::fs::write(&p, "{\"other\": 1}").unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(e.starts_with(&format!("baseline {}", p.display())), "{e}");
        assert!(e.contains("example: {\"providers\""), "{e}");
        let e = read(&dir.path().join("missing.json"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("cannot read baseline"), "{e}");
    }
}
