//! `powertune queues plan`: samples Sidekiq over a window, estimates each queue's
//! arrival rate and run time, sizes threads and processes with Erlang C, simulates
//! Sidekiq's fetch for the running, the recommended and a `--proposed` configuration,
//! and checks the connection budget against PostgreSQL's `max_connections` (`--db`).
//! With `--history FILE` the samples come from a recorded history instead of a live
//! window; with `--apm FILE` queues' run times come from an APM report's job classes.

use crate::args::{self, positive_duration_at_most};
use crate::commands::redis::ConnArgs;
use crate::commands::{block_on, emit_inspection, Context};
use anyhow::{anyhow, bail};
use powertune_core::{ExitCode, Inspection};
use powertune_queues_plan::apm;
use powertune_queues_plan::estimate::{estimate_over, Load, RunTimes};
use powertune_queues_plan::plan::{self, DbLimit, PlanMetrics, PlanOptions, WebTier};
use powertune_queues_plan::sim::{SimOptions, SimProcess};
use powertune_redis::sidekiq::history::{self, file, History, Record, Sample};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// The longest live window and simulated horizon.
const MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);
const MAX_HORIZON: Duration = Duration::from_secs(7 * 24 * 3600);
/// The longest window read from a history.
const MAX_HISTORY_WINDOW: Duration = Duration::from_secs(366 * 24 * 3600);
/// The live window when none is given.
const DEFAULT_WINDOW: Duration = Duration::from_secs(60);

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    conn: ConnArgs,
    #[command(flatten)]
    output: args::Output,
    /// Live sampling window (1s to 24h, default 60s): samples are read every
    /// --interval for this long. Ctrl-C ends it early and plans from what was read.
    /// With --history: the last DURATION of the history (default: all of it).
    #[arg(long, value_name = "DURATION", value_parser = positive_duration_at_most(MAX_HISTORY_WINDOW))]
    window: Option<Duration>,
    /// Plan from a history file `powertune queues record` wrote instead of a live
    /// window (no --url needed).
    #[arg(long, value_name = "FILE")]
    history: Option<PathBuf>,
    /// A `powertune apm report --json` report: queues' run times from its job classes
    /// (mapped to queues by the classes the samples saw running). --service-time
    /// overrides it per queue.
    #[arg(long, value_name = "FILE")]
    apm: Option<PathBuf>,
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
    let window = a.window.unwrap_or(DEFAULT_WINDOW);
    if window > MAX_WINDOW {
        bail!("--window: a live window is at most 24h; record with `powertune queues record` and plan with --history for longer");
    }
    let interrupt = crate::signal::Interrupt::listen("the sampling window");
    let stop = interrupt.graceful().clone();
    let mut c = conn.open().await?;
    let mut samples = vec![history::read(&mut c, 10_000).await?];
    let start = tokio::time::Instant::now();
    let mut next = start;
    let mut interrupted = false;
    while start.elapsed() < window {
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

/// The samples of the last `window` of `h` (all of it without one).
fn history_window(h: &History, window: Option<Duration>) -> Vec<Sample> {
    let end = h
        .records
        .iter()
        .map(Record::end)
        .reduce(f64::max)
        .unwrap_or(0.0);
    let start = window.map(|w| end - w.as_secs_f64()).unwrap_or(f64::MIN);
    h.samples().filter(|s| s.at >= start).cloned().collect()
}

/// Run times per queue with their origin: the APM report's, then --service-time's.
fn run_times(a: &Args, samples: &[Sample]) -> anyhow::Result<(RunTimes, Option<apm::ApmTimes>)> {
    let mut given = RunTimes::new();
    let mut from_apm = None;
    if let Some(path) = &a.apm {
        let text = powertune_core::baseline::read_limited(path)
            .map_err(|e| anyhow!("--apm {}: {e}", path.display()))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| anyhow!("--apm {}: not JSON: {e}", path.display()))?;
        let jobs = apm::jobs_of(&v).map_err(|e| anyhow!("--apm {}: {e}", path.display()))?;
        let t = apm::service_times(samples, &jobs);
        for (q, s) in &t.per_queue {
            given.insert(q.clone(), (*s, "apm"));
        }
        from_apm = Some(t);
    }
    for (q, s) in service_times(&a.service_time)? {
        given.insert(q, (s, "given"));
    }
    Ok((given, from_apm))
}

pub fn run(ctx: &Context, a: Args) -> anyhow::Result<ExitCode> {
    let targets = ctx.targets()?;
    service_times(&a.service_time)?;
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
    let history = a
        .history
        .as_deref()
        .map(|p| file::read(p).map_err(|e| anyhow!("--history {e}")))
        .transpose()?;
    let (samples, interrupted, db) = block_on(async {
        let (samples, interrupted) = match &history {
            Some(h) => (history_window(h, a.window), false),
            None => sample_window(&a).await?,
        };
        let db = match a.db.as_deref() {
            Some(url) => Some(db_limit(url).await?),
            None => None,
        };
        anyhow::Ok((samples, interrupted, db))
    })??;
    let (given, from_apm) = run_times(&a, &samples)?;
    let source = match &a.history {
        Some(p) => format!("history {}", p.display()),
        None => "live window".to_string(),
    };
    let load: Load = estimate_over(&samples, &given, &source).ok_or_else(|| {
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
    let mut text = powertune_queues_plan::render::render(&metrics, &running_from);
    if let Some(t) = &from_apm {
        text.push_str(&apm_note(t));
    }
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

/// What the APM report gave, for the text.
fn apm_note(t: &apm::ApmTimes) -> String {
    let mut out = String::from("\nRun times from the APM report: ");
    if t.per_queue.is_empty() {
        out.push_str("none mapped to a queue");
    } else {
        let parts: Vec<String> = t
            .per_queue
            .iter()
            .map(|(q, s)| format!("{q} {}", powertune_core::units::seconds(*s)))
            .collect();
        out.push_str(&parts.join(", "));
    }
    if !t.unmapped.is_empty() {
        out.push_str(&format!(
            "; job classes never seen running in the samples (not used): {}",
            t.unmapped.join(", ")
        ));
    }
    out.push('\n');
    out
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
