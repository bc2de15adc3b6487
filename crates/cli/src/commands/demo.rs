//! `powertune demo`: the README's main job. Starts the provider simulator, a gateway
//! in front of it and the embedded target (whose streamed agent runs call their LLM
//! through that gateway), all on free loopback ports; runs the runbook's load
//! scenarios (`examples/runbook.toml`, embedded in the binary) scaled in time, every
//! request carrying a sampled `traceparent`; and judges the run against the targets,
//! the gateway's breakers and retries included. An in-process `apm serve` on a free
//! loopback port receives the target's own spans; its report (endpoint types,
//! routes, the slowest traces, detections, LLM calls) joins the run's.

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

    // Every request carries a sampled traceparent: the target's spans continue it,
    // so the slowest requests' trace ids name traces the APM holds.
    plan.options.trace = true;
    let mut opts = RunOptions::new(plan, String::new());
    opts.env = super::load::plan_env(&opts.plan, Default::default());
    let progress = (!args.quiet).then(|| crate::progress::LoadProgress::new(scaled));
    opts.progress = progress.as_ref().map(|p| p.callback());
    let to_stdout = args.output.json.as_deref() == Some(std::path::Path::new("-"));

    let (result, stats, llm, apm) = super::block_on(async move {
        let apm = Apm::start(&targets).await?;
        let llm = LlmPath::start(factor, Some(&apm.url)).await?;
        let mut config = powertune_target::TargetConfig {
            pool_size: args.pool_size as usize,
            llm: llm.target_config(),
            ..Default::default()
        };
        config.telemetry.otlp_endpoint = Some(apm.url.clone());
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
            eprintln!("{}", llm.describe());
            eprintln!(
                "  APM: target and gateway spans → apm serve {} (OTLP/HTTP)",
                apm.url
            );
        }
        // SIGINT/SIGTERM: the first stops the run gracefully, a second at once; the
        // summary and --json are still written, marked interrupted.
        let interrupt = crate::signal::Interrupt::listen("the run");
        opts.stop = Some(interrupt.graceful().clone());
        opts.halt = Some(interrupt.hard().clone());
        let result = powertune_load::inspect(&opts, &targets).await;
        let stats = target.stats();
        // The target sends its last spans as it shuts down.
        target.shutdown().await;
        let llm = llm.finish(&targets).await;
        let apm = apm.finish(scaled, &targets).await;
        anyhow::Ok((result, stats, llm, apm))
    })??;
    if let Some(p) = &progress {
        p.finish();
    }
    let mut inspection = result?;
    // the gateway's breaker and retry verdicts join the load run's
    let (gateway_findings, llm_text) = llm?;
    inspection.findings.extend(gateway_findings);
    if !to_stdout {
        inspection.text.push_str(&format!(
            "\nembedded target: {} requests served, database pool of {} slots\n{llm_text}",
            stats.total, args.pool_size
        ));
    }
    // The APM's verdicts join the run's; its summary is the report's `metrics.apm`.
    let apm = match apm {
        Ok(a) => {
            // The APM judges the endpoint types the load run judges, from the server's
            // side: its rows are told apart by their subject.
            let load_rows: std::collections::HashSet<(String, String)> = inspection
                .findings
                .iter()
                .map(|f| (f.check.clone(), f.subject.clone()))
                .collect();
            for f in &a.findings {
                let mut f = f.clone();
                if load_rows.contains(&(f.check.clone(), f.subject.clone())) {
                    f.subject.push_str(" (APM)");
                }
                inspection.findings.push(f);
            }
            if !to_stdout {
                inspection.text.push_str(&apm_text(&a));
            }
            Some(a.metrics)
        }
        Err(e) => {
            if !to_stdout {
                eprintln!("powertune demo: no APM section: {e:#}");
            }
            None
        }
    };
    let mut report = super::load::run_report(&inspection)?;
    report.command = "demo".into();
    if let (Some(a), Some(m)) = (apm, report.metrics.as_object_mut()) {
        m.insert("apm".into(), serde_json::to_value(a)?);
    }
    // The picture of the run: powertune-demo.html unless --html names another file.
    let files = crate::outputs::Files::from(&args.output);
    let default_html = PathBuf::from(DEFAULT_HTML);
    let files = crate::outputs::Files {
        html: files.html.or(Some(default_html.as_path())),
        ..files
    };
    super::emit(&report, &inspection.text, files)
}

