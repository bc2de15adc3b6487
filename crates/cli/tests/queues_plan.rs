//! `powertune queues plan` as a user runs it: bad specs are one-line errors (exit 1);
//! a live window over real Sidekiq data (written by ruby-sidekiq) with the processed
//! counter growing gives a report whose metrics match `queues-plan.v1` and whose
//! connection budget reads PostgreSQL's max_connections.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

use common::{one_line_error, stderr};
use powertune_test_support::redis_db::TestRedis;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn powertune(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_powertune"))
        .args(args)
        .env_remove("REDIS_URL")
        .env_remove("DATABASE_URL")
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

#[test]
fn bad_specs_and_service_times_are_one_line_errors() {
    let url = format!("{}/1", powertune_test_support::redis_db::base_url());
    let e = one_line_error(&powertune(&[
        "queues",
        "plan",
        "--url",
        &url,
        "--proposed",
        "critical,x",
    ]));
    assert!(e.contains("--proposed: `critical,x`"), "{e}");
    let e = one_line_error(&powertune(&[
        "queues",
        "plan",
        "--url",
        &url,
        "--running",
        "a a",
    ]));
    assert!(e.contains("given twice"), "{e}");
    let e = one_line_error(&powertune(&[
        "queues",
        "plan",
        "--url",
        &url,
        "--service-time",
        "ai",
    ]));
    assert!(e.contains("QUEUE=DURATION"), "{e}");
    let e = one_line_error(&powertune(&["queues", "plan"]));
    assert!(e.contains("--url is required"), "{e}");
}

#[test]
fn a_live_window_plans_and_reads_max_connections() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = rt.block_on(TestRedis::reserve());
    common::sidekiq6_fixture(&db.url);
    // Jobs get processed while the window samples: the counter grows ~50/s.
    let url = db.url.clone();
    let bump = std::thread::spawn(move || {
        let end = Instant::now() + Duration::from_millis(2500);
        let (host_port, n) = url.trim_start_matches("redis://").rsplit_once('/').unwrap();
        let (host, port) = host_port.split_once(':').unwrap();
        while Instant::now() < end {
            let _ = Command::new("redis-cli")
                .args([
                    "-h",
                    host,
                    "-p",
                    port,
                    "-n",
                    n,
                    "INCRBY",
                    "stat:processed",
                    "5",
                ])
                .output();
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let pg = std::env::var("POWERTUNE_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:55432/postgres".into());
    let o = powertune(&[
        "queues",
        "plan",
        "--url",
        &db.url,
        "--window",
        "2s",
        "--interval",
        "250ms",
        "--horizon",
        "30m",
        "--db",
        &pg,
        "--web-threads",
        "5",
        "--web-workers",
        "4",
        "--proposed",
        "critical,3 standard,2 low,1",
        "--concurrency",
        "10",
        "--json",
        "-",
    ]);
    bump.join().unwrap();
    assert!(matches!(o.status.code(), Some(0 | 99)), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["command"], "queues plan");
    let m = &report["metrics"];
    assert!(
        m["load"]["processed_per_s"].as_f64().unwrap() > 5.0,
        "{m:#}"
    );
    assert!(m["db"]["max_connections"].as_u64().unwrap() > 0);
    let configs: Vec<&str> = m["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["config"].as_str().unwrap())
        .collect();
    assert_eq!(configs, ["running", "recommended", "proposed"]);
    let budget = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "plan_proposed_connections")
        .unwrap();
    // 10 proposed threads + 5 × 4 web threads.
    assert!(budget["evidence"]
        .as_str()
        .unwrap()
        .contains("10 Sidekiq threads + 20 web threads"));
    powertune_test_support::schema::check::<powertune_queues_plan::plan::PlanMetrics>(
        "queues-plan.v1",
        m,
    );
    rt.block_on(db.release());
}
