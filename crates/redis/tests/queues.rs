//! `powertune queues` against real servers: Sidekiq 6 data written by the real Sidekiq
//! (Ruby), 7.x and 8.x data by fixtures of their payloads, data that is not Sidekiq's,
//! and the `queues` entry with its `--watch`.
// Test code: helpers outside #[test] functions may unwrap, panic and print (clippy.toml
// allows it only inside them).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

use common::{conn_options, find, now, open, verdict, write_fixture, TIMEOUT};
use powertune_core::{Targets, Verdict};
use powertune_redis::conn::{Conn, RedisUrl};
use powertune_redis::{sidekiq, RedisError};
use powertune_test_support::redis_db::TestRedis;
use redis::AsyncCommands;
use std::time::Duration;

fn ruby_sidekiq(url: &str) -> serde_json::Value {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/ruby/sidekiq6_fixture.rb"
    );
    let out = std::process::Command::new("ruby")
        .arg(script)
        .env("REDIS_URL", url)
        .output()
        .expect("ruby with ruby-sidekiq (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn sidekiq6_written_by_real_sidekiq_matches_its_own_api() {
    let db = TestRedis::reserve().await;
    let api = ruby_sidekiq(&db.url);
    let mut conn = open(&db.url).await;
    let s = sidekiq::collect(&mut conn, &sidekiq::Options::default())
        .await
        .unwrap();
    assert_eq!(s.round_trips, 2);
    let api_queues = api["queues"].as_array().unwrap();
    assert_eq!(s.queues.len(), api_queues.len());
    for q in api_queues {
        let mine = s
            .queues
            .iter()
            .find(|m| m.name == q["name"].as_str().unwrap())
            .unwrap();
        assert_eq!(mine.size, q["size"].as_u64().unwrap(), "{}", mine.name);
        let lat = q["latency"].as_f64().unwrap();
        assert!(
            (mine.latency_s - lat).abs() < 3.0,
            "{}: {} vs Sidekiq {}",
            mine.name,
            mine.latency_s,
            lat
        );
    }
    let st = &api["stats"];
    assert_eq!(s.processed, st["processed"].as_u64().unwrap());
    assert_eq!(s.failed, st["failed"].as_u64().unwrap());
    assert_eq!(s.scheduled_size, st["scheduled_size"].as_u64().unwrap());
    assert_eq!(s.retry.size, st["retry_size"].as_u64().unwrap());
    assert_eq!(s.retry.size, api["retry_set_size"].as_u64().unwrap());
    assert_eq!(s.dead_size, st["dead_size"].as_u64().unwrap());
    assert_eq!(s.enqueued(), st["enqueued"].as_u64().unwrap());
    assert_eq!(
        s.processes.len() as u64,
        st["processes_size"].as_u64().unwrap()
    );
    assert_eq!(s.busy(), st["workers_size"].as_u64().unwrap());
    let p = &api["processes"][0];
    assert_eq!(s.processes[0].identity, p["identity"].as_str().unwrap());
    assert_eq!(
        s.processes[0].concurrency,
        p["concurrency"].as_u64().unwrap()
    );
    assert_eq!(s.processes[0].busy, p["busy"].as_u64().unwrap());
    assert_eq!(s.processes[0].queues, vec!["critical", "standard", "low"]);
    assert_eq!(s.processes[0].version, "");
    // What the fixture planted.
    assert_eq!(
        s.queues
            .iter()
            .find(|q| q.name == "low")
            .unwrap()
            .oldest_class
            .as_deref(),
        Some("ReportJob")
    );
    assert_eq!(s.retry.depth.get(&3), Some(&1));
    assert_eq!(s.retry.depth.get(&0), Some(&2));
    assert_eq!(s.retry.top_classes[0], ("FlakyJob".to_string(), 2));
    assert_eq!(s.retry.top_errors[0], ("ArgumentError".to_string(), 3));
    assert_eq!(s.dead_newest.len(), 2);
    assert_eq!(s.dead_newest[0].class, "DoomedJob");
    let running = &s.processes[0].running;
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].class, "LongRunningJob");
    assert!((s.now - running[0].run_at - 90.0).abs() < 5.0);
    let today = s.days.iter().find(|d| d.processed > 0).unwrap();
    assert_eq!((today.processed, today.failed), (200, 5));
    assert!(s.metrics.is_none());

    let t = Targets::default();
    let f = sidekiq::judge(&s, &t.worker);
    assert_eq!(
        find(&f, "queue_backlog")
            .iter()
            .map(|x| (x.subject.as_str(), x.verdict))
            .collect::<Vec<_>>(),
        vec![("queue bulk", Verdict::Warn)]
    );
    // The process polls critical, standard and low: bulk's and slow's jobs wait for a
    // process that polls them, not for more threads.
    assert_eq!(
        find(&f, "unserved_queue")
            .iter()
            .map(|x| (x.subject.as_str(), x.verdict))
            .collect::<Vec<_>>(),
        vec![("queue bulk", Verdict::Fail), ("queue slow", Verdict::Fail)]
    );
    for x in find(&f, "unserved_queue") {
        let name = x.subject.trim_start_matches("queue ");
        assert!(
            x.action.starts_with(&format!(
                "No process serves queue `{name}`: add it to a process's queues"
            )),
            "{}",
            x.action
        );
    }
    for x in f
        .iter()
        .filter(|x| x.subject == "queue bulk" || x.subject == "queue slow")
    {
        assert!(
            !x.action.contains("WORKER_CONCURRENCY"),
            "{}: {}",
            x.check,
            x.action
        );
    }
    assert_eq!(
        find(&f, "queue_latency")
            .iter()
            .map(|x| (x.subject.as_str(), x.verdict))
            .collect::<Vec<_>>(),
        vec![("queue slow", Verdict::Warn)]
    );
    assert_eq!(verdict(&f, "retry_depth"), Verdict::Warn);
    assert_eq!(verdict(&f, "long_running_job"), Verdict::Warn);
    assert_eq!(verdict(&f, "failed_rate"), Verdict::Fail);
    assert_eq!(verdict(&f, "dead"), Verdict::Warn);
    assert_eq!(verdict(&f, "job_duration"), Verdict::Pass);
    assert!(find(&f, "concurrency").is_empty());
    let text = sidekiq::render(&s, &t.worker);
    assert!(text.contains("critical") && text.contains("50%"), "{text}");
    db.release().await;
}

