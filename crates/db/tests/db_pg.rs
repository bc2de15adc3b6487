//! `powertune db` against the real test PostgreSQL (started by scripts/test.sh): every
//! check with its problem planted for real, and with it absent. Each test works in a
//! database of its own, dropped at the end.
// Test code: helpers outside #[test] functions may unwrap, panic and print (clippy.toml
// allows it only inside them).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

use powertune_core::units::Quantity;
use powertune_core::{Finding, Inspection, Targets, Value, Verdict};
use powertune_db::collect::sample_connections;
use powertune_db::collect::{collect, connect, CollectOptions};
use powertune_db::explain::{self as plan, ExplainOptions};
use powertune_db::judge::Limits;
use powertune_db::{
    explain, watch, DbConfig, DbMetrics, DbOptions, DbSnapshot, ExplainMetrics, RawDbConfig,
};
use powertune_test_support::pg::{self, TestDb, TestRole};
use std::time::Duration;

fn cfg(url: &str) -> DbConfig {
    RawDbConfig::new(url).validate().unwrap()
}

fn opts() -> CollectOptions {
    CollectOptions {
        top: 20,
        slow_mean_ms: 100.0,
        pool_size: None,
    }
}

async fn snapshot(url: &str) -> DbSnapshot {
    collect(&cfg(url), &opts()).await.unwrap()
}

async fn findings(url: &str, t: &Targets) -> Vec<Finding> {
    powertune_db::judge::judge(&snapshot(url).await, t, &Limits::default())
}

fn has(f: &[Finding], check: &str, subject: &str) -> Option<Finding> {
    f.iter()
        .find(|x| x.check == check && x.subject == subject && x.verdict != Verdict::Pass)
        .cloned()
}

/// Makes this session's table statistics visible to others now (PostgreSQL 15+).
async fn flush_stats(c: &tokio_postgres::Client) {
    c.batch_execute("SELECT pg_stat_force_next_flush()")
        .await
        .unwrap();
    c.batch_execute("SELECT 1").await.unwrap();
}

/// Polls `f` until it returns Some, at most 50 times 100 ms apart.
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..50 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

