//! The HTML page of a `capacity` report, built from its metrics alone (a
//! `powertune.capacity/v1`): latency against throughput with the knee, the runbook's
//! maximums and the USL curve; throughput against the offered load with the USL's
//! prediction; each sampled resource's utilisation and queue over the steps; then
//! the step table.

use super::cells::header;
use powertune_capacity::model::{CapacityMetrics, StepRecord};
use powertune_capacity::usl::Usl;
use powertune_core::html::{Chart, Level, Mark, Page, Series, Table, XAxis};
use powertune_core::units as fmt;
use powertune_core::{Report, Unit};
use std::collections::BTreeSet;

pub fn page(report: &Report) -> Page {
    let Ok(m) = serde_json::from_value::<CapacityMetrics>(report.metrics.clone()) else {
        return super::generic(report);
    };
    let mut page = super::generic(report);
    page.subject = format!("capacity of {}", m.source);
    if !m.steps.is_empty() {
        page.charts = charts(&m);
    }
    page.tables = vec![steps_table(&m)];
    page.tables.extend(statements_table(&m));
    page.metadata = vec![
        ("plan".into(), m.source.clone()),
        ("base URL".into(), m.base_url.clone()),
        ("started".into(), m.started_at.clone()),
        ("verdict".into(), m.verdict.clone()),
    ];
    page
}

fn series(label: impl Into<String>, values: Vec<Option<f64>>, dashed: bool) -> Series {
    Series {
        label: label.into(),
        values,
        dashed,
    }
}

/// Steps in offered order.
fn ordered(m: &CapacityMetrics) -> Vec<&StepRecord> {
    powertune_capacity::judge::by_rate(&m.steps)
        .into_iter()
        .map(|i| &m.steps[i])
        .collect()
}

/// The USL's mean latency (ms) at throughput `x` req/s: R(X) = (σ − 1)/(σX − λ),
/// defined below the ceiling λ/σ.
fn usl_latency_ms(u: &Usl, x: f64) -> Option<f64> {
    let d = u.sigma * x - u.lambda;
    let r = (u.sigma - 1.0) / d;
    (d < 0.0 && r.is_finite() && r > 0.0).then_some(r * 1000.0)
}

