//! `[shared]` and client keys: a client's own `rpm` and `tpm` held by two gateway
//! replicas (in-process, each on its own loopback port) through one real Redis, in
//! front of the provider simulator; with Redis stopped the client's limits go on on
//! each replica, and when it is back they are shared again.
// Test code: helpers outside #[test] functions may unwrap, panic and print (clippy.toml
// allows it only inside them).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod shared_support;

use powertune_test_support::redis_db::TestRedis;
use serde_json::{json, Value};
use shared_support::{config, free_port, http, replica, sim, wait_mode, OwnRedis, Replica};
use std::time::{Duration, Instant};

/// The client key of client `web` (its SHA-256 is in the config).
const KEY: &str = "k-web";
const KEY_SHA256: &str = "c7f39454528d01dfdfe5dd328d076632f5c1b95f47629aea5ab4c7b680ec25ae";

/// The shared test config with client `web` (`limits`: its rpm and tpm lines).
fn with_client(base: String, limits: &str) -> String {
    format!("{base}\n[[clients]]\nname = \"web\"\nkey_sha256 = \"{KEY_SHA256}\"\n{limits}\n")
}

/// One answer: status, `Retry-After` and body.
struct Answer {
    status: u16,
    retry_after: Option<u64>,
    body: Value,
}

/// One call of client `web` in OpenAI's (`anthropic` false) or Anthropic's API.
async fn call(c: &reqwest::Client, r: &Replica, anthropic: bool, max_tokens: u32) -> Answer {
    let body = json!({"model": "fast", "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": "hi"}]});
    let req = match anthropic {
        true => c
            .post(format!("{}/v1/messages", r.url))
            .header("x-api-key", KEY),
        false => c
            .post(format!("{}/v1/chat/completions", r.url))
            .bearer_auth(KEY),
    };
    let resp = req.json(&body).send().await.unwrap();
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let body = resp.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        retry_after,
        body,
    }
}

/// The client's 429 in the API it called: its message.
fn client_429(a: &Answer, anthropic: bool) -> String {
    assert_eq!(a.status, 429, "{}", a.body);
    assert!(a.retry_after.is_some_and(|s| s >= 1), "no Retry-After");
    let (kind, message) = match anthropic {
        true => {
            assert_eq!(a.body["type"], "error", "{}", a.body);
            (&a.body["error"]["type"], &a.body["error"]["message"])
        }
        false => (&a.body["error"]["type"], &a.body["error"]["message"]),
    };
    assert_eq!(kind, "rate_limit_error", "{}", a.body);
    message.as_str().unwrap().to_string()
}