/// `db explain` through its entry: `sql` with one parameter, run on the server.
async fn explain_entry(url: &str, sql: &str, param: &str) -> Inspection<ExplainMetrics> {
    explain::inspect(
        &ExplainOptions::Run {
            connection: RawDbConfig::new(url),
            request: explain::RawExplain {
                sql: sql.into(),
                params: vec![param.into()],
                ..Default::default()
            },
            timeout: Duration::from_secs(10),
        },
        &Targets::default(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn fk_without_index_is_flagged_until_indexed() {
    let db = TestDb::create("pt_db_fk").await;
    let c = db.client().await;
    c.batch_execute(
        "CREATE TABLE accounts (id bigint PRIMARY KEY);
         CREATE TABLE orders (id bigint PRIMARY KEY, account_id bigint REFERENCES accounts(id));
         CREATE TABLE items (id bigint PRIMARY KEY, order_id bigint REFERENCES orders(id));
         CREATE INDEX items_order_id ON items (order_id);",
    )
    .await
    .unwrap();
    let t = Targets::default();
    let f = findings(&db.url, &t).await;
    let fk = has(&f, "fk_without_index", "orders(account_id)").expect("unindexed FK flagged");
    assert!(fk
        .action
        .contains("CREATE INDEX CONCURRENTLY ON orders (account_id)"));
    assert!(
        has(&f, "fk_without_index", "items(order_id)").is_none(),
        "{f:#?}"
    );

    c.batch_execute("CREATE INDEX orders_account ON orders (account_id, id)")
        .await
        .unwrap();
    let f = findings(&db.url, &t).await;
    assert!(
        f.iter()
            .all(|x| x.check != "fk_without_index" || x.verdict == Verdict::Pass),
        "{f:#?}"
    );
    db.drop_now().await;
}

#[tokio::test]
async fn hot_table_read_by_seq_scans_is_flagged() {
    let db = TestDb::create("pt_db_cov").await;
    let c = db.client().await;
    c.batch_execute(
        "CREATE TABLE hot (id int PRIMARY KEY, v int);
         INSERT INTO hot SELECT i, i % 50 FROM generate_series(1, 5000) i;
         CREATE TABLE indexed (id int PRIMARY KEY, v int);
         INSERT INTO indexed SELECT i, i FROM generate_series(1, 5000) i;
         ANALYZE;",
    )
    .await
    .unwrap();
    for i in 0..20 {
        c.query("SELECT count(*) FROM hot WHERE v = $1", &[&i])
            .await
            .unwrap();
        c.query("SELECT v FROM indexed WHERE id = $1", &[&(i + 1)])
            .await
            .unwrap();
    }
    flush_stats(&c).await;
    let mut t = Targets::default();
    t.database.hot_table_rows = 1000;
    let f = eventually("hot table coverage", || async {
        let f = findings(&db.url, &t).await;
        has(&f, "index_coverage", "hot").is_some().then_some(f)
    })
    .await;
    let cov = has(&f, "index_coverage", "hot").unwrap();
    assert_eq!(cov.observed, Value::of(Quantity::percent(0.0)));
    assert_eq!(cov.target, Value::gt(Quantity::percent(95.0)));
    assert!(cov
        .action
        .contains("add a covering index on the WHERE / JOIN column"));
    assert!(has(&f, "index_coverage", "indexed").is_none(), "{f:#?}");
    // Below the hot-table threshold nothing is judged.
    let f = findings(&db.url, &Targets::default()).await;
    assert!(has(&f, "index_coverage", "hot").is_none());
    db.drop_now().await;
}

#[tokio::test]
async fn dead_tuples_with_autovacuum_off_are_flagged() {
    let db = TestDb::create("pt_db_vac").await;
    let c = db.client().await;
    c.batch_execute(
        "CREATE TABLE churn (id int PRIMARY KEY, v text) WITH (autovacuum_enabled = false);
         INSERT INTO churn SELECT i, 'x' FROM generate_series(1, 5000) i;
         DELETE FROM churn WHERE id <= 3000;
         CREATE TABLE calm (id int PRIMARY KEY, v text);
         INSERT INTO calm SELECT i, 'x' FROM generate_series(1, 5000) i;",
    )
    .await
    .unwrap();
    c.batch_execute("VACUUM ANALYZE calm").await.unwrap();
    flush_stats(&c).await;
    let t = Targets::default();
    let f = eventually("dead tuples", || async {
        let f = findings(&db.url, &t).await;
        has(&f, "dead_tuples", "churn").is_some().then_some(f)
    })
    .await;
    let d = has(&f, "dead_tuples", "churn").unwrap();
    assert!(
        d.evidence.contains("3000 dead / 2000 live"),
        "{}",
        d.evidence
    );
    assert!(d.evidence.contains("autovacuum disabled"));
    assert!(d.action.contains("VACUUM ANALYZE churn"));
    assert!(has(&f, "never_vacuumed", "churn").is_some());
    for check in ["dead_tuples", "never_vacuumed", "never_analyzed"] {
        assert!(has(&f, check, "calm").is_none(), "{check}: {f:#?}");
    }
    let snap = snapshot(&db.url).await;
    assert!(
        !snap
            .tables
            .iter()
            .find(|x| x.name == "churn")
            .unwrap()
            .autovacuum_enabled
    );
    db.drop_now().await;
}

#[tokio::test]
async fn slow_statement_in_pg_stat_statements_fails() {
    let db = TestDb::create("pt_db_slow").await;
    let c = db.client().await;
    c.batch_execute("CREATE EXTENSION pg_stat_statements; CREATE TABLE fast (id int);")
        .await
        .unwrap();
    // Forget this database's set-up statements (slow on a busy machine); other
    // databases' entries are left alone.
    c.batch_execute(
        "SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database WHERE datname = current_database()), 0)",
    )
    .await
    .unwrap();
    c.batch_execute("SELECT count(*) FROM fast").await.unwrap();
    let t = Targets::default();
    let f = findings(&db.url, &t).await;
    assert!(
        f.iter()
            .any(|x| x.check == "slow_queries" && x.verdict == Verdict::Pass),
        "{f:#?}"
    );
    assert!(f.iter().all(|x| x.check != "slow_query"), "{f:#?}");

    c.batch_execute("SELECT pg_sleep(0.6)").await.unwrap();
    let f = findings(&db.url, &t).await;
    let slow = f
        .iter()
        .find(|x| x.check == "slow_query")
        .expect("slow statement flagged");
    assert_eq!(slow.verdict, Verdict::Fail, "{slow:?}");
    assert!(slow.subject.contains("pg_sleep"), "{}", slow.subject);
    assert!(slow.evidence.contains("calls 1"));
    let mean = slow.observed.quantity().expect("a figure");
    assert_eq!(mean.unit, powertune_core::units::Unit::Ms);
    assert!(mean.value >= 600.0, "{mean:?}");
    assert_eq!(slow.limit, Some(Value::of(Quantity::ms(500.0))));
    db.drop_now().await;
}

#[tokio::test]
async fn missing_pg_stat_statements_says_how_and_runs_the_rest() {
    let db = TestDb::create("pt_db_nopgss").await;
    let f = findings(&db.url, &Targets::default()).await;
    let p = f
        .iter()
        .find(|x| x.check == "pg_stat_statements")
        .expect("said");
    assert!(p.action.contains("shared_preload_libraries") && p.action.contains("CREATE EXTENSION"));
    for other in [
        "connections",
        "fk_without_index",
        "vacuum",
        "xid_wraparound",
        "table_cache_hit",
    ] {
        assert!(
            f.iter().any(|x| x.check == other),
            "{other} missing: {f:#?}"
        );
    }
    db.drop_now().await;
}

#[tokio::test]
async fn idle_in_transaction_session_is_flagged() {
    let db = TestDb::create("pt_db_iit").await;
    let holder = db.client().await;
    let pid: i32 = holder
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let subject = format!("pid {pid}");
    holder.batch_execute("BEGIN; SELECT 1;").await.unwrap();
    let t = Targets::default();
    // A threshold of 1 ms instead of the default 1 s: the session is flagged as soon
    // as the collector sees it idle in its transaction.
    let mut quick = DbOptions::new(RawDbConfig::new(&db.url));
    quick.idle_in_transaction_after = Duration::from_millis(1);
    let iit = eventually("the idle-in-transaction session", || async {
        let i = powertune_db::inspect(&quick, &t).await.unwrap();
        has(&i.findings, "idle_in_transaction", &subject)
    })
    .await;
    assert_eq!(iit.verdict, Verdict::Warn);
    assert!(iit.action.contains("pg_terminate_backend"));
    assert_eq!(iit.target, Value::lt(Quantity::seconds(0.001)));
    assert_eq!(iit.target, "< 1ms");
    assert_eq!(
        iit.observed.quantity().map(|q| q.unit),
        Some(powertune_core::units::Unit::Seconds)
    );
    holder.batch_execute("COMMIT").await.unwrap();
    let i = powertune_db::inspect(&quick, &t).await.unwrap();
    assert!(has(&i.findings, "idle_in_transaction", &subject).is_none());
    db.drop_now().await;
}

#[tokio::test]
async fn blocked_and_stuck_queries_are_flagged() {
    let db = TestDb::create("pt_db_block").await;
    let a = db.client().await;
    a.batch_execute("CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 0);")
        .await
        .unwrap();
    let a_pid: i32 = a
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    a.batch_execute("BEGIN; UPDATE t SET v = 1 WHERE id = 1;")
        .await
        .unwrap();
    let b = db.client().await;
    let b_pid: i32 = b
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let waiter = tokio::spawn(async move {
        b.batch_execute("SET lock_timeout = '8s'; UPDATE t SET v = 2 WHERE id = 1;")
            .await
    });
    let t = Targets::default();
    let url = db.url.clone();
    let blocked = eventually("the blocked UPDATE", || async {
        has(
            &findings(&url, &t).await,
            "blocked_query",
            &format!("pid {b_pid}"),
        )
    })
    .await;
    assert_eq!(blocked.verdict, Verdict::Warn);
    assert!(
        blocked
            .evidence
            .contains(&format!("blocked by pid {a_pid}")),
        "{}",
        blocked.evidence
    );
    // Past the stuck threshold the same wait is a FAIL.
    let mut quick = Targets::default();
    quick.database.stuck_query_s = 0.05;
    eventually("the blocked UPDATE past the stuck threshold", || async {
        has(
            &findings(&url, &quick).await,
            "blocked_query",
            &format!("pid {b_pid}"),
        )
        .filter(|f| f.verdict == Verdict::Fail)
    })
    .await;

    a.batch_execute("ROLLBACK").await.unwrap();
    waiter.await.unwrap().unwrap();
    let f = findings(&db.url, &t).await;
    assert!(
        has(&f, "blocked_query", &format!("pid {b_pid}")).is_none(),
        "{f:#?}"
    );

    // A long active query is stuck once past the threshold, and not before.
    let c = db.client().await;
    let c_pid: i32 = c
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let sleeper = tokio::spawn(async move { c.batch_execute("SELECT pg_sleep(1.5)").await });
    let stuck = eventually("the long query", || async {
        has(
            &findings(&db.url, &quick).await,
            "stuck_query",
            &format!("pid {c_pid}"),
        )
    })
    .await;
    assert_eq!(stuck.verdict, Verdict::Fail);
    assert!(has(
        &findings(&db.url, &t).await,
        "stuck_query",
        &format!("pid {c_pid}")
    )
    .is_none());
    sleeper.await.unwrap().unwrap();
    db.drop_now().await;
}

#[tokio::test]
async fn explain_flags_disk_sort_and_misestimate_and_rolls_back() {
    let db = TestDb::create("pt_db_explain").await;
    let c = db.client().await;
    c.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY, a int, b int, note text);
         INSERT INTO t SELECT i, i % 100, i % 100, md5(i::text) FROM generate_series(1, 200000) i;
         ANALYZE t;",
    )
    .await
    .unwrap();
    let cfg = cfg(&db.url);
    let th = plan::PlanThresholds::from_targets(&Targets::default());
    let req = explain::RawExplain {
        sql: "SELECT * FROM t WHERE a = $1 AND b = $2 ORDER BY note".into(),
        params: vec!["7".into(), "7".into()],
        settings: vec!["work_mem=64kB".into()],
        ..Default::default()
    }
    .validate()
    .unwrap();
    let text = explain::run(&cfg, &req, Duration::from_secs(20))
        .await
        .unwrap();
    let doc = plan::parse_plan_text(&text).unwrap();
    let flags = plan::analyze(&doc, &th);
    let checks: Vec<&str> = flags.iter().map(|f| f.check.as_str()).collect();
    assert!(
        checks.contains(&"disk_sort"),
        "{checks:?}\n{}",
        plan::render_tree(&doc, &flags)
    );
    let mis = flags
        .iter()
        .find(|f| f.check == "misestimate")
        .expect("misestimate");
    assert!(mis.path.ends_with("Seq Scan on t"), "{}", mis.path);
    assert!(mis.message.contains("under"), "{}", mis.message);
    assert!(checks.contains(&"seq_scan_filter"));

    // Absent: an index lookup with default work_mem raises none of them.
    let req = explain::RawExplain {
        sql: "SELECT * FROM t WHERE id = $1".into(),
        params: vec!["42".into()],
        ..Default::default()
    }
    .validate()
    .unwrap();
    let doc = plan::parse_plan_text(
        &explain::run(&cfg, &req, Duration::from_secs(5))
            .await
            .unwrap(),
    )
    .unwrap();
    let flags = plan::analyze(&doc, &th);
    assert!(flags.iter().all(|f| f.check == "slowest_node"), "{flags:?}");

    // The same through the entry: findings, typed metrics and the tree.
    let i = explain_entry(&db.url, "SELECT * FROM t WHERE id = $1", "42").await;
    assert_eq!(i.command, "db explain");
    assert_eq!(i.findings[0].check, "plan_execution_time");
    assert!(i.text.contains("Execution Time:"), "{}", i.text);
    assert!(i.metrics.plan.is_array());
    assert!(i.metrics.execution_ms.is_some());

    // Writes are executed inside the transaction and rolled back.
    let req = explain::RawExplain {
        sql: "DELETE FROM t".into(),
        allow_writes: true,
        ..Default::default()
    }
    .validate()
    .unwrap();
    explain::run(&cfg, &req, Duration::from_secs(20))
        .await
        .unwrap();
    let n: i64 = c
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 200000);
    db.drop_now().await;
}

