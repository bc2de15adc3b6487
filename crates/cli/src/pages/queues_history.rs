//! The HTML page of a `queues history` report: per queue latency (peak per bucket,
//! with the runbook's target) and depth over time, throughput, failed rate and the
//! retry set; the periods over the latency target and the gaps. Read from the
//! report's JSON by key.

use super::cells::{header, list, num, text};
use powertune_core::html::{Chart, Level, Page, Series, Table, XAxis};
use powertune_core::units::{self, Unit};
use powertune_core::Report;
use serde_json::Value;

fn values(v: &Value, key: &str) -> Vec<Option<f64>> {
    list(v, key).iter().map(Value::as_f64).collect()
}

fn stamp(at: Option<f64>) -> String {
    at.map(powertune_queues_plan::history::stamp)
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "-".into())
}

fn chart(
    id: &str,
    title: &str,
    unit: Unit,
    x: &[f64],
    series: Vec<Series>,
    levels: Vec<Level>,
) -> Chart {
    Chart {
        id: id.into(),
        title: title.into(),
        unit,
        x_axis: XAxis::Time,
        x_label: "time".into(),
        x: x.to_vec(),
        series,
        levels,
        marks: Vec::new(),
    }
}

fn line(label: &str, values: Vec<Option<f64>>) -> Series {
    Series {
        label: label.into(),
        values,
        dashed: false,
    }
}

pub fn page(report: &Report) -> Page {
    let mut page = super::generic(report);
    let m = &report.metrics;
    let s = m.get("series").unwrap_or(&Value::Null);
    let x: Vec<f64> = list(s, "at").iter().filter_map(Value::as_f64).collect();
    let queues = list(s, "queues");
    let target = |key: &str, label: &str| -> Vec<Level> {
        num(m, key)
            .map(|v| {
                vec![Level {
                    label: label.into(),
                    value: v,
                }]
            })
            .unwrap_or_default()
    };
    if !x.is_empty() {
        page.charts.push(chart(
            "latency",
            "Queue latency (highest in each bucket)",
            Unit::Seconds,
            &x,
            queues
                .iter()
                .map(|q| line(&text(q, "name"), values(q, "latency_max_s")))
                .collect(),
            target("latency_target_s", "target"),
        ));
        page.charts.push(chart(
            "depth",
            "Queue depth (mean in each bucket)",
            Unit::Count,
            &x,
            queues
                .iter()
                .map(|q| line(&text(q, "name"), values(q, "depth")))
                .collect(),
            Vec::new(),
        ));
        page.charts.push(chart(
            "throughput",
            "Jobs processed per second",
            Unit::PerSecond,
            &x,
            vec![line("processed", values(s, "processed_per_s"))],
            Vec::new(),
        ));
        page.charts.push(chart(
            "failed",
            "Failed jobs (% of processed)",
            Unit::Percent,
            &x,
            vec![line("failed", values(s, "failed_pct"))],
            target("failed_target_pct", "target"),
        ));
        page.charts.push(chart(
            "threads",
            "Busy threads and threads",
            Unit::Count,
            &x,
            vec![
                line("busy", values(s, "busy")),
                Series {
                    dashed: true,
                    ..line("threads", values(s, "concurrency"))
                },
            ],
            Vec::new(),
        ));
        page.charts.push(chart(
            "retry",
            "Retry set size",
            Unit::Count,
            &x,
            vec![line("retry set", values(s, "retry"))],
            Vec::new(),
        ));
    }
    let mut rows = vec![header(&["queue", "from", "to", "for", "peak latency"])];
    for q in list(m, "queues") {
        for p in list(q, "violations") {
            rows.push(vec![
                text(q, "name"),
                stamp(num(p, "from")),
                stamp(num(p, "to")),
                num(p, "duration_s").map(units::seconds).unwrap_or_default(),
                num(p, "peak").map(units::seconds).unwrap_or_default(),
            ]);
        }
    }
    if rows.len() > 1 {
        page.tables.push(Table {
            title: "Periods over the latency target".into(),
            rows,
        });
    }
    let mut rows = vec![header(&["from", "to", "for", "why"])];
    for g in list(m, "gaps") {
        let (f, t) = (num(g, "from"), num(g, "to"));
        rows.push(vec![
            stamp(f),
            stamp(t),
            units::seconds(t.unwrap_or(0.0) - f.unwrap_or(0.0)),
            text(g, "reason"),
        ]);
    }
    if rows.len() > 1 {
        page.tables.push(Table {
            title: "Gaps (no samples)".into(),
            rows,
        });
    }
    for (k, label) in [("source", "Redis"), ("file", "history file")] {
        let v = text(m, k);
        if !v.is_empty() {
            page.metadata
                .push((label.into(), powertune_core::redact::url(&v)));
        }
    }
    page
}
