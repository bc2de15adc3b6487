//! The HTML page of a report, built from the report alone (its findings and its
//! command's `metrics`), so `powertune CMD --html` and `powertune report FILE.json
//! --html` draw the same page. A command whose metrics support charts or tables adds
//! them here; the others get the verdict, what did not pass, and every finding.

use powertune_core::html::Page;
use powertune_core::Report;

/// The page for `report`.
pub fn page(report: &Report) -> Page {
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
