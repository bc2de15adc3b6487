//! The EXPLAIN judge: flags the runbook's red flags on a parsed plan, each with the
//! node path and its numbers, and turns the flags into findings.

use super::snapshot::{PlanDoc, PlanNode};
use powertune_core::units::{self, Quantity};
use powertune_core::{Finding, Targets, Value, Verdict};
use serde::Serialize;

/// When a node is worth a flag.
#[derive(Debug, Clone)]
pub struct PlanThresholds {
    /// Rows from which a scan or sort input is "large".
    pub large_rows: f64,
    /// Inner-side loops of a nested loop from which it is flagged.
    pub many_loops: f64,
    /// Elements of an `IN (...)` / `= ANY('{...}')` list from which it is flagged.
    pub in_list: usize,
    /// Estimate off by this factor or more (either way).
    pub misestimate: f64,
    /// Share (0-1) of scanned rows a filter must remove for a seq scan to be flagged.
    pub filtered_share: f64,
}

impl PlanThresholds {
    pub fn from_targets(t: &Targets) -> PlanThresholds {
        PlanThresholds {
            large_rows: t.database.hot_table_rows as f64,
            many_loops: 1000.0,
            in_list: 100,
            misestimate: 10.0,
            filtered_share: 0.5,
        }
    }
}

/// One red flag on one node.
#[derive(Debug, Clone, Serialize, PartialEq, schemars::JsonSchema)]
pub struct PlanFlag {
    /// Node path from the root, e.g. `Limit > Sort > Seq Scan on orders`.
    pub path: String,
    /// Pre-order index of the node (0 = root), used to place the flag in the tree.
    pub node: usize,
    /// `seq_scan_filter`, `sort_without_limit`, `disk_sort`, `nested_loop_loops`,
    /// `large_in_list`, `misestimate`, `hash_batches`, `slowest_node`.
    pub check: String,
    pub verdict: powertune_core::Verdict,
    /// The figure behind the flag (`99.9%` of rows removed, `2.0 MiB` spilled).
    pub observed: Value,
    /// Where the flag starts (`< 50%`, `in memory`).
    pub target: Value,
    pub message: String,
    pub action: String,
}

/// Flags every red flag of the plan.
pub fn analyze(doc: &PlanDoc, th: &PlanThresholds) -> Vec<PlanFlag> {
    let mut flags = Vec::new();
    let mut counter = 0usize;
    walk(&doc.root, &mut Vec::new(), &mut counter, th, &mut flags);
    if let Some(slow) = slowest(doc) {
        flags.push(slow);
    }
    flags
}

