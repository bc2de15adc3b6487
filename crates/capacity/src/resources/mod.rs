//! The resources sampled while each step is measured, in the USE method's terms
//! (utilisation, saturation, errors). Every source is sampled by one task every
//! [`ResourceOptions::interval`]; a step's readings are folded into one
//! [`Reading`] per resource.

pub mod gateway;
pub mod postgres;
pub mod procfs;
pub mod prom;
pub mod redis;
pub mod sidekiq;

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
    /// PostgreSQL itself: connections against `max_connections`, lock waits.
    Database,
    /// Sidekiq's worker threads: busy against concurrency, queue latency.
    Workers,
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
            Kind::Database => "PostgreSQL saturation → connections near max_connections: add PgBouncer (transaction pooling) rather than more connections; lock waits: shorten the transactions of the step's top statements",
            Kind::Workers => "Worker saturation → scale Sidekiq processes horizontally (Compose --scale), or raise concurrency while the DB pool allows it",
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
            Kind::Database => "PostgreSQL",
            Kind::Workers => "Sidekiq workers",
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
    /// How long work waited (ms): the oldest enqueued job's queue latency, the
    /// provider's P95 within the step.
    pub latency_ms: Option<f64>,
}

/// A part of a resource's saturation (PostgreSQL: the share of active backends'
/// samples waiting on each wait event type).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Part {
    pub name: String,
    /// 0..=1.
    pub share: f64,
}

/// One statement's work within a step (`pg_stat_statements` at the step's end less
/// at its start).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StepStatement {
    pub queryid: i64,
    /// Normalised text, secrets masked, at most 200 characters.
    pub query: String,
    pub calls: i64,
    pub total_ms: f64,
    pub mean_ms: f64,
}

/// What a source adds to a step once its measurement is over.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepDetail {
    /// The parts of a resource's saturation, by resource name.
    pub parts: Vec<(String, Vec<Part>)>,
    /// The heaviest statements within the step, by total time.
    pub statements: Vec<StepStatement>,
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
    /// The longest wait seen (ms): queue latency, provider P95.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms_max: Option<f64>,
    /// What the saturation consisted of (PostgreSQL wait event types).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<Part>,
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
    /// PostgreSQL servers (`--db`): connections, wait events, lock waits and the
    /// `pg_stat_statements` delta per step.
    pub db: Vec<String>,
    /// Sidekiq's Redis (`--queues`): busy vs concurrency, queue latency.
    pub queues: Vec<String>,
    /// powertune gateways (`--gateway`): open breakers, 429s, provider latency.
    pub gateways: Vec<String>,
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
    if o.db.is_empty() {
        out.push("PostgreSQL connections, wait events and lock waits (--db)".to_string());
    }
    if o.redis.is_empty() {
        out.push("Redis (--redis)".to_string());
    }
    if o.queues.is_empty() {
        out.push("Sidekiq busy vs concurrency and queue latency (--queues)".to_string());
    }
    if o.gateways.is_empty() {
        out.push("provider quota behind the gateway (--gateway)".to_string());
    }
    out
}

