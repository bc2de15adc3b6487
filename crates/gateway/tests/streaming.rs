//! Streams: idle and first-token timeouts, mid-stream errors, client hang-ups.
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
use futures_util::StreamExt;
use serde_json::Value;
use std::time::Duration;

#[tokio::test]
async fn stalled_stream_hits_the_idle_timeout_and_frees_the_upstream() {
    let fake = provider().await;
    fake.set_script(Script {
        stall_after: Some(2),
        ..hello()
    })
    .unwrap();
    let cfg = three_kinds(&fake.url()).timeout("idle", "300ms").toml();
    let r = rig(&cfg).await;
    let c = http();
    let resp = chat(&c, &r.url, "openai", "fast", true).await;
    assert_eq!(resp.status(), 200);
    let raw = tokio::time::timeout(Duration::from_secs(10), resp.text())
        .await
        .unwrap()
        .unwrap();
    assert!(raw.contains("\"content\":\"Hello\""), "{raw}");
    let last = raw
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .next_back()
        .unwrap();
    let v: Value = serde_json::from_str(last).unwrap();
    assert_eq!(v["error"]["type"], "timeout_error", "{raw}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("idle"),
        "{raw}"
    );
    assert!(!raw.contains("[DONE]"));
    assert!(
        wait_closed(&fake, 1, Duration::from_secs(5)).await,
        "the gateway let go of the stalled upstream"
    );
    let s = status_of(&c, &r.url).await;
    let ser = s.series.iter().find(|x| x.provider == "oai").unwrap();
    assert_eq!(ser.requests.get("timeout"), Some(&1));
    assert_eq!(
        s.credentials
            .iter()
            .find(|x| x.provider == "oai")
            .unwrap()
            .consecutive_failures,
        1
    );
}

#[tokio::test]
async fn time_to_first_token_timeout_is_retried() {
    let fake = provider().await;
    fake.push(Script {
        stall_after: Some(0),
        ..hello()
    })
    .unwrap();
    let cfg = three_kinds(&fake.url())
        .timeout("first_token", "300ms")
        .toml();
    let r = rig(&cfg).await;
    let resp = chat(&http(), &r.url, "openai", "fast", true).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-powertune-retries"], "1");
    let (text, _, last) = decode("openai", true, &resp.text().await.unwrap());
    assert_eq!(
        (text.as_str(), last.as_str()),
        ("Hello from the fake provider", "[DONE]")
    );
    assert_eq!(fake.calls(), 2);
}

#[tokio::test]
async fn mid_stream_provider_errors_reach_the_client_in_its_own_shape() {
    let fake = provider().await;
    fake.set_script(Script {
        error_after: Some(2),
        ..hello()
    })
    .unwrap();
    let r = rig(&three_kinds(&fake.url()).toml()).await;
    let c = http();
    // Anthropic provider overloaded mid-stream → OpenAI client sees an SSE error object
    let raw = chat(&c, &r.url, "openai", "ant:m", true)
        .await
        .text()
        .await
        .unwrap();
    assert!(raw.contains("\"content\":\" from\""), "{raw}");
    assert!(
        raw.contains("\"error\"") && raw.contains("Overloaded"),
        "{raw}"
    );
    // OpenAI provider error mid-stream → Anthropic client sees `event: error`
    let raw = chat(&c, &r.url, "anthropic", "oai:m", true)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        raw.contains("event: error\ndata: {\"error\":{\"message\""),
        "{raw}"
    );
    assert!(!raw.contains("message_stop"));
    // → Ollama client sees an {"error": ...} line
    let raw = chat(&c, &r.url, "ollama", "oll:m", true)
        .await
        .text()
        .await
        .unwrap();
    let last: Value = serde_json::from_str(raw.lines().last().unwrap()).unwrap();
    assert!(
        last["error"].as_str().unwrap().contains("mid-stream"),
        "{raw}"
    );
    // never retried once bytes reached the client; each counts as a breaker failure
    assert_eq!(fake.calls(), 3);
    let s = status_of(&c, &r.url).await;
    assert!(
        s.credentials.iter().all(|x| x.consecutive_failures == 1),
        "{:?}",
        s.credentials
    );
}

#[tokio::test]
async fn client_disconnect_mid_stream_frees_the_upstream_request() {
    let fake = provider().await;
    fake.set_script(Script {
        stall_after: Some(2),
        ..hello()
    })
    .unwrap();
    let r = rig(&three_kinds(&fake.url()).toml()).await;
    let c = http();
    let resp = chat(&c, &r.url, "openai", "fast", true).await;
    assert_eq!(resp.status(), 200);
    let mut s = resp.bytes_stream();
    let first = tokio::time::timeout(Duration::from_secs(5), s.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(!first.is_empty());
    drop(s); // the client hangs up
    assert!(
        wait_closed(&fake, 1, Duration::from_secs(5)).await,
        "the fake provider saw its connection close"
    );
    // the hang-up is not a provider failure
    let end = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let st = status_of(&c, &r.url).await;
        let ser = st.series.iter().find(|x| x.provider == "oai");
        if let Some(n) = ser.and_then(|x| x.requests.get("client_closed")) {
            assert_eq!(*n, 1);
            let cred = st.credentials.iter().find(|x| x.provider == "oai").unwrap();
            assert_eq!(
                (cred.state.as_str(), cred.consecutive_failures),
                ("closed", 0)
            );
            break;
        }
        assert!(
            std::time::Instant::now() < end,
            "client_closed never recorded: {st:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
