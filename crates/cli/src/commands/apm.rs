//! `powertune apm`: the runbook's APM from OpenTelemetry traces.
//! `serve` receives OTLP, `report` judges the receiver's window, `endpoint` runs the
//! slow-endpoint procedure for one route, `analyze` does it all offline from a file.

use super::{block_on, emit, Context};
use anyhow::Context as _;
use powertune_apm::forward;
use powertune_apm::server::{self, ServeConfig};
use powertune_apm::summary::Baseline;
use powertune_apm::{client, judge, render, ApmConfig, Engine, EngineConfig};
use powertune_core::{ExitCode, Report, Targets};
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
    match path {
        None => Ok(EngineConfig::defaults(targets)),
        Some(p) => Ok(ApmConfig::load(p)?.validate(&p.display().to_string(), targets)?),
    }
}

fn window(s: &str) -> anyhow::Result<std::time::Duration> {
    powertune_core::duration::parse(s)
        .map_err(|e| anyhow::anyhow!("--window {s}: {e} (example: --window 15m)"))
}

fn load_baseline(p: Option<&Path>) -> anyhow::Result<Option<Baseline>> {
    let Some(p) = p else { return Ok(None) };
    let text = std::fs::read_to_string(p)
        .with_context(|| format!("cannot read baseline {}", p.display()))?;
    let b: Baseline = serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "baseline {}: {e} (example: {{\"providers\": {{\"openai/gpt-4o\": 850.0}}}})",
            p.display()
        )
    })?;
    Ok(Some(b))
}

fn save_baseline(p: Option<&Path>, s: &powertune_apm::Summary) -> anyhow::Result<()> {
    if let Some(p) = p {
        let b = Baseline::from_summary(s);
        std::fs::write(p, serde_json::to_string_pretty(&b)? + "\n")
            .with_context(|| format!("cannot write baseline {}", p.display()))?;
    }
    Ok(())
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
    let base = client::base_url(&a.url)?;
    let w = window(&a.window)?;
    let baseline = load_baseline(a.baseline.as_deref())?;
    let summary = block_on(client::fetch_summary(&base, Some(w)))??;
    save_baseline(a.save_baseline.as_deref(), &summary)?;
    let findings = judge::judge(&summary, &targets, baseline.as_ref());
    let details = render::routes_table(&summary, 20);
    let report = Report::new("apm report", findings, serde_json::to_value(&summary)?);
    emit(&report, &details, a.json.as_deref())
}

fn endpoint(ctx: &Context, a: EndpointArgs) -> anyhow::Result<ExitCode> {
    let targets = ctx.targets()?;
    let base = client::base_url(&a.url)?;
    let w = window(&a.window)?;
    let detail = block_on(client::fetch_endpoint(&base, &a.route, Some(w)))??;
    endpoint_report(&targets, detail, a.json.as_deref())
}

fn endpoint_report(
    targets: &Targets,
    detail: powertune_apm::EndpointDetail,
    json: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    // Judge the route alone: a summary holding just this route and its detections.
    let s = powertune_apm::Summary {
        schema: powertune_apm::summary::SUMMARY_SCHEMA.to_string(),
        window_s: None,
        ingest: Default::default(),
        types: vec![],
        routes: vec![detail.route.clone()],
        jobs: vec![],
        providers: vec![],
        detections: detail.detections.clone(),
        linked_jobs: detail.linked_jobs.clone(),
    };
    let findings = judge::judge(&s, targets, None);
    let text = render::endpoint(&detail);
    let report = Report::new("apm endpoint", findings, serde_json::to_value(&detail)?);
    emit(&report, &text, json)
}

fn analyze(ctx: &Context, a: AnalyzeArgs) -> anyhow::Result<ExitCode> {
    let targets = ctx.targets()?;
    let cfg = engine_config(&targets, a.config.as_deref())?;
    let baseline = load_baseline(a.baseline.as_deref())?;
    let mut engine = Engine::new(cfg);
    let summary = powertune_apm::offline::analyze_file(&a.file, &mut engine)?;
    save_baseline(a.save_baseline.as_deref(), &summary)?;
    if let Some(route) = &a.endpoint {
        let detail = engine.endpoint(route, 0, None).ok_or_else(|| {
            let known: Vec<&str> = summary
                .routes
                .iter()
                .map(|r| r.route.as_str())
                .take(5)
                .collect();
            anyhow::anyhow!(
                "--endpoint `{route}`: no such route in {} (routes there: {})",
                a.file.display(),
                known.join(", ")
            )
        })?;
        return endpoint_report(&targets, detail, a.json.as_deref());
    }
    let findings = judge::judge(&summary, &targets, baseline.as_ref());
    let details = render::routes_table(&summary, 20);
    let report = Report::new("apm analyze", findings, serde_json::to_value(&summary)?);
    emit(&report, &details, a.json.as_deref())
}
