//! `powertune load --trace --out otlp=URL` as a user runs it against the embedded
//! target: the slowest requests' trace ids in the JSON and the text, the OTLP
//! output's line after the run (a receiver that never answers: batches dropped and
//! counted, the run unharmed), and a bad OTLP URL refused with one line.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

use common::{one_line_error, stderr, stdout};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_names_the_slowest_and_otlp_reports_its_pushes() {
    let target = powertune_target::start(
        powertune_target::TargetConfig::default(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    // Accepts connections (the kernel's backlog) and never answers.
    let stalled = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.toml");
    std::fs::write(
        &plan,
        "[scenarios.health]\nendpoint_type = \"read_crud\"\nexecutor = \"constant-arrival-rate\"\nrate = 50\nduration = \"2s\"\npre_allocated_vus = 4\n[[scenarios.health.steps]]\nurl = \"/health\"\n",
    )
    .unwrap();
    let json = dir.path().join("run.json");
    let o = common::powertune_within(
        &[
            "load",
            plan.to_str().unwrap(),
            "--base-url",
            &target.base_url(),
            "--trace",
            "--out",
            &format!("otlp=http://{}", stalled.local_addr().unwrap()),
            "--out-interval",
            "200ms",
            "--json",
            json.to_str().unwrap(),
            "-q",
        ],
        60,
    )
    .await;
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{}\n{err}", stdout(&o));
    let line = err
        .lines()
        .find(|l| l.starts_with("powertune load: --out otlp: 0 pushed, "))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(line.contains("dropped (queue full)"), "{line}");
    assert!(!line.contains(" 0 dropped"), "{line}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let m = &v["metrics"];
    assert_eq!(m["http"]["reqs"], 100);
    let slowest = m["endpoint_types"][0]["http"]["slowest"]
        .as_array()
        .unwrap();
    assert_eq!(slowest.len(), 5);
    let ms: Vec<f64> = slowest
        .iter()
        .map(|s| s["duration_ms"].as_f64().unwrap())
        .collect();
    assert!(ms.windows(2).all(|w| w[0] >= w[1]), "{ms:?}");
    let max_raw = m["http"]["duration_raw"]["max"].as_f64().unwrap();
    assert!(
        (ms[0] - max_raw).abs() <= max_raw * 0.01 + 0.01,
        "{ms:?} vs {max_raw}"
    );
    let id = slowest[0]["trace_id"].as_str().unwrap();
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    // The text (standard output when --json names a file) names it too.
    let text = stdout(&o);
    let row = text
        .lines()
        .find(|l| l.contains(id))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        row.starts_with("Read-heavy CRUD") && row.contains("slowest: "),
        "{row}"
    );
}

#[tokio::test]
async fn a_bad_otlp_url_is_one_line() {
    let o = common::powertune_within(
        &[
            "load",
            "--url",
            "http://127.0.0.1:9/",
            "--out",
            "otlp=ftp://127.0.0.1/v1/metrics",
        ],
        30,
    )
    .await;
    let e = one_line_error(&o);
    assert!(
        e.contains("--out otlp: scheme ftp is not http or https"),
        "{e}"
    );
}
