//! Space (bloat estimates, growth between runs) and index suggestions against the
//! real test PostgreSQL, each planted for real in a database of its own.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

use powertune_core::{Finding, Targets, Verdict};
use powertune_db::suggest::Verification;
use powertune_db::{DbOptions, RawDbConfig};
use powertune_test_support::pg::TestDb;

async fn run(
    url: &str,
    t: &Targets,
    edit: impl FnOnce(&mut DbOptions),
) -> powertune_core::Inspection<powertune_db::DbMetrics> {
    let mut o = DbOptions::new(RawDbConfig::new(url));
    edit(&mut o);
    powertune_db::inspect(&o, t).await.unwrap()
}

fn find<'a>(f: &'a [Finding], check: &str, subject: &str) -> Option<&'a Finding> {
    f.iter().find(|x| x.check == check && x.subject == subject)
}

/// 100,000 rows of ~130 bytes, analyzed: about 16 MiB of heap, 2 MiB of primary key.
const FILL: &str = "CREATE TABLE bloaty (id int PRIMARY KEY, payload text);
     INSERT INTO bloaty SELECT g, repeat('x', 100) FROM generate_series(1, 100000) g;";

#[tokio::test]
async fn bloat_is_estimated_and_flagged_after_mass_deletes() {
    let db = TestDb::create("pt_db_bloat").await;
    let c = db.client().await;
    c.batch_execute(FILL).await.unwrap();
    c.batch_execute("VACUUM ANALYZE bloaty").await.unwrap();
    let mut t = Targets::default();
    t.database.bloat_bytes = 1 << 20;

    let packed = run(&db.url, &t, |_| {}).await;
    let table = &packed.metrics.space.largest[0];
    assert_eq!(
        (table.name.as_str(), table.kind.as_str()),
        ("bloaty", "table")
    );
    assert!(table.bytes > 10 << 20, "{table:?}");
    // A freshly loaded table is packed: the estimate says so within 15%.
    let est = table.bloat_bytes.expect("estimated");
    assert!(est < table.bytes * 15 / 100, "{table:?}");
    assert_eq!(
        find(&packed.findings, "table_bloat", "1 table(s)")
            .expect("one PASS line")
            .verdict,
        Verdict::Pass
    );

    // Nine rows in ten deleted everywhere in the table: VACUUM frees the space for
    // reuse but the file keeps its pages.
    c.batch_execute("DELETE FROM bloaty WHERE id % 10 <> 0")
        .await
        .unwrap();
    c.batch_execute("VACUUM ANALYZE bloaty").await.unwrap();
    let bloated = run(&db.url, &t, |_| {}).await;
    let tb = find(&bloated.findings, "table_bloat", "bloaty").expect("table bloat flagged");
    assert_eq!(tb.verdict, Verdict::Warn);
    assert!(tb.action.contains("pg_repack --table bloaty"), "{tb:?}");
    let rel = &bloated.metrics.space.largest[0];
    let est = rel.bloat_bytes.expect("estimated");
    assert!(
        est > rel.bytes * 80 / 100,
        "90% of the rows are gone, the estimate says {est} of {}",
        rel.bytes
    );
    let ix = find(&bloated.findings, "index_bloat", "bloaty_pkey").expect("index bloat flagged");
    assert!(
        ix.action.contains("REINDEX INDEX CONCURRENTLY bloaty_pkey"),
        "{ix:?}"
    );
    // Under the default 100 MiB limit neither is a finding.
    let f = run(&db.url, &Targets::default(), |_| {}).await.findings;
    assert!(find(&f, "table_bloat", "bloaty").is_none());
    db.drop_now().await;
}

#[tokio::test]
async fn a_table_never_analyzed_is_not_estimated_and_not_passed() {
    let db = TestDb::create("pt_db_noest").await;
    let c = db.client().await;
    c.batch_execute(
        "CREATE TABLE raw (id int, v text) WITH (autovacuum_enabled = off);
         INSERT INTO raw SELECT g, 'v' FROM generate_series(1, 20000) g;",
    )
    .await
    .unwrap();
    // VACUUM without ANALYZE: relpages known, no column statistics.
    c.batch_execute("VACUUM raw").await.unwrap();
    let f = run(&db.url, &Targets::default(), |_| {}).await.findings;
    let tb = find(&f, "table_bloat", "1 table(s)").expect("a line for it");
    assert_eq!(tb.verdict, Verdict::Warn, "{tb:?}");
    assert!(tb.action.contains("ANALYZE"));
    db.drop_now().await;
}

