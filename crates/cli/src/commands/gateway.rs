//! `powertune gateway`: serve the LLM provider proxy, or judge a running one
//! (`powertune gateway status --url ...`).

use super::{block_on, emit, Context};
use crate::signal::Interrupt;
use anyhow::Context as _;
use powertune_core::report::Style;
use powertune_core::ExitCode;
use powertune_gateway::config::check_exposure;
use powertune_gateway::events::DEFAULT_LOG_QUEUE;
use powertune_gateway::server::Shutdown;
use powertune_gateway::{inspect, Config, EventLog, Gateway, StatusOptions, TokioClock};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    sub: Option<Sub>,
    /// Gateway config (providers, credentials, models, routes); see docs/gateway.md.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to serve on, overriding `listen` in the file (default 127.0.0.1:4000).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Write the access log (a JSON line per call, per breaker transition, per
    /// credential disabled or enabled) to FILE (appended), or `-` for stderr.
    #[arg(long, value_name = "FILE")]
    access_log: Option<PathBuf>,
    /// Serve beyond loopback without [[clients]] keys (anyone who reaches the
    /// gateway spends its provider keys).
    #[arg(long)]
    allow_unauthenticated: bool,
}

#[derive(clap::Subcommand, Debug)]
enum Sub {
    /// Judge a running gateway: open breakers, provider P95 vs a saved baseline, retry depth.
    Status(StatusArgs),
}

#[derive(clap::Args, Debug)]
struct StatusArgs {
    /// The gateway's base URL.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:4000")]
    url: String,
    /// Compare provider P95 with this saved baseline (from --save-baseline).
    #[arg(long, value_name = "FILE")]
    baseline: Option<PathBuf>,
    /// Save the current provider P95s as a baseline to FILE.
    #[arg(long, value_name = "FILE")]
    save_baseline: Option<PathBuf>,
    #[command(flatten)]
    output: crate::args::Output,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<ExitCode> {
    match args.sub {
        Some(Sub::Status(s)) => status(ctx, s),
        None => serve(args),
    }
}

/// The access log's writer: a file opened for appending, or stderr for `-`.
fn access_log(path: &std::path::Path) -> anyhow::Result<EventLog> {
    let out: Box<dyn std::io::Write + Send> = if path.as_os_str() == "-" {
        Box::new(std::io::stderr())
    } else {
        Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("--access-log {}: cannot open", path.display()))?,
        )
    };
    EventLog::new(out, DEFAULT_LOG_QUEUE).context("cannot start the access-log writer")
}

fn serve(args: Args) -> anyhow::Result<ExitCode> {
    let Args {
        config,
        listen,
        access_log: log_path,
        allow_unauthenticated,
        ..
    } = args;
    let path = config.ok_or_else(|| {
        anyhow::anyhow!("--config FILE is required, e.g. powertune gateway --config gateway.toml (format in docs/gateway.md)")
    })?;
    let loaded = Config::load(&path)?;
    for w in &loaded.warnings {
        eprintln!("powertune gateway: warning: {w}");
    }
    let mut cfg = loaded.config;
    if let Some(l) = listen {
        cfg.listen = l.parse().map_err(|_| {
            anyhow::anyhow!("--listen {l:?} is not a socket address, e.g. --listen 127.0.0.1:4000")
        })?;
    }
    check_exposure(cfg.listen, &cfg.clients, allow_unauthenticated)
        .map_err(|e| anyhow::anyhow!(e))?;
    let log = log_path.as_deref().map(access_log).transpose()?;
    let addr = cfg.listen;
    let drain = cfg.server.limits.drain_timeout;
    let reload_path = path.display().to_string();
    let creds: usize = cfg.providers.iter().map(|p| p.credentials.len()).sum();
    let providers = cfg.providers.len();
    let clients = cfg.clients.len();
    let gw = Gateway::new(cfg, Arc::new(TokioClock))?;
    gw.set_allow_unauthenticated(allow_unauthenticated);
    if let Some(log) = log {
        gw.set_event_log(log);
    }
    gw.set_config_source(path, Arc::new(|k: &str| std::env::var(k).ok()));
    gw.set_reload_listener(Arc::new(|e| {
        eprintln!("powertune gateway: {e}");
        for w in e.warnings() {
            eprintln!("powertune gateway: warning: {w}");
        }
    }));
    // [shared]: the replica lost Redis (local state) or is back (shared state)
    gw.set_notice_listener(Arc::new(|line: &str| {
        eprintln!("powertune gateway: {line}");
    }));
    block_on(async move {
        let listener = Gateway::bind(addr).await?;
        let bound = listener.local_addr().unwrap_or(addr);
        #[cfg(unix)]
        let _reloader = gw
            .spawn_sighup_reloader()
            .context("cannot listen for SIGHUP (config reload)")?;
        // first SIGTERM/SIGINT: stop accepting, let calls in flight finish (up to
        // server.drain_timeout); a second one: stop at once. Listening before the
        // address is printed, so a signal right after it still drains.
        let interrupt = Interrupt::listen("the gateway");
        eprintln!(
            "powertune gateway listening on http://{bound} ({providers} providers, {creds} credentials, {clients} client keys); SIGHUP or POST /admin/reload re-reads {}; SIGTERM or Ctrl-C drains (up to {}), a second one stops at once",
            reload_path,
            powertune_core::duration::format(drain),
        );
        let shutdown = Shutdown {
            graceful: interrupt.graceful().clone(),
            hard: interrupt.hard().clone(),
        };
        let outcome = gw.clone().serve(listener, shutdown).await;
        gw.flush_event_log(std::time::Duration::from_secs(2));
        // [telemetry]: the spans still queued, within export_timeout
        let g = gw.clone();
        let _ = tokio::task::spawn_blocking(move || g.shutdown_telemetry()).await;
        if outcome.drained {
            eprintln!("powertune gateway: stopped; every call in flight finished");
            anyhow::Ok(ExitCode::Passed)
        } else {
            eprintln!(
                "powertune gateway: stopped before the drain ended; {} connections were cut",
                outcome.abandoned
            );
            anyhow::Ok(ExitCode::Interrupted)
        }
    })?
}

fn status(ctx: &Context, a: StatusArgs) -> anyhow::Result<ExitCode> {
    let targets = ctx.targets()?;
    let options = StatusOptions {
        url: a.url,
        baseline: a.baseline,
        save_baseline: a.save_baseline,
        style: Style::detect(),
        note: Some(Arc::new(|line: &str| eprintln!("{line}"))),
    };
    let inspection = block_on(inspect(&options, &targets))??;
    emit(&inspection.report()?, &inspection.text, &a.output)
}
