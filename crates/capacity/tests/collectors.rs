//! The per-step collectors against real servers: PostgreSQL (a fresh database with
//! `pg_stat_statements`, backends queued on a row lock) and Sidekiq's data in a
//! real Redis (a saturated process and a queue with a backlog, written in Sidekiq
//! 7's format).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use powertune_capacity::resources::postgres::Postgres;
use powertune_capacity::resources::sidekiq::Sidekiq;
use powertune_capacity::resources::{attach, fold, Ident, Kind, Sample, Source};
use powertune_test_support::pg::TestDb;
use powertune_test_support::redis_db::TestRedis;
use std::collections::BTreeMap;
use std::time::Duration;

async fn take(s: &mut dyn Source, n: usize, every: Duration) -> BTreeMap<Ident, Vec<Sample>> {
    let mut out: BTreeMap<Ident, Vec<Sample>> = BTreeMap::new();
    for _ in 0..n {
        tokio::time::sleep(every).await;
        for (id, x) in s.sample().await {
            out.entry(id).or_default().push(x);
        }
    }
    out
}

#[tokio::test]
async fn postgres_lock_waits_cross_and_the_step_s_statements_are_ranked() {
    let db = TestDb::create("cap_pg").await;
    let c = db.client().await;
    c.batch_execute(
        "CREATE EXTENSION IF NOT EXISTS pg_stat_statements; \
         CREATE TABLE hot (id int PRIMARY KEY, n int); INSERT INTO hot VALUES (1, 0); \
         CREATE TABLE busy (id int); INSERT INTO busy SELECT generate_series(1, 5000);",
    )
    .await
    .unwrap();
    let mut src = Postgres::new(&db.url, Duration::from_millis(500)).unwrap();
    src.begin().await;

    // One transaction holds the row; three others queue behind it on the lock.
    let holder = db.client().await;
    holder
        .batch_execute("BEGIN; UPDATE hot SET n = n + 1 WHERE id = 1")
        .await
        .unwrap();
    let mut waiters = Vec::new();
    for _ in 0..3 {
        let w = db.client().await;
        waiters.push(tokio::spawn(async move {
            w.batch_execute("UPDATE hot SET n = n + 1 WHERE id = 1")
                .await
                .unwrap();
            w
        }));
    }
    // Work the statements delta must rank first.
    for _ in 0..200 {
        c.query("SELECT count(*) FROM busy WHERE id % 7 = 3", &[])
            .await
            .unwrap();
    }
    let samples = take(&mut src, 4, Duration::from_millis(300)).await;
    holder.batch_execute("COMMIT").await.unwrap();
    for w in waiters {
        tokio::time::timeout(Duration::from_secs(10), w)
            .await
            .unwrap()
            .unwrap();
    }
    let detail = src.end().await;

    let (id, s) = samples.iter().next().expect("PostgreSQL was sampled");
    assert_eq!(id.kind, Kind::Database);
    let mut readings = vec![fold(id, s, None)];
    attach(&mut readings, &detail);
    let r = &readings[0];
    assert!(r.crossed, "{r:?}");
    assert!(r.saturation_mean.unwrap() >= 2.5, "{r:?}");
    let usable = r.capacity.unwrap();
    assert!(usable >= 10.0, "{r:?}");
    assert!(r.used_max.unwrap() >= 5.0, "{r:?}");
    assert!(r.figures.contains("connections"), "{}", r.figures);
    assert!(r.figures.contains("lock waits"), "{}", r.figures);
    assert!(r.figures.contains("Lock "), "{}", r.figures);
    let lock = r.parts.iter().find(|p| p.name == "Lock").unwrap();
    assert!(lock.share >= 0.5, "{:?}", r.parts);

    // The queued updates spent the most time; the count ran most often.
    let top = &detail.statements;
    assert!(top[0].query.contains("UPDATE hot"), "{top:?}");
    assert_eq!(top[0].calls, 4, "{top:?}");
    assert!(top[0].mean_ms >= 100.0, "the waiters waited: {top:?}");
    let count = top.iter().find(|s| s.query.contains("busy")).unwrap();
    assert_eq!(count.calls, 200, "{top:?}");
    assert!(top.windows(2).all(|w| w[0].total_ms >= w[1].total_ms));
    drop((c, holder));
    db.drop_now().await;
}

