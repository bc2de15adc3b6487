//! Circuit breakers: opening, half-opening and closing; client errors and disabled credentials.
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
use serde_json::Value;
use std::time::Duration;

#[tokio::test]
async fn breaker_opens_after_exactly_five_failures_half_opens_after_recovery_and_closes() {
    let fake = provider().await;
    fake.set_script(Script::status(500)).unwrap();
    let r = rig(&three_kinds(&fake.url()).retries(0).toml()).await;
    let c = http();
    for i in 0..5 {
        let resp = chat(&c, &r.url, "openai", "fast", false).await;
        assert_eq!(resp.status(), 502, "call {i}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["type"], "server_error");
    }
    assert_eq!(fake.calls(), 5);
    // the 6th is answered fast by the gateway: 503 + Retry-After = the recovery time
    let started = std::time::Instant::now();
    let resp = chat(&c, &r.url, "openai", "fast", false).await;
    assert_eq!(resp.status(), 503);
    let ra: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((119..=120).contains(&ra), "{ra}");
    // answered at once: before the recovery time it names has passed
    assert!(
        started.elapsed() < Duration::from_secs(ra),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(fake.calls(), 5, "an open breaker sends nothing upstream");
    // the Anthropic front gets the same in its own shape
    let resp = chat(&c, &r.url, "anthropic", "fast", false).await;
    assert_eq!(resp.status(), 503);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "overloaded_error");
    let s = status_of(&c, &r.url).await;
    let oai = s.credentials.iter().find(|x| x.provider == "oai").unwrap();
    assert_eq!((oai.state.as_str(), oai.trips), ("open", 1));

    // after the recovery time: half-open, one probe; it succeeds and closes the breaker
    r.clock.advance(Duration::from_secs(119));
    let resp = chat(&c, &r.url, "openai", "fast", false).await;
    assert_eq!(resp.status(), 503, "still open at 119 s");
    r.clock.advance(Duration::from_secs(1));
    fake.set_script(hello()).unwrap();
    let resp = chat(&c, &r.url, "openai", "fast", false).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(fake.calls(), 6);
    let s = status_of(&c, &r.url).await;
    let oai = s.credentials.iter().find(|x| x.provider == "oai").unwrap();
    assert_eq!(oai.state, "closed");
    assert_eq!(oai.transitions, 3);
    assert!(s.rejected_all_open >= 3);
}

#[tokio::test]
async fn client_errors_do_not_count_and_auth_failures_disable_the_credential() {
    let fake = provider().await;
    let cfg = ConfigBuilder::new()
        .backoff("base", "1ms")
        .backoff("max", "20ms")
        .provider("oai", "openai", &format!("{}/v1", fake.url()))
        .credential("one", "FAKE_KEY_1")
        .credential("two", "FAKE_KEY_2");
    let r = rig(&cfg.toml()).await;
    let c = http();
    // 6 provider 400s: the client's fault, passed through, never retried, breaker stays closed
    for _ in 0..6 {
        fake.push(Script::status(400)).unwrap();
        let resp = chat(&c, &r.url, "openai", "oai:m", false).await;
        assert_eq!(resp.status(), 400);
    }
    assert_eq!(fake.calls(), 6);
    // a 401 disables that credential; the retry moves to the other one
    fake.push(Script::status(401)).unwrap();
    let resp = chat(&c, &r.url, "openai", "oai:m", false).await;
    assert_eq!(resp.status(), 200);
    let s = status_of(&c, &r.url).await;
    let states: Vec<&str> = s.credentials.iter().map(|x| x.state.as_str()).collect();
    assert!(
        states.contains(&"disabled") && states.contains(&"closed"),
        "{states:?}"
    );
    assert!(s.credentials.iter().all(|x| x.trips == 0));
    // from now on only the healthy key is used
    let (k1, k2) = (fake.calls_with_key("sk-one"), fake.calls_with_key("sk-two"));
    for _ in 0..4 {
        let resp = chat(&c, &r.url, "openai", "oai:m", false).await;
        assert_eq!(resp.status(), 200);
    }
    let moved = (
        fake.calls_with_key("sk-one") - k1,
        fake.calls_with_key("sk-two") - k2,
    );
    assert!(moved == (4, 0) || moved == (0, 4), "{moved:?}");
}
