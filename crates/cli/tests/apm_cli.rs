//! `powertune apm` end to end: the real binary on the fixtures of crates/apm, and
//! `apm serve` on loopback port 0 queried by `apm report` / `apm endpoint`.
// Test code: helpers outside #[test] functions may unwrap, panic and print (clippy.toml
// allows it only inside them).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_powertune"));
    // Never pick up a powertune.toml from the working directory.
    c.current_dir(std::env::temp_dir());
    c
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../apm/tests/fixtures")
        .join(name)
}

#[test]
fn analyze_judges_an_otlp_json_export() {
    let out = bin()
        .args(["apm", "analyze"])
        .arg(fixture("powernode.jsonl"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(99), "{stdout}");
    for needle in [
        "GET /api/v1/ai/monitoring/dashboard",
        "POST /api/v1/ai/agents/:uuid/execute",
        "n_plus_one",
        "consecutive_queries",
        "job_failure_rate",
        ".includes()",
    ] {
        assert!(stdout.contains(needle), "missing {needle}: {stdout}");
    }
    // Same report as JSON on stdout.
    let out = bin()
        .args(["apm", "analyze", "--json", "-"])
        .arg(fixture("powernode.jsonl"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(99));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["command"], "apm analyze");
    assert_eq!(v["metrics"]["ingest"]["spans_received"], 88);
    assert_eq!(v["metrics"]["ingest"]["jobs_linked"], 4);
    // Span links: the jobs hang under the request that enqueued them.
    let out = bin()
        .args([
            "apm",
            "analyze",
            "--endpoint",
            "POST /api/v1/ai/agents/:uuid/execute",
        ])
        .arg(fixture("powernode.jsonl"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "jobs enqueued by this route (span links):",
        "Ai::MissionJob",
        "↳ linked job trace",
        "[job] Ai::MissionJob on default",
    ] {
        assert!(stdout.contains(needle), "missing {needle}: {stdout}");
    }
    // A clean export passes.
    let out = bin()
        .args(["apm", "analyze"])
        .arg(fixture("clean.json"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn analyze_saves_a_baseline_and_judges_providers_against_it() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("baseline.json");
    let out = bin()
        .args(["apm", "analyze", "--json", "-", "--save-baseline"])
        .arg(&base)
        .arg(fixture("powernode.jsonl"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(99));
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&base).unwrap()).unwrap();
    assert_eq!(saved["kind"], "apm");
    let providers = saved["data"]["providers"].as_object().unwrap();
    assert!(!providers.is_empty(), "{saved}");
    let out = bin()
        .args(["apm", "analyze", "--json", "-", "--baseline"])
        .arg(&base)
        .arg(fixture("powernode.jsonl"))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let found: Vec<&serde_json::Value> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == "provider_p95")
        .collect();
    assert_eq!(found.len(), providers.len());
    for f in found {
        assert_eq!(f["verdict"], "pass", "{f}");
        assert!(f["target"].as_str().unwrap().contains("× baseline"), "{f}");
    }
}

#[test]
fn bad_input_is_one_line_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("apm.toml");
    std::fs::write(&cfg, "[window]\nretian = \"1m\"\n").unwrap();
    let garbage = dir.path().join("garbage.json");
    std::fs::write(&garbage, "{\"resourceSpans\": 3}\n").unwrap();
    let bad_baseline = dir.path().join("baseline.json");
    std::fs::write(&bad_baseline, "{\"openai/gpt-4o\": 850}\n").unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "apm".into(),
                "analyze".into(),
                "--baseline".into(),
                bad_baseline.display().to_string(),
                fixture("clean.json").display().to_string(),
            ],
            "expected a apm baseline (schema \"powertune.baseline/v1\"",
        ),
        (
            vec![
                "apm".into(),
                "analyze".into(),
                "--baseline".into(),
                "/nonexistent/baseline.json".into(),
                fixture("clean.json").display().to_string(),
            ],
            "/nonexistent/baseline.json: cannot read baseline",
        ),
        (
            vec![
                "apm".into(),
                "analyze".into(),
                "--endpoint".into(),
                "GET /nope".into(),
                fixture("powernode.jsonl").display().to_string(),
            ],
            "--endpoint `GET /nope`: no such route in",
        ),
        (
            vec![
                "apm".into(),
                "analyze".into(),
                "/nonexistent/traces.json".into(),
            ],
            "/nonexistent/traces.json",
        ),
        (
            vec![
                "apm".into(),
                "analyze".into(),
                "--config".into(),
                cfg.display().to_string(),
                fixture("clean.json").display().to_string(),
            ],
            "apm.toml:2:",
        ),
        (
            vec![
                "apm".into(),
                "analyze".into(),
                garbage.display().to_string(),
            ],
            "OTLP/JSON",
        ),
        (
            vec![
                "apm".into(),
                "report".into(),
                "--url".into(),
                "http://127.0.0.1:1".into(),
            ],
            "cannot reach",
        ),
        (
            vec![
                "apm".into(),
                "report".into(),
                "--url".into(),
                "http://u:hunter2@127.0.0.1:1".into(),
            ],
            "cannot reach",
        ),
        (
            vec![
                "apm".into(),
                "report".into(),
                "--window".into(),
                "soon".into(),
            ],
            "15m",
        ),
        (
            vec![
                "apm".into(),
                "serve".into(),
                "--listen".into(),
                "127.0.0.1:0".into(),
                "--forward".into(),
                "collector:4317".into(),
                "--forward-protocol".into(),
                "grpc2".into(),
            ],
            "http/protobuf or grpc",
        ),
        (
            vec![
                "apm".into(),
                "serve".into(),
                "--listen".into(),
                "127.0.0.1:0".into(),
                "--forward".into(),
                "http://u:hunter2@collector:4318".into(),
            ],
            "credentials",
        ),
        (
            vec![
                "apm".into(),
                "serve".into(),
                "--listen".into(),
                "127.0.0.1:0".into(),
                "--forward".into(),
                "collector".into(),
                "--forward-protocol".into(),
                "grpc".into(),
            ],
            "4317",
        ),
    ];
    for (args, needle) in cases {
        let out = bin().args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("powertune: "), "{err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}

/// Kills the child it holds, whatever happens in the test.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn post_json(addr: &str, body: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST /v1/traces HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp
}

