//! The load engine against real loopback servers (crates/test-support/src/http.rs).
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

use powertune_core::Targets;
use powertune_load::{run, Plan, RunOptions, Summary};
use powertune_test_support::http::{FixtureConfig, TestServer};
use std::time::Duration;

fn opts(plan: &Plan, url: &str) -> RunOptions {
    RunOptions::new(plan.clone(), url)
}

async fn go(toml: &str, srv: &TestServer) -> Summary {
    let plan = Plan::from_toml_str(toml, "test.toml").unwrap();
    tokio::time::timeout(Duration::from_secs(30), run(&opts(&plan, &srv.url)))
        .await
        .expect("run finished within 30 s")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_50ms_handler_reports_p50_between_50_and_60ms() {
    let srv = TestServer::start(FixtureConfig {
        delay: Duration::from_millis(50),
        ..Default::default()
    })
    .await;
    let s = go(
        r#"
[scenarios.fixed]
endpoint_type = "read_crud"
executor = "constant-vus"
vus = 10
duration = "2s"
[[scenarios.fixed.steps]]
url = "/delay"
checks = { status = 200, body_contains = "ok" }
"#,
        &srv,
    )
    .await;
    let p50 = s.http.duration.stats.med;
    assert!((50.0..=60.0).contains(&p50), "p50 {p50}");
    let raw50 = s.http.duration_raw.stats.med;
    assert!((50.0..=60.0).contains(&raw50), "raw p50 {raw50}");
    // 10 VUs × 2 s / 50 ms ≈ 400 requests; generous bounds.
    assert!((150..=420).contains(&s.http.reqs), "{}", s.http.reqs);
    assert_eq!(s.http.reqs, srv.requests());
    assert_eq!(s.http.failed, 0);
    assert_eq!(s.checks_failed, 0);
    assert_eq!(s.checks_passed, 2 * s.http.reqs);
    assert_eq!(s.vus_max, 10);
    let w = s.scenarios[0].phases.waiting.stats.med;
    assert!((49.0..=60.0).contains(&w), "waiting p50 {w}");
    assert!(s.data_sent > 0 && s.data_received > 0);
    // Verdict: Read-heavy CRUD target < 150 ms → PASS.
    let r = s.to_report(&Targets::default(), None);
    let f = r
        .findings
        .iter()
        .find(|f| f.check == "api_latency_p95")
        .unwrap();
    assert_eq!(f.verdict, powertune_core::Verdict::Pass);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_2_percent_is_counted_and_matches_the_server() {
    let srv = TestServer::start(FixtureConfig {
        fail_every: 50,
        ..Default::default()
    })
    .await;
    let s = go(
        r#"
[scenarios.flaky]
endpoint_type = "mutation_crud"
executor = "shared-iterations"
vus = 8
iterations = 1000
max_duration = "20s"
[[scenarios.flaky.steps]]
method = "POST"
url = "/flaky"
body = "x"
"#,
        &srv,
    )
    .await;
    assert_eq!(s.http.reqs, 1000);
    assert_eq!(srv.requests(), s.http.reqs);
    let rate = s.http.failed_rate();
    assert!((rate - 0.02).abs() < 0.002, "failed rate {rate}");
    assert_eq!(s.http.errors.status, s.http.failed);
    assert_eq!(s.http.status.get("500").copied(), Some(20));
    assert_eq!(s.iterations, 1000);
    // The runbook's error-rate threshold (< 1%) fails.
    let r = s.to_report(&Targets::default(), None);
    let f = r
        .findings
        .iter()
        .find(|f| f.check == "load_error_rate")
        .unwrap();
    assert_eq!(f.verdict, powertune_core::Verdict::Fail);
    assert_eq!(f.action, "Investigate failing endpoints");
    assert_eq!(r.exit_code(), powertune_core::ExitCode::Failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrival_rate_reaches_its_rate_within_2_percent() {
    let srv = TestServer::start(FixtureConfig {
        delay: Duration::from_millis(5),
        ..Default::default()
    })
    .await;
    let s = go(
        r#"
[scenarios.open]
endpoint_type = "read_crud"
executor = "constant-arrival-rate"
rate = 200
time_unit = "1s"
duration = "3s"
pre_allocated_vus = 5
max_vus = 50
[[scenarios.open.steps]]
url = "/delay"
"#,
        &srv,
    )
    .await;
    let want = 600.0;
    let got = s.http.reqs as f64;
    assert!(
        (got - want).abs() / want <= 0.02,
        "{got} requests, want {want}"
    );
    assert_eq!(s.dropped_iterations, 0);
    let rate = got / 3.0;
    assert!((rate - 200.0).abs() / 200.0 <= 0.02, "rate {rate}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_shows_in_corrected_latency_not_in_raw() {
    let srv = TestServer::start(FixtureConfig {
        stall: Some((Duration::from_millis(1000), Duration::from_secs(1))),
        ..Default::default()
    })
    .await;
    let s = go(
        r#"
[scenarios.stall]
endpoint_type = "read_crud"
executor = "constant-arrival-rate"
rate = 100
duration = "4s"
pre_allocated_vus = 2
max_vus = 2
max_backlog = 400
[[scenarios.stall.steps]]
url = "/stall"
"#,
        &srv,
    )
    .await;
    let corrected = s.http.duration.stats.p99;
    let raw = s.http.duration_raw.stats.p99;
    assert!(corrected >= 500.0, "corrected p99 {corrected}");
    assert!(
        raw * 5.0 < corrected,
        "raw p99 {raw} vs corrected {corrected}"
    );
    assert!(s.http.reqs >= 380, "{}", s.http.reqs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_logs_in_once_and_the_token_feeds_the_iterations() {
    let srv = TestServer::start(FixtureConfig::default()).await;
    let s = go(
        r#"
[scenarios.me]
endpoint_type = "read_crud"
executor = "per-vu-iterations"
vus = 2
iterations = 5
[[scenarios.me.setup]]
name = "login"
method = "POST"
url = "/login"
endpoint_type = "authentication"
json = { email = "{{EMAIL}}", password = "demo" }
extract = { token = "/token", uid = "/user/id" }
checks = { status = 200, json = { "/user/id" = 7 } }
[[scenarios.me.steps]]
name = "me"
url = "/me?uid={{uid}}"
headers = { Authorization = "Bearer {{token}}" }
checks = { status = 200, json = { "/user" = "ann" }, duration_below = "5s" }
[[scenarios.me.steps]]
sleep = "10ms..20ms"
"#,
        &srv,
    )
    .await;
    let sc = &s.scenarios[0];
    assert_eq!(sc.iterations, 10);
    let login = sc.steps.iter().find(|st| st.name == "login").unwrap();
    let me = sc.steps.iter().find(|st| st.name == "me").unwrap();
    assert_eq!(login.http.reqs, 2);
    assert_eq!(me.http.reqs, 10);
    assert_eq!(me.http.failed, 0, "{:?}", me.http.status);
    assert_eq!(s.checks_failed, 0);
    assert_eq!(s.checks_passed, 2 * 2 + 10 * 3);
    let types: Vec<_> = s.endpoint_types.iter().map(|e| e.endpoint_type).collect();
    assert_eq!(
        types,
        vec![
            powertune_core::EndpointType::Authentication,
            powertune_core::EndpointType::ReadCrud
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cable_scenario_counts_sessions_and_messages() {
    let srv = TestServer::start(FixtureConfig {
        broadcast_every: Duration::from_millis(100),
        ..Default::default()
    })
    .await;
    let s = go(
        r#"
[scenarios.cable]
endpoint_type = "read_crud"
users = 5
duration = "1500ms"
graceful_stop = "5s"
[[scenarios.cable.steps]]
cable = { url = "/cable", channel = "MonitoringChannel", hold = "stage" }
"#,
        &srv,
    )
    .await;
    let ws = s.scenarios[0].ws.as_ref().unwrap();
    assert_eq!(ws.sessions, 5);
    assert_eq!(ws.errors, 0);
    assert_eq!(srv.cable_counts(), (5, 5));
    // 1.5 s at one broadcast per 100 ms: about 15 each.
    assert!(ws.broadcasts >= 5 * 8, "{}", ws.broadcasts);
    assert!(ws.msgs_received >= ws.broadcasts + 10);
    assert_eq!(ws.subscribe_duration.stats.count, 5);
    let held = ws.session_duration.stats.min;
    assert!(held >= 1000.0, "session {held} ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_ws_step_sends_and_expects() {
    let srv = TestServer::start(FixtureConfig::default()).await;
    let s = go(
        r#"
[scenarios.echo]
endpoint_type = "read_crud"
executor = "per-vu-iterations"
vus = 2
iterations = 3
[[scenarios.echo.steps]]
name = "echo"
ws = { url = "/echo", send = ["hello {{__VU}}"], expect = "hello", timeout = "2s" }
"#,
        &srv,
    )
    .await;
    let ws = s.scenarios[0].ws.as_ref().unwrap();
    assert_eq!(ws.sessions, 6);
    assert_eq!(ws.msgs_sent, 6);
    assert_eq!(s.checks_passed, 6);
    assert_eq!(s.checks_failed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_by_option() {
    let srv = TestServer::start(FixtureConfig {
        delay: Duration::from_millis(1),
        ..Default::default()
    })
    .await;
    let s = go(
        r#"
[options]
http = "2"
[scenarios.h2]
endpoint_type = "read_crud"
executor = "shared-iterations"
vus = 2
iterations = 20
[[scenarios.h2.steps]]
url = "/delay"
checks = { status = 200 }
"#,
        &srv,
    )
    .await;
    assert_eq!(s.http.reqs, 20);
    assert_eq!(s.checks_failed, 0, "{:?}", s.http);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_on_fail_stops_the_run_early() {
    let srv = TestServer::start(FixtureConfig {
        fail_every: 2,
        ..Default::default()
    })
    .await;
    let t0 = std::time::Instant::now();
    let s = go(
        r#"
[thresholds]
http_req_failed = { threshold = "rate<0.01", abort_on_fail = true, delay_abort_eval = "1s" }
[scenarios.bad]
endpoint_type = "read_crud"
executor = "constant-vus"
vus = 2
duration = "20s"
[[scenarios.bad.steps]]
url = "/flaky"
[[scenarios.bad.steps]]
sleep = "10ms"
"#,
        &srv,
    )
    .await;
    assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
    assert!(s
        .aborted
        .as_deref()
        .unwrap_or("")
        .contains("http_req_failed"));
    assert!(!s.thresholds[0].ok);
    let r = s.to_report(&Targets::default(), None);
    assert!(r.findings.iter().any(|f| f.check == "run_aborted"));
}

#[tokio::test]
async fn unreachable_target_fails_before_any_vu() {
    let plan = Plan::from_toml_str(
        "[scenarios.a]\nendpoint_type = \"auth\"\nusers = 1\nduration = \"1s\"\n[[scenarios.a.steps]]\nurl = \"/\"\n",
        "t.toml",
    )
    .unwrap();
    // Port 1 on loopback: nothing listens there.
    let e = run(&opts(&plan, "http://user:hunter2@127.0.0.1:1"))
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("unreachable") && msg.contains("127.0.0.1:1"),
        "{msg}"
    );
    assert!(!msg.contains("hunter2"), "{msg}");
    // Masked the core way: the user name stays, the password becomes `***`.
    assert!(msg.contains("user:***@127.0.0.1:1"), "{msg}");
    let e = run(&opts(&plan, "not a url")).await.unwrap_err();
    assert!(e.to_string().contains("bad base URL"), "{e}");
    let e = run(&opts(&plan, "http://user:hunter2@127.0.0.1:99999/"))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("bad base URL") && !e.contains("hunter2"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summary_json_validates_and_compares() {
    let srv = TestServer::start(FixtureConfig {
        delay: Duration::from_millis(2),
        ..Default::default()
    })
    .await;
    let s = go(
        r#"
[thresholds]
http_req_duration = ["p(95)<2000"]
"http_reqs{scenario:ramp}" = "count>5"
[scenarios.ramp]
endpoint_type = "Analytics / reporting"
executor = "ramping-arrival-rate"
start_rate = 10
stages = [{ duration = "500ms", target = 50 }, { duration = "500ms", target = 0 }]
pre_allocated_vus = 2
max_vus = 10
[[scenarios.ramp.steps]]
url = "/delay"
"#,
        &srv,
    )
    .await;
    assert!(s.thresholds.iter().all(|t| t.ok), "{:?}", s.thresholds);
    let report = s.to_report(&Targets::default(), Some(&s));
    let json = report.to_json().unwrap();
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    // The metrics against the schema generated from `LoadMetrics` (checked in as
    // docs/schema/load-summary.v1.json), the envelope against core's.
    powertune_test_support::schema::check::<powertune_load::LoadMetrics>(
        "load-summary.v1",
        &value["metrics"],
    );
    assert!(value["metrics"]["baseline_comparison"].is_array());
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/schema/report.v2.json"),
    )
    .unwrap();
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    let v = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = v.iter_errors(&value).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "report.v2.json: {errors:?}");
    // Histograms survive the round trip, so runs can be compared.
    let back = Summary::from_report_json(&json).unwrap();
    assert_eq!(back.http.reqs, s.http.reqs);
    assert_eq!(back.http.duration.histogram.count(), s.http.reqs);
    let deltas = powertune_load::compare(&back, &s);
    assert_eq!(deltas[0].change_pct, Some(0.0));
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.check == "throughput_vs_baseline"
                && f.verdict == powertune_core::Verdict::Pass)
    );
    assert!(Summary::from_report_json("{\"metrics\":{}}").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_rows_feed_iterations() {
    let srv = TestServer::start(FixtureConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("users.csv"),
        "email,password\nann@example.com,demo\nbob@example.com,nope\n",
    )
    .unwrap();
    let plan_path = dir.path().join("plan.toml");
    std::fs::write(
        &plan_path,
        r#"
[scenarios.csv]
endpoint_type = "authentication"
executor = "per-vu-iterations"
vus = 1
iterations = 4
data = { file = "users.csv", mode = "per_iteration" }
[[scenarios.csv.steps]]
name = "login"
method = "POST"
url = "/login"
json = { email = "{{email}}", password = "{{password}}" }
checks = { status = 200 }
"#,
    )
    .unwrap();
    let plan = Plan::from_path(&plan_path).unwrap();
    let s = run(&opts(&plan, &srv.url)).await.unwrap();
    assert_eq!(s.http.reqs, 4);
    assert_eq!(s.http.status.get("200").copied(), Some(2));
    assert_eq!(s.http.status.get("401").copied(), Some(2));
    assert_eq!((s.checks_passed, s.checks_failed), (2, 2));
    // A missing data file is a plan error naming the file.
    std::fs::remove_file(dir.path().join("users.csv")).unwrap();
    let e = Plan::from_path(&plan_path).unwrap_err().to_string();
    assert!(e.contains("users.csv"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_when_the_server_closes_the_connection() {
    let srv = TestServer::start(FixtureConfig::default()).await;
    let s = go(
        r#"
[scenarios.close]
endpoint_type = "read_crud"
executor = "shared-iterations"
vus = 2
iterations = 30
[[scenarios.close.steps]]
url = "/close"
checks = { status = 200, body_contains = "bye" }
"#,
        &srv,
    )
    .await;
    assert_eq!(s.http.reqs, 30);
    assert_eq!(srv.requests(), 30);
    assert_eq!(s.http.failed, 0, "{:?}", s.http.errors);
    assert_eq!(s.checks_failed, 0);
    // Every request needed a fresh connection: none took 0 µs to connect.
    let connecting = &s.scenarios[0].phases.connecting.stats;
    assert!(connecting.min >= 0.002, "{connecting:?}");
}

// --- TLS, HTTP/2 by ALPN, connection reuse, the vus gauge ----------------------------

/// What a [`MiniServer`] saw.
#[derive(Default)]
struct Seen {
    connections: std::sync::atomic::AtomicU64,
    h2_requests: std::sync::atomic::AtomicU64,
    h1_requests: std::sync::atomic::AtomicU64,
}

/// A hyper server on 127.0.0.1:0 answering `ok` to everything, over TLS (with the
/// given ALPN protocols) or cleartext; counts connections and requests by protocol.
struct MiniServer {
    port: u16,
    seen: std::sync::Arc<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MiniServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MiniServer {
    async fn start(tls: Option<std::sync::Arc<rustls::ServerConfig>>) -> MiniServer {
        use std::sync::atomic::Ordering;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let seen = std::sync::Arc::new(Seen::default());
        let s2 = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = l.accept().await else {
                    return;
                };
                s2.connections.fetch_add(1, Ordering::Relaxed);
                let seen = s2.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let seen = seen.clone();
                            async move {
                                if req.version() == hyper::Version::HTTP_2 {
                                    seen.h2_requests.fetch_add(1, Ordering::Relaxed);
                                } else {
                                    seen.h1_requests.fetch_add(1, Ordering::Relaxed);
                                }
                                Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                    http_body_util::Full::new(bytes::Bytes::from_static(b"ok")),
                                ))
                            }
                        },
                    );
                    let b = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    );
                    match tls {
                        Some(cfg) => {
                            // A failed handshake (an untrusting client) just ends here.
                            if let Ok(s) = tokio_rustls::TlsAcceptor::from(cfg).accept(tcp).await {
                                let _ = b
                                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                                    .await;
                            }
                        }
                        None => {
                            let _ = b
                                .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                                .await;
                        }
                    }
                });
            }
        });
        MiniServer { port, seen, task }
    }

    fn count(&self, c: &std::sync::atomic::AtomicU64) -> u64 {
        c.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A certificate for 127.0.0.1 generated here, and a server config offering `alpn`.
fn tls_server(alpn: &[&[u8]]) -> (String, std::sync::Arc<rustls::ServerConfig>) {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        ck.signing_key.serialize_der(),
    ));
    let mut cfg = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![ck.cert.der().clone()], key)
    .unwrap();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    (ck.cert.pem(), std::sync::Arc::new(cfg))
}

async fn go_at(toml: &str, base: &str) -> Summary {
    let plan = Plan::from_toml_str(toml, "test.toml").unwrap();
    tokio::time::timeout(Duration::from_secs(30), run(&opts(&plan, base)))
        .await
        .expect("run finished within 30 s")
        .unwrap()
}

const TWENTY: &str = r#"
[scenarios.tls]
endpoint_type = "read_crud"
executor = "shared-iterations"
vus = 2
iterations = 20
[[scenarios.tls.steps]]
url = "/x"
checks = { status = 200, body_contains = "ok" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_negotiates_h2_by_alpn_with_a_trusted_ca() {
    let (pem, cfg) = tls_server(&[b"h2", b"http/1.1"]);
    let srv = MiniServer::start(Some(cfg)).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), pem).unwrap();
    let toml = format!(
        "[options]\nca_cert = \"{}\"\n{TWENTY}",
        dir.path().join("ca.pem").display()
    );
    let s = go_at(&toml, &format!("https://127.0.0.1:{}", srv.port)).await;
    assert_eq!(s.http.reqs, 20);
    assert_eq!(s.http.failed, 0, "{:?}", s.http.errors);
    assert_eq!(s.checks_failed, 0);
    assert_eq!(
        s.http.protocols.get("HTTP/2.0"),
        Some(&20),
        "{:?}",
        s.http.protocols
    );
    assert_eq!(srv.count(&srv.seen.h2_requests), 20);
    assert_eq!(srv.count(&srv.seen.h1_requests), 0);
    // The start-up reachability probe, then one connection per VU.
    assert_eq!(srv.count(&srv.seen.connections), 1 + 2);
    let tls = &s.scenarios[0].phases.tls_handshaking.stats;
    assert!(tls.max > 0.0, "{tls:?}");
    assert!(s.render_text().contains("HTTP/2.0×20"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_h1_only_server_works_and_insecure_skips_verification() {
    let (_pem, cfg) = tls_server(&[b"http/1.1"]);
    let srv = MiniServer::start(Some(cfg)).await;
    let toml = format!("[options]\ninsecure_skip_tls_verify = true\n{TWENTY}");
    let s = go_at(&toml, &format!("https://127.0.0.1:{}", srv.port)).await;
    assert_eq!(s.http.reqs, 20);
    assert_eq!(s.http.failed, 0, "{:?}", s.http.errors);
    assert_eq!(
        s.http.protocols.get("HTTP/1.1"),
        Some(&20),
        "{:?}",
        s.http.protocols
    );
    assert_eq!(srv.count(&srv.seen.h1_requests), 20);
    assert_eq!(srv.count(&srv.seen.connections), 1 + 2);
    assert!(s.scenarios[0].phases.tls_handshaking.stats.max > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_certificate_counts_as_tls_errors() {
    let (_pem, cfg) = tls_server(&[b"h2", b"http/1.1"]);
    let srv = MiniServer::start(Some(cfg)).await;
    let s = go_at(TWENTY, &format!("https://127.0.0.1:{}", srv.port)).await;
    assert_eq!(s.http.reqs, 20);
    assert_eq!(s.http.failed, 20);
    assert_eq!(s.http.errors.tls, 20, "{:?}", s.http.errors);
    assert_eq!(
        srv.count(&srv.seen.h1_requests) + srv.count(&srv.seen.h2_requests),
        0
    );
    // A CA file that is not PEM is refused before any VU starts.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.pem"), "not a certificate").unwrap();
    let toml = format!(
        "[options]\nca_cert = \"{}\"\n{TWENTY}",
        dir.path().join("bad.pem").display()
    );
    let plan = Plan::from_toml_str(&toml, "test.toml").unwrap();
    let err = run(&opts(&plan, &format!("https://127.0.0.1:{}", srv.port)))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bad.pem") && err.contains("CERTIFICATE"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_vu_connection_reuse_opens_a_connection_per_iteration() {
    let srv = MiniServer::start(None).await;
    let base = format!("http://127.0.0.1:{}", srv.port);
    let plan = |reuse: &str| {
        format!(
            r#"
[options]
no_vu_connection_reuse = {reuse}
[scenarios.s]
endpoint_type = "read_crud"
executor = "per-vu-iterations"
vus = 3
iterations = 4
[[scenarios.s.steps]]
url = "/a"
[[scenarios.s.steps]]
sleep = "10ms"
[[scenarios.s.steps]]
url = "/b"
"#
        )
    };
    let s = go_at(&plan("false"), &base).await;
    assert_eq!((s.http.reqs, s.http.failed), (24, 0));
    // The start-up reachability probe, then one connection per VU.
    assert_eq!(srv.count(&srv.seen.connections), 1 + 3);
    let srv2 = MiniServer::start(None).await;
    let base2 = format!("http://127.0.0.1:{}", srv2.port);
    let s = go_at(&plan("true"), &base2).await;
    assert_eq!((s.http.reqs, s.http.failed), (24, 0));
    // Closed before each think step and at each iteration's end: a socket per request.
    assert_eq!(srv2.count(&srv2.seen.connections), 1 + 24);
    assert!(s.scenarios[0].phases.connecting.stats.min > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vus_gauge_is_sampled_over_time() {
    let srv = MiniServer::start(None).await;
    let s = go_at(
        r#"
[scenarios.g]
endpoint_type = "read_crud"
executor = "constant-vus"
vus = 3
duration = "2500ms"
[[scenarios.g.steps]]
url = "/a"
[[scenarios.g.steps]]
sleep = "20ms"
"#,
        &format!("http://127.0.0.1:{}", srv.port),
    )
    .await;
    let v = s.vus.as_ref().expect("vus gauge");
    assert!((2..=3).contains(&v.series.len()), "{v:?}");
    assert_eq!(v.max, 3);
    assert!(v.series.iter().all(|&n| n == 3), "{v:?}");
    assert_eq!(v.interval_s, 1.0);
    let text = s.render_text();
    assert!(text.contains("vus: min 3  max 3"), "{text}");
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["vus"]["max"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timeline_adds_up_to_the_totals() {
    let srv = TestServer::start(FixtureConfig {
        delay: Duration::from_millis(5),
        fail_every: 10,
        ..Default::default()
    })
    .await;
    let s = go(
        r#"
[scenarios.closed]
endpoint_type = "read_crud"
executor = "constant-vus"
vus = 3
duration = "2500ms"
[[scenarios.closed.steps]]
url = "/delay"
[[scenarios.closed.steps]]
url = "/flaky"
endpoint_type = "mutation_crud"
method = "POST"
body = "x"
[scenarios.open]
endpoint_type = "authentication"
executor = "constant-arrival-rate"
rate = 40
time_unit = "1s"
duration = "1500ms"
start_time = "1s"
pre_allocated_vus = 2
max_vus = 4
[[scenarios.open.steps]]
url = "/delay"
"#,
        &srv,
    )
    .await;
    let tl = s.timeline.as_ref().expect("a timeline");
    assert_eq!(tl.interval_s, 1.0);
    // About 2.5 s of run: one point a second and the last partial one (which joins
    // the point before it when under half a second).
    assert!((2..=5).contains(&tl.run.len()), "{}", tl.run.len());
    let sum = |pts: &[powertune_load::timeline::Point],
               f: fn(&powertune_load::timeline::Point) -> u64|
     -> u64 { pts.iter().map(f).sum() };
    assert_eq!(sum(&tl.run, |p| p.reqs), s.http.reqs);
    assert_eq!(sum(&tl.run, |p| p.failed), s.http.failed);
    assert_eq!(sum(&tl.run, |p| p.errors.status), s.http.errors.status);
    assert_eq!(sum(&tl.run, |p| p.iterations.unwrap_or(0)), s.iterations);
    assert_eq!(sum(&tl.run, |p| p.data_sent.unwrap_or(0)), s.data_sent);
    assert_eq!(
        sum(&tl.run, |p| p.data_received.unwrap_or(0)),
        s.data_received
    );
    assert_eq!(
        sum(&tl.run, |p| p.dropped_iterations.unwrap_or(0)),
        s.dropped_iterations
    );
    for (line, sc) in tl.scenarios.iter().zip(&s.scenarios) {
        assert_eq!(line.name, sc.name);
        assert_eq!(sum(&line.points, |p| p.reqs), sc.http.reqs, "{}", sc.name);
        assert_eq!(sum(&line.points, |p| p.failed), sc.http.failed);
        assert_eq!(
            sum(&line.points, |p| p.iterations.unwrap_or(0)),
            sc.iterations
        );
        assert!(line.points.len() == tl.run.len());
    }
    for (line, et) in tl.endpoint_types.iter().zip(&s.endpoint_types) {
        assert_eq!(line.endpoint_type, et.endpoint_type);
        assert_eq!(sum(&line.points, |p| p.reqs), et.http.reqs);
    }
    assert_eq!(tl.endpoint_types.len(), 3);
    // The open scenario starts at 1 s and ends after its 1.5 s.
    let open = &tl.scenarios[1];
    let (start, end) = (open.start_s.unwrap(), open.end_s.unwrap());
    assert!((0.9..1.5).contains(&start), "{start}");
    assert!(end >= start + 1.4, "{end}");
    let before: u64 = open
        .points
        .iter()
        .filter(|p| p.t_s + p.secs <= start)
        .map(|p| p.reqs)
        .sum();
    assert_eq!(before, 0);
    // Per-interval latency: every point with successful requests has percentiles, in
    // order, the corrected one never below the raw one.
    for p in tl.run.iter().filter(|p| p.reqs > p.failed) {
        let (l, r) = (p.latency.unwrap(), p.latency_raw.unwrap());
        assert!(l.p50 <= l.p95 && l.p95 <= l.p99 && l.p99 <= l.max, "{l:?}");
        assert!(l.p99 + 0.01 >= r.p99, "{l:?} {r:?}");
        assert!(l.max >= 4.0, "{l:?}");
    }
    assert!(tl.run.iter().filter_map(|p| p.vus).max().unwrap() >= 3);
    // It survives the JSON round trip.
    let back: Summary = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
    assert_eq!(back.timeline.as_ref(), Some(tl));
}
