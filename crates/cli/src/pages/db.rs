//! The HTML page of a `db` or `db explain` report. `db`: the slowest statements of
//! `pg_stat_statements` (by mean and by total time), connections against the server's
//! limit, and the server; `db explain`: the plan's nodes by their own time and its red
//! flags. Read from the report's JSON by key, so older reports still render.

use super::cells::{count_cell, header, ms_cell, num, text};
use powertune_core::html::{Chart, Level, Page, Series, Table, XAxis};
use powertune_core::units::{self, Unit};
use powertune_core::Report;
use powertune_db::explain::{parse_plan_value, PlanNode};
use serde_json::Value;

/// Statement text longer than this is cut in the tables (the JSON keeps it whole).
const MAX_QUERY_CHARS: usize = 300;
/// Plan nodes listed, by their own time.
const TOP_NODES: usize = 15;

pub fn page(report: &Report) -> Page {
    let mut page = super::generic(report);
    let m = &report.metrics;
    if report.command.split_whitespace().nth(1) == Some("explain") {
        explain(m, &mut page);
    } else {
        statements(report, &mut page);
        connections(m, &mut page);
        server(m, &mut page);
    }
    page
}

fn short(q: &str) -> String {
    let one_line = q.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= MAX_QUERY_CHARS {
        one_line
    } else {
        let cut: String = one_line.chars().take(MAX_QUERY_CHARS).collect();
        format!("{cut}…")
    }
}

/// The top statements, by mean time and by total time, and a chart of the slowest
/// means against the runbook's slow-query levels.
fn statements(report: &Report, page: &mut Page) {
    let m = &report.metrics;
    let Some(pss) = m.get("pg_stat_statements") else {
        return;
    };
    let state = text(pss, "state");
    if state != "available" {
        let why = match state.as_str() {
            "not_installed" => {
                "not installed in this database (CREATE EXTENSION pg_stat_statements)".to_string()
            }
            "not_preloaded" => "created but not in shared_preload_libraries".to_string(),
            "unavailable" => format!("unavailable: {}", text(pss, "reason")),
            other => other.to_string(),
        };
        page.metadata.push(("pg_stat_statements".into(), why));
        return;
    }
    let list = pss
        .get("statements")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    page.metadata.push((
        "pg_stat_statements".into(),
        format!(
            "{} statements, {} with a mean above the WARN threshold",
            count_cell(num(pss, "total_statements")),
            count_cell(num(pss, "slow_statements"))
        ),
    ));
    if list.is_empty() {
        return;
    }
    let row = |s: &Value, i: usize| {
        let hit = num(s, "shared_blks_hit").unwrap_or(0.0);
        let read = num(s, "shared_blks_read").unwrap_or(0.0);
        vec![
            (i + 1).to_string(),
            short(&text(s, "query")),
            count_cell(num(s, "calls")),
            ms_cell(num(s, "mean_ms")),
            ms_cell(num(s, "max_ms")),
            ms_cell(num(s, "total_ms")),
            count_cell(num(s, "rows")),
            if hit + read > 0.0 {
                units::percent(hit * 100.0 / (hit + read))
            } else {
                "-".into()
            },
            text(s, "user"),
        ]
    };
    let head = header(&[
        "#",
        "statement",
        "calls",
        "mean",
        "max",
        "total",
        "rows",
        "cache hit",
        "user",
    ]);
    let by = |key: &str| {
        let mut v: Vec<&Value> = list.iter().collect();
        v.sort_by(|a, b| {
            num(b, key)
                .unwrap_or(0.0)
                .total_cmp(&num(a, key).unwrap_or(0.0))
        });
        v
    };
    let by_mean = by("mean_ms");
    if by_mean.len() >= 2 {
        page.charts.push(Chart {
            id: "statement-mean".into(),
            title: "Mean time of the slowest statements (# as in the table by mean time)".into(),
            unit: Unit::Ms,
            x_axis: XAxis::Number,
            x_label: "statement #".into(),
            x: (1..=by_mean.len()).map(|i| i as f64).collect(),
            series: vec![Series {
                label: "mean".into(),
                values: by_mean.iter().map(|s| num(s, "mean_ms")).collect(),
                dashed: false,
            }],
            levels: slow_levels(report),
            marks: vec![],
        });
    }
    let mut rows = vec![head.clone()];
    rows.extend(by_mean.iter().enumerate().map(|(i, s)| row(s, i)));
    page.tables.push(Table {
        title: "Slowest statements by mean time".into(),
        rows,
    });
    let by_total = by("total_ms");
    if by_total
        .iter()
        .zip(&by_mean)
        .all(|(a, b)| std::ptr::eq(*a, *b))
    {
        // The same order: one table says it all.
        return;
    }
    let mut rows = vec![head];
    rows.extend(by_total.iter().enumerate().map(|(i, s)| row(s, i)));
    page.tables.push(Table {
        title: "Statements by total time (where the database spends its time)".into(),
        rows,
    });
}

