//! `powertune target`: the embedded Powernode-like target on its own, until Ctrl-C.

use super::Context;
use crate::args::{duration_at_most, positive_duration_at_most};
use anyhow::bail;
use powertune_core::ExitCode;
use powertune_target::{Limits, TargetConfig, ENDPOINTS};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The longest pool timeout and added delay the target accepts.
const MAX_WAIT: Duration = Duration::from_secs(600);

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address to serve on (port 0 picks a free one). Loopback only unless --allow-remote.
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    /// Target config file (TOML; see docs/target.md). Flags below override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Slots in the simulated database pool (default 25).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pool_size: Option<u32>,

    /// How long a request waits for a pool slot before a 503 (default 5s).
    #[arg(long, value_name = "DURATION", value_parser = positive_duration_at_most(MAX_WAIT))]
    pool_timeout: Option<Duration>,

    /// Answer this fraction of a route's requests with 500, e.g. execute=0.02
    /// (routes: login, execute, missions, dashboard, health). Repeatable.
    #[arg(long, value_name = "ROUTE=RATE")]
    error_rate: Vec<String>,

    /// Fixed delay added to every API request, e.g. 50ms.
    #[arg(long, value_name = "DURATION", value_parser = duration_at_most(MAX_WAIT))]
    delay: Option<Duration>,

    /// Seed of the latency and error draws (default 1).
    #[arg(long, value_name = "N")]
    seed: Option<u64>,

    /// Refuse /cable connections without a valid ?token= from the login.
    #[arg(long)]
    require_cable_token: bool,

    /// Allow a non-loopback --listen address (the target then serves other hosts).
    #[arg(long)]
    allow_remote: bool,

    /// Connections served at once; more wait in the listen backlog (default 4096,
    /// lowered to what the open-files limit can hold).
    #[arg(long, value_name = "N", default_value_t = 4096,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_connections: u64,

    /// Time a client has to send a request head, from connect or from the end of the
    /// previous response on a kept-alive connection (also the keep-alive idle timeout).
    #[arg(long, value_name = "DURATION", default_value = "10s",
          value_parser = positive_duration_at_most(Duration::from_secs(3600)))]
    header_read_timeout: Duration,

    /// Largest request head (request line and headers) in bytes; larger gets 431.
    #[arg(long, value_name = "BYTES", default_value_t = 65_536,
          value_parser = clap::value_parser!(u64).range(8_192..=1_048_576))]
    max_header_bytes: u64,

    /// Most header fields in one request; more gets 431.
    #[arg(long, value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    max_headers: u64,

    /// Export the target's own spans over OTLP/HTTP to this receiver (e.g. a
    /// `powertune apm serve`: http://127.0.0.1:4318); overrides `[telemetry]
    /// otlp_endpoint`.
    #[arg(long, value_name = "URL")]
    otlp: Option<String>,

    /// Print the configuration in force as TOML and exit.
    #[arg(long)]
    print_config: bool,
}

/// The configuration: file (if any), then flags.
fn config(args: &Args) -> anyhow::Result<TargetConfig> {
    let mut c = match &args.config {
        Some(p) => TargetConfig::load(p)?,
        None => TargetConfig::default(),
    };
    if let Some(n) = args.pool_size {
        c.pool_size = n as usize;
    }
    if let Some(t) = args.pool_timeout {
        c.pool_timeout = t;
    }
    if let Some(d) = args.delay {
        c.extra_delay = d;
    }
    if let Some(s) = args.seed {
        c.seed = s;
    }
    if args.require_cable_token {
        c.cable.require_token = true;
    }
    for spec in &args.error_rate {
        c.set_error_rate(spec)?;
    }
    if let Some(u) = &args.otlp {
        c.telemetry.otlp_endpoint = Some(u.clone());
    }
    c.validate()?;
    Ok(c)
}

pub fn run(_ctx: &Context, args: Args) -> anyhow::Result<ExitCode> {
    let cfg = config(&args)?;
    if args.print_config {
        write!(std::io::stdout().lock(), "{}", cfg.to_masked_toml()?)?;
        return Ok(ExitCode::Passed);
    }
    if !args.listen.ip().is_loopback() && !args.allow_remote {
        bail!(
            "refusing to listen on {}: not a loopback address; pass --allow-remote to serve other hosts (example: --listen 127.0.0.1:8080)",
            args.listen
        );
    }
    let limits = Limits {
        max_connections: args.max_connections as usize,
        header_read_timeout: args.header_read_timeout,
        max_header_bytes: args.max_header_bytes as usize,
        max_headers: args.max_headers as usize,
        ..powertune_target::default_limits()
    };
    super::block_on(serve(cfg, args.listen, limits))?
}

async fn serve(cfg: TargetConfig, listen: SocketAddr, limits: Limits) -> anyhow::Result<ExitCode> {
    // Listening before the address is printed: a signal right after it still drains.
    let interrupt = crate::signal::Interrupt::listen("the target");
    let target = powertune_target::start_with_limits(cfg, listen, limits).await?;
    let base = target.base_url();
    {
        let c = target.config();
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "powertune target serving {base}  (db pool {}, seed {})",
            c.pool_size, c.seed
        )?;
        for (method, path, note) in ENDPOINTS {
            writeln!(out, "  {method:<5} {base}{path:<34} {note}")?;
        }
        if c.auth.users.is_empty() {
            writeln!(
                out,
                "log in as any <name>@{} with the configured password (default \"demo\")",
                c.auth.email_domain
            )?;
        } else {
            writeln!(
                out,
                "log in as one of the {} configured users",
                c.auth.users.len()
            )?;
        }
        if let Some(u) = c.telemetry.traces_url() {
            writeln!(out, "spans exported over OTLP/HTTP to {u}")?;
        }
        writeln!(out, "Ctrl-C or SIGTERM stops (a second one at once).")?;
        out.flush()?;
    }
    interrupt.graceful().cancelled().await;
    let stats = target.stats();
    tokio::select! {
        _ = target.shutdown() => {}
        _ = interrupt.hard().cancelled() => {}
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "\nstopped; served {} requests", stats.total)?;
    for (route, r) in &stats.routes {
        let statuses: Vec<String> = r
            .by_status
            .iter()
            .map(|(s, n)| format!("{s}×{n}"))
            .collect();
        writeln!(out, "  {route:<34} {}", statuses.join("  "))?;
    }
    Ok(ExitCode::Passed)
}
