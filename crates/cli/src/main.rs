//! The `powertune` binary: parses, validates, calls one engine, renders.
//! Exit codes are decided in [`exit`] only.
// The binary is the one place that prints (reports, progress, errors).
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod args;
mod commands;
mod exit;
mod logging;
mod outputs;
mod pages;
mod progress;
mod signal;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// powertune: the performance-tuning runbook as one binary. Every figure it measures
/// is judged against the runbook's targets (`powertune targets` lists them).
#[derive(Parser, Debug)]
#[command(name = "powertune", version, about, long_about = None)]
struct Cli {
    /// Targets file overriding the runbook's defaults (default: ./powertune.toml if present).
    #[arg(long, global = true, value_name = "FILE")]
    targets: Option<std::path::PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the runbook's targets in force and where each value came from.
    Targets(commands::targets::Args),
    /// Run the runbook's five load scenarios against the embedded target (~1 minute).
    Demo(commands::demo::Args),
    /// Load-test: a scenario file (`load FILE --base-url URL`) or a one-off `--url`; k6-like summary judged against the runbook.
    Load(commands::load::Args),
    /// Capacity planning: graduated load to the first SLO violation, the limiting resource, headroom vs growth; `--verify` re-tests.
    Capacity(commands::capacity::Args),
    /// The runbook's Troubleshooting table over every configured system ([systems]): each symptom, its likely cause, the first action.
    Doctor(commands::doctor::Args),
    /// The runbook's Procedures step by step: `investigate endpoint "GET /api/…"` (a slow endpoint), `investigate queue NAME` (a queue backlog).
    Investigate(commands::investigate::Args),
    /// Capture every configured system's report (`baseline save DIR`) for a later `verify`.
    Baseline(commands::baseline::Args),
    /// The runbook's Verification checklist against a saved baseline: APM P95, queue latency, retry set, stuck queries, error rate.
    Verify(commands::verify::Args),
    /// List a run history written by `verify`, `load` or `capacity --journal FILE`.
    Journal(commands::journal::Args),
    /// Doctor on an interval: figures and verdicts on /metrics for Prometheus, a webhook message per verdict change.
    Monitor(commands::monitor::Args),
    /// Compare two `load --json` reports: each metric's change and "throughput ≥ baseline × 0.8".
    Compare(commands::compare::Args),
    /// Merge the `load --segment … --json` parts of one split run into one run, judged on the whole.
    Merge(commands::merge::Args),
    /// Show earlier `--json` reports of any command again, as HTML, JUnit or Markdown.
    Report(commands::report::Args),
    /// The runbook's Redis checks: INFO, SLOWLOG, key scan, cache types; `redis keys` scans every key.
    Redis(commands::redis::Args),
    /// Sidekiq: queues, latency, retries, dead set, failed rate, processes; `--watch` for a live view.
    Queues(commands::queues::Args),
    /// The runbook's APM from OpenTelemetry traces: `apm serve`, `report`, `endpoint`, `analyze`.
    Apm(commands::apm::Args),
    /// Serve the embedded Powernode-like target (login, agents, missions, dashboard, /cable, /metrics) until Ctrl-C.
    Target(commands::target::Args),
    /// The runbook's Database checks against PostgreSQL; `db explain` and `db watch`.
    Db(commands::db::Args),
    /// LLM provider proxy (OpenAI/Anthropic/Ollama APIs, breakers, retries, credential split); `gateway status` judges one.
    Gateway(commands::gateway::Args),
    /// The runbook's Frontend checks: `frontend bundle DIST` (initial load, lazy routes), `frontend lcp URL` (cold-load LCP, layout shift).
    Frontend(commands::frontend::Args),
    /// A simulated OpenAI/Anthropic/Ollama provider: latency distributions, per-key quotas (429), fault scripts, /control, /stats.
    ProviderSim(commands::provider_sim::Args),
    /// Print a completion script for bash, zsh, fish, elvish or PowerShell.
    Completions(commands::completions::Args),
    /// Print the man page (roff), or write one page per command with `--out DIR`.
    Man(commands::completions::ManArgs),
}

fn main() {
    let matches = match Cli::command().try_get_matches() {
        Ok(m) => m,
        Err(e) => exit::clap_error(e),
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => exit::clap_error(e),
    };
    if let Err(why) = outputs::check_writable(&matches) {
        exit::finish(Err(anyhow::anyhow!(why)));
    }
    // A --targets file is read and checked whatever the command, so a bad one is
    // refused even by the commands that judge nothing (target, gateway serve).
    let ctx = match commands::Context::new(cli.targets.as_deref()) {
        Ok(c) => c,
        Err(e) => exit::finish(Err(e)),
    };
    // Long-running services log through tracing (RUST_LOG, POWERTUNE_LOG_FORMAT).
    let service = logging::service(&matches);
    if let Some(name) = service {
        if let Err(e) = logging::init() {
            exit::finish(Err(e));
        }
        tracing::info!(
            service = name,
            version = env!("CARGO_PKG_VERSION"),
            pid = std::process::id(),
            "starting"
        );
    }
    let result = match cli.command {
        Command::Targets(a) => commands::targets::run(&ctx, a),
        Command::Demo(a) => commands::demo::run(&ctx, a),
        Command::Load(a) => commands::load::run(&ctx, a),
        Command::Capacity(a) => commands::capacity::run(&ctx, a),
        Command::Doctor(a) => commands::doctor::run(&ctx, a),
        Command::Investigate(a) => commands::investigate::run(&ctx, a),
        Command::Monitor(a) => commands::monitor::run(&ctx, a),
        Command::Baseline(a) => commands::baseline::run(&ctx, a),
        Command::Verify(a) => commands::verify::run(&ctx, a),
        Command::Journal(a) => commands::journal::run(&ctx, a),
        Command::Compare(a) => commands::compare::run(&ctx, a),
        Command::Merge(a) => commands::merge::run(&ctx, a),
        Command::Report(a) => commands::report::run(&ctx, a),
        Command::Redis(a) => commands::redis::run(&ctx, a),
        Command::Queues(a) => commands::queues::run(&ctx, a),
        Command::Apm(a) => commands::apm::run(&ctx, a),
        Command::Target(a) => commands::target::run(&ctx, a),
        Command::Db(a) => commands::db::run(&ctx, a),
        Command::Gateway(a) => commands::gateway::run(&ctx, a),
        Command::Frontend(a) => commands::frontend::run(&ctx, a),
        Command::ProviderSim(a) => commands::provider_sim::run(&ctx, a),
        Command::Completions(a) => commands::completions::completions(a, Cli::command()),
        Command::Man(a) => commands::completions::man(a, Cli::command()),
    };
    if let Some(name) = service {
        match &result {
            Ok(code) => tracing::info!(service = name, exit_code = *code as i32, "stopped"),
            // The error itself is the one line exit::finish prints.
            Err(_) => tracing::info!(service = name, exit_code = 1, "stopped"),
        }
    }
    exit::finish(result)
}
