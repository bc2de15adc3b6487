//! `powertune queues plan`: samples Sidekiq over a window, estimates each queue's
//! arrival rate and run time, sizes threads and processes with Erlang C, simulates
//! Sidekiq's fetch for the running, the recommended and a `--proposed` configuration,
//! and checks the connection budget against PostgreSQL's `max_connections` (`--db`).

use crate::args::{self, positive_duration_at_most};
use crate::commands::redis::ConnArgs;
use crate::commands::{block_on, emit_inspection, Context};
use anyhow::{anyhow, bail};
use powertune_core::{ExitCode, Inspection};
use powertune_queues_plan::estimate::{estimate, Load};
use powertune_queues_plan::plan::{self, DbLimit, PlanMetrics, PlanOptions, WebTier};
use powertune_queues_plan::sim::{SimOptions, SimProcess};
use powertune_redis::sidekiq::history::{self, Sample};
use std::collections::BTreeMap;
use std::time::Duration;

/// The longest live window and simulated horizon.
const MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);
const MAX_HORIZON: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    conn: ConnArgs,
    #[command(flatten)]
    output: args::Output,
    /// Live sampling window (1s to 24h): samples are read every --interval for this
    /// long. Ctrl-C ends it early and plans from what was read.
    #[arg(long, default_value = "60s", value_name = "DURATION",
          value_parser = positive_duration_at_most(MAX_WINDOW))]
    window: Duration,
    /// Time between live samples (100ms to 1h).
    #[arg(long, default_value = "1s", value_name = "DURATION", value_parser = super::watch_interval)]
    interval: Duration,
    /// PostgreSQL URL: max_connections and the reserved slots are read for the
    /// connection budget (one SELECT). Default: $DATABASE_URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_name = "URL")]
    db: Option<String>,
    /// Web tier threads per worker (e.g. Puma's RAILS_MAX_THREADS), for the budget.
    #[arg(long, default_value_t = 0, value_name = "N",
          value_parser = clap::value_parser!(u64).range(0..=10_000))]
    web_threads: u64,
    /// Web tier worker processes per instance (Puma's WEB_CONCURRENCY).
    #[arg(long, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    web_workers: u64,
    /// Web tier instances.
    #[arg(long, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    web_instances: u64,
    /// The running processes' queues and weights when Sidekiq does not publish them
    /// (6.x), as Sidekiq's -q options: 'critical,3 default,2 low,1' (weighted) or
    /// 'critical default low' (strict order).
    #[arg(long, value_name = "SPEC")]
    running: Option<String>,
    /// A configuration to predict: queues and weights as for --running.
    #[arg(long, value_name = "SPEC")]
    proposed: Option<String>,
    /// Threads per process of --proposed (default: the running processes' first, else 10).
    #[arg(long, value_name = "N", requires = "proposed",
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    concurrency: Option<u32>,
    /// Processes of --proposed (default: as many as run now, at least 1).
    #[arg(long, value_name = "N", requires = "proposed",
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    processes: Option<u32>,
    /// A queue's mean job run time when known (e.g. from `powertune apm`), QUEUE=DURATION;
    /// repeatable. Other queues share the run time the samples give.
    #[arg(long = "service-time", value_name = "QUEUE=DURATION")]
    service_time: Vec<String>,
    /// Busy threads ÷ threads the sizing aims at, above 0 and at most 1.
    #[arg(long, default_value_t = 0.75, value_name = "SHARE", value_parser = share)]
    utilisation: f64,
    /// Share of jobs the sizing lets wait longer than the latency target.
    #[arg(long, default_value_t = 0.01, value_name = "SHARE", value_parser = share)]
    tail: f64,
    /// Variability of job run times for the simulation: squared coefficient of
    /// variation, 1 = exponential (the M/M/c assumption), 0 = every job takes the mean.
    #[arg(long, default_value_t = 1.0, value_name = "SCV", value_parser = scv)]
    service_scv: f64,
    /// Simulated time per configuration (at most 7d; at most --max-jobs arrivals).
    #[arg(long, default_value = "6h", value_name = "DURATION",
          value_parser = positive_duration_at_most(MAX_HORIZON))]
    horizon: Duration,
    /// Arrivals simulated per configuration at most (bounds time and memory).
    #[arg(long, default_value_t = 500_000, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1000..=10_000_000))]
    max_jobs: u64,
    /// Seed of the simulation's draws.
    #[arg(long, default_value_t = 16, value_name = "N")]
    seed: u64,
}

