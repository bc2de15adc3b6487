//! The HTML pages of the inspectors (`apm`, `queues`, `db`, `redis`), opened in
//! headless Chromium: no console errors, no exceptions, no requests, the verdict, and
//! the tables and charts each command's metrics support. Screenshots go to
//! target/browser-tests/<cmd>.png.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

use common::stderr;
use powertune_test_support::pg::TestDb;
use powertune_test_support::redis_db::TestRedis;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn powertune(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_powertune"))
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("GITHUB_STEP_SUMMARY")
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .output()
        .unwrap()
}

fn shots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/browser-tests");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn traces() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../apm/tests/fixtures/powernode.jsonl")
        .display()
        .to_string()
}

/// What the probe reads from a page: its table titles, chart ids, drawn canvases,
/// and every table's cells by title.
const PROBE: &str = r#"(() => {
  const tables = {};
  for (const s of document.querySelectorAll('section.table')) {
    const title = s.querySelector('h2').textContent;
    tables[title] = [...s.querySelectorAll('tr')].map(r => [...r.children].map(c => c.textContent));
  }
  return {
    tables,
    charts: [...document.querySelectorAll('[data-chart]')].map(c => c.dataset.chart),
    canvases: document.querySelectorAll('#charts canvas').length,
    verdict: (document.querySelector('#verdict') || {}).textContent || '',
  };
})()"#;

/// Opens `html` in Chromium, checks it is clean, and returns the probe.
async fn open_clean(html: &Path, shot: &str) -> Value {
    let opened = powertune_test_support::browser::open(html, PROBE, &shots().join(shot))
        .await
        .unwrap();
    assert!(opened.console.is_empty(), "{:?}", opened.console);
    assert!(opened.exceptions.is_empty(), "{:?}", opened.exceptions);
    assert!(opened.requests.is_empty(), "{:?}", opened.requests);
    opened.probe
}

/// The table whose title starts with `title`.
fn table<'a>(probe: &'a Value, title: &str) -> &'a Vec<Value> {
    let tables = probe["tables"].as_object().unwrap();
    tables
        .iter()
        .find(|(k, _)| k.starts_with(title))
        .unwrap_or_else(|| panic!("no table {title:?} in {:?}", tables.keys()))
        .1
        .as_array()
        .unwrap()
}

fn cell(row: &Value, i: usize) -> &str {
    row[i].as_str().unwrap()
}

