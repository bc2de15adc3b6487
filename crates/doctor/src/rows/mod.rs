//! The runbook's Troubleshooting table, row by row: pure functions over what
//! [`crate::collect`] gathered. Each row says whether its symptom was observed (with
//! the figure and its source), whether each likely cause is confirmed, ruled out or
//! not measurable (with the evidence), and the runbook's first action.

mod bundle;
mod cache;
mod memory;
pub(crate) mod mission;
pub(crate) mod provider;
mod retry;

use crate::collect::Collected;
use crate::model::{Row, Status};
use powertune_core::{Finding, Targets, Value, Verdict};

pub use memory::{judge_series, GROWTH_PCT, PLATEAU_SHARE};
pub use mission::completion;

/// Every row, in the runbook's order.
pub fn rows(c: &Collected, t: &Targets) -> Vec<Row> {
    vec![
        cache::row(c, t),
        retry::row(c, t),
        memory::row(c),
        bundle::row(c, t),
        provider::row(c, t),
        mission::row(c, t),
    ]
}

/// A row as a finding: FAIL when the symptom is observed, WARN when it could not be
/// measured or when a cause holds without the symptom, PASS when the symptom is
/// measured and absent and no cause holds.
pub fn finding(row: &Row) -> Finding {
    let cause_holds = row.causes.iter().any(|c| c.status == Status::Confirmed);
    let verdict = match row.symptom.status {
        Status::Confirmed => Verdict::Fail,
        Status::NotMeasured => Verdict::Warn,
        Status::RuledOut if cause_holds => Verdict::Warn,
        Status::RuledOut => Verdict::Pass,
    };
    let causes: Vec<String> = row
        .causes
        .iter()
        .map(|c| {
            let src = if c.source.is_empty() {
                String::new()
            } else {
                format!(" [{}]", c.source)
            };
            format!("{}: {} — {}{src}", c.name, c.status.label(), c.figure)
        })
        .collect();
    let symptom_src = if row.symptom.source.is_empty() {
        String::new()
    } else {
        format!(" [{}]", row.symptom.source)
    };
    let observed = match row.symptom.status {
        Status::Confirmed => "observed",
        Status::RuledOut => "not observed",
        Status::NotMeasured => "not measured",
    };
    let mut f = Finding::new("doctor", &row.id, &row.symptom.name, verdict)
        .observed(Value::Text(observed.to_string()))
        .target(Value::Text("not observed".to_string()))
        .evidence(format!(
            "{}{symptom_src}; {}",
            row.symptom.figure,
            causes.join("; ")
        ));
    if verdict != Verdict::Pass {
        f = f.action(row.first_action.clone());
    }
    f
}

/// The finding of a run that measured nothing: never a pass.
pub fn nothing_measured(missing: &[String]) -> Finding {
    Finding::new("doctor", "coverage", "systems measured", Verdict::Fail)
        .observed(Value::Text("nothing measured".into()))
        .target(Value::Text("at least one row measured".into()))
        .evidence(missing.join("; "))
        .action("Configure the systems in [systems] of powertune.toml (or the flags) and check they are reachable from here")
}

/// `12.5%` with one decimal.
pub(crate) fn pct(v: f64) -> String {
    powertune_core::units::percent(v)
}
