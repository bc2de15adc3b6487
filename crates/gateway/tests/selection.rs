//! Credential selection: weighted split and rpm limits.
// Test code: helpers outside #[test] functions may unwrap, panic and print (clippy.toml
// allows it only inside them).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

use common::*;

#[tokio::test]
async fn weights_three_to_one_split_traffic_and_rpm_limits_skip_a_key() {
    let fake = provider().await;
    let u = format!("{}/v1", fake.url());
    let cfg = ConfigBuilder::new()
        .provider("oai", "openai", &u)
        .weighted("one", "FAKE_KEY_1", Some(3), None)
        .weighted("two", "FAKE_KEY_2", Some(1), None)
        .provider("limited", "openai", &u)
        .weighted("one", "FAKE_KEY_1", Some(100), Some(1))
        .weighted("two", "FAKE_KEY_2", Some(1), None);
    let r = rig(&cfg.toml()).await;
    let c = http();
    for _ in 0..80 {
        let resp = chat(&c, &r.url, "openai", "oai:m", false).await;
        assert_eq!(resp.status(), 200);
    }
    let (a, b) = (fake.calls_with_key("sk-one"), fake.calls_with_key("sk-two"));
    assert_eq!(a + b, 80);
    assert!((54..=66).contains(&a), "3:1 split of 80 gave {a}:{b}");
    // rpm = 1 on the heavy key: one call uses it, the rest go to the other key
    for _ in 0..4 {
        let resp = chat(&c, &r.url, "openai", "limited:m", false).await;
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(fake.calls_with_key("sk-one") - a, 1);
    assert_eq!(fake.calls_with_key("sk-two") - b, 3);
}

#[test]
fn the_builder_writes_what_the_gateway_reads() {
    let t = three_kinds("http://127.0.0.1:9")
        .timeout("idle", "300ms")
        .retries(0)
        .raw("[breaker]\nfailure_threshold = 3\n")
        .model("cheap", &["oai:m2", "ant:m3"])
        .route("batch", &["cheap"])
        .rule("report-", "batch")
        .toml();
    let env = |k: &str| Some(format!("key-{k}"));
    let cfg = powertune_gateway::Config::from_toml(&t, "test.toml", &env)
        .unwrap()
        .config;
    assert_eq!(cfg.providers.len(), 3);
    assert_eq!(cfg.timeouts.idle, std::time::Duration::from_millis(300));
    assert_eq!(cfg.retry.max_retries, 0);
    assert_eq!(cfg.breaker.failure_threshold, 3);
    assert_eq!(cfg.rules.len(), 1);
}
