//! The HTML page of a `compare` report, built from its metrics alone (a
//! `powertune.compare/v1`): the two runs' requests/s, latency and errors drawn over
//! one another, then whether latency really changed per group and each headline
//! metric side by side. A report without the comparison gets the generic page.

use super::cells::header;
use super::load::{chart, lat, per_s, series, LatencyOf};
use powertune_core::html::{Chart, Page, Table};
use powertune_core::units as fmt;
use powertune_core::{Quantity, Report, Unit};
use powertune_load::timeline::{Aligned, Point};
use powertune_load::CompareMetrics;

pub fn page(report: &Report) -> Page {
    let Ok(m) = serde_json::from_value::<CompareMetrics>(report.metrics.clone()) else {
        return super::generic(report);
    };
    let mut page = super::generic(report);
    if !m.baseline_name.is_empty() {
        page.subject = format!("{} against {}", m.current_name, m.baseline_name);
    }
    if let Some(a) = &m.timelines {
        page.charts = charts(a);
    }
    page.tables = tables(&m);
    page
}

/// The baseline's line and the current run's, one `f` over each side's points.
fn pair(
    a: &Aligned,
    f: impl Fn(&[Point]) -> Vec<Option<f64>>,
    len: usize,
    what: &str,
) -> Vec<powertune_core::html::Series> {
    let pad = |mut v: Vec<Option<f64>>| {
        v.resize(len, None);
        v
    };
    vec![
        series(format!("baseline {what}"), pad(f(&a.baseline)), true),
        series(format!("current {what}"), pad(f(&a.current)), false),
    ]
}

/// Both runs on one grid: point `i` of either run is drawn at the end of its
/// interval, `(i + 1) × interval`, after an empty point at 0 s.
fn charts(a: &Aligned) -> Vec<Chart> {
    let len = a.baseline.len().max(a.current.len());
    let x: Vec<f64> = (0..=len).map(|i| i as f64 * a.interval_s).collect();
    let mut out = Vec::new();
    out.push(chart(
        "rps",
        "Requests per second (baseline dashed)",
        Unit::PerSecond,
        &x,
        pair(a, |p| per_s(p, |p| p.reqs), len, "req/s"),
    ));
    let qs: [(&str, LatencyOf); 2] = [("p50", |l| l.p50), ("p95", |l| l.p95)];
    let mut latency = Vec::new();
    for (name, f) in qs {
        latency.extend(pair(a, |p| lat(p, false, f), len, name));
    }
    out.push(chart(
        "latency",
        "Latency percentiles, all requests (baseline dashed)",
        Unit::Ms,
        &x,
        latency,
    ));
    out.push(chart(
        "errors",
        "Failed requests per second (baseline dashed)",
        Unit::PerSecond,
        &x,
        pair(a, |p| per_s(p, |p| p.failed), len, "failed/s"),
    ));
    out
}

fn tables(m: &CompareMetrics) -> Vec<Table> {
    let mut out = Vec::new();
    let mut rows = vec![header(&[
        "group",
        "runs",
        "requests",
        "p95 baseline → current",
        "p95 change (95% interval)",
        "median change (95% interval)",
        "p",
        "in words",
    ])];
    for c in &m.latency_changes {
        rows.push(vec![
            c.group.clone(),
            format!("{} → {}", c.baseline_runs, c.current_runs),
            format!(
                "{} → {}",
                fmt::count(c.baseline_requests as f64),
                fmt::count(c.current_requests as f64)
            ),
            format!(
                "{} → {}",
                fmt::ms(c.p95_baseline_ms),
                fmt::ms(c.p95_current_ms)
            ),
            interval(c.p95_delta_ms, c.p95_low_ms, c.p95_high_ms),
            interval(c.median_delta_ms, c.median_low_ms, c.median_high_ms),
            if c.p_value < 0.001 {
                "< 0.001".to_string()
            } else {
                format!("{:.3}", c.p_value)
            },
            c.words.clone(),
        ]);
    }
    if rows.len() > 1 {
        out.push(Table {
            title: "Did latency change? (Mann–Whitney U on the stored histograms)".to_string(),
            rows,
        });
    }
    let mut rows = vec![header(&["metric", "baseline", "current", "change"])];
    for d in &m.baseline_comparison {
        rows.push(vec![
            d.metric.clone(),
            Quantity::new(d.baseline, d.unit).to_string(),
            Quantity::new(d.current, d.unit).to_string(),
            d.change_pct
                .map(|p| format!("{p:+.1}%"))
                .unwrap_or_else(|| "n/a".to_string()),
        ]);
    }
    out.push(Table {
        title: "Headline metrics, first run of each side".to_string(),
        rows,
    });
    out
}

/// `+12ms (+3ms … +20ms)`.
fn interval(delta: f64, low: f64, high: f64) -> String {
    let signed = |v: f64| {
        if v >= 0.0 {
            format!("+{}", fmt::ms(v))
        } else {
            format!("−{}", fmt::ms(-v))
        }
    };
    format!("{} ({} … {})", signed(delta), signed(low), signed(high))
}