#[test]
fn serve_then_report_and_endpoint() {
    let child = bin()
        .args(["apm", "serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut server = Server(child);
    let stderr = server.0.stderr.take().unwrap();
    let mut first = String::new();
    BufReader::new(stderr).read_line(&mut first).unwrap();
    // "powertune apm: OTLP/HTTP on http://127.0.0.1:PORT/v1/traces; ..."
    let addr = first
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("no address in: {first}"))
        .to_string();
    let url = format!("http://{addr}");
    let lines = std::fs::read_to_string(fixture("powernode.jsonl")).unwrap();
    for line in lines.lines() {
        let resp = post_json(&addr, line);
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    }
    let resp = post_json(&addr, "{not json");
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");

    let deadline = Instant::now() + Duration::from_secs(20);
    let out = loop {
        let out = bin()
            .args(["apm", "report", "--url", &url, "--window", "15m"])
            .output()
            .unwrap();
        if out.status.code() == Some(99) || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(99), "{stdout}");
    assert!(stdout.contains("n_plus_one"), "{stdout}");
    assert!(stdout.contains("spans 88 received"), "{stdout}");
    assert!(
        stdout.contains("enqueued by POST /api/v1/ai/agents/:uuid/execute"),
        "{stdout}"
    );

    let out = bin()
        .args([
            "apm",
            "endpoint",
            "GET /api/v1/ai/monitoring/dashboard",
            "--url",
            &url,
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(99), "{stdout}");
    assert!(stdout.contains("look first at: outgoing HTTP"), "{stdout}");
    assert!(
        stdout.contains("[db] postgresql SELECT * FROM agent_runs WHERE agent_id = ?"),
        "{stdout}"
    );
    let out = bin()
        .args(["apm", "endpoint", "GET /nope", "--url", &url])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"));
}
