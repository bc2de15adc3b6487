//! `[shared]`: two gateway replicas (in-process, each on its own loopback port) and
//! one real Redis, in front of the provider simulator. Five failures spread across
//! both open the breaker for both; a 10 rpm quota is held across both; with Redis
//! stopped mid-run calls go on on local state (said once), and when it is back the
//! replicas share again.
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

use powertune_provider_sim::SimHandle;
use powertune_test_support::redis_db::TestRedis;
use serde_json::json;
use shared_support::{config, free_port, http, replica, sim, wait_mode, OwnRedis, Replica};
use std::time::{Duration, Instant};

/// One chat call; its status.
async fn call(c: &reqwest::Client, r: &Replica) -> u16 {
    c.post(format!("{}/v1/chat/completions", r.url))
        .json(&json!({"model": "fast", "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn state(r: &Replica) -> String {
    r.gw.status().credentials[0].state.clone()
}

fn sim_calls(s: &SimHandle) -> u64 {
    s.stats().totals.calls
}

/// Calls `n` times, alternating between the replicas; the statuses.
async fn alternate(c: &reqwest::Client, rs: [&Replica; 2], n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(call(c, rs[i % 2]).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_failures_spread_across_two_replicas_open_the_breaker_for_both() {
    let redis = TestRedis::reserve().await;
    let s = sim("[faults]\nerror_rate = 1.0\n").await;
    let toml = config(&s.url(), &redis.url, "t-breaker", "", "");
    let (a, b) = (replica(&toml).await, replica(&toml).await);
    wait_mode(&a, "shared").await;
    wait_mode(&b, "shared").await;
    let c = http();

    // a, b, a, b: four failures, two on each; each replica alone is far from five
    assert_eq!(alternate(&c, [&a, &b], 4).await, vec![502; 4]);
    assert_eq!(state(&a), "closed");
    assert_eq!(state(&b), "closed");
    // the fifth, on b: the shared count is five
    assert_eq!(call(&c, &b).await, 502);
    // outcomes are recorded just after the answer: wait until Redis has the fifth
    let mut con = redis.connection().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s: Option<String> = redis::cmd("HGET")
            .arg("t-breaker:{oai/main}:breaker")
            .arg("s")
            .query_async(&mut con)
            .await
            .unwrap();
        if s.as_deref() == Some("1") && state(&b) == "open" {
            break;
        }
        assert!(Instant::now() < deadline, "the breaker did not open: {s:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(sim_calls(&s), 5);
    // a took only two failures itself, and still answers 503 at once: nothing sent
    assert_eq!(call(&c, &a).await, 503);
    assert_eq!(call(&c, &b).await, 503);
    assert_eq!(sim_calls(&s), 5, "an open breaker sent nothing upstream");
    assert_eq!(state(&a), "open");
    let sa = a.gw.status();
    assert_eq!(sa.credentials[0].consecutive_failures, 5);
    assert_eq!(sa.rejected_all_open, 1);
    let sh = sa.shared.unwrap();
    assert_eq!((sh.mode.as_str(), sh.fallbacks), ("shared", 0));
    assert!(sh.round_trips >= 3, "{sh:?}");
    redis.release().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_10_rpm_quota_is_held_across_two_replicas() {
    let redis = TestRedis::reserve().await;
    let s = sim("").await;
    let toml = config(&s.url(), &redis.url, "t-rpm", "rpm = 10\n  burst = 10", "");
    let (a, b) = (replica(&toml).await, replica(&toml).await);
    wait_mode(&a, "shared").await;
    wait_mode(&b, "shared").await;
    let c = http();
    let got = alternate(&c, [&a, &b], 30).await;
    let ok = got.iter().filter(|s| **s == 200).count();
    // one more may come from the refill (one every 6 s) if the run is slow
    assert!((10..=11).contains(&ok), "{ok} calls went through: {got:?}");
    assert!(got.iter().all(|s| *s == 200 || *s == 503), "{got:?}");
    assert_eq!(sim_calls(&s), ok as u64);
    // each replica alone would have let 10 through: both were held
    let per: Vec<usize> = [0, 1]
        .iter()
        .map(|r| {
            got.iter()
                .skip(*r)
                .step_by(2)
                .filter(|s| **s == 200)
                .count()
        })
        .collect();
    assert!(per.iter().all(|n| *n < 10), "{per:?}");
    redis.release().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_mid_run_calls_go_on_locally_and_share_again_when_it_is_back() {
    let port = free_port();
    let redis = OwnRedis::start(port).await;
    let s = sim("").await;
    let toml = config(
        &s.url(),
        &format!("redis://127.0.0.1:{port}/0"),
        "t-restart",
        "rpm = 10\n  burst = 10",
        "timeout = \"50ms\"\nretry_interval = \"100ms\"",
    );
    let (a, b) = (replica(&toml).await, replica(&toml).await);
    wait_mode(&a, "shared").await;
    wait_mode(&b, "shared").await;
    let c = http();
    assert_eq!(alternate(&c, [&a, &b], 2).await, vec![200, 200]);

    // Redis goes away: every call still answers, none waits long
    redis.stop();
    for _ in 0..3 {
        for r in [&a, &b] {
            let t = Instant::now();
            assert_eq!(call(&c, r).await, 200);
            assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        }
    }
    for r in [&a, &b] {
        let sh = r.gw.status().shared.unwrap();
        assert_eq!(sh.mode, "local", "{sh:?}");
        assert_eq!(sh.fallbacks, 1, "{sh:?}");
        assert!(
            sh.reason
                .as_deref()
                .unwrap_or("")
                .contains(&port.to_string()),
            "{sh:?}"
        );
        let m = r.gw.metrics_text();
        assert!(
            m.contains("powertune_gateway_shared_state{state=\"local\"} 1"),
            "{m}"
        );
        // said once, however many calls went on locally
        let n = r.notices.lock().clone();
        assert_eq!(
            n.iter()
                .filter(|l| l.contains("this replica's own"))
                .count(),
            1,
            "{n:?}"
        );
    }

    // back (empty: its keys went with it): both rejoin and hold one quota again
    let _redis = OwnRedis::start(port).await;
    wait_mode(&a, "shared").await;
    wait_mode(&b, "shared").await;
    for r in [&a, &b] {
        let n = r.notices.lock().clone();
        assert!(n.last().unwrap().contains("shared again"), "{n:?}");
    }
    let got = alternate(&c, [&a, &b], 30).await;
    let ok = got.iter().filter(|s| **s == 200).count();
    assert!((10..=11).contains(&ok), "{ok} calls went through: {got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_through_redis_over_tls_with_an_acl_user() {
    let r = tokio::task::spawn_blocking(|| {
        powertune_test_support::tls::TlsRedis::start(&["localhost"])
    })
    .await
    .unwrap();
    let s = sim("").await;
    let toml = config(
        &s.url(),
        &r.url("localhost"),
        "t-tls",
        "rpm = 3\n  burst = 3",
        &format!("tls_ca = {:?}", r.pki.ca.display().to_string()),
    );
    let (a, b) = (replica(&toml).await, replica(&toml).await);
    wait_mode(&a, "shared").await;
    wait_mode(&b, "shared").await;
    let c = http();
    let got = alternate(&c, [&a, &b], 8).await;
    assert_eq!(got.iter().filter(|s| **s == 200).count(), 3, "{got:?}");
    let sh = a.gw.status().shared.unwrap();
    assert!(
        sh.redis.starts_with("rediss://app_user:***@localhost:"),
        "{sh:?}"
    );
    let text = serde_json::to_string(&a.gw.status()).unwrap() + &a.gw.metrics_text();
    assert!(!text.contains(&r.acl_password), "the Redis password leaked");
}
