//! One reading of `queues plan`'s live window: per queue depth,
//! latency and the jobs running from it; per process threads, busy threads, queues and
//! weights; the processed/failed counters and the retry and dead set sizes.

use super::super::collect::{collect, Options};
use super::super::snapshot::SidekiqSnapshot;
use crate::conn::Conn;
use crate::error::RedisError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One queue at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct QueueSample {
    pub name: String,
    pub depth: u64,
    /// Age of the oldest job, seconds.
    pub latency_s: f64,
    /// Jobs from this queue running at that moment (from the processes' work hashes).
    pub busy: f64,
    /// After downsampling: the highest depth of the readings merged (absent: `depth`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depth_max: Option<u64>,
    /// After downsampling: the highest latency of the readings merged (absent:
    /// `latency_s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_max_s: Option<f64>,
    /// Running jobs per job class (busy threads), from the processes' work hashes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub classes: BTreeMap<String, f64>,
}

impl QueueSample {
    /// The highest depth over the readings this sample holds.
    pub fn depth_peak(&self) -> u64 {
        self.depth_max.unwrap_or(self.depth).max(self.depth)
    }

    /// The highest latency over the readings this sample holds, seconds.
    pub fn latency_peak_s(&self) -> f64 {
        self.latency_max_s
            .unwrap_or(self.latency_s)
            .max(self.latency_s)
    }
}

/// One Sidekiq process at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ProcessSample {
    pub identity: String,
    pub concurrency: u64,
    pub busy: f64,
    /// Queues it serves, in its fetch order.
    pub queues: Vec<String>,
    /// Weights it publishes (Sidekiq 7+); empty otherwise.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub weights: BTreeMap<String, u64>,
}

/// One reading (or, after downsampling, the merge of `n` consecutive readings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Sample {
    /// Unix seconds (of the last reading merged).
    pub at: f64,
    /// Readings merged into this one (1 as read).
    #[serde(default = "one")]
    pub n: u32,
    pub queues: Vec<QueueSample>,
    pub processes: Vec<ProcessSample>,
    pub processed: u64,
    pub failed: u64,
    pub retry: u64,
    pub dead: u64,
}

fn one() -> u32 {
    1
}

impl Sample {
    /// The reading a snapshot holds.
    pub fn of(s: &SidekiqSnapshot) -> Sample {
        let mut busy: BTreeMap<&str, f64> = BTreeMap::new();
        let mut classes: BTreeMap<&str, BTreeMap<String, f64>> = BTreeMap::new();
        for p in &s.processes {
            for r in &p.running {
                *busy.entry(r.queue.as_str()).or_insert(0.0) += 1.0;
                *classes
                    .entry(r.queue.as_str())
                    .or_default()
                    .entry(r.class.clone())
                    .or_insert(0.0) += 1.0;
            }
        }
        Sample {
            at: s.now,
            n: 1,
            queues: s
                .queues
                .iter()
                .map(|q| QueueSample {
                    name: q.name.clone(),
                    depth: q.size,
                    latency_s: q.latency_s,
                    busy: busy.get(q.name.as_str()).copied().unwrap_or(0.0),
                    depth_max: None,
                    latency_max_s: None,
                    classes: classes.remove(q.name.as_str()).unwrap_or_default(),
                })
                .collect(),
            processes: s
                .processes
                .iter()
                .map(|p| ProcessSample {
                    identity: p.identity.clone(),
                    concurrency: p.concurrency,
                    busy: p.busy as f64,
                    queues: p.queues.clone(),
                    weights: p.weights.clone(),
                })
                .collect(),
            processed: s.processed,
            failed: s.failed,
            retry: s.retry.size,
            dead: s.dead_size,
        }
    }

    /// Busy threads over all processes.
    pub fn busy(&self) -> f64 {
        self.processes.iter().map(|p| p.busy).sum()
    }

    /// Threads over all processes.
    pub fn concurrency(&self) -> u64 {
        self.processes.iter().map(|p| p.concurrency).sum()
    }
}

/// Reads one [`Sample`] in two round trips (no retry, dead or metrics detail).
pub async fn read(conn: &mut Conn, max_queues: usize) -> Result<Sample, RedisError> {
    let opts = Options {
        retry_sample: 1,
        dead_newest: 1,
        days: 1,
        metrics_minutes: 0,
        max_queues,
    };
    Ok(Sample::of(&collect(conn, &opts).await?))
}

/// Counter growth between readings, counting a counter that went down (Redis lost its
/// data or was flushed) as restarted from zero.
pub fn counter_growth(values: impl IntoIterator<Item = u64>) -> u64 {
    let mut total = 0u64;
    let mut prev: Option<u64> = None;
    for v in values {
        if let Some(p) = prev {
            total += if v >= p { v - p } else { v };
        }
        prev = Some(v);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_survive_a_reset() {
        assert_eq!(counter_growth([10, 15, 20]), 10);
        // Redis restarted without its data between 20 and 3.
        assert_eq!(counter_growth([10, 20, 3, 8]), 18);
        assert_eq!(counter_growth([]), 0);
    }
}