/// `n` calls alternating a (OpenAI's API), b (Anthropic's); per replica, the calls
/// that went through, and every refusal's message.
async fn alternate(c: &reqwest::Client, rs: [&Replica; 2], n: usize) -> ([usize; 2], Vec<String>) {
    let mut ok = [0, 0];
    let mut refused = Vec::new();
    for i in 0..n {
        let anthropic = i % 2 == 1;
        let a = call(c, rs[i % 2], anthropic, 3).await;
        match a.status {
            200 => ok[i % 2] += 1,
            _ => refused.push(client_429(&a, anthropic)),
        }
    }
    (ok, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_rpm_of_10_is_held_across_two_replicas() {
    let redis = TestRedis::reserve().await;
    let s = sim("").await;
    let toml = with_client(config(&s.url(), &redis.url, "t-crpm", "", ""), "rpm = 10");
    let (a, b) = (replica(&toml).await, replica(&toml).await);
    wait_mode(&a, "shared").await;
    wait_mode(&b, "shared").await;
    let c = http();
    let t = Instant::now();
    let (per, refused) = alternate(&c, [&a, &b], 30).await;
    let ok = per[0] + per[1];
    println!(
        "client rpm 10: {ok} of 30 calls accepted ({} on a, {} on b) in {:?}",
        per[0],
        per[1],
        t.elapsed()
    );
    // one more may come from the refill (one every 6 s) if the run is slow
    assert!((10..=11).contains(&ok), "{ok} calls went through: {per:?}");
    assert_eq!(refused.len(), 30 - ok);
    for m in &refused {
        assert!(
            m.starts_with("client \"web\" is over its limit of 10 requests per minute"),
            "{m}"
        );
    }
    assert_eq!(
        s.stats().totals.calls,
        ok as u64,
        "refused calls went upstream"
    );
    // each replica alone would have let 10 through: both were held
    assert!(per.iter().all(|n| *n < 10), "{per:?}");
    let mut con = redis.connection().await;
    let tat: Option<String> = redis::cmd("GET")
        .arg("t-crpm:{client:web}:rpm")
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(tat.is_some(), "the client's rpm key is not in Redis");
    let ttl: i64 = redis::cmd("PTTL")
        .arg("t-crpm:{client:web}:rpm")
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(
        (1..=62_000).contains(&ttl),
        "the key expires by itself: {ttl}"
    );
    for r in [&a, &b] {
        let m = r.gw.metrics_text();
        assert!(
            m.contains("result=\"rate_limited\"") && m.contains("client=\"web\""),
            "{m}"
        );
    }
    redis.release().await;
}

/// Waits (at most 5 s) until client `web`'s shared tpm bucket (prefix `t-ctpm`) holds
/// a level `ok` accepts; that level.
async fn level(
    con: &mut redis::aio::MultiplexedConnection,
    ok: impl Fn(f64) -> bool,
    why: &str,
) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let l: Option<f64> = redis::cmd("HGET")
            .arg("t-ctpm:{client:web}:tpm")
            .arg("l")
            .query_async(con)
            .await
            .unwrap();
        if let Some(l) = l.filter(|l| ok(*l)) {
            return l;
        }
        assert!(Instant::now() < deadline, "{why}: {l:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_tpm_reservation_on_one_replica_refuses_on_the_other() {
    let redis = TestRedis::reserve().await;
    // every answer takes 1.5 s: a's call holds its reservation meanwhile
    let s = sim("[models.\"gpt-4o-mini\"]\nttft = \"1500ms\"\n").await;
    let toml = with_client(config(&s.url(), &redis.url, "t-ctpm", "", ""), "tpm = 1500");
    let (a, b) = (replica(&toml).await, replica(&toml).await);
    wait_mode(&a, "shared").await;
    wait_mode(&b, "shared").await;
    let c = http();
    // the estimate: the body's bytes / 4 plus max_tokens 1000, over 1000 of 1500
    let mut con = redis.connection().await;
    let (first, refused) = tokio::join!(call(&c, &a, false, 1000), async {
        // once a's call has reserved: b alone holds a full bucket of 1500, the
        // fleet's has under 500 left
        let left = level(&mut con, |l| l < 600.0, "a's call reserved nothing").await;
        println!("client tpm 1500: {left:.0} left with a's call in flight");
        call(&c, &b, true, 1000).await
    });
    let m = client_429(&refused, true);
    assert!(
        m.starts_with("client \"web\" is over its limit of 1500 tokens per minute"),
        "{m}"
    );
    assert_eq!(first.status, 200, "{}", first.body);
    // a's call used a few tokens: the rest of its reservation goes back (just after
    // its answer), and b's call of the same size goes
    let left = level(
        &mut con,
        |l| l > 1100.0,
        "the reservation was not corrected",
    )
    .await;
    println!("client tpm 1500: {left:.0} left after a's call was corrected");
    let again = call(&c, &b, false, 1000).await;
    assert_eq!(again.status, 200, "{}", again.body);
    println!(
        "client tpm 1500: a's call of ~1000 reserved, b's refused ({m}), b's accepted after the correction"
    );
    assert_eq!(s.stats().totals.calls, 2);
    redis.release().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_client_limits_go_on_locally_and_share_again_when_it_is_back() {
    let port = free_port();
    let redis = OwnRedis::start(port).await;
    let s = sim("").await;
    let base = config(
        &s.url(),
        &format!("redis://127.0.0.1:{port}/0"),
        "t-clocal",
        "",
        "timeout = \"50ms\"\nretry_interval = \"100ms\"",
    );
    let toml = with_client(base, "rpm = 3");
    let (a, b) = (replica(&toml).await, replica(&toml).await);
    wait_mode(&a, "shared").await;
    wait_mode(&b, "shared").await;
    let c = http();
    // shared: 3 for the fleet
    let (per, _) = alternate(&c, [&a, &b], 8).await;
    assert_eq!(per[0] + per[1], 3, "{per:?}");

    // Redis goes away: each replica holds the client to its own 3, no call waits long
    redis.stop();
    let t = Instant::now();
    let (per, refused) = alternate(&c, [&a, &b], 10).await;
    println!(
        "Redis stopped: client rpm 3 accepted {per:?} on a, b of 10 calls in {:?}",
        t.elapsed()
    );
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!(per, [3, 3], "each replica's own limiter: {refused:?}");
    for r in [&a, &b] {
        assert_eq!(r.gw.status().shared.unwrap().mode, "local");
    }

    // back (empty: its keys went with it): both rejoin and hold one limit again
    let _redis = OwnRedis::start(port).await;
    wait_mode(&a, "shared").await;
    wait_mode(&b, "shared").await;
    let (per, _) = alternate(&c, [&a, &b], 8).await;
    println!("Redis back: client rpm 3 accepted {per:?} on a, b of 8 calls");
    assert_eq!(per[0] + per[1], 3, "{per:?}");
}
