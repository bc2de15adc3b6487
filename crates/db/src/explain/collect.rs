//! The collector of `db explain`: runs `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)` on
//! one statement in a transaction that is always rolled back, with
//! `statement_timeout` and `lock_timeout`.

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
    use crate::explain::RawExplain;

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
        assert!(setup.starts_with("BEGIN; SET TRANSACTION READ WRITE; SET LOCAL statement_timeout = '5000ms'; SET LOCAL lock_timeout = '1000ms'; SET LOCAL work_mem = '64kB'; PREPARE powertune_explain AS SELECT"), "{setup}");
        assert!(
            explain.ends_with("EXECUTE powertune_explain('42', 'o''brien')"),
            "{explain}"
        );
        let mut bad = RawExplain {
            sql: "SELECT 1".into(),
            ..Default::default()
        };
        bad.settings = vec!["work_mem; DROP TABLE x=1".into()];
        assert!(bad.validate().is_err());
    }
}