#[tokio::test]
async fn the_session_is_read_only_with_timeouts() {
    let db = TestDb::create("pt_db_ro").await;
    let s = connect(&cfg(&db.url)).await.unwrap();
    let e = s
        .client
        .batch_execute("CREATE TABLE nope (id int)")
        .await
        .unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("25006"), "{e}");
    let row = s
        .client
        .query_one("SELECT current_setting('statement_timeout'), current_setting('lock_timeout'), current_setting('application_name')", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "5s");
    assert_eq!(row.get::<_, String>(1), "1s");
    assert_eq!(row.get::<_, String>(2), "powertune");
    drop(s);
    db.drop_now().await;
}

#[tokio::test]
async fn non_superuser_with_and_without_pg_read_all_stats() {
    let db = TestDb::create("pt_db_roles").await;
    db.client()
        .await
        .batch_execute("CREATE EXTENSION pg_stat_statements; SELECT pg_sleep(0.01);")
        .await
        .unwrap();
    let plain = TestRole::create("pt_plain", &[]).await;
    let stats = TestRole::create("pt_stats", &["pg_read_all_stats"]).await;
    let t = Targets::default();
    // A superuser session the plain role cannot look into, and a slow statement of
    // the superuser whose text it may not read.
    let other = db.client().await;
    for _ in 0..2 {
        other.batch_execute("SELECT pg_sleep(0.15)").await.unwrap();
    }

    let f = findings(&pg::with_user(&db.url, &plain.name), &t).await;
    let stuck: Vec<&Finding> = f.iter().filter(|x| x.check == "stuck_queries").collect();
    assert_eq!(stuck.len(), 1, "{f:#?}");
    assert_eq!(stuck[0].verdict, Verdict::Warn, "never a PASS: {f:#?}");
    assert!(stuck[0]
        .observed
        .contains(&format!("not visible to role {}", plain.name)));
    let slow: Vec<&Finding> = f.iter().filter(|x| x.check == "slow_query").collect();
    assert_eq!(
        slow.len(),
        1,
        "one finding for the hidden statements: {f:#?}"
    );
    assert!(
        slow[0].subject.contains("not visible to role") && slow[0].evidence.contains("postgres"),
        "{:#?}",
        slow[0]
    );
    assert!(slow[0]
        .action
        .contains(&format!("GRANT pg_read_all_stats TO {}", plain.name)));
    let v = f
        .iter()
        .find(|x| x.check == "limited_visibility")
        .expect("says what it cannot see");
    assert!(v.evidence.contains("pg_stat_activity") && v.evidence.contains("pg_stat_statements"));
    assert!(v
        .action
        .contains(&format!("GRANT pg_read_all_stats TO {}", plain.name)));
    assert!(f.iter().any(|x| x.check == "connections"));

    let f = findings(&pg::with_user(&db.url, &stats.name), &t).await;
    assert!(f.iter().all(|x| x.check != "limited_visibility"), "{f:#?}");
    let slow: Vec<&Finding> = f.iter().filter(|x| x.check == "slow_query").collect();
    assert!(
        slow.len() == 1 && slow[0].subject.contains("pg_sleep"),
        "the granted role reads the text: {f:#?}"
    );
    let stuck = f.iter().find(|x| x.check == "stuck_queries").unwrap();
    assert_eq!(stuck.verdict, Verdict::Pass);
    drop(other);
    let snap = snapshot(&pg::with_user(&db.url, &stats.name)).await;
    assert!(snap.server.read_all_stats && !snap.server.superuser);
    assert!(matches!(
        snap.statements,
        powertune_db::snapshot::StatementsState::Available { .. }
    ));

    db.drop_now().await;
    plain.drop_now().await;
    stats.drop_now().await;
}

