//! `powertune queues record`, `queues history` and `queues plan --history` as a user
//! runs them against real Redis: Ctrl-C leaves a valid file (exit 0), a foreign file
//! is refused with one line, the history's JSON and HTML carry its charts, and plan
//! reads the recorded arrival rates.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

use common::{one_line_error, stderr};
use powertune_test_support::redis_db::TestRedis;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_powertune");

fn powertune(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("REDIS_URL")
        .env_remove("DATABASE_URL")
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

/// Runs redis-cli against `url` with `args`.
fn cli(url: &str, args: &[&str]) {
    let o = Command::new("redis-cli")
        .args(["-u", url])
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "redis-cli {args:?}: {}", stderr(&o));
}

/// One Sidekiq queue `default` with `depth` jobs enqueued 5 s ago; stat:processed.
fn seed(url: &str, depth: u64, processed: u64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    cli(url, &["SADD", "queues", "default"]);
    cli(url, &["DEL", "queue:default"]);
    for i in 0..depth {
        let job = format!(
            r#"{{"class":"HardJob","queue":"default","jid":"j{i}","args":[],"enqueued_at":{}}}"#,
            now - 5.0
        );
        cli(url, &["RPUSH", "queue:default", &job]);
    }
    cli(url, &["SET", "stat:processed", &processed.to_string()]);
}

#[test]
fn ctrl_c_leaves_a_valid_file_and_history_charts_it() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = rt.block_on(TestRedis::reserve());
    seed(&db.url, 20, 100);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("q.history");
    let f = file.to_str().unwrap();
    let child = Command::new(BIN)
        .args([
            "queues",
            "record",
            "--url",
            &db.url,
            "--interval",
            "100ms",
            "--out",
            f,
        ])
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait on the file: at least three samples written.
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let n = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "zcat '{f}' 2>/dev/null | grep -c '\"kind\":\"sample\"'"
            ))
            .output()
            .unwrap();
        let n: u32 = String::from_utf8_lossy(&n.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        if n >= 3 {
            break;
        }
        assert!(Instant::now() < end, "no three samples within 20 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    seed(&db.url, 2, 180);
    std::thread::sleep(Duration::from_millis(400));
    let st = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("recording into a new history file"), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    assert!(err.contains("recorded "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // `zcat` reads it whole: the file is valid gzip, every line JSON.
    let z = Command::new("zcat").arg(f).output().unwrap();
    assert!(z.status.success());
    let text = String::from_utf8(z.stdout).unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["format"], "powertune-queues-history");
    for l in text.lines() {
        serde_json::from_str::<serde_json::Value>(l).unwrap();
    }

    let json = dir.path().join("h.json");
    let html = dir.path().join("h.html");
    let o = powertune(&[
        "queues",
        "history",
        f,
        "--json",
        json.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ]);
    assert!(matches!(o.status.code(), Some(0 | 99)), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("History of redis://"), "{stdout}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(r["command"], "queues history");
    let m = &r["metrics"];
    assert_eq!(m["queues"][0]["name"], "default");
    assert_eq!(m["queues"][0]["depth_peak"], 20);
    assert_eq!(m["totals"]["processed"], 80);
    let page = std::fs::read_to_string(&html).unwrap();
    for id in ["latency", "depth", "throughput", "failed", "retry"] {
        assert!(
            page.contains(&format!("\"id\":\"{id}\"")),
            "chart {id} missing"
        );
    }

    // plan reads the recorded rates (no --url).
    let pj = dir.path().join("p.json");
    let o = powertune(&[
        "queues",
        "plan",
        "--history",
        f,
        "--horizon",
        "10m",
        "--json",
        pj.to_str().unwrap(),
    ]);
    assert!(matches!(o.status.code(), Some(0 | 99)), "{}", stderr(&o));
    let p: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&pj).unwrap()).unwrap();
    let load = &p["metrics"]["load"];
    assert_eq!(load["source"], format!("history {f}"));
    assert!(load["processed_per_s"].as_f64().unwrap() > 0.0, "{load}");
    rt.block_on(db.release());
}

#[test]
fn foreign_and_corrupt_files_are_refused_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("notes.txt");
    std::fs::write(&foreign, "hello\n").unwrap();
    let url = format!("{}/1", powertune_test_support::redis_db::base_url());
    let f = foreign.to_str().unwrap();
    let e = one_line_error(&powertune(&["queues", "record", "--url", &url, "--out", f]));
    assert!(e.contains("not a powertune queue history"), "{e}");
    assert_eq!(
        std::fs::read_to_string(&foreign).unwrap(),
        "hello\n",
        "left untouched"
    );
    let e = one_line_error(&powertune(&["queues", "history", f]));
    assert!(e.contains("not a powertune queue history"), "{e}");
    let e = one_line_error(&powertune(&["queues", "plan", "--history", f]));
    assert!(e.contains("not a powertune queue history"), "{e}");
    let e = one_line_error(&powertune(&[
        "queues",
        "record",
        "--url",
        &url,
        "--out",
        f,
        "--max-bytes",
        "1KiB",
    ]));
    assert!(e.contains("--max-bytes"), "{e}");
    let missing = dir.path().join("none");
    let e = one_line_error(&powertune(&[
        "queues",
        "history",
        missing.to_str().unwrap(),
    ]));
    assert!(e.contains("none"), "{e}");
}

#[test]
fn plan_from_a_history_takes_run_times_from_an_apm_report() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = rt.block_on(TestRedis::reserve());
    // The real Sidekiq's data: a process running a LongRunningJob from `critical`.
    common::sidekiq6_fixture(&db.url);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("q.history");
    let f = file.to_str().unwrap();
    for _ in 0..3 {
        cli(&db.url, &["INCRBY", "stat:processed", "20"]);
        let o = powertune(&[
            "queues",
            "record",
            "--url",
            &db.url,
            "--samples",
            "1",
            "--out",
            f,
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        std::thread::sleep(Duration::from_millis(300));
    }
    let apm = dir.path().join("apm.json");
    std::fs::write(
        &apm,
        r#"{"schema":"powertune.report.v2","command":"apm report","metrics":{"jobs":[
            {"class":"LongRunningJob","count":40,"avg_ms":1500.0},
            {"class":"NeverSeenJob","count":5,"avg_ms":10.0}]}}"#,
    )
    .unwrap();
    let o = powertune(&[
        "queues",
        "plan",
        "--history",
        f,
        "--apm",
        apm.to_str().unwrap(),
        "--horizon",
        "10m",
        "--json",
        "-",
    ]);
    assert!(matches!(o.status.code(), Some(0 | 99)), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let qs = r["metrics"]["load"]["queues"].as_array().unwrap();
    let critical = qs.iter().find(|q| q["name"] == "critical").unwrap();
    assert_eq!(critical["service_from"], "apm", "{critical}");
    assert_eq!(critical["service_s"], 1.5);
    let o = powertune(&[
        "queues",
        "plan",
        "--history",
        f,
        "--apm",
        apm.to_str().unwrap(),
        "--horizon",
        "10m",
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("Run times from the APM report: critical 1.5"),
        "{text}"
    );
    assert!(text.contains("NeverSeenJob"), "{text}");
    // A report of another command is refused with one line.
    std::fs::write(&apm, r#"{"command":"db","metrics":{}}"#).unwrap();
    let e = one_line_error(&powertune(&[
        "queues",
        "plan",
        "--history",
        f,
        "--apm",
        apm.to_str().unwrap(),
    ]));
    assert!(e.contains("`db` report"), "{e}");
    rt.block_on(db.release());
}
