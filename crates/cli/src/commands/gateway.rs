//! `powertune gateway`: serve the LLM provider proxy, or judge a running one
//! (`powertune gateway status --url ...`).

use super::{block_on, emit, Context};
use anyhow::Context as _;
use powertune_core::report::{table, Style};
use powertune_core::{ExitCode, Report};
use powertune_gateway::judge::{judge, Baseline};
use powertune_gateway::{Config, Gateway, StatusSnapshot, TokioClock};
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
    /// Also write the report as JSON to FILE (`-` for standard output).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<ExitCode> {
    match args.sub {
        Some(Sub::Status(s)) => status(ctx, s),
        None => serve(args.config, args.listen),
    }
}

fn serve(config: Option<PathBuf>, listen: Option<String>) -> anyhow::Result<ExitCode> {
    let path = config.ok_or_else(|| {
        anyhow::anyhow!("--config FILE is required, e.g. powertune gateway --config gateway.toml (format in docs/gateway.md)")
    })?;
    let mut cfg = Config::load(&path)?;
    if let Some(l) = listen {
        cfg.listen = l.parse().map_err(|_| {
            anyhow::anyhow!("--listen {l:?} is not a socket address, e.g. --listen 127.0.0.1:4000")
        })?;
    }
    let addr = cfg.listen;
    let reload_path = path.display().to_string();
    let creds: usize = cfg.providers.iter().map(|p| p.credentials.len()).sum();
    let providers = cfg.providers.len();
    let gw = Gateway::new(cfg, Arc::new(TokioClock))?;
    gw.set_config_source(path, Arc::new(|k: &str| std::env::var(k).ok()));
    gw.set_reload_listener(Arc::new(|e| eprintln!("powertune gateway: {e}")));
    block_on(async move {
        let listener = Gateway::bind(addr).await?;
        let bound = listener.local_addr().unwrap_or(addr);
        #[cfg(unix)]
        let _reloader = gw
            .spawn_sighup_reloader()
            .context("cannot listen for SIGHUP (config reload)")?;
        eprintln!(
            "powertune gateway listening on http://{bound} ({providers} providers, {creds} credentials); SIGHUP or POST /admin/reload re-reads {}; Ctrl-C stops",
            reload_path
        );
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        gw.serve(listener, shutdown).await?;
        anyhow::Ok(ExitCode::Passed)
    })?
}

fn status(ctx: &Context, a: StatusArgs) -> anyhow::Result<ExitCode> {
    let targets = ctx.targets()?;
    let baseline = match &a.baseline {
        None => None,
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| {
                format!(
                    "cannot read baseline {} (save one with --save-baseline FILE)",
                    p.display()
                )
            })?;
            let b: Baseline = serde_json::from_str(&text).map_err(|e| {
                anyhow::anyhow!(
                    "baseline {} is not a powertune gateway baseline: {e} (save one with --save-baseline FILE)",
                    p.display()
                )
            })?;
            Some(b)
        }
    };
    let snap = block_on(powertune_gateway::collect::collect_status(&a.url))??;
    if let Some(p) = &a.save_baseline {
        let b = Baseline::from_snapshot(&snap);
        std::fs::write(p, serde_json::to_string_pretty(&b)? + "\n")
            .with_context(|| format!("cannot write baseline {}", p.display()))?;
        eprintln!(
            "saved a baseline of {} providers to {}",
            b.providers.len(),
            p.display()
        );
    }
    let findings = judge(&snap, baseline.as_ref(), &targets.ai);
    let metrics = serde_json::to_value(&snap)?;
    let report = Report::new("gateway status", findings, metrics);
    emit(&report, &details(&snap), a.json.as_deref())
}

fn details(s: &StatusSnapshot) -> String {
    let style = Style::detect();
    let mut out = format!(
        "{} calls in {:.0}s; gateway overhead p50 {:.3}ms p99 {:.3}ms; retries by depth {:?}; {} answered 503 (all open)\n\n",
        s.calls, s.uptime_s, s.overhead_ms.p50, s.overhead_ms.p99, s.retries_by_depth, s.rejected_all_open
    );
    let mut rows = vec![[
        "provider",
        "credential",
        "state",
        "weight",
        "rpm",
        "fails",
        "trips",
    ]
    .iter()
    .map(|x| style.bold(x))
    .collect::<Vec<_>>()];
    for c in &s.credentials {
        let state = match c.open_for_s {
            Some(secs) => format!("{} ({secs:.0}s)", c.state),
            None => c.state.clone(),
        };
        rows.push(vec![
            c.provider.clone(),
            c.credential.clone(),
            state,
            c.weight.to_string(),
            c.rpm.map_or("-".into(), |r| r.to_string()),
            c.consecutive_failures.to_string(),
            c.trips.to_string(),
        ]);
    }
    out.push_str(&table(&rows));
    if !s.series.is_empty() {
        out.push('\n');
        let mut rows = vec![[
            "provider/credential",
            "model",
            "ok",
            "failed",
            "p50 ms",
            "p95 ms",
            "ttft p95",
            "tokens in/out",
        ]
        .iter()
        .map(|x| style.bold(x))
        .collect::<Vec<_>>()];
        for r in &s.series {
            let ok = r.requests.get("ok").copied().unwrap_or(0);
            let failed: u64 = r
                .requests
                .iter()
                .filter(|(k, _)| k.as_str() != "ok")
                .map(|(_, v)| v)
                .sum();
            rows.push(vec![
                format!("{}/{}", r.provider, r.credential),
                r.model.clone(),
                ok.to_string(),
                failed.to_string(),
                format!("{:.1}", r.latency_ms.p50),
                format!("{:.1}", r.latency_ms.p95),
                format!("{:.1}", r.ttft_ms.p95),
                format!("{}/{}", r.tokens_in, r.tokens_out),
            ]);
        }
        out.push_str(&table(&rows));
    }
    out
}
