//! `powertune gateway status` over a live gateway: collect, judge, inspect.
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

#[tokio::test]
async fn status_collector_and_judge_over_a_live_gateway() {
    let fake = provider().await;
    let r = rig(&three_kinds(&fake.url()).retries(0).toml()).await;
    let c = http();
    for _ in 0..3 {
        let resp = chat(&c, &r.url, "openai", "fast", false).await;
        assert_eq!(resp.status(), 200);
    }
    let s = powertune_gateway::collect::collect_status(&r.url)
        .await
        .unwrap();
    let base = powertune_gateway::judge::Baseline::from_snapshot(&s);
    assert_eq!(base.providers["oai"].count, 3);
    let t = powertune_core::targets::AiTargets::default();
    let findings = powertune_gateway::judge::judge(&s, Some(&base), &t);
    let checks: Vec<&str> = findings.iter().map(|f| f.check.as_str()).collect();
    assert_eq!(
        checks,
        ["breakers_open", "provider_p95_vs_baseline", "retry_depth"]
    );
    assert!(
        findings
            .iter()
            .all(|f| f.verdict == powertune_core::Verdict::Pass),
        "{findings:?}"
    );
    // unreachable and not-a-gateway are clear errors
    let e = powertune_gateway::collect::collect_status("http://127.0.0.1:1")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot reach"), "{e}");
    let e = powertune_gateway::collect::collect_status(&format!("{}/v1", fake.url()))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("404"), "{e}");
}

#[tokio::test]
async fn inspect_saves_then_judges_against_a_baseline_and_renders_the_tables() {
    use powertune_gateway::{inspect, StatusOptions};
    use std::sync::{Arc, Mutex};
    let fake = provider().await;
    let r = rig(&three_kinds(&fake.url()).toml()).await;
    let c = http();
    for _ in 0..2 {
        let resp = chat(&c, &r.url, "openai", "fast", false).await;
        assert_eq!(resp.status(), 200);
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("baseline.json");
    let notes: Arc<Mutex<Vec<String>>> = Arc::default();
    let n = notes.clone();
    let targets = powertune_core::Targets::default();
    let mut o = StatusOptions::new(r.url.clone());
    o.save_baseline = Some(file.clone());
    o.note = Some(Arc::new(move |l: &str| {
        n.lock().unwrap().push(l.to_string())
    }));
    let first = inspect(&o, &targets).await.unwrap();
    assert_eq!(first.command, "gateway status");
    assert_eq!(first.metrics.calls, 2);
    let notes = notes.lock().unwrap().clone();
    assert_eq!(notes.len(), 1);
    assert!(
        notes[0].starts_with("saved a baseline of 1 providers to "),
        "{notes:?}"
    );
    // no baseline yet: the P95 check asks for one
    let p95 = first
        .findings
        .iter()
        .find(|f| f.check == "provider_p95_vs_baseline")
        .unwrap();
    assert_eq!(p95.verdict, powertune_core::Verdict::Warn);
    assert!(first.text.contains("provider/credential"), "{}", first.text);
    assert!(first.text.contains("oai/main"), "{}", first.text);

    let mut o = StatusOptions::new(r.url.clone());
    o.baseline = Some(file.clone());
    let second = inspect(&o, &targets).await.unwrap();
    let p95 = second
        .findings
        .iter()
        .find(|f| f.check == "provider_p95_vs_baseline")
        .unwrap();
    assert!(p95.evidence.contains("baseline"), "{}", p95.evidence);
    let report = second.report().unwrap();
    assert_eq!(report.metrics["calls"], 2);
    let report_json = serde_json::to_value(&report).unwrap();
    powertune_test_support::schema::check::<powertune_gateway::StatusMetrics>(
        "gateway-status.v1",
        &report_json["metrics"],
    );
    let depth = &report_json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "retry_depth")
        .unwrap();
    assert_eq!(
        depth["observed"],
        serde_json::json!({"value": 0.0, "unit": "count", "note": "max"})
    );
    assert_eq!(
        depth["target"],
        serde_json::json!({"value": 3.0, "unit": "count", "cmp": "<", "note": "per call"})
    );

    // a file of another kind is refused before the gateway is asked
    std::fs::write(&file, "{\"schema\": \"something else\"}").unwrap();
    let e = inspect(&o, &targets).await.unwrap_err().to_string();
    assert!(e.contains("expected a gateway baseline"), "{e}");
    let mut o = StatusOptions::new("http://127.0.0.1:1");
    o.baseline = Some(dir.path().join("missing.json"));
    let e = inspect(&o, &targets).await.unwrap_err().to_string();
    assert!(e.contains("cannot read baseline"), "{e}");
}
