//! What `db explain` is asked to run, checked before any connection: exactly one
//! statement of a kind EXPLAIN accepts, its parameters and its `SET LOCAL` settings.
//!
//! Whether the statement writes or locks rows is not decided here from its first
//! keyword: [`super::collect::run`] asks the server for the plan first (EXPLAIN
//! without ANALYZE) and refuses a plan with a `ModifyTable` or `LockRows` node unless
//! writes are allowed; the keyword check below only refuses plain writes early.
//! `SELECT ... INTO` (which creates a table, shows nothing in the plan and runs even
//! in a READ ONLY transaction) is found by parsing the statement with `sqlparser`'s
//! PostgreSQL dialect; a statement that parser cannot read is left to the plan check.

use super::sql;
use crate::error::DbError;
use sqlparser::ast::{Query, SetExpr, Statement};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

/// How deep the SQL parse may nest before it gives up (hostile input stays bounded).
const PARSE_DEPTH: usize = 64;

/// Whether `stmt` is a `SELECT ... INTO` (it creates a table), as PostgreSQL's grammar
/// reads it; `false` when the parser cannot read the statement.
pub fn creates_table(stmt: &str) -> bool {
    let dialect = PostgreSqlDialect {};
    let parsed = Parser::new(&dialect)
        .with_recursion_limit(PARSE_DEPTH)
        .try_with_sql(stmt)
        .and_then(|mut p| p.parse_statements());
    let Ok(statements) = parsed else {
        return false;
    };
    fn query(q: &Query) -> bool {
        set(&q.body)
    }
    fn set(e: &SetExpr) -> bool {
        match e {
            SetExpr::Select(s) => s.into.is_some(),
            SetExpr::Query(q) => query(q),
            SetExpr::SetOperation { left, right, .. } => set(left) || set(right),
            _ => false,
        }
    }
    statements
        .iter()
        .any(|s| matches!(s, Statement::Query(q) if query(q)))
}

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
    /// Plan only, for a statement whose values are unknown (no `params`): every `$n`
    /// is bound to NULL under `plan_cache_mode = force_generic_plan`, so the plan is
    /// the generic one PostgreSQL uses for any values. Nothing is executed.
    pub generic: bool,
}

/// A validated request.
#[derive(Debug, Clone)]
pub struct ExplainRequest {
    pub sql: String,
    pub params: Vec<String>,
    pub settings: Vec<(String, String)>,
    pub analyze: bool,
    /// Run a statement that writes or locks rows (EXPLAIN ANALYZE in a rolled-back
    /// READ WRITE transaction); without it, ANALYZE runs in a READ ONLY transaction
    /// and only after the plan showed no write and no row lock.
    pub allow_writes: bool,
    /// Placeholders bound to NULL for a generic plan (0 unless asked).
    pub nulls: usize,
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
        if !self.allow_writes && !self.no_analyze && creates_table(&stmt) {
            return Err(DbError::Config(
                "SELECT ... INTO would create a table (then roll it back); pass --allow-writes to do that, or --no-analyze for the plan only".into(),
            ));
        }
        let wanted = sql::max_placeholder(&stmt);
        if self.generic && !self.params.is_empty() {
            return Err(DbError::Config(
                "a generic plan binds every placeholder to NULL; give no --param".into(),
            ));
        }
        if !self.generic && wanted != self.params.len() {
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
        if self.generic {
            settings.push(("plan_cache_mode".into(), "force_generic_plan".into()));
        }
        Ok(ExplainRequest {
            sql: stmt,
            params: self.params.clone(),
            settings,
            analyze: !self.no_analyze && !self.generic,
            allow_writes: self.allow_writes,
            nulls: if self.generic { wanted } else { 0 },
        })
    }
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
        for stmt in ["CALL p()", "COPY t TO STDOUT", "COPY t FROM STDIN"] {
            let mut w = raw(stmt, &[]);
            w.allow_writes = true;
            let e = w.validate().unwrap_err().to_string();
            assert!(e.contains("cannot explain a"), "{e}");
        }
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
    fn select_into_is_a_write() {
        for stmt in [
            "SELECT * INTO t2 FROM t",
            "select a, b into temp t2 from t where a = $1",
            "WITH x AS (SELECT 1 AS a) SELECT a INTO t2 FROM x",
            "SELECT 1 INTO t2 UNION SELECT 2",
        ] {
            assert!(creates_table(stmt), "{stmt}");
            let e = raw(stmt, if stmt.contains("$1") { &["1"] } else { &[] })
                .validate()
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("SELECT ... INTO") && e.contains("--allow-writes"),
                "{e}"
            );
        }
        for stmt in [
            "SELECT * FROM t",
            "SELECT 'into' AS x FROM t",
            "SELECT * FROM t WHERE a IN (SELECT b FROM u)",
            "SELECT * FROM t WHERE a = ANY($1::int[]) ((((",
        ] {
            assert!(!creates_table(stmt), "{stmt}");
        }
        let mut w = raw("SELECT * INTO t2 FROM t", &[]);
        w.allow_writes = true;
        assert!(w.validate().is_ok());
        let mut p = raw("SELECT * INTO t2 FROM t", &[]);
        p.no_analyze = true;
        assert!(p.validate().is_ok());
        let deep = format!("SELECT {}1{}", "(".repeat(5000), ")".repeat(5000));
        assert!(!creates_table(&deep));
    }
}
