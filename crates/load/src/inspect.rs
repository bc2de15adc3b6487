//! The load engine's one entry: [`inspect`] runs a plan (collect), summarises it
//! (snapshot), judges it against the runbook's targets and the plan's thresholds
//! (judge) and renders the terminal text (render). [`inspect_compare`] does the last
//! two for two earlier runs.

use crate::collect;
use crate::compare::{compare, latency_changes, Delta, LatencyChange};
use crate::judge::findings;
use crate::options::{LoadError, RunOptions};
use crate::render::render_compare;
use crate::snapshot::Summary;
use crate::timeline::Aligned;
use powertune_core::{Inspection, Report, Targets};
use schemars::JsonSchema;
use serde::Serialize;

/// The metrics payload of a load report (`powertune load --json`, schema
/// `powertune.load-summary/v1`): the run's summary and, when a baseline was given, the
/// comparison with it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(
    title = "powertune load summary v1",
    extend("additionalProperties" = false)
)]
pub struct LoadMetrics {
    #[serde(flatten)]
    pub summary: Summary,
    /// Each headline metric against the baseline run (`--baseline`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_comparison: Option<Vec<Delta>>,
    /// Whether latency really changed against the baseline run, per group (the test
    /// of `powertune compare`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_changes: Option<Vec<LatencyChange>>,
}

impl LoadMetrics {
    pub fn new(summary: Summary, baseline: Option<&Summary>) -> LoadMetrics {
        let baseline_comparison = baseline.map(|b| compare(b, &summary));
        let latency_changes = baseline.map(|b| latency_changes(&[b], &[&summary]));
        LoadMetrics {
            summary,
            baseline_comparison,
            latency_changes,
        }
    }

    /// The findings of the run, with one `latency_vs_baseline` per group when a
    /// baseline was given.
    fn findings(
        &self,
        targets: &Targets,
        baseline: Option<&Summary>,
    ) -> Vec<powertune_core::Finding> {
        let mut out = findings(&self.summary, targets, baseline);
        if let Some(changes) = &self.latency_changes {
            out.extend(changes.iter().map(crate::judge::latency_change));
        }
        out
    }
}

/// Runs `opts.plan` and judges it: findings, the summary as the typed payload, and the
/// k6-like text (followed by the comparison table when a baseline is given).
pub async fn inspect(
    opts: &RunOptions,
    targets: &Targets,
) -> Result<Inspection<LoadMetrics>, LoadError> {
    let summary = collect::run(opts).await?;
    Ok(judge_run(summary, opts.baseline.as_ref(), targets))
}

/// Judges and renders a run already collected.
pub fn judge_run(
    summary: Summary,
    baseline: Option<&Summary>,
    targets: &Targets,
) -> Inspection<LoadMetrics> {
    let mut text = summary.render_text();
    let metrics = LoadMetrics::new(summary, baseline);
    if let Some(b) = baseline {
        text.push_str("\nagainst the baseline\n");
        text.push_str(&render_compare(&compare(b, &metrics.summary)));
        if let Some(changes) = &metrics.latency_changes {
            text.push('\n');
            text.push_str(&crate::render::render_latency_changes(changes));
        }
    }
    let findings = metrics.findings(targets, baseline);
    Inspection::new("load", findings, metrics, text)
}

impl Summary {
    /// The run as a powertune report: the findings, and this summary (plus the
    /// comparison when a baseline is given) in `metrics`.
    pub fn to_report(&self, targets: &Targets, baseline: Option<&Summary>) -> Report {
        let metrics = LoadMetrics::new(self.clone(), baseline);
        let findings = metrics.findings(targets, baseline);
        let metrics = serde_json::to_value(metrics).unwrap_or(serde_json::Value::Null);
        Report::new("load", findings, metrics)
    }
}

/// Two earlier runs to compare, and how they are named in the text.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    pub baseline: Summary,
    /// Where the baseline came from (its file name).
    pub baseline_name: String,
    pub current: Summary,
    pub current_name: String,
    /// Further runs of each side (`compare --before A1 A2 --after B1 B2`): pooled
    /// with the first for the latency test, their spread shown.
    pub more_baseline: Vec<Summary>,
    pub more_current: Vec<Summary>,
}

/// The metrics payload of a comparison (`powertune compare --json`).
#[derive(Debug, Clone, Serialize, serde::Deserialize, JsonSchema)]
#[schemars(title = "powertune compare v1", extend("additionalProperties" = false))]
pub struct CompareMetrics {
    /// Where each side's first run came from (its file name).
    #[serde(default)]
    pub baseline_name: String,
    #[serde(default)]
    pub current_name: String,
    /// Each headline metric of the current run against the baseline run (the first
    /// run of each side).
    pub baseline_comparison: Vec<Delta>,
    /// Whether latency really changed, per group, all runs of each side pooled.
    pub latency_changes: Vec<LatencyChange>,
    /// The first run of each side over time, on one grid (absent when either report
    /// has no timeline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timelines: Option<Aligned>,
}

/// The current run against the baseline: each headline metric's change, and the
/// runbook's "throughput ≥ baseline × 0.8" finding.
pub fn inspect_compare(opts: &CompareOptions, targets: &Targets) -> Inspection<CompareMetrics> {
    let (base, cur) = (&opts.baseline, &opts.current);
    let deltas = compare(base, cur);
    let changes = latency_changes(
        &side(base, &opts.more_baseline),
        &side(cur, &opts.more_current),
    );
    let mut findings: Vec<_> = findings(cur, targets, Some(base))
        .into_iter()
        .filter(|f| f.check == "throughput_vs_baseline")
        .collect();
    findings.extend(changes.iter().map(crate::judge::latency_change));
    let runs = |n: usize| {
        if n == 0 {
            String::new()
        } else {
            format!(" + {n} more run{}", if n == 1 { "" } else { "s" })
        }
    };
    let text = format!(
        "baseline {} ({}){}\ncurrent  {} ({}){}\n\n{}\n{}",
        opts.baseline_name,
        base.started_at,
        runs(opts.more_baseline.len()),
        opts.current_name,
        cur.started_at,
        runs(opts.more_current.len()),
        render_compare(&deltas),
        crate::render::render_latency_changes(&changes),
    );
    Inspection::new(
        "compare",
        findings,
        CompareMetrics {
            baseline_name: opts.baseline_name.clone(),
            current_name: opts.current_name.clone(),
            baseline_comparison: deltas,
            latency_changes: changes,
            timelines: base
                .timeline
                .as_ref()
                .zip(cur.timeline.as_ref())
                .and_then(|(b, c)| crate::timeline::align(b, c)),
        },
        text,
    )
}

/// The first run of a side and its further runs.
fn side<'a>(first: &'a Summary, more: &'a [Summary]) -> Vec<&'a Summary> {
    std::iter::once(first).chain(more.iter()).collect()
}
