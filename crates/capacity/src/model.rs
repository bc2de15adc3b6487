//! The snapshot of a capacity run: every step measured, the knee, the limiting
//! resource, the headroom and the USL fit. Serialised as the report's `metrics`
//! (schema `docs/schema/capacity.v1.json`).

use crate::knee::Knee;
use crate::mix::Share;
use crate::resources::{Kind, Reading};
use crate::steady::Steadiness;
use crate::usl::{Regime, Usl};
use serde::{Deserialize, Serialize};

/// Always `powertune.capacity/v1`.
pub const SCHEMA: &str = "powertune.capacity/v1";

/// One endpoint type within a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct EndpointRow {
    /// The runbook's endpoint type (`Authentication`).
    pub endpoint_type: String,
    pub requests: u64,
    pub failed: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    /// The runbook's P95 target and maximum acceptable for the type.
    pub target_ms: f64,
    pub max_ms: f64,
    /// `pass`, `warn` (past target) or `fail` (past maximum).
    pub verdict: String,
}

/// One measured step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StepRecord {
    /// In the order run (1-based).
    pub number: usize,
    /// A step run between the last good rate and the knee to narrow it down.
    pub refinement: bool,
    /// Arrivals offered per second (every scenario together).
    pub offered: f64,
    /// Arrivals (iterations) completed per second.
    pub achieved: f64,
    /// HTTP requests offered and completed per second.
    pub offered_rps: f64,
    pub achieved_rps: f64,
    /// Seconds measured (after the warm-up).
    pub measured_s: f64,
    pub requests: u64,
    pub failed: u64,
    pub error_rate_pct: f64,
    /// Every request (coordinated-omission corrected).
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    /// p95 from send to response (without time waiting to be sent).
    pub p95_raw_ms: f64,
    /// Mean requests in flight (Little's law: achieved × mean latency).
    pub in_flight: f64,
    pub dropped_iterations: u64,
    pub endpoint_types: Vec<EndpointRow>,
    /// What broke a target (`Authentication P95 212 ms > 200 ms maximum`).
    pub violations: Vec<String>,
    pub steadiness: Steadiness,
    /// Times the measurement was repeated because latency still trended.
    pub extensions: u32,
    pub resources: Vec<Reading>,
    /// `--db`: the heaviest statements within the step (`pg_stat_statements` delta,
    /// by total time).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statements: Vec<crate::resources::StepStatement>,
    /// The generator could not offer the load (its CPU, or time lost before sending).
    pub generator_limited: bool,
    /// Why, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator_note: Option<String>,
}

/// What the knee is blamed on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Limiter {
    /// `DB pool`, `CPU worker threads`, ...; `not explained` when nothing crossed.
    pub resource: String,
    pub kind: Option<Kind>,
    /// The resource's figures at the knee and the target it broke.
    pub evidence: String,
    /// The runbook's step-4 action.
    pub action: String,
    /// Step number at which the resource first crossed.
    pub first_crossed_step: Option<usize>,
    /// Sources that were not measured (when nothing explains the knee).
    pub not_measured: Vec<String>,
}

/// Headroom against the projected growth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Headroom {
    /// Arrivals per second today (`--baseline-rate`, else the start rate).
    pub baseline: f64,
    pub growth: f64,
    /// baseline × growth.
    pub projected: f64,
    /// The highest step within every target, if any.
    pub max_sustainable: Option<f64>,
    /// max_sustainable ÷ projected (≥ 1: enough).
    pub ratio: Option<f64>,
    pub enough: bool,
    /// The run stopped (rate or time limit) before any knee: the true maximum is
    /// higher than `max_sustainable`.
    pub lower_bound: bool,
}

/// The USL fit over the steady steps, or why not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct UslResult {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fit: Option<Usl>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regime: Option<Regime>,
    /// Concurrency and throughput of the law's peak (requests per second).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_concurrency: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_throughput: Option<f64>,
    /// Why no fit is shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// The (concurrency, throughput) points fitted.
    pub points: Vec<crate::usl::Measurement>,
}

/// Why the steps stopped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    SloViolation,
    Saturation,
    GeneratorSaturated,
    MaxRate,
    MaxTime,
    MaxSteps,
    Interrupted,
}

impl StopReason {
    pub fn words(&self) -> &'static str {
        match self {
            StopReason::SloViolation => "first SLO violation",
            StopReason::Saturation => "saturation (achieved < 90% of offered while latency climbs)",
            StopReason::GeneratorSaturated => "the load generator saturated",
            StopReason::MaxRate => "maximum rate reached",
            StopReason::MaxTime => "time limit reached",
            StopReason::MaxSteps => "step limit reached",
            StopReason::Interrupted => "interrupted",
        }
    }
}

/// `--verify`: the earlier run's figures and this run's verdict on them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Verification {
    /// The earlier report's file.
    pub previous_file: String,
    pub previous_knee: Option<f64>,
    pub previous_max_sustainable: Option<f64>,
    pub projected: f64,
    /// This run's step at the projected load and at the old knee (by offered rate).
    pub at_projected: Option<usize>,
    pub at_old_knee: Option<usize>,
    /// The SLO violation moved beyond the projected load.
    pub moved_beyond_projection: bool,
    pub verdict: String,
}

/// The metrics payload of `powertune capacity`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(title = "powertune capacity v1", extend("additionalProperties" = false))]
pub struct CapacityMetrics {
    #[schemars(extend("const" = "powertune.capacity/v1"))]
    pub schema: String,
    /// The scenario file.
    pub source: String,
    /// The base URL, secrets masked.
    pub base_url: String,
    pub started_at: String,
    pub duration_s: f64,
    pub mix: Vec<Share>,
    /// Scenarios left out of the steps, with the reason.
    pub left_out: Vec<String>,
    pub warmup_s: f64,
    pub step_s: f64,
    /// Steps in the order run.
    pub steps: Vec<StepRecord>,
    pub stop: StopReason,
    /// Index into `steps` ordered by offered rate, as judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knee: Option<Knee>,
    /// Offered rate of the knee step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knee_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limiter: Option<Limiter>,
    pub headroom: Headroom,
    pub usl: UslResult,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
    /// One sentence: the verdict.
    pub verdict: String,
    /// The run was cut short by a signal.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
}
