//! Runs every configured inspection at once, each through its engine's `inspect`
//! entry, all within one deadline. A system left out is not configured; one that
//! failed or was still running at the deadline is not measured, with the reason.

use crate::memory::{self, MemorySeries, MemorySources};
use crate::model::{SystemState, SystemStatus};
use crate::options::{DoctorOptions, SAMPLES};
use powertune_apm::inspect::ReportOptions;
use powertune_apm::snapshot::Summary;
use powertune_core::targets::Systems;
use powertune_core::{Finding, Inspection, Targets};
use powertune_db::render::DbMetrics;
use powertune_db::{DbOptions, RawDbConfig};
use powertune_frontend::baseline::BundleBaseline;
use powertune_frontend::bundle::BundleOptions;
use powertune_frontend::snapshot::BundleMetrics;
use powertune_gateway::{StatusMetrics, StatusOptions};
use powertune_redis::sidekiq::{
    Options as QueueRead, QueuesMetrics, QueuesOptions, Reconnect, WatchOptions,
};
use powertune_redis::{ConnOptions, RedisMetrics, RedisOptions, RedisUrl};
use std::future::Future;
use std::time::{Duration, Instant};

/// How long a Redis connection or reply may take.
const REDIS_TIMEOUT: Duration = Duration::from_secs(5);

/// What one inspection gave.
#[derive(Debug, Clone)]
pub enum Outcome<M> {
    NotConfigured,
    NotMeasured(String),
    Measured { findings: Vec<Finding>, metrics: M },
}

impl<M> Outcome<M> {
    pub fn metrics(&self) -> Option<&M> {
        match self {
            Outcome::Measured { metrics, .. } => Some(metrics),
            _ => None,
        }
    }

    pub fn findings(&self) -> &[Finding] {
        match self {
            Outcome::Measured { findings, .. } => findings,
            _ => &[],
        }
    }

    /// Why there is nothing to judge (`not configured`, the failure), or None.
    pub fn missing(&self, key: &str) -> Option<String> {
        match self {
            Outcome::NotConfigured => Some(format!("{key}: not configured — not checked")),
            Outcome::NotMeasured(why) => Some(format!("{key}: not measured — {why}")),
            Outcome::Measured { .. } => None,
        }
    }

    fn from_inspection(i: Inspection<M>) -> Outcome<M> {
        Outcome::Measured {
            findings: i.findings,
            metrics: i.metrics,
        }
    }
}

/// Cache Redis read at the start and at the end of the window: hit rate and evictions
/// over the run come from the difference.
#[derive(Debug, Clone)]
pub struct RedisPair {
    pub start: RedisMetrics,
    pub end: RedisMetrics,
    pub window_s: f64,
}

/// Everything doctor gathered.
#[derive(Debug, Clone)]
pub struct Collected {
    pub db: Outcome<DbMetrics>,
    pub redis: Outcome<RedisPair>,
    pub queues: Outcome<QueuesMetrics>,
    pub gateway: Outcome<StatusMetrics>,
    /// Whether a gateway baseline was given (provider P95 is judged against it).
    pub gateway_baseline: bool,
    pub apm: Outcome<Summary>,
    pub frontend: Outcome<BundleMetrics>,
    pub memory: Outcome<Vec<MemorySeries>>,
    pub systems: Vec<SystemStatus>,
    pub window_s: f64,
}

/// Runs every configured inspection concurrently and waits for all of them, at most
/// until `options.timeout`.
pub async fn collect(options: &DoctorOptions, targets: &Targets) -> Collected {
    let s = &options.systems;
    let deadline = tokio::time::Instant::now() + options.timeout;
    let bound = |name: &'static str| (name, deadline, options.timeout, s);
    let (db, redis, queues, gateway, apm, frontend, memory) = tokio::join!(
        run(bound("db"), s.get("db"), |url| inspect_db(url, targets)),
        run(bound("redis"), s.get("redis"), |url| inspect_redis(
            url,
            targets,
            options.window
        )),
        run(bound("queues"), s.get("queues"), |url| inspect_queues(
            url, targets, options
        )),
        run(bound("gateway"), s.get("gateway"), |url| inspect_gateway(
            url,
            s.path("gateway_baseline"),
            targets
        )),
        run(bound("apm"), s.get("apm"), |url| inspect_apm(
            url,
            options.apm_window,
            targets
        )),
        run(bound("frontend"), s.get("frontend_dist"), |dist| {
            inspect_frontend(dist, s.path("frontend_baseline"), targets)
        }),
        run(bound("memory"), memory_key(s), |_| inspect_memory(
            s, options
        )),
    );
    let ((s1, db), (s2, redis), (s3, queues), (s4, gateway)) = (db, redis, queues, gateway);
    let ((s5, apm), (s6, frontend), (s7, memory)) = (apm, frontend, memory);
    Collected {
        db,
        redis,
        queues,
        gateway,
        gateway_baseline: s.is_configured("gateway_baseline"),
        apm,
        frontend,
        memory,
        systems: vec![s1, s2, s3, s4, s5, s6, s7],
        window_s: options.window.as_secs_f64(),
    }
}

/// The memory sources in words, when any is configured.
fn memory_key(s: &Systems) -> Option<&str> {
    ["pid", "cgroup", "metrics"]
        .into_iter()
        .find_map(|k| s.get(k))
}

pub(crate) type Bound<'a> = (&'static str, tokio::time::Instant, Duration, &'a Systems);

