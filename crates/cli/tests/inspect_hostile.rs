//! The inspectors (`db`, `db explain`, `redis`, `queues`, `targets`) given hostile
//! input as a user would: secrets in connection strings of every shape and in targets
//! files never reach stdout or stderr; values no command can use are one-line errors
//! naming FILE:LINE:COL and the key; no input makes them exit 101; `queues --watch
//! --json -` keeps standard output pure JSON, also when stopped by SIGINT.
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
use powertune_test_support::redis_db::TestRedis;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const SECRET: &str = "hunter2";

fn powertune_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_powertune"))
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env("NO_COLOR", "1")
        .current_dir(dir)
        .output()
        .unwrap()
}

fn powertune(args: &[&str]) -> Output {
    powertune_in(&std::env::temp_dir(), args)
}

fn assert_no_secret(o: &Output, what: &str) {
    let (out, err) = (stdout(o), stderr(o));
    assert!(
        !out.contains(SECRET) && !err.contains(SECRET),
        "{what}: secret shown: {out}{err}"
    );
    assert_ne!(o.status.code(), Some(101), "{what}: panicked: {err}");
    assert!(!err.contains("panicked"), "{what}: {err}");
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn passwords_in_any_connection_string_shape_are_never_shown() {
    let pg = [
        "host=127.0.0.1 port=1 password=hunter2",
        "host=127.0.0.1 port=1 password='hunter2' dbname=x",
        "host=127.0.0.1 port=1 password = 'hun ter2 hunter2'",
        "postgres//user:hunter2@127.0.0.1/db",
        "postgresql:/user:hunter2@127.0.0.1",
        "postgres://user:hunter2@127.0.0.1:1/db",
        "postgres://user@127.0.0.1:1/db?password=hunter2",
    ];
    for url in pg {
        let o = powertune(&["db", "--url", url, "--connect-timeout", "2s"]);
        one_line_error(&o);
        assert_no_secret(&o, url);
        let o = powertune(&["db", "explain", "--url", url, "SELECT 1"]);
        one_line_error(&o);
        assert_no_secret(&o, url);
        let o = powertune(&["db", "watch", "--url", url, "--count", "1"]);
        assert_no_secret(&o, url);
    }
    let redis = [
        "redis//:hunter2@127.0.0.1",
        "redis:/:hunter2@127.0.0.1",
        "redis//user:hunter2@127.0.0.1:1/0",
        "redis://:hunter2@127.0.0.1:1/0",
        "redis://u:hunter2@127.0.0.1:1/x",
        "rediss://:hunter2@127.0.0.1:1/0",
    ];
    for url in redis {
        for cmd in [&["redis", "--url", url][..], &["queues", "--url", url][..]] {
            let o = powertune(cmd);
            one_line_error(&o);
            assert_no_secret(&o, url);
        }
    }
}

#[test]
fn secrets_quoted_by_targets_file_errors_are_masked() {
    let dir = tempfile::tempdir().unwrap();
    let files = [
        "[cache.x]\nttl_s = \"redis://:hunter2@h\"\ncompress = true\npattern = \"x\"\n",
        "[worker.weights]\nbulk = \"postgres://u:hunter2@db/app\"\n",
        "[database]\nstuck_query_s = \"host=db password=hunter2\"\n",
        "[database]\npassword = \"hunter2\"\n",
        "password = hunter2\n",
        "[database]\nurl = \"postgres://u:hunter2@h/db\n",
    ];
    for (n, text) in files.iter().enumerate() {
        let name = format!("t{n}.toml");
        std::fs::write(dir.path().join(&name), text).unwrap();
        for cmd in [
            vec!["--targets", &name, "targets"],
            vec![
                "--targets",
                &name,
                "db",
                "--url",
                "postgres://a@127.0.0.1:1/x",
            ],
            vec![
                "--targets",
                &name,
                "queues",
                "--url",
                "redis://127.0.0.1:1/0",
            ],
        ] {
            let o = powertune_in(dir.path(), &cmd);
            let e = one_line_error(&o);
            assert!(e.starts_with(&format!("powertune: {name}:")), "{e}");
            assert_no_secret(&o, text);
        }
    }
}

#[test]
fn targets_values_no_command_can_use_are_refused_with_their_place() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[database]\nstuck_query_s = 1e20\n",
            "2:1: `database.stuck_query_s`",
        ),
        (
            "[database]\nstuck_query_s = -1\n",
            "2:1: `database.stuck_query_s`",
        ),
        (
            "[database]\nstuck_query_s = nan\n",
            "2:1: `database.stuck_query_s`",
        ),
        (
            "[database]\nstuck_query_s = 0\n",
            "2:1: `database.stuck_query_s`",
        ),
        (
            "[worker]\nheartbeat_stale_s = inf\n",
            "2:1: `worker.heartbeat_stale_s`",
        ),
        (
            "[worker]\ndrain_minutes = 1e300\n",
            "2:1: `worker.drain_minutes`",
        ),
        (
            "[worker]\nbacklog_enqueued = 0\n",
            "2:1: `worker.backlog_enqueued`",
        ),
        ("[worker.weights]\nbulk = 0\n", "2:1: `worker.weights.bulk`"),
        ("[redis]\nslowlog_ms = -5\n", "2:1: `redis.slowlog_ms`"),
        (
            "[redis]\nlarge_key_bytes = 0\n",
            "2:1: `redis.large_key_bytes`",
        ),
    ];
    for (n, (text, place)) in cases.iter().enumerate() {
        let name = format!("b{n}.toml");
        std::fs::write(dir.path().join(&name), text).unwrap();
        for cmd in [
            vec!["--targets", &name, "targets"],
            vec![
                "--targets",
                &name,
                "db",
                "--url",
                "postgres://postgres@127.0.0.1:55432/postgres",
            ],
            vec![
                "--targets",
                &name,
                "queues",
                "--url",
                "redis://127.0.0.1:1/0",
            ],
            vec![
                "--targets",
                &name,
                "redis",
                "--url",
                "redis://127.0.0.1:1/0",
            ],
        ] {
            let o = powertune_in(dir.path(), &cmd);
            let e = one_line_error(&o);
            assert!(
                e.starts_with(&format!("powertune: {name}:{place}: ")),
                "{text:?}: {e}"
            );
        }
    }
}

