//! The resources sampled while each step is measured, in the USE method's terms
//! (utilisation, saturation, errors). Every source is sampled by one task every
//! [`ResourceOptions::interval`]; a step's readings are folded into one
//! [`Reading`] per resource.

pub mod procfs;
pub mod prom;
pub mod redis;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A resource crosses (is saturated) when its utilisation reaches this while work
/// waits for it.
pub const UTILISATION_CROSSED: f64 = 0.9;
/// The generator is saturated at or above this fraction of the cores it may use.
pub const GENERATOR_CROSSED: f64 = 0.85;

/// The runbook's step-4 dimension a resource belongs to.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Cpu,
    Memory,
    DbPool,
    Redis,
    ProviderQuota,
    /// The load generator itself: never blamed on the target.
    Generator,
}

impl Kind {
    /// The runbook's Capacity Planning step-4 action.
    pub fn action(self) -> &'static str {
        match self {
            Kind::Cpu => "CPU saturation → scale backend / worker horizontally (Docker Swarm / Compose --scale)",
            Kind::Memory => "Memory pressure → raise the memory limit or scale out; check for a leak (RSS growing at a steady rate)",
            Kind::DbPool => "DB pool saturation → bump pool size or add PgBouncer",
            Kind::Redis => "Redis saturation → bump maxmemory or split Sidekiq DBs",
            Kind::ProviderQuota => "Provider quota → register additional credentials or upgrade vendor tier",
            Kind::Generator => "Run the load from a bigger machine or several generators; the target was not measured past this rate",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Kind::Cpu => "CPU",
            Kind::Memory => "memory",
            Kind::DbPool => "DB pool",
            Kind::Redis => "Redis",
            Kind::ProviderQuota => "provider quota",
            Kind::Generator => "load generator",
        }
    }
}

/// One sample of one resource.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    /// Fraction of capacity in use (0..=1), when the source tells it.
    pub utilisation: Option<f64>,
    /// Work waiting for the resource (requests queued, throttled fraction, run-queue
    /// seconds per second).
    pub saturation: Option<f64>,
    /// A cumulative error counter (timeouts, OOM kills, evictions, rejections).
    pub errors: Option<f64>,
    /// In use and capacity, for the figures (`25/25`).
    pub used: Option<f64>,
    pub capacity: Option<f64>,
}

/// What one resource did over one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Reading {
    /// `DB pool`, `CPU (pid 4242)`, `cgroup /sys/fs/cgroup/app`, `Redis 127.0.0.1:6379/0`.
    pub resource: String,
    pub kind: Kind,
    /// Where it was read (a metrics URL, a pid, a cgroup path), secrets masked.
    pub source: String,
    pub samples: u32,
    pub utilisation_mean: Option<f64>,
    pub utilisation_max: Option<f64>,
    pub saturation_mean: Option<f64>,
    pub saturation_max: Option<f64>,
    /// Errors counted during the step.
    pub errors: Option<f64>,
    pub used_max: Option<f64>,
    pub capacity: Option<f64>,
    /// Past [`UTILISATION_CROSSED`] with work waiting, or errors.
    pub crossed: bool,
    /// The figures in words (`25/25 in use, 31 waiting`).
    pub figures: String,
}

/// A resource's identity within a run.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ident {
    pub resource: String,
    pub kind: Kind,
    pub source: String,
    /// How saturation is worded (`waiting`, `throttled`, `blocked clients`).
    pub saturation_word: &'static str,
    /// What `used`/`capacity` count: `cores` (shown with two decimals) or slots ("").
    pub unit: &'static str,
}

/// What to sample.
#[derive(Debug, Clone, Default)]
pub struct ResourceOptions {
    /// Prometheus text endpoints (`--metrics`).
    pub metrics: Vec<String>,
    /// Target processes (`--pid`).
    pub pids: Vec<u32>,
    /// cgroup v2 directories (`--cgroup`).
    pub cgroups: Vec<PathBuf>,
    /// Redis servers (`--redis`), as given (secrets are masked before showing).
    pub redis: Vec<String>,
    /// Sample the generator's own CPU (always on in the CLI).
    pub generator: bool,
    /// Threads of this process whose name starts with this are not the generator's
    /// but the embedded target's (`--demo`): sampled as its CPU.
    pub exclude_threads: Option<String>,
    /// Time between samples.
    pub interval: Duration,
}

/// What was not measured, for "not explained" verdicts.
pub fn unmeasured(o: &ResourceOptions) -> Vec<String> {
    let mut out = Vec::new();
    if o.pids.is_empty() && o.cgroups.is_empty() && o.exclude_threads.is_none() {
        out.push("target CPU and memory (--pid or --cgroup)".to_string());
    }
    if o.metrics.is_empty() {
        out.push("application pools: DB pool, Puma threads (--metrics)".to_string());
    }
    out.push(
        "PostgreSQL connections and wait events (--db: not sampled per step by this version)"
            .to_string(),
    );
    if o.redis.is_empty() {
        out.push("Redis (--redis)".to_string());
    }
    out.push(
        "Sidekiq busy vs concurrency (--queues: not sampled per step by this version)".to_string(),
    );
    out.push(
        "provider quota behind the gateway (--gateway: not sampled per step by this version)"
            .to_string(),
    );
    out
}