/// Slowest traces the terminal lists, at most.
const SLOWEST_SHOWN: usize = 5;

/// The APM's terminal section: its routes table and the slowest traces by id.
fn apm_text(a: &powertune_core::Inspection<powertune_apm::Summary>) -> String {
    let mut out = format!(
        "\nAPM: the embedded target's and its gateway's spans\n{}",
        a.text
    );
    let slowest = slowest_traces(&a.metrics, SLOWEST_SHOWN);
    if !slowest.is_empty() {
        out.push_str("\nslowest requests (server side):\n");
        let mut rows = vec![vec!["route".to_string(), "duration".into(), "trace".into()]];
        rows.extend(slowest.into_iter().map(|(route, t)| {
            vec![
                route.to_string(),
                powertune_core::units::ms(t.duration_ms),
                t.trace_id.clone(),
            ]
        }));
        out.push_str(&powertune_core::report::table(&rows));
    }
    out
}

/// The `n` slowest traces of every route, slowest first, with their route.
fn slowest_traces(
    s: &powertune_apm::Summary,
    n: usize,
) -> Vec<(&str, &powertune_apm::snapshot::TraceRef)> {
    let mut all: Vec<_> = s
        .routes
        .iter()
        .flat_map(|r| r.slowest.iter().map(move |t| (r.route.as_str(), t)))
        .collect();
    all.sort_by(|a, b| b.1.duration_ms.total_cmp(&a.1.duration_ms));
    all.truncate(n);
    all
}

/// The demo's APM: an in-process `apm serve` (default engine settings and limits) on
/// a free loopback port, OTLP/HTTP only.
struct Apm {
    url: String,
    shutdown: powertune_apm::server::Shutdown,
    running: powertune_apm::server::Running,
}

impl Apm {
    async fn start(targets: &powertune_core::Targets) -> anyhow::Result<Apm> {
        let shutdown = powertune_apm::server::Shutdown::default();
        let config = powertune_apm::server::ServeConfig::new(([127, 0, 0, 1], 0).into());
        let engine = powertune_apm::Engine::new(powertune_apm::EngineConfig::defaults(targets));
        let running = powertune_apm::server::start_with(config, engine, shutdown.clone())
            .await
            .context("cannot start the demo's APM receiver")?;
        Ok(Apm {
            url: format!("http://{}", running.http_addr),
            shutdown,
            running,
        })
    }

    /// The receiver's report over the run (the `apm report` inspection), then stops it.
    async fn finish(
        self,
        run: Duration,
        targets: &powertune_core::Targets,
    ) -> anyhow::Result<powertune_core::Inspection<powertune_apm::Summary>> {
        let options = powertune_apm::inspect::ReportOptions {
            url: powertune_apm::collect::receiver::base_url(&self.url)
                .map_err(|e| anyhow::anyhow!("{e}"))?,
            window: run + APM_WINDOW_MARGIN,
            baseline: None,
            save_baseline: None,
        };
        let report = powertune_apm::inspect::report(&options, targets).await;
        self.shutdown.graceful.cancel();
        let _ = tokio::time::timeout(APM_DRAIN, self.running.wait()).await;
        Ok(report?)
    }
}

/// Longest wait for the receiver to close.
const APM_DRAIN: Duration = Duration::from_secs(5);

/// The APM report's window: the run and the time around it (start-up, last spans).
const APM_WINDOW_MARGIN: Duration = Duration::from_secs(60);

/// The demo's LLM path: the provider simulator (its realistic default latencies,
/// scaled like the run) behind a gateway, both in-process on loopback ports; the
/// target's streamed agent runs call the gateway.
pub(super) struct LlmPath {
    sim: powertune_provider_sim::SimHandle,
    gateway: std::sync::Arc<powertune_gateway::Gateway>,
    gateway_url: String,
    gateway_stop: powertune_gateway::server::Shutdown,
    gateway_task: tokio::task::JoinHandle<()>,
}

