//! The collector of `db explain`: runs `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)` on
//! one statement in a transaction that is always rolled back, with
//! `statement_timeout` and `lock_timeout`.
//!
//! Unless writes are allowed, the transaction is READ ONLY and the plan is read first
//! (EXPLAIN without ANALYZE, nothing executed): a `ModifyTable` node anywhere in it (an
//! INSERT/UPDATE/DELETE/MERGE, also inside a CTE) or a `LockRows` node (`FOR UPDATE`,
//! `FOR SHARE`, `FOR NO KEY UPDATE`, `FOR KEY SHARE`) refuses the statement before it
//! runs. `SELECT ... INTO` (which creates a table and shows no such node, and which
//! PostgreSQL runs even in a READ ONLY transaction) is refused by the request's SQL
//! parse ([`super::request`]). Writes inside functions are out of scope: the READ ONLY
//! transaction refuses most of them when they try (SQLSTATE 25006, e.g. `nextval`,
//! an INSERT in a PL/pgSQL body), before they change anything.

use super::request::ExplainRequest;
use super::sql;
use crate::collect::{connect, MARKER};
use crate::config::DbConfig;
use crate::error::DbError;
use std::time::Duration;

/// The statements sent, in order (`BEGIN` ... the EXPLAIN ...), for documentation and tests.
pub fn script(
    req: &ExplainRequest,
    timeout: Duration,
    lock_timeout: Duration,
) -> Result<(String, String), DbError> {
    let mode = if req.analyze && !req.allow_writes {
        "READ ONLY"
    } else {
        "READ WRITE"
    };
    let mut setup = vec![
        "BEGIN".to_string(),
        format!("SET TRANSACTION {mode}"),
        format!("SET LOCAL statement_timeout = '{}ms'", timeout.as_millis()),
        format!("SET LOCAL lock_timeout = '{}ms'", lock_timeout.as_millis()),
    ];
    for (k, v) in &req.settings {
        setup.push(format!(
            "SET LOCAL {k} = {}",
            sql::quote_literal(v).map_err(DbError::Config)?
        ));
    }
    let options = if req.analyze {
        "ANALYZE, BUFFERS, FORMAT JSON"
    } else {
        "FORMAT JSON"
    };
    if !req.params.is_empty() || req.nulls > 0 {
        setup.push(format!("PREPARE powertune_explain AS {}", req.sql));
    }
    Ok((setup.join("; "), explain_statement(req, options)?))
}

/// `EXPLAIN (options)` of the statement (of the prepared statement when it has
/// parameters).
fn explain_statement(req: &ExplainRequest, options: &str) -> Result<String, DbError> {
    Ok(if req.nulls > 0 {
        format!(
            "{MARKER} EXPLAIN ({options}) EXECUTE powertune_explain({})",
            vec!["NULL"; req.nulls].join(", ")
        )
    } else if req.params.is_empty() {
        format!("{MARKER} EXPLAIN ({options}) {}", req.sql)
    } else {
        let args: Result<Vec<String>, String> =
            req.params.iter().map(|p| sql::quote_literal(p)).collect();
        format!(
            "{MARKER} EXPLAIN ({options}) EXECUTE powertune_explain({})",
            args.map_err(DbError::Config)?.join(", ")
        )
    })
}

/// The first node of a plan (EXPLAIN FORMAT JSON output) that writes or locks rows:
/// `ModifyTable` or `LockRows`, anywhere in the tree (CTEs and subplans included),
/// described for the refusal.
pub fn plan_writes(plan: &serde_json::Value) -> Option<String> {
    match plan {
        serde_json::Value::Array(items) => items.iter().find_map(plan_writes),
        serde_json::Value::Object(map) => {
            if let Some(node) = map.get("Node Type").and_then(|v| v.as_str()) {
                let s = |k: &str| map.get(k).and_then(|v| v.as_str());
                match node {
                    "ModifyTable" => {
                        let what = match (s("Operation"), s("Relation Name")) {
                            (Some(op), Some(rel)) => format!(" ({op} on {rel})"),
                            (Some(op), None) => format!(" ({op})"),
                            _ => String::new(),
                        };
                        return Some(format!("a ModifyTable node{what}: the statement writes"));
                    }
                    "LockRows" => return Some(
                        "a LockRows node: the statement locks the rows it reads (FOR UPDATE/SHARE)"
                            .into(),
                    ),
                    _ => {}
                }
            }
            map.values().find_map(plan_writes)
        }
        _ => None,
    }
}

/// The first row's first column of a simple query's answer.
fn first_value(msgs: &[tokio_postgres::SimpleQueryMessage]) -> Option<String> {
    msgs.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
        _ => None,
    })
}

