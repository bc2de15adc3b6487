//! The HTML page of a `doctor` report: the systems and what became of each, then the
//! Troubleshooting table row by row (symptom, causes, first action). Read from the
//! report's JSON by key.

use super::cells::{header, list, num, text};
use powertune_core::html::{Page, Table};
use powertune_core::Report;
use serde_json::Value;

pub fn page(report: &Report) -> Page {
    let mut page = super::generic(report);
    page.subject = "the Troubleshooting table".into();
    let m = &report.metrics;
    page.tables.push(systems_table(m));
    let mut rows = vec![header(&[
        "symptom",
        "observed",
        "figure",
        "likely cause",
        "first action",
    ])];
    for r in list(m, "rows") {
        let symptom = r.get("symptom").unwrap_or(&Value::Null);
        let causes: Vec<String> = list(r, "causes")
            .iter()
            .map(|c| {
                format!(
                    "{}: {} — {}",
                    text(c, "name"),
                    text(c, "status").replace('_', " "),
                    text(c, "figure")
                )
            })
            .collect();
        rows.push(vec![
            text(symptom, "name"),
            text(symptom, "status").replace('_', " "),
            format!("{} {}", text(symptom, "figure"), source(symptom)),
            causes.join("; "),
            text(r, "first_action"),
        ]);
    }
    page.tables.push(Table {
        title: "Troubleshooting, row by row".into(),
        rows,
    });
    if let Some(w) = num(m, "window_s") {
        page.metadata
            .push(("trend window".into(), powertune_core::units::seconds(w)));
    }
    page
}

/// The `systems` of a composition's metrics (doctor, investigate) as a table.
pub(super) fn systems_table(m: &Value) -> Table {
    let mut systems = vec![header(&["system", "address", "state", "reason"])];
    for s in list(m, "systems") {
        systems.push(vec![
            text(s, "name"),
            text(s, "address"),
            text(s, "state").replace('_', " "),
            text(s, "reason"),
        ]);
    }
    Table {
        title: "Systems".into(),
        rows: systems,
    }
}

fn source(v: &Value) -> String {
    let s = text(v, "source");
    if s.is_empty() {
        s
    } else {
        format!("[{s}]")
    }
}
