//! `powertune capacity`: the runbook's Capacity Planning procedure. Steps the plan's
//! scenario mix upward on the open model until the first SLO violation or
//! saturation, samples the resources given (`--metrics`, `--pid`, `--cgroup`,
//! `--redis`, `--db`, `--queues`, `--gateway`, the generator's own CPU) during every
//! step, names the limiting resource with its figures, and judges the headroom
//! against `--growth`.
//! `--demo` runs against the embedded target; `--verify FILE` re-tests.

use super::Context;
use anyhow::{bail, Context as _};
use powertune_capacity::config::{split, RawCapacity};
use powertune_capacity::{CapacityOptions, Event, Mix, ResourceOptions};
use powertune_core::{units, ExitCode};
use powertune_load::Plan;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The provider simulator's time scale in `--demo`: its realistic latencies
/// (hundreds of ms to first token, 100 to 400 tokens) shortened 20 times.
const DEMO_LLM_TIME_SCALE: f64 = 0.05;

/// Threads of the embedded target's runtime in `--demo` (not the generator's CPU).
const TARGET_THREADS: &str = "pt-target";

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Scenario file (TOML; see docs/scenarios.md), optionally with a [capacity]
    /// table. With --demo, the embedded examples/runbook.toml unless given.
    #[arg(value_name = "FILE")]
    file: Option<PathBuf>,

    /// Run against the embedded target (25-slot database pool) on a free loopback
    /// port, with its /metrics sampled.
    #[arg(long)]
    demo: bool,

    /// Base URL every relative step URL is joined to (overrides options.base_url).
    #[arg(long, value_name = "URL", conflicts_with = "demo")]
    base_url: Option<String>,

    /// Arrivals per second of the first step, every scenario together (default 10;
    /// --demo 50).
    #[arg(long, value_name = "RATE", value_parser = crate::args::rate)]
    start: Option<f64>,

    /// Each step's rate is the previous one's × FACTOR (default 1.5).
    #[arg(long, value_name = "FACTOR", conflicts_with = "increment")]
    factor: Option<f64>,

    /// Each step's rate is the previous one's + RATE (instead of --factor).
    #[arg(long, value_name = "RATE", value_parser = crate::args::rate)]
    increment: Option<f64>,

    /// How long each step is measured, after its warm-up (default 30s; --demo 4s).
    #[arg(long, value_name = "DURATION")]
    step: Option<String>,

    /// How long each step runs before it is measured (default 10s; --demo 2s).
    #[arg(long, value_name = "DURATION")]
    warmup: Option<String>,

    /// No step above this many arrivals per second.
    #[arg(long, value_name = "RATE", value_parser = crate::args::rate)]
    max_rate: Option<f64>,

    /// Start no step after this long (default 30m).
    #[arg(long, value_name = "DURATION")]
    max_time: Option<String>,

    /// At most this many steps, refinements included (default 30).
    #[arg(long, value_name = "N")]
    max_steps: Option<u32>,

    /// Times a step whose latency still trends is measured again (default 1).
    #[arg(long, value_name = "N")]
    extend: Option<u32>,

    /// Steps run between the last good rate and the knee (default 2; --demo 3).
    #[arg(long, value_name = "N")]
    refine: Option<u32>,

    /// Expected traffic growth: the projected load is the baseline × this (default 2).
    #[arg(long, value_name = "FACTOR")]
    growth: Option<f64>,

    /// Today's traffic in arrivals per second (default: the start rate).
    #[arg(long, value_name = "RATE", value_parser = crate::args::rate)]
    baseline_rate: Option<f64>,

    /// Multiply the step, warm-up and time limit by this factor (after the file and
    /// the flags).
    #[arg(long, value_name = "FACTOR", value_parser = crate::args::factor)]
    time_scale: Option<f64>,

    /// A Prometheus text endpoint whose pool gauges are sampled (repeatable): the
    /// embedded target's, yabeda / prometheus_exporter's ActiveRecord and Puma.
    #[arg(long, value_name = "URL")]
    metrics: Vec<String>,

    /// A target process whose CPU and memory are sampled (repeatable).
    #[arg(long, value_name = "PID")]
    pid: Vec<u32>,

    /// A cgroup v2 directory whose CPU (throttling) and memory are sampled (repeatable).
    #[arg(long, value_name = "DIR")]
    cgroup: Vec<PathBuf>,

    /// A Redis server whose INFO is sampled (repeatable): memory vs maxmemory,
    /// evictions, rejected connections, commands/s.
    #[arg(long, value_name = "URL")]
    redis: Vec<String>,

    /// A PostgreSQL server sampled per step (repeatable): connections vs
    /// max_connections, wait events several times a second, lock waits, and the
    /// pg_stat_statements delta (top statements by time within the step).
    #[arg(long, value_name = "URL")]
    db: Vec<String>,

    /// Sidekiq's Redis sampled per step (repeatable): busy threads vs concurrency,
    /// jobs enqueued, queue latency.
    #[arg(long, value_name = "URL")]
    queues: Vec<String>,

    /// A powertune gateway whose /status is sampled per step (repeatable): credentials
    /// open or rate-limited, 429s, provider P95. --demo samples its own.
    #[arg(long, value_name = "URL")]
    gateway: Vec<String>,

    /// Time between resource samples.
    #[arg(long, value_name = "DURATION", default_value = "500ms", value_parser = crate::args::positive_duration)]
    sample_interval: Duration,

    /// An earlier `capacity --json` report: re-run at its projected load and at its
    /// knee, and judge whether the SLO violation moved beyond the projection.
    #[arg(long, value_name = "FILE")]
    verify: Option<PathBuf>,

    /// A variable for {{NAME}} templates: NAME=VALUE (repeatable).
    #[arg(long = "env", short = 'e', value_name = "NAME=VALUE")]
    env: Vec<String>,

    /// --demo: the embedded target's database pool size.
    #[arg(long, default_value_t = 25, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pool_size: u32,

    /// --demo: the embedded target's configuration file (TOML, docs/target.md), to
    /// plant other bottlenecks (cpu_workers and routes.*.cpu, [redis]); --pool-size
    /// still applies when given explicitly.
    #[arg(long, value_name = "FILE", requires = "demo")]
    target_config: Option<PathBuf>,

    #[command(flatten)]
    output: crate::args::Output,

    #[command(flatten)]
    journal: super::verify::JournalArgs,

    /// No step lines on standard error.
    #[arg(long, short = 'q')]
    quiet: bool,
}

