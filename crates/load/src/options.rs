//! What a load run takes ([`RunOptions`]), what it reports while it runs
//! ([`Progress`]) and why it may not start ([`LoadError`]).

use crate::plan::Plan;
use crate::snapshot::Summary;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Called about once a second while a run goes on (from the engine's monitor task).
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// How to run a plan, and what to judge the result against.
#[derive(Clone)]
pub struct RunOptions {
    /// The validated scenario file (or a one-off plan).
    pub plan: Plan,
    /// Joined with every relative step URL (`http://127.0.0.1:8080`).
    pub base_url: String,
    /// Values for `{{name}}` in templates where a VU has no variable of that name
    /// (the caller's `--env K=V` and whichever environment it chooses to pass; the
    /// engine reads no environment itself). [`Plan::variables`] lists the names used.
    pub env: HashMap<String, String>,
    /// Live figures, about once a second; `None` computes none.
    pub progress: Option<ProgressFn>,
    /// An earlier run: adds the throughput finding and the comparison.
    pub baseline: Option<Summary>,
    /// Cancelled to stop the run gracefully (a first SIGINT/SIGTERM): executors end
    /// their schedule and VUs get their scenario's graceful stop. The summary is then
    /// marked `interrupted`.
    pub stop: Option<CancellationToken>,
    /// Cancelled to stop the run at once (a second signal): requests in flight are
    /// counted as interrupted.
    pub halt: Option<CancellationToken>,
    /// Start the load at this wall-clock time (`--start-at`), so the segments of a
    /// split run begin together; a time already past starts at once. The base URL is
    /// checked before the wait.
    pub start_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Live metric outputs (`--out prometheus-rw=URL`); their counters are read
    /// after the run.
    pub outputs: Option<Arc<crate::out::Outputs>>,
}

impl RunOptions {
    /// A plan against a base URL: no variables, no progress, no baseline.
    pub fn new(plan: Plan, base_url: impl Into<String>) -> RunOptions {
        RunOptions {
            plan,
            base_url: base_url.into(),
            env: HashMap::new(),
            progress: None,
            baseline: None,
            stop: None,
            halt: None,
            start_at: None,
            outputs: None,
        }
    }
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("plan", &self.plan.source)
            .field("base_url", &self.base_url)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("progress", &self.progress.is_some())
            .field("baseline", &self.baseline.as_ref().map(|b| &b.started_at))
            .finish()
    }
}

/// The figures of a live progress line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    pub elapsed: Duration,
    /// The plan's length without graceful stops.
    pub total: Duration,
    pub vus: u64,
    /// Requests so far.
    pub reqs: u64,
    /// Requests per second since the previous report.
    pub rps: f64,
    pub p95_ms: f64,
    /// Failed requests so far.
    pub errors: u64,
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("bad base URL `{url}`: {reason} (expected e.g. http://127.0.0.1:8080)")]
    BadUrl { url: String, reason: String },
    #[error("target unreachable at start ({url}): {reason}; no VU was started")]
    Unreachable { url: String, reason: String },
    #[error("cannot set up the HTTP client: {0}")]
    Setup(String),
    #[error("interrupted while waiting for --start-at; no VU was started")]
    Interrupted,
}
