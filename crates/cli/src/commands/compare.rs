//! `powertune compare BASELINE CURRENT`: two `powertune load --json` reports side by
//! side, and the runbook's "throughput ≥ baseline × 0.8" verdict.

use super::Context;
use anyhow::Context as _;
use powertune_core::report::Style;
use powertune_core::{ExitCode, Report};
use powertune_load::Summary;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The earlier run (`powertune load --json FILE`).
    #[arg(value_name = "BASELINE")]
    baseline: PathBuf,

    /// The run to judge against it.
    #[arg(value_name = "CURRENT")]
    current: PathBuf,

    /// Write the JSON report (the comparison in `metrics`); `-` for stdout.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

fn read(p: &Path) -> anyhow::Result<Summary> {
    let text = std::fs::read_to_string(p).with_context(|| {
        format!(
            "cannot read {} (expected a report from `powertune load --json FILE`)",
            p.display()
        )
    })?;
    Summary::from_report_json(&text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<ExitCode> {
    let targets = ctx.targets()?;
    let base = read(&args.baseline)?;
    let cur = read(&args.current)?;
    let deltas = powertune_load::compare(&base, &cur);
    let findings: Vec<_> = powertune_load::judge::findings(&cur, &targets, Some(&base))
        .into_iter()
        .filter(|f| f.check == "throughput_vs_baseline")
        .collect();
    let text = format!(
        "baseline {} ({})\ncurrent  {} ({})\n\n{}",
        args.baseline.display(),
        base.started_at,
        args.current.display(),
        cur.started_at,
        powertune_load::render_compare(&deltas, Style::detect())
    );
    let report = Report::new(
        "compare",
        findings,
        serde_json::json!({ "baseline_comparison": deltas }),
    );
    super::emit(&report, &text, args.json.as_deref())
}