#[test]
fn endless_files_are_refused_not_read_forever() {
    let o = powertune(&["--targets", "/dev/zero", "targets"]);
    let e = one_line_error(&o);
    assert!(e.contains("/dev/zero") && e.contains("larger than"), "{e}");
    let o = powertune(&["db", "explain", "--plan", "/dev/zero"]);
    let e = one_line_error(&o);
    assert!(e.contains("--plan /dev/zero is larger than"), "{e}");
    let o = powertune(&["db", "explain", "--plan", "/nonexistent/plan.json"]);
    let e = one_line_error(&o);
    assert!(
        e.contains("cannot read --plan /nonexistent/plan.json"),
        "{e}"
    );
}

#[test]
fn numeric_options_out_of_range_are_one_line_errors() {
    let pg = "postgres://a@127.0.0.1:1/x";
    let redis = "redis://127.0.0.1:1/0";
    let cases: Vec<Vec<&str>> = vec![
        vec!["db", "--url", pg, "--stuck-after", "0s"],
        vec!["db", "--url", pg, "--stuck-after", "500000000y"],
        vec!["db", "--url", pg, "--idle-in-transaction-after", "0s"],
        vec!["db", "--url", pg, "--idle-in-transaction-after", "2d"],
        vec!["db", "--url", pg, "--pool-size", "0"],
        vec!["db", "--url", pg, "--top", "99999999999"],
        vec![
            "db",
            "explain",
            "--url",
            pg,
            "--timeout",
            "999999999y",
            "SELECT 1",
        ],
        vec!["db", "explain", "--url", pg, "--timeout", "2h", "SELECT 1"],
        vec!["db", "watch", "--url", pg, "--interval", "99999999999999y"],
        vec!["db", "watch", "--url", pg, "--interval", "500000000y"],
        vec!["db", "watch", "--url", pg, "--count", "0"],
        vec!["queues", "--url", redis, "--watch", "500000000y"],
        vec!["queues", "--url", redis, "--watch", "2h"],
        vec!["queues", "--url", redis, "--watch", "1ms"],
        vec!["queues", "--url", redis, "--days", "99999999999"],
        vec!["redis", "--url", redis, "--rate", "1e400/s"],
        vec![
            "redis",
            "--url",
            redis,
            "--sample",
            "99999999999999999999999",
        ],
    ];
    for args in cases {
        let o = powertune(&args);
        let e = one_line_error(&o);
        let flag = args
            .iter()
            .find(|a| a.starts_with("--") && **a != "--url")
            .unwrap();
        assert!(e.contains(flag), "{args:?}: {e}");
    }
}

#[test]
fn watch_with_json_on_stdout_keeps_it_pure_and_names_unserved_queues() {
    let rt = rt();
    let db = rt.block_on(TestRedis::reserve());
    common::sidekiq6_fixture(&db.url);
    let o = powertune(&[
        "queues", "--url", &db.url, "--watch", "100ms", "--ticks", "2", "--json", "-",
    ]);
    assert_eq!(o.status.code(), Some(99), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {}", stdout(&o)));
    assert_eq!(report["command"], "queues");
    assert_eq!(
        stderr(&o).matches("processed 0.0/s").count(),
        2,
        "{}",
        stderr(&o)
    );
    let unserved: Vec<&serde_json::Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == "unserved_queue")
        .collect();
    assert_eq!(unserved.len(), 2);
    assert_eq!(unserved[0]["subject"], "queue bulk");
    assert!(unserved[0]["action"]
        .as_str()
        .unwrap()
        .starts_with("No process serves queue `bulk`: add it to a process's queues"));
    for f in report["findings"].as_array().unwrap() {
        if f["subject"] == "queue bulk" {
            assert!(
                !f["action"]
                    .as_str()
                    .unwrap_or("")
                    .contains("WORKER_CONCURRENCY"),
                "{f}"
            );
        }
    }
    rt.block_on(db.release());
}

#[test]
fn sigint_ends_the_watch_and_the_report_is_still_printed() {
    use std::io::{BufRead, BufReader};
    let rt = rt();
    let db = rt.block_on(TestRedis::reserve());
    common::sidekiq6_fixture(&db.url);
    for signal in ["-INT", "-TERM"] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_powertune"))
            .args([
                "queues", "--url", &db.url, "--watch", "100ms", "--json", "-",
            ])
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Wait for the first tick line on stderr (bounded by the child: it ticks every
        // 100ms until told to stop).
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        for _ in 0..200 {
            line.clear();
            assert!(err.read_line(&mut line).unwrap() > 0, "stderr closed early");
            if line.starts_with("t+") {
                break;
            }
        }
        assert!(line.starts_with("t+"), "{line}");
        let sent = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(99), "{signal}: {rest}");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{signal}: stdout is not JSON ({e}): {}", stdout(&out)));
        assert_eq!(report["command"], "queues");
        assert!(report["metrics"]["watch"].is_object(), "{report}");
        assert!(rest.contains("interrupted"), "{rest}");
    }
    rt.block_on(db.release());
}
