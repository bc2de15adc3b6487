//! The HTML page of a report, built from the report alone (its findings and its
//! command's `metrics`), so `powertune CMD --html` and `powertune report FILE.json
//! --html` draw the same page. A command whose metrics support charts or tables adds
//! them here; the others get the verdict, what did not pass, and every finding.

use powertune_core::html::Page;
use powertune_core::Report;

mod apm;
mod capacity;
mod cells;
mod compare;
mod db;
mod demo;
mod doctor;
mod frontend;
mod gateway;
mod investigate;
mod load;
mod queues;
mod queues_history;
mod redis;

/// The page for `report`, by the command that wrote it.
pub fn page(report: &Report) -> Page {
    let first = report.command.split_whitespace().next().unwrap_or("");
    match first {
        "load" | "merge" => load::page(report),
        "demo" => demo::page(report),
        "compare" => compare::page(report),
        "capacity" => capacity::page(report),
        "apm" => apm::page(report),
        "db" => db::page(report),
        "doctor" => doctor::page(report),
        "investigate" => investigate::page(report),
        "redis" => redis::page(report),
        "queues" if report.command == "queues history" => queues_history::page(report),
        "queues" => queues::page(report),
        "gateway" => gateway::page(report),
        "frontend" => frontend::page(report),
        _ => generic(report),
    }
}

/// The page every report gets: its title; the renderer adds the verdict, what did
/// not pass, every finding and the run's metadata.
pub fn generic(report: &Report) -> Page {
    Page {
        subject: subject(report),
        ..Page::default()
    }
}

/// What the report is about, for the page title.
fn subject(report: &Report) -> String {
    let m = &report.metrics;
    for key in ["plan", "subject", "target", "url", "file"] {
        if let Some(s) = m.get(key).and_then(|v| v.as_str()) {
            if !s.is_empty() {
                return powertune_core::redact::url(s);
            }
        }
    }
    report.command.clone()
}
