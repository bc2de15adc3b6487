//! The HTML page of a `demo` report: the load run's page (its `metrics` are a load
//! summary) followed by the APM's sections, read from `metrics.apm` (the in-process
//! receiver's summary of the target's own spans): endpoint types, routes against
//! their targets, the slowest requests by trace id, LLM providers, cache hit rates
//! and detections. A report without `metrics.apm` is the load page alone.

use super::cells::{header, list, ms_cell, num, text};
use powertune_core::html::{Page, Table};
use powertune_core::Report;
use serde_json::Value;

/// Slowest requests listed, at most.
const SLOWEST: usize = 10;

pub fn page(report: &Report) -> Page {
    let mut page = super::load::page(report);
    let Some(apm) = report.metrics.get("apm").filter(|v| v.is_object()) else {
        return page;
    };
    // The APM page over the same findings (its route targets come from them).
    let sub = Report {
        metrics: apm.clone(),
        ..report.clone()
    };
    let a = super::apm::page(&sub);
    for mut c in a.charts {
        c.id = format!("apm-{}", c.id);
        c.title = format!("APM: {}", c.title);
        page.charts.push(c);
    }
    let mut tables = a.tables.into_iter();
    // The endpoint types and routes first, then the slowest requests, then the rest.
    for t in tables.by_ref().take(2) {
        page.tables.push(apm_titled(t));
    }
    if let Some(t) = slowest(apm) {
        page.tables.push(t);
    }
    page.tables.extend(tables.map(apm_titled));
    if let Some(i) = apm.get("ingest") {
        page.metadata.push((
            "APM".into(),
            format!(
                "{} spans received, {} traces analysed",
                num(i, "spans_received").unwrap_or(0.0),
                num(i, "traces_analyzed").unwrap_or(0.0)
            ),
        ));
    }
    page
}

fn apm_titled(mut t: Table) -> Table {
    t.title = format!("APM: {}", t.title);
    t
}

/// The slowest requests the APM kept (per route), slowest first, by trace id.
fn slowest(apm: &Value) -> Option<Table> {
    let mut all: Vec<(String, &Value)> = list(apm, "routes")
        .iter()
        .flat_map(|r| {
            list(r, "slowest")
                .iter()
                .map(move |t| (text(r, "route"), t))
        })
        .collect();
    if all.is_empty() {
        return None;
    }
    all.sort_by(|a, b| {
        num(b.1, "duration_ms")
            .unwrap_or(0.0)
            .total_cmp(&num(a.1, "duration_ms").unwrap_or(0.0))
    });
    let mut rows = vec![header(&["route", "duration", "trace id"])];
    for (route, t) in all.into_iter().take(SLOWEST) {
        rows.push(vec![
            route,
            ms_cell(num(t, "duration_ms")),
            text(t, "trace_id"),
        ]);
    }
    Some(Table {
        title: format!("APM: slowest requests (at most {SLOWEST})"),
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use powertune_core::{Finding, Verdict};

    #[test]
    fn the_apm_sections_follow_the_load_page() {
        let apm = serde_json::json!({
            "ingest": {"spans_received": 12, "traces_analyzed": 3},
            "types": [{"endpoint_type": "read_crud", "count": 3, "errors": 0, "p50_ms": 4.0, "p95_ms": 9.0, "p99_ms": 9.0, "max_ms": 9.0}],
            "routes": [
                {"route": "GET /a", "endpoint_type": "read_crud", "count": 2, "p95_ms": 9.0,
                 "slowest": [{"trace_id": "aa", "duration_ms": 9.0}, {"trace_id": "ab", "duration_ms": 3.0}]},
                {"route": "GET /b", "endpoint_type": "read_crud", "count": 1, "p95_ms": 5.0,
                 "slowest": [{"trace_id": "bb", "duration_ms": 5.0}]}
            ]
        });
        let report = Report::new(
            "demo",
            vec![Finding::new(
                "apm",
                "route_latency_p95",
                "GET /a",
                Verdict::Pass,
            )],
            serde_json::json!({ "apm": apm }),
        );
        let p = page(&report);
        let titles: Vec<&str> = p.tables.iter().map(|t| t.title.as_str()).collect();
        assert_eq!(
            titles,
            [
                "APM: Routes (worst P95 against target first)",
                "APM: Endpoint types",
                "APM: slowest requests (at most 10)"
            ]
        );
        let ids: Vec<&str> = p.tables[2].rows[1..]
            .iter()
            .map(|r| r[2].as_str())
            .collect();
        assert_eq!(ids, ["aa", "bb", "ab"]);
        assert_eq!(
            p.metadata.last().unwrap().1,
            "12 spans received, 3 traces analysed"
        );
        // Without an APM section: the load page alone.
        let bare = Report::new("demo", vec![], serde_json::json!({}));
        assert!(page(&bare).tables.is_empty());
    }
}
