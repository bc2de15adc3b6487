//! The run history the runbook's Rollback step asks for ("capture the failure mode"):
//! one JSON line per verdict appended by `--journal FILE`, listed by
//! `powertune journal FILE`.

use powertune_core::{Report, Verdict};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

/// The categories a note may carry (the runbook's `platform.create_learning`).
pub const CATEGORIES: [&str; 4] = ["failure_mode", "improvement", "observation", "rollback"];
/// Largest journal read.
pub const MAX_BYTES: u64 = 16 * 1024 * 1024;
/// Longest note kept.
pub const MAX_NOTE: usize = 4096;

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Entry {
    pub schema: String,
    /// RFC 3339 time of the verdict.
    pub at: String,
    pub command: String,
    pub verdict: Verdict,
    /// The findings that did not pass, one line each.
    pub not_passing: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub category: String,
}

/// Checks `--category` (one of [`CATEGORIES`]) and `--note` (at most [`MAX_NOTE`]).
pub fn check(note: &str, category: &str) -> Result<(), String> {
    if !category.is_empty() && !CATEGORIES.contains(&category) {
        return Err(format!(
            "--category {category}: must be one of {} (e.g. --category failure_mode)",
            CATEGORIES.join(", ")
        ));
    }
    if note.len() > MAX_NOTE {
        return Err(format!(
            "--note: at most {MAX_NOTE} bytes, found {}",
            note.len()
        ));
    }
    Ok(())
}

/// The entry for a report.
pub fn entry(r: &Report, note: &str, category: &str) -> Entry {
    Entry {
        schema: "powertune.journal/v1".into(),
        at: r.generated_at.clone(),
        command: r.command.clone(),
        verdict: r.verdict,
        not_passing: r
            .findings
            .iter()
            .filter(|f| f.verdict != Verdict::Pass)
            .map(|f| {
                format!(
                    "{} {}/{} {}: {}",
                    f.verdict.label(),
                    f.area,
                    f.check,
                    f.subject,
                    f.observed
                )
            })
            .collect(),
        note: powertune_core::redact::text(note),
        category: category.to_string(),
    }
}

/// Appends `e` as one line to `path` (created if missing).
pub fn append(path: &Path, e: &Entry) -> Result<(), String> {
    let line = serde_json::to_string(e).map_err(|e| e.to_string())?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|err| format!("--journal {}: {err}", path.display()))?;
    writeln!(f, "{line}").map_err(|err| format!("--journal {}: {err}", path.display()))
}

/// Every entry of the journal at `path`; a line that is not an entry is an error
/// naming its line number.
pub fn read(path: &Path) -> Result<Vec<Entry>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.len() > MAX_BYTES {
        return Err(format!(
            "{}: {} bytes, more than the {MAX_BYTES} a journal may hold; start a new one",
            path.display(),
            meta.len()
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| {
            serde_json::from_str(l)
                .map_err(|e| format!("{}:{}: not a journal entry: {e}", path.display(), n + 1))
        })
        .collect()
}

/// The journal as a table.
pub fn render(entries: &[Entry]) -> String {
    let mut rows = vec![vec![
        "at".to_string(),
        "command".to_string(),
        "verdict".to_string(),
        "category".to_string(),
        "note".to_string(),
        "not passing".to_string(),
    ]];
    for e in entries {
        rows.push(vec![
            e.at.clone(),
            e.command.clone(),
            e.verdict.label().to_string(),
            e.category.clone(),
            e.note.clone(),
            e.not_passing.join("; "),
        ]);
    }
    powertune_core::report::table(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use powertune_core::Finding;

    #[test]
    fn entries_round_trip_and_bad_lines_name_their_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let r = Report::new(
            "verify",
            vec![Finding::new(
                "verify",
                "retry_set",
                "retry set not growing",
                Verdict::Fail,
            )],
            serde_json::Value::Null,
        );
        append(
            &path,
            &entry(
                &r,
                "worker weights change; token sk-abcdefghijklmnopqrstu",
                "failure_mode",
            ),
        )
        .unwrap();
        append(&path, &entry(&r, "", "")).unwrap();
        let got = read(&path).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].category, "failure_mode");
        assert!(
            !got[0].note.contains("sk-abcdefghijklmnopqrstu"),
            "{}",
            got[0].note
        );
        assert!(render(&got).contains("FAIL verify/retry_set"));
        std::fs::write(&path, "{}\n").unwrap();
        assert!(read(&path).unwrap_err().contains(":1: not a journal entry"));
        assert!(check("x", "nope").is_err());
        assert!(check("x", "failure_mode").is_ok());
    }
}
