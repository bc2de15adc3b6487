//! `powertune db` end to end: exit codes (0 pass, 99 a FAIL, 1 bad input or an
//! unreachable server, as one line without the password) against the test PostgreSQL.
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
use powertune_test_support::pg::TestDb;
use std::process::{Command, Output};

const SECRET: &str = "hunter2-secret";

fn powertune(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_powertune"))
        .args(args)
        .env_remove("DATABASE_URL")
        .env("NO_COLOR", "1")
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run powertune")
}

/// The one-line error promise (`common::one_line_error`); the line contains `needle`
/// and never the password.
fn assert_one_line_error(out: &Output, needle: &str) {
    let err = one_line_error(out);
    assert!(err.contains(needle), "{err}");
    assert!(
        !err.contains(SECRET) && !text(&out.stdout).contains(SECRET),
        "{err}"
    );
}

#[test]
fn unreachable_host_is_one_line_without_the_password() {
    let url = format!("postgres://app:{SECRET}@127.0.0.1:1/app");
    let out = powertune(&["db", "--url", &url, "--connect-timeout", "2s"]);
    assert_one_line_error(&out, "postgres://app:***@127.0.0.1:1/app");
}

#[test]
fn bad_url_is_one_line_without_the_password() {
    let url = format!("mysql://root:{SECRET}@db/app");
    assert_one_line_error(
        &powertune(&["db", "--url", &url]),
        "expected e.g. postgres://",
    );
    let url = format!("postgres://root:{SECRET}@db:notaport/app");
    assert_one_line_error(&powertune(&["db", "--url", &url]), "cannot be parsed");
    assert_one_line_error(&powertune(&["db"]), "--url is required");
}

#[test]
fn auth_failure_is_one_line_without_the_password() {
    let admin = powertune_test_support::pg::admin_url();
    let host = admin.split('@').nth(1).unwrap();
    let url = format!("postgres://no_such_role_pt:{SECRET}@{host}");
    assert_one_line_error(&powertune(&["db", "--url", &url]), "SQLSTATE 28000");
}

#[tokio::test]
async fn a_slow_statement_fails_with_99_and_json_says_so() {
    let db = TestDb::create("pt_cli_slow").await;
    let c = db.client().await;
    c.batch_execute("CREATE EXTENSION pg_stat_statements")
        .await
        .unwrap();
    // Forget this database's set-up statements (slow on a busy machine); other
    // databases' entries are left alone.
    c.batch_execute(
        "SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database WHERE datname = current_database()), 0)",
    )
    .await
    .unwrap();
    let ok = powertune(&["db", "--url", &db.url]);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}{}",
        text(&ok.stdout),
        text(&ok.stderr)
    );
    assert!(text(&ok.stdout).contains("slow_queries"));

    c.batch_execute("SELECT pg_sleep(0.6)").await.unwrap();
    let out = powertune(&["db", "--url", &db.url, "--pool-size", "30"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(99), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("FAIL     slow_query"), "{stdout}");
    assert!(stdout.contains("top statements by total time"), "{stdout}");

    let out = powertune(&["db", "--url", &db.url, "--json", "-"]);
    assert_eq!(out.status.code(), Some(99));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["command"], "db");
    assert_eq!(report["verdict"], "fail");
    assert_eq!(
        report["metrics"]["pg_stat_statements"]["state"],
        "available"
    );
    assert!(report["metrics"]["round_trips"].as_u64().unwrap() <= 10);
    db.drop_now().await;
}

#[tokio::test]
async fn explain_and_watch_end_to_end() {
    let db = TestDb::create("pt_cli_explain").await;
    db.client()
        .await
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t SELECT i, i FROM generate_series(1, 100) i; ANALYZE t;")
        .await
        .unwrap();
    let out = powertune(&[
        "db",
        "explain",
        "--url",
        &db.url,
        "SELECT * FROM t WHERE id = $1",
        "--param",
        "42",
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("Execution Time:"), "{stdout}");
    assert!(stdout.contains("plan_execution_time"), "{stdout}");

    // Two statements are refused before any connection (the host is unreachable).
    let out = powertune(&[
        "db",
        "explain",
        "--url",
        "postgres://a@127.0.0.1:1/x",
        "SELECT 1; DROP TABLE t",
    ]);
    assert_one_line_error(&out, "2 statements");

    let out = powertune(&[
        "db",
        "watch",
        "--url",
        &db.url,
        "--interval",
        "100ms",
        "--count",
        "2",
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert_eq!(
        stdout.lines().filter(|l| l.contains(" total ")).count(),
        2,
        "{stdout}"
    );
    db.drop_now().await;
}

#[test]
fn explain_a_saved_psql_plan_offline() {
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../db/tests/fixtures/sort_disk_psql.txt"
    );
    let out = powertune(&["db", "explain", "--plan", fixture, "--json", "-"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["command"], "db explain");
    let checks: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["check"].as_str().unwrap())
        .collect();
    assert!(checks.contains(&"plan_disk_sort"), "{checks:?}");
    assert_one_line_error(
        &powertune(&["db", "explain", "--plan", "/nonexistent/plan.json"]),
        "cannot read --plan /nonexistent/plan.json",
    );
}