#[tokio::test]
async fn sidekiq7_and_8_payload_fixtures() {
    for (version, ms) in [("7.3.10", false), ("8.1.7", true)] {
        let db = TestRedis::reserve().await;
        let mut raw = db.connection().await;
        write_fixture(&mut raw, version, ms).await;
        let mut conn = open(&db.url).await;
        let s = sidekiq::collect(&mut conn, &sidekiq::Options::default())
            .await
            .unwrap();
        let crit = s.queues.iter().find(|q| q.name == "critical").unwrap();
        assert!(
            (crit.latency_s - 90.0).abs() < 3.0,
            "{version}: {}",
            crit.latency_s
        );
        assert_eq!(crit.oldest_class.as_deref(), Some("MailerJob"));
        let low = s.queues.iter().find(|q| q.name == "low").unwrap();
        assert!(
            (low.latency_s - 30.0).abs() < 3.0,
            "{version}: created_at fallback {}",
            low.latency_s
        );
        assert_eq!(s.processes[0].version, version);
        assert_eq!(s.processes[0].weights.get("critical"), Some(&3));
        assert_eq!(s.processes[0].running[0].class, "ImportJob");
        assert!(
            (s.now - s.processes[0].running[0].run_at - 45.0).abs() < 3.0,
            "{version}"
        );
        let m = s.metrics.as_ref().unwrap();
        let import = m.iter().find(|j| j.class == "ImportJob").unwrap();
        assert_eq!(import.avg_s(), Some(6.0));
        assert_eq!(s.retry.depth.get(&4), Some(&1));
        let t = Targets::default();
        let f = sidekiq::judge(&s, &t.worker);
        assert_eq!(verdict(&f, "concurrency"), Verdict::Warn, "{version}");
        assert_eq!(verdict(&f, "job_duration"), Verdict::Warn, "{version}");
        assert_eq!(find(&f, "queue_latency")[0].verdict, Verdict::Warn);
        assert_eq!(verdict(&f, "long_running_job"), Verdict::Warn);
        assert_eq!(verdict(&f, "failed_rate"), Verdict::Pass);
        let text = sidekiq::render(&s, &t.worker);
        assert!(text.contains("published by the processes"), "{text}");
        db.release().await;
    }
}

