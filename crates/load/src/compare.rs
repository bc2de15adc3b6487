//! Run against run: each headline metric of the current run beside a baseline's.

use crate::snapshot::Summary;
use powertune_core::Unit;
use serde::{Deserialize, Serialize};

/// One line of a run-to-run comparison.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[schemars(extend("additionalProperties" = false))]
pub struct Delta {
    /// The metric and what of it (`http_req_duration p95 (ms)`).
    pub metric: String,
    pub baseline: f64,
    pub current: f64,
    /// The unit of `baseline` and `current`.
    pub unit: Unit,
    /// (current − baseline) / baseline × 100; null when the baseline is 0.
    pub change_pct: Option<f64>,
    /// Whether a rise is good (throughput) or bad (latency, errors).
    pub higher_is_better: bool,
}

/// Each headline metric of `current` against `baseline`.
pub fn compare(baseline: &Summary, current: &Summary) -> Vec<Delta> {
    let mut out = Vec::new();
    let mut push = |metric: String, unit: Unit, b: f64, c: f64, hib: bool| {
        out.push(Delta {
            metric,
            baseline: b,
            current: c,
            unit,
            change_pct: (b != 0.0).then(|| (c - b) / b * 100.0),
            higher_is_better: hib,
        })
    };
    let (b, c) = (&baseline.http, &current.http);
    push(
        "http_reqs rate (req/s)".into(),
        Unit::PerSecond,
        b.rate,
        c.rate,
        true,
    );
    push(
        "http_req_duration med (ms)".into(),
        Unit::Ms,
        b.duration.stats.med,
        c.duration.stats.med,
        false,
    );
    push(
        "http_req_duration p95 (ms)".into(),
        Unit::Ms,
        b.duration.stats.p95,
        c.duration.stats.p95,
        false,
    );
    push(
        "http_req_duration p99 (ms)".into(),
        Unit::Ms,
        b.duration.stats.p99,
        c.duration.stats.p99,
        false,
    );
    push(
        "http_req_failed (%)".into(),
        Unit::Percent,
        b.failed_rate() * 100.0,
        c.failed_rate() * 100.0,
        false,
    );
    push(
        "iterations rate (/s)".into(),
        Unit::PerSecond,
        baseline.iterations as f64 / baseline.duration_s.max(1e-9),
        current.iterations as f64 / current.duration_s.max(1e-9),
        true,
    );
    for e in &current.endpoint_types {
        if let Some(be) = baseline
            .endpoint_types
            .iter()
            .find(|x| x.endpoint_type == e.endpoint_type)
        {
            push(
                format!("{} p95 (ms)", e.title),
                Unit::Ms,
                be.http.duration.stats.p95,
                e.http.duration.stats.p95,
                false,
            );
        }
    }
    for s in &current.scenarios {
        if let Some(bs) = baseline.scenarios.iter().find(|x| x.name == s.name) {
            if s.http.reqs > 0 {
                push(
                    format!("{} p95 (ms)", s.name),
                    Unit::Ms,
                    bs.http.duration.stats.p95,
                    s.http.duration.stats.p95,
                    false,
                );
            }
            push(
                format!("{} iterations", s.name),
                Unit::Count,
                bs.iterations as f64,
                s.iterations as f64,
                true,
            );
        }
    }
    out
}
