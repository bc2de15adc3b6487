//! Retries: Retry-After, retry depth, fallback to the next target.
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
use std::time::Duration;

#[tokio::test]
async fn rate_limit_429_honours_retry_after_then_succeeds() {
    let up = ScriptedProvider::start().await;
    up.push(429, &[("retry-after-ms", "150")]);
    let r = rig(&three_kinds(&up.url).backoff("max", "3s").toml()).await;
    let c = http();
    let resp = chat(&c, &r.url, "openai", "fast", false).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-powertune-retries"], "1");
    let at = up.arrivals();
    assert_eq!(at.len(), 2);
    // the retry went out only after the wait the provider asked for
    assert!(
        at[1] - at[0] >= Duration::from_millis(150),
        "waited out Retry-After: {:?}",
        at[1] - at[0]
    );
    let s = status_of(&c, &r.url).await;
    let oai = s.credentials.iter().find(|x| x.provider == "oai").unwrap();
    assert_eq!(oai.trips, 0, "429 is not a failure");
    assert_eq!(s.retries_by_depth, vec![0, 1, 0]);

    // a long Retry-After is not waited out: the client gets 429 and the Retry-After
    up.push(429, &[("retry-after", "30")]);
    let resp = chat(&c, &r.url, "openai", "fast", false).await;
    assert_eq!(resp.status(), 429);
    let ra: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((29..=30).contains(&ra), "{ra}");
    assert_eq!(up.arrivals().len(), 3);
}

#[tokio::test]
async fn retries_stop_at_two_and_move_to_the_next_target() {
    let bad = provider().await;
    bad.set_script(Script::status(503)).unwrap();
    let good = provider().await;
    let cfg = ConfigBuilder::new()
        .backoff("base", "1ms")
        .backoff("max", "20ms")
        .provider("bad", "openai", &format!("{}/v1", bad.url()))
        .provider("good", "anthropic", &good.url())
        .model("fast", &["bad:m1"])
        .model("cheap", &["bad:m2", "good:m3"])
        .route("latency", &["fast"])
        .route("batch", &["cheap"])
        .rule("report-", "batch");
    let r = rig(&cfg.toml()).await;
    let c = http();
    // one target only: 1 try + 2 retries, then the error
    let resp = chat(&c, &r.url, "openai", "fast", false).await;
    assert_eq!(resp.status(), 502);
    assert_eq!(bad.calls(), 3);
    // header route class batch: bad fails once, the retry falls back to good
    let resp = c
        .post(format!("{}/v1/chat/completions", r.url))
        .header("x-powertune-route", "batch")
        .json(&body("openai", "whatever", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-powertune-provider"], "good");
    assert_eq!(resp.headers()["x-powertune-retries"], "1");
    assert_eq!(bad.calls(), 4);
    // a route rule (model prefix) picks the batch class too
    let resp = chat(&c, &r.url, "openai", "report-weekly", false).await;
    assert_eq!(resp.status(), 200);
    // unknown model and unknown route class: the client's own 4xx, nothing sent
    let before = bad.calls() + good.calls();
    let resp = chat(&c, &r.url, "openai", "nope", false).await;
    assert_eq!(resp.status(), 404);
    let resp = c
        .post(format!("{}/v1/chat/completions", r.url))
        .header("x-powertune-route", "slow")
        .json(&body("openai", "fast", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = c
        .post(format!("{}/v1/chat/completions", r.url))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(bad.calls() + good.calls(), before);
}
