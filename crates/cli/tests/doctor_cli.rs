//! `powertune doctor` as a user runs it: `[systems]` from powertune.toml with
//! `${VAR}` secrets, flag and environment overrides, exit codes (0 nothing observed,
//! 99 a symptom observed or nothing measured, 1 bad input with one line naming the
//! file, line and column), the JSON report and its schema, the HTML page.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

use common::{one_line_error, stdout};
use powertune_test_support::redis_db::TestRedis;
use std::process::{Command, Output};

fn powertune(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_powertune"));
    c.args(args).env("NO_COLOR", "1");
    for k in [
        "POWERTUNE_DB",
        "POWERTUNE_REDIS",
        "POWERTUNE_QUEUES",
        "POWERTUNE_GATEWAY",
    ] {
        c.env_remove(k);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// Makes the Redis database at `url` a Sidekiq one: processed jobs, an empty retry set.
fn sidekiq_db(url: &str) {
    let rest = url.strip_prefix("redis://").unwrap();
    let (hostport, n) = rest.split_once('/').unwrap();
    let (host, port) = hostport.rsplit_once(':').unwrap();
    let st = Command::new("redis-cli")
        .args([
            "-h",
            host,
            "-p",
            port,
            "-n",
            n,
            "SET",
            "stat:processed",
            "100",
        ])
        .output()
        .unwrap();
    assert!(st.status.success());
}

#[test]
fn a_bad_systems_value_is_one_line_naming_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("powertune.toml");
    std::fs::write(
        &file,
        "[systems]\nredis = \"redis://127.0.0.1:1/0\"\ndb = \"mysql://u:hunter22@db/app\"\n",
    )
    .unwrap();
    let f = file.display().to_string();
    let o = powertune(&["doctor", "--targets", &f], &[]);
    let e = one_line_error(&o);
    assert!(
        e.contains(&format!("{f}:3:1: systems.db: must be a postgres:// URL")),
        "{e}"
    );
    assert!(!e.contains("hunter22"), "{e}");

    std::fs::write(
        &file,
        "[systems]\ndb = \"postgres://u:${DOCTOR_TEST_UNSET_PW}@db/app\"\n",
    )
    .unwrap();
    let o = powertune(&["doctor", "--targets", &f], &[]);
    let e = one_line_error(&o);
    assert!(
        e.contains("systems.db: environment variable DOCTOR_TEST_UNSET_PW is not set"),
        "{e}"
    );

    let o = powertune(&["doctor", "--redis", "http://nope"], &[]);
    let e = one_line_error(&o);
    assert!(e.contains("--redis") && e.contains("redis://"), "{e}");
    let o = powertune(&["doctor", "--window", "1m", "--timeout", "30s"], &[]);
    let e = one_line_error(&o);
    assert!(e.contains("--window"), "{e}");
}

#[test]
fn nothing_configured_measures_nothing_and_does_not_pass() {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_powertune"))
        .args(["doctor", "--window", "1s", "--timeout", "5s"])
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .env_remove("POWERTUNE_REDIS")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(99), "{}", stdout(&o));
    let out = stdout(&o);
    assert!(out.contains("queues    "), "{out}");
    assert!(out.contains("not configured — not checked"), "{out}");
    assert!(out.contains("nothing measured"), "{out}");
}

#[tokio::test]
async fn systems_from_the_file_with_a_secret_and_an_environment_override() {
    let db = TestRedis::reserve().await;
    // a Sidekiq database: processed jobs, an empty retry set
    sidekiq_db(&db.url);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("powertune.toml");
    // the password is read from the environment and never shown
    std::fs::write(
        &file,
        "[systems]\nqueues = \"redis://:${DOCTOR_TEST_PW}@127.0.0.1:1/0\"\n",
    )
    .unwrap();
    let f = file.display().to_string();
    let json = dir.path().join("doctor.json");
    let html = dir.path().join("doctor.html");
    let (j, h) = (json.display().to_string(), html.display().to_string());
    // POWERTUNE_QUEUES overrides the file: the queues row is measured on the test Redis
    let o = powertune(
        &[
            "doctor",
            "--targets",
            &f,
            "--window",
            "1s",
            "--timeout",
            "10s",
            "--json",
            &j,
            "--html",
            &h,
        ],
        &[
            ("DOCTOR_TEST_PW", "s3cret-pw-0042"),
            ("POWERTUNE_QUEUES", &db.url),
        ],
    );
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains("Sidekiq retry set growing — not observed"),
        "{out}"
    );
    assert!(!out.contains("s3cret-pw-0042"));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["command"], "doctor");
    let rows = report["metrics"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 6);
    let retry = rows.iter().find(|r| r["id"] == "retry_set").unwrap();
    assert_eq!(retry["symptom"]["status"], "ruled_out");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("Troubleshooting, row by row"));

    // the targets listing shows the systems in force, masked, with their source
    let o = powertune(
        &["targets", "--targets", &f, "--json"],
        &[("DOCTOR_TEST_PW", "s3cret-pw-0042")],
    );
    let listing = stdout(&o);
    assert!(listing.contains("systems.queues"), "{listing}");
    assert!(!listing.contains("s3cret-pw-0042"), "{listing}");
    db.release().await;
}

#[tokio::test]
async fn baseline_save_then_verify_into_a_journal() {
    let db = TestRedis::reserve().await;
    sidekiq_db(&db.url);
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("before");
    let journal = dir.path().join("runs.jsonl");
    let (b, j) = (base.display().to_string(), journal.display().to_string());
    let o = powertune(
        &[
            "baseline", "save", &b, "--queues", &db.url, "--window", "1s",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", common::stderr(&o));
    assert!(stdout(&o).contains("saved queues.json"), "{}", stdout(&o));
    let o = powertune(
        &[
            "verify",
            "--baseline",
            &b,
            "--window",
            "1s",
            "--queues",
            &db.url,
            "--journal",
            &j,
            "--note",
            "rolled back worker weights",
            "--category",
            "rollback",
        ],
        &[],
    );
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("PASS retry_set"), "{out}");
    let o = powertune(&["journal", &j], &[]);
    let listing = stdout(&o);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        listing.contains("rolled back worker weights") && listing.contains("rollback"),
        "{listing}"
    );
    // a bad category is one line, before anything runs
    let o = powertune(
        &[
            "verify",
            "--baseline",
            &b,
            "--journal",
            &j,
            "--category",
            "oops",
        ],
        &[],
    );
    let e = one_line_error(&o);
    assert!(e.contains("--category oops"), "{e}");
    db.release().await;
}