fn walk(
    n: &PlanNode,
    ancestors: &mut Vec<String>,
    counter: &mut usize,
    th: &PlanThresholds,
    flags: &mut Vec<PlanFlag>,
) -> bool {
    let id = *counter;
    *counter += 1;
    let label = n.label();
    let path = if ancestors.is_empty() {
        label.clone()
    } else {
        format!("{} > {label}", ancestors.join(" > "))
    };
    let under_limit = ancestors
        .iter()
        .any(|a| a == "Limit" || a.starts_with("Limit "));
    ancestors.push(n.node_type.clone());
    let mut child_misestimated = false;
    for c in &n.children {
        child_misestimated |= walk(c, ancestors, counter, th, flags);
    }
    ancestors.pop();
    let mut flag =
        |check: &str, (observed, target): (Value, Value), message: String, action: String| {
            flags.push(PlanFlag {
                path: path.clone(),
                node: id,
                check: check.to_string(),
                verdict: Verdict::Warn,
                observed,
                target,
                message,
                action,
            });
        };

    // Seq Scan whose filter removes most rows.
    if n.node_type.ends_with("Seq Scan") {
        if let (Some(rows), Some(filter)) = (n.total_rows(), n.condition("Filter")) {
            let removed = n.rows_removed_by_filter * n.actual_loops.unwrap_or(1.0);
            let scanned = rows + removed;
            if scanned >= th.large_rows && scanned > 0.0 && removed / scanned >= th.filtered_share {
                let cols = filter_columns(filter);
                let table = n.relation.clone().unwrap_or_else(|| "the table".into());
                let share = removed * 100.0 / scanned;
                flag(
                    "seq_scan_filter",
                    (
                        Value::of(Quantity::percent(share)).note("rows removed by the filter"),
                        Value::lt(Quantity::percent(th.filtered_share * 100.0)),
                    ),
                    format!(
                        "scanned {} rows, filter removed {} ({}), kept {}; Filter: {filter}",
                        fmt_rows(scanned),
                        fmt_rows(removed),
                        units::percent(share),
                        fmt_rows(rows)
                    ),
                    if cols.is_empty() {
                        "add a covering index on the WHERE / JOIN column".to_string()
                    } else {
                        format!(
                            "add a covering index on the WHERE / JOIN column: CREATE INDEX CONCURRENTLY ON {table} ({});",
                            cols.join(", ")
                        )
                    },
                );
            }
        }
    }
    // Sorts: spilling to disk, and large sorts with no LIMIT above.
    if n.node_type.ends_with("Sort") {
        let disk = n.sort_space_type.as_deref() == Some("Disk")
            || n.sort_method
                .as_deref()
                .is_some_and(|m| m.contains("external"));
        if disk {
            let spilled = kib(n.sort_space_kb.unwrap_or(0.0));
            flag(
                "disk_sort",
                (
                    Value::of(spilled).note("spilled to disk"),
                    Value::from("in memory"),
                ),
                format!(
                    "{} spilled {spilled} to disk sorting {} rows by {}",
                    n.sort_method.as_deref().unwrap_or("sort"),
                    fmt_rows(n.total_rows().unwrap_or(n.plan_rows)),
                    n.sort_key.join(", ")
                ),
                format!(
                    "paginate or chunk the query (ORDER BY ... LIMIT), or raise work_mem above {}kB for it (SET LOCAL work_mem)",
                    n.sort_space_kb.unwrap_or(0.0).ceil()
                ),
            );
        }
        let rows = n.total_rows().unwrap_or(n.plan_rows);
        if !under_limit && rows >= th.large_rows {
            flag(
                "sort_without_limit",
                (
                    Value::of(Quantity::count(rows)).note("rows sorted, no LIMIT above"),
                    Value::lt(Quantity::count(th.large_rows)).note("rows, or a LIMIT"),
                ),
                format!(
                    "sorts {} rows by {} with no LIMIT above",
                    fmt_rows(rows),
                    n.sort_key.join(", ")
                ),
                "ORDER BY without LIMIT: paginate or chunk (find_each / LIMIT + keyset)"
                    .to_string(),
            );
        }
    }
    // Nested loops that run their inner side many times.
    if n.node_type == "Nested Loop" {
        if let Some(inner) = n.children.get(1) {
            let loops = inner.actual_loops.unwrap_or(0.0);
            if loops >= th.many_loops {
                flag(
                    "nested_loop_loops",
                    (
                        Value::of(Quantity::count(loops)).note("inner loops"),
                        Value::lt(Quantity::count(th.many_loops)),
                    ),
                    format!("inner side {} runs {} times", inner.label(), fmt_rows(loops)),
                    "a loop per outer row: index the inner side's join column, or let the planner hash join (check the row estimates)".to_string(),
                );
            }
        }
    }
    // Large IN lists.
    for (k, v) in &n.conditions {
        let count = in_list_len(v);
        if count >= th.in_list {
            flag(
                "large_in_list",
                (
                    Value::of(Quantity::count(count as f64)).note("values"),
                    Value::lt(Quantity::count(th.in_list as f64)),
                ),
                format!("{k} has a list of {count} values"),
                "large IN (...) list: join against a temporary table or batch the query"
                    .to_string(),
            );
        }
    }
    // Hash with more than one batch.
    if let Some(b) = n.hash_batches {
        if b > 1.0 {
            flag(
                "hash_batches",
                (
                    Value::of(Quantity::count(b)).note("batches"),
                    Value::le(Quantity::count(1.0)),
                ),
                format!("hash split into {b} batches (did not fit in work_mem)"),
                "raise work_mem for this query, or reduce the rows hashed (filter earlier)"
                    .to_string(),
            );
        }
    }
    // Row estimate off by >= 10x (reported where it starts, not on every parent).
    let mut misestimated = false;
    if let (Some(actual), Some(loops)) = (n.actual_rows, n.actual_loops) {
        if loops > 0.0 {
            let est = n.plan_rows.max(1.0);
            let act = actual.max(1.0);
            let factor = if act > est { act / est } else { est / act };
            if factor >= th.misestimate && act.max(est) >= 100.0 {
                misestimated = true;
                if !child_misestimated {
                    let way = if act > est { "under" } else { "over" };
                    flag(
                        "misestimate",
                        (
                            Value::of(Quantity::ratio(factor)).note(format!("{way}estimated")),
                            Value::lt(Quantity::ratio(th.misestimate)),
                        ),
                        format!(
                            "estimated {} rows, got {} ({} {way})",
                            fmt_rows(n.plan_rows),
                            fmt_rows(actual),
                            units::ratio(factor),
                        ),
                        format!(
                            "run ANALYZE {}; if it persists, the columns are correlated: CREATE STATISTICS on them, then ANALYZE",
                            n.relation.clone().unwrap_or_else(|| "on the tables involved".into())
                        ),
                    );
                }
            }
        }
    }
    misestimated || child_misestimated
}

