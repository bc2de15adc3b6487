//! `powertune queues`: Sidekiq's queues, latency, retries, dead set, failed rate and
//! processes judged against the runbook's worker targets; `--watch` for a live view.

use super::redis::ConnArgs;
use super::{block_on, emit, Context};
use anyhow::anyhow;
use powertune_core::ExitCode;
use powertune_redis::sidekiq::{self, Options, QueuesOptions, WatchOptions};
use std::io::Write;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    conn: ConnArgs,
    /// Live view: every INTERVAL print depth, latency, net rate and drain ETA per queue,
    /// processed/s and failed/s; on Ctrl-C (or after --ticks) print the full report.
    #[arg(long, value_name = "INTERVAL")]
    watch: Option<String>,
    /// With --watch: stop after N intervals.
    #[arg(long, value_name = "N")]
    ticks: Option<u64>,
    /// Jobs read from the retry set for the retry_count distribution and top classes.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    retry_sample: usize,
    /// Days of daily stats read for the failed rate.
    #[arg(long, default_value_t = 7, value_name = "N")]
    days: u32,
}

pub fn run(ctx: &Context, a: Args) -> anyhow::Result<ExitCode> {
    let targets = ctx.targets()?;
    let conn = a.conn.validate()?;
    let interval = a
        .watch
        .as_deref()
        .map(|w| {
            powertune_core::duration::parse(w)
                .map_err(|e| anyhow!("--watch {w}: {e} (example: --watch 10s)"))
                .and_then(|d| {
                    if d.as_millis() < 100 {
                        Err(anyhow!(
                            "--watch {w}: at least 100ms (example: --watch 10s)"
                        ))
                    } else {
                        Ok(d)
                    }
                })
        })
        .transpose()?;
    let opts = QueuesOptions {
        conn,
        read: Options {
            retry_sample: a.retry_sample,
            days: a.days,
            ..Options::default()
        },
        watch: interval.map(|every| WatchOptions {
            every,
            ticks: a.ticks,
        }),
    };
    opts.validate()?;
    if a.ticks == Some(0) {
        return Err(anyhow!(
            "--ticks 0: must be at least 1 (example: --ticks 6)"
        ));
    }
    let print_tick = |elapsed_s: f64, d: &sidekiq::WatchDelta| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", sidekiq::render_tick(elapsed_s, d));
        let _ = out.flush();
    };
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let inspection = block_on(sidekiq::inspect_watching(
        &opts, &targets, print_tick, ctrl_c,
    ))??;
    emit(
        &inspection.report()?,
        &inspection.text,
        a.conn.json.as_deref(),
    )
}
