//! `powertune gateway` and `powertune gateway status` as a user runs them: the real
//! binary, a fake provider on loopback, plain HTTP from the test.
// Test code: helpers outside #[test] functions may unwrap, panic and print (clippy.toml
// allows it only inside them).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

use powertune_provider_sim::{ProviderSim, Script, SimHandle};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// What the provider simulator answers in these tests.
const HELLO: &str = "Hello from the fake provider";

const BIN: &str = env!("CARGO_BIN_EXE_powertune");

struct Served {
    child: Child,
    url: String,
    // kept open so the gateway's stderr never hits a closed pipe
    _stderr: BufReader<std::process::ChildStderr>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `powertune gateway --config FILE --listen 127.0.0.1:0` and reads the bound
/// address from its "listening" line on stderr.
fn serve(config: &std::path::Path) -> Served {
    serve_noting(config).0
}

/// [`serve`], also returning the stderr lines written before the "listening" line.
fn serve_noting(config: &std::path::Path) -> (Served, Vec<String>) {
    let mut child = Command::new(BIN)
        .args(["gateway", "--config"])
        .arg(config)
        .args(["--listen", "127.0.0.1:0"])
        .env("GW_TEST_KEY", "sk-cli-test")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut before = Vec::new();
    let url = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "no listening line: {before:?}"
        );
        if line.contains("listening on") {
            break line
                .split_whitespace()
                .find(|w| w.starts_with("http://"))
                .unwrap_or_else(|| panic!("no address in {line:?}"))
                .to_string();
        }
        before.push(line.trim_end().to_string());
    };
    let served = Served {
        child,
        url,
        _stderr: stderr,
    };
    (served, before)
}

/// One HTTP/1.1 request with `Connection: close`; returns (status, body).
fn http(url: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let addr = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw.split(' ').nth(1).unwrap().parse().unwrap();
    let body = raw
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    (status, body)
}

