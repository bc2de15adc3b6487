//! Findings: what a judge says about one thing it looked at.

use serde::{Deserialize, Serialize};
use std::fmt;

/// One meaning everywhere: `Pass` within target, `Warn` past target but within the
/// maximum acceptable, `Fail` past the maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Warn,
    Fail,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
        }
    }

    /// Judges a value where lower is better: within `target` passes, within `max` warns.
    /// `target` is exclusive (the runbook writes "< 100ms"), `max` inclusive
    /// ("Maximum Acceptable 200ms").
    pub fn lower_is_better(observed: f64, target: f64, max: Option<f64>) -> Verdict {
        if observed < target {
            Verdict::Pass
        } else if max.map_or(observed == target, |m| observed <= m) {
            Verdict::Warn
        } else {
            Verdict::Fail
        }
    }

    /// Judges a value where higher is better (hit rates, coverage, throughput ratios).
    pub fn higher_is_better(observed: f64, target: f64, min: Option<f64>) -> Verdict {
        if observed > target {
            Verdict::Pass
        } else if min.map_or(observed == target, |m| observed >= m) {
            Verdict::Warn
        } else {
            Verdict::Fail
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// What a judge says about one subject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// The runbook area: `load`, `db`, `redis`, `queues`, `gateway`, `apm`.
    pub area: String,
    /// A stable identifier of the check, e.g. `api_latency_p95`, `fk_without_index`.
    pub check: String,
    /// What was looked at: an endpoint type, a table, a queue, a provider.
    pub subject: String,
    /// The measured value, formatted with its unit.
    pub observed: String,
    /// The runbook's target, formatted (`< 150ms`).
    pub target: String,
    /// The maximum acceptable, when the runbook gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
    pub verdict: Verdict,
    /// Numbers and names behind the verdict.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub evidence: String,
    /// The runbook's first action for this symptom, in words a person can do.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub action: String,
}

impl Finding {
    /// Starts a finding; fill the rest with the builder methods.
    pub fn new(area: &str, check: &str, subject: impl Into<String>, verdict: Verdict) -> Self {
        Finding {
            area: area.to_string(),
            check: check.to_string(),
            subject: subject.into(),
            observed: String::new(),
            target: String::new(),
            limit: None,
            verdict,
            evidence: String::new(),
            action: String::new(),
        }
    }

    pub fn observed(mut self, v: impl Into<String>) -> Self {
        self.observed = v.into();
        self
    }

    pub fn target(mut self, v: impl Into<String>) -> Self {
        self.target = v.into();
        self
    }

    pub fn limit(mut self, v: impl Into<String>) -> Self {
        self.limit = Some(v.into());
        self
    }

    pub fn evidence(mut self, v: impl Into<String>) -> Self {
        self.evidence = v.into();
        self
    }

    pub fn action(mut self, v: impl Into<String>) -> Self {
        self.action = v.into();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_follow_the_runbook() {
        // Authentication: < 100ms target, 200ms maximum acceptable.
        assert_eq!(
            Verdict::lower_is_better(99.0, 100.0, Some(200.0)),
            Verdict::Pass
        );
        assert_eq!(
            Verdict::lower_is_better(100.0, 100.0, Some(200.0)),
            Verdict::Warn
        );
        assert_eq!(
            Verdict::lower_is_better(200.0, 100.0, Some(200.0)),
            Verdict::Warn
        );
        assert_eq!(
            Verdict::lower_is_better(200.1, 100.0, Some(200.0)),
            Verdict::Fail
        );
        assert_eq!(Verdict::lower_is_better(5.0, 1.0, None), Verdict::Fail);
        assert_eq!(Verdict::higher_is_better(96.0, 95.0, None), Verdict::Pass);
        assert_eq!(
            Verdict::higher_is_better(60.0, 70.0, Some(50.0)),
            Verdict::Warn
        );
        assert_eq!(
            Verdict::higher_is_better(40.0, 70.0, Some(50.0)),
            Verdict::Fail
        );
        assert!(Verdict::Fail > Verdict::Warn && Verdict::Warn > Verdict::Pass);
    }
}
