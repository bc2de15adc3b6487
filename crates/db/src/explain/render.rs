//! What `db explain` shows: the plan as an indented tree with the flags inline, and
//! the typed metrics payload of its report.

use super::judge::{fmt_rows, PlanFlag};
use super::snapshot::{PlanDoc, PlanNode};
use powertune_core::units;
use powertune_core::Verdict;
use serde::Serialize;

/// The metrics payload of a `db explain` report.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ExplainMetrics {
    /// `Execution Time` in milliseconds (`null` without ANALYZE).
    pub execution_ms: Option<f64>,
    /// `Planning Time` in milliseconds.
    pub planning_ms: Option<f64>,
    pub flags: Vec<PlanFlag>,
    /// The plan as PostgreSQL returned it (`null` when it was not JSON).
    pub plan: serde_json::Value,
}

impl ExplainMetrics {
    pub fn new(doc: &PlanDoc, flags: &[PlanFlag], text: &str) -> ExplainMetrics {
        ExplainMetrics {
            execution_ms: doc.execution_ms,
            planning_ms: doc.planning_ms,
            flags: flags.to_vec(),
            plan: serde_json::from_str(text).unwrap_or(serde_json::Value::Null),
        }
    }
}

/// The plan as an indented tree, each node with its numbers and its flags below it.
pub fn render_tree(doc: &PlanDoc, flags: &[PlanFlag]) -> String {
    let mut out = String::new();
    let mut counter = 0usize;
    fn node(n: &PlanNode, depth: usize, counter: &mut usize, flags: &[PlanFlag], out: &mut String) {
        let id = *counter;
        *counter += 1;
        let indent = if depth == 0 {
            String::new()
        } else {
            format!("{}-> ", "   ".repeat(depth - 1))
        };
        let mut nums = Vec::new();
        match n.actual_rows {
            Some(a) => nums.push(format!(
                "rows {} (est {})",
                fmt_rows(a),
                fmt_rows(n.plan_rows)
            )),
            None => nums.push(format!("est rows {}", fmt_rows(n.plan_rows))),
        }
        if let Some(l) = n.actual_loops {
            if l != 1.0 {
                nums.push(format!("loops {}", fmt_rows(l)));
            }
            if l == 0.0 {
                nums.push("never executed".into());
            }
        }
        if let Some(ms) = n.actual_total_ms {
            nums.push(units::ms(ms));
        }
        out.push_str(&format!("{indent}{}  ({})\n", n.label(), nums.join(", ")));
        let pad = "   ".repeat(depth) + "   ";
        for (k, v) in &n.conditions {
            out.push_str(&format!(
                "{pad}{k}: {}\n",
                powertune_core::report::truncate(v, 160)
            ));
        }
        if n.rows_removed_by_filter > 0.0 {
            out.push_str(&format!(
                "{pad}Rows Removed by Filter: {}\n",
                fmt_rows(n.rows_removed_by_filter)
            ));
        }
        if let Some(m) = &n.sort_method {
            let space = units::bytes((n.sort_space_kb.unwrap_or(0.0).max(0.0) * 1024.0) as u64);
            out.push_str(&format!(
                "{pad}Sort Method: {m} {} {space}\n",
                n.sort_space_type.as_deref().unwrap_or(""),
            ));
        }
        for f in flags.iter().filter(|f| f.node == id) {
            let mark = if f.verdict == Verdict::Pass { "*" } else { "!" };
            out.push_str(&format!("{pad}{mark} {}: {}\n", f.check, f.message));
        }
        for c in &n.children {
            node(c, depth + 1, counter, flags, out);
        }
    }
    node(&doc.root, 0, &mut counter, flags, &mut out);
    if let Some(p) = doc.planning_ms {
        out.push_str(&format!("Planning Time: {}\n", units::ms(p)));
    }
    if let Some(e) = doc.execution_ms {
        out.push_str(&format!("Execution Time: {}\n", units::ms(e)));
    }
    out
}
