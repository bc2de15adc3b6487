//! `powertune provider-sim`: a simulated OpenAI / Anthropic / Ollama provider with
//! latency distributions, quotas and faults, until Ctrl-C (docs/provider-sim.md).

use super::Context;
use anyhow::{bail, Context as _};
use powertune_core::ExitCode;
use powertune_provider_sim::config::{check_per_minute, MAX_DURATION, MAX_OUTPUT_TOKENS};
use powertune_provider_sim::{Dist, Limits, ProviderSim, SimConfig, DRAIN};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

fn duration_dist(s: &str) -> Result<Dist, String> {
    Dist::durations(s, MAX_DURATION)
}

fn token_dist(s: &str) -> Result<Dist, String> {
    Dist::tokens(s, MAX_OUTPUT_TOKENS)
}

fn per_minute(s: &str) -> Result<u64, String> {
    let n: u64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a whole number, e.g. 600"))?;
    check_per_minute(n)
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address to serve on (port 0 picks a free one). Loopback only unless --allow-remote.
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:8081")]
    listen: SocketAddr,

    /// Simulator config file (TOML, sim.toml; see docs/provider-sim.md). Flags below override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Time to first token of every model without its own: 400ms, 400ms..1.2s or p50=500ms,p99=2s.
    #[arg(long, value_name = "DIST", value_parser = duration_dist)]
    ttft: Option<Dist>,

    /// Time between tokens, same forms as --ttft, e.g. 20ms..45ms.
    #[arg(long, value_name = "DIST", value_parser = duration_dist)]
    itl: Option<Dist>,

    /// Tokens per answer: 200, 100..400 or p50=200,p99=800 (a request's max_tokens caps it).
    #[arg(long, value_name = "DIST", value_parser = token_dist)]
    output_tokens: Option<Dist>,

    /// Requests per minute each API key may make (429 beyond).
    #[arg(long, value_name = "N", value_parser = per_minute)]
    rpm: Option<u64>,

    /// Tokens (input + output) per minute each API key may use (429 beyond).
    #[arg(long, value_name = "N", value_parser = per_minute)]
    tpm: Option<u64>,

    /// Seed of every draw (default 1): the same seed answers the same requests alike.
    #[arg(long, value_name = "N")]
    seed: Option<u64>,

    /// Multiplies every time (latencies, stalls, flapping, the quota minute): 0.1 is ten times faster.
    #[arg(long, value_name = "FACTOR", value_parser = crate::args::factor)]
    time_scale: Option<f64>,

    /// Allow a non-loopback --listen address (the simulator then serves other hosts).
    #[arg(long)]
    allow_remote: bool,

    /// Connections served at once; more wait in the listen backlog (default 4096,
    /// lowered to what the open-files limit can hold).
    #[arg(long, value_name = "N", default_value_t = 4096,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_connections: u64,
}

/// The configuration: file (if any), then flags.
fn config(args: &Args) -> anyhow::Result<SimConfig> {
    let mut c = match &args.config {
        Some(p) => SimConfig::load(p)?,
        None => SimConfig::default(),
    };
    if let Some(d) = args.ttft {
        c.defaults.ttft = d;
    }
    if let Some(d) = args.itl {
        c.defaults.itl = d;
    }
    if let Some(d) = args.output_tokens {
        c.defaults.output_tokens = d;
    }
    if let Some(n) = args.rpm {
        c.quota.rpm = Some(n);
    }
    if let Some(n) = args.tpm {
        c.quota.tpm = Some(n);
    }
    if let Some(s) = args.seed {
        c.seed = s;
    }
    if let Some(t) = args.time_scale {
        c.time_scale = t;
    }
    Ok(c)
}

pub fn run(_ctx: &Context, args: Args) -> anyhow::Result<ExitCode> {
    let cfg = config(&args)?;
    if !args.listen.ip().is_loopback() && !args.allow_remote {
        bail!(
            "refusing to listen on {}: not a loopback address; pass --allow-remote to serve other hosts (example: --listen 127.0.0.1:8081)",
            args.listen
        );
    }
    let limits = Limits {
        max_connections: args.max_connections as usize,
        drain_timeout: DRAIN,
        ..Limits::default()
    };
    super::block_on(serve(cfg, args.listen, limits))?
}

async fn serve(cfg: SimConfig, listen: SocketAddr, limits: Limits) -> anyhow::Result<ExitCode> {
    let interrupt = crate::signal::Interrupt::listen("the provider simulator");
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let d = &cfg.defaults;
    let banner = format!(
        "seed {}, time scale {}, ttft {}, itl {}, output tokens {}, rpm {}, tpm {}",
        cfg.seed,
        cfg.time_scale,
        d.ttft.show_secs(),
        d.itl.show_secs(),
        d.output_tokens.show_count(),
        cfg.quota.rpm.map_or("unlimited".into(), |n| n.to_string()),
        cfg.quota.tpm.map_or("unlimited".into(), |n| n.to_string()),
    );
    let named = cfg.models.len();
    let sim = ProviderSim::start_with_limits(cfg, listener, limits).await?;
    let base = sim.url();
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "powertune provider-sim serving {base}  ({banner})")?;
        if named > 0 {
            let (what, whose) = if named == 1 {
                ("model", "its")
            } else {
                ("models", "their")
            };
            writeln!(out, "  {named} {what} with {whose} own settings")?;
        }
        for (method, path, note) in [
            ("POST", "/v1/chat/completions", "OpenAI chat (JSON or SSE)"),
            ("POST", "/v1/messages", "Anthropic messages (JSON or SSE)"),
            ("POST", "/api/chat", "Ollama chat (JSON or NDJSON)"),
            (
                "GET",
                "/v1/models",
                "model list (OpenAI; Anthropic with anthropic-version)",
            ),
            ("GET", "/api/tags", "model list (Ollama)"),
            (
                "GET",
                "/stats",
                "calls, tokens, 429s and faults per key and model",
            ),
            (
                "POST",
                "/control",
                "change latency, faults, quota at run time",
            ),
        ] {
            writeln!(out, "  {method:<5} {base}{path:<22} {note}")?;
        }
        writeln!(out, "Ctrl-C or SIGTERM stops (a second one at once).")?;
        out.flush()?;
    }
    interrupt.graceful().cancelled().await;
    let stats = sim.stats();
    let stop = sim.stop_tokens();
    stop.graceful.cancel();
    let hard = interrupt.hard().clone();
    tokio::spawn(async move {
        hard.cancelled().await;
        stop.hard.cancel();
    });
    let outcome = sim.wait().await;
    let t = stats.totals;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "\nstopped; {} calls, {} completed, {} output tokens, {} rate-limited (429){}",
        t.calls,
        t.completed,
        t.output_tokens,
        t.rate_limited(),
        if outcome.drained {
            String::new()
        } else {
            format!(
                ", {} streams cut at the end of the drain",
                outcome.abandoned
            )
        }
    )?;
    Ok(ExitCode::Passed)
}
