//! `inspect()`, the load engine's one entry, against a loopback server: progress
//! reaches the caller's callback, and a baseline adds the comparison to the text, the
//! payload and the findings.
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
use powertune_load::{
    inspect, inspect_compare, CompareMetrics, CompareOptions, LoadMetrics, Plan, Progress,
    RunOptions,
};
use powertune_test_support::http::{FixtureConfig, TestServer};
use powertune_test_support::schema::check;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const PLAN: &str = r#"
[scenarios.steady]
endpoint_type = "read_crud"
executor = "constant-vus"
vus = 2
duration = "2500ms"
[[scenarios.steady.steps]]
url = "/delay"
[[scenarios.steady.steps]]
sleep = "10ms"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_reaches_the_callback_once_a_second() {
    let srv = TestServer::start(FixtureConfig {
        delay: Duration::from_millis(5),
        ..Default::default()
    })
    .await;
    let seen: Arc<Mutex<Vec<Progress>>> = Arc::default();
    let sink = seen.clone();
    let mut opts = RunOptions::new(Plan::from_toml_str(PLAN, "p.toml").unwrap(), &srv.url);
    opts.progress = Some(Arc::new(move |p: &Progress| {
        sink.lock().unwrap().push(p.clone())
    }));
    let i = tokio::time::timeout(Duration::from_secs(30), inspect(&opts, &Targets::default()))
        .await
        .expect("run finished within 30 s")
        .unwrap();
    let seen = seen.lock().unwrap();
    assert!(seen.len() >= 2, "{seen:?}");
    assert!(seen.iter().all(|p| p.total == Duration::from_millis(2500)));
    assert!(seen
        .windows(2)
        .all(|w| w[0].reqs <= w[1].reqs && w[0].elapsed < w[1].elapsed));
    assert!(seen
        .iter()
        .all(|p| p.vus == 2 && p.errors == 0 && p.p95_ms > 0.0));
    let last = seen.last().unwrap();
    assert!(last.reqs > 0 && last.reqs <= i.metrics.summary.http.reqs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_baseline_adds_the_comparison_everywhere() {
    let srv = TestServer::start(FixtureConfig::default()).await;
    let mut plan = Plan::from_toml_str(PLAN, "p.toml").unwrap();
    plan.scale_time(0.4);
    let mut opts = RunOptions::new(plan, &srv.url);
    let targets = Targets::default();
    let first = inspect(&opts, &targets).await.unwrap();
    assert_eq!(first.command, "load");
    assert!(first.metrics.baseline_comparison.is_none());
    assert!(!first.text.contains("against the baseline"));
    // Plain text: colour comes only from core's terminal renderer.
    assert!(!first.text.contains('\x1b'), "{}", first.text);
    assert!(!first
        .findings
        .iter()
        .any(|f| f.check == "throughput_vs_baseline"));
    // The payload serialises as the summary itself, as `to_report` writes it.
    let report = first.report().unwrap();
    let summary = &first.metrics.summary;
    assert_eq!(
        report.metrics,
        summary.to_report(&targets, None).metrics,
        "inspection and to_report agree"
    );
    assert_eq!(report.metrics["schema"], powertune_load::SUMMARY_SCHEMA);

    opts.baseline = Some(summary.clone());
    let second = inspect(&opts, &targets).await.unwrap();
    assert!(
        second.text.contains("\nagainst the baseline\n"),
        "{}",
        second.text
    );
    assert!(
        second.text.contains("http_reqs rate (req/s)"),
        "{}",
        second.text
    );
    let deltas = second.metrics.baseline_comparison.as_ref().unwrap();
    assert_eq!(deltas[0].metric, "http_reqs rate (req/s)");
    assert!(second
        .findings
        .iter()
        .any(|f| f.check == "throughput_vs_baseline"));
    // --baseline runs the same latency test as compare, one finding per group.
    let changes = second.metrics.latency_changes.as_ref().unwrap();
    assert_eq!(changes[0].group, "all requests");
    assert_eq!(
        second
            .findings
            .iter()
            .filter(|f| f.check == "latency_vs_baseline")
            .count(),
        changes.len()
    );
    assert!(second.text.contains("all requests"), "{}", second.text);
    assert!(first.metrics.latency_changes.is_none());
    let json = second.report().unwrap();
    assert!(json.metrics["baseline_comparison"].is_array());
    assert!(json.metrics["latency_changes"].is_array());
    assert_eq!(
        json.metrics["http"]["reqs"],
        second.metrics.summary.http.reqs
    );
    check::<LoadMetrics>("load-summary.v1", &json.metrics);

    // `powertune compare`'s payload, checked against docs/schema/compare.v1.json.
    let cmp = inspect_compare(
        &CompareOptions {
            baseline: summary.clone(),
            baseline_name: "a.json".into(),
            current: second.metrics.summary.clone(),
            current_name: "b.json".into(),
            more_baseline: vec![],
            more_current: vec![],
        },
        &targets,
    );
    assert_eq!(cmp.command, "compare");
    assert!(cmp.text.starts_with("baseline a.json ("), "{}", cmp.text);
    let report = cmp.report().unwrap();
    let deltas = report.metrics["baseline_comparison"].as_array().unwrap();
    assert_eq!(deltas[0]["unit"], "per_second");
    assert_eq!(deltas[1]["unit"], "ms");
    check::<CompareMetrics>("compare.v1", &report.metrics);
    let checks: Vec<&str> = report.findings.iter().map(|f| f.check.as_str()).collect();
    assert_eq!(checks[0], "throughput_vs_baseline");
    // One latency test per group both runs measured: all requests first.
    assert!(
        checks[1..].iter().all(|c| *c == "latency_vs_baseline"),
        "{checks:?}"
    );
    assert_eq!(report.findings[1].subject, "all requests");
    let changes = report.metrics["latency_changes"].as_array().unwrap();
    assert_eq!(changes.len(), checks.len() - 1);
}