#[tokio::test]
async fn round_trips_do_not_grow_with_the_schema() {
    let db = TestDb::create("pt_db_rt").await;
    let c = db.client().await;
    c.batch_execute("CREATE TABLE t0 (id int PRIMARY KEY)")
        .await
        .unwrap();
    let small = snapshot(&db.url).await;
    let mut ddl = String::new();
    for i in 1..60 {
        ddl.push_str(&format!("CREATE TABLE t{i} (id int PRIMARY KEY, p int REFERENCES t0(id)); CREATE INDEX ON t{i} (p);"));
    }
    c.batch_execute(&ddl).await.unwrap();
    let big = snapshot(&db.url).await;
    assert_eq!(big.tables.len(), 60);
    assert!(big.indexes.len() >= 119);
    assert_eq!(small.round_trips, big.round_trips);
    db.drop_now().await;
}

#[tokio::test]
async fn vector_column_without_hnsw_is_flagged() {
    // pgvector is not installed on the test server: a domain named `vector` stands in
    // for its type (the check looks at the column's type name).
    let db = TestDb::create("pt_db_vec").await;
    let c = db.client().await;
    c.batch_execute(
        "CREATE DOMAIN vector AS float4[];
         CREATE TABLE docs (id int PRIMARY KEY, embedding vector);
         CREATE TABLE plain (id int PRIMARY KEY, body text);",
    )
    .await
    .unwrap();
    let f = findings(&db.url, &Targets::default()).await;
    assert!(
        has(&f, "vector_without_hnsw", "docs.embedding").is_some(),
        "{f:#?}"
    );
    assert_eq!(
        f.iter()
            .filter(|x| x.check == "vector_without_hnsw")
            .count(),
        1
    );
    db.drop_now().await;
}

