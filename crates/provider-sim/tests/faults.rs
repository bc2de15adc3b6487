//! Each fault script as a client sees it, switched on at run time by `POST /control`,
//! and counted by `GET /stats`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

const FAST: &str = "[defaults]\nttft = \"0ms\"\nitl = \"2ms\"\noutput_tokens = 10\n";

async fn control(c: &reqwest::Client, url: &str, change: Value) -> Value {
    let r = c
        .post(format!("{url}/control"))
        .json(&change)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test]
async fn error_and_overload_answers_in_each_apis_shape() {
    let s = sim(FAST).await;
    let c = client();
    let set = control(
        &c,
        &s.url(),
        json!({"faults": {"error_rate": 1.0, "error_status": 502}}),
    )
    .await;
    assert_eq!(set["faults"]["error_rate"], 1.0);
    let r = post(&c, &s.url(), "/v1/chat/completions", "k", &chat("m", true)).await;
    assert_eq!(r.status, 502);
    assert_eq!(
        serde_json::from_str::<Value>(&r.raw).unwrap()["error"]["type"],
        "server_error"
    );
    control(
        &c,
        &s.url(),
        json!({"faults": {"error_rate": 0.0, "overload_rate": 1.0}}),
    )
    .await;
    let h = [("x-api-key", "k"), ("anthropic-version", "2023-06-01")];
    let r = post_with(&c, &s.url(), "/v1/messages", &h, &chat("m", true)).await;
    assert_eq!(r.status, 529);
    assert_eq!(
        serde_json::from_str::<Value>(&r.raw).unwrap()["error"]["type"],
        "overloaded_error"
    );
    let r = post(&c, &s.url(), "/v1/chat/completions", "k", &chat("m", false)).await;
    assert_eq!(r.status, 503);
    let st: Value = c
        .get(format!("{}/stats", s.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(st["totals"]["faults"]["server_error"], 1);
    assert_eq!(st["totals"]["faults"]["overloaded"], 2);
    assert_eq!(st["totals"]["calls"], 3);
    assert_eq!(st["totals"]["completed"], 0);
}

#[tokio::test]
async fn stalls_hold_the_first_token_or_the_middle_back() {
    let s = sim(FAST).await;
    let c = client();
    control(
        &c,
        &s.url(),
        json!({"faults": {"stall_first_rate": 1.0, "stall_first": "400ms"}}),
    )
    .await;
    let r = post(&c, &s.url(), "/v1/chat/completions", "k", &chat("m", true)).await;
    let t = r.content_times();
    assert_eq!(t.len(), 10);
    assert!(t[0] >= Duration::from_millis(400), "{t:?}");
    // a client with a shorter timeout sees the stall as its timeout
    let impatient = reqwest::Client::builder()
        .read_timeout(Duration::from_millis(150))
        .build()
        .unwrap();
    let r = post(
        &impatient,
        &s.url(),
        "/v1/chat/completions",
        "k",
        &chat("m", true),
    )
    .await;
    assert!(
        r.error.as_deref().unwrap_or("").contains("TimedOut")
            || r.error.as_deref().unwrap_or("").contains("imed out"),
        "{:?}",
        r.error
    );
    assert!(r.content_times().is_empty());

    control(
        &c,
        &s.url(),
        json!({"faults": {"stall_first_rate": 0.0, "stall_mid_rate": 1.0, "stall_mid": "400ms"}}),
    )
    .await;
    let r = post(&c, &s.url(), "/v1/chat/completions", "k", &chat("m", true)).await;
    let t = r.content_times();
    assert_eq!(t.len(), 10);
    assert!(t[0] < Duration::from_millis(300), "{t:?}");
    // each token is due at its own instant: the gap is the stall plus one
    // inter-token latency, less however late the token before it came
    assert!(t[5] - t[4] >= Duration::from_millis(380), "{t:?}");
    assert!(r.raw.ends_with("data: [DONE]\n\n"));
    let st = s.stats();
    assert_eq!(
        (st.totals.faults.stall_first, st.totals.faults.stall_mid),
        (2, 1)
    );
}

#[tokio::test]
async fn a_dropped_connection_ends_the_stream_without_its_end() {
    let s = sim(FAST).await;
    let c = client();
    control(&c, &s.url(), json!({"faults": {"drop_rate": 1.0}})).await;
    for (path, end) in [
        ("/v1/chat/completions", "[DONE]"),
        ("/v1/messages", "message_stop"),
        ("/api/chat", "\"done\":true"),
    ] {
        let h = [("x-api-key", "k"), ("anthropic-version", "2023-06-01")];
        let r = post_with(&c, &s.url(), path, &h, &chat("m", true)).await;
        assert_eq!(r.status, 200);
        assert!(r.error.is_some(), "{path}: {}", r.raw);
        // at most the tokens before the midpoint (what was still in the server's
        // buffers when the connection closed may be lost, as with a real drop)
        assert!(r.content_times().len() <= 5, "{path}: {}", r.raw);
        assert!(!r.raw.contains(end), "{path}: {}", r.raw);
    }
    // a whole answer: headers, then the connection closes
    let r = c
        .post(format!("{}/v1/chat/completions", s.url()))
        .json(&chat("m", false))
        .send()
        .await;
    match r {
        Ok(r) => assert!(r.text().await.is_err()),
        Err(e) => assert!(format!("{e:?}").contains("IncompleteMessage"), "{e:?}"),
    }
    assert_eq!(s.stats().totals.faults.dropped, 4);
}

#[tokio::test]
async fn a_malformed_chunk_is_not_json_and_the_stream_goes_on() {
    let s = sim(FAST).await;
    let c = client();
    control(&c, &s.url(), json!({"faults": {"malformed_rate": 1.0}})).await;
    for path in ["/v1/chat/completions", "/v1/messages", "/api/chat"] {
        let h = [("x-api-key", "k"), ("anthropic-version", "2023-06-01")];
        let r = post_with(&c, &s.url(), path, &h, &chat("m", true)).await;
        let bad: Vec<_> = r
            .events
            .iter()
            .filter(|e| e.data != "[DONE]" && e.json().is_none())
            .collect();
        assert_eq!(bad.len(), 1, "{path}: {}", r.raw);
        assert_eq!(r.content_times().len(), 9, "{path}");
        assert!(r.error.is_none());
    }
    let r = post(&c, &s.url(), "/v1/chat/completions", "k", &chat("m", false)).await;
    assert!(serde_json::from_str::<Value>(&r.raw).is_err());
    assert_eq!(s.stats().totals.faults.malformed, 4);
}

#[tokio::test]
async fn flapping_is_down_then_up_on_its_schedule() {
    let s = sim(&format!(
        "{FAST}[faults]\nflap_down = \"1s\"\nflap_every = \"2s\"\n"
    ))
    .await;
    let c = client();
    let r = post(&c, &s.url(), "/v1/chat/completions", "k", &chat("m", false)).await;
    assert_eq!(r.status, 503, "{}", r.raw);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = post(&c, &s.url(), "/v1/chat/completions", "k", &chat("m", false)).await;
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(s.stats().totals.faults.flap_down, 1);
    // /control stops the flapping
    control(&c, &s.url(), json!({"faults": {"flap_down": "0s"}})).await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(
        post(&c, &s.url(), "/v1/chat/completions", "k", &chat("m", false))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn control_changes_latency_refuses_bad_changes_and_resets_stats() {
    let s = sim(FAST).await;
    let c = client();
    let set = control(&c, &s.url(), json!({"ttft": "300ms", "output_tokens": "3"})).await;
    assert_eq!(set["defaults"]["ttft"], "300ms");
    let r = post(&c, &s.url(), "/v1/chat/completions", "k", &chat("m", true)).await;
    assert!(r.content_times()[0] >= Duration::from_millis(300));
    assert_eq!(r.content_times().len(), 3);
    let bad = c
        .post(format!("{}/control", s.url()))
        .json(&json!({"ttft": "1s..1ms"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let why: Value = bad.json().await.unwrap();
    assert!(
        why["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ttft: range"),
        "{why}"
    );
    let bad = c
        .post(format!("{}/control", s.url()))
        .json(&json!({"colour": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let now: Value = c
        .get(format!("{}/control", s.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(now["defaults"]["output_tokens"], "3");
    assert_eq!(s.stats().totals.calls, 1);
    control(&c, &s.url(), json!({"reset_stats": true})).await;
    assert_eq!(s.stats().totals.calls, 0);
}
