//! The terminal section of `powertune doctor`: the systems, then each row of the
//! Troubleshooting table with its symptom, causes, first action and signals.

use crate::model::{DoctorMetrics, Row, Status, SystemState, SystemStatus};
use std::fmt::Write;

pub fn render(m: &DoctorMetrics) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Systems");
    for s in &m.systems {
        let _ = writeln!(out, "  {:<9} {:<44} {}", s.name, s.address, state(s));
    }
    let _ = writeln!(
        out,
        "\nTroubleshooting, row by row (trends over {}s)",
        powertune_core::units::trim(m.window_s, 1)
    );
    for (i, r) in m.rows.iter().enumerate() {
        row(&mut out, i + 1, r);
    }
    let other: Vec<_> = m
        .inspection_findings
        .iter()
        .filter(|f| f.verdict != powertune_core::Verdict::Pass)
        .collect();
    if !other.is_empty() {
        let _ = writeln!(
            out,
            "\nOther signals (WARN/FAIL findings of the inspections)"
        );
        for f in other.iter().take(20) {
            let _ = writeln!(
                out,
                "  {} {}/{} {}: {}",
                f.verdict.label(),
                f.area,
                f.check,
                f.subject,
                f.observed
            );
        }
        if other.len() > 20 {
            let _ = writeln!(out, "  … {} more in --json", other.len() - 20);
        }
    }
    out
}

/// A system's state in words (`measured (12ms)`, `not measured — why`).
pub(crate) fn state(s: &SystemStatus) -> String {
    match s.state {
        SystemState::NotConfigured => "not configured — not checked".to_string(),
        SystemState::Measured => format!(
            "measured ({})",
            powertune_core::units::ms(s.elapsed_ms.round())
        ),
        SystemState::NotMeasured => format!("not measured — {}", s.reason),
    }
}

fn mark(s: Status) -> &'static str {
    match s {
        Status::Confirmed => "CONFIRMED",
        Status::RuledOut => "ruled out",
        Status::NotMeasured => "not measurable",
    }
}

fn row(out: &mut String, n: usize, r: &Row) {
    let seen = match r.symptom.status {
        Status::Confirmed => "OBSERVED",
        Status::RuledOut => "not observed",
        Status::NotMeasured => "not measured",
    };
    let _ = writeln!(out, "\n{n}. {} — {seen}", r.symptom.name);
    let _ = writeln!(
        out,
        "   symptom: {}",
        with_source(&r.symptom.figure, &r.symptom.source)
    );
    for c in &r.causes {
        let _ = writeln!(
            out,
            "   cause {} — {}: {}",
            c.name,
            mark(c.status),
            with_source(&c.figure, &c.source)
        );
    }
    for s in &r.signals {
        let _ = writeln!(out, "   signal: {s}");
    }
    let _ = writeln!(out, "   first action: {}", r.first_action);
}

fn with_source(figure: &str, source: &str) -> String {
    if source.is_empty() {
        figure.to_string()
    } else {
        format!("{figure} [{source}]")
    }
}
