//! Run against run: each headline metric of the current run beside a baseline's.

use crate::snapshot::Summary;
use powertune_core::{LatencyHistogram, Unit};
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

/// Whether the latency of one group of requests (all of them, an endpoint type, a
/// scenario) really changed between the two sides, each side one run or several
/// pooled: the rank test and bootstrap intervals of `powertune_core::stats` on the
/// stored histograms.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[schemars(extend("additionalProperties" = false))]
pub struct LatencyChange {
    /// `all requests`, an endpoint type's title, or `scenario NAME`.
    pub group: String,
    pub baseline_runs: usize,
    pub current_runs: usize,
    /// Requests on each side (pooled).
    pub baseline_requests: u64,
    pub current_requests: u64,
    /// Two-sided p-value of the Mann–Whitney U test.
    pub p_value: f64,
    /// P(a current request is slower than a baseline one) + ½·P(equal).
    pub prob_current_slower: f64,
    pub median_delta_ms: f64,
    /// 95 % bootstrap interval of the median's change.
    pub median_low_ms: f64,
    pub median_high_ms: f64,
    pub p95_baseline_ms: f64,
    pub p95_current_ms: f64,
    pub p95_delta_ms: f64,
    /// 95 % bootstrap interval of p95's change.
    pub p95_low_ms: f64,
    pub p95_high_ms: f64,
    /// Run-to-run spread of p95 on each side, (max − min) / median; null with one run.
    pub spread_baseline: Option<f64>,
    pub spread_current: Option<f64>,
    /// `slower`, `faster` or `no_significant_change`.
    pub verdict: String,
    /// The same in words: `slower: p95 +38ms (+21%), significant (p < 0.001)`.
    pub words: String,
}

/// The latency change of every group both sides measured.
pub fn latency_changes(baseline: &[&Summary], current: &[&Summary]) -> Vec<LatencyChange> {
    use powertune_core::stats::{self, Direction};
    let mut groups: Vec<(String, Vec<&LatencyHistogram>, Vec<&LatencyHistogram>)> = vec![(
        "all requests".to_string(),
        baseline
            .iter()
            .map(|s| &s.http.duration.histogram)
            .collect(),
        current.iter().map(|s| &s.http.duration.histogram).collect(),
    )];
    if let (Some(b0), Some(c0)) = (baseline.first(), current.first()) {
        for e in &b0.endpoint_types {
            let t = e.endpoint_type;
            if c0.endpoint_types.iter().any(|c| c.endpoint_type == t) {
                groups.push((
                    e.title.clone(),
                    histograms(baseline, |s| endpoint(s, t)),
                    histograms(current, |s| endpoint(s, t)),
                ));
            }
        }
        for sc in &b0.scenarios {
            if c0.scenarios.iter().any(|c| c.name == sc.name) {
                groups.push((
                    format!("scenario {}", sc.name),
                    histograms(baseline, |s| scenario(s, &sc.name)),
                    histograms(current, |s| scenario(s, &sc.name)),
                ));
            }
        }
    }
    groups
        .into_iter()
        .filter_map(|(group, b, c)| {
            let cmp = stats::compare(&b, &c)?;
            Some(LatencyChange {
                group,
                baseline_runs: b.len(),
                current_runs: c.len(),
                baseline_requests: cmp.test.n_a,
                current_requests: cmp.test.n_b,
                p_value: cmp.test.p_value,
                prob_current_slower: cmp.test.prob_b_slower,
                median_delta_ms: cmp.median.delta_ms,
                median_low_ms: cmp.median.low_ms,
                median_high_ms: cmp.median.high_ms,
                p95_baseline_ms: cmp.p95.before_ms,
                p95_current_ms: cmp.p95.after_ms,
                p95_delta_ms: cmp.p95.delta_ms,
                p95_low_ms: cmp.p95.low_ms,
                p95_high_ms: cmp.p95.high_ms,
                spread_baseline: cmp.spread_before,
                spread_current: cmp.spread_after,
                verdict: match cmp.direction {
                    Direction::Slower => "slower",
                    Direction::Faster => "faster",
                    Direction::NoSignificantChange => "no_significant_change",
                }
                .to_string(),
                words: cmp.words(),
            })
        })
        .collect()
}

/// The histogram `pick` finds in each run of a side (runs without it are skipped).
fn histograms<'a>(
    side: &[&'a Summary],
    pick: impl Fn(&'a Summary) -> Option<&'a LatencyHistogram>,
) -> Vec<&'a LatencyHistogram> {
    side.iter().filter_map(|s| pick(s)).collect()
}

fn endpoint(s: &Summary, t: powertune_core::EndpointType) -> Option<&LatencyHistogram> {
    s.endpoint_types
        .iter()
        .find(|x| x.endpoint_type == t)
        .map(|x| &x.http.duration.histogram)
}

fn scenario<'a>(s: &'a Summary, name: &str) -> Option<&'a LatencyHistogram> {
    s.scenarios
        .iter()
        .find(|x| x.name == name)
        .map(|x| &x.http.duration.histogram)
}
