//! `--journal FILE` on `load` and `capacity`: each run appends its verdict to the run
//! history `powertune journal FILE` lists, beside verify's; a bad --category is one
//! line before any load.
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
async fn load_and_capacity_runs_append_to_the_journal() {
    let target = powertune_target::start(
        powertune_target::TargetConfig::default(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("runs.jsonl");
    let j = journal.to_str().unwrap();
    let url = format!("{}/health", target.base_url());
    let o = common::powertune_within(
        &[
            "load",
            "--url",
            &url,
            "--vus",
            "2",
            "--duration",
            "1s",
            "-q",
            "--journal",
            j,
            "--note",
            "pool 25 → 40; key sk-abcdefghijklmnopqrstu",
            "--category",
            "improvement",
        ],
        60,
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}\n{}", stdout(&o), stderr(&o));
    // A failing threshold is journaled as the FAIL it is.
    let o = common::powertune_within(
        &[
            "load",
            "--url",
            &url,
            "--vus",
            "1",
            "--duration",
            "1s",
            "-q",
            "--threshold",
            "p(95)<0.001",
            "--journal",
            j,
        ],
        60,
    )
    .await;
    assert_eq!(o.status.code(), Some(99), "{}\n{}", stdout(&o), stderr(&o));
    let o = common::powertune_within(
        &[
            "capacity",
            "--demo",
            "--step",
            "1s",
            "--warmup",
            "0s",
            "--max-steps",
            "1",
            "-q",
            "--journal",
            j,
            "--category",
            "observation",
        ],
        120,
    )
    .await;
    assert!(
        matches!(o.status.code(), Some(0) | Some(99)),
        "{}\n{}",
        stdout(&o),
        stderr(&o)
    );
    let capacity_passed = o.status.code() == Some(0);

    let o = common::powertune_within(&["journal", j, "--json"], 30).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let commands: Vec<&str> = lines
        .iter()
        .map(|e| e["command"].as_str().unwrap())
        .collect();
    assert_eq!(commands, ["load", "load", "capacity"]);
    assert_eq!(lines[0]["verdict"], "pass");
    assert_eq!(lines[0]["category"], "improvement");
    let note = lines[0]["note"].as_str().unwrap();
    assert!(
        note.starts_with("pool 25 → 40") && !note.contains("sk-abcdefghijklmnopqrstu"),
        "{note}"
    );
    assert_eq!(lines[1]["verdict"], "fail");
    assert!(
        lines[1]["not_passing"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s.as_str().unwrap().contains("FAIL load/threshold")),
        "{}",
        lines[1]
    );
    assert_eq!(lines[2]["category"], "observation");
    assert_eq!(
        lines[2]["verdict"] == "fail",
        !capacity_passed,
        "{}",
        lines[2]
    );

    let o = common::powertune_within(&["journal", j], 30).await;
    let table = stdout(&o);
    assert!(
        table.lines().filter(|l| l.contains(" load ")).count() == 2,
        "{table}"
    );
    assert!(table.contains(" capacity "), "{table}");

    // Bad input is refused before any load.
    let o = common::powertune_within(
        &["load", "--url", &url, "--journal", j, "--category", "nope"],
        30,
    )
    .await;
    assert!(one_line_error(&o).contains("--category nope: must be one of"));
    let o = common::powertune_within(&["capacity", "--demo", "--note", "x"], 30).await;
    // --note needs --journal (clap names the missing argument on a line of its own).
    assert!(one_line_error(&o).contains("required arguments were not provided"));
    let o = common::powertune_within(&["journal", j], 30).await;
    assert_eq!(stdout(&o).lines().count(), 4, "{}", stdout(&o));
    target.shutdown().await;
}