fn slowest(doc: &PlanDoc) -> Option<PlanFlag> {
    let mut best: Option<(f64, usize, String)> = None;
    let mut counter = 0usize;
    fn visit(
        n: &PlanNode,
        path: &str,
        counter: &mut usize,
        best: &mut Option<(f64, usize, String)>,
    ) {
        let id = *counter;
        *counter += 1;
        let label = n.label();
        let p = if path.is_empty() {
            label
        } else {
            format!("{path} > {label}")
        };
        if let Some(total) = n.total_ms() {
            let kids: f64 = n.children.iter().filter_map(PlanNode::total_ms).sum();
            let own = (total - kids).max(0.0);
            if best.as_ref().is_none_or(|b| own > b.0) {
                *best = Some((own, id, p.clone()));
            }
        }
        for c in &n.children {
            visit(c, &p, counter, best);
        }
    }
    visit(&doc.root, "", &mut counter, &mut best);
    let (own, id, path) = best?;
    let exec = doc.execution_ms.or(doc.root.total_ms()).unwrap_or(0.0);
    let share = if exec > 0.0 { own * 100.0 / exec } else { 0.0 };
    Some(PlanFlag {
        path,
        node: id,
        check: "slowest_node".into(),
        verdict: Verdict::Pass,
        observed: Value::of(Quantity::ms(own))
            .note(format!("{} of execution", units::percent(share.round()))),
        target: Value::from("-"),
        message: format!(
            "{} of its own ({} of execution)",
            units::ms(own),
            units::percent(share.round())
        ),
        action: "start tuning here".into(),
    })
}

