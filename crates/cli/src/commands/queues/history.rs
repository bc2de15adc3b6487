//! `powertune queues history FILE`: a file `queues record` wrote, judged against the
//! runbook's worker targets (latency periods, failed rate, retry growth, drain).

use crate::args;
use crate::commands::{emit_inspection, Context};
use anyhow::anyhow;
use powertune_core::{ExitCode, Inspection};
use powertune_queues_plan::history::{analyse, judge, HistoryMetrics};
use powertune_queues_plan::history_render::render;
use powertune_redis::sidekiq::history::file;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A history file written by `powertune queues record`.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    #[command(flatten)]
    output: args::Output,
    /// Buckets of the chart series at most (the findings read every sample).
    #[arg(long, default_value_t = 500, value_name = "N",
          value_parser = clap::value_parser!(u32).range(10..=10_000))]
    points: u32,
}

pub fn run(ctx: &Context, a: Args) -> anyhow::Result<ExitCode> {
    let targets = ctx.targets()?;
    let h = file::read(&a.file).map_err(|e| anyhow!("{e}"))?;
    let name = a.file.display().to_string();
    let m: HistoryMetrics = analyse(&h, &name, &targets.worker, a.points as usize);
    let findings = judge(&m, &targets.worker);
    let text = render(&m);
    emit_inspection(
        &Inspection::new("queues history", findings, m, text),
        &a.output,
    )
}
