//! What `powertune investigate` reports: the runbook's procedure step by step, each
//! with what it found, and the figures behind it.

use crate::model::{Status, SystemStatus};
use powertune_core::Verdict;
use serde::Serialize;

/// One step of a runbook procedure.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Step {
    /// The step's number in the runbook's procedure (1-6).
    pub step: u32,
    /// Short id, also the finding's `check` (`p95`, `breakdown`, `db_bound`, ...).
    pub id: String,
    /// The runbook's words for the step.
    pub name: String,
    /// Confirmed: the step found its cause (or its symptom); ruled out: measured and
    /// clear; not measured: what would tell was not there, `found` says why.
    pub status: Status,
    /// The step's verdict in the report: FAIL when it found a cause, WARN when it
    /// could not be measured (or P95 is between target and maximum), PASS otherwise.
    pub verdict: Verdict,
    /// What it found, in one line (or why it was not measured).
    pub found: String,
    /// The figures behind it, one per line.
    pub details: Vec<String>,
    /// Which inspection of which system gave it.
    pub source: String,
    /// The runbook's action for what was found (empty when nothing was).
    pub action: String,
}

impl Step {
    pub fn new(step: u32, id: &str, name: &str) -> Step {
        Step {
            step,
            id: id.to_string(),
            name: name.to_string(),
            status: Status::NotMeasured,
            verdict: Verdict::Warn,
            found: String::new(),
            details: Vec::new(),
            source: String::new(),
            action: String::new(),
        }
    }

    /// Not measured, with the reason.
    pub fn not_measured(mut self, why: impl Into<String>) -> Step {
        self.status = Status::NotMeasured;
        self.verdict = Verdict::Warn;
        self.found = format!("not measured — {}", why.into());
        self
    }

    /// A cause (or the symptom) found: FAIL.
    pub fn confirmed(mut self, found: impl Into<String>, action: impl Into<String>) -> Step {
        self.status = Status::Confirmed;
        self.verdict = Verdict::Fail;
        self.found = found.into();
        self.action = action.into();
        self
    }

    /// Measured and clear: PASS.
    pub fn ruled_out(mut self, found: impl Into<String>) -> Step {
        self.status = Status::RuledOut;
        self.verdict = Verdict::Pass;
        self.found = found.into();
        self
    }

    pub fn source(mut self, s: impl Into<String>) -> Step {
        self.source = s.into();
        self
    }

    pub fn details(mut self, d: Vec<String>) -> Step {
        self.details = d;
        self
    }
}

/// One normalised statement of the route, from the DB spans of its example traces.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct RouteStatement {
    /// The statement as the APM normalised it (values replaced by `?`).
    pub statement: String,
    /// Spans of it in the example traces.
    pub calls: u64,
    pub total_ms: f64,
    pub max_ms: f64,
    /// Whether a span carried it with its values (EXPLAIN ANALYZE can run it).
    pub captured: bool,
}

/// The EXPLAIN of the route's heaviest statement on `[systems] db`.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ExplainRun {
    pub statement: String,
    /// EXPLAIN ANALYZE (executed in a rolled-back transaction) or the plan only.
    pub analyze: bool,
    /// Why it was run the way it was (values captured, or not and why).
    pub note: String,
    /// The plan's red flags (`db explain`'s judge): check, node path, message.
    pub flags: Vec<PlanRedFlag>,
    /// Execution time ANALYZE measured, in milliseconds.
    pub execution_ms: Option<f64>,
    /// The plan tree as `db explain` draws it.
    pub tree: String,
}

/// One red flag of the plan.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct PlanRedFlag {
    /// `seq_scan_filter`, `sort_without_limit`, `disk_sort`, ... (`db explain`'s checks).
    pub check: String,
    pub path: String,
    pub message: String,
    pub action: String,
}

/// The metrics payload of `powertune investigate endpoint`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct EndpointMetrics {
    /// `METHOD /template`, as the APM names it.
    pub route: String,
    /// The APM history read, in seconds.
    pub apm_window_s: f64,
    pub systems: Vec<SystemStatus>,
    /// Requests, P95 and its endpoint class target (None without traces).
    pub latency: Option<RouteLatency>,
    /// Time shares in percent over the route's requests: database, outgoing HTTP
    /// (LLM calls included), application code; and the LLM calls' share of the
    /// example traces.
    pub breakdown: Option<Shares>,
    pub statements: Vec<RouteStatement>,
    pub explain: Option<ExplainRun>,
    /// The fix candidates in the runbook's words, from what was found.
    pub candidates: Vec<String>,
    pub steps: Vec<Step>,
}

/// The route's P95 against its endpoint class.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct RouteLatency {
    pub endpoint_type: String,
    pub requests: u64,
    pub p95_ms: f64,
    pub target_ms: f64,
    pub max_ms: f64,
}

/// Where a route's time goes, in percent.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Shares {
    pub db_pct: f64,
    pub http_pct: f64,
    pub app_pct: f64,
    /// LLM (provider) calls' share of the example traces' time (None without
    /// examples).
    pub llm_pct: Option<f64>,
    /// `database`, `outgoing HTTP / provider calls` or `application code`.
    pub dominant: String,
}

/// One reading of the watched queue.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct QueuePoint {
    /// Seconds since the watch started.
    pub at_s: f64,
    pub size: u64,
    pub latency_s: f64,
    /// Change of depth per second (negative = draining).
    pub net_per_s: f64,
    /// Seconds until empty at the current rate (None when not draining).
    pub eta_s: Option<f64>,
}

/// The Sidekiq processes that poll the queue.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Capacity {
    pub processes: u64,
    pub busy: u64,
    pub concurrency: u64,
}

/// How step 6 (back to steady state within 15 minutes) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WaitOutcome {
    /// The queue was at steady state when the watch started (or before it ended).
    Steady,
    /// `--max-wait` passed with the queue still backed up.
    TimedOut,
    /// `--no-wait`.
    Skipped,
    /// Ctrl-C.
    Interrupted,
    /// Sidekiq's Redis was not reachable.
    NotMeasured,
}

/// The metrics payload of `powertune investigate queue`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct QueueMetrics {
    pub queue: String,
    pub systems: Vec<SystemStatus>,
    /// The queue at the start: size and latency (None when Sidekiq was not read).
    pub start: Option<QueuePoint>,
    /// Other queues past the latency target or the backlog threshold: name, size,
    /// latency in seconds.
    pub backed_up: Vec<(String, u64, f64)>,
    pub capacity: Option<Capacity>,
    /// Seconds the watch may last (`--max-wait`), 0 with `--no-wait`.
    pub max_wait_s: f64,
    pub wait: WaitOutcome,
    /// The watch's readings (at most `MAX_POINTS`, evenly thinned).
    pub watch: Vec<QueuePoint>,
    pub steps: Vec<Step>,
}
