//! `powertune monitor`: doctor on an interval, `/metrics` for Prometheus, a webhook
//! message per verdict change. Runs until Ctrl-C or SIGTERM (or `--runs N`).

use super::doctor::{options, SystemsArgs};
use super::{block_on, Context};
use crate::args::positive_duration_at_most;
use anyhow::{anyhow, Context as _};
use powertune_core::ExitCode;
use powertune_doctor::monitor::{self, MonitorOptions, MAX_INTERVAL};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    systems: SystemsArgs,
    /// Time between the starts of two runs (runs never overlap).
    #[arg(long, default_value = "1m", value_name = "DURATION",
          value_parser = positive_duration_at_most(MAX_INTERVAL))]
    interval: Duration,
    /// The bound on each run; at most --interval.
    #[arg(long, default_value = "45s", value_name = "DURATION",
          value_parser = positive_duration_at_most(MAX_INTERVAL))]
    timeout: Duration,
    /// How long each run observes the trends (retry set, memory, Redis hit rate).
    #[arg(long, default_value = "10s", value_name = "DURATION",
          value_parser = positive_duration_at_most(MAX_INTERVAL))]
    window: Duration,
    /// Where /metrics is served.
    #[arg(long, default_value = "127.0.0.1:9187", value_name = "ADDR")]
    listen: SocketAddr,
    /// POST a JSON message (Slack-compatible `text`) here when a check changes verdict.
    #[arg(
        long,
        value_name = "URL",
        env = "POWERTUNE_WEBHOOK",
        hide_env_values = true
    )]
    webhook: Option<String>,
    /// Stop after this many runs (default: until Ctrl-C or SIGTERM).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    runs: Option<u64>,
}

pub fn run(ctx: &Context, a: Args) -> anyhow::Result<ExitCode> {
    let (doctor, targets) = options(ctx, &a.systems, a.timeout, a.window)?;
    let o = MonitorOptions {
        doctor,
        interval: a.interval,
        webhook: a.webhook.clone(),
        runs: a.runs,
    };
    o.validate().map_err(|e| anyhow!(e))?;
    let secrets = o.doctor.systems.clone();
    block_on(async move {
        let interrupt = crate::signal::Interrupt::listen("the monitor");
        let listener = tokio::net::TcpListener::bind(a.listen)
            .await
            .with_context(|| format!("cannot listen on {}", a.listen))?;
        let addr = listener.local_addr()?;
        let state: monitor::Shared = Arc::new(Mutex::new(monitor::State::default()));
        let graceful = interrupt.graceful().clone();
        let server = tokio::spawn(monitor::serve(
            listener,
            state.clone(),
            graceful.clone(),
            interrupt.hard().clone(),
        ));
        println!(
            "powertune monitor: every {}, metrics on http://{addr}/metrics{}",
            powertune_core::duration::format(o.interval),
            o.webhook
                .as_ref()
                .map(|w| format!(", verdict changes to {}", powertune_core::redact::url(w)))
                .unwrap_or_default()
        );
        let on_run = |i: &powertune_core::Inspection<powertune_doctor::DoctorMetrics>,
                      changes: &[monitor::Change]| {
            let observed = i
                .metrics
                .rows
                .iter()
                .filter(|r| r.symptom.status == powertune_doctor::Status::Confirmed)
                .count();
            println!(
                "{} run: {} symptoms observed, {} verdict changes",
                chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                observed,
                changes.len()
            );
            for c in changes {
                println!("  {}", secrets.redact(&c.text));
            }
        };
        let result = monitor::run(&o, &targets, state, interrupt.graceful().clone(), &on_run).await;
        graceful.cancel();
        let _ = server.await;
        result.map_err(|e| anyhow!(secrets.redact(&e)))
    })??;
    Ok(ExitCode::Passed)
}
