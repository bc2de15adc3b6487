//! Row 4: "Frontend bundle ballooned" ↔ "New dep without code-split".
//!
//! Symptom: the initial load (gzip) of the build in `frontend_dist` grew by more than
//! the frontend engine's growth threshold against `frontend_baseline`, or is past the
//! budget. Cause: the growth sits in first-load chunks (a chunk new to the first load,
//! or a first-load chunk that grew): something was imported statically. Growth only in
//! lazy chunks rules it out (the initial load is unaffected).

use super::pct;
use crate::collect::Collected;
use crate::model::{Check, Row, Status};
use powertune_core::units;
use powertune_core::{Targets, Verdict};
use powertune_frontend::judge::{BUNDLE_ACTION, GROWTH_WARN_PCT};
use powertune_frontend::snapshot::{BundleMetrics, Comparison};

const SYMPTOM: &str = "Frontend bundle ballooned";
const CAUSE: &str = "New dep without code-split";
const SRC: &str = "frontend bundle vs frontend_baseline";

pub fn row(c: &Collected, _t: &Targets) -> Row {
    let mut out = Row {
        id: "bundle".into(),
        symptom: Check::not_measured(SYMPTOM, ""),
        causes: Vec::new(),
        first_action: format!("Run bundle visualiser; lazy-load the new feature ({BUNDLE_ACTION})"),
        signals: Vec::new(),
    };
    let Some(m) = c.frontend.metrics() else {
        let why = c.frontend.missing("frontend_dist").unwrap_or_default();
        out.symptom = Check::not_measured(SYMPTOM, why.clone());
        out.causes.push(Check::not_measured(CAUSE, why));
        return out;
    };
    let over_budget = c
        .frontend
        .findings()
        .iter()
        .any(|f| f.check == "initial_bundle_gzip" && f.verdict == Verdict::Fail);
    out.signals.push(format!(
        "initial load {} gzip (budget {})",
        units::bytes(m.initial.gzip),
        units::bytes(m.budget_gzip)
    ));
    match &m.baseline {
        Some(cmp) => {
            out.symptom = symptom(m, cmp, over_budget);
            out.causes.push(cause(cmp));
        }
        None => {
            let why = "no frontend_baseline configured: growth cannot be told";
            out.symptom = if over_budget {
                Check::new(
                    SYMPTOM,
                    Status::Confirmed,
                    format!(
                        "initial load {} gzip, past the {} budget",
                        units::bytes(m.initial.gzip),
                        units::bytes(m.budget_gzip)
                    ),
                    "frontend bundle initial_bundle_gzip",
                )
            } else {
                Check::not_measured(SYMPTOM, why)
            };
            out.causes.push(Check::not_measured(CAUSE, why));
        }
    }
    out
}

fn growth_pct(cmp: &Comparison) -> f64 {
    let before = cmp.initial_before.gzip;
    if before == 0 {
        0.0
    } else {
        100.0 * cmp.delta_gzip as f64 / before as f64
    }
}

fn symptom(m: &BundleMetrics, cmp: &Comparison, over_budget: bool) -> Check {
    let g = growth_pct(cmp);
    let grew = g > GROWTH_WARN_PCT;
    Check::new(
        SYMPTOM,
        if grew || over_budget {
            Status::Confirmed
        } else {
            Status::RuledOut
        },
        format!(
            "initial load {} → {} gzip ({:+.1}%, ballooned above {}){}",
            units::bytes(cmp.initial_before.gzip),
            units::bytes(m.initial.gzip),
            g,
            pct(GROWTH_WARN_PCT),
            if over_budget { "; past the budget" } else { "" }
        ),
        SRC,
    )
}

/// Whether the growth is in first-load chunks.
pub fn cause(cmp: &Comparison) -> Check {
    let initial: Vec<String> = cmp
        .chunks
        .iter()
        .filter(|d| d.initial && d.delta_gzip > 0)
        .map(|d| format!("{} {} ({})", d.id, signed(d.delta_gzip), d.change))
        .collect();
    let lazy: i64 = cmp
        .chunks
        .iter()
        .filter(|d| !d.initial && d.delta_gzip > 0)
        .map(|d| d.delta_gzip)
        .sum();
    if growth_pct(cmp) <= GROWTH_WARN_PCT {
        return Check::new(CAUSE, Status::RuledOut, "initial load did not balloon", SRC);
    }
    if initial.is_empty() {
        Check::new(
            CAUSE,
            Status::RuledOut,
            format!(
                "no first-load chunk grew; lazy chunks {}: the initial load is unaffected",
                signed(lazy)
            ),
            SRC,
        )
    } else {
        Check::new(
            CAUSE,
            Status::Confirmed,
            format!("first-load chunks grew: {}", initial.join(", ")),
            SRC,
        )
    }
}

fn signed(d: i64) -> String {
    powertune_frontend::judge::signed(d)
}