fn charts(probe: &Value) -> Vec<&str> {
    probe["charts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apm_analyze_page_has_routes_against_targets() {
    let dir = shots();
    let html = dir.join("apm-analyze.html");
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("apm.json");
    let o = powertune(&[
        "apm",
        "analyze",
        &traces(),
        "--html",
        html.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(99), "{}", stderr(&o));
    let probe = open_clean(&html, "apm-analyze.png").await;
    assert!(
        probe["verdict"].as_str().unwrap().starts_with("FAIL"),
        "{probe}"
    );
    assert_eq!(charts(&probe), vec!["route-p95"]);
    assert_eq!(probe["canvases"], 1, "{probe}");
    // The worst route against its target first: the dashboard, 1.25s against < 500ms.
    let routes = table(&probe, "Routes");
    assert_eq!(routes.len(), 4, "{routes:?}");
    assert_eq!(cell(&routes[0], 5), "P95");
    assert_eq!(cell(&routes[1], 1), "GET /api/v1/ai/monitoring/dashboard");
    assert_eq!(cell(&routes[1], 2), "analytics");
    assert_eq!(cell(&routes[1], 5), "1.25s");
    assert_eq!(cell(&routes[1], 6), "< 500ms");
    assert_eq!(cell(&routes[1], 7), "251%");
    assert_eq!(cell(&routes[1], 8), "FAIL");
    assert_eq!(cell(&routes[1], 10), "0%");
    assert_eq!(table(&probe, "Endpoint types").len(), 4);
    let jobs = table(&probe, "Jobs");
    assert_eq!(cell(&jobs[1], 0), "Ai::MissionJob");
    assert_eq!(cell(&jobs[1], 6), "25%");
    assert!(table(&probe, "Detections").len() > 1);
    assert_eq!(cell(&table(&probe, "LLM providers")[1], 0), "openai/gpt-4o");

    // The saved report draws the same page.
    let again = tmp.path().join("again.html");
    let o = powertune(&[
        "report",
        json.to_str().unwrap(),
        "--html",
        again.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(99), "{}", stderr(&o));
    let a = std::fs::read_to_string(&html).unwrap();
    let b = std::fs::read_to_string(&again).unwrap();
    let body = |s: &str| s.split("id=\"findings\"").next().unwrap().to_string();
    assert_eq!(body(&a), body(&b));
}

/// Reports written before a metric existed (or by a newer version without it) still
/// render: every page tolerates missing and mistyped keys.
#[test]
fn pages_of_reports_with_missing_metrics_still_render() {
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("apm.json");
    let o = powertune(&[
        "apm",
        "analyze",
        &traces(),
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(99), "{}", stderr(&o));
    let full: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let commands = [
        "apm analyze",
        "apm endpoint",
        "db",
        "db explain",
        "redis",
        "redis keys",
        "queues",
        "gateway status",
    ];
    let metrics = [
        serde_json::json!({}),
        serde_json::json!(null),
        serde_json::json!({"routes": [{"route": "GET /x"}], "route": 3, "slowest": [{}],
            "sidekiq": {"queues": [{"name": 1}], "days": [{"date": "not a date"}], "retry": {"top_classes": [[1]] , "depth": {"x": 1}}},
            "watch": {"rows": [{}]}, "info": {"keyspace": [{}]}, "slowlog": {"entries": [{"args": [1]}]},
            "scan": {"prefixes": {"a": {}}, "cache_types": {"b": {"keys": 1}}, "top": [{}]},
            "pg_stat_statements": {"state": "available", "statements": [{"query": null}]},
            "connections": {}, "plan": [{"Plan": {"Node Type": "Seq Scan"}}], "flags": [{}],
            "providers": [{"latency_ms": {}}], "credentials": [{}], "series": [{}], "retries_by_depth": ["x"]}),
    ];
    for command in commands {
        for m in &metrics {
            let mut r = full.clone();
            r["command"] = command.into();
            r["metrics"] = m.clone();
            let path = tmp.path().join("r.json");
            std::fs::write(&path, serde_json::to_vec(&r).unwrap()).unwrap();
            let html = tmp.path().join("r.html");
            let o = powertune(&[
                "report",
                path.to_str().unwrap(),
                "--html",
                html.to_str().unwrap(),
            ]);
            assert_eq!(o.status.code(), Some(99), "{command} {m}: {}", stderr(&o));
            let page = std::fs::read_to_string(&html).unwrap();
            assert!(page.contains("id=\"verdict\""), "{command} {m}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_page_has_queues_processes_days_and_the_watch() {
    let db = TestRedis::reserve().await;
    common::sidekiq6_fixture(&db.url);
    // Six earlier days of Sidekiq's daily stats (the fixture writes today's).
    let rest = db.url.strip_prefix("redis://").unwrap();
    let (hostport, n) = rest.split_once('/').unwrap();
    let (host, port) = hostport.rsplit_once(':').unwrap();
    let today = chrono::Utc::now().date_naive();
    for back in 1..=6u64 {
        let day = (today - chrono::Days::new(back)).format("%Y-%m-%d");
        let o = Command::new("redis-cli")
            .args(["-h", host, "-p", port, "-n", n, "MSET"])
            .args([
                format!("stat:processed:{day}"),
                (100 + 20 * back).to_string(),
                format!("stat:failed:{day}"),
                back.to_string(),
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
    }
    let html = shots().join("queues.html");
    let o = powertune(&[
        "queues",
        "--url",
        &db.url,
        "--watch",
        "200ms",
        "--ticks",
        "2",
        "--html",
        html.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(99), "{}", stderr(&o));
    db.release().await;
    let probe = open_clean(&html, "queues.png").await;
    assert!(
        probe["verdict"].as_str().unwrap().starts_with("FAIL"),
        "{probe}"
    );
    let queues = table(&probe, "Queues");
    assert_eq!(
        queues[0],
        serde_json::json!(["queue", "depth", "latency", "oldest job", "served by"])
    );
    // The fixture's one process reads critical, standard and low; bulk and slow are
    // served by nobody.
    let served: Vec<(&str, &str)> = queues[1..]
        .iter()
        .map(|r| (cell(r, 0), cell(r, 4)))
        .collect();
    for (q, by) in &served {
        match *q {
            "bulk" | "slow" => assert_eq!(*by, "no process", "{served:?}"),
            _ => assert_ne!(*by, "no process", "{served:?}"),
        }
    }
    assert_eq!(served.len(), 5, "{served:?}");
    assert!(table(&probe, "Over the watch").len() > 1);
    assert!(table(&probe, "Processes").len() == 2);
    let totals = table(&probe, "Retries, dead jobs");
    assert!(
        totals
            .iter()
            .any(|r| cell(r, 0) == "processed (all time)" && cell(r, 1) == "200"),
        "{totals:?}"
    );
    assert_eq!(charts(&probe), vec!["days"]);
    assert_eq!(probe["canvases"], 1, "{probe}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_page_has_slowest_statements_and_connections() {
    let db = TestDb::create("pt_page_db").await;
    let c = db.client().await;
    c.batch_execute("CREATE EXTENSION pg_stat_statements")
        .await
        .unwrap();
    c.batch_execute(
        "SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database WHERE datname = current_database()), 0)",
    )
    .await
    .unwrap();
    c.batch_execute("SELECT pg_sleep(0.6)").await.unwrap();
    let html = shots().join("db.html");
    let o = powertune(&["db", "--url", &db.url, "--html", html.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(99), "{}", stderr(&o));

    c.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY, v int); \
         INSERT INTO t SELECT i, i % 10 FROM generate_series(1, 20000) i; ANALYZE t;",
    )
    .await
    .unwrap();
    let explain = shots().join("db-explain.html");
    let o = powertune(&[
        "db",
        "explain",
        "--url",
        &db.url,
        "SELECT v, count(*) FROM t WHERE v > 2 GROUP BY v ORDER BY 2",
        "--html",
        explain.to_str().unwrap(),
    ]);
    assert!(matches!(o.status.code(), Some(0 | 99)), "{}", stderr(&o));
    drop(c);
    db.drop_now().await;

    let probe = open_clean(&html, "db.png").await;
    assert!(
        probe["verdict"].as_str().unwrap().starts_with("FAIL"),
        "{probe}"
    );
    let slow = table(&probe, "Slowest statements by mean time");
    assert!(cell(&slow[1], 1).contains("pg_sleep"), "{slow:?}");
    let conns = table(&probe, "Connections");
    assert!(
        conns.iter().any(|r| cell(r, 0) == "max_connections"),
        "{conns:?}"
    );
    assert_eq!(charts(&probe), vec!["statement-mean"]);
    assert_eq!(probe["canvases"], 1, "{probe}");

    let probe = open_clean(&explain, "db-explain.png").await;
    let plan = table(&probe, "Plan: the top");
    assert_eq!(cell(&plan[0], 2), "operation");
    let ops: Vec<&str> = plan[1..].iter().map(|r| cell(r, 2)).collect();
    assert!(ops.iter().any(|o| o.contains("Seq Scan")), "{ops:?}");
    assert!(ops.iter().any(|o| o.contains("Sort")), "{ops:?}");
    assert!(table(&probe, "Plan flags").len() > 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_page_has_memory_slowlog_and_keys() {
    let db = TestRedis::reserve().await;
    // 30 session cache keys of growing size and one big key, in one call.
    let rest = db.url.strip_prefix("redis://").unwrap();
    let (hostport, n) = rest.split_once('/').unwrap();
    let (host, port) = hostport.rsplit_once(':').unwrap();
    let o = Command::new("redis-cli")
        .args(["-h", host, "-p", port, "-n", n, "EVAL"])
        .arg(
            "for i = 1, 30 do redis.call('SET', 'cache:user_session:' .. i, string.rep('v', 100 * i)) end \
             redis.call('SET', 'big:blob', string.rep('x', 200000)) return 1",
        )
        .arg("0")
        .output()
        .unwrap();
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "1",
        "{o:?}"
    );
    let html = shots().join("redis-keys.html");
    let o = powertune(&[
        "redis",
        "keys",
        "--url",
        &db.url,
        "--html",
        html.to_str().unwrap(),
    ]);
    assert!(matches!(o.status.code(), Some(0 | 99)), "{}", stderr(&o));
    let info = shots().join("redis.html");
    let o = powertune(&["redis", "--url", &db.url, "--html", info.to_str().unwrap()]);
    assert!(matches!(o.status.code(), Some(0 | 99)), "{}", stderr(&o));
    db.release().await;

    let probe = open_clean(&html, "redis-keys.png").await;
    let top = table(&probe, "Biggest keys");
    assert_eq!(cell(&top[1], 0), "big:blob", "{top:?}");
    let prefixes = table(&probe, "Memory by key prefix");
    assert!(
        prefixes.iter().any(|r| cell(r, 0).starts_with("cache")),
        "{prefixes:?}"
    );
    let types = table(&probe, "Cache types");
    assert_eq!(cell(&types[1], 0), "user_session", "{types:?}");
    assert_eq!(cell(&types[1], 1), "30", "{types:?}");

    let probe = open_clean(&info, "redis.png").await;
    let memory = table(&probe, "Memory, hit rate and evictions");
    for want in [
        "used memory",
        "maxmemory-policy",
        "hit rate",
        "evicted keys",
    ] {
        assert!(
            memory.iter().any(|r| cell(r, 0) == want),
            "{want}: {memory:?}"
        );
    }
}

/// A running `powertune gateway`, killed on drop.
struct Gateway {
    child: std::process::Child,
    url: String,
    _stderr: std::io::BufReader<std::process::ChildStderr>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn gateway(config: &Path) -> Gateway {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_powertune"))
        .args(["gateway", "--config"])
        .arg(config)
        .args(["--listen", "127.0.0.1:0"])
        .env("GW_TEST_KEY", "sk-page-test")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let url = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "no listening line"
        );
        if line.contains("listening on") {
            break line
                .split_whitespace()
                .find(|w| w.starts_with("http://"))
                .unwrap()
                .to_string();
        }
    };
    Gateway {
        child,
        url,
        _stderr: stderr,
    }
}

/// One chat completion through the gateway; returns the HTTP status.
fn chat(url: &str) -> u16 {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let body = r#"{"model":"fast","messages":[{"role":"user","content":"hi"}]}"#;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        s,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    raw.split(' ').nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_status_page_has_providers_against_baseline_and_breakers() {
    use powertune_provider_sim::{ProviderSim, Script};
    const HELLO: &str = "Hello from the fake provider";
    let fake = ProviderSim::instant(Script::text(HELLO)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gateway.toml");
    std::fs::write(
        &cfg,
        format!(
            "[retry]\nmax_retries = 0\n[[providers]]\nname = \"openai\"\nkind = \"openai\"\nbase_url = \"{}/v1\"\n  [[providers.credentials]]\n  name = \"primary\"\n  api_key_env = \"GW_TEST_KEY\"\n[models.fast]\ntargets = [\"openai:gpt-4o-mini\"]\n[routes]\nlatency = [\"fast\"]\n",
            fake.url()
        ),
    )
    .unwrap();
    let gw = gateway(&cfg);
    let url = gw.url.clone();
    assert_eq!(
        tokio::task::spawn_blocking(move || chat(&url))
            .await
            .unwrap(),
        200
    );
    let base = dir.path().join("baseline.json");
    let o = powertune(&[
        "gateway",
        "status",
        "--url",
        &gw.url,
        "--save-baseline",
        base.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // Five failures open the breaker.
    fake.set_script(Script::status(500)).unwrap();
    let url = gw.url.clone();
    let codes = tokio::task::spawn_blocking(move || (0..5).map(|_| chat(&url)).collect::<Vec<_>>())
        .await
        .unwrap();
    assert_eq!(codes, [502; 5]);
    let html = shots().join("gateway-status.html");
    let o = powertune(&[
        "gateway",
        "status",
        "--url",
        &gw.url,
        "--baseline",
        base.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ]);
    assert!(matches!(o.status.code(), Some(0 | 99)), "{}", stderr(&o));
    drop(gw);
    let probe = open_clean(&html, "gateway-status.png").await;
    assert!(
        probe["verdict"].as_str().unwrap().starts_with("WARN"),
        "{probe}"
    );
    let providers = table(&probe, "Providers");
    assert_eq!(cell(&providers[1], 1), "openai", "{providers:?}");
    assert_ne!(cell(&providers[1], 6), "no baseline", "{providers:?}");
    let creds = table(&probe, "Credentials");
    assert_eq!(cell(&creds[1], 1), "primary", "{creds:?}");
    assert_eq!(cell(&creds[1], 2), "open", "{creds:?}");
    assert_ne!(cell(&creds[1], 3), "-", "open until: {creds:?}");
    // One provider: the table, no one-point chart.
    assert!(charts(&probe).is_empty(), "{probe}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(!page.contains("sk-page-test"));
}

/// A running `powertune apm serve`, killed on drop.
struct Receiver(std::process::Child);

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn post_traces(addr: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        s,
        "POST /v1/traces HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apm_endpoint_page_has_the_breakdown_and_slowest_traces() {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_powertune"))
        .args(["apm", "serve", "--listen", "127.0.0.1:0"])
        .current_dir(std::env::temp_dir())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Kept open until the end, so the receiver's log lines never hit a closed pipe.
    let mut log = std::io::BufReader::new(child.stderr.take().unwrap());
    let receiver = Receiver(child);
    let mut first = String::new();
    log.read_line(&mut first).unwrap();
    let addr = first
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("no address in: {first}"))
        .to_string();
    let url = format!("http://{addr}");
    for line in std::fs::read_to_string(traces()).unwrap().lines() {
        assert!(post_traces(&addr, line).starts_with("HTTP/1.1 200"));
    }
    // The receiver analyzes traces once they are complete: wait for the route.
    let html = shots().join("apm-endpoint.html");
    let route = "GET /api/v1/ai/monitoring/dashboard";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let o = powertune(&[
            "apm",
            "endpoint",
            route,
            "--url",
            &url,
            "--html",
            html.to_str().unwrap(),
        ]);
        if o.status.code() == Some(99) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", stderr(&o));
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    drop(receiver);
    drop(log);
    let probe = open_clean(&html, "apm-endpoint.png").await;
    assert!(
        probe["verdict"].as_str().unwrap().starts_with("FAIL"),
        "{probe}"
    );
    let r = table(&probe, "Route");
    assert_eq!(cell(&r[1], 0), route);
    assert_eq!(cell(&r[1], 5), "< 500ms");
    let b = table(&probe, "Breakdown");
    let parts: Vec<(&str, &str)> = b[1..].iter().map(|r| (cell(r, 0), cell(r, 2))).collect();
    assert_eq!(
        parts,
        [
            ("database", "33.6%"),
            ("outgoing HTTP", "48%"),
            ("application code", "18.4%")
        ]
    );
    assert!(table(&probe, "Slowest traces").len() > 1);
    assert!(table(&probe, "Slowest spans of trace").len() > 1);
    assert!(table(&probe, "Detections").len() > 1);
}
