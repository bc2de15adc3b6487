//! `powertune redis` and `powertune queues` as a user runs them: exit codes (0 pass,
//! 99 FAIL, 1 bad input / unreachable) and one-line errors, against the real test Redis.
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
use std::process::{Command, Output};

fn powertune(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_powertune"))
        .args(args)
        .env_remove("REDIS_URL")
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

/// Runs redis-cli against `url` (redis://HOST:PORT/DB); `stdin` becomes the last
/// argument (`-x`), for values too big for a command line.
fn redis_cli_in(url: &str, args: &[&str], stdin: Option<&[u8]>) {
    use std::io::Write;
    let rest = url.strip_prefix("redis://").unwrap();
    let (hostport, db) = rest.split_once('/').unwrap();
    let (host, port) = hostport.rsplit_once(':').unwrap();
    let mut cmd = Command::new("redis-cli");
    cmd.args(["-h", host, "-p", port, "-n", db]);
    if stdin.is_some() {
        cmd.arg("-x");
    }
    let mut child = cmd
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("redis-cli (scripts/test.sh installs redis-server)");
    let mut input = child.stdin.take().unwrap();
    if let Some(data) = stdin {
        input.write_all(data).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn redis_cli(url: &str, args: &[&str]) {
    redis_cli_in(url, args, None)
}

/// The first finding of `check` in a JSON report.
fn finding<'a>(report: &'a serde_json::Value, check: &str) -> &'a serde_json::Value {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == check)
        .unwrap_or_else(|| panic!("no {check} finding: {report}"))
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn unreachable_server_bad_url_and_wrong_database_exit_1_with_one_line() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://:hunter2@127.0.0.1:{port}/0");
    for cmd in [
        vec!["redis", "--url", &url, "--timeout", "2s"],
        vec!["queues", "--url", &url, "--timeout", "2s"],
    ] {
        let e = one_line_error(&powertune(&cmd));
        assert!(
            e.contains("cannot connect to Redis") && e.contains(&port.to_string()),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "password leaked: {e}");
    }
    let e = one_line_error(&powertune(&[
        "redis",
        "--url",
        "redis://u:hunter2@127.0.0.1:6379/abc",
    ]));
    assert!(
        e.contains("not a number") && e.contains("example") && !e.contains("hunter2"),
        "{e}"
    );
    let e = one_line_error(&powertune(&["queues"]));
    assert!(e.contains("--url is required"), "{e}");
    let base = powertune_test_support::redis_db::base_url();
    let e = one_line_error(&powertune(&["queues", "--url", &format!("{base}/99")]));
    assert!(e.contains("database 99 does not exist"), "{e}");
    let e = one_line_error(&powertune(&[
        "redis",
        "keys",
        "--url",
        &format!("{base}/0"),
        "--rate",
        "0",
    ]));
    assert!(e.contains("--rate"), "{e}");
}

#[test]
fn queues_on_data_that_is_not_sidekiqs_exit_1() {
    let rt = rt();
    let db = rt.block_on(TestRedis::reserve());
    let e = one_line_error(&powertune(&["queues", "--url", &db.url]));
    assert!(e.contains("no Sidekiq data"), "{e}");
    redis_cli(&db.url, &["SET", "queues", "x"]);
    let e = one_line_error(&powertune(&["queues", "--url", &db.url]));
    assert!(e.contains("`queues` is a string"), "{e}");
    rt.block_on(db.release());
}

#[test]
fn queues_with_real_sidekiq_data_fails_on_the_failed_rate_and_watches() {
    let rt = rt();
    let db = rt.block_on(TestRedis::reserve());
    common::sidekiq6_fixture(&db.url);
    let o = powertune(&["queues", "--url", &db.url, "--json", "-"]);
    assert_eq!(o.status.code(), Some(99), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["command"], "queues");
    assert_eq!(report["verdict"], "fail");
    assert_eq!(report["metrics"]["sidekiq"]["processed"], 200);
    let fails: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["verdict"] == "fail")
        .map(|f| f["check"].as_str().unwrap())
        .collect();
    // The fixture's process polls critical, standard and low: bulk and slow are
    // served by nobody.
    assert_eq!(
        fails,
        vec!["unserved_queue", "unserved_queue", "failed_rate"]
    );
    let failed_rate = finding(&report, "failed_rate");
    assert_eq!(failed_rate["observed"]["value"], 2.5, "{failed_rate}");
    assert_eq!(failed_rate["observed"]["unit"], "percent", "{failed_rate}");
    assert_eq!(failed_rate["evidence"], "5 failed of 200 processed");

    let o = powertune(&[
        "queues", "--url", &db.url, "--watch", "200ms", "--ticks", "2",
    ]);
    assert_eq!(o.status.code(), Some(99), "{}", stderr(&o));
    let text = stdout(&o);
    assert_eq!(text.matches("processed 0.0/s").count(), 2, "{text}");
    assert!(
        text.contains("drain ETA") && text.contains("retry_trend"),
        "{text}"
    );
    rt.block_on(db.release());
}

#[test]
fn redis_checks_keys_and_baseline() {
    let rt = rt();
    let db = rt.block_on(TestRedis::reserve());
    for i in 0..20 {
        redis_cli(
            &db.url,
            &["SET", &format!("cache:user_session:{i}"), "v", "EX", "600"],
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let baseline = dir.path().join("redis-baseline.json");
    let b = baseline.to_str().unwrap();
    let o = powertune(&["redis", "--url", &db.url, "--save-baseline", b]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("SLOWLOG") && stdout(&o).contains("Scanned 20 of 20 keys"),
        "{}",
        stdout(&o)
    );
    assert!(stderr(&o).contains("baseline saved"));
    // The shared server's ops/s swing with other tests: judge against a baseline far
    // above them so this run passes, and check the saved file's shape.
    let mut saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&baseline).unwrap()).unwrap();
    assert_eq!(saved["schema"], "powertune.baseline/v1");
    assert_eq!(saved["kind"], "redis");
    saved["data"]["instantaneous_ops_per_sec"] = serde_json::json!(1e9);
    std::fs::write(&baseline, saved.to_string()).unwrap();
    let o = powertune(&[
        "redis",
        "--url",
        &db.url,
        "--baseline",
        b,
        "--no-scan",
        "--json",
        "-",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let ops = finding(&report, "ops_per_sec");
    assert_eq!(ops["target"]["unit"], "ratio", "{ops}");
    assert_eq!(ops["target"]["cmp"], "<", "{ops}");
    assert!(
        ops["target"]["note"].as_str().unwrap().contains("baseline"),
        "{ops}"
    );
    assert_eq!(ops["verdict"], "pass", "{ops}");
    std::fs::write(&baseline, "{\"schema\": 1}").unwrap();
    let e = one_line_error(&powertune(&["redis", "--url", &db.url, "--baseline", b]));
    assert!(e.contains("redis-baseline.json"), "{e}");

    // A 2 MB key: `redis keys` lists it and warns (exit 0: warnings pass).
    let big = vec![b'x'; 2 * 1024 * 1024];
    redis_cli_in(&db.url, &["SET", "blob:big"], Some(&big));
    let o = powertune(&[
        "redis", "keys", "--url", &db.url, "--top", "5", "--json", "-",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["metrics"]["scan"]["top"][0]["key"], "blob:big");
    let large: Vec<&serde_json::Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == "large_key")
        .collect();
    assert_eq!(large.len(), 1);
    assert_eq!(large[0]["verdict"], "warn");
    rt.block_on(db.release());
}
