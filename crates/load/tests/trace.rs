//! `--trace`: every HTTP request and WebSocket upgrade carries a W3C `traceparent` of
//! its own, and the report's slowest requests are the ones the server made slow. A
//! loopback server records each request's header and the delay it chose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use powertune_load::trace::{TraceContext, SLOWEST_KEPT};
use powertune_load::{Plan, RunOptions};
use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone)]
struct Seen {
    path: String,
    upgrade: bool,
    /// Every `traceparent` value the request carried.
    traceparent: Vec<String>,
    delay_ms: u64,
}

/// Request `k` (0-based) to `/items` sleeps `slow(k)` ms; everything else answers at
/// once (a WebSocket upgrade is refused with 400 after its headers are recorded).
async fn recording_server(slow: fn(u64) -> u64) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let n = Arc::new(AtomicU64::new(0));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            let (log, n) = (log.clone(), n.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (log, n) = (log.clone(), n.clone());
                    async move {
                        let path = req.uri().path().to_string();
                        let upgrade = req.headers().contains_key(hyper::header::UPGRADE);
                        let delay_ms = if path == "/items" && !upgrade {
                            slow(n.fetch_add(1, Ordering::Relaxed))
                        } else {
                            0
                        };
                        log.lock().push(Seen {
                            path,
                            upgrade,
                            traceparent: req
                                .headers()
                                .get_all("traceparent")
                                .iter()
                                .map(|v| v.to_str().unwrap().to_string())
                                .collect(),
                            delay_ms,
                        });
                        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                        let status = if upgrade { 400 } else { 200 };
                        Ok::<_, Infallible>(
                            hyper::Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::from_static(b"{}")))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(sock), svc)
                    .await;
            });
        }
    });
    (url, seen)
}

/// Six slow requests, 40 ms apart (60 … 260 ms), among sixty.
fn six_slow(k: u64) -> u64 {
    if k % 10 == 5 {
        60 + 40 * (k / 10)
    } else {
        0
    }
}

const PLAN: &str = r#"
[scenarios.browse]
endpoint_type = "read_crud"
executor = "shared-iterations"
vus = 4
iterations = 60
[[scenarios.browse.steps]]
url = "/items"

[scenarios.live]
endpoint_type = "analytics"
executor = "per-vu-iterations"
vus = 1
iterations = 2
[[scenarios.live.steps]]
ws = { url = "/socket", send = ["hi"], timeout = "1s" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traced_requests_carry_fresh_ids_and_the_slowest_are_named() {
    let (url, seen) = recording_server(six_slow).await;
    let plan = Plan::from_toml_str(&format!("[options]\ntrace = true\n{PLAN}"), "p.toml").unwrap();
    let summary = powertune_load::run(&RunOptions::new(plan, url))
        .await
        .unwrap();
    let seen = seen.lock().clone();
    let items: Vec<&Seen> = seen.iter().filter(|s| s.path == "/items").collect();
    assert_eq!(items.len(), 60);
    assert_eq!(summary.http.reqs, 60);
    // Every request and upgrade: one valid header, version 00, sampled.
    let upgrades: Vec<&Seen> = seen.iter().filter(|s| s.upgrade).collect();
    assert_eq!(upgrades.len(), 2, "{seen:?}");
    let mut ids = HashSet::new();
    for s in &seen {
        assert_eq!(s.traceparent.len(), 1, "{s:?}");
        let h = &s.traceparent[0];
        let ctx = TraceContext::parse(h).unwrap_or_else(|| panic!("not a traceparent: {h}"));
        assert!(h.starts_with("00-") && h.ends_with("-01"), "{h}");
        assert!(ids.insert(ctx.trace_id), "trace id seen twice: {h}");
    }
    // The slowest of the endpoint type are the requests the server slowed, slowest
    // first: the top five of the six.
    let mut slowed: Vec<&Seen> = items.iter().copied().filter(|s| s.delay_ms > 0).collect();
    slowed.sort_by_key(|s| std::cmp::Reverse(s.delay_ms));
    let e = summary
        .endpoint_types
        .iter()
        .find(|e| e.endpoint_type.key() == "read_crud")
        .unwrap();
    assert_eq!(e.http.slowest.len(), SLOWEST_KEPT);
    for (r, s) in e.http.slowest.iter().zip(&slowed) {
        let ctx = TraceContext::parse(&s.traceparent[0]).unwrap();
        assert_eq!(r.trace_id, hex::encode(ctx.trace_id), "{r:?} vs {s:?}");
        assert_eq!(r.span_id, hex::encode(ctx.span_id));
        assert!(r.duration_ms >= s.delay_ms as f64, "{r:?} {s:?}");
        assert_eq!(r.status, Some(200));
    }
    // In the JSON (the step and scenario keep theirs too) and in the text.
    let json = serde_json::to_value(&summary).unwrap();
    let types = json["endpoint_types"].as_array().unwrap();
    let read = types
        .iter()
        .find(|t| t["endpoint_type"] == "read_crud")
        .unwrap();
    let first = &read["http"]["slowest"][0];
    assert_eq!(first["trace_id"], e.http.slowest[0].trace_id.as_str());
    assert_eq!(
        json["scenarios"][0]["steps"][0]["http"]["slowest"][0]["trace_id"],
        first["trace_id"]
    );
    // The report validates against the checked-in schema (slowest included).
    let report = summary.to_report(&powertune_core::Targets::default(), None);
    let value: serde_json::Value = serde_json::from_str(&report.to_json().unwrap()).unwrap();
    powertune_test_support::schema::check::<powertune_load::LoadMetrics>(
        "load-summary.v1",
        &value["metrics"],
    );
    let text = summary.render_text();
    let line = text
        .lines()
        .find(|l| l.contains(&e.http.slowest[0].trace_id))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains("slowest: 2") && line.starts_with("Read-heavy CRUD"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_trace_no_header_is_sent_and_none_is_reported() {
    let (url, seen) = recording_server(six_slow).await;
    let plan = Plan::from_toml_str(PLAN, "p.toml").unwrap();
    let summary = powertune_load::run(&RunOptions::new(plan, url))
        .await
        .unwrap();
    let seen = seen.lock().clone();
    assert_eq!(seen.len(), 62, "{seen:?}");
    assert!(seen.iter().all(|s| s.traceparent.is_empty()), "{seen:?}");
    assert!(summary
        .endpoint_types
        .iter()
        .all(|e| e.http.slowest.is_empty()));
    let json = serde_json::to_string(&summary).unwrap();
    assert!(!json.contains("slowest"));
    assert!(!summary.render_text().contains("slowest"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steps_own_traceparent_is_kept_and_not_reported() {
    let (url, seen) = recording_server(|_| 0).await;
    let own = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let plan = Plan::from_toml_str(
        &format!(
            "[options]\ntrace = true\n[scenarios.a]\nendpoint_type = \"read_crud\"\nexecutor = \"shared-iterations\"\nvus = 1\niterations = 3\n[[scenarios.a.steps]]\nurl = \"/items\"\nheaders = {{ traceparent = \"{own}\" }}\n"
        ),
        "p.toml",
    )
    .unwrap();
    let summary = powertune_load::run(&RunOptions::new(plan, url))
        .await
        .unwrap();
    let seen = seen.lock().clone();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|s| s.traceparent == [own]), "{seen:?}");
    assert!(summary.http.slowest.is_empty());
}
