//! What doctor reports: each system's state, each Troubleshooting row with its
//! symptom and likely cause, and the other signals the engines raised.

use powertune_core::Finding;
use serde::Serialize;

/// Whether a symptom was seen, or a cause holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Symptom seen / cause confirmed by the figures.
    Confirmed,
    /// Measured, and the figures say no.
    RuledOut,
    /// What would tell was not measured (system not configured, timed out, no data).
    NotMeasured,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Confirmed => "confirmed",
            Status::RuledOut => "ruled out",
            Status::NotMeasured => "not measurable",
        }
    }
}

/// A symptom or a cause with the evidence behind its status.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Check {
    /// The runbook's words (`P95 latency creeping up`, `Cache hit rate degraded`).
    pub name: String,
    pub status: Status,
    /// The deciding figure in words (`hit rate 31.2% over 1,200 lookups`), or why it
    /// could not be measured.
    pub figure: String,
    /// Which check of which system gave it (`redis INFO stats (delta over the run)`).
    pub source: String,
}

impl Check {
    pub fn new(
        name: &str,
        status: Status,
        figure: impl Into<String>,
        source: impl Into<String>,
    ) -> Check {
        Check {
            name: name.to_string(),
            status,
            figure: figure.into(),
            source: source.into(),
        }
    }

    pub fn not_measured(name: &str, why: impl Into<String>) -> Check {
        Check::new(name, Status::NotMeasured, why, "")
    }
}

/// One row of the runbook's Troubleshooting table.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Row {
    /// Short id, also the finding's `check` (`p95_cache`, `retry_set`, ...).
    pub id: String,
    pub symptom: Check,
    pub causes: Vec<Check>,
    /// The runbook's first action.
    pub first_action: String,
    /// Other figures the procedures name (top error classes, open breakers, ...).
    pub signals: Vec<String>,
}

/// How one configured system fared.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SystemState {
    NotConfigured,
    Measured,
    /// Configured, and the inspection failed or timed out.
    NotMeasured,
}

/// A system's line in the report.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct SystemStatus {
    /// `db`, `redis`, `queues`, `gateway`, `apm`, `frontend`, `memory`.
    pub name: String,
    /// The address (secrets masked), or empty when not configured.
    pub address: String,
    pub state: SystemState,
    /// Why it was not measured (timeout, connection refused), secrets masked.
    pub reason: String,
    /// Time the inspection took, in milliseconds (0 when not run).
    pub elapsed_ms: f64,
}

/// The metrics payload of `powertune doctor`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct DoctorMetrics {
    /// Seconds the trends (retry set, memory, Redis hit rate) were observed.
    pub window_s: f64,
    /// The bound on the whole run, in seconds.
    pub timeout_s: f64,
    pub systems: Vec<SystemStatus>,
    pub rows: Vec<Row>,
    /// Every finding of the inspections (the procedures' other signals; the terminal
    /// lists the WARN and FAIL ones). They do not decide the verdict: the rows do.
    pub inspection_findings: Vec<Finding>,
}
