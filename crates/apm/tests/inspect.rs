//! The entries the CLI calls: `inspect::analyze` / `analyze_endpoint` over an
//! export file (with the baseline file written and read back), and
//! `inspect::report` / `endpoint` against a receiver on loopback.
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

use common::*;
use powertune_apm::collect::receiver::base_url;
use powertune_apm::inspect::{self, AnalyzeOptions, ApmError, EndpointOptions, ReportOptions};
use powertune_apm::snapshot::Baseline;
use powertune_core::{Targets, Verdict};
use prost::Message;
use std::path::PathBuf;
use std::time::Duration;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn analyze_options(file: PathBuf) -> AnalyzeOptions {
    AnalyzeOptions {
        file,
        engine: config(|_| {}),
        baseline: None,
        save_baseline: None,
    }
}

#[test]
fn analyze_judges_the_file_and_saves_then_reads_the_baseline() {
    let t = Targets::default();
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("baseline.json");
    let mut o = analyze_options(fixture("powernode.jsonl"));
    o.save_baseline = Some(saved.clone());
    let i = inspect::analyze(&o, &t).unwrap();
    assert_eq!(i.command, "apm analyze");
    assert_eq!(i.metrics.ingest.spans_received, 88);
    assert!(i.text.starts_with("spans 88 received"), "{}", i.text);
    assert!(i
        .findings
        .iter()
        .any(|f| f.check == "n_plus_one" && f.verdict == Verdict::Fail));
    let r = i.report().unwrap();
    assert_eq!(r.command, "apm analyze");
    assert_eq!(r.metrics["ingest"]["jobs_linked"], 4);

    let b = powertune_apm::collect::baseline::read(&saved).unwrap();
    assert_eq!(b, Baseline::from_summary(&i.metrics));
    let mut o = analyze_options(fixture("powernode.jsonl"));
    o.baseline = Some(saved);
    let again = inspect::analyze(&o, &t).unwrap();
    let providers: Vec<_> = again
        .findings
        .iter()
        .filter(|f| f.check == "provider_p95")
        .collect();
    assert!(!providers.is_empty());
    assert!(providers
        .iter()
        .all(|f| f.target.contains("baseline") && f.verdict == Verdict::Pass));
    assert!(providers
        .iter()
        .all(|f| f.target != "no baseline saved (use --save-baseline)"));
}

#[test]
fn analyze_endpoint_shows_one_route_or_names_the_routes_there() {
    let t = Targets::default();
    let o = analyze_options(fixture("powernode.jsonl"));
    let i = inspect::analyze_endpoint(&o, "POST /api/v1/ai/agents/:uuid/execute", &t).unwrap();
    assert_eq!(i.command, "apm endpoint");
    assert_eq!(
        i.metrics.route.route,
        "POST /api/v1/ai/agents/:uuid/execute"
    );
    assert!(i.text.contains("jobs enqueued by this route"), "{}", i.text);
    assert!(i.findings.iter().any(|f| f.check == "route_latency_p95"));
    let e = inspect::analyze_endpoint(&o, "GET /nope", &t).unwrap_err();
    assert!(matches!(e, ApmError::UnknownRoute { .. }));
    let e = e.to_string();
    assert!(
        e.starts_with("--endpoint `GET /nope`: no such route in "),
        "{e}"
    );
    assert!(e.contains("GET /api/v1/ai/monitoring/dashboard"), "{e}");
}

#[test]
fn a_bad_baseline_stops_before_the_file_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"openai\": 1}").unwrap();
    let mut o = analyze_options(dir.path().join("missing.json"));
    o.baseline = Some(bad);
    let e = inspect::analyze(&o, &Targets::default()).unwrap_err();
    assert!(matches!(e, ApmError::Baseline(_)), "{e}");
}

#[tokio::test]
async fn report_and_endpoint_ask_a_running_receiver() {
    let run = start(local()).await;
    let body = n_plus_one_trace(301, Gen::New, 6, false)
        .request_proto()
        .encode_to_vec();
    assert_eq!(
        post(run.http_addr, "application/x-protobuf", false, body)
            .await
            .status(),
        200
    );
    let url = base_url(&format!("http://{}", run.http_addr)).unwrap();
    let t = Targets::default();
    let o = ReportOptions {
        url: url.clone(),
        window: Duration::from_secs(900),
        baseline: None,
        save_baseline: None,
    };
    let i = inspect::report(&o, &t).await.unwrap();
    assert_eq!(i.command, "apm report");
    assert_eq!(i.metrics.routes[0].latency.count, 1);
    assert!(i.text.contains("GET /api/v1/posts"), "{}", i.text);
    let o = EndpointOptions {
        url,
        route: "GET /api/v1/posts".into(),
        window: Duration::from_secs(900),
    };
    let i = inspect::endpoint(&o, &t).await.unwrap();
    assert_eq!(i.command, "apm endpoint");
    let checks: Vec<&str> = i.findings.iter().map(|f| f.check.as_str()).collect();
    assert_eq!(checks, ["route_latency_p95", "n_plus_one"]);
    run.stop();
}
