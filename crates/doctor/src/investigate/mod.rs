//! `powertune investigate endpoint|queue`: the runbook's two Procedures ("investigate
//! a slow endpoint", "investigate a queue backlog") run step by step over the systems
//! of `[systems]`.
//!
//! A composition like doctor: it calls the engines' entries — `apm endpoint` and
//! `apm report` of a running `apm serve`, `db explain` on `[systems] db`, `queues` on
//! Sidekiq's Redis, `gateway status` — and judges across what they return. Each step
//! says what it found, or that it was not measured and why. The verdict: FAIL when a
//! step found a cause (and when nothing at all was measured), WARN when a step could
//! not be measured, PASS otherwise; the CLI exits 99 on FAIL.

pub mod endpoint;
mod explain;
mod gateway;
pub mod model;
pub mod queue;
mod render;

pub use endpoint::{investigate_endpoint, EndpointOptions};
pub use model::{EndpointMetrics, QueueMetrics, Step, WaitOutcome};
pub use queue::{investigate_queue, QueueOptions};

use crate::model::{Status, SystemState, SystemStatus};
use powertune_core::{Finding, Value, Verdict};

/// An investigation that could not start.
#[derive(Debug, thiserror::Error)]
pub enum InvestigateError {
    /// A bad option; the message names it and a right example.
    #[error("{0}")]
    Input(String),
}

/// `--timeout` within doctor's bounds.
fn check_timeout(timeout: std::time::Duration) -> Result<(), String> {
    use crate::options::{MAX_TIMEOUT, MIN_TIMEOUT};
    let f = powertune_core::duration::format;
    if timeout < MIN_TIMEOUT || timeout > MAX_TIMEOUT {
        return Err(format!(
            "--timeout {} must be between {} and {} (e.g. --timeout 60s)",
            f(timeout),
            f(MIN_TIMEOUT),
            f(MAX_TIMEOUT)
        ));
    }
    Ok(())
}

/// A step as a finding (area `investigate`, check = the step's id).
pub fn finding(s: &Step) -> Finding {
    let observed = match s.status {
        Status::Confirmed => "found",
        Status::RuledOut => "clear",
        Status::NotMeasured => "not measured",
    };
    let mut evidence = s.found.clone();
    if !s.details.is_empty() {
        evidence = format!("{evidence}; {}", s.details.join("; "));
    }
    if !s.source.is_empty() {
        evidence = format!("{evidence} [{}]", s.source);
    }
    let mut f = Finding::new(
        "investigate",
        &s.id,
        format!("step {}: {}", s.step, s.name),
        s.verdict,
    )
    .observed(Value::Text(observed.to_string()))
    .evidence(evidence);
    if !s.action.is_empty() {
        f = f.action(s.action.clone());
    }
    f
}

/// The findings of the steps, plus a FAIL when no step could be measured (a run that
/// measured nothing never passes).
pub fn findings(steps: &[Step], systems: &[SystemStatus]) -> Vec<Finding> {
    let mut out: Vec<Finding> = steps.iter().map(finding).collect();
    if steps.iter().all(|s| s.status == Status::NotMeasured) {
        let missing: Vec<String> = systems
            .iter()
            .map(|s| match s.state {
                SystemState::NotMeasured => format!("{}: not measured — {}", s.name, s.reason),
                SystemState::NotConfigured => format!("{}: not configured", s.name),
                SystemState::Measured => format!("{}: measured", s.name),
            })
            .collect();
        out.push(
            Finding::new("investigate", "coverage", "steps measured", Verdict::Fail)
                .observed(Value::Text("nothing measured".into()))
                .target(Value::Text("at least one step measured".into()))
                .evidence(missing.join("; "))
                .action("Configure the systems in [systems] of powertune.toml (or the flags) and check they are reachable from here"),
        );
    }
    out
}
