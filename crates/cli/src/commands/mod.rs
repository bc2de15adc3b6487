//! One module per command. Each parses its arguments, validates them before any
//! socket opens, calls one engine and renders the report.

pub mod apm;
pub mod baseline;
pub mod capacity;
pub mod compare;
pub mod completions;
pub mod db;
pub mod demo;
pub mod doctor;
pub mod frontend;
pub mod gateway;
pub mod investigate;
pub mod journal;
pub mod load;
pub mod load_k8s;
pub mod merge;
pub mod monitor;
pub mod provider_sim;
pub mod queues;
pub mod redis;
pub mod report;
pub mod target;
pub mod targets;
pub mod verify;

use powertune_core::report::{render_findings, render_verdict_line, Style};
use powertune_core::{ExitCode, Inspection, Report};
use serde::Serialize;
use std::io::Write;
use std::path::Path;

/// What every command gets from the global flags.
#[derive(Debug, Clone)]
pub struct Context {
    /// `--targets FILE`, read and checked once before the command starts, so a bad
    /// file is refused even by the commands that judge nothing.
    given: Option<powertune_core::Targets>,
    /// The targets file in force (`--targets FILE`, else ./powertune.toml if present).
    pub targets_path: Option<std::path::PathBuf>,
}

impl Context {
    /// Reads `--targets FILE` when one is given.
    pub fn new(targets_path: Option<&Path>) -> anyhow::Result<Context> {
        let given = match targets_path {
            Some(p) => Some(powertune_core::Targets::load(Some(p))?),
            None => None,
        };
        let targets_path = targets_path.map(Path::to_path_buf).or_else(|| {
            let p = Path::new(powertune_core::targets::DEFAULT_FILE);
            p.exists().then(|| p.to_path_buf())
        });
        Ok(Context {
            given,
            targets_path,
        })
    }

    /// The targets in force: defaults plus `--targets FILE` or `./powertune.toml`.
    pub fn targets(&self) -> anyhow::Result<powertune_core::Targets> {
        match &self.given {
            Some(t) => Ok(t.clone()),
            None => Ok(powertune_core::Targets::load(None)?),
        }
    }
}

/// Runs a future on a fresh multi-threaded tokio runtime.
pub fn block_on<F: std::future::Future>(f: F) -> anyhow::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    Ok(rt.block_on(f))
}

/// Shows a report the one way every command does: `details` (command-specific text,
/// may be empty) then the findings table and the verdict line on standard output,
/// unless `--json -` sends JSON there; then writes the files asked for (`--json`,
/// `--html`, `--junit`, `--markdown`) and, for an HTML report, prints `report: PATH`
/// last. Returns the exit code the report calls for; when a file cannot be written, a
/// failed (99) or interrupted (105) run keeps its code and a passing one exits 1.
pub fn emit<'a>(
    report: &Report,
    details: &str,
    files: impl Into<crate::outputs::Files<'a>>,
) -> anyhow::Result<ExitCode> {
    let files = files.into();
    let to_stdout = files.json == Some(Path::new("-"));
    let style = Style::detect();
    if !to_stdout {
        let mut out = std::io::stdout().lock();
        if !details.is_empty() {
            write!(out, "{details}")?;
            if !details.ends_with('\n') {
                writeln!(out)?;
            }
            writeln!(out)?;
        }
        write!(out, "{}", render_findings(&report.findings, style))?;
        write!(out, "\n{}", render_verdict_line(report, style))?;
    }
    let code = report.exit_code();
    let (html, failed) = files.write(report);
    if let (Some(path), false) = (html, to_stdout) {
        writeln!(std::io::stdout().lock(), "report: {}", path.display())?;
    }
    if failed.is_empty() {
        return Ok(code);
    }
    // The report is already shown; each failed write says so on one line.
    for why in &failed {
        eprintln!("powertune: {why}");
    }
    Ok(match code {
        ExitCode::Passed => ExitCode::BadInput,
        other => other,
    })
}

/// Shows an inspection the one way every inspecting command does: its terminal text,
/// the findings table and the verdict line (or `--json`), and returns the exit code.
pub fn emit_inspection<'a, M: Serialize>(
    inspection: &Inspection<M>,
    files: impl Into<crate::outputs::Files<'a>>,
) -> anyhow::Result<ExitCode> {
    let report = inspection
        .report()
        .map_err(|e| anyhow::anyhow!("cannot build the report: {e}"))?;
    emit(&report, &inspection.text, files)
}
