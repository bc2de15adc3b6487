//! Budgets: spend checked before a call and added after it; a spent budget answers
//! each API's own 429 (nothing sent upstream) or sends the call to its fallback; with
//! `[shared]` two replicas on one real Redis hold one budget together.
// Test code: helpers outside #[test] functions may unwrap, panic and print (clippy.toml
// allows it only inside them).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod cost_support;

use cost_support::*;
use powertune_gateway::budget::{period_at, unix_now, PeriodKind};
use powertune_test_support::redis_db::TestRedis;
use serde_json::Value;
use std::time::{Duration, Instant};

/// A call costs 3,900 n$ ($0.0000039; see tests/cost.rs): a limit of exactly that
/// lets one call through and refuses the next (spent ≥ limit).
const ONE_CALL: &str = "0.0000039";

#[tokio::test]
async fn a_spent_budget_answers_each_apis_own_429_and_sends_nothing() {
    let sim = sim().await;
    let s = serve(&config(
        &sim.url(),
        PRICING,
        &format!("[budgets]\n\"route:latency\" = {{ daily_usd = {ONE_CALL} }}\n"),
    ))
    .await;
    let c = http();
    let (st, text) = status_and_body(call(&c, &s.url, "openai", "latency", false).await).await;
    assert_eq!(st, 200, "{text}");
    let upstream = sim.stats().totals.calls;
    let today = period_at(PeriodKind::Day, unix_now()).label;
    let said = format!(
        "budget \"route:latency\" is spent: $0.0000039 of its $0.0000039 daily limit (UTC day {today}); it resets at "
    );
    for front in ["openai", "anthropic", "ollama"] {
        let r = call(&c, &s.url, front, "latency", false).await;
        assert_eq!(r.status(), 429, "{front}");
        let ra: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=86_400).contains(&ra), "{ra}");
        let v: Value = r.json().await.unwrap();
        let message = match front {
            "openai" => {
                assert_eq!(v["error"]["type"], "rate_limit_error", "{v}");
                assert_eq!(v["error"]["code"], "rate_limit_exceeded", "{v}");
                v["error"]["message"].as_str().unwrap().to_string()
            }
            "anthropic" => {
                assert_eq!(v["type"], "error", "{v}");
                assert_eq!(v["error"]["type"], "rate_limit_error", "{v}");
                v["error"]["message"].as_str().unwrap().to_string()
            }
            _ => v["error"].as_str().unwrap().to_string(),
        };
        assert!(message.starts_with(&said), "{front}: {message}");
    }
    assert_eq!(sim.stats().totals.calls, upstream, "nothing went upstream");
    // another route class has no budget: it goes
    assert_eq!(
        call(&c, &s.url, "openai", "batch", false).await.status(),
        200
    );
    let lines = s.calls();
    assert_eq!(lines[1]["status"], 429);
    assert_eq!(lines[1]["route"], "latency");
    assert_eq!(lines[1]["cost_usd"], Value::Null);
    let b = &s.gw.status().cost.unwrap().budgets[0];
    assert_eq!(
        (b.budget.as_str(), b.period.as_str()),
        ("route:latency", "day")
    );
    assert_eq!(
        (b.spent_usd, b.limit_usd, b.exceeded, b.refused),
        (0.0000039, 0.0000039, true, 3)
    );
    let m = scrape(&c, &s.url).await;
    let refused = m
        .samples
        .iter()
        .find(|x| x.metric == "powertune_gateway_budget_decisions_total")
        .unwrap();
    assert_eq!(refused.labels.get("decision"), Some("refused"));
    assert_eq!(value(&refused.value), 3.0);
    // /status with cost and budgets matches its schema
    let snap = serde_json::to_value(s.gw.status()).unwrap();
    powertune_test_support::schema::check::<powertune_gateway::StatusMetrics>(
        "gateway-status.v1",
        &snap,
    );
}

