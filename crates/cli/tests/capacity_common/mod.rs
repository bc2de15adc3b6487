//! Helpers shared by the capacity CLI tests (`capacity_cli.rs`,
//! `capacity_collectors.rs`): reading a report's figures and writing plan files.
#![allow(dead_code)]

use serde_json::Value;
use std::path::Path;
use std::process::Command;

pub fn metrics(r: &Value) -> &Value {
    &r["metrics"]
}

pub fn knee_rate(r: &Value) -> Option<f64> {
    metrics(r)["knee_rate"].as_f64()
}

/// The knee, or (no knee before the rate limit) the highest rate sustained.
pub fn ceiling(r: &Value) -> f64 {
    knee_rate(r)
        .or_else(|| metrics(r)["headroom"]["max_sustainable"].as_f64())
        .unwrap()
}

/// The limiting resource's name and evidence.
pub fn limiter(r: &Value) -> (String, String) {
    let l = &metrics(r)["limiter"];
    (
        l["resource"].as_str().unwrap_or("").to_string(),
        l["evidence"].as_str().unwrap_or("").to_string(),
    )
}

/// Writes `text` to `dir/name`; returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

/// `powertune capacity ARGS --json DIR/NAME.json -q`: the report and the terminal text
/// (exit 0 or 99, no panic).
pub fn run(dir: &Path, name: &str, args: &[&str]) -> (Value, String) {
    let json = dir.join(format!("{name}.json"));
    let o = Command::new(env!("CARGO_BIN_EXE_powertune"))
        .arg("capacity")
        .args(args)
        .args(["--json", json.to_str().unwrap(), "-q"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        matches!(o.status.code(), Some(0) | Some(99)),
        "exit {:?}\n{out}\n{err}",
        o.status.code()
    );
    assert!(!err.contains("panicked"), "{err}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    (report, out)
}
