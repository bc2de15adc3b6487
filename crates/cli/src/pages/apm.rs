//! The HTML page of an `apm report`, `apm analyze` or `apm endpoint` report: routes
//! against their runbook P95 target (chart and table), endpoint types, jobs, providers
//! and detections; for `apm endpoint` the route's time breakdown and slowest traces.
//! Read from the report's JSON by key, so older reports with fewer keys still render.

use super::cells::{count_cell, header, list, ms_cell, num, text};
use powertune_core::html::{Chart, Level, Page, Series, Table, XAxis};
use powertune_core::units::{self, Unit};
use powertune_core::Report;
use serde_json::Value;

pub fn page(report: &Report) -> Page {
    let mut page = super::generic(report);
    let m = &report.metrics;
    if let Some(route) = m.get("route").filter(|r| r.is_object()) {
        endpoint(report, route, &mut page);
    } else {
        routes(report, &mut page);
        types(m, &mut page);
    }
    jobs(m, &mut page);
    providers(m, &mut page);
    caches(m, &mut page);
    detections(m, &mut page);
    if let Some(w) = num(m, "window_s") {
        page.metadata.push(("window".into(), units::seconds(w)));
    }
    page
}

/// Errors over requests, as a percentage cell.
fn error_rate(v: &Value) -> String {
    match (num(v, "errors"), num(v, "count")) {
        (Some(e), Some(c)) if c > 0.0 => units::percent(e * 100.0 / c),
        _ => "-".into(),
    }
}

/// The runbook target (in ms) and verdict of `route`'s `route_latency_p95` finding.
fn route_target(report: &Report, route: &str) -> Option<(f64, &'static str)> {
    report
        .findings
        .iter()
        .find(|f| f.check == "route_latency_p95" && f.subject == route)
        .and_then(|f| {
            let q = f.target.quantity()?;
            let ms = match q.unit {
                Unit::Ms => q.value,
                Unit::Seconds => q.value * 1000.0,
                _ => return None,
            };
            Some((ms, f.verdict.label()))
        })
}

