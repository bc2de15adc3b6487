//! `powertune apm`: the runbook's APM from OpenTelemetry traces.
//! `serve` receives OTLP, `report` judges the receiver's window, `endpoint` runs the
//! slow-endpoint procedure for one route, `analyze` does it all offline from a file.

use super::{block_on, emit_inspection, Context};
use crate::args;
use crate::signal::Interrupt;
use powertune_apm::collect::receiver as client;
use powertune_apm::inspect;
use powertune_apm::server::{self, forward, ServeConfig};
use powertune_apm::{Engine, EngineConfig};
use powertune_core::{ExitCode, Targets};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    #[arg(long, value_name = "PROTOCOL", default_value = "http/protobuf",
          value_parser = protocol)]
    forward_protocol: forward::Protocol,
    /// Trust only the PEM certificates in FILE for an https:// --forward target (a
    /// private collector's CA); without it the system's roots are trusted.
    #[arg(long, value_name = "FILE", requires = "forward")]
    forward_ca: Option<PathBuf>,
    /// Batches waiting to be forwarded, at most; beyond it batches are analysed but not
    /// forwarded (counted in ingest.forward_dropped).
    #[arg(long, value_name = "BATCHES", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..))]
    forward_queue: u32,
    /// APM settings file (window bounds, endpoint-type rules, span names, detectors).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Batches queued for analysis before the receiver answers 503 + Retry-After.
    #[arg(long, value_name = "BATCHES", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..))]
    queue: u32,
}

/// The receiver `apm report` and `apm endpoint` ask, and how far back they look.
#[derive(clap::Args, Debug)]
struct Receiver {
    /// Receiver URL of a running `powertune apm serve`, e.g. http://127.0.0.1:4318 (a
    /// password in it is never printed).
    #[arg(long, default_value = "http://127.0.0.1:4318", value_name = "URL")]
    url: String,
    /// How far back to look, e.g. 15m; the receiver keeps what its config retains.
    #[arg(long, default_value = "15m", value_name = "DURATION", value_parser = window)]
    window: Duration,
}

#[derive(clap::Args, Debug)]
struct ReportArgs {
    #[command(flatten)]
    receiver: Receiver,
    // The baseline holds the providers' P95s.
    #[command(flatten)]
    baseline: args::Baseline,
    #[command(flatten)]
    output: args::Output,
}

#[derive(clap::Args, Debug)]
struct EndpointArgs {
    /// The route as the receiver names it: "METHOD /template".
    route: String,
    #[command(flatten)]
    receiver: Receiver,
    #[command(flatten)]
    output: args::Output,
}

#[derive(clap::Args, Debug)]
struct AnalyzeArgs {
    /// OTLP/JSON file (collector file exporter output or one ExportTraceServiceRequest).
    file: PathBuf,
    /// APM settings file (window bounds, endpoint-type rules, span names, detectors).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the slow-endpoint view of this route instead of the route table.
    #[arg(long, value_name = "ROUTE")]
    endpoint: Option<String>,
    #[command(flatten)]
    baseline: args::Baseline,
    #[command(flatten)]
    output: args::Output,
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

/// `--window`: a duration above zero, with the receiver's usual window as the example.
fn window(s: &str) -> Result<Duration, String> {
    match args::duration(s) {
        Err(_) => Err("not a duration with a unit, e.g. 15m, 1h or 90s".into()),
        Ok(d) if d.is_zero() => Err("must be above zero, e.g. 15m".into()),
        Ok(d) => Ok(d),
    }
}

/// `--forward-protocol`: http/protobuf or grpc.
fn protocol(s: &str) -> Result<forward::Protocol, String> {
    s.parse().map_err(|_: forward::ForwardError| {
        "not a protocol; use http/protobuf or grpc (as in OTEL_EXPORTER_OTLP_PROTOCOL)".into()
    })
}

fn serve(ctx: &Context, a: ServeArgs) -> anyhow::Result<ExitCode> {
    let targets = ctx.targets()?;
    let (cfg, limits) = EngineConfig::load_with_server(a.config.as_deref(), &targets)?;
    let mut sc = ServeConfig::new(a.listen);
    sc.limits = limits;
    sc.grpc = a.grpc;
    sc.queue_batches = a.queue as usize;
    sc.forward_queue = a.forward_queue as usize;
    if let Some(f) = &a.forward {
        let mut target = forward::Target::parse(f, a.forward_protocol)?;
        if let Some(ca) = &a.forward_ca {
            target = target.with_ca(ca)?;
        }
        sc.forward = Some(target);
    }
    let forward_to = sc.forward.as_ref().map(forward::Target::shown);
    block_on(async move {
        let interrupt = Interrupt::listen("the APM receiver");
        let shutdown = server::Shutdown {
            graceful: interrupt.graceful().clone(),
            hard: interrupt.hard().clone(),
        };
        let running = server::start_with(sc, Engine::new(cfg), shutdown).await?;
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
        // Ends after the first signal, once requests in flight have finished (or
        // at the second signal).
        running.wait().await;
        Ok::<_, anyhow::Error>(ExitCode::Passed)
    })?
}

fn report(ctx: &Context, a: ReportArgs) -> anyhow::Result<ExitCode> {
    let targets = ctx.targets()?;
    let options = inspect::ReportOptions {
        url: client::base_url(&a.receiver.url)?,
        window: a.receiver.window,
        baseline: a.baseline.baseline,
        save_baseline: a.baseline.save_baseline,
    };
    let i = block_on(inspect::report(&options, &targets))??;
    emit_inspection(&i, &a.output)
}

fn endpoint(ctx: &Context, a: EndpointArgs) -> anyhow::Result<ExitCode> {
    let targets = ctx.targets()?;
    let options = inspect::EndpointOptions {
        url: client::base_url(&a.receiver.url)?,
        window: a.receiver.window,
        route: a.route,
    };
    let i = block_on(inspect::endpoint(&options, &targets))??;
    emit_inspection(&i, &a.output)
}

fn analyze(ctx: &Context, a: AnalyzeArgs) -> anyhow::Result<ExitCode> {
    let targets = ctx.targets()?;
    let options = inspect::AnalyzeOptions {
        engine: engine_config(&targets, a.config.as_deref())?,
        file: a.file,
        baseline: a.baseline.baseline,
        save_baseline: a.baseline.save_baseline,
    };
    let files = &a.output;
    match &a.endpoint {
        Some(route) => emit_inspection(
            &inspect::analyze_endpoint(&options, route, &targets)?,
            files,
        ),
        None => emit_inspection(&inspect::analyze(&options, &targets)?, files),
    }
}