#[tokio::test]
async fn postgres_without_contention_is_not_saturated() {
    let db = TestDb::create("cap_pg_idle").await;
    let mut src = Postgres::new(&db.url, Duration::from_millis(500)).unwrap();
    src.begin().await;
    let samples = take(&mut src, 3, Duration::from_millis(250)).await;
    let detail = src.end().await;
    let (id, s) = samples.iter().next().unwrap();
    let r = fold(id, s, None);
    assert!(!r.crossed, "{r:?}");
    assert_eq!(r.saturation_max, Some(0.0));
    // pg_stat_statements is not created in this database: no statements, no error.
    assert!(detail.statements.is_empty());
    db.drop_now().await;
}

#[test]
fn a_bad_db_url_is_one_line_before_any_connection() {
    let e = Postgres::new("mysql://u:secret@db/app", Duration::from_millis(500))
        .err()
        .unwrap();
    assert!(e.starts_with("--db"), "{e}");
    assert!(!e.contains("secret"), "{e}");
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A Sidekiq 7 process of `concurrency` threads, `busy` of them busy, and `backlog`
/// jobs in `default`, the oldest enqueued `oldest_s` ago.
async fn sidekiq_fixture(r: &TestRedis, concurrency: u64, busy: u64, backlog: u64, oldest_s: f64) {
    let mut con = r.connection().await;
    let t = now();
    let id = "worker-1:7:cap";
    let info = serde_json::json!({"hostname": "worker-1", "pid": 7, "tag": "app",
        "concurrency": concurrency, "queues": ["default"], "version": "7.3.0",
        "identity": id, "started_at": t - 600.0});
    let _: () = redis::cmd("SADD")
        .arg("processes")
        .arg(id)
        .query_async(&mut con)
        .await
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg(id)
        .arg("info")
        .arg(info.to_string())
        .arg("busy")
        .arg(busy)
        .arg("beat")
        .arg(t - 1.0)
        .arg("quiet")
        .arg("false")
        .query_async(&mut con)
        .await
        .unwrap();
    let _: () = redis::cmd("SADD")
        .arg("queues")
        .arg("default")
        .query_async(&mut con)
        .await
        .unwrap();
    for i in 0..backlog {
        let age = oldest_s * (1.0 - i as f64 / backlog.max(1) as f64);
        let job = serde_json::json!({"class": "ReportJob", "queue": "default", "args": [],
            "jid": format!("j{i}"), "created_at": t - age, "enqueued_at": t - age});
        let _: () = redis::cmd("LPUSH")
            .arg("queue:default")
            .arg(job.to_string())
            .query_async(&mut con)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn sidekiq_busy_threads_with_a_backlog_cross_with_their_latency() {
    let r = TestRedis::reserve().await;
    sidekiq_fixture(&r, 10, 10, 40, 30.0).await;
    let mut src = Sidekiq::new(&r.url).unwrap();
    src.begin().await;
    let samples = take(&mut src, 2, Duration::from_millis(50)).await;
    let (id, s) = samples.iter().next().expect("Sidekiq was sampled");
    assert_eq!(id.kind, Kind::Workers);
    let x = fold(id, s, None);
    assert!(x.crossed, "{x:?}");
    assert!(
        x.figures.starts_with("10/10 busy, 40 enqueued"),
        "{}",
        x.figures
    );
    assert!(x.figures.contains("queue latency 30"), "{}", x.figures);
    r.release().await;
}

#[tokio::test]
async fn sidekiq_with_idle_threads_is_not_saturated() {
    let r = TestRedis::reserve().await;
    sidekiq_fixture(&r, 10, 3, 0, 0.0).await;
    let mut src = Sidekiq::new(&r.url).unwrap();
    let samples = take(&mut src, 2, Duration::from_millis(50)).await;
    let (id, s) = samples.iter().next().unwrap();
    let x = fold(id, s, None);
    assert!(!x.crossed, "{x:?}");
    assert!(x.figures.starts_with("3/10 busy"), "{}", x.figures);
    r.release().await;
}
