//! `--verify previous.json` (the runbook's step 5, "re-test"): two steps, at the
//! projected load and at the earlier run's knee, and one verdict: did the SLO
//! violation move beyond the projected growth?

use crate::config::Schedule;
use crate::error::CapacityError;
use crate::knee::SATURATED;
use crate::model::{CapacityMetrics, StepRecord, Verification, SCHEMA};
use powertune_core::finding::Value;
use powertune_core::{units, Finding, Quantity, Targets, Verdict};
use std::path::Path;

/// An earlier capacity report.
#[derive(Debug, Clone)]
pub struct Previous {
    pub file: String,
    pub metrics: CapacityMetrics,
}

/// Reads a `powertune capacity --json` report (size-capped).
pub fn read(path: &Path) -> Result<Previous, CapacityError> {
    let shown = path.display().to_string();
    let bad = |why: String| {
        CapacityError::Config(format!(
            "--verify {shown}: {why} (expected the --json report of an earlier `powertune capacity` run)"
        ))
    };
    let text = powertune_core::baseline::read_limited(path).map_err(&bad)?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let metrics = v.get("metrics").cloned().unwrap_or(serde_json::Value::Null);
    if metrics.get("schema").and_then(|s| s.as_str()) != Some(SCHEMA) {
        return Err(bad(format!("its metrics are not {SCHEMA}")));
    }
    let metrics: CapacityMetrics =
        serde_json::from_value(metrics).map_err(|e| bad(e.to_string()))?;
    Ok(Previous {
        file: shown,
        metrics,
    })
}

/// The projected load: `--baseline-rate` (else the earlier baseline) × the growth.
pub fn projected(prev: &Previous, sch: &Schedule) -> f64 {
    sch.baseline_rate.unwrap_or(prev.metrics.headroom.baseline) * sch.growth_factor
}

/// The rates to run: the projected load, then the old knee when it differs.
pub fn rates(prev: &Previous, sch: &Schedule) -> Vec<f64> {
    let mut out = vec![projected(prev, sch)];
    if let Some(k) = prev.metrics.knee_rate {
        if (k - out[0]).abs() > 1e-6 * k.max(1.0) {
            out.push(k);
        }
    }
    out
}

fn within(s: &StepRecord) -> bool {
    s.violations.is_empty()
        && !s.generator_limited
        && (s.offered <= 0.0 || s.achieved / s.offered >= SATURATED)
}

fn nearest(steps: &[StepRecord], rate: f64) -> Option<usize> {
    steps
        .iter()
        .enumerate()
        .min_by(|a, b| {
            (a.1.offered - rate)
                .abs()
                .total_cmp(&(b.1.offered - rate).abs())
        })
        .map(|(i, _)| i)
}

/// The verdict on the re-test.
pub fn judge(prev: &Previous, steps: &[StepRecord], sch: &Schedule, _t: &Targets) -> Verification {
    let projected = projected(prev, sch);
    let at_projected = nearest(steps, projected);
    let at_old_knee = prev.metrics.knee_rate.and_then(|k| nearest(steps, k));
    let ok_projected = at_projected.map(|i| within(&steps[i]));
    let ok_knee = at_old_knee.map(|i| within(&steps[i]));
    let moved = ok_projected == Some(true);
    let words = |ok: Option<bool>| match ok {
        Some(true) => "within every target",
        Some(false) => "breaks a target",
        None => "not measured",
    };
    let verdict = if moved {
        format!(
            "the SLO violation moved beyond the projected load: {}/s is {}, the old knee ({}) {}",
            units::trim(projected, 1),
            words(ok_projected),
            prev.metrics
                .knee_rate
                .map(|k| format!("{}/s", units::trim(k, 1)))
                .unwrap_or_else(|| "none".into()),
            words(ok_knee)
        )
    } else {
        format!(
            "the SLO violation has not moved beyond the projected load: {}/s {}",
            units::trim(projected, 1),
            words(ok_projected)
        )
    };
    Verification {
        previous_file: prev.file.clone(),
        previous_knee: prev.metrics.knee_rate,
        previous_max_sustainable: prev.metrics.headroom.max_sustainable,
        projected,
        at_projected,
        at_old_knee,
        moved_beyond_projection: moved,
        verdict,
    }
}

/// The re-test's finding.
pub fn finding(v: &Verification) -> Finding {
    let verdict = if v.moved_beyond_projection {
        Verdict::Pass
    } else {
        Verdict::Fail
    };
    let f = Finding::new(
        "capacity",
        "retest",
        "SLO violation vs projected load",
        verdict,
    )
    .observed(Value::from(if v.moved_beyond_projection {
        "moved beyond"
    } else {
        "not moved beyond"
    }))
    .target(Value::ge(Quantity::per_second(v.projected)))
    .evidence(format!("{} (previous run: {})", v.verdict, v.previous_file));
    if v.moved_beyond_projection {
        f
    } else {
        f.action(
            "Apply the step-4 action for the limiting resource of the previous run, then re-test",
        )
    }
}
