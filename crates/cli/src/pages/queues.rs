//! The HTML page of a `queues` report: each queue's depth and latency and the
//! processes that serve it; with `--watch`, the change over the watch; processed and
//! failed per day (chart); retries, dead jobs, processes and job classes. Read from
//! the report's JSON by key, so older reports with fewer keys still render.
//!
//! The report keeps the watch's overall change, not each interval, so there is no
//! chart over the watch's time.

use super::cells::{count_cell, header, list, num, text};
use powertune_core::html::{Chart, Page, Series, Table, XAxis};
use powertune_core::units::{self, Unit};
use powertune_core::Report;
use serde_json::Value;

/// Error messages longer than this are cut in the tables.
const MAX_ERROR_CHARS: usize = 160;

pub fn page(report: &Report) -> Page {
    if report.command != "queues" {
        // `queues plan`: the verdict, what did not pass and every finding.
        return super::generic(report);
    }
    let mut page = super::generic(report);
    let m = &report.metrics;
    let s = m.get("sidekiq").unwrap_or(&Value::Null);
    queues(s, &mut page);
    if let Some(w) = m.get("watch").filter(|w| w.is_object()) {
        watch(w, &mut page);
    }
    days(s, &mut page);
    retries(s, &mut page);
    processes(s, &mut page);
    job_metrics(s, &mut page);
    page
}

fn seconds_cell(v: Option<f64>) -> String {
    v.map(units::seconds).unwrap_or_else(|| "-".into())
}

fn short(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(max).collect::<String>())
    }
}

/// `host:pid` (with the tag) of a process.
fn process_name(p: &Value) -> String {
    let mut name = format!("{}:{}", text(p, "hostname"), text(p, "pid"));
    let tag = text(p, "tag");
    if !tag.is_empty() {
        name = format!("{name} ({tag})");
    }
    name
}

/// Per queue: depth, latency, oldest job and which processes read it, highest
/// latency first.
fn queues(s: &Value, page: &mut Page) {
    let qs = list(s, "queues");
    if qs.is_empty() {
        return;
    }
    let procs = list(s, "processes");
    let mut sorted: Vec<&Value> = qs.iter().collect();
    sorted.sort_by(|a, b| {
        num(b, "latency_s")
            .unwrap_or(0.0)
            .total_cmp(&num(a, "latency_s").unwrap_or(0.0))
    });
    let mut rows = vec![header(&[
        "queue",
        "depth",
        "latency",
        "oldest job",
        "served by",
    ])];
    for q in &sorted {
        let name = text(q, "name");
        let served: Vec<String> = procs
            .iter()
            .filter(|p| list(p, "queues").iter().any(|n| n.as_str() == Some(&name)))
            .map(|p| {
                let mut n = process_name(p);
                if p.get("quiet").and_then(Value::as_bool) == Some(true) {
                    n.push_str(" quiet");
                }
                n
            })
            .collect();
        rows.push(vec![
            name,
            count_cell(num(q, "size")),
            seconds_cell(num(q, "latency_s")),
            text(q, "oldest_class"),
            if served.is_empty() {
                "no process".into()
            } else {
                served.join(", ")
            },
        ]);
    }
    page.tables.push(Table {
        title: "Queues (highest latency first)".into(),
        rows,
    });
    if let Some(n) = num(s, "queues_not_read").filter(|n| *n > 0.0) {
        page.metadata.push((
            "queues not read".into(),
            format!("{} (over the read limit)", units::count(n)),
        ));
    }
}

