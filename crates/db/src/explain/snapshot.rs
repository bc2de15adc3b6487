//! The plan `db explain` judges: `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)` output (as
//! PostgreSQL returns it, or as psql prints it) parsed into plain structs.

use crate::error::DbError;
use serde::Serialize;
use serde_json::Value;

/// A parsed plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlanDoc {
    pub root: PlanNode,
    pub planning_ms: Option<f64>,
    pub execution_ms: Option<f64>,
}

/// One plan node, with the fields the analyzer uses.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PlanNode {
    pub node_type: String,
    pub relation: Option<String>,
    pub alias: Option<String>,
    pub index_name: Option<String>,
    pub parent_relationship: Option<String>,
    /// Conditions: `Filter`, `Index Cond`, `Recheck Cond`, `Hash Cond`, `Join Filter`, ...
    pub conditions: Vec<(String, String)>,
    pub sort_key: Vec<String>,
    pub plan_rows: f64,
    pub actual_rows: Option<f64>,
    pub actual_loops: Option<f64>,
    pub actual_total_ms: Option<f64>,
    pub rows_removed_by_filter: f64,
    pub sort_method: Option<String>,
    pub sort_space_type: Option<String>,
    pub sort_space_kb: Option<f64>,
    pub hash_batches: Option<f64>,
    pub children: Vec<PlanNode>,
}

impl PlanNode {
    /// `Seq Scan on orders o`, `Index Scan using ix on orders`, `Hash Join`.
    pub fn label(&self) -> String {
        let mut s = self.node_type.clone();
        if let Some(ix) = &self.index_name {
            s.push_str(&format!(" using {ix}"));
        }
        if let Some(r) = &self.relation {
            s.push_str(&format!(" on {r}"));
            if let Some(a) = &self.alias {
                if a != r {
                    s.push_str(&format!(" {a}"));
                }
            }
        }
        s
    }

    pub(crate) fn condition(&self, name: &str) -> Option<&str> {
        self.conditions
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Actual rows over all loops.
    pub(crate) fn total_rows(&self) -> Option<f64> {
        Some(self.actual_rows? * self.actual_loops.unwrap_or(1.0))
    }

    /// Time spent in this node over all loops (children included).
    pub(crate) fn total_ms(&self) -> Option<f64> {
        Some(self.actual_total_ms? * self.actual_loops.unwrap_or(1.0))
    }
}

const CONDITIONS: [&str; 7] = [
    "Filter",
    "Index Cond",
    "Recheck Cond",
    "Hash Cond",
    "Merge Cond",
    "Join Filter",
    "One-Time Filter",
];

/// Parses saved EXPLAIN (FORMAT JSON) output: the bare object, the array PostgreSQL
/// returns, or psql's aligned/unaligned printout of it (header, `+` continuations,
/// `(1 row)`).
pub fn parse_plan_text(text: &str) -> Result<PlanDoc, DbError> {
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(first) => {
            let cleaned = strip_psql(text);
            serde_json::from_str(&cleaned).map_err(|_| {
                DbError::Parse(format!(
                    "not EXPLAIN (FORMAT JSON) output: {first} (expected e.g. [{{\"Plan\": {{\"Node Type\": \"Seq Scan\", ...}}}}] from EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT ...)"
                ))
            })?
        }
    };
    parse_plan_value(&value)
}

fn strip_psql(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty()
            || t == "QUERY PLAN"
            || (t.chars().all(|c| c == '-' || c == '+') && !t.is_empty())
            || (t.starts_with('(') && (t.ends_with(" row)") || t.ends_with(" rows)")))
        {
            continue;
        }
        let l = line.trim_end();
        let l = l.strip_suffix('+').unwrap_or(l).trim_end();
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// Parses an already decoded JSON plan (array-wrapped or not).
pub fn parse_plan_value(v: &Value) -> Result<PlanDoc, DbError> {
    let top = match v {
        Value::Array(a) => a
            .first()
            .ok_or_else(|| DbError::Parse("the plan array is empty".into()))?,
        other => other,
    };
    let plan = top.get("Plan").ok_or_else(|| {
        DbError::Parse("no \"Plan\" key: is this EXPLAIN (FORMAT JSON) output? (expected e.g. [{\"Plan\": {...}, \"Execution Time\": 1.2}])".into())
    })?;
    Ok(PlanDoc {
        root: parse_node(plan, 0)?,
        planning_ms: top.get("Planning Time").and_then(Value::as_f64),
        execution_ms: top.get("Execution Time").and_then(Value::as_f64),
    })
}

/// Plans deeper than this are refused (bounded recursion).
pub const MAX_DEPTH: usize = 200;

fn parse_node(v: &Value, depth: usize) -> Result<PlanNode, DbError> {
    if depth > MAX_DEPTH {
        return Err(DbError::Parse(format!(
            "plan nested deeper than {MAX_DEPTH} nodes"
        )));
    }
    let obj = v
        .as_object()
        .ok_or_else(|| DbError::Parse("a plan node is not a JSON object".into()))?;
    let s = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_string);
    let f = |k: &str| obj.get(k).and_then(Value::as_f64);
    let node_type =
        s("Node Type").ok_or_else(|| DbError::Parse("a plan node has no \"Node Type\"".into()))?;
    let mut children = Vec::new();
    if let Some(Value::Array(kids)) = obj.get("Plans") {
        for k in kids {
            children.push(parse_node(k, depth + 1)?);
        }
    }
    Ok(PlanNode {
        node_type,
        relation: s("Relation Name"),
        alias: s("Alias"),
        index_name: s("Index Name"),
        parent_relationship: s("Parent Relationship"),
        conditions: CONDITIONS
            .iter()
            .filter_map(|k| s(k).map(|v| (k.to_string(), v)))
            .collect(),
        sort_key: obj
            .get("Sort Key")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        plan_rows: f("Plan Rows").unwrap_or(0.0),
        actual_rows: f("Actual Rows"),
        actual_loops: f("Actual Loops"),
        actual_total_ms: f("Actual Total Time"),
        rows_removed_by_filter: f("Rows Removed by Filter").unwrap_or(0.0),
        sort_method: s("Sort Method"),
        sort_space_type: s("Sort Space Type"),
        sort_space_kb: f("Sort Space Used"),
        hash_batches: f("Hash Batches"),
        children,
    })
}
