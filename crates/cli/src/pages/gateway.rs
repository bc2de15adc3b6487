//! The HTML page of a `gateway status` report: each provider's P95 against its saved
//! baseline (chart and table), each credential's breaker, the model series and the
//! retry depth. Read from the report's JSON by key, so older reports still render.

use super::cells::{count_cell, header, list, ms_cell, num, text};
use powertune_core::html::{Chart, Page, Series, Table, XAxis};
use powertune_core::units::{self, Unit};
use powertune_core::{Report, Verdict};
use serde_json::Value;

pub fn page(report: &Report) -> Page {
    let mut page = super::generic(report);
    let m = &report.metrics;
    providers(report, &mut page);
    credentials(m, &mut page);
    series(m, &mut page);
    retries(m, &mut page);
    if let Some(u) = num(m, "uptime_s") {
        page.metadata
            .push(("gateway uptime".into(), units::seconds(u)));
    }
    if let Some(g) = num(m, "config_generation") {
        page.metadata
            .push(("config generation".into(), units::count(g)));
    }
    page
}

/// A latency summary's percentile (`p95`) in ms.
fn pct(v: &Value, summary: &str, p: &str) -> Option<f64> {
    v.get(summary).and_then(|s| num(s, p))
}

/// The saved baseline P95 (ms) and the verdict of `provider`'s baseline finding: the
/// finding's observed ratio is P95 / baseline.
fn baseline(report: &Report, provider: &str, p95: Option<f64>) -> (Option<f64>, Option<Verdict>) {
    let Some(f) = report
        .findings
        .iter()
        .find(|f| f.check == "provider_p95_vs_baseline" && f.subject == provider)
    else {
        return (None, None);
    };
    let base = match (f.observed.quantity(), p95) {
        (Some(q), Some(p)) if q.unit == Unit::Ratio && q.value > 0.0 => Some(p / q.value),
        _ => None,
    };
    (base, Some(f.verdict))
}

fn providers(report: &Report, page: &mut Page) {
    let ps = list(&report.metrics, "providers");
    if ps.is_empty() {
        return;
    }
    let mut rows = vec![header(&[
        "#",
        "provider",
        "calls",
        "P50",
        "P95",
        "P99",
        "baseline P95",
        "P95 / baseline",
        "verdict",
    ])];
    let mut p95s = Vec::new();
    let mut bases = Vec::new();
    for (i, p) in ps.iter().enumerate() {
        let name = text(p, "provider");
        let p95 = pct(p, "latency_ms", "p95");
        let (base, verdict) = baseline(report, &name, p95);
        p95s.push(p95);
        bases.push(base);
        rows.push(vec![
            (i + 1).to_string(),
            name,
            count_cell(pct(p, "latency_ms", "count")),
            ms_cell(pct(p, "latency_ms", "p50")),
            ms_cell(p95),
            ms_cell(pct(p, "latency_ms", "p99")),
            base.map(units::ms).unwrap_or_else(|| "no baseline".into()),
            match (p95, base) {
                (Some(p), Some(b)) if b > 0.0 => units::ratio(p / b),
                _ => "-".into(),
            },
            verdict.map(|v| v.label().to_string()).unwrap_or_default(),
        ]);
    }
    // One provider is no chart: the table says it.
    if p95s.iter().filter(|v| v.is_some()).count() >= 2 {
        let mut series = vec![Series {
            label: "P95".into(),
            values: p95s,
            dashed: false,
        }];
        if bases.iter().any(Option::is_some) {
            series.push(Series {
                label: "baseline P95".into(),
                values: bases,
                dashed: true,
            });
        }
        page.charts.push(Chart {
            id: "provider-p95".into(),
            title:
                "Provider P95 round trip against the saved baseline (# as in the Providers table)"
                    .into(),
            unit: Unit::Ms,
            x_axis: XAxis::Number,
            x_label: "provider #".into(),
            x: (1..=ps.len()).map(|i| i as f64).collect(),
            series,
            levels: vec![],
            marks: vec![],
        });
    }
    page.tables.push(Table {
        title: "Providers".into(),
        rows,
    });
}

fn credentials(m: &Value, page: &mut Page) {
    let cs = list(m, "credentials");
    if cs.is_empty() {
        return;
    }
    let mut rows = vec![header(&[
        "provider",
        "credential",
        "breaker",
        "open until",
        "consecutive failures",
        "trips",
        "retry-after",
        "rpm",
        "weight",
    ])];
    // Open breakers first.
    let mut sorted: Vec<&Value> = cs.iter().collect();
    sorted.sort_by_key(|c| text(c, "state") == "closed");
    for c in sorted {
        let open_until = text(c, "open_until");
        rows.push(vec![
            text(c, "provider"),
            text(c, "credential"),
            text(c, "state").replace('_', "-"),
            if open_until.is_empty() {
                "-".into()
            } else {
                match num(c, "open_for_s") {
                    Some(s) => format!("{open_until} (in {})", units::seconds(s)),
                    None => open_until,
                }
            },
            count_cell(num(c, "consecutive_failures")),
            count_cell(num(c, "trips")),
            match num(c, "retry_after_s") {
                Some(s) => {
                    let capped = c.get("retry_after_capped").and_then(Value::as_bool) == Some(true);
                    format!(
                        "{}{}",
                        units::seconds(s),
                        if capped { " (capped)" } else { "" }
                    )
                }
                None => "-".into(),
            },
            count_cell(num(c, "rpm")),
            count_cell(num(c, "weight")),
        ]);
    }
    page.tables.push(Table {
        title: "Credentials and their breakers (open first)".into(),
        rows,
    });
}

fn series(m: &Value, page: &mut Page) {
    let ss = list(m, "series");
    if ss.is_empty() {
        return;
    }
    let mut rows = vec![header(&[
        "provider",
        "model",
        "credential",
        "calls",
        "P95 round trip",
        "P95 first token",
        "P95 per token",
        "tokens in",
        "tokens out",
    ])];
    for s in ss {
        rows.push(vec![
            text(s, "provider"),
            text(s, "model"),
            text(s, "credential"),
            count_cell(pct(s, "latency_ms", "count")),
            ms_cell(pct(s, "latency_ms", "p95")),
            ms_cell(pct(s, "ttft_ms", "p95")),
            ms_cell(pct(s, "per_token_ms", "p95")),
            count_cell(num(s, "tokens_in")),
            count_cell(num(s, "tokens_out")),
        ]);
    }
    page.tables.push(Table {
        title: "Models".into(),
        rows,
    });
}

fn retries(m: &Value, page: &mut Page) {
    let depth = list(m, "retries_by_depth");
    let mut rows = vec![header(&["", "value"])];
    if let Some(c) = num(m, "calls") {
        rows.push(vec!["calls".into(), units::count(c)]);
    }
    for (i, n) in depth.iter().enumerate() {
        if let Some(n) = n.as_f64().filter(|n| *n > 0.0) {
            rows.push(vec![
                format!("calls retried {i} time{}", if i == 1 { "" } else { "s" }),
                units::count(n),
            ]);
        }
    }
    if let Some(r) = num(m, "rejected_all_open") {
        rows.push(vec![
            "rejected: no credential usable".into(),
            units::count(r),
        ]);
    }
    if let Some(o) = m.get("overhead_ms") {
        rows.push(vec!["gateway overhead P95".into(), ms_cell(num(o, "p95"))]);
    }
    if rows.len() > 1 {
        page.tables.push(Table {
            title: "Calls, retries and overhead".into(),
            rows,
        });
    }
}
