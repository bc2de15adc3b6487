//! `powertune frontend`: the runbook's "Frontend Performance" section. `frontend
//! bundle DIST` judges a Vite build's initial load and lazy routes; `frontend lcp
//! URL` measures cold-load LCP and layout shift in headless Chromium.

use super::{block_on, emit, Context};
use crate::{args, outputs};
use anyhow::anyhow;
use is_terminal::IsTerminal;
use powertune_core::ExitCode;
use powertune_frontend::bundle::{self, BundleOptions};
use powertune_frontend::lcp::{self, Hooks, LcpOptions, Throttle};
use powertune_frontend::BundleBaseline;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    sub: Sub,
}

#[derive(clap::Subcommand, Debug)]
enum Sub {
    /// The initial load of a Vite build (entries + static imports + their CSS) gzip,
    /// Brotli and raw against the budget, its largest chunks, lazy chunks apart, and
    /// route modules that are not really lazy.
    Bundle(BundleArgs),
    /// Cold-load Largest Contentful Paint and layout shift of a page, N runs in
    /// headless Chromium (fresh profile, cache off), median and spread.
    Lcp(LcpArgs),
}

#[derive(clap::Args, Debug)]
struct BundleArgs {
    /// Vite's build output directory (with .vite/manifest.json or manifest.json).
    #[arg(value_name = "DIST")]
    dist: PathBuf,
    /// The Vite project root the manifest's keys are relative to (default: DIST's parent).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Route modules, a glob relative to the root (a file, or a directory standing
    /// for every module in it); repeat for more. Default: src/features/*,
    /// src/pages/*, src/routes/*.
    #[arg(long = "routes", value_name = "GLOB")]
    routes: Vec<String>,
    #[command(flatten)]
    baseline: args::Baseline,
    #[command(flatten)]
    output: args::Output,
}

#[derive(clap::Args, Debug)]
struct LcpArgs {
    /// The page to load, e.g. http://127.0.0.1:5173/.
    #[arg(value_name = "URL")]
    url: String,
    /// Cold loads to run (each in a new browser with a fresh profile).
    #[arg(long, default_value_t = 5, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=lcp::MAX_RUNS as i64))]
    runs: u32,
    /// Throttling preset: none, or mobile (Lighthouse's: 562.5 ms latency,
    /// 1474.56 Kbps down, 675 Kbps up, CPU 4× slower, 412×823 screen).
    #[arg(long, default_value = "none", value_name = "PRESET", value_parser = throttle)]
    throttle: Throttle,
    /// The longest one run may take, from launch until the page is settled.
    #[arg(long, default_value = "45s", value_name = "DURATION",
          value_parser = args::positive_duration_at_most(Duration::from_secs(600)))]
    timeout: Duration,
    /// The Chromium binary (default: $POWERTUNE_CHROMIUM, else chromium on PATH).
    #[arg(long, value_name = "PATH")]
    chromium: Option<PathBuf>,
    #[command(flatten)]
    output: args::Output,
}

fn throttle(s: &str) -> Result<Throttle, String> {
    match s {
        "none" => Ok(Throttle::None),
        "mobile" => Ok(Throttle::Mobile),
        _ => Err(format!("'{s}': give none or mobile")),
    }
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<ExitCode> {
    match args.sub {
        Sub::Bundle(a) => bundle_cmd(ctx, a),
        Sub::Lcp(a) => lcp_cmd(ctx, a),
    }
}

fn bundle_cmd(ctx: &Context, a: BundleArgs) -> anyhow::Result<ExitCode> {
    let targets = ctx.targets()?;
    let mut opts = BundleOptions::new(&a.dist);
    opts.root = a.root;
    opts.routes = a.routes;
    if let Some(path) = &a.baseline.baseline {
        opts.baseline = Some((path.clone(), BundleBaseline::load(path)?));
    }
    let inspection = bundle::inspect(&opts, &targets)?;
    if let Some(path) = &a.baseline.save_baseline {
        BundleBaseline::save(&inspection.metrics, path)?;
        eprintln!(
            "baseline saved to {} (initial load {} gzip)",
            path.display(),
            powertune_core::units::bytes(inspection.metrics.initial.gzip)
        );
    }
    let report = inspection
        .report()
        .map_err(|e| anyhow!("cannot build the report: {e}"))?;
    // The Markdown (a pull-request comment) carries the chunk tables too.
    let files = outputs::Files {
        markdown: None,
        ..outputs::Files::from(&a.output)
    };
    let code = emit(&report, &inspection.text, files)?;
    let Some(given) = &a.output.markdown else {
        return Ok(code);
    };
    let text = powertune_core::ci::markdown(&report)
        + &powertune_frontend::render::bundle_markdown(&inspection.metrics);
    match write_markdown(given, &text) {
        Ok(()) => Ok(code),
        Err(why) => {
            eprintln!("powertune: {why}");
            Ok(match code {
                ExitCode::Passed => ExitCode::BadInput,
                other => other,
            })
        }
    }
}

/// Writes FILE, or appends to the job summary for `--markdown` without FILE.
fn write_markdown(given: &Path, text: &str) -> Result<(), String> {
    let path = outputs::markdown_path(given)?;
    let append = given == Path::new(outputs::STEP_SUMMARY_ARG);
    let written = if append {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(format!("{text}\n").as_bytes()))
    } else {
        std::fs::write(&path, text)
    };
    written.map_err(|e| format!("cannot write Markdown to {}: {e}", path.display()))
}

fn lcp_cmd(ctx: &Context, a: LcpArgs) -> anyhow::Result<ExitCode> {
    let targets = ctx.targets()?;
    let mut opts = LcpOptions::new(&a.url);
    opts.runs = a.runs;
    opts.throttle = a.throttle;
    opts.timeout = a.timeout;
    opts.chromium = a.chromium;
    opts.validate()?;
    lcp::find_chromium(opts.chromium.as_ref())?;
    let tty = std::io::stderr().is_terminal();
    let (inspection, interrupted) = block_on(async {
        let interrupt = crate::signal::Interrupt::listen("the runs");
        let graceful = interrupt.graceful().clone();
        let progress = move |done: u32, total: u32| {
            if tty {
                eprintln!("run {done}/{total} done");
            }
        };
        let stop = || graceful.is_cancelled();
        let hooks = Hooks {
            progress: &progress,
            stop: &stop,
        };
        tokio::select! {
            r = lcp::inspect(&opts, &targets, &hooks) => r.map(|i| (i, interrupt.graceful().is_cancelled())).map_err(anyhow::Error::from),
            _ = interrupt.hard().cancelled() => Err(anyhow!("interrupted before the runs finished; nothing to report")),
        }
    })??;
    let mut report = inspection
        .report()
        .map_err(|e| anyhow!("cannot build the report: {e}"))?;
    if interrupted {
        report.mark_interrupted();
    }
    emit(&report, &inspection.text, &a.output)
}
