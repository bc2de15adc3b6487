//! Everything `queues` reads, at one moment, and the light readings of `--watch`.

use serde::Serialize;
use std::collections::BTreeMap;

/// One queue.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct QueueInfo {
    pub name: String,
    pub size: u64,
    /// now − enqueued_at of the oldest job, seconds (0 when empty).
    pub latency_s: f64,
    /// Class of the oldest job (ActiveJob's `wrapped` class when present).
    pub oldest_class: Option<String>,
}

/// A job a process is running now (from its `:work` hash).
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct RunningJob {
    pub queue: String,
    pub class: String,
    pub jid: String,
    /// Unix seconds it started.
    pub run_at: f64,
}

/// One live Sidekiq process (its heartbeat hash).
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ProcessInfo {
    pub identity: String,
    pub hostname: String,
    pub pid: i64,
    pub tag: String,
    pub version: String,
    pub concurrency: u64,
    pub busy: u64,
    /// Unix seconds of the last heartbeat.
    pub beat: f64,
    pub quiet: bool,
    pub rss_kb: u64,
    pub queues: Vec<String>,
    /// Queue weights the process publishes (7.x+); empty on 6.x.
    pub weights: BTreeMap<String, u64>,
    pub running: Vec<RunningJob>,
}

/// What a bounded sample of the retry set shows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct RetryStats {
    pub size: u64,
    pub sampled: u64,
    /// retry_count → jobs (in the sample).
    pub depth: BTreeMap<u64, u64>,
    pub top_classes: Vec<(String, u64)>,
    pub top_errors: Vec<(String, u64)>,
    /// One sampled job per top error class: its message and the first line of its
    /// backtrace (when Sidekiq stored one), in `top_errors` order.
    #[serde(default)]
    pub error_samples: Vec<ErrorSample>,
}

/// A retried job that shows what one error class looks like.
#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ErrorSample {
    pub error_class: String,
    pub job_class: String,
    /// The error message, secrets masked, at most 120 characters.
    pub message: String,
    /// The first line of `error_backtrace`, when present.
    pub backtrace: Option<String>,
}

/// A dead job.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct DeadJob {
    pub class: String,
    pub error_class: String,
    pub error_message: String,
    /// Unix seconds it failed for good (the sorted-set score).
    pub died_at: f64,
}

/// Processed and failed counts of one UTC day.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct DayStat {
    pub date: String,
    pub processed: u64,
    pub failed: u64,
}

/// Per-class totals of Sidekiq 7+'s `j|` metrics over the window read.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct JobMetric {
    pub class: String,
    pub processed: u64,
    pub failed: u64,
    pub total_ms: u64,
}

impl JobMetric {
    /// Average duration of successful runs (Sidekiq does not time failed ones).
    pub fn avg_s(&self) -> Option<f64> {
        let ok = self.processed.saturating_sub(self.failed);
        (ok > 0).then(|| self.total_ms as f64 / ok as f64 / 1000.0)
    }
}

/// Everything `queues` reads, at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct SidekiqSnapshot {
    /// Unix seconds when it was read.
    pub now: f64,
    pub queues: Vec<QueueInfo>,
    /// Queues in the `queues` set beyond `max_queues` (not inspected).
    pub queues_not_read: u64,
    pub processes: Vec<ProcessInfo>,
    /// Members of `processes` whose hash has expired (Sidekiq prunes them).
    pub dead_process_entries: u64,
    pub processed: u64,
    pub failed: u64,
    pub scheduled_size: u64,
    pub retry: RetryStats,
    pub dead_size: u64,
    pub dead_newest: Vec<DeadJob>,
    pub days: Vec<DayStat>,
    /// None when no `j|` metrics keys exist (6.x records none).
    pub metrics: Option<Vec<JobMetric>>,
    pub metrics_minutes: u32,
    /// Round trips the collector needed.
    pub round_trips: u32,
}

impl SidekiqSnapshot {
    pub fn enqueued(&self) -> u64 {
        self.queues.iter().map(|q| q.size).sum()
    }
    pub fn busy(&self) -> u64 {
        self.processes.iter().map(|p| p.busy).sum()
    }
    pub fn concurrency(&self) -> u64 {
        self.processes.iter().map(|p| p.concurrency).sum()
    }
    /// The Sidekiq version the processes report, if any.
    pub fn version(&self) -> Option<&str> {
        self.processes
            .iter()
            .map(|p| p.version.as_str())
            .find(|v| !v.is_empty())
    }
}

/// A light reading for `--watch`: queue depths and latencies, counters, retry size.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WatchSample {
    pub at: f64,
    pub queues: Vec<QueueInfo>,
    pub processed: u64,
    pub failed: u64,
    pub retry_size: u64,
}

/// One row of the live view: per queue depth, latency, net rate and drain ETA.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct WatchRow {
    pub queue: String,
    pub size: u64,
    pub latency_s: f64,
    /// Change of depth per second (negative = draining).
    pub net_per_s: f64,
    /// Seconds until empty at the current drain rate (None when not draining).
    pub eta_s: Option<f64>,
}

/// Rates between two samples: per-queue rows, processed/s, failed/s, enqueued/s,
/// retry-set change.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct WatchDelta {
    pub rows: Vec<WatchRow>,
    pub processed_per_s: f64,
    pub failed_per_s: f64,
    /// Jobs entering the queues per second (processed/s + depth change/s).
    pub enqueued_per_s: f64,
    pub retry_change: i64,
}
