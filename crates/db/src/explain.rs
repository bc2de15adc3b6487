//! `db explain`: runs `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)` on one statement in a
//! transaction that is always rolled back, with `statement_timeout` and `lock_timeout`.

use crate::collect::{connect, MARKER};
use crate::config::DbConfig;
use crate::error::DbError;
use crate::sql;
use std::time::Duration;

/// Statements `db explain` runs as given.
const READS: [&str; 4] = ["SELECT", "WITH", "VALUES", "TABLE"];
/// Statements that take row locks while explained: only with `allow_writes`.
const WRITES: [&str; 4] = ["INSERT", "UPDATE", "DELETE", "MERGE"];

/// What to explain, as given.
#[derive(Debug, Clone, Default)]
pub struct RawExplain {
    pub sql: String,
    /// Values for `$1`, `$2`, ... passed as text literals; the server infers their types.
    pub params: Vec<String>,
    /// `name=value` settings applied with `SET LOCAL` inside the transaction.
    pub settings: Vec<String>,
    /// `EXPLAIN` without `ANALYZE`: plan only, nothing executed.
    pub no_analyze: bool,
    /// Allow INSERT / UPDATE / DELETE / MERGE (executed, then rolled back).
    pub allow_writes: bool,
}

/// A validated request.
#[derive(Debug, Clone)]
pub struct ExplainRequest {
    pub sql: String,
    pub params: Vec<String>,
    pub settings: Vec<(String, String)>,
    pub analyze: bool,
}

impl RawExplain {
    /// Checks the statement without touching the server: exactly one statement, of a
    /// kind EXPLAIN accepts, with as many `--param` as placeholders.
    pub fn validate(&self) -> Result<ExplainRequest, DbError> {
        let stmts = sql::split_statements(&self.sql)
            .map_err(|e| DbError::Config(format!("the statement has {e} (expected e.g. \"SELECT * FROM orders WHERE account_id = $1\")")))?;
        let stmt = match stmts.len() {
            0 => return Err(DbError::Config("no statement given (expected e.g. \"SELECT * FROM orders WHERE account_id = $1\")".into())),
            1 => stmts.into_iter().next().unwrap_or_default(),
            n => {
                return Err(DbError::Config(format!(
                    "{n} statements given; db explain runs exactly one (e.g. \"SELECT * FROM orders WHERE account_id = $1\")"
                )))
            }
        };
        let kw = sql::first_keyword(&stmt);
        if WRITES.contains(&kw.as_str()) {
            if !self.allow_writes && !self.no_analyze {
                return Err(DbError::Config(format!(
                    "{kw} would run (then roll back) and lock rows while it runs; pass --allow-writes to do that, or --no-analyze for the plan only"
                )));
            }
        } else if !READS.contains(&kw.as_str()) {
            return Err(DbError::Config(format!(
                "cannot explain a `{kw}` statement: expected SELECT, WITH, VALUES, TABLE (or INSERT/UPDATE/DELETE/MERGE with --allow-writes)"
            )));
        }
        let wanted = sql::max_placeholder(&stmt);
        if wanted != self.params.len() {
            return Err(DbError::Config(format!(
                "the statement uses {wanted} placeholder(s) ($1..${wanted}) but {} --param given (e.g. --param 42 for $1)",
                self.params.len()
            )));
        }
        for p in &self.params {
            sql::quote_literal(p).map_err(DbError::Config)?;
        }
        let mut settings = Vec::new();
        for s in &self.settings {
            let (k, v) = s.split_once('=').ok_or_else(|| {
                DbError::Config(format!(
                    "--set `{s}` is not name=value (e.g. --set work_mem=64MB)"
                ))
            })?;
            let k = k.trim();
            if !sql::is_setting_name(k) {
                return Err(DbError::Config(format!(
                    "--set `{s}`: `{k}` is not a setting name (e.g. --set work_mem=64MB)"
                )));
            }
            if k == "transaction_read_only" || k == "default_transaction_read_only" {
                return Err(DbError::Config(format!(
                    "--set `{k}` is managed by powertune"
                )));
            }
            sql::quote_literal(v.trim()).map_err(DbError::Config)?;
            settings.push((k.to_string(), v.trim().to_string()));
        }
        Ok(ExplainRequest {
            sql: stmt,
            params: self.params.clone(),
            settings,
            analyze: !self.no_analyze,
        })
    }
}