fn share(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 1.0 => Ok(v),
        _ => Err("must be a number above 0 and at most 1, e.g. 0.75".into()),
    }
}

fn scv(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=10.0).contains(&v) => Ok(v),
        _ => Err("must be a number from 0 to 10 (1 = exponential run times)".into()),
    }
}

/// Parses Sidekiq's queue options: `NAME[,WEIGHT]` separated by spaces. Strict order
/// when no queue has a weight above 0, as Sidekiq decides.
pub fn parse_spec(flag: &str, spec: &str) -> anyhow::Result<(Vec<(String, u32)>, bool)> {
    let mut out: Vec<(String, u32)> = Vec::new();
    for item in spec.split_whitespace() {
        let (name, weight) = match item.split_once(',') {
            Some((n, w)) => (
                n,
                w.parse::<u32>().map_err(|_| {
                    anyhow!("{flag}: `{item}`: the weight after the comma must be a whole number, e.g. critical,3")
                })?,
            ),
            None => (item, 0),
        };
        if name.is_empty() {
            bail!("{flag}: `{item}` has no queue name, e.g. 'critical,3 default,2 low,1'");
        }
        if out.iter().any(|(n, _)| n == name) {
            bail!("{flag}: queue `{name}` is given twice (Sidekiq refuses that too)");
        }
        out.push((name.to_string(), weight));
    }
    if out.is_empty() {
        bail!("{flag}: no queue given, e.g. 'critical,3 default,2 low,1'");
    }
    let strict = out.iter().all(|(_, w)| *w == 0);
    Ok((out, strict))
}

fn service_times(given: &[String]) -> anyhow::Result<BTreeMap<String, f64>> {
    let mut out = BTreeMap::new();
    for g in given {
        let (q, d) = g
            .split_once('=')
            .ok_or_else(|| anyhow!("--service-time `{g}`: expected QUEUE=DURATION, e.g. ai=12s"))?;
        let d = args::positive_duration(d).map_err(|e| anyhow!("--service-time `{g}`: {e}"))?;
        out.insert(q.to_string(), d.as_secs_f64());
    }
    Ok(out)
}

/// The running processes as the fetch simulation takes them: threads and queues from
/// the last sample; weights as published (7.x+), else `--running`, else the targets'
/// `worker.weights` for the queues they name.
fn running_of(
    last: &Sample,
    spec: Option<&(Vec<(String, u32)>, bool)>,
    weights: &BTreeMap<String, u32>,
) -> (Vec<SimProcess>, String) {
    let mut from = "published by the processes";
    let procs = last
        .processes
        .iter()
        .map(|p| {
            if let Some((qs, strict)) = spec {
                from = "--running";
                return SimProcess {
                    threads: p.concurrency as u32,
                    queues: qs.clone(),
                    strict: *strict,
                };
            }
            if !p.weights.is_empty() {
                let qs: Vec<(String, u32)> = p
                    .queues
                    .iter()
                    .map(|q| (q.clone(), p.weights.get(q).copied().unwrap_or(0) as u32))
                    .collect();
                let strict = qs.iter().all(|(_, w)| *w == 0);
                return SimProcess {
                    threads: p.concurrency as u32,
                    queues: qs,
                    strict,
                };
            }
            let known = p.queues.iter().all(|q| weights.contains_key(q));
            from = if known {
                "worker.weights of the targets (Sidekiq 6 does not publish weights; state them with --running)"
            } else {
                "strict order assumed (Sidekiq 6 does not publish weights; state them with --running)"
            };
            SimProcess {
                threads: p.concurrency as u32,
                queues: p
                    .queues
                    .iter()
                    .map(|q| (q.clone(), if known { weights[q] } else { 0 }))
                    .collect(),
                strict: !known,
            }
        })
        .collect();
    (procs, from.to_string())
}

async fn sample_window(a: &Args) -> anyhow::Result<(Vec<Sample>, bool)> {
    let conn = a.conn.validate()?;
    let interrupt = crate::signal::Interrupt::listen("the sampling window");
    let stop = interrupt.graceful().clone();
    let mut c = conn.open().await?;
    let mut samples = vec![history::read(&mut c, 10_000).await?];
    let start = tokio::time::Instant::now();
    let mut next = start;
    let mut interrupted = false;
    while start.elapsed() < a.window {
        next += a.interval;
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = stop.cancelled() => { interrupted = true; break; }
        }
        samples.push(history::read(&mut c, 10_000).await?);
    }
    Ok((samples, interrupted))
}