#[tokio::test]
async fn growth_between_two_runs_names_the_table_that_grew() {
    let db = TestDb::create("pt_db_growth").await;
    let c = db.client().await;
    c.batch_execute(
        "CREATE TABLE steady (id int); CREATE TABLE grows (id int, v text);
         INSERT INTO steady SELECT generate_series(1, 1000);",
    )
    .await
    .unwrap();
    c.batch_execute("VACUUM ANALYZE").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("db-baseline.json");
    let first = run(&db.url, &Targets::default(), |o| {
        o.save_baseline = Some(file.clone())
    })
    .await;
    assert!(first.metrics.space.growth.is_none());
    let saved = std::fs::read_to_string(&file).unwrap();
    assert!(
        saved.contains("\"kind\": \"db\"") && saved.contains("\"grows\""),
        "{saved}"
    );
    assert!(!saved.contains("password"), "the source is redacted");

    c.batch_execute(
        "INSERT INTO grows SELECT g, repeat('y', 200) FROM generate_series(1, 20000) g",
    )
    .await
    .unwrap();
    c.batch_execute("VACUUM ANALYZE grows").await.unwrap();
    let second = run(&db.url, &Targets::default(), |o| {
        o.baseline = Some(file.clone())
    })
    .await;
    let g = second.metrics.space.growth.as_ref().expect("growth");
    assert_eq!(g.fastest[0].0, "grows");
    assert!(g.fastest[0].1 > 4 << 20, "{g:?}");
    assert!(g.total_after_bytes > g.total_before_bytes);
    let f = find(&second.findings, "space_growth", &db.name).expect("growth line");
    assert!(f.evidence.contains("grew most: grows +"), "{}", f.evidence);
    assert!(second.text.contains("growth since"), "{}", second.text);

    // A baseline of another command is refused before connecting, naming the file.
    std::fs::write(
        &file,
        r#"{"schema":"powertune.baseline/v1","kind":"redis","saved_at":"2026-01-01T00:00:00Z","data":{}}"#,
    )
    .unwrap();
    let mut o = DbOptions::new(RawDbConfig::new(&db.url));
    o.baseline = Some(file.clone());
    let e = powertune_db::inspect(&o, &Targets::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("db-baseline.json") && e.contains("a redis baseline"),
        "{e}"
    );
    db.drop_now().await;
}

/// A table with no index on `account_id`, queried by it 30 times through the
/// extended protocol (so pg_stat_statements keeps `$1`).
async fn plant_slow_lookup(c: &tokio_postgres::Client) {
    c.batch_execute(
        "CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
         CREATE TABLE orders (id bigint PRIMARY KEY, account_id int, total numeric);
         INSERT INTO orders SELECT g, g % 5000, g FROM generate_series(1, 200000) g;",
    )
    .await
    .unwrap();
    c.batch_execute("VACUUM ANALYZE orders").await.unwrap();
    c.batch_execute(
        "SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database WHERE datname = current_database()), 0)",
    )
    .await
    .unwrap();
    for i in 0..30i32 {
        c.query("SELECT * FROM orders WHERE account_id = $1", &[&i])
            .await
            .unwrap();
    }
}

/// Targets under which a sequential scan of 200,000 rows is slow.
fn strict() -> Targets {
    let mut t = Targets::default();
    t.database.max_query_ms = 0.001;
    t.database.slow_query_ms = 0.002;
    t
}

#[tokio::test]
async fn index_suggestion_without_hypopg_is_a_marked_heuristic() {
    let db = TestDb::create("pt_db_sugg").await;
    let c = db.client().await;
    plant_slow_lookup(&c).await;
    let r = run(&db.url, &strict(), |_| {}).await;
    let s = find(&r.findings, "index_suggestion", "orders (account_id)").expect("suggested");
    assert_eq!(s.verdict, Verdict::Warn);
    assert!(
        s.evidence.contains("not verified: hypopg is not installed"),
        "{s:?}"
    );
    assert!(s
        .action
        .starts_with("CREATE INDEX CONCURRENTLY ON orders (account_id)"));
    assert_eq!(r.metrics.index_suggestions.len(), 1);

    // Once the index exists, nothing is suggested.
    c.batch_execute("CREATE INDEX orders_account ON orders (account_id)")
        .await
        .unwrap();
    let r = run(&db.url, &strict(), |_| {}).await;
    assert!(
        r.findings.iter().all(|f| f.check != "index_suggestion"),
        "{:#?}",
        r.findings
    );
    db.drop_now().await;
}

#[tokio::test]
async fn hypopg_confirms_the_index_with_the_planners_costs() {
    let db = TestDb::create("pt_db_hypo").await;
    let c = db.client().await;
    c.batch_execute("CREATE EXTENSION hypopg").await.expect(
        "the hypopg extension (Debian package postgresql-15-hypopg; scripts/test.sh installs it)",
    );
    plant_slow_lookup(&c).await;
    let r = run(&db.url, &strict(), |_| {}).await;
    let sug = r
        .metrics
        .index_suggestions
        .iter()
        .find(|s| s.table == "orders")
        .expect("a suggestion for orders");
    let Verification::Hypopg {
        cost_before,
        cost_after,
        used,
    } = sug.verification
    else {
        panic!("not verified: {sug:?}");
    };
    assert!(used, "{sug:?}");
    assert!(cost_after * 10.0 < cost_before, "{sug:?}");
    let f = find(&r.findings, "index_suggestion", "orders (account_id)").expect("finding");
    assert!(f.evidence.contains("hypopg"), "{f:?}");
    assert_eq!(f.action, "CREATE INDEX CONCURRENTLY ON orders (account_id)");
    // Nothing was left behind: no real index, and the collector's statements stay out
    // of the slow-statement list.
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'orders'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "only the primary key");
    assert!(
        r.findings
            .iter()
            .all(|f| !(f.check == "slow_query" && f.subject.contains("hypopg"))),
        "{:#?}",
        r.findings
    );
    db.drop_now().await;
}