#[tokio::test]
async fn queues_needs_two_round_trips_whatever_the_queue_count() {
    let db = TestRedis::reserve().await;
    let mut raw = db.connection().await;
    for q in 0..100 {
        let _: () = raw.sadd("queues", format!("q{q}")).await.unwrap();
        let jobs: Vec<String> = (0..20)
            .map(|j| {
                serde_json::json!({"class": "J", "jid": format!("{q}-{j}"), "enqueued_at": now()})
                    .to_string()
            })
            .collect();
        let _: () = raw.lpush(format!("queue:q{q}"), jobs).await.unwrap();
    }
    let mut conn = open(&db.url).await;
    let a = sidekiq::sample(&mut conn, 10_000).await.unwrap();
    let s = sidekiq::collect(&mut conn, &sidekiq::Options::default())
        .await
        .unwrap();
    assert_eq!(s.round_trips, 2);
    assert_eq!(s.queues.len(), 100);
    assert_eq!(s.enqueued(), 2000);
    // A worker drains 10 jobs from q0 and processes them.
    let _: Vec<String> = redis::cmd("RPOP")
        .arg("queue:q0")
        .arg(10)
        .query_async(&mut raw)
        .await
        .unwrap();
    let _: () = raw.incr("stat:processed", 10).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let b = sidekiq::sample(&mut conn, 10_000).await.unwrap();
    let d = sidekiq::delta(&a, &b);
    let q0 = d.rows.iter().find(|r| r.queue == "q0").unwrap();
    assert_eq!(q0.size, 10);
    assert!(q0.net_per_s < 0.0 && q0.eta_s.is_some());
    assert!(d.processed_per_s > 0.0);
    db.release().await;
}

#[tokio::test]
async fn not_sidekiq_data_unreachable_servers_and_wrong_databases_are_clear_errors() {
    let db = TestRedis::reserve().await;
    let mut raw = db.connection().await;
    let mut conn = open(&db.url).await;
    let e = sidekiq::collect(&mut conn, &sidekiq::Options::default())
        .await
        .unwrap_err();
    assert!(
        matches!(e, RedisError::NotSidekiq { .. }) && e.to_string().contains("no Sidekiq data"),
        "{e}"
    );
    let _: () = raw.set("queues", "oops").await.unwrap();
    let e = sidekiq::collect(&mut conn, &sidekiq::Options::default())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("`queues` is a string"), "{e}");
    let _: () = raw.del("queues").await.unwrap();
    let _: () = raw.sadd("queues", "x").await.unwrap();
    let _: () = raw.lpush("queue:x", "not json").await.unwrap();
    let e = sidekiq::collect(&mut conn, &sidekiq::Options::default())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not a Sidekiq job"), "{e}");
    db.release().await;

    // Wrong database index (the test server has 64).
    let base = powertune_test_support::redis_db::base_url();
    let e = Conn::open(&RedisUrl::parse(&format!("{base}/99")).unwrap(), TIMEOUT)
        .await
        .err()
        .unwrap();
    assert!(e.to_string().contains("database 99 does not exist"), "{e}");

    // Unreachable: a port nobody listens on; the password never shows.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = Conn::open(
        &RedisUrl::parse(&format!("redis://:hunter2@127.0.0.1:{port}/0")).unwrap(),
        TIMEOUT,
    )
    .await
    .err()
    .unwrap();
    let msg = e.to_string();
    assert!(
        matches!(e, RedisError::Connect { .. })
            && msg.contains(&port.to_string())
            && !msg.contains("hunter2"),
        "{msg}"
    );
}

#[tokio::test]
async fn the_queues_entry_watches_then_judges_the_full_snapshot() {
    let db = TestRedis::reserve().await;
    let mut raw = db.connection().await;
    write_fixture(&mut raw, "7.3.10", false).await;
    let t = Targets::default();
    let opts = sidekiq::QueuesOptions {
        conn: conn_options(&db.url),
        read: sidekiq::Options::default(),
        watch: Some(sidekiq::WatchOptions {
            every: Duration::from_millis(100),
            ticks: Some(2),
            reconnect: sidekiq::Reconnect::default(),
        }),
    };
    let mut ticks = Vec::new();
    let i = sidekiq::inspect_watching(
        &opts,
        &t,
        |elapsed, d| ticks.push((elapsed, d.rows.len())),
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!(ticks.len(), 2);
    assert!(
        ticks.iter().all(|(e, rows)| *e > 0.0 && *rows == 3),
        "{ticks:?}"
    );
    assert_eq!(i.command, "queues");
    assert_eq!(i.metrics.watch.as_ref().unwrap().retry_change, 0);
    assert_eq!(verdict(&i.findings, "retry_trend"), Verdict::Pass);
    assert_eq!(verdict(&i.findings, "concurrency"), Verdict::Warn);
    assert!(i.text.contains("published by the processes"), "{}", i.text);
    let report = i.report().unwrap();
    powertune_test_support::schema::check::<sidekiq::QueuesMetrics>("queues.v1", &report.metrics);
    assert_eq!(report.metrics["sidekiq"]["processed"], 1000);

    let once = sidekiq::QueuesOptions {
        watch: None,
        ..opts
    };
    let i = sidekiq::inspect(&once, &t).await.unwrap();
    assert!(i.metrics.watch.is_none() && find(&i.findings, "retry_trend").is_empty());
    let metrics = i.report().unwrap().metrics;
    assert!(metrics["watch"].is_null());
    powertune_test_support::schema::check::<sidekiq::QueuesMetrics>("queues.v1", &metrics);
    db.release().await;
}