/// Runs one inspection when its system is configured, bounded by the deadline.
pub(crate) async fn run<'a, M, F, Fut>(
    (name, deadline, timeout, systems): Bound<'a>,
    configured: Option<&'a str>,
    f: F,
) -> (SystemStatus, Outcome<M>)
where
    F: FnOnce(&'a str) -> Fut,
    Fut: Future<Output = Result<Outcome<M>, String>>,
{
    let mut status = SystemStatus {
        name: name.to_string(),
        address: String::new(),
        state: SystemState::NotConfigured,
        reason: String::new(),
        elapsed_ms: 0.0,
    };
    let Some(value) = configured else {
        return (status, Outcome::NotConfigured);
    };
    status.address = address(name, systems);
    let started = Instant::now();
    let result = tokio::time::timeout_at(deadline, f(value)).await;
    status.elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    let outcome = match result {
        Ok(Ok(o)) => o,
        Ok(Err(why)) => Outcome::NotMeasured(systems.redact(&why)),
        Err(_) => Outcome::NotMeasured(format!(
            "timed out after {} (--timeout)",
            powertune_core::duration::format(timeout)
        )),
    };
    match &outcome {
        Outcome::NotMeasured(why) => {
            status.state = SystemState::NotMeasured;
            status.reason = why.clone();
        }
        _ => status.state = SystemState::Measured,
    }
    (status, outcome)
}

/// The configured address(es) of a doctor system, secrets masked.
fn address(name: &str, s: &Systems) -> String {
    let keys: &[&str] = match name {
        "frontend" => &["frontend_dist", "frontend_baseline"],
        "gateway" => &["gateway", "gateway_baseline"],
        "memory" => &["pid", "cgroup", "metrics"],
        other => return s.get(other).map(|v| s.redact(v)).unwrap_or_default(),
    };
    keys.iter()
        .filter_map(|k| s.get(k).map(|v| format!("{k}={}", s.redact(v))))
        .collect::<Vec<_>>()
        .join(" ")
}

async fn inspect_db(url: &str, targets: &Targets) -> Result<Outcome<DbMetrics>, String> {
    let o = DbOptions::new(RawDbConfig::new(url));
    let i = powertune_db::inspect(&o, targets)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Outcome::from_inspection(i))
}

pub(crate) fn redis_conn(url: &str) -> Result<ConnOptions, String> {
    Ok(ConnOptions {
        url: RedisUrl::parse(url).map_err(|e| e.to_string())?,
        timeout: REDIS_TIMEOUT,
    })
}

async fn inspect_redis(
    url: &str,
    targets: &Targets,
    window: Duration,
) -> Result<Outcome<RedisPair>, String> {
    let o = RedisOptions {
        conn: redis_conn(url)?,
        slowlog: 10,
        baseline: None,
        scan: None,
    };
    let started = Instant::now();
    let first = powertune_redis::inspect(&o, targets)
        .await
        .map_err(|e| e.to_string())?;
    tokio::time::sleep(window.saturating_sub(started.elapsed())).await;
    let last = powertune_redis::inspect(&o, targets)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Outcome::Measured {
        findings: last.findings,
        metrics: RedisPair {
            start: first.metrics,
            end: last.metrics,
            window_s: started.elapsed().as_secs_f64(),
        },
    })
}

async fn inspect_queues(
    url: &str,
    targets: &Targets,
    options: &DoctorOptions,
) -> Result<Outcome<QueuesMetrics>, String> {
    let o = QueuesOptions {
        conn: redis_conn(url)?,
        read: QueueRead::default(),
        watch: Some(WatchOptions {
            every: options
                .every()
                .max(powertune_redis::sidekiq::inspect::MIN_WATCH),
            ticks: Some(u64::from(SAMPLES)),
            reconnect: Reconnect::default(),
        }),
    };
    let i = powertune_redis::sidekiq::inspect(&o, targets)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Outcome::from_inspection(i))
}

pub(crate) async fn inspect_gateway(
    url: &str,
    baseline: Option<std::path::PathBuf>,
    targets: &Targets,
) -> Result<Outcome<StatusMetrics>, String> {
    let mut o = StatusOptions::new(url);
    o.baseline = baseline;
    let i = powertune_gateway::inspect(&o, targets)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Outcome::from_inspection(i))
}

pub(crate) async fn inspect_apm(
    url: &str,
    window: Duration,
    targets: &Targets,
) -> Result<Outcome<Summary>, String> {
    let o = ReportOptions {
        url: powertune_apm::collect::receiver::base_url(url).map_err(|e| e.to_string())?,
        window,
        baseline: None,
        save_baseline: None,
    };
    let i = powertune_apm::inspect::report(&o, targets)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Outcome::from_inspection(i))
}

async fn inspect_frontend(
    dist: &str,
    baseline: Option<std::path::PathBuf>,
    targets: &Targets,
) -> Result<Outcome<BundleMetrics>, String> {
    let mut o = BundleOptions::new(dist);
    if let Some(p) = baseline {
        let b = BundleBaseline::load(&p).map_err(|e| e.to_string())?;
        o.baseline = Some((p, b));
    }
    let targets = targets.clone();
    let i = tokio::task::spawn_blocking(move || powertune_frontend::bundle::inspect(&o, &targets))
        .await
        .map_err(|e| format!("the bundle reader stopped: {e}"))?
        .map_err(|e| e.to_string())?;
    Ok(Outcome::from_inspection(i))
}

async fn inspect_memory(
    s: &Systems,
    options: &DoctorOptions,
) -> Result<Outcome<Vec<MemorySeries>>, String> {
    let sources = MemorySources {
        pid: s.pid(),
        cgroup: s.path("cgroup"),
        metrics: s.get("metrics").map(|u| (u.to_string(), s.redact(u))),
    };
    let series = memory::sample(&sources, options.every(), SAMPLES + 1).await?;
    Ok(Outcome::Measured {
        findings: Vec::new(),
        metrics: series,
    })
}
