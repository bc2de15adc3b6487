//! `powertune queues`: Sidekiq's queues, latency, retries, dead set, failed rate and
//! processes judged against the runbook's worker targets; `--watch` for a live view;
//! `queues plan` for worker sizing; `queues record` and `queues history` for the
//! queue history.

pub mod history;
pub mod plan;
pub mod record;

use super::redis::ConnArgs;
use super::{block_on, emit_inspection, Context};
use crate::args::{self, duration_at_least};
use powertune_core::ExitCode;
use powertune_redis::sidekiq::inspect::{MAX_WATCH, MIN_WATCH};
use powertune_redis::sidekiq::{self, Options, QueuesOptions, WatchOptions};
use std::io::Write;
use std::time::Duration;

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    action: Option<Action>,
    #[command(flatten)]
    conn: ConnArgs,
    #[command(flatten)]
    output: args::Output,
    /// Live view: every INTERVAL (100ms to 1h) print depth, latency, net rate and drain
    /// ETA per queue, processed/s and failed/s; on Ctrl-C (or after --ticks) print the
    /// full report. With --json - the live lines go to standard error. If Redis goes
    /// away, the watch reconnects (6 attempts, 250ms doubling to 5s, ~13s in all), else
    /// ends and reports what it saw.
    #[arg(long, value_name = "INTERVAL", value_parser = watch_interval)]
    watch: Option<Duration>,
    /// With --watch: stop after N intervals.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    ticks: Option<u64>,
    /// Jobs read from the retry set for the retry_count distribution and top classes.
    #[arg(long, default_value_t = 1000, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    retry_sample: u32,
    /// Days of daily stats read for the failed rate.
    #[arg(long, default_value_t = 7, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=366))]
    days: u32,
}

#[derive(clap::Subcommand, Debug)]
enum Action {
    /// Worker sizing: per queue arrival rate and run time, the threads and processes
    /// Erlang C asks for, a simulation of Sidekiq's fetch for the running, recommended
    /// and --proposed configurations (starvation explained), and the database
    /// connection budget.
    Plan(Box<plan::Args>),
    /// Sample queues, processes, counters and the retry and dead sets every interval
    /// into a bounded, append-only history file until stopped.
    Record(Box<record::Args>),
    /// Judge a recorded history: latency and depth over time per queue, the periods
    /// over the runbook's targets, throughput, failed rate, retry growth, drain times.
    History(Box<history::Args>),
}

/// `--watch` and `plan --interval`: at least 100ms, at most 1h.
pub(crate) fn watch_interval(s: &str) -> Result<Duration, String> {
    let d = duration_at_least(MIN_WATCH)(s)?;
    args::duration_at_most(MAX_WATCH)(s)?;
    Ok(d)
}

pub fn run(ctx: &Context, a: Args) -> anyhow::Result<ExitCode> {
    if let Some(action) = a.action {
        return match action {
            Action::Plan(p) => plan::run(ctx, *p),
            Action::Record(r) => record::run(*r),
            Action::History(h) => history::run(ctx, *h),
        };
    }
    let targets = ctx.targets()?;
    let conn = a.conn.validate()?;
    let opts = QueuesOptions {
        conn,
        read: Options {
            retry_sample: a.retry_sample as usize,
            days: a.days,
            ..Options::default()
        },
        watch: a.watch.map(|every| WatchOptions {
            every,
            ticks: a.ticks,
            reconnect: sidekiq::Reconnect::default(),
        }),
    };
    opts.validate()?;
    // With `--json -` standard output carries the JSON report only: the tick lines go
    // to standard error.
    let json_on_stdout = a.output.json.as_deref() == Some(std::path::Path::new("-"));
    let print_tick = |elapsed_s: f64, d: &sidekiq::WatchDelta| {
        let line = sidekiq::render_tick(elapsed_s, d);
        if json_on_stdout {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "{line}");
            let _ = err.flush();
        } else {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    };
    let inspection = block_on(async {
        let interrupt = crate::signal::Interrupt::listen("the watch");
        let stop = interrupt.graceful().clone();
        sidekiq::inspect_watching(&opts, &targets, print_tick, stop.cancelled_owned()).await
    })??;
    emit_inspection(&inspection, &a.output)
}
