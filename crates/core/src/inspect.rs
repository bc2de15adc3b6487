//! The one entry every engine exposes.
//!
//! Each engine crate has a function of this shape (a convention, not a trait, because
//! the options and the error type differ per engine and the functions are async):
//!
//! ```text
//! pub async fn inspect(options: &Options, targets: &Targets) -> Result<Inspection<Metrics>, Error>
//! ```
//!
//! The [`Inspection`] carries everything a renderer needs: the findings, the typed
//! metrics payload (serialised into the report's `metrics`, with a schema in
//! `docs/schema/`), and the command-specific terminal section. A CLI command is then
//! parse → validate → `inspect` → emit; compositions (capacity, doctor) call the same
//! functions and judge across the inspections they get back.

use crate::finding::Finding;
use crate::report::Report;
use serde::Serialize;

/// What one inspection found: findings, a typed metrics payload and the terminal text.
#[derive(Debug, Clone)]
pub struct Inspection<M> {
    /// The command that produced it (`db`, `redis`, `queues`, `apm`, `gateway`, `load`).
    pub command: &'static str,
    pub findings: Vec<Finding>,
    /// The measurements behind the findings; serialised as the report's `metrics`.
    pub metrics: M,
    /// The command-specific section shown above the findings table (may be empty),
    /// rendered by the engine's `render` stage without colour.
    pub text: String,
}

impl<M: Serialize> Inspection<M> {
    pub fn new(command: &'static str, findings: Vec<Finding>, metrics: M, text: String) -> Self {
        Inspection {
            command,
            findings,
            metrics,
            text,
        }
    }

    /// The versioned report: findings plus the metrics as JSON.
    pub fn report(&self) -> Result<Report, serde_json::Error> {
        Ok(Report::new(
            self.command,
            self.findings.clone(),
            serde_json::to_value(&self.metrics)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::Verdict;

    #[derive(Serialize)]
    struct M {
        tables: u32,
    }

    #[test]
    fn the_report_carries_findings_and_typed_metrics() {
        let i = Inspection::new(
            "db",
            vec![Finding::new("db", "x", "y", Verdict::Fail)],
            M { tables: 3 },
            String::new(),
        );
        let r = i.report().unwrap();
        assert_eq!(r.command, "db");
        assert_eq!(r.verdict, Verdict::Fail);
        assert_eq!(r.metrics["tables"], 3);
    }
}