/// Folds a step's samples of one resource into a reading. `anchor` is the resource's
/// error counter read when the step's load started (the samples themselves start a
/// little later), so the errors cover the same time as the load's own error count.
pub fn fold(id: &Ident, samples: &[Sample], anchor: Option<f64>) -> Reading {
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
        match (anchor.or(v.first().copied()), v.last()) {
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
        // Connections near max_connections, or backends queued on locks.
        Kind::Database => full || waiting,
        // Busy threads with jobs queued; failed jobs are the application's.
        Kind::Workers => full && waiting,
        // A 429 or a refused call within the step, or every credential out.
        Kind::ProviderQuota => full || errors.unwrap_or(0.0) > 0.0,
        _ => (full && waiting) || errors.unwrap_or(0.0) > 0.0,
    };
    let latency_ms_max = max(&|s| s.latency_ms);
    let mut parts = Vec::new();
    match (used_max, capacity) {
        (Some(u), Some(c)) if id.unit == "cores" => {
            parts.push(format!("{}/{} cores busy", trim2(u), trim(c)))
        }
        (Some(u), Some(c)) if id.unit.is_empty() => {
            parts.push(format!("{}/{} in use", trim(u), trim(c)))
        }
        (Some(u), Some(c)) => parts.push(format!("{}/{} {}", trim(u), trim(c), id.unit)),
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
    if let Some(l) = latency_ms_max {
        parts.push(match id.kind {
            Kind::Workers => format!("queue latency {}", powertune_core::units::ms(l)),
            Kind::ProviderQuota => format!("provider P95 {}", powertune_core::units::ms(l)),
            _ => format!("waited {}", powertune_core::units::ms(l)),
        });
    }
    if let Some(e) = errors.filter(|e| *e > 0.0) {
        parts.push(match id.kind {
            Kind::ProviderQuota => format!("{} calls rate-limited (429) or refused", trim(e)),
            Kind::Workers => format!("{} jobs failed", trim(e)),
            _ => format!("{} errors", trim(e)),
        });
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
        latency_ms_max,
        parts: Vec::new(),
        crossed,
        figures: if parts.is_empty() {
            "no figures".into()
        } else {
            parts.join(", ")
        },
    }
}

/// Attaches a source's parts of a resource's saturation to its reading, in its
/// figures too (`waiting: Lock 40%, LWLock 5% of active backends' samples`).
pub fn attach(readings: &mut [Reading], detail: &StepDetail) {
    for (resource, parts) in &detail.parts {
        let Some(r) = readings.iter_mut().find(|r| &r.resource == resource) else {
            continue;
        };
        let shown: Vec<String> = parts
            .iter()
            .filter(|p| p.share > 0.0)
            .map(|p| format!("{} {}", p.name, pct(p.share)))
            .collect();
        if !shown.is_empty() {
            r.figures.push_str(&format!(
                "; waiting: {} of active backends' samples",
                shown.join(", ")
            ));
        }
        r.parts = parts.clone();
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

/// Every source's error counters now: the anchors [`fold`] counts a step's errors
/// from.
pub async fn error_anchors(sources: &mut [Box<dyn Source>]) -> BTreeMap<Ident, f64> {
    let mut out = BTreeMap::new();
    for s in sources.iter_mut() {
        for (id, sample) in s.sample().await {
            if let Some(e) = sample.errors {
                out.insert(id, e);
            }
        }
    }
    out
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

/// The future of a source's step boundary.
pub type BeginFuture<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>;
/// The future of a source's end of step.
pub type EndFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = StepDetail> + Send + 'a>>;

/// A source sampled during the steps. Counters (CPU time, errors) are turned into
/// rates over the time since the source's previous sample; a source that cannot be
/// read this time returns an empty list. `begin` and `end` bracket each measured
/// run (a source reads its per-step baseline there); by default they do nothing.
pub trait Source: Send {
    fn sample(&mut self) -> SampleFuture<'_>;
    fn begin(&mut self) -> BeginFuture<'_> {
        Box::pin(async {})
    }
    fn end(&mut self) -> EndFuture<'_> {
        Box::pin(async { StepDetail::default() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_collectors_are_no_longer_unmeasured() {
        let none = ResourceOptions::default();
        let gaps = unmeasured(&none).join("; ");
        for flag in ["--db", "--queues", "--gateway", "--redis", "--metrics"] {
            assert!(gaps.contains(flag), "{gaps}");
        }
        let all = ResourceOptions {
            db: vec!["postgres://db/app".into()],
            queues: vec!["redis://r/3".into()],
            gateways: vec!["http://gw:4000".into()],
            ..Default::default()
        };
        let gaps = unmeasured(&all).join("; ");
        for flag in ["--db", "--queues", "--gateway"] {
            assert!(!gaps.contains(flag), "{gaps}");
        }
    }

    fn id(kind: Kind, word: &'static str, unit: &'static str) -> Ident {
        Ident {
            resource: "r".into(),
            kind,
            source: "s".into(),
            saturation_word: word,
            unit,
        }
    }

    #[test]
    fn each_new_collector_crosses_on_its_own_signal() {
        let s = |u: f64, sat: Option<f64>, e: Option<f64>| Sample {
            utilisation: Some(u),
            saturation: sat,
            errors: e,
            used: Some(u * 10.0),
            capacity: Some(10.0),
            latency_ms: Some(1500.0),
        };
        // PostgreSQL: lock waits alone, or connections near max_connections.
        let db = id(Kind::Database, "lock waits", "connections");
        assert!(fold(&db, &[s(0.2, Some(2.0), None)], None).crossed);
        assert!(fold(&db, &[s(0.95, Some(0.0), None)], None).crossed);
        assert!(!fold(&db, &[s(0.5, Some(0.4), None)], None).crossed);
        assert!(fold(&db, &[s(0.2, Some(0.0), None)], None)
            .figures
            .starts_with("2/10 connections"));
        // Sidekiq: every thread busy with jobs queued; failures alone do not count.
        let w = id(Kind::Workers, "enqueued", "busy");
        let busy = fold(&w, &[s(1.0, Some(30.0), Some(0.0))], None);
        assert!(busy.crossed);
        assert!(
            busy.figures.contains("queue latency 1.5s"),
            "{}",
            busy.figures
        );
        assert!(!fold(&w, &[s(1.0, Some(0.0), Some(0.0))], None).crossed);
        assert!(
            !fold(
                &w,
                &[s(0.5, Some(0.0), Some(0.0)), s(0.5, Some(0.0), Some(9.0))],
                None
            )
            .crossed
        );
        // Gateway: a 429 within the step, or every credential out.
        let g = id(Kind::ProviderQuota, "waiting", "credentials out");
        let limited = fold(
            &g,
            &[s(0.0, None, Some(3.0)), s(0.0, None, Some(40.0))],
            None,
        );
        assert!(limited.crossed);
        assert!(
            limited
                .figures
                .contains("37 calls rate-limited (429) or refused"),
            "{}",
            limited.figures
        );
        assert!(fold(&g, &[s(1.0, None, Some(0.0))], None).crossed);
        let quiet = [s(0.0, None, Some(5.0)), s(0.0, None, Some(5.0))];
        assert!(!fold(&g, &quiet, None).crossed);
        // A 429 between the step's start and its first sample still counts.
        let early = fold(&g, &quiet, Some(4.0));
        assert!(early.crossed);
        assert!(
            early
                .figures
                .contains("1 calls rate-limited (429) or refused"),
            "{}",
            early.figures
        );
    }
}
