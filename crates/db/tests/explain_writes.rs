//! `db explain` refuses statements that write or lock rows unless writes are allowed,
//! against the real test PostgreSQL: the plan is read first (ModifyTable / LockRows
//! anywhere in it), `SELECT ... INTO` is found by the SQL parse, and a write inside a
//! function is stopped by the READ ONLY transaction. Another session holds a row lock
//! on the row every statement touches: a statement that ran would wait for it and fail
//! with a lock timeout, so a refusal proves nothing ran and no row lock was taken.
// Test code: helpers outside #[test] functions may unwrap, panic and print (clippy.toml
// allows it only inside them).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

use powertune_core::Targets;
use powertune_db::explain::{self, ExplainOptions};
use powertune_db::RawDbConfig;
use powertune_test_support::pg::TestDb;
use std::time::Duration;

async fn explain_with(url: &str, sql: &str, allow_writes: bool) -> Result<String, String> {
    explain::inspect(
        &ExplainOptions::Run {
            connection: RawDbConfig::new(url),
            request: explain::RawExplain {
                sql: sql.into(),
                allow_writes,
                ..Default::default()
            },
            timeout: Duration::from_secs(10),
        },
        &Targets::default(),
    )
    .await
    .map(|i| i.text)
    .map_err(|e| e.to_string())
}

async fn table_state(c: &tokio_postgres::Client) -> (i64, i64, bool) {
    let row = c
        .query_one(
            "SELECT count(*), COALESCE(sum(v), 0)::bigint, to_regclass('t2') IS NOT NULL FROM t",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

#[tokio::test]
async fn writes_locks_and_select_into_are_refused_without_running() {
    let db = TestDb::create("pt_db_explain_writes").await;
    let admin = db.client().await;
    admin
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, v int);
             INSERT INTO t SELECT i, i FROM generate_series(1, 50) i;
             CREATE TABLE audit (id int);
             CREATE FUNCTION bump() RETURNS int LANGUAGE plpgsql AS
               $$ BEGIN INSERT INTO audit VALUES (1); RETURN 1; END $$;
             CREATE PROCEDURE p() LANGUAGE sql AS $$ SELECT 1 $$;
             ANALYZE t;",
        )
        .await
        .unwrap();
    let before = table_state(&admin).await;

    // Another session holds row 1 FOR UPDATE for the whole test.
    let holder = db.client().await;
    holder
        .batch_execute("BEGIN; SELECT * FROM t WHERE id = 1 FOR UPDATE")
        .await
        .unwrap();

    let refused = [
        "WITH d AS (DELETE FROM t WHERE id = 1 RETURNING *) SELECT * FROM d",
        "WITH u AS (UPDATE t SET v = v + 1 WHERE id = 1 RETURNING id) SELECT count(*) FROM u",
        "with i as (insert into t values (1000, 1) returning id) select * from i",
        "INSERT INTO t VALUES (1001, 1) RETURNING *",
        "SELECT * FROM t WHERE id = 1 FOR UPDATE",
        "SELECT * FROM t WHERE id = 1 FOR SHARE",
        "SELECT * FROM t WHERE id = 1 FOR NO KEY UPDATE",
        "SELECT * FROM t WHERE id = 1 FOR KEY SHARE",
        "SELECT * FROM (SELECT * FROM t WHERE id = 1 FOR UPDATE) x",
        "SELECT * INTO t2 FROM t",
        "SELECT bump()",
        "CALL p()",
        "COPY t TO STDOUT",
    ];
    for sql in refused {
        let err = explain_with(&db.url, sql, false)
            .await
            .expect_err(&format!("`{sql}` must be refused"));
        assert!(
            err.contains("--allow-writes") || err.contains("cannot explain a"),
            "`{sql}`: {err}"
        );
        assert!(
            !err.contains("lock timeout") && !err.contains("55P03"),
            "`{sql}` ran and waited for the row lock: {err}"
        );
        assert_eq!(
            table_state(&admin).await,
            before,
            "`{sql}` changed the table"
        );
    }
    let audit: i64 = admin
        .query_one("SELECT count(*) FROM audit", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(audit, 0);

    // Reads still run, beside the held lock.
    let plan = explain_with(&db.url, "SELECT * FROM t WHERE id = 1", false)
        .await
        .unwrap();
    assert!(plan.contains("Execution Time:"), "{plan}");
    // --allow-writes keeps its meaning: the write runs (so it waits for the held row
    // and hits lock_timeout here), in a transaction that is rolled back.
    let err = explain_with(
        &db.url,
        "WITH d AS (DELETE FROM t WHERE id = 1 RETURNING *) SELECT * FROM d",
        true,
    )
    .await
    .unwrap_err();
    assert!(err.contains("55P03"), "{err}");
    holder.batch_execute("ROLLBACK").await.unwrap();
    for sql in [
        "WITH d AS (DELETE FROM t WHERE id <= 10 RETURNING *) SELECT * FROM d",
        "SELECT * FROM t FOR UPDATE",
        "SELECT * INTO t2 FROM t",
    ] {
        let plan = explain_with(&db.url, sql, true).await.unwrap();
        assert!(plan.contains("Execution Time:"), "{plan}");
        assert_eq!(
            table_state(&admin).await,
            before,
            "`{sql}` was not rolled back"
        );
    }
    db.drop_now().await;
}
