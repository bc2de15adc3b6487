//! `powertune doctor`: every configured system inspected at once, then the runbook's
//! Troubleshooting table row by row. The systems come from `[systems]` of
//! `powertune.toml`, overridden by `POWERTUNE_<KEY>` environment variables and then by
//! the flags.

use super::{block_on, emit_inspection, Context};
use crate::args::{self, positive_duration_at_most};
use anyhow::anyhow;
use powertune_core::targets::systems::KEYS;
use powertune_core::targets::Systems;
use powertune_core::ExitCode;
use powertune_doctor::options::{MAX_TIMEOUT, MIN_TIMEOUT};
use powertune_doctor::DoctorOptions;
use std::path::PathBuf;
use std::time::Duration;

/// The address of every system, overriding `[systems]` of powertune.toml. Each flag
/// also reads POWERTUNE_<NAME> (POWERTUNE_DB, POWERTUNE_GATEWAY_BASELINE, ...); the
/// flag wins over the variable, the variable over the file.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct SystemsArgs {
    /// The application's base URL.
    #[arg(long, value_name = "URL")]
    base_url: Option<String>,
    /// PostgreSQL URL (postgres://user:pw@host/db) or libpq "host=... dbname=...".
    #[arg(long, value_name = "URL")]
    db: Option<String>,
    /// The cache Redis (redis://host:6379/0).
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// Sidekiq's Redis (redis://host:6379/1).
    #[arg(long, value_name = "URL")]
    queues: Option<String>,
    /// The LLM gateway's base URL (http://gw:4000).
    #[arg(long, value_name = "URL")]
    gateway: Option<String>,
    /// A gateway baseline (gateway status --save-baseline FILE): provider P95 doubled.
    #[arg(long, value_name = "FILE")]
    gateway_baseline: Option<PathBuf>,
    /// A running `powertune apm serve` (http://apm:4318).
    #[arg(long, value_name = "URL")]
    apm: Option<String>,
    /// The backend's Prometheus endpoint (process_resident_memory_bytes).
    #[arg(long, value_name = "URL")]
    metrics: Option<String>,
    /// The backend's process id (its resident memory over the run).
    #[arg(long, value_name = "PID")]
    pid: Option<u32>,
    /// The backend's cgroup v2 directory (memory.current, OOM kills).
    #[arg(long, value_name = "DIR")]
    cgroup: Option<PathBuf>,
    /// The frontend's Vite build directory.
    #[arg(long, value_name = "DIR")]
    frontend_dist: Option<PathBuf>,
    /// A frontend bundle baseline (frontend bundle --save-baseline FILE).
    #[arg(long, value_name = "FILE")]
    frontend_baseline: Option<PathBuf>,
}

impl SystemsArgs {
    fn given(&self, key: &str) -> Option<String> {
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        match key {
            "base_url" => self.base_url.clone(),
            "db" => self.db.clone(),
            "redis" => self.redis.clone(),
            "queues" => self.queues.clone(),
            "gateway" => self.gateway.clone(),
            "gateway_baseline" => path(&self.gateway_baseline),
            "apm" => self.apm.clone(),
            "metrics" => self.metrics.clone(),
            "pid" => self.pid.map(|p| p.to_string()),
            "cgroup" => path(&self.cgroup),
            "frontend_dist" => path(&self.frontend_dist),
            "frontend_baseline" => path(&self.frontend_baseline),
            _ => None,
        }
    }

    /// `[systems]` of the targets file with the environment and the flags applied.
    pub fn resolve(&self, file: &Systems) -> anyhow::Result<Systems> {
        let mut s = file.clone();
        for k in KEYS {
            let flag = format!("--{}", k.name.replace('_', "-"));
            let var = format!("POWERTUNE_{}", k.name.to_uppercase());
            let (value, source) = match self.given(k.name) {
                Some(v) => (v, flag.clone()),
                None => match std::env::var(&var) {
                    Ok(v) if !v.is_empty() => (v, var.clone()),
                    _ => continue,
                },
            };
            s.set(k.name, &value, &source)
                .map_err(|why| anyhow!("{source}: {}", s.redact(&why)))?;
        }
        Ok(s)
    }
}

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    systems: SystemsArgs,
    /// The bound on the whole run: a system still being inspected then is "not measured".
    #[arg(long, default_value = "60s", value_name = "DURATION",
          value_parser = positive_duration_at_most(MAX_TIMEOUT))]
    timeout: Duration,
    /// How long the trends (retry set, memory, Redis hit rate) are observed; shorter
    /// than --timeout.
    #[arg(long, default_value = "10s", value_name = "DURATION",
          value_parser = positive_duration_at_most(MAX_TIMEOUT))]
    window: Duration,
    /// The history `apm report` summarises.
    #[arg(long, default_value = "15m", value_name = "DURATION",
          value_parser = positive_duration_at_most(Duration::from_secs(7 * 86_400)))]
    apm_window: Duration,
    #[command(flatten)]
    output: args::Output,
}

/// The options doctor runs with (also used by `monitor`).
pub fn options(
    ctx: &Context,
    systems: &SystemsArgs,
    timeout: Duration,
    window: Duration,
) -> anyhow::Result<(DoctorOptions, powertune_core::Targets)> {
    let targets = ctx.targets()?;
    let resolved = systems.resolve(&targets.systems)?;
    let mut o = DoctorOptions::new(resolved);
    o.timeout = timeout;
    o.window = window;
    if o.timeout < MIN_TIMEOUT {
        return Err(anyhow!(
            "--timeout {} must be at least {} (e.g. --timeout 60s)",
            powertune_core::duration::format(o.timeout),
            powertune_core::duration::format(MIN_TIMEOUT)
        ));
    }
    o.validate().map_err(|e| anyhow!(e))?;
    Ok((o, targets))
}

pub fn run(ctx: &Context, a: Args) -> anyhow::Result<ExitCode> {
    let (mut o, targets) = options(ctx, &a.systems, a.timeout, a.window)?;
    o.apm_window = a.apm_window;
    let inspection = block_on(powertune_doctor::inspect(&o, &targets))??;
    emit_inspection(&inspection, &a.output)
}
