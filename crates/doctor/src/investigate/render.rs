//! The terminal section of `powertune investigate`: the systems, then each step of the
//! procedure with what it found, its figures and its action.

use super::model::{EndpointMetrics, QueueMetrics, Step};
use crate::model::{Status, SystemStatus};
use std::fmt::Write;

fn systems(out: &mut String, list: &[SystemStatus]) {
    let _ = writeln!(out, "Systems");
    for s in list {
        let _ = writeln!(
            out,
            "  {:<8} {:<40} {}",
            s.name,
            s.address,
            crate::render::state(s)
        );
    }
}

fn mark(s: Status) -> &'static str {
    match s {
        Status::Confirmed => "FOUND",
        Status::RuledOut => "clear",
        Status::NotMeasured => "not measured",
    }
}

fn steps(out: &mut String, list: &[Step]) {
    for s in list {
        let _ = writeln!(out, "\n{}. {}", s.step, s.name);
        let _ = writeln!(out, "   [{}] {}", mark(s.status), s.found);
        for d in &s.details {
            let _ = writeln!(out, "     {d}");
        }
        if !s.action.is_empty() {
            let _ = writeln!(out, "   → {}", s.action);
        }
    }
}

pub fn endpoint(m: &EndpointMetrics) -> String {
    let mut out = String::new();
    systems(&mut out, &m.systems);
    let _ = writeln!(
        out,
        "\nInvestigate a slow endpoint: {} (APM history {})",
        m.route,
        powertune_core::units::seconds(m.apm_window_s)
    );
    steps(&mut out, &m.steps);
    if let Some(e) = &m.explain {
        if !e.tree.is_empty() {
            let _ = writeln!(out, "\nPlan of `{}`", e.statement);
            for line in e.tree.lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
    }
    out
}

pub fn queue(m: &QueueMetrics) -> String {
    let mut out = String::new();
    systems(&mut out, &m.systems);
    let _ = writeln!(out, "\nInvestigate a queue backlog: {}", m.queue);
    steps(&mut out, &m.steps);
    out
}