#[tokio::test]
async fn a_spent_budget_with_a_fallback_sends_calls_to_the_cheaper_route() {
    let sim = sim().await;
    let s = serve(&config(
        &sim.url(),
        PRICING,
        &format!(
            "[budgets]\n\"route:batch\" = {{ daily_usd = {ONE_CALL}, fallback = \"route:bulk\" }}\n\"client:web\" = {{ monthly_usd = 0.00001, fallback = \"cheap\" }}\n"
        ),
    ))
    .await;
    let c = http();
    let provider = |r: &reqwest::Response| {
        r.headers()["x-powertune-provider"]
            .to_str()
            .unwrap()
            .to_string()
    };
    let r = call(&c, &s.url, "openai", "batch", false).await;
    assert_eq!((r.status().as_u16(), provider(&r)), (200, "oai".into()));
    // route:batch is spent: the call takes route bulk (Ollama) instead
    let r = call(&c, &s.url, "anthropic", "batch", true).await;
    assert_eq!((r.status().as_u16(), provider(&r)), (200, "oll".into()));
    r.text().await.unwrap();
    // the client's monthly $0.00001: two calls on latency spend it (3 × 3,900 n$)
    let r = call(&c, &s.url, "openai", "latency", false).await;
    assert_eq!((r.status().as_u16(), provider(&r)), (200, "oai".into()));
    let r = call(&c, &s.url, "openai", "latency", false).await;
    assert_eq!((r.status().as_u16(), provider(&r)), (200, "oai".into()));
    // now over the client's budget: its fallback alias "cheap"
    let r = call(&c, &s.url, "openai", "latency", false).await;
    assert_eq!((r.status().as_u16(), provider(&r)), (200, "oll".into()));
    let lines = s.calls();
    assert_eq!(lines[1]["route"], "bulk");
    assert_eq!(lines[1]["provider"], "oll");
    assert_eq!(
        lines[4]["route"],
        Value::Null,
        "an alias fallback has no route class"
    );
    let st = s.gw.status().cost.unwrap();
    let find = |name: &str| st.budgets.iter().find(|b| b.budget == name).unwrap();
    assert_eq!(find("route:batch").fallbacks, 1);
    assert_eq!(find("route:batch").fallback.as_deref(), Some("route:bulk"));
    assert_eq!(find("client:web").fallbacks, 1);
    assert_eq!(find("client:web").spent_usd, 0.0000117);
    assert_eq!(find("route:batch").refused + find("client:web").refused, 0);
}

/// Waits (at most 10 s) until the Redis key of `budget` today holds `want`.
async fn wait_spend(redis: &TestRedis, prefix: &str, budget: &str, want: i64) {
    let key = format!(
        "{prefix}:budget:{{{budget}}}:{}",
        period_at(PeriodKind::Day, unix_now()).label
    );
    let mut con = redis.connection().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got: Option<i64> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut con)
            .await
            .unwrap();
        if got == Some(want) {
            let ttl: i64 = redis::cmd("TTL")
                .arg(&key)
                .query_async(&mut con)
                .await
                .unwrap();
            assert!(ttl > 0 && ttl <= 86_400 + 3_600, "{key} expires in {ttl}s");
            return;
        }
        assert!(Instant::now() < deadline, "{key} = {got:?}, not {want}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn wait_shared(s: &Served) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.gw.status().shared.map(|x| x.mode).as_deref() != Some("shared") {
        assert!(Instant::now() < deadline, "{} never shared", s.url);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_redis_hold_one_budget() {
    let redis = TestRedis::reserve().await;
    let sim = sim().await;
    let prefix = "t-budget";
    // $0.00001 a day for route latency: 3 calls of 3,900 n$ reach it
    let toml = config(
        &sim.url(),
        PRICING,
        &format!(
            "[budgets]\n\"route:latency\" = {{ daily_usd = 0.00001 }}\n[shared]\nredis_url = \"{}\"\nkey_prefix = \"{prefix}\"\ncache = \"5ms\"\n",
            redis.url
        ),
    );
    let (a, b) = (serve(&toml).await, serve(&toml).await);
    wait_shared(&a).await;
    wait_shared(&b).await;
    let c = http();
    assert_eq!(
        call(&c, &a.url, "openai", "latency", false).await.status(),
        200
    );
    wait_spend(&redis, prefix, "route:latency", 3_900).await;
    assert_eq!(
        call(&c, &b.url, "openai", "latency", false).await.status(),
        200
    );
    wait_spend(&redis, prefix, "route:latency", 7_800).await;
    // each replica alone spent under half; the fleet 7,800 n$: one more call goes
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        call(&c, &a.url, "openai", "latency", false).await.status(),
        200
    );
    wait_spend(&redis, prefix, "route:latency", 11_700).await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    // b made one call of 3,900 n$ itself, yet refuses: the fleet is at 11,700
    let (st, text) = status_and_body(call(&c, &b.url, "openai", "latency", false).await).await;
    assert_eq!(st, 429, "{text}");
    assert!(
        text.contains("$0.0000117 of its $0.00001 daily limit"),
        "{text}"
    );
    let (st, _) = status_and_body(call(&c, &a.url, "anthropic", "latency", false).await).await;
    assert_eq!(st, 429);
    let bs = &b.gw.status().cost.unwrap().budgets[0];
    assert_eq!((bs.spent_usd, bs.exceeded), (0.0000117, true));
    assert_eq!(sim.stats().totals.calls, 3);
    redis.release().await;
}