fn charts(m: &CapacityMetrics) -> Vec<Chart> {
    let steps = ordered(m);
    let knee = m.knee.as_ref().map(|k| &m.steps[k.step]);
    let mut out = Vec::new();

    // Latency against achieved throughput (sorted by throughput for the x axis).
    let mut by_x: Vec<&StepRecord> = steps.clone();
    by_x.sort_by(|a, b| a.achieved_rps.total_cmp(&b.achieved_rps));
    let x: Vec<f64> = by_x.iter().map(|s| s.achieved_rps).collect();
    let mut lat = vec![
        series(
            "p95, all requests",
            by_x.iter().map(|s| Some(s.p95_ms)).collect(),
            false,
        ),
        series(
            "mean",
            by_x.iter().map(|s| Some(s.mean_ms)).collect(),
            false,
        ),
    ];
    let types: BTreeSet<&str> = by_x
        .iter()
        .flat_map(|s| s.endpoint_types.iter().map(|e| e.endpoint_type.as_str()))
        .collect();
    let mut levels = Vec::new();
    for t in &types {
        lat.push(series(
            format!("{t} p95"),
            by_x.iter()
                .map(|s| {
                    s.endpoint_types
                        .iter()
                        .find(|e| e.endpoint_type == *t)
                        .map(|e| e.p95_ms)
                })
                .collect(),
            false,
        ));
        if let Some(e) = by_x
            .iter()
            .flat_map(|s| s.endpoint_types.iter())
            .find(|e| e.endpoint_type == *t)
        {
            levels.push(Level {
                label: format!("{t} maximum"),
                value: e.max_ms,
            });
        }
    }
    if let Some(u) = &m.usl.fit {
        lat.push(series(
            "USL mean latency",
            x.iter().map(|&v| usl_latency_ms(u, v)).collect(),
            true,
        ));
    }
    let knee_mark = |x: f64| Mark {
        label: "knee".into(),
        x,
    };
    out.push(Chart {
        id: "latency-throughput".into(),
        title: "Latency against throughput (knee marked; runbook maximums as levels)".into(),
        unit: Unit::Ms,
        x_axis: XAxis::Number,
        x_label: "achieved requests/s".into(),
        x: x.clone(),
        series: lat,
        levels,
        marks: knee
            .map(|k| knee_mark(k.achieved_rps))
            .into_iter()
            .collect(),
    });

    // Throughput against the offered load.
    let xo: Vec<f64> = steps.iter().map(|s| s.offered_rps).collect();
    let mut tp = vec![
        series(
            "achieved req/s",
            steps.iter().map(|s| Some(s.achieved_rps)).collect(),
            false,
        ),
        series("offered req/s", xo.iter().map(|v| Some(*v)).collect(), true),
    ];
    if let Some(u) = &m.usl.fit {
        tp.push(series(
            "USL X(N) at the measured concurrency",
            steps
                .iter()
                .map(|s| (s.in_flight > 0.0).then(|| u.throughput(s.in_flight)))
                .collect(),
            true,
        ));
    }
    out.push(Chart {
        id: "throughput".into(),
        title: "Throughput against the offered load".into(),
        unit: Unit::PerSecond,
        x_axis: XAxis::Number,
        x_label: "offered requests/s".into(),
        x: xo.clone(),
        series: tp,
        levels: m
            .usl
            .peak_throughput
            .map(|p| Level {
                label: "USL predicted peak".into(),
                value: p,
            })
            .into_iter()
            .collect(),
        marks: knee.map(|k| knee_mark(k.offered_rps)).into_iter().collect(),
    });

    // Each resource over the steps.
    let names: BTreeSet<&str> = steps
        .iter()
        .flat_map(|s| s.resources.iter().map(|r| r.resource.as_str()))
        .collect();
    let of = |name: &str, f: &dyn Fn(&powertune_capacity::resources::Reading) -> Option<f64>| {
        steps
            .iter()
            .map(|s| s.resources.iter().find(|r| r.resource == name).and_then(f))
            .collect::<Vec<_>>()
    };
    if !names.is_empty() {
        out.push(Chart {
            id: "utilisation".into(),
            title: "Utilisation of each resource (highest sample of the step)".into(),
            unit: Unit::Percent,
            x_axis: XAxis::Number,
            x_label: "offered requests/s".into(),
            x: xo.clone(),
            series: names
                .iter()
                .map(|n| series(*n, of(n, &|r| r.utilisation_max.map(|u| u * 100.0)), false))
                .collect(),
            levels: vec![Level {
                label: "saturated".into(),
                value: powertune_capacity::resources::UTILISATION_CROSSED * 100.0,
            }],
            marks: knee.map(|k| knee_mark(k.offered_rps)).into_iter().collect(),
        });
        out.push(Chart {
            id: "saturation".into(),
            title: "Work waiting for each resource (mean over the step)".into(),
            unit: Unit::Count,
            x_axis: XAxis::Number,
            x_label: "offered requests/s".into(),
            x: xo,
            series: names
                .iter()
                .map(|n| series(*n, of(n, &|r| r.saturation_mean), false))
                .collect(),
            levels: Vec::new(),
            marks: knee.map(|k| knee_mark(k.offered_rps)).into_iter().collect(),
        });
    }
    out
}

fn steps_table(m: &CapacityMetrics) -> Table {
    let mut rows = vec![header(&[
        "step",
        "offered/s",
        "achieved/s",
        "req/s",
        "p50",
        "p95",
        "p99",
        "errors",
        "state",
        "resources",
    ])];
    for s in ordered(m) {
        let state = if s.generator_limited {
            "generator saturated".to_string()
        } else if s.violations.is_empty() {
            format!("{:?}", s.steadiness)
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_lowercase()
        } else {
            s.violations.join("; ")
        };
        rows.push(vec![
            format!(
                "{}{}",
                s.number,
                if s.refinement { " (refinement)" } else { "" }
            ),
            fmt::trim(s.offered, 1),
            fmt::trim(s.achieved, 1),
            fmt::trim(s.achieved_rps, 1),
            fmt::ms(s.p50_ms),
            fmt::ms(s.p95_ms),
            fmt::ms(s.p99_ms),
            fmt::percent(s.error_rate_pct),
            state,
            s.resources
                .iter()
                .map(|r| {
                    format!(
                        "{}{}: {}",
                        if r.crossed { "⚠ " } else { "" },
                        r.resource,
                        r.figures
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
        ]);
    }
    Table {
        title: "Steps (in offered order)".into(),
        rows,
    }
}

/// `--db`: the heaviest statements within the knee step (else the last step).
fn statements_table(m: &CapacityMetrics) -> Option<Table> {
    let step = match &m.knee {
        Some(k) => &m.steps[k.step],
        None => m.steps.last()?,
    };
    if step.statements.is_empty() {
        return None;
    }
    let mut rows = vec![header(&["total", "calls", "mean", "statement"])];
    for st in &step.statements {
        rows.push(vec![
            fmt::ms(st.total_ms),
            st.calls.to_string(),
            fmt::ms(st.mean_ms),
            st.query.clone(),
        ]);
    }
    Some(Table {
        title: format!(
            "Heaviest statements within step {} ({}/s; pg_stat_statements delta)",
            step.number,
            fmt::trim(step.offered, 1)
        ),
        rows,
    })
}