/// Folds a step's samples of one resource into a reading.
pub fn fold(id: &Ident, samples: &[Sample]) -> Reading {
    let mean = |f: &dyn Fn(&Sample) -> Option<f64>| {
        let v: Vec<f64> = samples.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let max = |f: &dyn Fn(&Sample) -> Option<f64>| {
        samples
            .iter()
            .filter_map(f)
            .fold(None, |a: Option<f64>, v| Some(a.map_or(v, |a| a.max(v))))
    };
    let errors = {
        let v: Vec<f64> = samples.iter().filter_map(|s| s.errors).collect();
        match (v.first(), v.last()) {
            (Some(a), Some(b)) => Some((b - a).max(0.0)),
            _ => None,
        }
    };
    let um = mean(&|s| s.utilisation);
    let ux = max(&|s| s.utilisation);
    let sm = mean(&|s| s.saturation);
    let sx = max(&|s| s.saturation);
    let used_max = max(&|s| s.used);
    let capacity = max(&|s| s.capacity);
    // Work persistently queued: at least one waiting on average over the step.
    let waiting = sm.unwrap_or(0.0) >= 1.0;
    let full = ux.unwrap_or(0.0) >= UTILISATION_CROSSED;
    let crossed = match id.kind {
        Kind::Generator => um.unwrap_or(0.0) >= GENERATOR_CROSSED,
        // A throttled cgroup or a CPU run queue is saturation on its own.
        Kind::Cpu if id.saturation_word == "throttled" => {
            sm.unwrap_or(0.0) >= 0.1 || (full && waiting)
        }
        // A run queue is seconds waited per second: any steady wait counts.
        Kind::Cpu if id.saturation_word == "run queue" => full && sm.unwrap_or(0.0) > 0.05,
        // No queue signal (memory) or a queue that is not saturation on its own
        // (Redis blocked clients are often idle Sidekiq fetchers): full or erroring.
        Kind::Memory | Kind::Redis if id.saturation_word != "waiting" => {
            full || errors.unwrap_or(0.0) > 0.0
        }
        _ => (full && waiting) || errors.unwrap_or(0.0) > 0.0,
    };
    let mut parts = Vec::new();
    match (used_max, capacity) {
        (Some(u), Some(c)) if id.unit == "cores" => {
            parts.push(format!("{}/{} cores busy", trim2(u), trim(c)))
        }
        (Some(u), Some(c)) => parts.push(format!("{}/{} in use", trim(u), trim(c))),
        (used, _) => {
            if let (Some(u), Kind::Redis) = (used, id.kind) {
                parts.push(format!("{} commands/s", trim(u)));
            }
            if let Some(u) = um {
                let of = match id.kind {
                    Kind::Redis => " of maxmemory",
                    Kind::Memory => " of the limit",
                    _ => "",
                };
                parts.push(format!(
                    "{} used{of} (mean; max {})",
                    pct(u),
                    pct(ux.unwrap_or(u))
                ))
            }
        }
    }
    if let (Some(m), Some(x)) = (sm, sx) {
        if x > 0.0 {
            parts.push(match id.saturation_word {
                "throttled" => format!("throttled in {} of periods", pct(m)),
                "run queue" => format!("{} s/s waiting for a CPU", trim2(m)),
                w => format!("{} {w} (mean {})", trim(x), trim2(m)),
            });
        }
    }
    if let Some(e) = errors.filter(|e| *e > 0.0) {
        parts.push(format!("{} errors", trim(e)));
    }
    Reading {
        resource: id.resource.clone(),
        kind: id.kind,
        source: id.source.clone(),
        samples: samples.len() as u32,
        utilisation_mean: um,
        utilisation_max: ux,
        saturation_mean: sm,
        saturation_max: sx,
        errors,
        used_max,
        capacity,
        crossed,
        figures: if parts.is_empty() {
            "no figures".into()
        } else {
            parts.join(", ")
        },
    }
}

fn trim(v: f64) -> String {
    powertune_core::units::trim(v, 0)
}

fn trim2(v: f64) -> String {
    powertune_core::units::trim(v, 2)
}

fn pct(v: f64) -> String {
    format!("{}%", powertune_core::units::trim(v * 100.0, 0))
}

/// Samples every source until `stop` is cancelled; returns each resource's samples.
pub async fn sample_until(
    sources: &mut [Box<dyn Source>],
    interval: Duration,
    stop: CancellationToken,
) -> BTreeMap<Ident, Vec<Sample>> {
    let mut out: BTreeMap<Ident, Vec<Sample>> = BTreeMap::new();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let last = tokio::select! {
            _ = tick.tick() => false,
            _ = stop.cancelled() => true,
        };
        for s in sources.iter_mut() {
            for (id, sample) in s.sample().await {
                out.entry(id).or_default().push(sample);
            }
        }
        if last {
            return out;
        }
    }
}

/// The future a source's sample returns.
pub type SampleFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Vec<(Ident, Sample)>> + Send + 'a>>;

/// A source sampled during the steps. Counters (CPU time, errors) are turned into
/// rates over the time since the source's previous sample; a source that cannot be
/// read this time returns an empty list.
pub trait Source: Send {
    fn sample(&mut self) -> SampleFuture<'_>;
}
