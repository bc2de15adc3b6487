//! `powertune compare BASELINE CURRENT`: two `powertune load --json` reports side by
//! side, and the runbook's "throughput ≥ baseline × 0.8" verdict.

use super::Context;
use powertune_core::ExitCode;
use powertune_load::{CompareOptions, Summary};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The earlier run (`powertune load --json FILE`).
    #[arg(value_name = "BASELINE")]
    baseline: PathBuf,

    /// The run to judge against it.
    #[arg(value_name = "CURRENT")]
    current: PathBuf,

    #[command(flatten)]
    output: crate::args::Output,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<ExitCode> {
    let targets = ctx.targets()?;
    let opts = CompareOptions {
        baseline: Summary::read_report(&args.baseline)?,
        baseline_name: args.baseline.display().to_string(),
        current: Summary::read_report(&args.current)?,
        current_name: args.current.display().to_string(),
    };
    let inspection = powertune_load::inspect_compare(&opts, &targets);
    super::emit_inspection(&inspection, &args.output)
}
