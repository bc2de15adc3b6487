//! `powertune demo` and `powertune targets` as a user runs them: the demo end to end at
//! a tiny time scale, the targets listing, and one-line errors with exit 1.
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

use common::{one_line_error, text};
use std::path::Path;
use std::process::{Command, Output};

fn powertune(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_powertune"))
        .args(args)
        .env("NO_COLOR", "1")
        .current_dir(dir)
        .output()
        .unwrap()
}

fn assert_one_line_error(o: &Output, needle: &str) {
    let e = one_line_error(o);
    assert!(e.contains(needle), "expected `{needle}` in: {e}");
}

#[test]
fn demo_runs_the_runbook_scenarios_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("demo.json");
    let o = powertune(
        &[
            "demo",
            "--time-scale",
            "0.004",
            "--quiet",
            "--json",
            json.to_str().unwrap(),
        ],
        dir.path(),
    );
    let out = text(&o.stdout);
    // At this tiny time scale every VU logs in within a fraction of a second, so the
    // target's pool may queue enough to push a P95 past its target: the verdict is the
    // run's own, and the exit code must agree with it.
    assert!(
        matches!(o.status.code(), Some(0) | Some(99)),
        "{out}\n{}",
        text(&o.stderr)
    );
    for scenario in [
        "auth_burst",
        "agent_execute",
        "mission_create",
        "dashboard_load",
        "websocket_subscribe",
        "llm_call",
    ] {
        assert!(out.contains(scenario), "{scenario} missing from:\n{out}");
    }
    assert!(out.contains("api_latency_p95"), "{out}");
    assert!(
        ["PASS:", "WARN:", "FAIL:"].iter().any(|v| out.contains(v)),
        "{out}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["schema"], "powertune.report/v2");
    assert_eq!(report["command"], "demo");
    let expected_code = if report["verdict"] == "fail" { 99 } else { 0 };
    assert_eq!(o.status.code(), Some(expected_code), "{out}");
    let findings = report["findings"].as_array().unwrap();
    assert!(findings.iter().any(|f| f["check"] == "api_latency_p95"));
    // The LLM-call row: streamed through target → gateway → simulator, judged on the
    // runbook's 30 s / 60 s band, TTFT and tokens/s in the summary.
    let row = findings
        .iter()
        .find(|f| f["check"] == "api_latency_p95" && f["subject"] == "AI orchestration (LLM call)")
        .unwrap_or_else(|| panic!("no LLM-call row in {findings:#?}"));
    assert!(
        ["pass", "warn", "fail"].contains(&row["verdict"].as_str().unwrap()),
        "{row}"
    );
    assert_eq!(row["target"]["value"], 30000.0, "{row}");
    assert!(
        row["evidence"].as_str().unwrap().contains("TTFT p50"),
        "{row}"
    );
    let llm = &report["metrics"]["llm"];
    assert!(llm["ttft"]["count"].as_u64().unwrap() > 0, "{llm}");
    assert!(llm["tokens_per_s"]["med"].as_f64().unwrap() > 0.0, "{llm}");
    assert_eq!(llm["stream_errors"]["dropped"], 0, "{llm}");
    assert!(
        out.contains("llm_ttft") && out.contains("llm_tokens_per_s"),
        "{out}"
    );
    // The gateway's breakers and retries, through its own inspection.
    for check in ["breakers_open", "retry_depth"] {
        let f = findings
            .iter()
            .find(|f| f["check"] == check)
            .unwrap_or_else(|| panic!("no {check} in {findings:#?}"));
        assert_eq!(f["verdict"], "pass", "{f}");
    }
    assert!(out.contains("provider simulator:"), "{out}");
    // The server saw the client's requests: the summary counts are not empty.
    assert!(out.contains("requests served"), "{out}");
    // The picture of the run, written where the demo ran, named on the last line.
    assert!(dir.path().join("powertune-demo.html").exists());
    assert_eq!(
        out.trim_end().lines().last().unwrap(),
        "report: powertune-demo.html",
        "{out}"
    );
}

#[test]
fn demo_rejects_a_bad_time_scale() {
    let dir = tempfile::tempdir().unwrap();
    let o = powertune(&["demo", "--time-scale", "0"], dir.path());
    assert_one_line_error(&o, "--time-scale");
}

#[test]
fn targets_lists_defaults_and_overrides_with_their_source() {
    let dir = tempfile::tempdir().unwrap();
    let o = powertune(&["targets"], dir.path());
    assert_eq!(o.status.code(), Some(0));
    let out = text(&o.stdout);
    let line = out
        .lines()
        .find(|l| l.starts_with("api.authentication.target_ms"))
        .unwrap();
    assert!(
        line.contains("100") && line.contains("default (runbook)"),
        "{line}"
    );

    std::fs::write(
        dir.path().join("powertune.toml"),
        "# staging\n[api.authentication]\ntarget_ms = 80\n",
    )
    .unwrap();
    let o = powertune(&["targets", "--json"], dir.path());
    assert_eq!(o.status.code(), Some(0));
    let entries: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let auth = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == "api.authentication.target_ms")
        .unwrap();
    assert_eq!(auth["value"], "80.0");
    assert_eq!(auth["source"], "powertune.toml:3");
}

#[test]
fn bad_targets_files_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.toml"), "[database]\npool_size = 3\n").unwrap();
    let o = powertune(&["--targets", "bad.toml", "targets"], dir.path());
    assert_one_line_error(&o, "bad.toml:2:1: unknown key `pool_size` in [database]");

    std::fs::write(dir.path().join("broken.toml"), "[load\np95_ms = 1\n").unwrap();
    let o = powertune(&["--targets", "broken.toml", "targets"], dir.path());
    assert_one_line_error(&o, "broken.toml:1:");

    let o = powertune(&["--targets", "missing.toml", "targets"], dir.path());
    assert_one_line_error(&o, "missing.toml");

    let o = powertune(&["no-such-command"], dir.path());
    assert_one_line_error(&o, "no-such-command");
}