/// The runbook's slow-statement target and maximum, from the report's slow-query
/// findings (`slow_query` per statement, `slow_queries` when none is slow).
fn slow_levels(report: &Report) -> Vec<Level> {
    let ms = |v: &powertune_core::Value| {
        v.quantity().and_then(|q| match q.unit {
            Unit::Ms => Some(q.value),
            Unit::Seconds => Some(q.value * 1000.0),
            _ => None,
        })
    };
    let Some(f) = report
        .findings
        .iter()
        .find(|f| f.check == "slow_query" || f.check == "slow_queries")
    else {
        return vec![];
    };
    let mut levels = Vec::new();
    if let Some(t) = ms(&f.target) {
        levels.push(Level {
            label: "target".into(),
            value: t,
        });
    }
    if let Some(l) = f.limit.as_ref().and_then(ms) {
        levels.push(Level {
            label: "maximum".into(),
            value: l,
        });
    }
    levels
}

fn connections(m: &Value, page: &mut Page) {
    let Some(c) = m.get("connections") else {
        return;
    };
    let s = m.get("server").unwrap_or(&Value::Null);
    let mut rows = vec![header(&["", "connections"])];
    for (label, v) in [
        ("total (this session included)", num(c, "total")),
        ("active", num(c, "active")),
        ("idle", num(c, "idle")),
        ("idle in transaction", num(c, "idle_in_transaction")),
        ("other", num(c, "other")),
        ("max_connections", num(s, "max_connections")),
        (
            "superuser_reserved_connections",
            num(s, "superuser_reserved_connections"),
        ),
        ("usable by the application", num(c, "usable")),
        ("free", num(c, "free")),
    ] {
        if v.is_some() {
            rows.push(vec![label.into(), count_cell(v)]);
        }
    }
    page.tables.push(Table {
        title: "Connections".into(),
        rows,
    });
}

fn server(m: &Value, page: &mut Page) {
    let s = m.get("server").unwrap_or(&Value::Null);
    let db = text(s, "database");
    if !db.is_empty() {
        page.subject = format!("database {db}");
    }
    for (label, key) in [
        ("server", "version"),
        ("database", "database"),
        ("user", "user"),
    ] {
        let v = text(s, key);
        if !v.is_empty() {
            page.metadata.push((label.into(), v));
        }
    }
    let objects: Vec<String> = [
        ("tables", "tables"),
        ("indexes", "indexes"),
        ("foreign keys", "foreign_keys"),
    ]
    .iter()
    .filter_map(|(label, key)| num(m, key).map(|n| format!("{} {label}", units::count(n))))
    .collect();
    if !objects.is_empty() {
        page.metadata
            .push(("schema read".into(), objects.join(", ")));
    }
}