/// The gateway model alias the target asks for.
const LLM_ALIAS: &str = "agent";

impl LlmPath {
    /// `otlp`: the gateway exports its call and attempt spans there (`[telemetry]`).
    pub(super) async fn start(time_scale: f64, otlp: Option<&str>) -> anyhow::Result<LlmPath> {
        let sim_config = powertune_provider_sim::SimConfig {
            time_scale,
            ..Default::default()
        };
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("cannot open a loopback port for the provider simulator")?;
        let sim = powertune_provider_sim::ProviderSim::start(sim_config, listener)
            .await
            .context("cannot start the provider simulator")?;
        let mut toml = format!(
            "[[providers]]\nname = \"sim\"\nkind = \"openai\"\nbase_url = \"{}/v1\"\n[models.{LLM_ALIAS}]\ntargets = [\"sim:gpt-4o-mini\"]\n",
            sim.url()
        );
        if let Some(url) = otlp {
            toml.push_str(&format!("[telemetry]\notlp_endpoint = \"{url}\"\n"));
        }
        let cfg = powertune_gateway::Config::from_toml(&toml, "demo gateway", &|_| None)
            .map_err(|e| anyhow::anyhow!("the demo's gateway config: {e}"))?
            .config;
        let gateway = powertune_gateway::Gateway::new(
            cfg,
            std::sync::Arc::new(powertune_gateway::TokioClock),
        )?;
        let listener = powertune_gateway::Gateway::bind(([127, 0, 0, 1], 0).into()).await?;
        let gateway_url = format!("http://{}", listener.local_addr()?);
        let gateway_stop = powertune_gateway::server::Shutdown::default();
        let (g, stop) = (gateway.clone(), gateway_stop.clone());
        let gateway_task = tokio::spawn(async move {
            let _ = g.serve(listener, stop).await;
        });
        Ok(LlmPath {
            sim,
            gateway,
            gateway_url,
            gateway_stop,
            gateway_task,
        })
    }

    /// The target's `[llm]`: the gateway's OpenAI front and the alias.
    pub(super) fn target_config(&self) -> powertune_target::llm::LlmConfig {
        powertune_target::llm::LlmConfig {
            base_url: Some(format!("{}/v1", self.gateway_url)),
            model: LLM_ALIAS.into(),
            ..Default::default()
        }
    }

    pub(super) fn describe(&self) -> String {
        format!(
            "  LLM path: target → gateway {} → provider simulator {} (TTFT 400ms..1.2s, ITL 20ms..45ms, 100..400 tokens, scaled)",
            self.gateway_url,
            self.sim.url()
        )
    }

    /// Stops the gateway, then the simulator.
    pub(super) async fn stop(self) {
        self.gateway_stop.graceful.cancel();
        let _ = self.gateway_task.await;
        self.sim.shutdown().await;
    }

    /// Judges the gateway (breakers, retries) through its inspection entry point,
    /// then stops both; returns the findings and a line on what they served.
    async fn finish(
        self,
        targets: &powertune_core::Targets,
    ) -> anyhow::Result<(Vec<powertune_core::Finding>, String)> {
        let status = powertune_gateway::StatusOptions::new(self.gateway_url.clone());
        let inspected = powertune_gateway::inspect(&status, targets).await;
        let served = self.sim.stats().totals;
        let g = self.gateway.status();
        self.gateway_stop.graceful.cancel();
        let _ = self.gateway_task.await;
        // its last spans reach the APM before the APM is read
        let gateway = self.gateway.clone();
        let _ = tokio::task::spawn_blocking(move || gateway.shutdown_telemetry()).await;
        self.sim.shutdown().await;
        let inspection = inspected.context("cannot inspect the demo's gateway")?;
        let findings = inspection
            .findings
            .into_iter()
            .filter(|f| f.check == "breakers_open" || f.check == "retry_depth")
            .collect();
        let line = format!(
            "provider simulator: {} LLM calls ({} streamed), {} output tokens; gateway: {} calls, retries by depth {:?}\n",
            served.calls, served.streamed, served.output_tokens, g.calls, g.retries_by_depth
        );
        Ok((findings, line))
    }
}