#[tokio::test]
async fn watch_samples_the_real_server() {
    let db = TestDb::create("pt_db_watch").await;
    let mut s = connect(&cfg(&db.url)).await.unwrap();
    let c = sample_connections(&mut s).await.unwrap();
    assert!(c.total >= 1 && c.active >= 1, "{c:?}");
    assert_eq!(c.usable as i64 - c.total as i64, c.free);
    let session = std::sync::Arc::new(tokio::sync::Mutex::new(s));
    let mut lines = Vec::new();
    let alerts = watch::run(
        Duration::from_millis(100),
        Some(2),
        3,
        || {
            let s = session.clone();
            async move { sample_connections(&mut *s.lock().await).await }
        },
        |l, _| lines.push(l.to_string()),
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!(lines.len(), 2);
    assert_eq!(alerts, 0);
    assert!(
        lines[0].contains("total ") && lines[0].contains("free "),
        "{}",
        lines[0]
    );
    drop(session);
    db.drop_now().await;
}

#[tokio::test]
async fn duplicate_and_invalid_indexes_are_flagged() {
    let db = TestDb::create("pt_db_ix").await;
    let c = db.client().await;
    c.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY, x int, y int);
         INSERT INTO t SELECT i, i % 10, i FROM generate_series(1, 100) i;
         CREATE INDEX t_x ON t (x);
         CREATE INDEX t_y ON t (y);",
    )
    .await
    .unwrap();
    let f = findings(&db.url, &Targets::default()).await;
    assert!(
        f.iter()
            .all(|x| x.verdict == Verdict::Pass || !x.check.ends_with("_index")),
        "{f:#?}"
    );

    c.batch_execute("CREATE INDEX t_x_y ON t (x, y)")
        .await
        .unwrap();
    // A failed CREATE INDEX CONCURRENTLY leaves an invalid index behind.
    let e = c
        .batch_execute("CREATE UNIQUE INDEX CONCURRENTLY t_x_unique ON t (x)")
        .await;
    assert!(e.is_err());
    let f = findings(&db.url, &Targets::default()).await;
    let dup = has(&f, "duplicate_index", "t_x").expect("t_x is a prefix of t_x_y");
    assert!(dup.observed.contains("t_x_y"));
    assert!(has(&f, "duplicate_index", "t_y").is_none());
    let inv = has(&f, "invalid_index", "t_x_unique").expect("invalid index flagged");
    assert!(inv.action.contains("DROP INDEX CONCURRENTLY t_x_unique"));
    db.drop_now().await;
}