/// The statements sent, in order (`BEGIN` ... the EXPLAIN ...), for documentation and tests.
pub fn script(
    req: &ExplainRequest,
    timeout: Duration,
    lock_timeout: Duration,
) -> Result<(String, String), DbError> {
    let mut setup = vec![
        "BEGIN".to_string(),
        "SET TRANSACTION READ WRITE".to_string(),
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
    let explain = if req.params.is_empty() {
        format!("{MARKER} EXPLAIN ({options}) {}", req.sql)
    } else {
        setup.push(format!("PREPARE powertune_explain AS {}", req.sql));
        let args: Result<Vec<String>, String> =
            req.params.iter().map(|p| sql::quote_literal(p)).collect();
        format!(
            "{MARKER} EXPLAIN ({options}) EXECUTE powertune_explain({})",
            args.map_err(DbError::Config)?.join(", ")
        )
    };
    Ok((setup.join("; "), explain))
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
    let result = async {
        session
            .client
            .batch_execute(&setup)
            .await
            .map_err(|e| session.query_error("EXPLAIN set-up", &e))?;
        let msgs = session
            .client
            .simple_query(&explain)
            .await
            .map_err(|e| session.query_error("EXPLAIN", &e))?;
        msgs.iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                _ => None,
            })
            .ok_or_else(|| DbError::Parse("EXPLAIN returned no plan".into()))
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

    fn raw(sql: &str, params: &[&str]) -> RawExplain {
        RawExplain {
            sql: sql.into(),
            params: params.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn refuses_more_than_one_statement_and_wrong_params() {
        let e = raw("SELECT 1; DELETE FROM t", &[])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("2 statements"), "{e}");
        let e = raw("SELECT * FROM t WHERE id = $1", &[])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("1 placeholder"), "{e}");
        assert!(raw("SELECT ';' FROM t WHERE id = $1;", &["4"])
            .validate()
            .is_ok());
        let e = raw("DROP TABLE t", &[]).validate().unwrap_err().to_string();
        assert!(e.contains("cannot explain a `DROP`"), "{e}");
        let e = raw("UPDATE t SET a = 1", &[])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("--allow-writes"), "{e}");
        let mut w = raw("UPDATE t SET a = 1", &[]);
        w.allow_writes = true;
        assert!(w.validate().is_ok());
    }

    #[test]
    fn script_rolls_back_in_its_own_read_write_transaction() {
        let mut r = raw(
            "SELECT * FROM t WHERE id = $1 AND name = $2",
            &["42", "o'brien"],
        );
        r.settings = vec!["work_mem=64kB".into()];
        let req = r.validate().unwrap();
        let (setup, explain) =
            script(&req, Duration::from_secs(5), Duration::from_secs(1)).unwrap();
        assert!(setup.starts_with("BEGIN; SET TRANSACTION READ WRITE; SET LOCAL statement_timeout = '5000ms'; SET LOCAL lock_timeout = '1000ms'; SET LOCAL work_mem = '64kB'; PREPARE powertune_explain AS SELECT"), "{setup}");
        assert!(
            explain.ends_with("EXECUTE powertune_explain('42', 'o''brien')"),
            "{explain}"
        );
        let mut bad = raw("SELECT 1", &[]);
        bad.settings = vec!["work_mem; DROP TABLE x=1".into()];
        assert!(bad.validate().is_err());
    }
}
