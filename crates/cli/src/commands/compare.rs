//! `powertune compare BASELINE CURRENT` (or `--before A1 A2 --after B1 B2`): earlier
//! `powertune load --json` reports side by side, whether latency really changed (a
//! rank test on the stored histograms, several runs per side pooled), and the
//! runbook's "throughput ≥ baseline × 0.8" verdict.

use super::Context;
use anyhow::bail;
use powertune_core::ExitCode;
use powertune_load::{CompareOptions, Summary};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The earlier run (`powertune load --json FILE`).
    #[arg(value_name = "BASELINE", conflicts_with_all = ["before", "after"])]
    baseline: Option<PathBuf>,

    /// The run to judge against it.
    #[arg(value_name = "CURRENT")]
    current: Option<PathBuf>,

    /// Several baseline runs (pooled; their run-to-run spread is the noise a change
    /// must exceed).
    #[arg(long, value_name = "FILE", num_args = 1.., requires = "after")]
    before: Vec<PathBuf>,

    /// Several runs to judge against the --before runs.
    #[arg(long, value_name = "FILE", num_args = 1.., requires = "before")]
    after: Vec<PathBuf>,

    #[command(flatten)]
    output: crate::args::Output,
}

/// Reads a side's runs; the first is the one the headline table shows.
fn read(paths: &[PathBuf]) -> anyhow::Result<(Summary, Vec<Summary>, String)> {
    let mut runs = paths
        .iter()
        .map(|p| Summary::read_report(p).map_err(anyhow::Error::from))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if runs.is_empty() {
        bail!("no report given");
    }
    let first = runs.remove(0);
    let name = paths[0].display().to_string();
    Ok((first, runs, name))
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<ExitCode> {
    let targets = ctx.targets()?;
    let (before, after) = match (&args.baseline, &args.current) {
        (Some(b), Some(c)) => (vec![b.clone()], vec![c.clone()]),
        (None, None) if !args.before.is_empty() => (args.before.clone(), args.after.clone()),
        _ => bail!(
            "give two reports (compare BASELINE CURRENT) or several per side (compare --before A1 A2 --after B1 B2)"
        ),
    };
    let (baseline, more_baseline, baseline_name) = read(&before)?;
    let (current, more_current, current_name) = read(&after)?;
    let opts = CompareOptions {
        baseline,
        baseline_name,
        current,
        current_name,
        more_baseline,
        more_current,
    };
    let inspection = powertune_load::inspect_compare(&opts, &targets);
    super::emit_inspection(&inspection, &args.output)
}
