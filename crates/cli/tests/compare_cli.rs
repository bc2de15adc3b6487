//! `powertune compare` tells a real change from noise: two runs of the same plan
//! against the embedded target (runs pooled per side) say "no significant change";
//! a planted slowdown (the target's delay raised by half) says "slower".
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

use common::served::{Listens, Served, Start};
use common::{stderr, stdout};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn powertune(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_powertune"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn target(delay: &str) -> Served {
    Served::start(Start {
        args: &["target", "--listen", "127.0.0.1:0", "--delay", delay],
        env: &[],
        listens: Listens::OnStdout,
        open_files: None,
    })
}

/// A 3 s login run against `addr`, its report written to `dir/name`.
fn run(addr: &str, dir: &Path, name: &str) -> PathBuf {
    let json = dir.join(name);
    let url = format!("http://{addr}/api/v1/auth/login");
    let o = powertune(&[
        "load",
        "--url",
        &url,
        "--method",
        "POST",
        "-H",
        "Content-Type: application/json",
        "--body",
        r#"{"email":"a@example.com","password":"demo"}"#,
        "--vus",
        "4",
        "--duration",
        "3s",
        "-q",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(json.exists(), "{}\n{}", stdout(&o), stderr(&o));
    json
}

fn latency(report: &Path, group: &str) -> serde_json::Value {
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap();
    r["metrics"]["latency_changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["group"] == group)
        .cloned()
        .unwrap_or_else(|| panic!("no {group} in {r}"))
}

#[test]
fn the_same_plan_twice_is_no_change_and_a_planted_slowdown_is_slower() {
    let dir = tempfile::tempdir().unwrap();
    let steady = target("50ms");
    let a1 = run(&steady.addr, dir.path(), "a1.json");
    let a2 = run(&steady.addr, dir.path(), "a2.json");
    let b1 = run(&steady.addr, dir.path(), "b1.json");
    let b2 = run(&steady.addr, dir.path(), "b2.json");
    drop(steady);
    let slow = target("75ms");
    let c1 = run(&slow.addr, dir.path(), "c1.json");
    drop(slow);
    let s = |p: &PathBuf| p.to_str().unwrap().to_string();

    // Same plan, same target: two runs per side, pooled.
    let same = dir.path().join("same.json");
    let o = powertune(&[
        "compare",
        "--before",
        &s(&a1),
        &s(&a2),
        "--after",
        &s(&b1),
        &s(&b2),
        "--json",
        &s(&same),
    ]);
    let out = stdout(&o);
    println!("{out}");
    let all = latency(&same, "all requests");
    assert_eq!(all["verdict"], "no_significant_change", "{out}");
    assert_eq!(all["baseline_runs"], 2);
    assert!(
        all["words"]
            .as_str()
            .unwrap()
            .starts_with("no significant change: p95 "),
        "{all}"
    );
    assert!(out.contains("+ 1 more run"), "{out}");

    // The delay raised from 50 to 75 ms.
    let slower = dir.path().join("slower.json");
    let o = powertune(&["compare", &s(&a1), &s(&c1), "--json", &s(&slower)]);
    let out = stdout(&o);
    println!("{out}");
    let all = latency(&slower, "all requests");
    assert_eq!(all["verdict"], "slower", "{out}");
    let words = all["words"].as_str().unwrap();
    assert!(
        words.starts_with("slower: p95 +") && words.contains("significant (p"),
        "{words}"
    );
    assert!(
        out.contains("WARN") && out.contains("latency_vs_baseline"),
        "{out}"
    );
    // With 4 closed-model VUs the slowdown also costs a third of the throughput,
    // under the runbook's baseline × 0.8: that FAILs, and the exit code says so.
    assert!(out.contains("FAIL     throughput_vs_baseline"), "{out}");
    assert_eq!(o.status.code(), Some(99), "{}", stderr(&o));

    // One side only is refused on one line.
    let o = powertune(&["compare", "--before", &s(&a1)]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
}
