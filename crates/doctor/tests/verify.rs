//! `baseline save` then `verify` on a real Sidekiq database: passes while nothing
//! changed, fails once a failing job class fills the retry set.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

use common::*;
use powertune_core::Verdict;
use powertune_doctor::verify;

#[tokio::test]
async fn verify_passes_unchanged_and_fails_after_a_planted_regression() {
    let db = powertune_test_support::redis_db::TestRedis::reserve().await;
    let mut con = db.connection().await;
    sidekiq_db(&mut con).await;
    let _: () = redis::cmd("ZADD")
        .arg("retry")
        .arg(1_800_000_000.0)
        .arg(retry_job("MailerJob", 1))
        .query_async(&mut con)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("before");
    let o = options(&[("queues", &db.url)]);
    let m = verify::save(&base, &o, &targets()).await.unwrap();
    assert_eq!(m.reports, ["queues.json"]);
    assert!(base.join("baseline.json").exists());

    // unchanged: every measured item passes; what is not configured is not verified
    let i = verify::verify(&base, &o, &targets()).await.unwrap();
    let item = |i: &powertune_core::Inspection<verify::VerifyMetrics>, c: &str| {
        i.findings.iter().find(|f| f.check == c).unwrap().verdict
    };
    assert_eq!(item(&i, "retry_set"), Verdict::Pass, "{:#?}", i.findings);
    assert_eq!(item(&i, "queue_latency"), Verdict::Pass);
    assert_eq!(item(&i, "apm_p95"), Verdict::Warn);
    assert_eq!(item(&i, "stuck_queries"), Verdict::Warn);
    assert_ne!(i.report().unwrap().verdict, Verdict::Fail);

    // planted: the retry set grows during the window
    let feed = retries(db.connection().await, "MissionJob", 10);
    let i = verify::verify(&base, &o, &targets()).await.unwrap();
    feed.abort();
    assert_eq!(item(&i, "retry_set"), Verdict::Fail, "{:#?}", i.findings);
    assert_eq!(i.report().unwrap().verdict, Verdict::Fail);
    assert!(i.text.contains("FAIL retry_set"), "{}", i.text);
    db.release().await;

    // a directory that is not a baseline is one clear error
    let e = verify::verify(dir.path(), &o, &targets())
        .await
        .unwrap_err();
    assert!(e.contains("baseline save"), "{e}");
}
