//! `powertune load` and `powertune demo` interrupted by SIGINT/SIGTERM: the summary is
//! still printed and `--json` written, marked interrupted, exit code 105, and the run
//! stops within a generous bound (a second signal stops it at once).
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

use common::{stderr, stdout};
use powertune_test_support::http::{FixtureConfig, TestServer};
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

/// Starts powertune with `args`, sends `signals` (each after its delay from the
/// previous one), and returns its output and how long it ran after the first signal.
async fn interrupted(args: &[&str], signals: &[(&str, Duration)]) -> (Output, Duration) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_powertune"))
        .args(args)
        .env("NO_COLOR", "1")
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap().to_string();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let read_out = tokio::spawn(async move {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b).await;
        b
    });
    let read_err = tokio::spawn(async move {
        let mut b = Vec::new();
        let _ = err.read_to_end(&mut b).await;
        b
    });
    let mut first = None;
    for (sig, after) in signals {
        tokio::time::sleep(*after).await;
        first.get_or_insert_with(Instant::now);
        let ok = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &pid])
            .status()
            .unwrap();
        assert!(ok.success(), "kill -{sig} {pid}");
    }
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("powertune stopped within 60 s of the signal")
        .unwrap();
    let took = first.map(|t| t.elapsed()).unwrap_or_default();
    let output = Output {
        status,
        stdout: read_out.await.unwrap(),
        stderr: read_err.await.unwrap(),
    };
    (output, took)
}

fn report(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_stops_a_load_run_and_keeps_its_results() {
    let srv = TestServer::start(FixtureConfig {
        delay: Duration::from_millis(20),
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("run.json");
    let url = format!("{}/delay", srv.url);
    let (o, took) = interrupted(
        &[
            "load",
            "--url",
            &url,
            "--vus",
            "2",
            "--duration",
            "10m",
            "-q",
            "--json",
            json.to_str().unwrap(),
        ],
        &[("INT", Duration::from_millis(1500))],
    )
    .await;
    let (out, err) = (stdout(&o), stderr(&o));
    assert_eq!(o.status.code(), Some(105), "stdout: {out} stderr: {err}");
    // One-off graceful stop is 5 s; requests of 20 ms end much sooner.
    assert!(took < Duration::from_secs(15), "{took:?}");
    assert!(
        err.contains("interrupted: stopping the run gracefully"),
        "{err}"
    );
    assert!(out.contains("INTERRUPTED"), "{out}");
    assert!(out.contains("http_req_duration"), "{out}");
    assert!(out.contains("load_p95"), "{out}");
    let r = report(&json);
    assert_eq!(r["interrupted"], true, "{r}");
    assert_eq!(r["metrics"]["interrupted"], true);
    let reqs = r["metrics"]["http"]["reqs"].as_u64().unwrap();
    assert!(reqs > 0, "{r}");
    assert_eq!(reqs, srv.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_twice_stops_a_stuck_run_at_once_and_counts_what_was_in_flight() {
    // A server that accepts and never answers: only the second signal ends the
    // 10-minute graceful stop.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("stuck.toml");
    std::fs::write(
        &plan,
        "[scenarios.stuck]\nendpoint_type = \"read_crud\"\nexecutor = \"constant-vus\"\nvus = 3\nduration = \"10m\"\ngraceful_stop = \"10m\"\n[[scenarios.stuck.steps]]\nurl = \"/never\"\n",
    )
    .unwrap();
    let json = dir.path().join("run.json");
    let (o, took) = interrupted(
        &[
            "load",
            plan.to_str().unwrap(),
            "--base-url",
            &base,
            "-q",
            "--json",
            json.to_str().unwrap(),
        ],
        &[
            ("TERM", Duration::from_millis(1000)),
            ("TERM", Duration::from_millis(1000)),
        ],
    )
    .await;
    let (out, err) = (stdout(&o), stderr(&o));
    assert_eq!(o.status.code(), Some(105), "stdout: {out} stderr: {err}");
    assert!(took < Duration::from_secs(15), "{took:?}");
    assert!(
        err.contains("interrupted again: stopping the run now"),
        "{err}"
    );
    assert!(
        out.contains("INTERRUPTED") && out.contains("nothing_completed"),
        "{out}"
    );
    let r = report(&json);
    assert_eq!(r["interrupted"], true);
    assert_eq!(r["metrics"]["http"]["errors"]["interrupted"], 3, "{r}");
    assert_eq!(r["metrics"]["http"]["failed"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_stops_the_demo_and_keeps_its_results() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("demo.json");
    let html = dir.path().join("demo.html");
    let (o, took) = interrupted(
        &[
            "demo",
            "--time-scale",
            "1",
            "--quiet",
            "--json",
            json.to_str().unwrap(),
            "--html",
            html.to_str().unwrap(),
        ],
        &[
            ("INT", Duration::from_millis(3000)),
            ("INT", Duration::from_millis(1000)),
        ],
    )
    .await;
    let (out, err) = (stdout(&o), stderr(&o));
    assert_eq!(o.status.code(), Some(105), "stdout: {out} stderr: {err}");
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert!(out.contains("INTERRUPTED"), "{out}");
    assert!(out.contains("embedded target:"), "{out}");
    let r = report(&json);
    assert_eq!(r["interrupted"], true);
    assert!(r["metrics"]["http"]["reqs"].as_u64().unwrap() > 0, "{r}");
    assert!(std::fs::read_to_string(&html)
        .unwrap()
        .contains("id=\"interrupted\""));
}