#[tokio::test]
async fn metrics_payloads_match_their_schemas() {
    let db = TestDb::create("pt_db_schema").await;
    let c = db.client().await;
    c.batch_execute(
        "CREATE EXTENSION pg_stat_statements;
         CREATE TABLE t (id int PRIMARY KEY, v int);
         INSERT INTO t SELECT i, i % 10 FROM generate_series(1, 20000) i;
         ANALYZE t;
         SELECT count(*) FROM t WHERE v = 3;",
    )
    .await
    .unwrap();
    let mut o = DbOptions::new(RawDbConfig::new(&db.url));
    o.pool_size = Some(30);
    let i = powertune_db::inspect(&o, &Targets::default())
        .await
        .unwrap();
    let m = serde_json::to_value(&i.metrics).unwrap();
    assert_eq!(m["pg_stat_statements"]["state"], "available", "{m}");
    powertune_test_support::schema::check::<DbMetrics>("db.v1", &m);

    let i = explain_entry(
        &db.url,
        "SELECT * FROM t WHERE v = $1 ORDER BY id DESC",
        "3",
    )
    .await;
    let m = serde_json::to_value(&i.metrics).unwrap();
    assert!(m["flags"].as_array().is_some_and(|f| f.len() >= 2), "{m}");
    powertune_test_support::schema::check::<ExplainMetrics>("db-explain.v1", &m);
    db.drop_now().await;
}

