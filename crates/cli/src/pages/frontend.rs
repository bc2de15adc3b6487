//! The HTML page of a `frontend` report. `frontend bundle`: the first-load files
//! (sizes and source modules), the lazy chunks, the routes with their import chains
//! and the per-chunk change against a baseline. `frontend lcp`: LCP per run against
//! the target (chart) and each run's figures and layout shifts. Read from the
//! report's JSON by key, so older reports with fewer keys still render.

use super::cells::{header, list, ms_cell, num, text};
use powertune_core::html::{Chart, Level, Page, Series, Table, XAxis};
use powertune_core::units::{self, Unit};
use powertune_core::Report;
use serde_json::Value;

pub fn page(report: &Report) -> Page {
    let mut page = super::generic(report);
    let m = &report.metrics;
    if report.command.ends_with("lcp") {
        lcp(m, &mut page);
    } else {
        bundle(m, &mut page);
    }
    page
}

fn bytes_at(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_u64)
        .map(units::bytes)
        .unwrap_or_else(|| "-".into())
}

fn chunk_rows(chunks: &[&Value]) -> Vec<Vec<String>> {
    let mut rows = vec![header(&["file", "gzip", "brotli", "raw", "source modules"])];
    for c in chunks {
        let s = c.get("sizes").unwrap_or(&Value::Null);
        let mods: Vec<String> = list(c, "modules")
            .iter()
            .take(8)
            .map(|m| m.as_str().unwrap_or("").to_string())
            .collect();
        let total = num(c, "modules_total").unwrap_or(0.0) as usize;
        let more = total.saturating_sub(mods.len());
        let mut cell = mods.join(", ");
        if more > 0 {
            cell.push_str(&format!(" +{more} more"));
        }
        rows.push(vec![
            text(c, "file"),
            bytes_at(s, "gzip"),
            bytes_at(s, "brotli"),
            bytes_at(s, "raw"),
            cell,
        ]);
    }
    rows
}

fn bundle(m: &Value, page: &mut Page) {
    let chunks = list(m, "chunks");
    let initial: Vec<&Value> = chunks
        .iter()
        .filter(|c| c.get("initial").and_then(Value::as_bool) == Some(true))
        .collect();
    let lazy: Vec<&Value> = chunks
        .iter()
        .filter(|c| c.get("initial").and_then(Value::as_bool) != Some(true))
        .collect();
    let i = m.get("initial").unwrap_or(&Value::Null);
    page.tables.push(Table {
        title: format!(
            "First load: {} gzip, {} brotli, {} raw (budget {} gzip)",
            bytes_at(i, "gzip"),
            bytes_at(i, "brotli"),
            bytes_at(i, "raw"),
            m.get("budget_gzip")
                .and_then(Value::as_u64)
                .map(units::bytes)
                .unwrap_or_default()
        ),
        rows: chunk_rows(&initial),
    });
    if !lazy.is_empty() {
        page.tables.push(Table {
            title: format!(
                "Lazy chunks: {} gzip",
                bytes_at(m.get("lazy").unwrap_or(&Value::Null), "gzip")
            ),
            rows: chunk_rows(&lazy),
        });
    }
    let routes = list(m, "routes");
    if !routes.is_empty() {
        let mut rows = vec![header(&["route", "status", "chunk", "static import chain"])];
        for r in routes {
            let chain: Vec<&str> = list(r, "chain").iter().filter_map(Value::as_str).collect();
            rows.push(vec![
                text(r, "route"),
                text(r, "status"),
                text(r, "chunk"),
                chain.join(" → "),
            ]);
        }
        page.tables.push(Table {
            title: "Routes".into(),
            rows,
        });
    }
    if let Some(b) = m.get("baseline").filter(|b| b.is_object()) {
        let mut rows = vec![header(&[
            "chunk",
            "change",
            "first load",
            "before",
            "after",
            "delta",
        ])];
        for d in list(b, "chunks") {
            let delta = d.get("delta_gzip").and_then(Value::as_i64).unwrap_or(0);
            let sign = if delta < 0 { "-" } else { "+" };
            rows.push(vec![
                text(d, "id"),
                text(d, "change"),
                if d.get("initial").and_then(Value::as_bool) == Some(true) {
                    "yes"
                } else {
                    "no"
                }
                .into(),
                bytes_at(d, "before_gzip"),
                bytes_at(d, "after_gzip"),
                format!("{sign}{}", units::bytes(delta.unsigned_abs())),
            ]);
        }
        page.tables.push(Table {
            title: format!(
                "Against baseline {} (saved {})",
                text(b, "baseline_file"),
                text(b, "saved_at")
            ),
            rows,
        });
    }
    page.metadata.push(("build".into(), text(m, "dist")));
    page.metadata.push(("manifest".into(), text(m, "manifest")));
}

fn lcp(m: &Value, page: &mut Page) {
    let runs = list(m, "runs");
    let lcps: Vec<Option<f64>> = runs.iter().map(|r| num(r, "lcp_ms")).collect();
    if !runs.is_empty() {
        page.charts.push(Chart {
            id: "lcp".into(),
            title: "Largest Contentful Paint per cold load".into(),
            unit: Unit::Ms,
            x_axis: XAxis::Number,
            x_label: "run".into(),
            x: (1..=runs.len()).map(|i| i as f64).collect(),
            series: vec![Series {
                label: "LCP".into(),
                values: lcps,
                dashed: false,
            }],
            levels: num(m, "lcp_target_ms")
                .map(|t| {
                    vec![Level {
                        label: "target".into(),
                        value: t,
                    }]
                })
                .unwrap_or_default(),
            marks: Vec::new(),
        });
    }
    let mut rows = vec![header(&[
        "run", "LCP", "element", "FCP", "load", "CLS", "shifts",
    ])];
    for (i, r) in runs.iter().enumerate() {
        let shifts: Vec<String> = list(r, "shifts")
            .iter()
            .map(|s| {
                format!(
                    "{} at {}",
                    units::trim(num(s, "value").unwrap_or(0.0), 4),
                    ms_cell(num(s, "start_ms"))
                )
            })
            .collect();
        rows.push(vec![
            (i + 1).to_string(),
            ms_cell(num(r, "lcp_ms")),
            text(r, "lcp_element"),
            ms_cell(num(r, "fcp_ms")),
            ms_cell(num(r, "load_ms")),
            units::trim(num(r, "cls").unwrap_or(0.0), 4),
            shifts.join(", "),
        ]);
    }
    page.tables.push(Table {
        title: "Runs".into(),
        rows,
    });
    page.metadata.push(("browser".into(), text(m, "browser")));
    page.metadata.push(("throttle".into(), text(m, "throttle")));
}