/// Column names a filter compares (literals, casts, functions and keywords left out).
pub fn filter_columns(expr: &str) -> Vec<String> {
    const NOT_COLUMNS: [&str; 24] = [
        "AND",
        "OR",
        "NOT",
        "IS",
        "NULL",
        "TRUE",
        "FALSE",
        "ANY",
        "ALL",
        "IN",
        "LIKE",
        "ILIKE",
        "BETWEEN",
        "SUBPLAN",
        "CHARACTER",
        "VARYING",
        "WITH",
        "WITHOUT",
        "TIME",
        "ZONE",
        "DOUBLE",
        "PRECISION",
        "ARRAY",
        "DISTINCT",
    ];
    let b: Vec<char> = expr.chars().collect();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    let mut after_cast = false;
    while i < b.len() {
        let c = b[i];
        if c == '\'' {
            i += 1;
            while i < b.len() {
                if b[i] == '\'' {
                    if b.get(i + 1) == Some(&'\'') {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
            i += 1;
            after_cast = false;
            continue;
        }
        if c == ':' && b.get(i + 1) == Some(&':') {
            after_cast = true;
            i += 2;
            continue;
        }
        if c.is_alphabetic() || c == '_' || c == '"' {
            let start = i;
            let quoted = c == '"';
            i += 1;
            if quoted {
                while i < b.len() && b[i] != '"' {
                    i += 1;
                }
                i += 1;
            } else {
                while i < b.len()
                    && (b[i].is_alphanumeric() || b[i] == '_' || b[i] == '.' || b[i] == '$')
                {
                    i += 1;
                }
            }
            let word: String = b[start..i.min(b.len())].iter().collect();
            let mut j = i;
            while j < b.len() && b[j] == ' ' {
                j += 1;
            }
            let is_fn = b.get(j) == Some(&'(');
            let cast = std::mem::replace(&mut after_cast, false);
            if cast || is_fn || NOT_COLUMNS.contains(&word.to_ascii_uppercase().as_str()) {
                if cast {
                    // multi-word type names: "character varying", "timestamp without time zone"
                    after_cast = matches!(
                        word.to_ascii_lowercase().as_str(),
                        "character" | "timestamp" | "double" | "time" | "without" | "with"
                    );
                }
                continue;
            }
            let col = word.rsplit('.').next().unwrap_or(&word).to_string();
            if !col.is_empty() && !out.contains(&col) {
                out.push(col);
            }
            continue;
        }
        if !c.is_whitespace() && c != ')' {
            after_cast = false;
        }
        i += 1;
    }
    out
}

/// Elements of the largest `= ANY ('{...}')` or `ANY (ARRAY[...])` list in `expr`.
pub fn in_list_len(expr: &str) -> usize {
    let mut best = 0;
    let mut rest = expr;
    while let Some(p) = rest.find("ANY (") {
        let after = &rest[p + 5..];
        let (open, close) = if after.starts_with("'{") {
            ('{', '}')
        } else if after.starts_with("ARRAY[") {
            ('[', ']')
        } else {
            rest = after;
            continue;
        };
        let Some(start) = after.find(open) else { break };
        let body = &after[start + 1..];
        let mut depth = 0i32;
        let mut count = 1;
        let mut in_quote = false;
        let mut empty = true;
        for ch in body.chars() {
            match ch {
                '"' if open == '{' => in_quote = !in_quote,
                '\'' if open == '[' => in_quote = !in_quote,
                c if c == open && !in_quote => depth += 1,
                c if c == close && !in_quote => {
                    if depth == 0 {
                        break;
                    }
                    depth -= 1;
                }
                ',' if !in_quote && depth == 0 => count += 1,
                c if !c.is_whitespace() => empty = false,
                _ => {}
            }
        }
        if !empty {
            best = best.max(count);
        }
        rest = body;
    }
    best
}

/// A size PostgreSQL reports in kB (1,024 bytes).
fn kib(kb: f64) -> Quantity {
    Quantity::bytes((kb.max(0.0) * 1024.0).round() as u64)
}

pub(crate) fn fmt_rows(v: f64) -> String {
    // `as` saturates (NaN → 0); `unsigned_abs` holds i64::MIN's magnitude.
    let v = v.round() as i64;
    let s = v.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if v < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// Findings for the report: one per flag, and the execution time against the targets.
pub fn findings(doc: &PlanDoc, flags: &[PlanFlag], t: &Targets) -> Vec<Finding> {
    let d = &t.database;
    let mut out = Vec::new();
    if let Some(exec) = doc.execution_ms {
        out.push(
            Finding::new(
                "db",
                "plan_execution_time",
                doc.root.label(),
                Verdict::lower_is_better(exec, d.max_query_ms, Some(d.slow_query_ms)),
            )
            .observed(Value::of(Quantity::ms(exec)))
            .target(Value::lt(Quantity::ms(d.max_query_ms)))
            .limit(Value::of(Quantity::ms(d.slow_query_ms)))
            .evidence(format!(
                "planning {}",
                units::ms(doc.planning_ms.unwrap_or(0.0))
            ))
            .action("fix the flags below (index, LIMIT, ANALYZE, work_mem), then explain again"),
        );
    }
    for f in flags {
        out.push(
            Finding::new("db", &format!("plan_{}", f.check), &f.path, f.verdict)
                .observed(f.observed.clone())
                .evidence(f.message.clone())
                .target(f.target.clone())
                .action(f.action.clone()),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::render::render_tree;
    use crate::explain::snapshot::parse_plan_text;

    fn th() -> PlanThresholds {
        PlanThresholds::from_targets(&Targets::default())
    }

    fn load(name: &str) -> PlanDoc {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        parse_plan_text(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    fn checks(flags: &[PlanFlag]) -> Vec<&str> {
        flags.iter().map(|f| f.check.as_str()).collect()
    }

    #[test]
    fn seq_scan_with_selective_filter_names_the_columns() {
        let doc = load("seq_scan.json");
        let flags = analyze(&doc, &th());
        let f = flags.iter().find(|f| f.check == "seq_scan_filter").unwrap();
        assert_eq!(f.path, "Seq Scan on orders");
        assert!(
            f.action
                .contains("CREATE INDEX CONCURRENTLY ON orders (account_id, status)"),
            "{}",
            f.action
        );
        assert!(f.message.contains("filter removed 99,998"), "{}", f.message);
        assert_eq!(f.target, Value::lt(Quantity::percent(50.0)));
        let share = f.observed.quantity().unwrap();
        assert_eq!(share.unit, powertune_core::units::Unit::Percent);
        assert!(share.value > 99.9 && share.value <= 100.0, "{share:?}");
    }

    #[test]
    fn disk_sort_without_limit_and_hash_batches_and_loops() {
        let doc = load("sort_disk_psql.txt");
        let flags = analyze(&doc, &th());
        assert!(
            !checks(&flags).contains(&"sort_without_limit"),
            "3,000 rows is below 10,000"
        );
        let flags = analyze(
            &doc,
            &PlanThresholds {
                large_rows: 1000.0,
                ..th()
            },
        );
        let c = checks(&flags);
        assert!(c.contains(&"disk_sort"), "{c:?}");
        assert!(c.contains(&"sort_without_limit"), "{c:?}");
        assert!(c.contains(&"hash_batches"), "{c:?}");
        assert!(c.contains(&"nested_loop_loops"), "{c:?}");
        assert!(c.contains(&"slowest_node"));
        let disk = flags.iter().find(|f| f.check == "disk_sort").unwrap();
        assert_eq!(disk.path, "Sort");
        assert!(disk.action.contains("work_mem"));
        assert_eq!(
            disk.observed.quantity().unwrap().unit,
            powertune_core::units::Unit::Bytes
        );
        assert!(
            disk.message.contains(" KiB to disk") || disk.message.contains(" MiB to disk"),
            "{}",
            disk.message
        );
        let found = findings(&doc, &flags, &Targets::default());
        let exec = found
            .iter()
            .find(|f| f.check == "plan_execution_time")
            .unwrap();
        assert_eq!(
            exec.observed.quantity().unwrap().unit,
            powertune_core::units::Unit::Ms
        );
        assert_eq!(exec.target, Value::lt(Quantity::ms(100.0)));
        assert_eq!(exec.limit, Some(Value::of(Quantity::ms(500.0))));
        let plan_disk = found.iter().find(|f| f.check == "plan_disk_sort").unwrap();
        assert_eq!(plan_disk.observed, disk.observed);
        assert_eq!(plan_disk.target, "in memory");
        let tree = render_tree(&doc, &flags);
        assert!(tree.contains("! disk_sort:"), "{tree}");
        assert!(tree.contains("-> Hash Join"), "{tree}");
    }

    #[test]
    fn sort_under_a_limit_is_not_flagged() {
        let doc = load("limit_sort.json");
        let flags = analyze(&doc, &th());
        assert!(!checks(&flags).contains(&"sort_without_limit"), "{flags:?}");
        assert!(!checks(&flags).contains(&"disk_sort"));
    }

    #[test]
    fn misestimate_is_reported_where_it_starts() {
        let doc = load("misestimate.json");
        let flags = analyze(&doc, &th());
        let m: Vec<&PlanFlag> = flags.iter().filter(|f| f.check == "misestimate").collect();
        assert_eq!(m.len(), 1, "{flags:?}");
        assert_eq!(m[0].path, "Aggregate > Seq Scan on t");
        assert!(m[0].message.contains("100.00× under"), "{}", m[0].message);
        assert_eq!(
            m[0].observed,
            Value::of(Quantity::ratio(100.0)).note("underestimated")
        );
        assert_eq!(m[0].target, Value::lt(Quantity::ratio(10.0)));
        assert!(m[0].action.contains("ANALYZE t"));
    }

    #[test]
    fn large_in_lists() {
        let list: Vec<String> = (0..150).map(|i| i.to_string()).collect();
        assert_eq!(
            in_list_len(&format!("(id = ANY ('{{{}}}'::integer[]))", list.join(","))),
            150
        );
        assert_eq!(in_list_len("(id = ANY (ARRAY[1, 2, 3]))"), 3);
        assert_eq!(in_list_len("(name = ANY ('{\"a,b\",c}'::text[]))"), 2);
        assert_eq!(in_list_len("(id = ANY ($1))"), 0);
    }

    #[test]
    fn filter_columns_skip_literals_casts_and_functions() {
        assert_eq!(
            filter_columns("((account_id = 42) AND ((status)::text = 'open'::text))"),
            vec!["account_id", "status"]
        );
        assert_eq!(
            filter_columns("((o.created_at > '2024-01-01 00:00:00'::timestamp without time zone) AND (lower(email) = 'x'::text))"),
            vec!["created_at", "email"]
        );
        assert_eq!(
            filter_columns("(name::character varying IS NOT NULL)"),
            vec!["name"]
        );
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        let e = parse_plan_text("not json").unwrap_err().to_string();
        assert!(e.contains("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)"), "{e}");
        assert!(parse_plan_text("[]").is_err());
        assert!(parse_plan_text("{\"x\": 1}")
            .unwrap_err()
            .to_string()
            .contains("\"Plan\""));
        let findings = findings(
            &load("seq_scan.json"),
            &analyze(&load("seq_scan.json"), &th()),
            &Targets::default(),
        );
        assert_eq!(findings[0].check, "plan_execution_time");
        assert_eq!(findings[0].verdict, Verdict::Warn);
    }
}
