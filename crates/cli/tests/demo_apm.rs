//! `powertune demo` feeds its own APM: the embedded target exports its spans to an
//! in-process `apm serve`, every load request carries a traceparent, and the report
//! shows the APM's rows beside the load results — terminal, JSON (`metrics.apm`,
//! checked against the apm summary's schema, the rest against the load summary's)
//! and HTML.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

use common::{stderr, stdout};

fn is_trace_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()) && s.bytes().any(|b| b != b'0')
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_demo_reports_the_targets_spans() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("demo.json");
    let html = dir.path().join("demo.html");
    let o = common::powertune_within(
        &[
            "demo",
            "--time-scale",
            "0.004",
            "--quiet",
            "--json",
            json.to_str().unwrap(),
            "--html",
            html.to_str().unwrap(),
        ],
        180,
    )
    .await;
    let out = stdout(&o);
    let err = stderr(&o);
    assert!(
        matches!(o.status.code(), Some(0) | Some(99)),
        "{out}\n{err}"
    );
    assert!(
        err.contains("APM: target and gateway spans → apm serve http://127.0.0.1:"),
        "{err}"
    );

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["command"], "demo");
    let mut metrics = report["metrics"].clone();
    let apm = metrics.as_object_mut().unwrap().remove("apm").unwrap();
    // What is left is the load run's summary, the APM section the receiver's.
    powertune_test_support::schema::check::<powertune_load::LoadMetrics>(
        "load-summary.v1",
        &metrics,
    );
    powertune_test_support::schema::check::<powertune_apm::Summary>("apm-summary.v1", &apm);

    let spans = apm["ingest"]["spans_received"].as_u64().unwrap();
    assert!(spans > 0, "{apm}");
    assert_eq!(apm["ingest"]["spans_rejected"], 0, "{apm}");
    // Per endpoint type P95, as the server saw it.
    let types = apm["types"].as_array().unwrap();
    let kinds: Vec<&str> = types
        .iter()
        .map(|t| t["endpoint_type"].as_str().unwrap())
        .collect();
    for k in ["authentication", "analytics", "ai_llm"] {
        assert!(kinds.contains(&k), "{kinds:?}");
    }
    assert!(
        types.iter().all(|t| t["p95_ms"].as_f64().unwrap() > 0.0),
        "{types:#?}"
    );
    // The slowest requests by trace id: ids the load generator sent in traceparent.
    let routes = apm["routes"].as_array().unwrap();
    let login = routes
        .iter()
        .find(|r| r["route"] == "POST /api/v1/auth/login")
        .unwrap_or_else(|| panic!("{routes:#?}"));
    assert!(login["count"].as_u64().unwrap() > 0);
    let slowest: Vec<&str> = routes
        .iter()
        .flat_map(|r| r["slowest"].as_array().unwrap())
        .map(|t| t["trace_id"].as_str().unwrap())
        .collect();
    assert!(
        !slowest.is_empty() && slowest.iter().all(|t| is_trace_id(t)),
        "{slowest:?}"
    );
    // The LLM calls, through the gateway.
    let providers = apm["providers"].as_array().unwrap();
    assert!(
        providers.iter().any(|p| p["count"].as_u64().unwrap() > 0),
        "{providers:#?}"
    );
    // The gateway's own spans continue the target's trace: the APM sees the calls
    // as made through the gateway, and counts each once.
    let calls: u64 = providers.iter().map(|p| p["count"].as_u64().unwrap()).sum();
    let via: u64 = providers
        .iter()
        .map(|p| p["via_gateway"].as_u64().unwrap())
        .sum();
    assert!(via > 0 && via <= calls, "{providers:#?}");
    // The APM's verdicts are the report's too.
    let findings = report["findings"].as_array().unwrap();
    assert!(
        findings.iter().any(|f| f["area"] == "apm"
            && f["check"] == "api_latency_p95"
            && f["subject"] == "Authentication (APM)"),
        "{findings:#?}"
    );
    assert!(
        findings.iter().any(|f| f["area"] == "load"),
        "{findings:#?}"
    );

    // The terminal: the APM's table and the slowest requests beside the load's.
    assert!(
        out.contains("APM: the embedded target's and its gateway's spans"),
        "{out}"
    );
    assert!(out.contains(&format!("spans {spans} received")), "{out}");
    let section = out
        .split("slowest requests (server side):")
        .nth(1)
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        // the rest of the heading's line, the table's header, then the slowest
        section
            .lines()
            .nth(2)
            .is_some_and(|l| l.split_whitespace().any(is_trace_id)),
        "{section}"
    );

    // The page: the load's charts, then the APM's tables.
    let page = std::fs::read_to_string(&html).unwrap();
    for t in [
        "APM: Endpoint types",
        "APM: slowest requests",
        "APM: LLM providers",
    ] {
        assert!(page.contains(t), "{t} missing from the page");
    }
    assert!(
        page.contains(slowest[0]),
        "trace {} not on the page",
        slowest[0]
    );
}
