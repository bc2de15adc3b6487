//! The HTML page of an `investigate endpoint|queue` report: the systems, then the
//! procedure step by step (what each found, its figures, its action). Read from the
//! report's JSON by key.

use super::cells::{header, list, text};
use powertune_core::html::{Page, Table};
use powertune_core::Report;

pub fn page(report: &Report) -> Page {
    let mut page = super::generic(report);
    let m = &report.metrics;
    page.subject = ["route", "queue"]
        .iter()
        .find_map(|k| m.get(*k).and_then(|v| v.as_str()))
        .unwrap_or("investigate")
        .to_string();
    page.tables.push(super::doctor::systems_table(m));
    let mut steps = vec![header(&["step", "status", "found", "figures", "action"])];
    for s in list(m, "steps") {
        let details: Vec<String> = list(s, "details")
            .iter()
            .filter_map(|d| d.as_str().map(str::to_string))
            .collect();
        steps.push(vec![
            format!(
                "{}. {}",
                s.get("step").and_then(|v| v.as_u64()).unwrap_or(0),
                text(s, "name")
            ),
            text(s, "status").replace('_', " "),
            text(s, "found"),
            details.join("; "),
            text(s, "action"),
        ]);
    }
    page.tables.push(Table {
        title: "The procedure, step by step".into(),
        rows: steps,
    });
    page
}