/// SQLSTATE 25006: the READ ONLY transaction stopped a write the plan did not show
/// (inside a function), as one clear line.
fn write_refusal(e: &tokio_postgres::Error) -> Option<DbError> {
    let db = e.as_db_error()?;
    (db.code() == &tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION).then(|| {
        DbError::Config(format!(
            "the statement writes ({}); it was stopped and rolled back. Pass --allow-writes to run it (then roll it back), or --no-analyze for the plan only",
            db.message()
        ))
    })
}

/// Runs the EXPLAIN and returns its JSON text. The transaction is rolled back
/// whatever happens; the session is closed afterwards.
pub async fn run(
    cfg: &DbConfig,
    req: &ExplainRequest,
    timeout: Duration,
) -> Result<String, DbError> {
    let session = connect(cfg).await?;
    let (setup, explain) = script(req, timeout, cfg.lock_timeout)?;
    let read_only = req.analyze && !req.allow_writes;
    let refusal = |e: &tokio_postgres::Error, what: &str| {
        read_only
            .then(|| write_refusal(e))
            .flatten()
            .unwrap_or_else(|| session.query_error(what, e))
    };
    let result = async {
        session
            .client
            .batch_execute(&setup)
            .await
            .map_err(|e| refusal(&e, "EXPLAIN set-up"))?;
        if read_only {
            // The plan first, nothing executed: refuse writes and row locks.
            let msgs = session
                .client
                .simple_query(&explain_statement(req, "FORMAT JSON")?)
                .await
                .map_err(|e| session.query_error("EXPLAIN", &e))?;
            let text = first_value(&msgs)
                .ok_or_else(|| DbError::Parse("EXPLAIN returned no plan".into()))?;
            let plan: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| DbError::Parse(format!("EXPLAIN returned a plan that is not JSON: {e}")))?;
            if let Some(what) = plan_writes(&plan) {
                return Err(DbError::Config(format!(
                    "the plan has {what}; EXPLAIN ANALYZE would run it (then roll back) and hold row locks meanwhile, so nothing was run. Pass --allow-writes to do that, or --no-analyze for the plan only"
                )));
            }
        }
        let msgs = session
            .client
            .simple_query(&explain)
            .await
            .map_err(|e| refusal(&e, "EXPLAIN"))?;
        first_value(&msgs).ok_or_else(|| DbError::Parse("EXPLAIN returned no plan".into()))
    }
    .await;
    // Always roll back, also after an error (which aborted the transaction).
    let rollback = session.client.batch_execute("ROLLBACK").await;
    let plan = result?;
    rollback.map_err(|e| session.query_error("ROLLBACK", &e))?;
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::RawExplain;

    #[test]
    fn writes_and_row_locks_are_found_anywhere_in_the_plan() {
        let cte = serde_json::json!([{"Plan": {"Node Type": "CTE Scan", "Plans": [
            {"Node Type": "ModifyTable", "Operation": "Delete", "Relation Name": "t",
             "Parent Relationship": "InitPlan", "Plans": [{"Node Type": "Seq Scan"}]}]}}]);
        let w = plan_writes(&cte).unwrap();
        assert!(w.contains("ModifyTable node (Delete on t)"), "{w}");
        let lock = serde_json::json!([{"Plan": {"Node Type": "LockRows",
            "Plans": [{"Node Type": "Seq Scan"}]}}]);
        assert!(plan_writes(&lock).unwrap().contains("LockRows"));
        let read = serde_json::json!([{"Plan": {"Node Type": "Hash Join", "Plans": [
            {"Node Type": "Seq Scan", "Relation Name": "ModifyTable"}]}}]);
        assert_eq!(plan_writes(&read), None);
    }

    #[test]
    fn script_rolls_back_in_its_own_read_write_transaction() {
        let mut r = RawExplain {
            sql: "SELECT * FROM t WHERE id = $1 AND name = $2".into(),
            params: vec!["42".into(), "o'brien".into()],
            ..Default::default()
        };
        r.settings = vec!["work_mem=64kB".into()];
        let req = r.validate().unwrap();
        let (setup, explain) =
            script(&req, Duration::from_secs(5), Duration::from_secs(1)).unwrap();
        assert!(setup.starts_with("BEGIN; SET TRANSACTION READ ONLY; SET LOCAL statement_timeout = '5000ms'; SET LOCAL lock_timeout = '1000ms'; SET LOCAL work_mem = '64kB'; PREPARE powertune_explain AS SELECT"), "{setup}");
        assert!(
            explain.ends_with("EXECUTE powertune_explain('42', 'o''brien')"),
            "{explain}"
        );
        r.allow_writes = true;
        let (setup, _) = script(
            &r.validate().unwrap(),
            Duration::from_secs(5),
            Duration::from_secs(1),
        )
        .unwrap();
        assert!(
            setup.starts_with("BEGIN; SET TRANSACTION READ WRITE;"),
            "{setup}"
        );
        let mut bad = RawExplain {
            sql: "SELECT 1".into(),
            ..Default::default()
        };
        bad.settings = vec!["work_mem; DROP TABLE x=1".into()];
        assert!(bad.validate().is_err());
    }
}
