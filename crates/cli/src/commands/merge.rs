//! `powertune merge part*.json`: the reports of one split run (`powertune load
//! --segment`) merged exactly into one run, judged on the whole like `powertune load`
//! (thresholds, runbook targets, `--baseline`; same exit codes). See
//! docs/scale-out.md.

use super::Context;
use powertune_core::ExitCode;
use powertune_load::merge::{inspect_merge, Part};
use powertune_load::Summary;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The parts: one `powertune load --segment … --json FILE` report per segment.
    #[arg(value_name = "PART", required = true, num_args = 1..)]
    parts: Vec<PathBuf>,

    /// Merge the parts given even when segments of the sequence are missing (the
    /// report lists them).
    #[arg(long)]
    allow_partial: bool,

    /// An earlier run's JSON report (a whole run or a merge): applies "throughput ≥
    /// baseline × 0.8" and shows each metric's change.
    #[arg(long, value_name = "FILE")]
    baseline: Option<PathBuf>,

    #[command(flatten)]
    output: crate::args::Output,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<ExitCode> {
    let targets = ctx.targets()?;
    let parts = args
        .parts
        .iter()
        .map(|p| Part::read(p))
        .collect::<Result<Vec<_>, _>>()?;
    let baseline = args
        .baseline
        .as_deref()
        .map(|p| Summary::read_report(p).map_err(|e| anyhow::anyhow!("--baseline {e}")))
        .transpose()?;
    let inspection = inspect_merge(&parts, args.allow_partial, baseline.as_ref(), &targets)?;
    super::emit_inspection(&inspection, &args.output)
}