async fn db_limit(url: &str) -> anyhow::Result<DbLimit> {
    let cfg = powertune_db::RawDbConfig::new(url).validate()?;
    let mut s = powertune_db::collect::connect(&cfg).await?;
    let rows = s
        .rows(
            "max_connections",
            "SELECT current_setting('max_connections')::int4, current_setting('superuser_reserved_connections')::int4, coalesce(current_setting('reserved_connections', true), '0')::int4",
        )
        .await?;
    let row = rows
        .first()
        .ok_or_else(|| anyhow!("{}: SHOW max_connections returned no row", cfg.redacted_url))?;
    let get = |i: usize| {
        row.try_get::<usize, i32>(i)
            .map(|v| v.max(0) as u64)
            .unwrap_or(0)
    };
    Ok(DbLimit {
        max_connections: get(0),
        reserved: get(1) + get(2),
    })
}

pub fn run(ctx: &Context, a: Args) -> anyhow::Result<ExitCode> {
    let targets = ctx.targets()?;
    let given = service_times(&a.service_time)?;
    let running_spec = a
        .running
        .as_deref()
        .map(|s| parse_spec("--running", s))
        .transpose()?;
    let proposed_spec = a
        .proposed
        .as_deref()
        .map(|s| parse_spec("--proposed", s))
        .transpose()?;
    let (samples, interrupted, db) = block_on(async {
        let (samples, interrupted) = sample_window(&a).await?;
        let db = match a.db.as_deref() {
            Some(url) => Some(db_limit(url).await?),
            None => None,
        };
        anyhow::Ok((samples, interrupted, db))
    })??;
    let load: Load = estimate(&samples, &given).ok_or_else(|| {
        anyhow!("the window held {} sample(s): at least two, some time apart, are needed; lengthen --window", samples.len())
    })?;
    let last = samples
        .last()
        .ok_or_else(|| anyhow!("no sample was read"))?;
    let w = &targets.worker.weights;
    let (running, running_from) = running_of(last, running_spec.as_ref(), w);
    let proposed = proposed_spec.map(|(qs, strict)| {
        let threads = a
            .concurrency
            .or_else(|| running.first().map(|p| p.threads))
            .unwrap_or(10);
        let n = a.processes.unwrap_or(running.len().max(1) as u32);
        (0..n)
            .map(|_| SimProcess {
                threads,
                queues: qs.clone(),
                strict,
            })
            .collect::<Vec<_>>()
    });
    // Weights of the recommendation: the running ones when known, else the targets'.
    let mut weights: BTreeMap<String, u32> = w.clone();
    for p in running.iter().filter(|p| !p.strict) {
        for (q, wt) in &p.queues {
            weights.insert(q.clone(), *wt);
        }
    }
    let opts = PlanOptions {
        utilisation: a.utilisation,
        tail: a.tail,
        service_scv: a.service_scv,
        sim: SimOptions {
            horizon_s: a.horizon.as_secs_f64(),
            warmup_s: a.horizon.as_secs_f64() / 10.0,
            seed: a.seed,
            max_arrivals: a.max_jobs,
            ..SimOptions::default()
        },
        db,
        web: WebTier {
            threads: a.web_threads,
            workers: a.web_workers,
            instances: a.web_instances,
        },
    };
    let metrics: PlanMetrics =
        plan::plan(load, running, proposed, &weights, &targets.worker, &opts);
    let findings = plan::judge(&metrics, &targets.worker);
    let text = powertune_queues_plan::render::render(&metrics, &running_from);
    let inspection = Inspection::new("queues plan", findings, metrics, text);
    if interrupted {
        let mut report = inspection
            .report()
            .map_err(|e| anyhow!("cannot build the report: {e}"))?;
        report.mark_interrupted();
        return crate::commands::emit(&report, &inspection.text, &a.output);
    }
    emit_inspection(&inspection, &a.output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_read_as_sidekiq_reads_its_queue_options() {
        let (q, strict) = parse_spec("--proposed", "critical,3 default,2 low,1").unwrap();
        assert_eq!(q[0], ("critical".to_string(), 3));
        assert!(!strict);
        let (_, strict) = parse_spec("--proposed", "critical default").unwrap();
        assert!(strict);
        let e = parse_spec("--proposed", "a,x").unwrap_err().to_string();
        assert!(e.contains("--proposed: `a,x`"), "{e}");
        assert!(parse_spec("--running", "a a").is_err());
        assert!(parse_spec("--running", " ").is_err());
    }
}