fn watch(w: &Value, page: &mut Page) {
    let mut rows = vec![header(&[
        "queue",
        "depth at the end",
        "latency",
        "net change",
        "drains in",
    ])];
    for r in list(w, "rows") {
        rows.push(vec![
            text(r, "queue"),
            count_cell(num(r, "size")),
            seconds_cell(num(r, "latency_s")),
            num(r, "net_per_s")
                .map(|v| format!("{}{}", if v > 0.0 { "+" } else { "" }, units::rate(v)))
                .unwrap_or_else(|| "-".into()),
            seconds_cell(num(r, "eta_s")),
        ]);
    }
    let totals = [
        ("processed", num(w, "processed_per_s").map(units::rate)),
        ("failed", num(w, "failed_per_s").map(units::rate)),
        ("enqueued", num(w, "enqueued_per_s").map(units::rate)),
        (
            "retry set change",
            num(w, "retry_change").map(|v| format!("{v:+}")),
        ),
    ];
    let summary: Vec<String> = totals
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k} {v}")))
        .collect();
    page.tables.push(Table {
        title: format!("Over the watch: {}", summary.join(", ")),
        rows,
    });
}

/// Seconds since the epoch of a `YYYY-MM-DD` day (its midnight, UTC).
fn day_start(date: &str) -> Option<f64> {
    chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .ok()?
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc().timestamp() as f64)
}

/// Processed and failed jobs per day: a chart over time, oldest day first (from two
/// days on; one day is in the totals table).
fn days(s: &Value, page: &mut Page) {
    let mut days: Vec<(f64, Option<f64>, Option<f64>)> = list(s, "days")
        .iter()
        .filter_map(|d| {
            Some((
                day_start(&text(d, "date"))?,
                num(d, "processed"),
                num(d, "failed"),
            ))
        })
        .collect();
    if days.len() < 2 {
        return;
    }
    days.sort_by(|a, b| a.0.total_cmp(&b.0));
    page.charts.push(Chart {
        id: "days".into(),
        title: "Jobs processed and failed per day".into(),
        unit: Unit::Count,
        x_axis: XAxis::Time,
        x_label: "day".into(),
        x: days.iter().map(|d| d.0).collect(),
        series: vec![
            Series {
                label: "processed".into(),
                values: days.iter().map(|d| d.1).collect(),
                dashed: false,
            },
            Series {
                label: "failed".into(),
                values: days.iter().map(|d| d.2).collect(),
                dashed: false,
            },
        ],
        levels: vec![],
        marks: vec![],
    });
}

fn retries(s: &Value, page: &mut Page) {
    let mut rows = vec![header(&["", "jobs"])];
    for (label, v) in [
        ("retry set", s.get("retry").and_then(|r| num(r, "size"))),
        ("dead set", num(s, "dead_size")),
        ("scheduled", num(s, "scheduled_size")),
        ("processed (all time)", num(s, "processed")),
        ("failed (all time)", num(s, "failed")),
    ] {
        if v.is_some() {
            rows.push(vec![label.into(), count_cell(v)]);
        }
    }
    if rows.len() > 1 {
        page.tables.push(Table {
            title: "Retries, dead jobs and totals".into(),
            rows,
        });
    }
    let Some(r) = s.get("retry") else {
        return;
    };
    let pairs = |key: &str| -> Vec<(String, String)> {
        list(r, key)
            .iter()
            .filter_map(|p| {
                let p = p.as_array()?;
                Some((
                    p.first()?.as_str()?.to_string(),
                    count_cell(p.get(1)?.as_f64()),
                ))
            })
            .collect()
    };
    let classes = pairs("top_classes");
    let errors = pairs("top_errors");
    let sample = format!("in a sample of {}", count_cell(num(r, "sampled")));
    if !classes.is_empty() {
        let mut rows = vec![header(&["job class", "retrying jobs"])];
        rows.extend(classes.into_iter().map(|(a, b)| vec![a, b]));
        page.tables.push(Table {
            title: format!("Most retried job classes ({sample})"),
            rows,
        });
    }
    if !errors.is_empty() {
        let mut rows = vec![header(&["error", "retrying jobs"])];
        rows.extend(
            errors
                .into_iter()
                .map(|(a, b)| vec![short(&a, MAX_ERROR_CHARS), b]),
        );
        page.tables.push(Table {
            title: format!("Most frequent retry errors ({sample})"),
            rows,
        });
    }
    if let Some(depth) = r.get("depth").and_then(Value::as_object) {
        let mut d: Vec<(u64, String)> = depth
            .iter()
            .filter_map(|(k, v)| Some((k.parse().ok()?, count_cell(v.as_f64()))))
            .collect();
        if !d.is_empty() {
            d.sort();
            let mut rows = vec![header(&["retry_count", "jobs"])];
            rows.extend(d.into_iter().map(|(k, v)| vec![k.to_string(), v]));
            page.tables.push(Table {
                title: format!("Retry depth ({sample})"),
                rows,
            });
        }
    }
    let dead = list(s, "dead_newest");
    if !dead.is_empty() {
        let mut rows = vec![header(&["job class", "error", "died at"])];
        for d in dead {
            rows.push(vec![
                text(d, "class"),
                short(
                    &format!("{}: {}", text(d, "error_class"), text(d, "error_message")),
                    MAX_ERROR_CHARS,
                ),
                num(d, "died_at")
                    .and_then(|t| chrono::DateTime::from_timestamp(t as i64, 0))
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_else(|| "-".into()),
            ]);
        }
        page.tables.push(Table {
            title: "Newest dead jobs".into(),
            rows,
        });
    }
}

