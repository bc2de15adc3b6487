//! `powertune demo`: the README's main job. Starts the embedded target on a free
//! loopback port, runs the runbook's five load scenarios (`examples/runbook.toml`,
//! embedded in the binary) scaled in time, and judges the run against the targets.

use super::Context;
use anyhow::Context as _;
use powertune_core::ExitCode;
use powertune_load::{Plan, RunOptions};
use std::path::PathBuf;
use std::time::Duration;

/// The runbook's scenarios, as shipped in `examples/runbook.toml`.
pub const RUNBOOK_PLAN: &str = include_str!("../../../../examples/runbook.toml");

/// Where the demo writes its HTML report when `--html` does not say.
pub const DEFAULT_HTML: &str = "powertune-demo.html";

/// Without `--time-scale`, the whole run is scaled to about this long.
const DEFAULT_LENGTH: Duration = Duration::from_secs(60);

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Multiply every scenario duration by this factor; 1 runs the runbook's real
    /// lengths (about 14 minutes). Default: whatever makes the run take about a minute.
    #[arg(long, value_name = "FACTOR", value_parser = crate::args::factor)]
    time_scale: Option<f64>,

    /// Run this plan instead of the embedded examples/runbook.toml.
    #[arg(long, value_name = "FILE")]
    plan: Option<PathBuf>,

    /// Database pool size of the embedded target (requests queue when it is used up).
    #[arg(long, default_value_t = 25, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pool_size: u32,

    #[command(flatten)]
    output: crate::args::Output,

    /// No live progress line.
    #[arg(long)]
    quiet: bool,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<ExitCode> {
    let targets = ctx.targets()?;
    if args.output.html.is_none() {
        crate::outputs::check(std::path::Path::new(DEFAULT_HTML), "--html (default)")
            .map_err(anyhow::Error::msg)?;
    }
    let mut plan = match &args.plan {
        Some(p) => Plan::from_path(p)?,
        None => Plan::from_toml_str(RUNBOOK_PLAN, "examples/runbook.toml (embedded)")?,
    };
    let full = plan.total_duration();
    let factor = match args.time_scale {
        Some(f) => f,
        None if full > DEFAULT_LENGTH => DEFAULT_LENGTH.as_secs_f64() / full.as_secs_f64(),
        None => 1.0,
    };
    plan.scale_time(factor);
    let scaled = plan.total_duration();

    let mut opts = RunOptions::new(plan, String::new());
    opts.env = super::load::plan_env(&opts.plan, Default::default());
    let progress = (!args.quiet).then(|| crate::progress::LoadProgress::new(scaled));
    opts.progress = progress.as_ref().map(|p| p.callback());
    let to_stdout = args.output.json.as_deref() == Some(std::path::Path::new("-"));

    let (result, stats) = super::block_on(async move {
        let config = powertune_target::TargetConfig {
            pool_size: args.pool_size as usize,
            ..Default::default()
        };
        let target = powertune_target::start(config, ([127, 0, 0, 1], 0).into())
            .await
            .context("cannot start the embedded target")?;
        opts.base_url = target.base_url();
        if !to_stdout {
            eprintln!(
                "powertune demo: embedded target at {}; {} scenarios, {} of the runbook's {} (time scale {factor:.3})",
                opts.base_url,
                opts.plan.scenarios.len(),
                powertune_core::units::duration(scaled),
                powertune_core::units::duration(full),
            );
        }
        // SIGINT/SIGTERM: the first stops the run gracefully, a second at once; the
        // summary and --json are still written, marked interrupted.
        let interrupt = crate::signal::Interrupt::listen("the run");
        opts.stop = Some(interrupt.graceful().clone());
        opts.halt = Some(interrupt.hard().clone());
        let result = powertune_load::inspect(&opts, &targets).await;
        let stats = target.stats();
        target.shutdown().await;
        anyhow::Ok((result, stats))
    })??;
    if let Some(p) = &progress {
        p.finish();
    }
    let mut inspection = result?;
    if !to_stdout {
        inspection.text.push_str(&format!(
            "\nembedded target: {} requests served, database pool of {} slots\n",
            stats.total, args.pool_size
        ));
    }
    // The picture of the run: powertune-demo.html unless --html names another file.
    let files = crate::outputs::Files::from(&args.output);
    let default_html = PathBuf::from(DEFAULT_HTML);
    let files = crate::outputs::Files {
        html: files.html.or(Some(default_html.as_path())),
        ..files
    };
    super::load::emit_run(&inspection, files)
}