/// One plan node, flattened: pre-order index, depth and its own time.
struct Node<'a> {
    index: usize,
    depth: usize,
    node: &'a PlanNode,
    /// Total time over all loops minus the children's (None without ANALYZE).
    own_ms: Option<f64>,
}

fn total_ms(n: &PlanNode) -> Option<f64> {
    n.actual_total_ms
        .map(|t| t * n.actual_loops.unwrap_or(1.0).max(1.0))
}

fn flatten<'a>(n: &'a PlanNode, depth: usize, out: &mut Vec<Node<'a>>) {
    let own = total_ms(n).map(|t| {
        let children: f64 = n.children.iter().filter_map(total_ms).sum();
        (t - children).max(0.0)
    });
    out.push(Node {
        index: out.len(),
        depth,
        node: n,
        own_ms: own,
    });
    for c in &n.children {
        flatten(c, depth + 1, out);
    }
}

/// `db explain`: the nodes that take the time, and the red flags with their node.
fn explain(m: &Value, page: &mut Page) {
    let exec = num(m, "execution_ms");
    if let Some(p) = num(m, "planning_ms") {
        page.metadata.push(("planning time".into(), units::ms(p)));
    }
    if let Some(e) = exec {
        page.metadata.push(("execution time".into(), units::ms(e)));
    }
    let flags = m
        .get("flags")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let doc = m.get("plan").and_then(|p| parse_plan_value(p).ok());
    if let Some(doc) = &doc {
        let mut nodes = Vec::new();
        flatten(&doc.root, 0, &mut nodes);
        page.subject = format!(
            "plan of {} node{}{}",
            nodes.len(),
            if nodes.len() == 1 { "" } else { "s" },
            exec.map(|e| format!(", executed in {}", units::ms(e)))
                .unwrap_or_default()
        );
        let timed = nodes.iter().any(|n| n.own_ms.is_some());
        if timed {
            nodes.sort_by(|a, b| b.own_ms.unwrap_or(0.0).total_cmp(&a.own_ms.unwrap_or(0.0)));
        }
        let mut rows = vec![header(&[
            "node",
            "depth",
            "operation",
            "own time",
            "share of execution",
            "rows (estimated)",
            "loops",
            "red flags",
        ])];
        for n in nodes.iter().take(TOP_NODES) {
            let flagged: Vec<String> = flags
                .iter()
                .filter(|f| num(f, "node") == Some(n.index as f64) && text(f, "verdict") != "pass")
                .map(|f| text(f, "check").replace('_', " "))
                .collect();
            rows.push(vec![
                n.index.to_string(),
                n.depth.to_string(),
                n.node.label(),
                ms_cell(n.own_ms),
                match (n.own_ms, exec) {
                    (Some(o), Some(e)) if e > 0.0 => units::percent(o * 100.0 / e),
                    _ => "-".into(),
                },
                match n.node.actual_rows {
                    Some(a) => format!(
                        "{} ({})",
                        units::count(a.round()),
                        units::count(n.node.plan_rows.round())
                    ),
                    None => format!("({})", units::count(n.node.plan_rows.round())),
                },
                n.node
                    .actual_loops
                    .map(units::count)
                    .unwrap_or_else(|| "-".into()),
                flagged.join(", "),
            ]);
        }
        page.tables.push(Table {
            title: if timed {
                format!("Plan: the top {TOP_NODES} nodes by their own time")
            } else {
                format!("Plan: the first {TOP_NODES} nodes (no ANALYZE timings)")
            },
            rows,
        });
    }
    if !flags.is_empty() {
        let mut rows = vec![header(&[
            "verdict", "flag", "node", "where", "what", "action",
        ])];
        for f in flags {
            rows.push(vec![
                text(f, "verdict").to_uppercase(),
                text(f, "check").replace('_', " "),
                text(f, "node"),
                text(f, "path"),
                text(f, "message"),
                text(f, "action"),
            ]);
        }
        page.tables.push(Table {
            title: "Plan flags (red flags and where to start)".into(),
            rows,
        });
    }
}