fn write_config(dir: &std::path::Path, fake: &SimHandle) -> std::path::PathBuf {
    let p = dir.join("gateway.toml");
    std::fs::write(
        &p,
        format!(
            r#"
[retry]
max_retries = 0
[[providers]]
name = "openai"
kind = "openai"
base_url = "{}/v1"
  [[providers.credentials]]
  name = "primary"
  api_key_env = "GW_TEST_KEY"
[models.fast]
targets = ["openai:gpt-4o-mini"]
[routes]
latency = ["fast"]
"#,
            fake.url()
        ),
    )
    .unwrap();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_then_status_with_baseline_and_json() {
    let fake = ProviderSim::instant(Script::text(HELLO)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &fake);
    let gw = serve(&cfg);
    let url = gw.url.clone();
    let (status, body) = tokio::task::spawn_blocking(move || {
        http(
            &url,
            "POST",
            "/v1/chat/completions",
            r#"{"model":"fast","messages":[{"role":"user","content":"hi"}]}"#,
        )
    })
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Hello from the fake provider"), "{body}");
    assert_eq!(fake.calls_with_key("sk-cli-test"), 1);

    // status: saves a baseline, prints the JSON report, passes
    let base = dir.path().join("baseline.json");
    let out = Command::new(BIN)
        .args(["gateway", "status", "--url", &gw.url, "--save-baseline"])
        .arg(&base)
        .args(["--json", "-"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    powertune_test_support::schema::check::<powertune_gateway::StatusMetrics>(
        "gateway-status.v1",
        &report["metrics"],
    );
    let checks: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["check"].as_str().unwrap())
        .collect();
    assert!(
        checks.contains(&"breakers_open") && checks.contains(&"retry_depth"),
        "{checks:?}"
    );
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&base).unwrap()).unwrap();
    assert_eq!(saved["kind"], "gateway");
    assert_eq!(saved["data"]["providers"]["openai"]["count"], 1);

    // with the baseline: the terminal report, still passing
    let out = Command::new(BIN)
        .args(["gateway", "status", "--url", &gw.url, "--baseline"])
        .arg(&base)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("provider_p95_vs_baseline") && text.contains("openai/primary"),
        "{text}"
    );
    assert!(!text.contains("sk-cli-test"));

    // five provider failures open the breaker; 503 from the gateway after that
    fake.set_script(Script::status(500)).unwrap();
    let url = gw.url.clone();
    let statuses = tokio::task::spawn_blocking(move || {
        (0..6)
            .map(|_| {
                http(
                    &url,
                    "POST",
                    "/v1/chat/completions",
                    r#"{"model":"fast","messages":[{"role":"user","content":"hi"}]}"#,
                )
                .0
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert_eq!(statuses, [502, 502, 502, 502, 502, 503]);
    let out = Command::new(BIN)
        .args(["gateway", "status", "--url", &gw.url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "one open breaker warns: {text}");
    assert!(text.contains("WARN") && text.contains("open"), "{text}");
}

#[test]
fn bad_inputs_are_one_line_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[providers]]\nname = \"o\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\nretries = 3\n").unwrap();
    for (args, want) in [
        (vec!["gateway"], "--config FILE is required"),
        (
            vec!["gateway", "--config", "/nonexistent/gateway.toml"],
            "/nonexistent/gateway.toml: cannot read",
        ),
        (
            vec!["gateway", "--config", bad.to_str().unwrap()],
            "bad.toml:5:1: providers[0].retries: unknown field `retries`",
        ),
        (
            vec!["gateway", "status", "--url", "http://127.0.0.1:1"],
            "cannot reach the gateway",
        ),
        (
            vec!["gateway", "status", "--url", "ftp://x"],
            "not http or https",
        ),
        (
            vec!["gateway", "status", "--baseline", "/nonexistent/b.json"],
            "cannot read baseline",
        ),
    ] {
        let out = Command::new(BIN).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

/// The config generation and credential states from `/status`.
fn gen_and_states(url: &str) -> (u64, Vec<String>) {
    let (status, body) = http(url, "GET", "/status", "");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let states = v["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{}={}",
                c["credential"].as_str().unwrap(),
                c["state"].as_str().unwrap()
            )
        })
        .collect();
    (v["config_generation"].as_u64().unwrap(), states)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_config_and_a_bad_file_keeps_the_old_one() {
    let fake = ProviderSim::instant(Script::text(HELLO)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &fake);
    let mut gw = serve(&cfg);
    let url = gw.url.clone();
    let pid = gw.child.id().to_string();
    let chat = r#"{"model":"fast","messages":[{"role":"user","content":"hi"}]}"#;
    // a 401 disables the only credential: the gateway answers 503 from then on
    fake.push(Script::status(401)).unwrap();
    let u = url.clone();
    let statuses = tokio::task::spawn_blocking(move || {
        [
            http(&u, "POST", "/v1/chat/completions", chat).0,
            http(&u, "POST", "/v1/chat/completions", chat).0,
        ]
    })
    .await
    .unwrap();
    assert_eq!(statuses, [502, 503]);
    assert_eq!(
        gen_and_states(&url),
        (1, vec!["primary=disabled".to_string()])
    );

    // a broken file + SIGHUP: one line on stderr, the old config keeps serving
    let good = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{good}\n[breaker]\nfailure_threshold = 0\n")).unwrap();
    let hup = |pid: &str| {
        let s = Command::new("kill").args(["-HUP", pid]).status().unwrap();
        assert!(s.success());
    };
    hup(&pid);
    let mut line = String::new();
    gw._stderr.read_line(&mut line).unwrap();
    assert!(
        line.contains("reload (SIGHUP) refused")
            && line.contains("breaker.failure_threshold")
            && line.ends_with('\n'),
        "{line}"
    );
    assert_eq!(gen_and_states(&url).0, 1);

    // the file fixed + SIGHUP: generation 2, the credential is back
    std::fs::write(&cfg, &good).unwrap();
    hup(&pid);
    line.clear();
    gw._stderr.read_line(&mut line).unwrap();
    assert!(
        line.contains("reload (SIGHUP): config generation 2"),
        "{line}"
    );
    assert!(line.contains("1 re-enabled"), "{line}");
    assert!(!line.contains("sk-cli-test"));
    assert_eq!(
        gen_and_states(&url),
        (2, vec!["primary=closed".to_string()])
    );
    let u = url.clone();
    let (status, body) =
        tokio::task::spawn_blocking(move || http(&u, "POST", "/v1/chat/completions", chat))
            .await
            .unwrap();
    assert_eq!(status, 200, "{body}");
    // POST /admin/reload from loopback works too
    let u = url.clone();
    let (status, body) = tokio::task::spawn_blocking(move || http(&u, "POST", "/admin/reload", ""))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"generation\":3"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deprecated_numeric_keys_serve_with_a_warning_line_at_start_and_reload() {
    let fake = ProviderSim::instant(Script::text(HELLO)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &fake);
    let good = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{good}[timeouts]\nrequest_s = 60\n")).unwrap();
    let line_no = good.lines().count() + 2;
    let want = format!(
        "powertune gateway: warning: {}:{line_no}: timeouts.request_s: deprecated; write request = \"1m\"",
        cfg.display()
    );
    let (mut gw, before) = serve_noting(&cfg);
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(before[0], want);
    let u = gw.url.clone();
    let (status, body) = tokio::task::spawn_blocking(move || http(&u, "POST", "/admin/reload", ""))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let warnings = v["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{body}");
    assert!(want.ends_with(warnings[0].as_str().unwrap()), "{body}");
    let mut line = String::new();
    gw._stderr.read_line(&mut line).unwrap();
    assert!(
        line.contains("reload (POST /admin/reload): config generation 2"),
        "{line}"
    );
    line.clear();
    gw._stderr.read_line(&mut line).unwrap();
    assert_eq!(line.trim_end(), want);
}
