//! The target's own spans, exported over OTLP/HTTP to a real `powertune apm` receiver
//! started in-process: each request continues the `traceparent` it came with, its
//! database work shows as DB time, its Redis cache reads as cache lookups per cache
//! type; and a collector that never answers does not slow requests down.
// Test code: helpers outside #[test] functions may unwrap, panic and print (clippy.toml
// allows it only inside them).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

use powertune_apm::collect::receiver as client;
use powertune_apm::server::{self, ServeConfig};
use powertune_apm::{Engine, EngineConfig};
use powertune_target::{start, Latency, TargetConfig};
use serde_json::json;
use std::time::{Duration, Instant};

fn quick_config() -> TargetConfig {
    let mut c = TargetConfig::default();
    for key in ["login", "execute", "missions", "dashboard"] {
        let r = c.routes.get_mut(key).unwrap();
        r.db = Latency::fixed(Duration::from_millis(5));
        r.work = Latency::none();
    }
    c.telemetry.flush_interval = Duration::from_millis(100);
    c
}

async fn apm() -> server::Running {
    let engine = Engine::new(EngineConfig::defaults(&powertune_core::Targets::default()));
    server::start(ServeConfig::new("127.0.0.1:0".parse().unwrap()), engine)
        .await
        .unwrap()
}

async fn summary(addr: std::net::SocketAddr) -> powertune_apm::Summary {
    client::fetch_summary(&client::base_url(&format!("http://{addr}")).unwrap(), None)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_the_apm_under_the_incoming_trace() {
    let receiver = apm().await;
    let redis = powertune_test_support::redis_db::TestRedis::reserve().await;
    let mut cfg = quick_config();
    cfg.telemetry.otlp_endpoint = Some(format!("http://{}", receiver.http_addr));
    cfg.redis.url = Some(redis.url.clone());
    cfg.redis.hold = Latency::none();
    let target = start(cfg, "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let base = target.base_url();
    let http = reqwest::Client::new();
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let login: serde_json::Value = http
        .post(format!("{base}/api/v1/auth/login"))
        .header("traceparent", &traceparent)
        .json(&json!({"email": "ana@example.com", "password": "demo"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().unwrap().to_string();
    for _ in 0..3 {
        let r = http
            .get(format!("{base}/api/v1/ai/monitoring/dashboard"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // user_profile: 1 miss then 2 hits; ai_pricing: 2 misses.
    for key in [
        "user_profile-7",
        "user_profile-7",
        "user_profile-7",
        "ai_pricing-1",
        "ai_pricing-2",
    ] {
        let r = http
            .get(format!("{base}/api/v1/cache/{key}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    target.shutdown().await; // sends what is queued
    let s = summary(receiver.http_addr).await;
    let login = s
        .routes
        .iter()
        .find(|r| r.route == "POST /api/v1/auth/login")
        .unwrap_or_else(|| panic!("no login route in {:?}", s.routes));
    assert_eq!(login.latency.count, 1);
    // The request span continued the incoming trace.
    assert_eq!(login.slowest[0].trace_id, trace_id);
    assert!(login.breakdown.db_ms >= 4.0, "{:?}", login.breakdown);
    let dash = s
        .routes
        .iter()
        .find(|r| r.route == "GET /api/v1/ai/monitoring/dashboard")
        .unwrap();
    assert_eq!(dash.latency.count, 3);
    assert_ne!(
        dash.slowest[0].trace_id, trace_id,
        "a new trace without traceparent"
    );
    let got: Vec<_> = s
        .cache
        .types
        .iter()
        .map(|t| (t.cache_type.as_str(), t.hits, t.lookups))
        .collect();
    assert_eq!(got, vec![("ai_pricing", 0, 2), ("user_profile", 2, 3)]);
    // The DB statement is the normalised one, under the request.
    let detail = client::fetch_endpoint(
        &client::base_url(&format!("http://{}", receiver.http_addr)).unwrap(),
        "POST /api/v1/auth/login",
        None,
    )
    .await
    .unwrap();
    let spans = &detail.slowest[0].spans;
    assert!(
        spans.iter().any(|n| n.category == "db"
            && n.detail
                .contains("FROM \"users\" WHERE \"users\".\"email\" = ?")),
        "{spans:#?}"
    );
    redis.release().await;
    receiver.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_never_answers_does_not_slow_requests() {
    // Accepts connections and never reads or answers.
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut cfg = quick_config();
    for key in ["login", "dashboard"] {
        cfg.routes.get_mut(key).unwrap().db = Latency::none();
    }
    cfg.telemetry.otlp_endpoint = Some(format!("http://{}", hole.local_addr().unwrap()));
    cfg.telemetry.max_queue = 64;
    cfg.telemetry.export_timeout = Duration::from_secs(10);
    let target = start(cfg, "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let base = target.base_url();
    let http = reqwest::Client::new();
    let started = Instant::now();
    for _ in 0..500 {
        let r = http.get(format!("{base}/health")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    // 500 requests whose spans cannot leave: far more than the queue holds and an
    // export that hangs for 10 s; a generous bound that a blocked request would break.
    let took = started.elapsed();
    assert!(took < Duration::from_secs(20), "500 requests took {took:?}");
    drop(target);
    drop(hole);
}
