//! `powertune investigate endpoint|queue` as a user runs it: exit codes (99 a cause
//! found or nothing measured, 1 bad input in one line), `--no-wait` and a short
//! `--max-wait` ending by themselves, the JSON report, the HTML page, the progress
//! lines on standard error. Sidekiq's data is written by the real Sidekiq (Debian's
//! ruby-sidekiq).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

use common::{one_line_error, powertune_within, sidekiq6_fixture, stderr, stdout};
use powertune_test_support::redis_db::TestRedis;

#[tokio::test]
async fn bad_input_is_one_line_and_nothing_configured_fails() {
    let o = powertune_within(&["investigate", "endpoint", "users"], 30).await;
    let e = one_line_error(&o);
    assert!(e.contains("METHOD /path"), "{e}");
    let o = powertune_within(&["investigate", "queue", "default", "--every", "1ms"], 30).await;
    one_line_error(&o);
    let o = powertune_within(
        &[
            "investigate",
            "endpoint",
            "GET /api/v1/posts",
            "--apm",
            "http://127.0.0.1:1",
        ],
        30,
    )
    .await;
    assert_eq!(o.status.code(), Some(99), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("[not measured] not measured — apm: not measured — cannot reach"),
        "{out}"
    );
    assert!(out.contains("steps measured"), "{out}");
}

#[tokio::test]
async fn a_backed_up_queue_is_investigated_and_the_wait_ends_by_itself() {
    let r = TestRedis::reserve().await;
    sidekiq6_fixture(&r.url);
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("q.json");
    let html = dir.path().join("q.html");
    let o = powertune_within(
        &[
            "investigate",
            "queue",
            "slow",
            "--queues",
            &r.url,
            "--no-wait",
            "--json",
            json.to_str().unwrap(),
            "--html",
            html.to_str().unwrap(),
        ],
        60,
    )
    .await;
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(99), "{out}{}", stderr(&o));
    assert!(out.contains("1. Which queue is backed up"), "{out}");
    assert!(out.contains("[FOUND] backed up — queue slow"), "{out}");
    assert!(
        out.contains("no live Sidekiq process polls queue slow"),
        "{out}"
    );
    assert!(out.contains("--no-wait: not watched"), "{out}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["command"], "investigate queue");
    assert_eq!(report["metrics"]["wait"], "skipped");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("The procedure, step by step"));
    // A short --max-wait on a queue that stays backed up ends by itself.
    let started = std::time::Instant::now();
    let o = powertune_within(
        &[
            "investigate",
            "queue",
            "bulk",
            "--queues",
            &r.url,
            "--max-wait",
            "1s",
            "--every",
            "200ms",
        ],
        60,
    )
    .await;
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    assert_eq!(o.status.code(), Some(99), "{}{}", stdout(&o), stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("watching queue bulk"), "{err}");
    assert!(err.contains("queue bulk: 1500 enqueued"), "{err}");
    assert!(
        stdout(&o).contains("still backed up after"),
        "{}",
        stdout(&o)
    );
    r.release().await;
}
