//! The embedded target over real loopback HTTP (reqwest) and WebSocket
//! (tokio-tungstenite) clients. Server-side counts are compared with the client's.
// Test code: helpers outside #[test] functions may unwrap, panic and print (clippy.toml
// allows it only inside them).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

use futures_util::{SinkExt, StreamExt};
use powertune_target::{start, Latency, Route, RunningTarget, TargetConfig, TargetError};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const MONITORING: &str = "{\"channel\":\"MonitoringChannel\"}";

fn quick_config() -> TargetConfig {
    let mut c = TargetConfig::default();
    for key in ["login", "execute", "missions", "dashboard"] {
        let r = c.routes.get_mut(key).unwrap();
        r.db = Latency::fixed(Duration::from_millis(2));
        r.work = Latency::none();
    }
    c
}

async fn serve(c: TargetConfig) -> RunningTarget {
    start(c, "127.0.0.1:0".parse().unwrap()).await.unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn login(c: &reqwest::Client, base: &str) -> String {
    let r = c
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": "ana@example.com", "password": "demo"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["token"].as_str().unwrap().to_string()
}

/// Parses Prometheus text into `name{labels}` → value, checking every line's shape.
fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            assert!(
                rest.starts_with("HELP ") || rest.starts_with("TYPE "),
                "bad comment line {line:?}"
            );
            continue;
        }
        let (key, value) = line.rsplit_once(' ').expect("metric line has a value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let name_end = key.find('{').unwrap_or(key.len());
        let name = &key[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        if name_end < key.len() {
            assert!(key.ends_with('}'), "unclosed labels in {line:?}");
        }
        assert!(
            out.insert(key.to_string(), value).is_none(),
            "duplicate {key}"
        );
    }
    out
}

#[tokio::test]
async fn login_returns_a_token_and_bad_credentials_get_401() {
    let t = serve(quick_config()).await;
    let c = client();
    let base = t.base_url();
    let token = login(&c, &base).await;
    assert!(token.len() >= 32, "{token}");
    let other = login(&c, &base).await;
    assert_ne!(token, other, "tokens are random");

    let r = c
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": "ana@example.com", "password": "wrong"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], 401);
    assert!(v["error"].as_str().unwrap().contains("invalid"));

    let r = c
        .post(format!("{base}/api/v1/auth/login"))
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let s = t.stats();
    assert_eq!(s.count(Route::Login, 200), 2);
    assert_eq!(s.count(Route::Login, 401), 1);
    assert_eq!(s.count(Route::Login, 400), 1);
    assert_eq!(s.active_tokens, 2);
    t.shutdown().await;
}