impl Args {
    fn flags(&self) -> RawCapacity {
        RawCapacity {
            start: self.start,
            factor: self.factor,
            increment: self.increment,
            step: self.step.clone(),
            warmup: self.warmup.clone(),
            max_rate: self.max_rate,
            max_time: self.max_time.clone(),
            max_steps: self.max_steps,
            extend: self.extend,
            refine: self.refine,
            growth: self.growth,
            baseline_rate: self.baseline_rate,
        }
    }
}

/// The demo's schedule before the flags: short steps over the embedded target.
fn demo_defaults() -> RawCapacity {
    RawCapacity {
        start: Some(50.0),
        factor: Some(1.6),
        step: Some("4s".into()),
        warmup: Some("2s".into()),
        refine: Some(3),
        ..Default::default()
    }
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<ExitCode> {
    // Everything is validated before any socket opens.
    let targets = ctx.targets()?;
    args.journal.check()?;
    let env = super::load::parse_env(&args.env)?;
    let (plan, table) = match &args.file {
        Some(f) => {
            let s = split(f)?;
            (Plan::from_text_at(&s.plan_text, f)?, s.capacity)
        }
        None if args.demo => (
            Plan::from_toml_str(super::demo::RUNBOOK_PLAN, "examples/runbook.toml (embedded)")?,
            RawCapacity::default(),
        ),
        None => bail!(
            "give a scenario file (powertune capacity FILE --base-url URL) or --demo for the embedded target"
        ),
    };
    let base = if args.demo {
        demo_defaults().overlay(&table)
    } else {
        table
    };
    let verify = args
        .verify
        .as_deref()
        .map(powertune_capacity::verify::read)
        .transpose()?;
    let mut raw = base.overlay(&args.flags());
    if let (Some(v), None) = (&verify, args.growth) {
        raw.growth = Some(v.metrics.headroom.growth);
    }
    let mut schedule = raw.validate()?;
    if let Some(f) = args.time_scale {
        schedule.scale_time(f);
    }
    let base_url = match (&args.base_url, args.demo) {
        (_, true) => String::new(),
        (Some(u), false) => u.clone(),
        (None, false) => plan.options.base_url.clone().ok_or_else(|| {
            anyhow::anyhow!(
                "no base URL: give --base-url (e.g. --base-url http://127.0.0.1:8080) or options.base_url in the scenario file"
            )
        })?,
    };
    let target_config = match &args.target_config {
        Some(p) => {
            let mut c = powertune_target::TargetConfig::load(p)?;
            if args.pool_size != 25 {
                c.pool_size = args.pool_size as usize;
            }
            c
        }
        None => powertune_target::TargetConfig {
            pool_size: args.pool_size as usize,
            ..Default::default()
        },
    };
    target_config.validate()?;
    let env = super::load::plan_env(&plan, env);
    let mix = Mix::new(plan)?;
    let resources = ResourceOptions {
        metrics: args.metrics.clone(),
        pids: args.pid.clone(),
        cgroups: args.cgroup.clone(),
        redis: args.redis.clone(),
        db: args.db.clone(),
        queues: args.queues.clone(),
        gateways: args.gateway.clone(),
        generator: true,
        exclude_threads: args.demo.then(|| TARGET_THREADS.to_string()),
        interval: args.sample_interval,
    };
    // Sources are checked now (a bad --pid or URL), before any load.
    powertune_capacity::run::sources(&resources)?;
    let to_stdout = args.output.json.as_deref() == Some(std::path::Path::new("-"));
    let show = !args.quiet && !to_stdout;
    let mut opts = CapacityOptions {
        mix,
        base_url,
        env,
        schedule,
        resources,
        verify,
        progress: show.then(progress),
        stop: None,
        halt: None,
    };

    // --demo: the embedded target on a runtime of its own, so its threads' CPU is
    // told apart from the generator's.
    let demo = if args.demo {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(TARGET_THREADS)
            .enable_all()
            .build()
            .context("cannot start the embedded target's runtime")?;
        // The runbook plan's streamed LLM calls go target → gateway → provider
        // simulator, as in `powertune demo`, at a time scale that keeps a call well
        // inside one step.
        let mut config = target_config.clone();
        let llm = if config.llm.base_url.is_none() {
            let path = rt.block_on(super::demo::LlmPath::start(DEMO_LLM_TIME_SCALE, None))?;
            config.llm = path.target_config();
            // The gateway's /status is sampled like any --gateway.
            if let Some(url) = config.llm.base_url.as_deref() {
                let url = url.strip_suffix("/v1").unwrap_or(url).to_string();
                opts.resources.gateways.push(url);
            }
            if show {
                eprintln!("{}", path.describe());
            }
            Some(path)
        } else {
            None
        };
        let target = rt
            .block_on(powertune_target::start(config, ([127, 0, 0, 1], 0).into()))
            .context("cannot start the embedded target")?;
        opts.base_url = target.base_url();
        opts.resources
            .metrics
            .push(format!("{}/metrics", target.base_url()));
        if show {
            eprintln!(
                "powertune capacity: embedded target at {} (database pool of {} slots, {} CPU worker threads{})",
                opts.base_url,
                target_config.pool_size,
                target_config.cpu_workers,
                if target_config.redis.url.is_some() {
                    format!(", Redis pool of {}", target_config.redis.pool_size)
                } else {
                    String::new()
                }
            );
        }
        Some((rt, target, llm))
    } else {
        None
    };
    if show {
        let s = &opts.schedule;
        eprintln!(
            "powertune capacity: {} scenario(s) of {}; from {}/s, steps of {} after {} warm-up",
            opts.mix.shares.len(),
            opts.mix.source(),
            units::trim(s.start, 1),
            units::duration(s.step),
            units::duration(s.warmup),
        );
    }
    let result = super::block_on(async move {
        let interrupt = crate::signal::Interrupt::listen("the capacity run");
        opts.stop = Some(interrupt.graceful().clone());
        opts.halt = Some(interrupt.hard().clone());
        powertune_capacity::inspect(&opts, &targets).await
    })?;
    if let Some((rt, target, llm)) = demo {
        rt.block_on(target.shutdown());
        if let Some(path) = llm {
            rt.block_on(path.stop());
        }
    }
    let inspection = result?;
    let mut report = inspection
        .report()
        .map_err(|e| anyhow::anyhow!("cannot build the report: {e}"))?;
    if inspection.metrics.interrupted {
        report.mark_interrupted();
    }
    args.journal.append(&report)?;
    super::emit(
        &report,
        &inspection.text,
        crate::outputs::Files::from(&args.output),
    )
}

/// One line per step on standard error.
fn progress() -> powertune_capacity::ProgressFn {
    Arc::new(|e: &Event| match e {
        Event::Starting {
            number,
            rate,
            refinement,
        } => eprintln!(
            "step {number}{}: {}/s …",
            if *refinement { " (refinement)" } else { "" },
            units::trim(*rate, 1)
        ),
        Event::Done(s) => eprintln!(
            "step {}: achieved {}/s, p95 {}, errors {}{}",
            s.number,
            units::trim(s.achieved, 1),
            units::ms(s.p95_ms),
            units::percent(s.error_rate_pct),
            if s.violations.is_empty() {
                String::new()
            } else {
                format!(" — {}", s.violations.join("; "))
            }
        ),
    })
}
