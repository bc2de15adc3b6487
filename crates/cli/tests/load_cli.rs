//! `powertune load` and `powertune compare` as a user runs them, against loopback
//! fixture servers: exit codes (0 pass, 99 threshold/target failed, 1 bad input or
//! unreachable) with one-line errors, JSON output and baselines.
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

use common::{one_line_error, stderr, stdout};
use powertune_test_support::http::{FixtureConfig, TestServer};
use std::process::Output;

async fn powertune(args: &[&str]) -> Output {
    common::powertune_within(args, 60).await
}

async fn fixture() -> TestServer {
    TestServer::start(FixtureConfig {
        delay: std::time::Duration::from_millis(20),
        ..Default::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_threshold_exits_99() {
    let srv = fixture().await;
    let url = format!("{}/delay", srv.url);
    let o = powertune(&[
        "load",
        "--url",
        &url,
        "--vus",
        "2",
        "--duration",
        "1s",
        "--threshold",
        "p(95)<5",
        "-q",
    ])
    .await;
    assert_eq!(o.status.code(), Some(99), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("✗ http_req_duration: p(95)<5"), "{out}");
    assert!(out.contains("FAIL"), "{out}");
    assert!(srv.requests() > 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passing_run_writes_json_and_compares_with_a_baseline() {
    let srv = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.json");
    let b = dir.path().join("b.json");
    let url = format!("{}/delay", srv.url);
    let o = powertune(&[
        "load",
        "--url",
        &url,
        "--rate",
        "50/s",
        "--vus",
        "2",
        "--duration",
        "1s",
        "--threshold",
        "http_req_failed: rate<0.01",
        "--json",
        a.to_str().unwrap(),
        "-q",
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("constant-arrival-rate"));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&a).unwrap()).unwrap();
    assert_eq!(report["command"], "load");
    assert_eq!(report["metrics"]["schema"], "powertune.load-summary/v1");
    let reqs = report["metrics"]["http"]["reqs"].as_u64().unwrap();
    assert!((48..=52).contains(&reqs), "{reqs}");
    // k6's spelling, with a baseline.
    let out_arg = format!("json={}", b.display());
    let o = powertune(&[
        "load",
        "--url",
        &url,
        "--rate",
        "50/s",
        "--duration",
        "1s",
        "--out",
        &out_arg,
        "--baseline",
        a.to_str().unwrap(),
        "-q",
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("throughput_vs_baseline"),
        "{}",
        stdout(&o)
    );
    let o = powertune(&["compare", a.to_str().unwrap(), b.to_str().unwrap()]).await;
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("http_req_duration p95 (ms)"),
        "{}",
        stdout(&o)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_file_with_templating_and_env() {
    let srv = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let f = login_plan(dir.path(), 2, 3);
    let o = powertune(&[
        "load",
        f.to_str().unwrap(),
        "--base-url",
        &srv.url,
        "--env",
        "PASS=demo",
        "-q",
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("✓ GET /me: status 200 — 100% (6 / 6)"),
        "{}",
        stdout(&o)
    );
    // A wrong password: the login fails, /me answers 401, the error rate fails → 99.
    let o = powertune(&[
        "load",
        f.to_str().unwrap(),
        "--base-url",
        &srv.url,
        "--env",
        "PASS=nope",
        "-q",
    ])
    .await;
    assert_eq!(o.status.code(), Some(99), "{}{}", stdout(&o), stderr(&o));
}

#[tokio::test]
async fn bad_input_exits_1_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    // Missing file.
    let e = one_line_error(
        &powertune(&[
            "load",
            "/nonexistent/plan.toml",
            "--base-url",
            "http://127.0.0.1:9",
        ])
        .await,
    );
    assert!(e.contains("/nonexistent/plan.toml"), "{e}");
    // TOML error with line:column.
    let f = dir.path().join("bad.toml");
    std::fs::write(
        &f,
        "[scenarios.a]\nendpoint_type = \"auth\"\nusers = \"many\"\n",
    )
    .unwrap();
    let e = one_line_error(
        &powertune(&[
            "load",
            f.to_str().unwrap(),
            "--base-url",
            "http://127.0.0.1:9",
        ])
        .await,
    );
    assert!(e.contains("bad.toml:3:9"), "{e}");
    // Bad threshold with its column.
    let e = one_line_error(
        &powertune(&[
            "load",
            "--url",
            "http://127.0.0.1:9/x",
            "--threshold",
            "p(95)<fast",
        ])
        .await,
    );
    assert!(e.contains("column 7"), "{e}");
    // Target unreachable at start (the runbook example parses first).
    let e = one_line_error(
        &powertune(&[
            "load",
            "examples/runbook.toml",
            "--base-url",
            "http://admin:s3cret@127.0.0.1:1",
        ])
        .await,
    );
    assert!(
        e.contains("unreachable") && e.contains("127.0.0.1:1"),
        "{e}"
    );
    assert!(!e.contains("s3cret"), "{e}");
    // No base URL, bad --out, bad duration, bad rate, bad header.
    let e = one_line_error(&powertune(&["load", "examples/runbook.toml"]).await);
    assert!(e.contains("--base-url"), "{e}");
    let e = one_line_error(
        &powertune(&["load", "--url", "http://127.0.0.1:9/", "--out", "csv=x"]).await,
    );
    assert!(e.contains("json=FILE"), "{e}");
    let e = one_line_error(
        &powertune(&["load", "--url", "http://127.0.0.1:9/", "--duration", "5"]).await,
    );
    assert!(e.contains("no unit"), "{e}");
    let e = one_line_error(
        &powertune(&["load", "--url", "http://127.0.0.1:9/", "--rate", "lots"]).await,
    );
    assert!(e.contains("200/s"), "{e}");
    let e = one_line_error(
        &powertune(&["load", "--url", "http://127.0.0.1:9/", "-H", "nocolon"]).await,
    );
    assert!(e.contains("Name: value"), "{e}");
    // compare with a file that is not a load report.
    let j = dir.path().join("x.json");
    std::fs::write(&j, "{\"metrics\":{}}").unwrap();
    let e =
        one_line_error(&powertune(&["compare", j.to_str().unwrap(), j.to_str().unwrap()]).await);
    assert!(e.contains("not a powertune load report"), "{e}");
    // A baseline that cannot be read: one line naming the flag and the file.
    let e = one_line_error(
        &powertune(&[
            "load",
            "--url",
            "http://127.0.0.1:9/",
            "--baseline",
            "/nonexistent/base.json",
        ])
        .await,
    );
    assert!(
        e.contains("--baseline /nonexistent/base.json: cannot read"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_and_tls_flags_reach_the_engine() {
    let srv = fixture().await;
    let url = format!("{}/delay", srv.url);
    // --no-vu-connection-reuse: every iteration opens a connection, so none took 0 µs.
    let o = powertune(&[
        "load",
        "--url",
        &url,
        "--vus",
        "2",
        "--duration",
        "1500ms",
        "--no-vu-connection-reuse",
        "--json",
        "-",
        "-q",
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let report: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let m = &report["metrics"];
    assert!(m["http"]["reqs"].as_u64().unwrap() > 10, "{m}");
    let connecting = &m["scenarios"][0]["phases"]["connecting"];
    assert!(connecting["min"].as_f64().unwrap() > 0.0, "{connecting}");
    assert_eq!(m["vus"]["max"], 2, "{}", m["vus"]);
    assert_eq!(m["http"]["protocols"]["HTTP/1.1"], m["http"]["reqs"]);
    // A CA file that cannot be read: one line naming it, before any socket opens.
    let e = one_line_error(
        &powertune(&[
            "load",
            "--url",
            "https://127.0.0.1:9/",
            "--ca-cert",
            "/nonexistent/ca.pem",
        ])
        .await,
    );
    assert!(
        e.contains("/nonexistent/ca.pem") && e.contains("PEM"),
        "{e}"
    );
    assert!(!e.contains("unreachable"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_process_environment_feeds_the_plans_variables_and_env_wins() {
    let srv = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let f = login_plan(dir.path(), 1, 2);
    let run = |extra: &'static [&'static str], pass: &'static str| {
        let f = f.clone();
        let url = srv.url.clone();
        async move {
            let mut args = vec![
                "load".to_string(),
                f.to_str().unwrap().to_string(),
                "--base-url".into(),
                url,
                "-q".into(),
            ];
            args.extend(extra.iter().map(|s| s.to_string()));
            tokio::process::Command::new(env!("CARGO_BIN_EXE_powertune"))
                .args(&args)
                .env("NO_COLOR", "1")
                .env("PASS", pass)
                .kill_on_drop(true)
                .output()
                .await
                .unwrap()
        }
    };
    // From the process environment alone.
    let o = run(&[], "demo").await;
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("✓ GET /me: status 200 — 100% (2 / 2)"),
        "{}",
        stdout(&o)
    );
    // --env wins over the process environment.
    let o = run(&["--env", "PASS=nope"], "demo").await;
    assert_eq!(o.status.code(), Some(99), "{}{}", stdout(&o), stderr(&o));
}

/// A plan that logs in with `{{PASS}}` in setup, extracts the token and calls `/me`
/// with it: `vus` VUs, `iterations` iterations each.
fn login_plan(dir: &std::path::Path, vus: u32, iterations: u32) -> std::path::PathBuf {
    let f = dir.join("plan.toml");
    let text = format!(
        r#"
[scenarios.me]
endpoint_type = "read_crud"
executor = "per-vu-iterations"
vus = {vus}
iterations = {iterations}
[[scenarios.me.setup]]
method = "POST"
url = "/login"
json = {{ password = "{{{{PASS}}}}" }}
extract = {{ token = "/token" }}
[[scenarios.me.steps]]
url = "/me"
headers = {{ Authorization = "Bearer {{{{token}}}}" }}
checks = {{ status = 200 }}
"#
    );
    std::fs::write(&f, text).unwrap();
    f
}
