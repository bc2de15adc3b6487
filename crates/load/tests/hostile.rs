//! The load engine against hostile loopback servers (raw sockets on port 0): a server
//! that never answers, one that answers too late, one that streams an endless body,
//! and one that records what it received (header injection, Basic authentication).
//! Every run is bounded to a few seconds.
// Test code: helpers outside #[test] functions may unwrap, panic and print (clippy.toml
// allows it only inside them).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

use powertune_core::{Targets, Verdict};
use powertune_load::{run, Plan, RunOptions, Summary};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How a raw server treats each request.
#[derive(Clone, Copy)]
enum Mode {
    /// Reads the request and never answers (the socket stays open).
    Silent,
    /// Answers 200 after this long.
    Late(Duration),
    /// Sends a 200 head with a chunked body that never ends.
    Endless,
    /// Sends a 200 head with a chunked body that never ends, as fast as it can.
    Flood,
    /// Answers 200 at once with this JSON body.
    Json(&'static str),
}

/// A raw HTTP/1.1 server on 127.0.0.1:0; every request head it read is kept.
struct RawServer {
    url: String,
    heads: Arc<Mutex<Vec<String>>>,
}

impl RawServer {
    async fn start(mode: Mode) -> RawServer {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let heads = Arc::new(Mutex::new(Vec::new()));
        let h = heads.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                tokio::spawn(serve(s, mode, h.clone()));
            }
        });
        RawServer { url, heads }
    }

    fn received(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

async fn serve(mut s: TcpStream, mode: Mode, heads: Arc<Mutex<Vec<String>>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // One request head (the engine's requests here have no body).
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if buf.len() > 1 << 20 {
                return;
            }
        };
        let head: Vec<u8> = buf.drain(..end).collect();
        heads
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(&head).into_owned());
        match mode {
            Mode::Silent => {
                // Hold the connection; the client gives up.
                let _ = s.read(&mut chunk).await;
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
            Mode::Late(d) => {
                tokio::time::sleep(d).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
            }
            Mode::Endless => {
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                    .await;
                loop {
                    if s.write_all(b"400\r\n").await.is_err()
                        || s.write_all(&[b'x'; 1024]).await.is_err()
                        || s.write_all(b"\r\n").await.is_err()
                    {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            Mode::Flood => {
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                    .await;
                let mut chunk = b"10000\r\n".to_vec();
                chunk.extend_from_slice(&[b'x'; 0x10000]);
                chunk.extend_from_slice(b"\r\n");
                while s.write_all(&chunk).await.is_ok() {}
                return;
            }
            Mode::Json(body) => {
                let r = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                if s.write_all(r.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// One scenario of `vus` VUs for `duration` with a 1 s graceful stop, GET /x.
fn one_step(vus: u32, duration: &str) -> String {
    format!(
        r#"
[scenarios.hostile]
endpoint_type = "read_crud"
executor = "constant-vus"
vus = {vus}
duration = "{duration}"
graceful_stop = "1s"
[[scenarios.hostile.steps]]
name = "get"
url = "/x"
"#
    )
}

async fn go(opts: RunOptions) -> (Summary, Duration) {
    let t0 = Instant::now();
    let s = tokio::time::timeout(Duration::from_secs(30), run(&opts))
        .await
        .expect("run finished within 30 s")
        .unwrap();
    (s, t0.elapsed())
}

fn verdict_of(s: &Summary, check: &str) -> Option<Verdict> {
    s.to_report(&Targets::default(), None)
        .findings
        .iter()
        .find(|f| f.check == check)
        .map(|f| f.verdict)
}

/// The run measured nothing: every request was still in flight when the graceful
/// stop ran out, counted as interrupted and failed, and the run FAILs.
fn assert_nothing_measured(s: &Summary, vus: u64) {
    assert_eq!(s.http.reqs, vus, "{:?}", s.http);
    assert_eq!(s.http.failed, vus);
    assert_eq!(s.http.errors.interrupted, vus);
    assert_eq!(s.http.failed_rate(), 1.0);
    assert_eq!(s.iterations, 0);
    assert_eq!(verdict_of(s, "nothing_completed"), Some(Verdict::Fail));
    assert_eq!(
        verdict_of(s, "scenario_completed_nothing"),
        Some(Verdict::Fail)
    );
    let r = s.to_report(&Targets::default(), None);
    assert_eq!(r.verdict, Verdict::Fail);
    assert_ne!(r.exit_code(), powertune_core::ExitCode::Passed);
    // Shown in the text summary too.
    assert!(
        s.render_text().contains("interrupted 2"),
        "{}",
        s.render_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_fails_the_run_with_interrupted_requests() {
    let srv = RawServer::start(Mode::Silent).await;
    let plan = Plan::from_toml_str(&one_step(2, "1s"), "t.toml").unwrap();
    let (s, took) = go(RunOptions::new(plan, &srv.url)).await;
    assert_nothing_measured(&s, 2);
    // 1 s of schedule and 1 s of graceful stop, not the 60 s request timeout.
    assert!(took < Duration::from_secs(10), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_answering_after_10s_in_a_3s_run_fails_the_run() {
    let srv = RawServer::start(Mode::Late(Duration::from_secs(10))).await;
    let plan = Plan::from_toml_str(&one_step(2, "3s"), "t.toml").unwrap();
    let (s, took) = go(RunOptions::new(plan, &srv.url)).await;
    assert_nothing_measured(&s, 2);
    assert!(took < Duration::from_secs(9), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_body_is_counted_as_interrupted_and_fails_the_run() {
    let srv = RawServer::start(Mode::Endless).await;
    let plan = Plan::from_toml_str(&one_step(2, "1s"), "t.toml").unwrap();
    let (s, took) = go(RunOptions::new(plan, &srv.url)).await;
    assert_nothing_measured(&s, 2);
    assert!(took < Duration::from_secs(10), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scenario_that_completed_nothing_fails_even_when_another_measured() {
    let fast = RawServer::start(Mode::Json("{}")).await;
    let silent = RawServer::start(Mode::Silent).await;
    let toml = format!(
        r#"
[scenarios.fine]
endpoint_type = "read_crud"
executor = "constant-vus"
vus = 1
duration = "1s"
graceful_stop = "1s"
[[scenarios.fine.steps]]
url = "/ok"
[scenarios.stuck]
endpoint_type = "read_crud"
executor = "constant-vus"
vus = 1
duration = "1s"
graceful_stop = "1s"
[[scenarios.stuck.steps]]
url = "{}/never"
"#,
        silent.url
    );
    let plan = Plan::from_toml_str(&toml, "t.toml").unwrap();
    let (s, _) = go(RunOptions::new(plan, &fast.url)).await;
    assert!(s.scenarios[0].iterations > 0);
    assert_eq!(s.scenarios[1].iterations, 0);
    assert_eq!(s.scenarios[1].http.errors.interrupted, 1);
    assert_eq!(verdict_of(&s, "nothing_completed"), None);
    let r = s.to_report(&Targets::default(), None);
    let f = r
        .findings
        .iter()
        .find(|f| f.check == "scenario_completed_nothing")
        .expect("a finding for the stuck scenario");
    assert_eq!((f.subject.as_str(), f.verdict), ("stuck", Verdict::Fail));
    assert_eq!(r.verdict, Verdict::Fail);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_token_ends_the_run_early_and_marks_it_interrupted() {
    let srv = RawServer::start(Mode::Json("{}")).await;
    let plan = Plan::from_toml_str(&one_step(2, "60s"), "t.toml").unwrap();
    let mut opts = RunOptions::new(plan, &srv.url);
    let stop = tokio_util::sync::CancellationToken::new();
    opts.stop = Some(stop.clone());
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        stop.cancel();
    });
    let (s, took) = go(opts).await;
    assert!(s.interrupted);
    assert!(s.http.reqs > 0 && s.iterations > 0);
    assert!(took < Duration::from_secs(10), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halt_token_stops_in_flight_requests_at_once_and_counts_them() {
    let srv = RawServer::start(Mode::Silent).await;
    let mut toml = one_step(2, "60s");
    toml = toml.replace("graceful_stop = \"1s\"", "graceful_stop = \"60s\"");
    let plan = Plan::from_toml_str(&toml, "t.toml").unwrap();
    let mut opts = RunOptions::new(plan, &srv.url);
    let (stop, halt) = (
        tokio_util::sync::CancellationToken::new(),
        tokio_util::sync::CancellationToken::new(),
    );
    opts.stop = Some(stop.clone());
    opts.halt = Some(halt.clone());
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.cancel();
        tokio::time::sleep(Duration::from_millis(500)).await;
        halt.cancel();
    });
    let (s, took) = go(opts).await;
    assert!(s.interrupted);
    assert_eq!(s.http.errors.interrupted, 2);
    assert!(took < Duration::from_secs(10), "{took:?}");
}

/// A JSON login answer whose token smuggles a header.
const EVIL_TOKEN: &str = r#"{"token":"abc\r\nX-Injected: yes"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cr_lf_from_an_extracted_value_or_a_variable_is_never_sent() {
    let srv = RawServer::start(Mode::Json(EVIL_TOKEN)).await;
    let toml = r#"
[scenarios.inject]
endpoint_type = "read_crud"
executor = "per-vu-iterations"
vus = 1
iterations = 3
[[scenarios.inject.steps]]
name = "login"
url = "/login"
extract = { token = "/token" }
[[scenarios.inject.steps]]
name = "extracted"
url = "/me"
headers = { Authorization = "Bearer {{token}}" }
[[scenarios.inject.steps]]
name = "variable"
url = "/env"
headers = { X-Trace = "{{TRACE}}" }
[[scenarios.inject.steps]]
name = "in the path"
url = "/p/{{TRACE}}"
"#;
    let plan = Plan::from_toml_str(toml, "t.toml").unwrap();
    let mut opts = RunOptions::new(plan, &srv.url);
    opts.env
        .insert("TRACE".into(), "t1\nX-Also-Injected: yes".into());
    let (s, _) = go(opts).await;
    let heads = srv.received();
    // Only the three logins reached the server; nothing injected was written.
    assert_eq!(heads.len(), 3, "{heads:?}");
    assert!(
        heads.iter().all(|h| h.starts_with("GET /login ")),
        "{heads:?}"
    );
    assert!(!heads.iter().any(|h| h.contains("Injected")), "{heads:?}");
    let steps = &s.scenarios[0].steps;
    for st in &steps[1..] {
        assert_eq!(st.http.reqs, 3, "{}", st.name);
        assert_eq!(st.http.errors.invalid, 3, "{}", st.name);
        assert_eq!(st.http.failed, 3, "{}", st.name);
    }
    assert_eq!(s.http.errors.invalid, 9);
}

#[test]
fn cr_lf_in_a_static_header_value_is_refused_naming_file_line_and_key() {
    let toml = "[scenarios.a]\nendpoint_type = \"read_crud\"\nexecutor = \"constant-vus\"\nvus = 1\nduration = \"1s\"\n[[scenarios.a.steps]]\nurl = \"/x\"\nheaders = { X-A = \"ok\\r\\nX-Injected: yes\" }\n";
    let e = Plan::from_toml_str(toml, "t.toml").unwrap_err().to_string();
    assert!(e.starts_with("t.toml:8:"), "{e}");
    assert!(e.contains("scenarios.a.steps[0].headers"), "{e}");
    assert!(e.contains("`X-A`") && e.contains("CR, LF"), "{e}");
    assert!(!e.contains('\n'), "{e}");
    // Cable headers too.
    let toml = "[scenarios.c]\nendpoint_type = \"read_crud\"\nexecutor = \"constant-vus\"\nvus = 1\nduration = \"1s\"\n[[scenarios.c.steps]]\ncable = { headers = { Cookie = \"a\\nb\" } }\n";
    let e = Plan::from_toml_str(toml, "t.toml").unwrap_err().to_string();
    assert!(e.contains("scenarios.c.steps[0].cable.headers"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_info_in_urls_is_sent_as_basic_auth_and_masked_everywhere() {
    let srv = RawServer::start(Mode::Json("{}")).await;
    let host = srv.url.trim_start_matches("http://").to_string();
    let toml = format!(
        r#"
[scenarios.auth]
endpoint_type = "read_crud"
executor = "per-vu-iterations"
vus = 1
iterations = 1
[[scenarios.auth.steps]]
url = "http://stepuser:st3p-s3cret@{host}/abs?token=tok-s3cret"
[[scenarios.auth.steps]]
url = "/rel"
[[scenarios.auth.steps]]
url = "/own"
headers = {{ Authorization = "Bearer mine" }}
"#
    );
    let plan = Plan::from_toml_str(&toml, "t.toml").unwrap();
    // The base URL carries credentials too (percent-encoded `@`).
    let base = format!("http://baseuser:b%40se-s3cret@{host}");
    let (s, _) = go(RunOptions::new(plan, &base)).await;
    let heads = srv.received();
    assert_eq!(heads.len(), 3, "{heads:?}");
    let auth = |h: &str| {
        h.lines()
            .find_map(|l| l.strip_prefix("authorization: "))
            .map(str::to_string)
    };
    // base64("stepuser:st3p-s3cret"), base64("baseuser:b@se-s3cret").
    assert_eq!(
        auth(&heads[0]).as_deref(),
        Some("Basic c3RlcHVzZXI6c3QzcC1zM2NyZXQ=")
    );
    assert_eq!(
        auth(&heads[1]).as_deref(),
        Some("Basic YmFzZXVzZXI6YkBzZS1zM2NyZXQ=")
    );
    assert_eq!(auth(&heads[2]).as_deref(), Some("Bearer mine"));
    assert_eq!(s.http.failed, 0);
    // Nothing shown holds a secret: the summary, the JSON report, step names.
    let text = s.render_text();
    let json = serde_json::to_string(&s.to_report(&Targets::default(), None)).unwrap();
    for shown in [&text, &json] {
        for secret in ["st3p-s3cret", "b%40se-s3cret", "b@se-s3cret", "tok-s3cret"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }
    assert!(json.contains("stepuser:***@"), "{json}");
}

#[test]
fn a_password_in_a_step_url_is_masked_in_errors() {
    let toml = "[scenarios.a]\nendpoint_type = \"read_crud\"\nexecutor = \"constant-vus\"\nvus = 1\nduration = \"1s\"\n[[scenarios.a.steps]]\nurl = \"http://u:hunter22@127.0.0.1:1/x?q={{unclosed\"\n";
    let e = Plan::from_toml_str(toml, "t.toml").unwrap_err().to_string();
    assert!(e.contains("scenarios.a.steps[0].url"), "{e}");
    assert!(!e.contains("hunter22"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_body_a_check_needs_is_cut_at_the_kept_body_limit() {
    let srv = RawServer::start(Mode::Flood).await;
    let toml = r#"
[scenarios.flood]
endpoint_type = "read_crud"
executor = "per-vu-iterations"
vus = 1
iterations = 1
[[scenarios.flood.steps]]
url = "/x"
checks = { body_contains = "never" }
"#;
    let plan = Plan::from_toml_str(toml, "t.toml").unwrap();
    let (s, took) = go(RunOptions::new(plan, &srv.url)).await;
    assert_eq!(s.http.reqs, 1);
    assert_eq!(s.http.errors.protocol, 1, "{:?}", s.http.errors);
    assert_eq!(s.checks_failed, 1);
    // Cut at the limit, not read until the 60 s request timeout.
    assert!(took < Duration::from_secs(20), "{took:?}");
}
