//! The EXPLAIN of `investigate endpoint`'s step 3: which statement of the route to
//! explain, and how — EXPLAIN ANALYZE in a rolled-back READ ONLY transaction when a
//! span carried the statement with its values (or it has none), else the generic
//! plan without ANALYZE, with a note why.

use super::endpoint::{db_bound, db_statement, RouteData};
use super::model::{ExplainRun, PlanRedFlag, RouteStatement, Shares};
use crate::collect::Outcome;
use crate::model::{SystemState, SystemStatus};
use powertune_apm::snapshot::DetectionKind;
use powertune_core::{units, Targets};
use powertune_db::explain::{self, ExplainMetrics, ExplainOptions, RawExplain};
use powertune_db::RawDbConfig;
use std::time::Duration;

/// The statement to EXPLAIN, and how.
#[derive(Debug, Clone)]
pub(super) struct Wanted {
    /// The normalised statement (as listed).
    pub(super) statement: String,
    /// A span's copy with its values, when one carried it.
    pub(super) sample: Option<String>,
    /// Why it is explained (`the route is DB-bound`, `a slow query`).
    pub(super) why: String,
}

/// The heaviest statement when the route is DB-bound or has a slow query.
pub(super) fn explain_wanted(
    data: Option<&RouteData>,
    sh: Option<&Shares>,
    stmts: &[RouteStatement],
) -> Option<Wanted> {
    let d = &data?.detail;
    let slow = d
        .detections
        .iter()
        .find(|x| x.kind == DetectionKind::SlowQuery);
    let (statement, why) = match (slow, sh) {
        (Some(x), _) => (x.subject.clone(), "a slow query of the route".to_string()),
        (None, Some(sh)) if db_bound(sh) => (
            stmts.first()?.statement.clone(),
            format!(
                "the route is DB-bound ({} in the database)",
                units::percent(sh.db_pct)
            ),
        ),
        _ => return None,
    };
    let sample = d
        .slowest
        .iter()
        .flat_map(|ex| ex.spans.iter())
        .filter(|sp| db_statement(&sp.detail) == Some(statement.as_str()))
        .find_map(|sp| sp.sql_sample.clone());
    Some(Wanted {
        statement,
        sample,
        why,
    })
}

/// The db system's line when no EXPLAIN was run.
pub(super) fn skipped_db(address: Option<String>, have_route: bool) -> SystemStatus {
    let (state, reason) = match &address {
        None => (SystemState::NotConfigured, String::new()),
        Some(_) if have_route => (
            SystemState::NotMeasured,
            "no EXPLAIN needed: the route is not DB-bound and has no slow query".to_string(),
        ),
        Some(_) => (
            SystemState::NotMeasured,
            "no statement to explain: no traces for the route".to_string(),
        ),
    };
    SystemStatus {
        name: "db".into(),
        address: address.unwrap_or_default(),
        state,
        reason,
        elapsed_ms: 0.0,
    }
}

/// `?` placeholders of a normalised statement as `$1`, `$2`, ... (none sit inside
/// quotes: normalisation replaced every literal).
fn numbered(stmt: &str) -> (String, usize) {
    let mut out = String::with_capacity(stmt.len() + 8);
    let mut n = 0;
    for c in stmt.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    (out, n)
}

pub(super) async fn run_explain(
    url: &str,
    w: Wanted,
    timeout: Duration,
    t: &Targets,
) -> Result<Outcome<ExplainRun>, String> {
    let reads = {
        let kw = w
            .statement
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        kw == "SELECT" || kw == "WITH"
    };
    let (sql, generic, analyze, note) = match (&w.sample, reads) {
        (Some(sample), true) => (
            sample.clone(),
            false,
            true,
            format!("{}; a span carried its values: EXPLAIN ANALYZE in a READ ONLY transaction, rolled back", w.why),
        ),
        (None, true) if !w.statement.contains('?') => (
            w.statement.clone(),
            false,
            true,
            format!("{}; the statement has no parameters: EXPLAIN ANALYZE in a READ ONLY transaction, rolled back", w.why),
        ),
        (_, true) => {
            let (sql, _) = numbered(&w.statement);
            (sql, true, false, format!("{}; the spans carry it without its values (literals replaced by ?, or bind parameters): the generic plan only, without ANALYZE — capture values (db_statement: :include) for EXPLAIN ANALYZE", w.why))
        }
        (_, false) => {
            let (sql, n) = numbered(&w.statement);
            (sql, n > 0, false, format!("{}; a write: the plan only, without ANALYZE (nothing executed)", w.why))
        }
    };
    let options = ExplainOptions::Run {
        connection: RawDbConfig::new(url),
        request: RawExplain {
            sql,
            params: Vec::new(),
            settings: Vec::new(),
            no_analyze: !analyze,
            allow_writes: false,
            generic,
        },
        timeout,
    };
    let i = explain::inspect(&options, t)
        .await
        .map_err(|e| format!("EXPLAIN of `{}`: {e}", w.statement))?;
    Ok(Outcome::Measured {
        findings: i.findings,
        metrics: explain_run(&w.statement, analyze, note, &i.metrics, i.text),
    })
}

fn explain_run(
    statement: &str,
    analyze: bool,
    note: String,
    m: &ExplainMetrics,
    tree: String,
) -> ExplainRun {
    ExplainRun {
        statement: statement.to_string(),
        analyze,
        note,
        flags: m
            .flags
            .iter()
            .filter(|f| f.check != "slowest_node")
            .map(|f| PlanRedFlag {
                check: f.check.clone(),
                path: f.path.clone(),
                message: f.message.clone(),
                action: f.action.clone(),
            })
            .collect(),
        execution_ms: m.execution_ms,
        tree,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered() {
        assert_eq!(
            numbered("SELECT * FROM t WHERE a = ? AND b IN (?)"),
            ("SELECT * FROM t WHERE a = $1 AND b IN ($2)".to_string(), 2)
        );
    }
}
