//! `powertune apm`: the runbook's APM from OpenTelemetry traces.
//! `serve` receives OTLP, `report` judges the receiver's window, `endpoint` runs the
//! slow-endpoint procedure for one route, `analyze` does it all offline from a file.

use super::{block_on, emit, Context};
use powertune_apm::collect::receiver as client;
use powertune_apm::inspect;
use powertune_apm::server::{self, forward, ServeConfig};
use powertune_apm::{Engine, EngineConfig};
use powertune_core::{ExitCode, Targets};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand, Debug)]
enum Sub {
    /// Receive OTLP traces (HTTP /v1/traces, optional gRPC) and keep a rolling window.
    Serve(ServeArgs),
    /// Judge the receiver's window against the runbook's targets (exit 99 on FAIL).
    Report(ReportArgs),
    /// The slow-endpoint procedure for one route: breakdown, detections, slowest traces.
    Endpoint(EndpointArgs),
    /// Analyse an OTLP/JSON export file (one request, or one per line; .gz accepted).
    Analyze(AnalyzeArgs),
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// OTLP/HTTP listen address.
    #[arg(long, default_value = "127.0.0.1:4318")]
    listen: SocketAddr,
    /// Also receive OTLP/gRPC on this address (e.g. 127.0.0.1:4317).
    #[arg(long)]
    grpc: Option<SocketAddr>,
    /// Forward everything received (HTTP and gRPC) to another OTLP receiver:
    /// http://collector:4318 (http/protobuf) or collector:4317 with --forward-protocol grpc.
    #[arg(long, value_name = "URL")]
    forward: Option<String>,
    /// Protocol towards --forward, as in OTEL_EXPORTER_OTLP_PROTOCOL: http/protobuf or grpc.
    #[arg(long, value_name = "PROTOCOL", default_value = "http/protobuf")]
    forward_protocol: String,
    /// Batches waiting to be forwarded, at most; beyond it batches are analysed but not
    /// forwarded (counted in ingest.forward_dropped).
    #[arg(long, value_name = "BATCHES", default_value_t = 1024)]
    forward_queue: usize,
    /// APM settings file (window bounds, endpoint-type rules, span names, detectors).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Batches queued for analysis before the receiver answers 503 + Retry-After.
    #[arg(long, default_value_t = 256)]
    queue: usize,
}

#[derive(clap::Args, Debug)]
struct ReportArgs {
    /// Base URL of a running `powertune apm serve`.
    #[arg(long, default_value = "http://127.0.0.1:4318")]
    url: String,
    /// How far back to look ("15m"); the receiver keeps what its config retains.
    #[arg(long, default_value = "15m")]
    window: String,
    /// Saved provider P95s to compare with (written by --save-baseline).
    #[arg(long, value_name = "FILE")]
    baseline: Option<PathBuf>,
    /// Write the providers' current P95s as a baseline file.
    #[arg(long, value_name = "FILE")]
    save_baseline: Option<PathBuf>,
    /// Also write the report as JSON (`-` for standard output).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct EndpointArgs {
    /// The route as the receiver names it: "METHOD /template".
    route: String,
    #[arg(long, default_value = "http://127.0.0.1:4318")]
    url: String,
    #[arg(long, default_value = "15m")]
    window: String,
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct AnalyzeArgs {
    /// OTLP/JSON file (collector file exporter output or one ExportTraceServiceRequest).
    file: PathBuf,
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the slow-endpoint view of this route instead of the route table.
    #[arg(long, value_name = "ROUTE")]
    endpoint: Option<String>,
    #[arg(long, value_name = "FILE")]
    baseline: Option<PathBuf>,
    #[arg(long, value_name = "FILE")]
    save_baseline: Option<PathBuf>,
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Sub::Serve(a) => serve(ctx, a),
        Sub::Report(a) => report(ctx, a),
        Sub::Endpoint(a) => endpoint(ctx, a),
        Sub::Analyze(a) => analyze(ctx, a),
    }
}

fn engine_config(targets: &Targets, path: Option<&Path>) -> anyhow::Result<EngineConfig> {
    Ok(EngineConfig::load(path, targets)?)
}

fn window(s: &str) -> anyhow::Result<std::time::Duration> {
    powertune_core::duration::parse(s)
        .map_err(|e| anyhow::anyhow!("--window {s}: {e} (example: --window 15m)"))
}

fn serve(ctx: &Context, a: ServeArgs) -> anyhow::Result<ExitCode> {
    let targets = ctx.targets()?;
    let cfg = engine_config(&targets, a.config.as_deref())?;
    let mut sc = ServeConfig::new(a.listen);
    sc.grpc = a.grpc;
    sc.queue_batches = a.queue.max(1);
    sc.forward_queue = a.forward_queue.max(1);
    let protocol: forward::Protocol = a.forward_protocol.parse()?;
    if let Some(f) = &a.forward {
        sc.forward = Some(forward::Target::parse(f, protocol)?);
    }
    let forward_to = sc.forward.as_ref().map(forward::Target::shown);
    block_on(async move {
        let running = server::start(sc, Engine::new(cfg)).await?;
        eprintln!(
            "powertune apm: OTLP/HTTP on http://{}/v1/traces{}; summary at http://{}/api/summary{}",
            running.http_addr,
            running
                .grpc_addr
                .map(|g| format!(", OTLP/gRPC on {g}"))
                .unwrap_or_default(),
            running.http_addr,
            forward_to
                .map(|t| format!("; forwarding to {t}"))
                .unwrap_or_default()
        );
        tokio::select! {
            _ = running.wait() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        Ok::<_, anyhow::Error>(ExitCode::Passed)
    })?
}

fn report(ctx: &Context, a: ReportArgs) -> anyhow::Result<ExitCode> {
    let targets = ctx.targets()?;
    let options = inspect::ReportOptions {
        url: client::base_url(&a.url)?,
        window: window(&a.window)?,
        baseline: a.baseline,
        save_baseline: a.save_baseline,
    };
    let i = block_on(inspect::report(&options, &targets))??;
    emit(&i.report()?, &i.text, a.json.as_deref())
}

fn endpoint(ctx: &Context, a: EndpointArgs) -> anyhow::Result<ExitCode> {
    let targets = ctx.targets()?;
    let options = inspect::EndpointOptions {
        url: client::base_url(&a.url)?,
        window: window(&a.window)?,
        route: a.route,
    };
    let i = block_on(inspect::endpoint(&options, &targets))??;
    emit(&i.report()?, &i.text, a.json.as_deref())
}

fn analyze(ctx: &Context, a: AnalyzeArgs) -> anyhow::Result<ExitCode> {
    let targets = ctx.targets()?;
    let options = inspect::AnalyzeOptions {
        engine: engine_config(&targets, a.config.as_deref())?,
        file: a.file,
        baseline: a.baseline,
        save_baseline: a.save_baseline,
    };
    let (report, text) = match &a.endpoint {
        Some(route) => {
            let i = inspect::analyze_endpoint(&options, route, &targets)?;
            (i.report()?, i.text)
        }
        None => {
            let i = inspect::analyze(&options, &targets)?;
            (i.report()?, i.text)
        }
    };
    emit(&report, &text, a.json.as_deref())
}