#[tokio::test]
async fn execute_requires_a_valid_token() {
    let t = serve(quick_config()).await;
    let c = client();
    let base = t.base_url();
    let url = format!("{base}/api/v1/ai/agents/42/execute");
    let r = c.post(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = c.post(&url).bearer_auth("forged").send().await.unwrap();
    assert_eq!(r.status(), 401);

    let token = login(&c, &base).await;
    let r = c
        .post(&url)
        .bearer_auth(&token)
        .json(&json!({"input": "summarise the retry set"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["agent_id"], "42");
    assert_eq!(v["status"], "completed");
    assert_eq!(v["usage"]["input_tokens"], 4);
    assert!(v["output"].as_str().unwrap().split(' ').count() >= 32);
    assert!(v["duration_ms"].as_f64().unwrap() >= 2.0);

    let r = c
        .post(format!("{base}/api/v1/ai/agents/x%20y/execute"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = c
        .post(&url)
        .bearer_auth(&token)
        .body("[1]")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let s = t.stats();
    assert_eq!(s.count(Route::Execute, 401), 2);
    assert_eq!(s.count(Route::Execute, 200), 1);
    assert_eq!(s.executions_total, 1);
    t.shutdown().await;
}

#[tokio::test]
async fn missions_are_created_and_the_dashboard_reflects_them() {
    let t = serve(quick_config()).await;
    let c = client();
    let base = t.base_url();
    let token = login(&c, &base).await;
    let dash = format!("{base}/api/v1/ai/monitoring/dashboard");
    assert_eq!(c.get(&dash).send().await.unwrap().status(), 401);
    let before: Value = c
        .get(&dash)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(before["missions"]["total"], 0);

    let r = c
        .post(format!("{base}/api/v1/ai/missions"))
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    for i in 0..3 {
        let r = c
            .post(format!("{base}/api/v1/ai/missions"))
            .bearer_auth(&token)
            .json(&json!({"name": format!("triage {i}"), "agent_id": 7}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        assert!(r.headers().get("location").is_some());
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["mission"]["id"], i + 1);
        assert_eq!(v["mission"]["created_by"], "ana@example.com");
        assert_eq!(v["mission"]["agent_id"], "7");
    }
    let after: Value = c
        .get(&dash)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(after["missions"]["total"], 3);
    let recent = after["missions"]["recent"].as_array().unwrap();
    assert_eq!(recent.len(), 3);
    assert_eq!(recent[0]["name"], "triage 2", "newest first");
    assert_eq!(after["db_pool"]["size"], 25);
    // login + 2 dashboards before this one is counted + 4 mission posts
    assert!(after["requests"]["total"].as_u64().unwrap() >= 6);
    assert_eq!(t.stats().missions_total, 3);
    t.shutdown().await;
}

#[tokio::test]
async fn a_small_pool_makes_requests_queue() {
    let mut cfg = quick_config();
    cfg.pool_size = 2;
    cfg.routes.execute.db = Latency::fixed(Duration::from_millis(200));
    let t = serve(cfg).await;
    let c = client();
    let base = t.base_url();
    let token = login(&c, &base).await;
    let started = Instant::now();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..10 {
        let (c, url, token, done) = (
            c.clone(),
            format!("{base}/api/v1/ai/agents/{i}/execute"),
            token.clone(),
            done_tx.clone(),
        );
        tokio::spawn(async move {
            let t0 = Instant::now();
            let r = c.post(url).bearer_auth(token).send().await.unwrap();
            assert_eq!(r.status(), 200);
            let _ = done.send(t0.elapsed());
        });
    }
    drop(done_tx);
    // While the requests run, the pool is full and others wait: wait for that state.
    let mut full = t.stats().pool;
    for _ in 0..500 {
        if full.in_use == 2 && full.waiting > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
        full = t.stats().pool;
    }
    assert_eq!((full.in_use, full.waiting > 0), (2, true), "{full:?}");
    let mid = parse_metrics(
        &c.get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(mid["powertune_target_db_pool_in_use"], 2.0);
    assert!(mid["powertune_target_db_pool_waiting"] > 0.0, "{mid:?}");
    // The first answer arrives while later requests still queue for a slot.
    let first = done_rx.recv().await.expect("a first answer");
    let at_first = t.stats().pool;
    assert!(at_first.acquired < 10, "{at_first:?}");
    let mut latencies = vec![first];
    while let Some(l) = done_rx.recv().await {
        latencies.push(l);
    }
    let total = started.elapsed();
    assert_eq!(latencies.len(), 10);
    latencies.sort();
    // 10 requests, 2 at a time, 200 ms each: 5 rounds.
    assert!(total >= Duration::from_millis(950), "{total:?}");
    assert!(total < Duration::from_secs(5), "{total:?}");
    assert!(latencies[9] >= Duration::from_millis(900), "{latencies:?}");
    assert!(latencies[0] < latencies[9], "{latencies:?}");
    let s = t.stats();
    assert!(s.pool.waiting_max >= 4, "{:?}", s.pool);
    assert_eq!((s.pool.waiting, s.pool.in_use), (0, 0));
    assert_eq!(s.count(Route::Execute, 200), 10);
    t.shutdown().await;
}

#[tokio::test]
async fn cpu_work_queues_for_its_worker_threads_with_the_pool_free() {
    let mut cfg = quick_config();
    cfg.cpu_workers = 1;
    cfg.routes.dashboard.db = Latency::none();
    cfg.routes.dashboard.cpu = Duration::from_millis(40);
    let t = serve(cfg).await;
    let c = client();
    let base = t.base_url();
    let token = login(&c, &base).await;
    let started = Instant::now();
    let mut calls = Vec::new();
    for _ in 0..6 {
        let (c, url, token) = (
            c.clone(),
            format!("{base}/api/v1/ai/monitoring/dashboard"),
            token.clone(),
        );
        calls.push(tokio::spawn(async move {
            c.get(url).bearer_auth(token).send().await.unwrap().status()
        }));
    }
    // One thread, six requests: the others wait for it, and the pool stays free.
    let mut seen = parse_metrics(&t.metrics_text());
    for _ in 0..500 {
        if seen["powertune_target_cpu_waiting"] > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
        seen = parse_metrics(&t.metrics_text());
    }
    assert!(seen["powertune_target_cpu_waiting"] > 0.0, "{seen:?}");
    assert_eq!(seen["powertune_target_cpu_busy"], 1.0);
    assert_eq!(seen["powertune_target_cpu_workers"], 1.0);
    assert_eq!(seen["powertune_target_db_pool_in_use"], 0.0);
    for call in calls {
        assert_eq!(call.await.unwrap(), 200);
    }
    // Six 40 ms pieces of work on one thread cannot take less than 240 ms.
    let total = started.elapsed();
    assert!(total >= Duration::from_millis(235), "{total:?}");
    let after = parse_metrics(&t.metrics_text());
    assert!(
        after["powertune_target_cpu_seconds_total"] >= 0.235,
        "{after:?}"
    );
    assert_eq!(after["powertune_target_cpu_waiting"], 0.0);
    t.shutdown().await;
}

#[tokio::test]
async fn a_pool_timeout_answers_503() {
    let mut cfg = quick_config();
    cfg.pool_size = 1;
    cfg.pool_timeout = Duration::from_millis(100);
    cfg.routes.missions.db = Latency::fixed(Duration::from_millis(400));
    let t = serve(cfg).await;
    let c = client();
    let base = t.base_url();
    let token = login(&c, &base).await;
    let url = format!("{base}/api/v1/ai/missions");
    let (a, b) = tokio::join!(
        c.post(&url).bearer_auth(&token).send(),
        c.post(&url).bearer_auth(&token).send()
    );
    let mut statuses = [a.unwrap().status().as_u16(), b.unwrap().status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [201, 503]);
    assert_eq!(t.stats().pool.timeouts, 1);
    t.shutdown().await;
}

/// Whether `request` answers before `stall` has passed: the ordering that tells an
/// unstalled request from a held one.
async fn answers_within<F: std::future::Future>(stall: Duration, request: F) -> Option<F::Output> {
    tokio::select! {
        biased;
        r = request => Some(r),
        _ = tokio::time::sleep(stall) => None,
    }
}

#[tokio::test]
async fn a_stall_holds_requests_until_it_ends() {
    const STALL: Duration = Duration::from_millis(500);
    let t = serve(quick_config()).await;
    let c = client();
    let url = format!("{}/health", t.base_url());
    let before = answers_within(STALL, c.get(&url).send())
        .await
        .expect("answered before a stall's length passed");
    assert_eq!(before.unwrap().status(), 200);
    let stalled_at = Instant::now();
    t.stall(STALL);
    let (a, b) = tokio::join!(c.get(&url).send(), c.get(&url).send());
    let answered_at = Instant::now();
    assert_eq!(
        (a.unwrap().status().as_u16(), b.unwrap().status().as_u16()),
        (200, 200)
    );
    // Held until the stall's end, not answered before it.
    assert!(
        answered_at >= stalled_at + STALL,
        "{:?}",
        answered_at - stalled_at
    );
    assert!(answered_at - stalled_at < Duration::from_secs(3));
    // After the stall, requests are quick again.
    let after = answers_within(STALL, c.get(&url).send())
        .await
        .expect("answered before a stall's length passed");
    assert_eq!(after.unwrap().status(), 200);
    t.shutdown().await;
}

#[tokio::test]
async fn injected_error_rate_is_close_to_configured() {
    let mut cfg = quick_config();
    cfg.set_error_rate("health=0.2").unwrap();
    cfg.extra_delay = Duration::from_millis(1);
    let t = serve(cfg).await;
    let c = client();
    let url = format!("{}/health", t.base_url());
    let mut failed = 0u64;
    for _ in 0..500 {
        let r = c.get(&url).send().await.unwrap();
        match r.status().as_u16() {
            200 => {}
            500 => failed += 1,
            s => panic!("unexpected status {s}"),
        }
    }
    // Binomial(500, 0.2): mean 100, sd ≈ 9.
    assert!((60..=140).contains(&failed), "{failed} of 500 failed");
    let s = t.stats();
    assert_eq!(s.count(Route::Health, 500), failed);
    assert_eq!(s.count(Route::Health, 200), 500 - failed);
    assert_eq!(s.total, 500);
    t.shutdown().await;
}

#[tokio::test]
async fn metrics_parse_and_counts_equal_requests_sent() {
    let t = serve(quick_config()).await;
    let c = client();
    let base = t.base_url();
    let token = login(&c, &base).await;
    for _ in 0..7 {
        assert_eq!(
            c.get(format!("{base}/health"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    for i in 0..5 {
        let r = c
            .post(format!("{base}/api/v1/ai/agents/{i}/execute"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    for _ in 0..3 {
        let r = c
            .get(format!("{base}/api/v1/ai/monitoring/dashboard"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    assert_eq!(
        c.get(format!("{base}/nope")).send().await.unwrap().status(),
        404
    );

    let r = c.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = r.text().await.unwrap();
    // One family per name: no gauge shares its name with a counter's (the counter's
    // name without `_total`, as OpenMetrics names the family).
    let mut families: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(|n| n.strip_suffix("_total").unwrap_or(n))
        .collect();
    let n = families.len();
    families.sort_unstable();
    families.dedup();
    assert_eq!(families.len(), n, "{text}");
    let m = parse_metrics(&text);
    let req = |route: &str, status: u16| {
        m.get(&format!(
            "powertune_target_requests_total{{route=\"{route}\",status=\"{status}\"}}"
        ))
        .copied()
        .unwrap_or(0.0)
    };
    assert_eq!(req("/health", 200), 7.0);
    assert_eq!(req("/api/v1/ai/agents/{id}/execute", 200), 5.0);
    assert_eq!(req("/api/v1/auth/login", 200), 1.0);
    assert_eq!(req("/api/v1/ai/monitoring/dashboard", 401), 3.0);
    assert_eq!(req("other", 404), 1.0);
    let sum: f64 = m
        .iter()
        .filter(|(k, _)| k.starts_with("powertune_target_requests_total{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(sum, 17.0, "scrapes are not counted");
    assert_eq!(t.stats().total, 17);

    let h = "powertune_target_request_duration_seconds";
    let route = "route=\"/api/v1/ai/agents/{id}/execute\"";
    assert_eq!(m[&format!("{h}_count{{{route}}}")], 5.0);
    assert_eq!(m[&format!("{h}_bucket{{{route},le=\"+Inf\"}}")], 5.0);
    // Buckets are cumulative: sorted by `le`, counts never decrease.
    let prefix = format!("{h}_bucket{{{route},le=\"");
    let mut buckets: Vec<(f64, f64)> = m
        .iter()
        .filter_map(|(k, v)| {
            let le = k.strip_prefix(&prefix)?.strip_suffix("\"}")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            Some((le, *v))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(buckets.len() >= 10, "{buckets:?}");
    assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{buckets:?}");
    assert_eq!(buckets.last().unwrap().1, 5.0);
    assert!(
        m[&format!("{h}_sum{{{route}}}")] >= 0.010,
        "5 × 2 ms of pool time"
    );
    assert_eq!(m["powertune_target_db_pool_size"], 25.0);
    assert_eq!(m["powertune_target_db_pool_in_use"], 0.0);
    assert_eq!(m["powertune_target_websocket_connections"], 0.0);
    assert_eq!(
        m["powertune_target_websocket_connections_opened_total"],
        0.0
    );
    assert!(!m.contains_key("powertune_target_websocket_connections_total"));
    assert_eq!(m["powertune_target_db_pool_timeouts_total"], 0.0);
    assert_eq!(m["powertune_target_agent_executions_total"], 5.0);
    t.shutdown().await;
}

#[tokio::test]
async fn oversized_bodies_and_unknown_routes_get_json_errors() {
    let mut cfg = quick_config();
    cfg.max_body_bytes = 1024;
    let t = serve(cfg).await;
    let c = client();
    let base = t.base_url();
    let r = c
        .post(format!("{base}/api/v1/auth/login"))
        .body(vec![b'x'; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let r = c
        .get(format!("{base}/api/v2/nothing"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], 404);
    let r = c
        .get(format!("{base}/api/v1/auth/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    t.shutdown().await;
}

#[tokio::test]
async fn bad_config_and_busy_port_are_errors() {
    let cfg = TargetConfig {
        pool_size: 0,
        ..Default::default()
    };
    let e = start(cfg, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(e, TargetError::Config(_)), "{e}");
    assert_eq!(
        e.to_string(),
        "target settings: pool_size: 0 must be between 1 and 10000, e.g. pool_size = 25"
    );

    let t = serve(quick_config()).await;
    let e = start(quick_config(), t.addr()).await.unwrap_err();
    assert!(matches!(e, TargetError::Bind { .. }), "{e}");
    assert!(e.to_string().contains(&t.addr().to_string()), "{e}");
    t.shutdown().await;
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn cable_connect(url: &str) -> Ws {
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "actioncable-v1-json".parse().unwrap(),
    );
    let (ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(
        resp.headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some("actioncable-v1-json")
    );
    ws
}

/// The next JSON text message, within 5 s.
async fn next_json(ws: &mut Ws) -> Option<Value> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a message within 5 s");
        match msg {
            Some(Ok(Message::Text(t))) => return Some(serde_json::from_str(t.as_str()).unwrap()),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => continue,
        }
    }
}

/// The next message that is not a ping.
async fn next_non_ping(ws: &mut Ws) -> Option<Value> {
    for _ in 0..50 {
        let v = next_json(ws).await?;
        if v["type"] != "ping" {
            return Some(v);
        }
    }
    panic!("only pings")
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

fn cable_config() -> TargetConfig {
    let mut c = quick_config();
    c.cable.broadcast_interval = Duration::from_millis(100);
    c.cable.ping_interval = Duration::from_millis(150);
    c
}

#[tokio::test]
async fn cable_welcome_subscribe_broadcast_unsubscribe() {
    let t = serve(cable_config()).await;
    let mut ws = cable_connect(&t.cable_url()).await;
    assert_eq!(
        next_json(&mut ws).await.unwrap(),
        json!({"type": "welcome"})
    );

    send(
        &mut ws,
        json!({"command": "subscribe", "identifier": MONITORING}),
    )
    .await;
    let confirm = next_non_ping(&mut ws).await.unwrap();
    assert_eq!(
        confirm,
        json!({"identifier": MONITORING, "type": "confirm_subscription"})
    );
    assert_eq!(t.stats().cable.subscriptions, 1);

    let mut saw_ping = false;
    let mut broadcast = None;
    for _ in 0..20 {
        let v = next_json(&mut ws).await.unwrap();
        if v["type"] == "ping" {
            assert!(v["message"].as_u64().unwrap() > 1_600_000_000);
            saw_ping = true;
        } else if v.get("message").is_some() {
            broadcast = Some(v);
        }
        if saw_ping && broadcast.is_some() {
            break;
        }
    }
    assert!(saw_ping, "pings arrive");
    let b = broadcast.expect("a broadcast");
    assert_eq!(b["identifier"], MONITORING);
    assert_eq!(b["message"]["type"], "monitoring_update");
    assert_eq!(b["message"]["cable"]["subscriptions"], 1);
    assert!(b["message"]["missions"]["total"].is_u64());

    send(
        &mut ws,
        json!({"command": "unsubscribe", "identifier": MONITORING}),
    )
    .await;
    // After unsubscribing, only pings arrive; wait out several broadcast intervals.
    let until = Instant::now() + Duration::from_millis(600);
    let mut after_unsub = 0;
    let mut grace = true;
    while Instant::now() < until {
        let v = next_json(&mut ws).await.unwrap();
        if v.get("identifier").is_some() {
            // One broadcast may already have been in flight.
            assert!(grace, "broadcast after unsubscribe: {v}");
            grace = false;
        } else {
            assert_eq!(v["type"], "ping");
            after_unsub += 1;
        }
    }
    assert!(after_unsub >= 2);
    assert_eq!(t.stats().cable.subscriptions, 0);
    assert!(t.stats().cable.broadcasts >= 1);

    ws.close(None).await.unwrap();
    for _ in 0..100 {
        if t.stats().cable.connections == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s = t.stats();
    assert_eq!((s.cable.connections, s.cable.connections_total), (0, 1));
    assert_eq!(s.count(Route::Cable, 101), 1);
    t.shutdown().await;
}

#[tokio::test]
async fn cable_rejects_unknown_channels() {
    let t = serve(cable_config()).await;
    let mut ws = cable_connect(&t.cable_url()).await;
    assert_eq!(next_json(&mut ws).await.unwrap()["type"], "welcome");
    let id = "{\"channel\":\"AdminChannel\"}";
    send(&mut ws, json!({"command": "subscribe", "identifier": id})).await;
    assert_eq!(
        next_non_ping(&mut ws).await.unwrap(),
        json!({"identifier": id, "type": "reject_subscription"})
    );
    send(
        &mut ws,
        json!({"command": "subscribe", "identifier": "not json"}),
    )
    .await;
    assert_eq!(
        next_non_ping(&mut ws).await.unwrap()["type"],
        "reject_subscription"
    );
    assert_eq!(t.stats().cable.subscriptions, 0);
    t.shutdown().await;
}

#[tokio::test]
async fn cable_token_requirement() {
    let mut cfg = cable_config();
    cfg.cable.require_token = true;
    let t = serve(cfg).await;
    let mut ws = cable_connect(&t.cable_url()).await;
    assert_eq!(
        next_json(&mut ws).await.unwrap(),
        json!({"type": "disconnect", "reason": "unauthorized", "reconnect": false})
    );
    assert!(next_json(&mut ws).await.is_none(), "closed after refusal");

    let token = login(&client(), &t.base_url()).await;
    let mut ws = cable_connect(&format!("{}?token={token}", t.cable_url())).await;
    assert_eq!(next_json(&mut ws).await.unwrap()["type"], "welcome");
    t.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_websocket_clients() {
    let t = serve(cable_config()).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut ws = cable_connect(&t.cable_url()).await;
        assert_eq!(next_json(&mut ws).await.unwrap()["type"], "welcome");
        send(
            &mut ws,
            json!({"command": "subscribe", "identifier": MONITORING}),
        )
        .await;
        assert_eq!(
            next_non_ping(&mut ws).await.unwrap()["type"],
            "confirm_subscription"
        );
        clients.push(ws);
    }
    assert_eq!(t.stats().cable.connections, 3);
    let base = t.base_url();
    let started = Instant::now();
    t.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(5));
    for mut ws in clients {
        let mut saw_disconnect = false;
        while let Some(v) = next_json(&mut ws).await {
            if v["type"] == "disconnect" {
                assert_eq!(v["reason"], "server_restart");
                saw_disconnect = true;
            }
        }
        assert!(saw_disconnect);
    }
    // The port no longer answers.
    let r = client().get(format!("{base}/health")).send().await;
    assert!(r.is_err(), "{r:?}");
}

#[tokio::test]
async fn many_subscribers_all_get_broadcasts_and_the_cap_answers_503() {
    let mut cfg = cable_config();
    cfg.cable.max_connections = 100;
    let t = serve(cfg).await;
    let mut clients = Vec::new();
    for _ in 0..100 {
        let mut ws = cable_connect(&t.cable_url()).await;
        assert_eq!(next_json(&mut ws).await.unwrap()["type"], "welcome");
        send(
            &mut ws,
            json!({"command": "subscribe", "identifier": MONITORING}),
        )
        .await;
        clients.push(ws);
    }
    for ws in &mut clients {
        assert_eq!(
            next_non_ping(ws).await.unwrap()["type"],
            "confirm_subscription"
        );
    }
    let s = t.stats();
    assert_eq!((s.cable.connections, s.cable.subscriptions), (100, 100));
    // One more is refused before the upgrade.
    let refused = tokio_tungstenite::connect_async(t.cable_url()).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 503)
        }
        other => panic!("expected a 503, got {other:?}"),
    }
    for ws in &mut clients {
        let b = next_non_ping(ws).await.unwrap();
        assert_eq!(b["identifier"], MONITORING);
        assert_eq!(b["message"]["type"], "monitoring_update");
    }
    t.shutdown().await;
}
