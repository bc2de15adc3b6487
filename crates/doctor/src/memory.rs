//! The backend's memory over the run: a process's resident memory and a cgroup's
//! `memory.current` (sampled by capacity's `/proc` and cgroup sources, as a share of
//! their limit) and `process_resident_memory_bytes` of a Prometheus endpoint. The trend
//! is judged in `rows::memory`.

use powertune_capacity::resources::procfs::{Cgroup, Process};
use powertune_capacity::resources::{prom, Kind, Source};
use serde::Serialize;
use std::time::{Duration, Instant};

/// The metric read from `metrics`.
pub const RSS_METRIC: &str = "process_resident_memory_bytes";

/// One source's samples.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct MemorySeries {
    /// `pid 4242`, `cgroup /sys/fs/cgroup/app`, `metrics http://app:9394/metrics`.
    pub source: String,
    /// `share` (of the machine's memory or the cgroup's memory.max) or `bytes`.
    pub unit: String,
    /// (seconds since the first sample, value).
    pub samples: Vec<(f64, f64)>,
    /// OOM kills counted during the run (cgroup `memory.events`), when known.
    pub oom_kills: Option<f64>,
}

/// What to sample.
#[derive(Debug, Clone, Default)]
pub struct MemorySources {
    pub pid: Option<u32>,
    pub cgroup: Option<std::path::PathBuf>,
    /// The metrics URL and how to show it (secrets masked).
    pub metrics: Option<(String, String)>,
}

impl MemorySources {
    pub fn is_empty(&self) -> bool {
        self.pid.is_none() && self.cgroup.is_none() && self.metrics.is_none()
    }
}

/// Samples every source `samples` times, `every` apart. A source that cannot be
/// opened is an error naming it; one that stops answering keeps what it gave.
pub async fn sample(
    sources: &MemorySources,
    every: Duration,
    samples: u32,
) -> Result<Vec<MemorySeries>, String> {
    let mut opened: Vec<(String, Box<dyn Source>)> = Vec::new();
    if let Some(pid) = sources.pid {
        opened.push((format!("pid {pid}"), Box::new(Process::new(pid)?)));
    }
    if let Some(dir) = &sources.cgroup {
        opened.push((
            format!("cgroup {}", dir.display()),
            Box::new(Cgroup::new(dir.clone())?),
        ));
    }
    let mut series: Vec<MemorySeries> = opened
        .iter()
        .map(|(name, _)| MemorySeries {
            source: name.clone(),
            unit: "share".into(),
            samples: Vec::new(),
            oom_kills: None,
        })
        .collect();
    let mut metrics = match &sources.metrics {
        Some((url, shown)) => Some((
            prom::Metrics::new(url)?,
            MemorySeries {
                source: format!("metrics {shown}"),
                unit: "bytes".into(),
                samples: Vec::new(),
                oom_kills: None,
            },
        )),
        None => None,
    };
    let mut first_oom: Vec<Option<f64>> = vec![None; opened.len()];
    let start = Instant::now();
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
    for _ in 0..samples.max(1) {
        tick.tick().await;
        let at = start.elapsed().as_secs_f64();
        for (i, (_, src)) in opened.iter_mut().enumerate() {
            for (id, s) in src.sample().await {
                if id.kind != Kind::Memory {
                    continue;
                }
                if let Some(u) = s.utilisation {
                    series[i].samples.push((at, u));
                }
                if let Some(oom) = s.errors {
                    let base = *first_oom[i].get_or_insert(oom);
                    series[i].oom_kills = Some(oom - base);
                }
            }
        }
        if let Some((source, m)) = metrics.as_mut() {
            if let Some(v) = scrape(source).await {
                m.samples.push((at, v));
            }
        }
    }
    series.extend(metrics.map(|(_, m)| m));
    Ok(series)
}

async fn scrape(m: &prom::Metrics) -> Option<f64> {
    let text = m.fetch().await?;
    prom::parse(&text).get(RSS_METRIC).copied()
}