fn processes(s: &Value, page: &mut Page) {
    let procs = list(s, "processes");
    if procs.is_empty() {
        return;
    }
    let now = num(s, "now");
    let mut rows = vec![header(&[
        "process",
        "queues",
        "busy / concurrency",
        "memory (RSS)",
        "last heartbeat",
        "quiet",
        "Sidekiq",
    ])];
    for p in procs {
        let queues: Vec<&str> = list(p, "queues").iter().filter_map(Value::as_str).collect();
        rows.push(vec![
            process_name(p),
            queues.join(", "),
            format!(
                "{} / {}",
                count_cell(num(p, "busy")),
                count_cell(num(p, "concurrency"))
            ),
            num(p, "rss_kb")
                .map(|k| units::bytes((k.max(0.0) * 1024.0) as u64))
                .unwrap_or_else(|| "-".into()),
            match (now, num(p, "beat")) {
                (Some(n), Some(b)) => format!("{} ago", units::seconds((n - b).max(0.0))),
                _ => "-".into(),
            },
            if p.get("quiet").and_then(Value::as_bool) == Some(true) {
                "yes".into()
            } else {
                "no".into()
            },
            text(p, "version"),
        ]);
    }
    page.tables.push(Table {
        title: "Processes".into(),
        rows,
    });
}

fn job_metrics(s: &Value, page: &mut Page) {
    let metrics = list(s, "metrics");
    if metrics.is_empty() {
        return;
    }
    let mut sorted: Vec<&Value> = metrics.iter().collect();
    sorted.sort_by(|a, b| {
        num(b, "total_ms")
            .unwrap_or(0.0)
            .total_cmp(&num(a, "total_ms").unwrap_or(0.0))
    });
    let mut rows = vec![header(&[
        "job class",
        "processed",
        "failed",
        "total time",
        "average",
    ])];
    for j in sorted {
        let avg = match (num(j, "total_ms"), num(j, "processed")) {
            (Some(t), Some(p)) if p > 0.0 => units::ms(t / p),
            _ => "-".into(),
        };
        rows.push(vec![
            text(j, "class"),
            count_cell(num(j, "processed")),
            count_cell(num(j, "failed")),
            num(j, "total_ms")
                .map(units::ms)
                .unwrap_or_else(|| "-".into()),
            avg,
        ]);
    }
    let minutes = num(s, "metrics_minutes")
        .map(|m| format!(" (last {} minutes)", units::count(m)))
        .unwrap_or_default();
    page.tables.push(Table {
        title: format!("Job classes by total time{minutes}"),
        rows,
    });
}
