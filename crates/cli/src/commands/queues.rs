//! `powertune queues`: Sidekiq's queues, latency, retries, dead set, failed rate and
//! processes judged against the runbook's worker targets; `--watch` for a live view.

use super::redis::ConnArgs;
use super::{block_on, emit, Context};
use anyhow::anyhow;
use powertune_core::{ExitCode, Report};
use powertune_redis::conn::Conn;
use powertune_redis::sidekiq::{self, Options};
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
    let (url, timeout) = a.conn.validate()?;
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
    if a.retry_sample == 0 || a.retry_sample > 100_000 {
        return Err(anyhow!(
            "--retry-sample {}: must be 1..=100000 (example: --retry-sample 1000)",
            a.retry_sample
        ));
    }
    if a.days == 0 || a.days > 366 {
        return Err(anyhow!(
            "--days {}: must be 1..=366 (example: --days 7)",
            a.days
        ));
    }
    if a.ticks == Some(0) {
        return Err(anyhow!(
            "--ticks 0: must be at least 1 (example: --ticks 6)"
        ));
    }
    let opts = Options {
        retry_sample: a.retry_sample,
        days: a.days,
        ..Options::default()
    };
    let (snap, trend) = block_on(async {
        let mut conn = Conn::open(&url, timeout).await?;
        let mut trend = None;
        if let Some(every) = interval {
            let first = sidekiq::sample(&mut conn, opts.max_queues).await?;
            let mut prev = first.clone();
            let mut n = 0u64;
            let started = tokio::time::Instant::now();
            let mut ticker = tokio::time::interval(every);
            ticker.tick().await;
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = tokio::signal::ctrl_c() => break,
                }
                let cur = sidekiq::sample(&mut conn, opts.max_queues).await?;
                let d = sidekiq::delta(&prev, &cur);
                let mut out = std::io::stdout().lock();
                let _ = writeln!(
                    out,
                    "t+{:.0}s\n{}",
                    started.elapsed().as_secs_f64(),
                    sidekiq::render_delta(&d)
                );
                let _ = out.flush();
                prev = cur;
                n += 1;
                if a.ticks.is_some_and(|t| n >= t) {
                    break;
                }
            }
            trend = Some(sidekiq::delta(&first, &prev));
        }
        let snap = sidekiq::collect(&mut conn, &opts).await?;
        Ok::<_, powertune_redis::Error>((snap, trend))
    })??;
    let mut findings = sidekiq::judge(&snap, &targets.worker);
    if let Some(d) = &trend {
        findings.push(sidekiq::judge_trend(d));
    }
    let details = sidekiq::render(&snap, &targets.worker);
    let report = Report::new(
        "queues",
        findings,
        serde_json::json!({ "sidekiq": snap, "watch": trend }),
    );
    emit(&report, &details, a.conn.json.as_deref())
}
