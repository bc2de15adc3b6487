//! One module per command. Each parses its arguments, validates them before any
//! socket opens, calls one engine and renders the report.

pub mod apm;
pub mod compare;
pub mod db;
pub mod demo;
pub mod gateway;
pub mod load;
pub mod queues;
pub mod redis;
pub mod target;
pub mod targets;

use powertune_core::report::{render_findings, render_verdict_line, Style};
use powertune_core::{ExitCode, Inspection, Report};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

/// What every command gets from the global flags.
#[derive(Debug, Clone)]
pub struct Context {
    pub targets_path: Option<PathBuf>,
}

impl Context {
    /// The targets in force: defaults plus `--targets FILE` or `./powertune.toml`.
    pub fn targets(&self) -> anyhow::Result<powertune_core::Targets> {
        Ok(powertune_core::Targets::load(self.targets_path.as_deref())?)
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
/// unless `--json -` sends JSON there; `--json FILE` also writes the JSON report.
/// Returns the exit code the report calls for; when the JSON cannot be written, a
/// failed (99) or interrupted (105) run keeps its code and a passing one exits 1.
pub fn emit(report: &Report, details: &str, json: Option<&Path>) -> anyhow::Result<ExitCode> {
    let to_stdout = json == Some(Path::new("-"));
    if !to_stdout {
        let style = Style::detect();
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
    if let Some(path) = json {
        if let Err(e) = report.write_json(path) {
            // The report is already shown; a failed write says so on one line and
            // keeps a failed or interrupted run's code (only a pass becomes 1).
            eprintln!(
                "powertune: cannot write JSON report to {}: {e}",
                path.display()
            );
            return Ok(match code {
                ExitCode::Passed => ExitCode::BadInput,
                other => other,
            });
        }
    }
    Ok(code)
}

/// Shows an inspection the one way every inspecting command does: its terminal text,
/// the findings table and the verdict line (or `--json`), and returns the exit code.
pub fn emit_inspection<M: Serialize>(
    inspection: &Inspection<M>,
    json: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let report = inspection
        .report()
        .map_err(|e| anyhow::anyhow!("cannot build the report: {e}"))?;
    emit(&report, &inspection.text, json)
}
