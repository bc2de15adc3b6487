//! `powertune investigate endpoint|queue`: the runbook's two Procedures ("investigate
//! a slow endpoint", "investigate a queue backlog") step by step over `[systems]` of
//! powertune.toml (with the same flags and POWERTUNE_<KEY> overrides as doctor).

use super::doctor::SystemsArgs;
use super::{block_on, emit, emit_inspection, Context};
use crate::args::{self, positive_duration_at_most};
use anyhow::anyhow;
use powertune_core::ExitCode;
use powertune_doctor::investigate::{self, EndpointOptions, QueueOptions, WaitOutcome};
use powertune_doctor::options::MAX_TIMEOUT;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(clap::Subcommand, Debug)]
enum What {
    /// A slow endpoint: P95 vs its class, trace breakdown, EXPLAIN of the heaviest
    /// statement, N+1, breakers and quota, the fix candidates.
    Endpoint(EndpointArgs),
    /// A queue backlog: latency, retry/dead sets, capacity vs slow job, provider
    /// stalls; then watches until the queue is back to steady state.
    Queue(QueueArgs),
}

#[derive(clap::Args, Debug)]
struct EndpointArgs {
    /// The route as the APM names it: "METHOD /template" (e.g. "GET /api/v1/users/:id").
    route: String,
    #[command(flatten)]
    systems: SystemsArgs,
    /// The history of the APM read.
    #[arg(long, default_value = "15m", value_name = "DURATION",
          value_parser = positive_duration_at_most(Duration::from_secs(7 * 86_400)))]
    apm_window: Duration,
    /// The bound on the whole run: a system still being read then is "not measured".
    #[arg(long, default_value = "60s", value_name = "DURATION",
          value_parser = positive_duration_at_most(MAX_TIMEOUT))]
    timeout: Duration,
    /// The EXPLAIN's statement_timeout.
    #[arg(long, default_value = "10s", value_name = "DURATION",
          value_parser = positive_duration_at_most(Duration::from_secs(3600)))]
    explain_timeout: Duration,
    #[command(flatten)]
    output: args::Output,
}

#[derive(clap::Args, Debug)]
struct QueueArgs {
    /// The Sidekiq queue (e.g. default).
    queue: String,
    #[command(flatten)]
    systems: SystemsArgs,
    /// Skip step 6: do not watch the queue drain.
    #[arg(long, conflicts_with = "max_wait")]
    no_wait: bool,
    /// How long step 6 watches at most [default: the runbook's 15m drain time].
    #[arg(long, value_name = "DURATION",
          value_parser = positive_duration_at_most(Duration::from_secs(24 * 3600)))]
    max_wait: Option<Duration>,
    /// Time between two readings of the watch.
    #[arg(long, default_value = "5s", value_name = "DURATION",
          value_parser = positive_duration_at_most(Duration::from_secs(3600)))]
    every: Duration,
    /// The history of the APM read (job runtimes).
    #[arg(long, default_value = "15m", value_name = "DURATION",
          value_parser = positive_duration_at_most(Duration::from_secs(7 * 86_400)))]
    apm_window: Duration,
    /// The bound on the reads of steps 1-5.
    #[arg(long, default_value = "60s", value_name = "DURATION",
          value_parser = positive_duration_at_most(MAX_TIMEOUT))]
    timeout: Duration,
    #[command(flatten)]
    output: args::Output,
}

pub fn run(ctx: &Context, a: Args) -> anyhow::Result<ExitCode> {
    match a.what {
        What::Endpoint(e) => endpoint(ctx, e),
        What::Queue(q) => queue(ctx, q),
    }
}

fn endpoint(ctx: &Context, a: EndpointArgs) -> anyhow::Result<ExitCode> {
    let targets = ctx.targets()?;
    let systems = a.systems.resolve(&targets.systems)?;
    let mut o = EndpointOptions::new(systems, &a.route);
    o.apm_window = a.apm_window;
    o.timeout = a.timeout;
    o.explain_timeout = a.explain_timeout;
    o.validate().map_err(|e| anyhow!(e))?;
    let inspection = block_on(investigate::investigate_endpoint(&o, &targets))??;
    emit_inspection(&inspection, &a.output)
}

fn queue(ctx: &Context, a: QueueArgs) -> anyhow::Result<ExitCode> {
    let targets = ctx.targets()?;
    let systems = a.systems.resolve(&targets.systems)?;
    let mut o = QueueOptions::new(systems, &a.queue, &targets);
    o.apm_window = a.apm_window;
    o.timeout = a.timeout;
    o.every = a.every;
    if a.no_wait {
        o.max_wait = None;
    } else if let Some(w) = a.max_wait {
        o.max_wait = Some(w);
    }
    o.validate().map_err(|e| anyhow!(e))?;
    let inspection = block_on(async {
        let interrupt = crate::signal::Interrupt::listen("the watch");
        let graceful = interrupt.graceful().clone();
        let progress = |line: &str| eprintln!("{line}");
        tokio::select! {
            r = investigate::investigate_queue(&o, &targets, progress, graceful.cancelled_owned()) => r.map_err(anyhow::Error::from),
            _ = interrupt.hard().cancelled() => Err(anyhow!("interrupted before the investigation finished; nothing to report")),
        }
    })??;
    let mut report = inspection
        .report()
        .map_err(|e| anyhow!("cannot build the report: {e}"))?;
    if inspection.metrics.wait == WaitOutcome::Interrupted {
        report.mark_interrupted();
    }
    emit(&report, &inspection.text, &a.output)
}
