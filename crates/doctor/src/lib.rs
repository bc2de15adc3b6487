//! powertune's compositions over every configured system (`[systems]` of
//! `powertune.toml`).
//!
//! `doctor` runs every configured inspection at once through the engines' `inspect`
//! entries (db, redis, queues, gateway status, apm report, frontend bundle) within one
//! time bound, samples the backend's memory over the same run, then walks the
//! runbook's Troubleshooting table row by row ([`rows`]): symptom observed or not,
//! each likely cause confirmed, ruled out or not measurable, with the evidence, and
//! the first action. It never collects what an engine collects; it judges across
//! what the engines return.

pub mod collect;
pub mod investigate;
pub mod journal;
pub mod memory;
pub mod model;
pub mod monitor;
pub mod options;
pub mod render;
pub mod rows;
pub mod rules;
pub mod verify;

pub use collect::{collect, Collected, Outcome};
pub use model::{Check, DoctorMetrics, Row, Status, SystemState, SystemStatus};
pub use options::DoctorOptions;

use powertune_core::{Finding, Inspection, Targets};

/// A doctor run that could not start.
#[derive(Debug, thiserror::Error)]
pub enum DoctorError {
    /// A bad option; the message names it and a right example.
    #[error("{0}")]
    Input(String),
}

/// `powertune doctor`: every configured inspection, then the Troubleshooting table.
pub async fn inspect(
    options: &DoctorOptions,
    targets: &Targets,
) -> Result<Inspection<DoctorMetrics>, DoctorError> {
    options.validate().map_err(DoctorError::Input)?;
    let collected = collect::collect(options, targets).await;
    Ok(judge(&collected, options, targets))
}

/// The rows, their findings and the terminal text from what was collected.
pub fn judge(
    c: &Collected,
    options: &DoctorOptions,
    targets: &Targets,
) -> Inspection<DoctorMetrics> {
    let rows = rows::rows(c, targets);
    let mut findings: Vec<Finding> = rows.iter().map(rows::finding).collect();
    if !c.systems.iter().any(|s| s.state == SystemState::Measured) {
        let missing: Vec<String> = c
            .systems
            .iter()
            .map(|s| match s.state {
                SystemState::NotMeasured => format!("{}: not measured — {}", s.name, s.reason),
                _ => format!("{}: not configured — not checked", s.name),
            })
            .collect();
        findings.push(rows::nothing_measured(&missing));
    }
    let inspection_findings = [
        c.db.findings(),
        c.redis.findings(),
        c.queues.findings(),
        c.gateway.findings(),
        c.apm.findings(),
        c.frontend.findings(),
    ]
    .concat();
    let metrics = DoctorMetrics {
        window_s: c.window_s,
        timeout_s: options.timeout.as_secs_f64(),
        systems: c.systems.clone(),
        rows,
        inspection_findings,
    };
    let text = render::render(&metrics);
    Inspection::new("doctor", findings, metrics, text)
}
