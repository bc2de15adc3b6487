//! `powertune monitor` as a service: doctor on an interval over a real Redis whose
//! retry set a test thread fills, `/metrics` (linted by `promtool check metrics`), one
//! webhook message per verdict change; and `powertune targets --prometheus-rules`
//! checked and unit-tested with promtool.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

use common::served::{Listens, Served, Start};
use common::stdout;
use powertune_test_support::redis_db::TestRedis;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `GET path` on `addr`; the body.
fn get(addr: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// A loopback server that keeps every POST body; its URL and the bodies.
fn webhook() -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    let got: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let g = got.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut s = s;
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let body = loop {
                let n = s.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        break Some(body[..len].to_string());
                    }
                }
            };
            if let Some(b) = body {
                g.lock().unwrap().push(serde_json::from_str(&b).unwrap());
            }
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    (url, got)
}

fn redis_cli(url: &str, args: &[&str]) {
    let rest = url.strip_prefix("redis://").unwrap();
    let (hostport, db) = rest.split_once('/').unwrap();
    let (host, port) = hostport.rsplit_once(':').unwrap();
    let st = Command::new("redis-cli")
        .args(["-h", host, "-p", port, "-n", db])
        .args(args)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
}

fn series(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn wait_for(within: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("not within {within:?}: {what}");
}

#[tokio::test(flavor = "multi_thread")]
async fn monitor_serves_metrics_and_posts_each_verdict_change_once() {
    let db = TestRedis::reserve().await;
    let (hook, posts) = webhook();
    // a failing job class fills the retry set until told to stop
    let feeding = Arc::new(AtomicBool::new(true));
    let (f, url) = (feeding.clone(), db.url.clone());
    let feeder = std::thread::spawn(move || {
        let mut i = 0;
        while f.load(Ordering::SeqCst) && i < 600 {
            let job = format!(
                "{{\"class\":\"MissionJob\",\"queue\":\"ai\",\"jid\":\"{i:024x}\",\"retry_count\":0,\"error_class\":\"Faraday::TimeoutError\"}}"
            );
            redis_cli(
                &url,
                &["ZADD", "retry", &format!("{}", 1_800_000_000 + i), &job],
            );
            i += 1;
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let mut m = Served::start(Start {
        args: &[
            "monitor",
            "--queues",
            &db.url,
            "--interval",
            "2s",
            "--timeout",
            "2s",
            "--window",
            "1s",
            "--listen",
            "127.0.0.1:0",
            "--webhook",
            &hook,
        ],
        env: &[("NO_COLOR", "1")],
        listens: Listens::OnStdout,
        open_files: None,
    });
    let row = "powertune_doctor_symptom{row=\"retry_set\"";
    let mut metrics = String::new();
    wait_for(
        Duration::from_secs(30),
        "the retry set growing on /metrics",
        || {
            metrics = get(&m.addr, "/metrics");
            series(&metrics, row) == Some(1.0)
        },
    );
    assert!(
        metrics.contains("powertune_system_up{system=\"queues\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("powertune_check_verdict{area=\"doctor\",check=\"retry_set\""),
        "{metrics}"
    );
    assert!(
        metrics.contains("powertune_monitor_runs_total"),
        "{metrics}"
    );
    // Prometheus conventions, as promtool lints them
    let mut lint = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    lint.stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = lint.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );

    // the set stops growing: the symptom goes away, and that change is posted once
    feeding.store(false, Ordering::SeqCst);
    feeder.join().unwrap();
    wait_for(
        Duration::from_secs(30),
        "the retry set steady on /metrics",
        || series(&get(&m.addr, "/metrics"), row) == Some(0.0),
    );
    // one more run with nothing changed: nothing more is posted
    let runs = |t: &str| series(t, "powertune_monitor_runs_total").unwrap_or(0.0);
    let now = runs(&get(&m.addr, "/metrics"));
    wait_for(Duration::from_secs(30), "another run", || {
        runs(&get(&m.addr, "/metrics")) >= now + 1.0
    });
    let got = posts.lock().unwrap().clone();
    let retry: Vec<&serde_json::Value> = got.iter().filter(|p| p["check"] == "retry_set").collect();
    assert_eq!(retry.len(), 2, "{got:#?}");
    assert_eq!(
        (retry[0]["from"].as_str(), retry[0]["to"].as_str()),
        (Some("new"), Some("fail"))
    );
    assert!(retry[0]["text"]
        .as_str()
        .unwrap()
        .contains("Sidekiq retry set growing"));
    // the symptom is gone; the failing class still fills the set: a warning
    assert_eq!(
        (retry[1]["from"].as_str(), retry[1]["to"].as_str()),
        (Some("fail"), Some("warn"))
    );
    m.signal("-TERM");
    assert_eq!(m.exit_within(Duration::from_secs(30)), Some(0));
    db.release().await;
}

#[test]
fn the_alerting_rules_pass_promtool_check_and_its_unit_tests() {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_powertune"))
        .args(["targets", "--prometheus-rules", "--interval", "30s"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, &o.stdout).unwrap();
    let check = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}{}",
        stdout(&check),
        String::from_utf8_lossy(&check.stderr)
    );
    let tests = dir.path().join("tests.yml");
    std::fs::write(
        &tests,
        r#"rule_files:
  - rules.yml
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'powertune_doctor_symptom{row="retry_set",symptom="Sidekiq retry set growing"}'
        values: '1x10'
      - series: 'powertune_doctor_symptom{row="memory",symptom="Backend OOM-kill (memory growing)"}'
        values: '0x10'
      - series: 'powertune_check_observed{area="redis",check="memory",subject="used_memory / maxmemory",unit="percent"}'
        values: '85x10'
      - series: 'powertune_check_observed{area="queues",check="queue_latency",subject="queue default",unit="seconds"}'
        values: '12x10'
      - series: 'powertune_monitor_last_run_timestamp_seconds'
        values: '0x10'
    alert_rule_test:
      - eval_time: 1m
        alertname: PowertuneSymptomObserved
        exp_alerts:
          - exp_labels:
              severity: critical
              row: retry_set
              symptom: Sidekiq retry set growing
            exp_annotations:
              summary: 'Sidekiq retry set growing (Troubleshooting row retry_set)'
              runbook_section: Troubleshooting
      - eval_time: 6m
        alertname: PowertuneRedisMemoryHigh
        exp_alerts:
          - exp_labels:
              severity: warning
              area: redis
              check: memory
              subject: used_memory / maxmemory
              unit: percent
            exp_annotations:
              summary: 'Redis used_memory above 80% of maxmemory'
              runbook_section: Redis Tuning
      - eval_time: 6m
        alertname: PowertuneQueueLatencyHigh
        exp_alerts: []
      - eval_time: 5m
        alertname: PowertuneMonitorStale
        exp_alerts:
          - exp_labels:
              severity: warning
            exp_annotations:
              summary: 'powertune monitor has not completed a run for three intervals'
              runbook_section: Verification
"#,
    )
    .unwrap();
    let t = Command::new("promtool")
        .args(["test", "rules"])
        .arg(&tests)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        t.status.success(),
        "{}{}",
        stdout(&t),
        String::from_utf8_lossy(&t.stderr)
    );
}
