//! The terminal text of a capacity run: the mix, the step table, the knee, the
//! limiting resource with its figures, the headroom and the USL fit (and, for
//! `--verify`, the earlier steps beside the new ones). Plain text, no colour.

use crate::model::{CapacityMetrics, StepRecord, StopReason};
use crate::steady::Steadiness;
use powertune_core::units;
use std::fmt::Write;

/// The one-sentence verdict.
pub fn verdict(m: &CapacityMetrics) -> String {
    if let Some(v) = &m.verification {
        return v.verdict.clone();
    }
    let h = &m.headroom;
    let max = h
        .max_sustainable
        .map(|x| format!("{}/s", units::trim(x, 1)))
        .unwrap_or_else(|| "no rate".into());
    let mut out = match (&m.stop, &m.limiter) {
        (StopReason::GeneratorSaturated, _) => format!(
            "the load generator saturated at {}/s before the target did: the target sustains at least {max}",
            units::trim(m.knee_rate.unwrap_or(0.0), 1)
        ),
        (_, Some(l)) => format!(
            "knee at {}/s ({}): limited by {}; max sustainable {max}",
            units::trim(m.knee_rate.unwrap_or(0.0), 1),
            m.stop.words(),
            l.resource
        ),
        (stop, None) => format!("no knee ({}): sustains at least {max}", stop.words()),
    };
    let _ = write!(
        out,
        "; projected {}/s (baseline {} × {}): {}",
        units::trim(h.projected, 1),
        units::trim(h.baseline, 1),
        units::trim(h.growth, 2),
        match h.ratio {
            Some(r) if h.enough => format!("enough headroom ({}×)", units::trim(r, 2)),
            Some(r) => format!("NOT enough headroom ({}×)", units::trim(r, 2)),
            None => "no headroom measured".into(),
        }
    );
    out
}

fn steady(s: &Steadiness) -> &'static str {
    match s {
        Steadiness::Steady { .. } => "steady",
        Steadiness::Trending { .. } => "TRENDING",
        Steadiness::TooShort { .. } => "short",
    }
}

fn top_resources(s: &StepRecord) -> String {
    let mut r: Vec<_> = s.resources.iter().collect();
    r.sort_by(|a, b| {
        b.crossed.cmp(&a.crossed).then(
            b.utilisation_max
                .unwrap_or(0.0)
                .total_cmp(&a.utilisation_max.unwrap_or(0.0)),
        )
    });
    r.iter()
        .take(2)
        .map(|x| {
            format!(
                "{}{}: {}",
                if x.crossed { "!" } else { "" },
                x.resource,
                x.figures
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The step table, in offered order.
pub fn step_table(steps: &[StepRecord]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>4} {:>9} {:>9} {:>8} {:>8} {:>8} {:>7} {:>8}  resources",
        "step", "offered/s", "achieved", "p50", "p95", "p99", "errors", "state"
    );
    for &i in &crate::judge::by_rate(steps) {
        let s = &steps[i];
        let state = if s.generator_limited {
            "GEN"
        } else if !s.violations.is_empty() {
            "FAIL"
        } else {
            steady(&s.steadiness)
        };
        let _ = writeln!(
            out,
            "{:>4} {:>9} {:>9} {:>8} {:>8} {:>8} {:>7} {:>8}  {}",
            format!("{}{}", s.number, if s.refinement { "r" } else { "" }),
            units::trim(s.offered, 1),
            units::trim(s.achieved, 1),
            units::ms(s.p50_ms),
            units::ms(s.p95_ms),
            units::ms(s.p99_ms),
            units::percent(s.error_rate_pct),
            state,
            top_resources(s)
        );
        for e in &s.endpoint_types {
            let _ = writeln!(
                out,
                "{:>4} {:>19} {:>8} {:>8} {:>8} {:>7} {:>8}  {}",
                "",
                e.endpoint_type.chars().take(19).collect::<String>(),
                units::ms(e.p50_ms),
                units::ms(e.p95_ms),
                units::ms(e.p99_ms),
                e.failed,
                e.verdict,
                format_args!("max {}", units::ms(e.max_ms)),
            );
        }
        for v in &s.violations {
            let _ = writeln!(out, "{:>4}   ✗ {v}", "");
        }
        if let Some(n) = &s.generator_note {
            let _ = writeln!(out, "{:>4}   generator: {n}", "");
        }
    }
    out
}

/// The whole terminal section.
pub fn text(m: &CapacityMetrics) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "capacity: {} against {} — steps of {} after {} warm-up",
        m.source,
        m.base_url,
        units::seconds(m.step_s),
        units::seconds(m.warmup_s)
    );
    let mix: Vec<String> = m
        .mix
        .iter()
        .map(|s| {
            format!(
                "{} {} ({})",
                s.scenario,
                units::percent(s.share * 100.0),
                s.endpoint_type
            )
        })
        .collect();
    let _ = writeln!(out, "mix: {}", mix.join(", "));
    for l in &m.left_out {
        let _ = writeln!(out, "left out: {l}");
    }
    let _ = writeln!(out);
    out.push_str(&step_table(&m.steps));
    let _ = writeln!(out);
    if let Some(v) = &m.verification {
        let _ = writeln!(out, "re-test against {}:", v.previous_file);
        let _ = writeln!(
            out,
            "  previous: knee {}, max sustainable {}",
            v.previous_knee
                .map(|k| format!("{}/s", units::trim(k, 1)))
                .unwrap_or_else(|| "none".into()),
            v.previous_max_sustainable
                .map(|k| format!("{}/s", units::trim(k, 1)))
                .unwrap_or_else(|| "none".into()),
        );
        for (label, idx) in [
            ("projected load", v.at_projected),
            ("old knee", v.at_old_knee),
        ] {
            if let Some(i) = idx {
                let s = &m.steps[i];
                let _ = writeln!(
                    out,
                    "  now at the {label} ({}/s): p95 {}, errors {}, {}",
                    units::trim(s.offered, 1),
                    units::ms(s.p95_ms),
                    units::percent(s.error_rate_pct),
                    if s.violations.is_empty() {
                        "within every target".to_string()
                    } else {
                        s.violations.join("; ")
                    }
                );
            }
        }
    }
    if let Some(l) = &m.limiter {
        let _ = writeln!(out, "limiting resource: {}", l.resource);
        let _ = writeln!(out, "  {}", l.evidence);
        let _ = writeln!(out, "  action: {}", l.action);
        if !l.not_measured.is_empty() {
            let _ = writeln!(out, "  not measured: {}", l.not_measured.join("; "));
        }
    }
    match (&m.usl.fit, &m.usl.refused) {
        (Some(f), _) => {
            let _ = writeln!(
                out,
                "USL: σ {} κ {} λ {} R² {}{}",
                units::trim(f.sigma, 4),
                units::trim(f.kappa, 6),
                units::trim(f.lambda, 2),
                units::trim(f.r_squared, 3),
                m.usl
                    .peak_throughput
                    .map(|x| format!("; predicted peak {} req/s", units::trim(x, 1)))
                    .unwrap_or_default()
            );
        }
        (None, Some(why)) => {
            let _ = writeln!(out, "USL: not fitted: {why}");
        }
        _ => {}
    }
    let _ = writeln!(out, "verdict: {}", m.verdict);
    out
}
