//! The provider baseline file, in core's versioned baseline format (kind `apm`):
//! read by `--baseline`, written by `--save-baseline`. A file in the earlier
//! unversioned form (`{"providers": {...}}`) is still read.

use crate::snapshot::Baseline;
use powertune_core::baseline::{self as file, BaselineError};
use std::path::Path;

/// The kind of apm baseline files.
pub const KIND: &str = "apm";

/// Reads a baseline file.
pub fn read(path: &Path) -> Result<Baseline, BaselineError> {
    match file::load::<Baseline>(path, KIND) {
        Ok(b) => Ok(b.data),
        Err(e @ BaselineError::Invalid { .. }) => file::read_limited(path)
            .ok()
            .and_then(|text| serde_json::from_str::<Baseline>(&text).ok())
            .ok_or(e),
        Err(e) => Err(e),
    }
}

/// Writes a baseline file taken from `source` (a receiver URL or a file name,
/// stored redacted).
pub fn write(path: &Path, source: &str, b: &Baseline) -> Result<(), BaselineError> {
    file::save(path, KIND, source, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_reads_the_unversioned_form_and_names_the_file_on_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("base.json");
        let b = Baseline {
            providers: [("openai/gpt-4o".to_string(), 850.0)].into(),
        };
        write(&p, "http://u:hunter2@127.0.0.1:4318/", &b).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains("\"kind\": \"apm\""), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert_eq!(read(&p).unwrap(), b);
        std::fs::write(&p, "{\"providers\": {\"openai/gpt-4o\": 850.0}}").unwrap();
        assert_eq!(read(&p).unwrap(), b);
        std::fs::write(&p, "{\"other\": 1}").unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(e.starts_with(&p.display().to_string()), "{e}");
        assert!(e.contains("expected a apm baseline"), "{e}");
        let e = read(&dir.path().join("missing.json"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read baseline"), "{e}");
    }
}