/// The routes table and the chart of each route's P95 against its target, worst
/// (highest P95 over target) first; the chart's x is the table's `#`.
fn routes(report: &Report, page: &mut Page) {
    let routes = list(&report.metrics, "routes");
    if routes.is_empty() {
        return;
    }
    let mut rows: Vec<(&Value, Option<(f64, &'static str)>)> = routes
        .iter()
        .map(|r| (r, route_target(report, &text(r, "route"))))
        .collect();
    let ratio = |(r, t): &(&Value, Option<(f64, &str)>)| match (num(r, "p95_ms"), t) {
        (Some(p), Some((t, _))) if *t > 0.0 => p / t,
        _ => 0.0,
    };
    rows.sort_by(|a, b| ratio(b).total_cmp(&ratio(a)));
    let mut table = vec![header(&[
        "#",
        "route",
        "endpoint type",
        "requests",
        "P50",
        "P95",
        "P95 target",
        "P95 / target",
        "P95 verdict",
        "errors",
        "error rate",
    ])];
    for (i, (r, t)) in rows.iter().enumerate() {
        table.push(vec![
            (i + 1).to_string(),
            text(r, "route"),
            text(r, "endpoint_type"),
            count_cell(num(r, "count")),
            ms_cell(num(r, "p50_ms")),
            ms_cell(num(r, "p95_ms")),
            t.map(|(v, _)| format!("< {}", units::ms(v)))
                .unwrap_or_else(|| "-".into()),
            match (num(r, "p95_ms"), t) {
                (Some(p), Some((t, _))) if *t > 0.0 => units::percent((p * 100.0 / t).round()),
                _ => "-".into(),
            },
            t.map(|(_, v)| v.to_string()).unwrap_or_else(|| "-".into()),
            count_cell(num(r, "errors")),
            error_rate(r),
        ]);
    }
    // P95 as a share of each route's own target, so routes with targets from 100ms to
    // 30s read on one scale: above the 100% line a route misses its target.
    let share: Vec<Option<f64>> = rows
        .iter()
        .map(|(r, t)| match (num(r, "p95_ms"), t) {
            (Some(p), Some((t, _))) if *t > 0.0 => Some(p * 100.0 / t),
            _ => None,
        })
        .collect();
    // One route is no chart: the table says it.
    if share.iter().filter(|v| v.is_some()).count() >= 2 {
        page.charts.push(Chart {
            id: "route-p95".into(),
            title:
                "P95 per route as a share of its runbook target (route # as in the Routes table)"
                    .into(),
            unit: Unit::Percent,
            x_axis: XAxis::Number,
            x_label: "route #".into(),
            x: (1..=rows.len()).map(|i| i as f64).collect(),
            series: vec![Series {
                label: "P95 / target".into(),
                values: share,
                dashed: false,
            }],
            levels: vec![Level {
                label: "target".into(),
                value: 100.0,
            }],
            marks: vec![],
        });
    }
    page.tables.push(Table {
        title: "Routes (worst P95 against target first)".into(),
        rows: table,
    });
}

fn types(m: &Value, page: &mut Page) {
    let types = list(m, "types");
    if types.is_empty() {
        return;
    }
    let mut rows = vec![header(&[
        "endpoint type",
        "requests",
        "P50",
        "P95",
        "P99",
        "max",
        "errors",
        "error rate",
    ])];
    for t in types {
        rows.push(vec![
            text(t, "endpoint_type"),
            count_cell(num(t, "count")),
            ms_cell(num(t, "p50_ms")),
            ms_cell(num(t, "p95_ms")),
            ms_cell(num(t, "p99_ms")),
            ms_cell(num(t, "max_ms")),
            count_cell(num(t, "errors")),
            error_rate(t),
        ]);
    }
    page.tables.push(Table {
        title: "Endpoint types".into(),
        rows,
    });
}

/// `apm endpoint`: where the route's time goes, and its slowest traces.
fn endpoint(report: &Report, route: &Value, page: &mut Page) {
    let name = text(route, "route");
    if !name.is_empty() {
        page.subject = name.clone();
    }
    let target = route_target(report, &name);
    page.tables.push(Table {
        title: "Route".into(),
        rows: vec![
            header(&[
                "route",
                "endpoint type",
                "requests",
                "P50",
                "P95",
                "P95 target",
                "P99",
                "max",
                "errors",
                "error rate",
            ]),
            vec![
                name.clone(),
                text(route, "endpoint_type"),
                count_cell(num(route, "count")),
                ms_cell(num(route, "p50_ms")),
                ms_cell(num(route, "p95_ms")),
                target
                    .map(|(v, _)| format!("< {}", units::ms(v)))
                    .unwrap_or_else(|| "-".into()),
                ms_cell(num(route, "p99_ms")),
                ms_cell(num(route, "max_ms")),
                count_cell(num(route, "errors")),
                error_rate(route),
            ],
        ],
    });
    if let Some(b) = route.get("breakdown") {
        let parts = [
            ("database", num(b, "db_ms")),
            ("outgoing HTTP", num(b, "http_ms")),
            ("application code", num(b, "app_ms")),
        ];
        let total: f64 = parts.iter().filter_map(|(_, v)| *v).sum();
        let mut rows = vec![header(&["where", "time (all requests)", "share"])];
        for (label, v) in parts {
            rows.push(vec![
                label.into(),
                ms_cell(v),
                match v {
                    Some(v) if total > 0.0 => units::percent(v * 100.0 / total),
                    _ => "-".into(),
                },
            ]);
        }
        page.tables.push(Table {
            title: "Breakdown: where the route's time goes".into(),
            rows,
        });
    }
    let slowest = list(&report.metrics, "slowest");
    if !slowest.is_empty() {
        let mut rows = vec![header(&[
            "trace",
            "duration",
            "database",
            "outgoing HTTP",
            "application",
            "spans",
        ])];
        for t in slowest {
            let b = t.get("breakdown").unwrap_or(&Value::Null);
            rows.push(vec![
                text(t, "trace_id"),
                ms_cell(num(t, "duration_ms")),
                ms_cell(num(b, "db_ms")),
                ms_cell(num(b, "http_ms")),
                ms_cell(num(b, "app_ms")),
                list(t, "spans").len().to_string(),
            ]);
        }
        page.tables.push(Table {
            title: "Slowest traces".into(),
            rows,
        });
        // The slowest trace's spans, slowest first: the first place to look.
        let spans = list(&slowest[0], "spans");
        if !spans.is_empty() {
            let mut sorted: Vec<&Value> = spans.iter().collect();
            sorted.sort_by(|a, b| {
                num(b, "duration_ms")
                    .unwrap_or(0.0)
                    .total_cmp(&num(a, "duration_ms").unwrap_or(0.0))
            });
            let mut rows = vec![header(&[
                "span",
                "category",
                "detail",
                "duration",
                "starts at",
                "error",
            ])];
            for s in sorted.into_iter().take(15) {
                rows.push(vec![
                    text(s, "name"),
                    text(s, "category"),
                    text(s, "detail"),
                    ms_cell(num(s, "duration_ms")),
                    ms_cell(num(s, "offset_ms")),
                    if s.get("error").and_then(Value::as_bool) == Some(true) {
                        "error".into()
                    } else {
                        String::new()
                    },
                ]);
            }
            page.tables.push(Table {
                title: format!(
                    "Slowest spans of trace {} (at most 15)",
                    text(&slowest[0], "trace_id")
                ),
                rows,
            });
        }
    }
}

fn jobs(m: &Value, page: &mut Page) {
    let jobs = list(m, "jobs");
    if !jobs.is_empty() {
        let mut rows = vec![header(&[
            "job class",
            "jobs",
            "avg",
            "P95",
            "max",
            "errors",
            "failure rate",
        ])];
        for j in jobs {
            rows.push(vec![
                text(j, "class"),
                count_cell(num(j, "count")),
                ms_cell(num(j, "avg_ms")),
                ms_cell(num(j, "p95_ms")),
                ms_cell(num(j, "max_ms")),
                count_cell(num(j, "errors")),
                error_rate(j),
            ]);
        }
        page.tables.push(Table {
            title: "Jobs".into(),
            rows,
        });
    }
    let linked = list(m, "linked_jobs");
    if !linked.is_empty() {
        let mut rows = vec![header(&[
            "enqueued by",
            "job class",
            "jobs",
            "avg",
            "P95",
            "errors",
        ])];
        for j in linked {
            rows.push(vec![
                text(j, "route"),
                text(j, "class"),
                count_cell(num(j, "count")),
                ms_cell(num(j, "avg_ms")),
                ms_cell(num(j, "p95_ms")),
                count_cell(num(j, "errors")),
            ]);
        }
        page.tables.push(Table {
            title: "Jobs by the request that enqueued them".into(),
            rows,
        });
    }
}

fn providers(m: &Value, page: &mut Page) {
    let providers = list(m, "providers");
    if providers.is_empty() {
        return;
    }
    let mut rows = vec![header(&[
        "provider/model",
        "calls",
        "P50",
        "P95",
        "max",
        "errors",
        "TTFT P95",
        "tokens in",
        "tokens out",
        "retries",
        "via gateway",
    ])];
    for p in providers {
        rows.push(vec![
            text(p, "key"),
            count_cell(num(p, "count")),
            ms_cell(num(p, "p50_ms")),
            ms_cell(num(p, "p95_ms")),
            ms_cell(num(p, "max_ms")),
            count_cell(num(p, "errors")),
            ms_cell(p.get("ttft").and_then(|t| num(t, "p95_ms"))),
            count_cell(num(p, "input_tokens")),
            count_cell(num(p, "output_tokens")),
            count_cell(num(p, "retries")),
            count_cell(num(p, "via_gateway")),
        ]);
    }
    page.tables.push(Table {
        title: "LLM providers".into(),
        rows,
    });
}

/// Cache hit rates per cache type (from cache spans); a type with fewer lookups
/// than `min_lookups` shows "not judged".
fn caches(m: &Value, page: &mut Page) {
    let Some(c) = m.get("cache") else {
        return;
    };
    let types = list(c, "types");
    if types.is_empty() {
        return;
    }
    let min = num(c, "min_lookups").unwrap_or(0.0);
    let rate = |v: &Value| match (num(v, "hits"), num(v, "lookups")) {
        (Some(h), Some(l)) if l > 0.0 => units::percent(h * 100.0 / l),
        _ => "-".into(),
    };
    let judged = |v: &Value| {
        if num(v, "lookups").unwrap_or(0.0) < min {
            "not judged (too few lookups)".to_string()
        } else {
            String::new()
        }
    };
    let mut rows = vec![header(&[
        "cache type",
        "hits",
        "lookups",
        "hit rate",
        "keys",
        "",
    ])];
    for t in types {
        rows.push(vec![
            text(t, "cache_type"),
            count_cell(num(t, "hits")),
            count_cell(num(t, "lookups")),
            rate(t),
            text(t, "pattern"),
            judged(t),
        ]);
    }
    rows.push(vec![
        "(overall)".into(),
        count_cell(num(c, "hits")),
        count_cell(num(c, "lookups")),
        rate(c),
        String::new(),
        judged(c),
    ]);
    page.tables.push(Table {
        title: "Cache hit rates (cache spans)".into(),
        rows,
    });
}

fn detections(m: &Value, page: &mut Page) {
    let found = list(m, "detections");
    if found.is_empty() {
        return;
    }
    let mut rows = vec![header(&[
        "kind",
        "route",
        "what",
        "occurrences",
        "max",
        "total",
        "could save",
        "example trace",
    ])];
    for d in found {
        rows.push(vec![
            text(d, "kind").replace('_', " "),
            text(d, "route"),
            text(d, "subject"),
            count_cell(num(d, "occurrences")),
            ms_cell(num(d, "max_ms")),
            ms_cell(num(d, "total_ms")),
            match num(d, "saved_ms") {
                Some(v) if v > 0.0 => units::ms(v),
                _ => "-".into(),
            },
            text(d, "example_trace"),
        ]);
    }
    page.tables.push(Table {
        title: "Detections (N+1, slow queries, slow requests, consecutive queries)".into(),
        rows,
    });
}
