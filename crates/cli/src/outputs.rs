//! Every file a command will write (`--json`, `--out json=FILE`, `--save-baseline`,
//! `--html`, `--junit`, `--markdown`) is checked for writability before the command
//! starts, so a long run never ends with "cannot write" and nothing saved.

use clap::ArgMatches;
use powertune_core::Report;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The environment variable GitHub Actions sets to the job summary file.
pub const STEP_SUMMARY: &str = "GITHUB_STEP_SUMMARY";

/// What `--markdown` given without a FILE stands for.
pub const STEP_SUMMARY_ARG: &str = "$GITHUB_STEP_SUMMARY";

/// Argument ids that name an output file, with the flag shown in errors.
const OUTPUT_ARGS: &[(&str, &str)] = &[
    ("json", "--json"),
    ("save_baseline", "--save-baseline"),
    ("html", "--html"),
    ("junit", "--junit"),
    ("markdown", "--markdown"),
];

/// Checks every output path given anywhere on the command line (the subcommand and
/// its subcommands); the error is one line naming the flag, the path and why.
pub fn check_writable(matches: &ArgMatches) -> Result<(), String> {
    let mut m = matches;
    loop {
        for (id, flag) in OUTPUT_ARGS {
            if let Ok(Some(paths)) = m.try_get_many::<PathBuf>(id) {
                for p in paths {
                    if *id == "markdown" {
                        check(&markdown_path(p)?, flag)?;
                    } else {
                        check(p, flag)?;
                    }
                }
            }
        }
        if let Ok(Some(outs)) = m.try_get_many::<String>("out") {
            for o in outs {
                if let Some(p) = o.strip_prefix("json=") {
                    check(Path::new(p), "--out json=")?;
                }
            }
        }
        match m.subcommand() {
            Some((_, sub)) => m = sub,
            None => return Ok(()),
        }
    }
}

/// Where `--markdown` writes: its FILE, or with none the job summary of GitHub
/// Actions.
pub fn markdown_path(given: &Path) -> Result<PathBuf, String> {
    if given != Path::new(STEP_SUMMARY_ARG) {
        return Ok(given.to_path_buf());
    }
    match std::env::var_os(STEP_SUMMARY) {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        _ => Err(format!(
            "--markdown without FILE appends to ${STEP_SUMMARY}, which is not set (give a FILE)"
        )),
    }
}

/// The files one report is written to.
#[derive(Debug, Clone, Copy, Default)]
pub struct Files<'a> {
    pub json: Option<&'a Path>,
    pub html: Option<&'a Path>,
    pub junit: Option<&'a Path>,
    /// [`STEP_SUMMARY_ARG`] means the job summary (see [`markdown_path`]).
    pub markdown: Option<&'a Path>,
}

impl<'a> From<Option<&'a Path>> for Files<'a> {
    fn from(json: Option<&'a Path>) -> Files<'a> {
        Files {
            json,
            ..Files::default()
        }
    }
}

impl<'a> From<&'a crate::args::Output> for Files<'a> {
    fn from(o: &'a crate::args::Output) -> Files<'a> {
        Files {
            json: o.json.as_deref(),
            html: o.html.as_deref(),
            junit: o.junit.as_deref(),
            markdown: o.markdown.as_deref(),
        }
    }
}

impl<'a> Files<'a> {
    /// The same files with the JSON report going to `json` instead (`load --out
    /// json=FILE`).
    pub fn with_json(self, json: Option<&'a Path>) -> Files<'a> {
        Files { json, ..self }
    }

    /// Writes every requested file. Returns the HTML report's path when one was
    /// written, and one line for each file that could not be.
    pub fn write(&self, report: &Report) -> (Option<PathBuf>, Vec<String>) {
        let mut failed = Vec::new();
        if let Some(path) = self.json {
            if let Err(e) = report.write_json(path) {
                failed.push(format!(
                    "cannot write JSON report to {}: {e}",
                    path.display()
                ));
            }
        }
        let mut html_written = None;
        if let Some(path) = self.html {
            let page = crate::pages::page(report);
            match std::fs::write(path, powertune_core::html::render(report, &page)) {
                Ok(()) => html_written = Some(path.to_path_buf()),
                Err(e) => failed.push(format!(
                    "cannot write HTML report to {}: {e}",
                    path.display()
                )),
            }
        }
        if let Some(path) = self.junit {
            if let Err(e) = std::fs::write(path, powertune_core::ci::junit(&[report])) {
                failed.push(format!("cannot write JUnit XML to {}: {e}", path.display()));
            }
        }
        if let Some(given) = self.markdown {
            let written = markdown_path(given).and_then(|path| {
                append_or_write(
                    &path,
                    given == Path::new(STEP_SUMMARY_ARG),
                    &powertune_core::ci::markdown(report),
                )
                .map_err(|e| format!("cannot write Markdown to {}: {e}", path.display()))
            });
            if let Err(e) = written {
                failed.push(e);
            }
        }
        (html_written, failed)
    }
}

/// Appends (the job summary collects every step's) or replaces a file.
fn append_or_write(path: &Path, append: bool, text: &str) -> std::io::Result<()> {
    if append {
        let mut f = OpenOptions::new().create(true).append(true).open(path)?;
        f.write_all(text.as_bytes())?;
        f.write_all(b"\n")
    } else {
        std::fs::write(path, text)
    }
}

/// Whether `path` can be written: an existing file is opened for appending (nothing
/// changes), a new one is created and removed again.
pub fn check(path: &Path, flag: &str) -> Result<(), String> {
    if path == Path::new("-") || path.as_os_str().is_empty() {
        return Ok(());
    }
    let shown = path.display();
    if path.is_dir() {
        return Err(format!("cannot write {flag} {shown}: it is a directory"));
    }
    if path.exists() {
        return OpenOptions::new()
            .append(true)
            .open(path)
            .map(drop)
            .map_err(|e| format!("cannot write {flag} {shown}: {e}"));
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        return Err(format!(
            "cannot write {flag} {shown}: directory {} does not exist",
            parent.display()
        ));
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| format!("cannot write {flag} {shown}: {e}"))?;
    std::fs::remove_file(path).map_err(|e| format!("cannot write {flag} {shown}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_and_missing_parents_are_refused_and_nothing_is_left() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check(dir.path(), "--json")
            .unwrap_err()
            .contains("is a directory"));
        let missing = dir.path().join("nope/run.json");
        assert!(check(&missing, "--json")
            .unwrap_err()
            .contains("does not exist"));
        let fresh = dir.path().join("run.json");
        check(&fresh, "--json").unwrap();
        assert!(!fresh.exists(), "the check left a file behind");
        std::fs::write(&fresh, "keep").unwrap();
        check(&fresh, "--json").unwrap();
        assert_eq!(std::fs::read_to_string(&fresh).unwrap(), "keep");
        assert!(check(Path::new("-"), "--json").is_ok());
    }
}