#[tokio::test]
async fn sequences_near_their_maximum() {
    let db = TestDb::create("pt_db_seq").await;
    let c = db.client().await;
    c.batch_execute(
        "CREATE TABLE orders (id serial PRIMARY KEY); \
         CREATE TABLE events (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY); \
         CREATE TABLE carts (id serial PRIMARY KEY); \
         SELECT setval('orders_id_seq', 2000000000); \
         SELECT setval('events_id_seq', 2000000000); \
         SELECT setval('carts_id_seq', 1200000000);",
    )
    .await
    .unwrap();
    let f = findings(&db.url, &Targets::default()).await;
    let seq: Vec<&Finding> = f
        .iter()
        .filter(|x| x.check == "sequence_capacity")
        .collect();
    assert_eq!(seq.len(), 2, "{seq:#?}");
    let orders = seq.iter().find(|x| x.subject == "orders_id_seq").unwrap();
    assert_eq!(orders.verdict, Verdict::Fail);
    assert!(
        orders.evidence.contains("feeds orders.id (integer)"),
        "{orders:#?}"
    );
    assert!(orders
        .action
        .starts_with("ALTER TABLE orders ALTER COLUMN id TYPE bigint"));
    let carts = seq.iter().find(|x| x.subject == "carts_id_seq").unwrap();
    assert_eq!(carts.verdict, Verdict::Warn);

    // Connections by source: this test's own sessions come from 127.0.0.1.
    let by = f
        .iter()
        .find(|x| x.check == "connections_by_source")
        .unwrap();
    assert_eq!(by.verdict, Verdict::Pass);
    assert!(by.evidence.contains("from 127.0.0.1"), "{by:#?}");

    // The test server is a primary without standbys: nothing to judge, nothing said.
    let snap = snapshot(&db.url).await;
    assert!(!snap.replication.in_recovery && snap.replication.standbys.is_empty());
    assert!(f
        .iter()
        .all(|x| x.check != "replication_lag" && x.check != "replica_delay"));

    // A role that may not read the sequences is told so, not given a PASS.
    let plain = TestRole::create("pt_seq_plain", &[]).await;
    let f = findings(&pg::with_user(&db.url, &plain.name), &Targets::default()).await;
    let seq: Vec<&Finding> = f
        .iter()
        .filter(|x| x.check == "sequence_capacity")
        .collect();
    assert_eq!(seq.len(), 1, "{seq:#?}");
    assert_eq!(seq[0].verdict, Verdict::Warn);
    assert_eq!(seq[0].subject, "3 sequence(s)");
    drop(c);
    db.drop_now().await;
    plain.drop_now().await;
}
