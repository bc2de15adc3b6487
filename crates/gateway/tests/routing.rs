//! `routing = "latency"`: two simulated providers behind one alias; calls go to the
//! one with the lower recent P95, and move back when it slows down.
// Test code: helpers outside #[test] functions may unwrap, panic and print (clippy.toml
// allows it only inside them).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod quota_support;

use powertune_gateway::TokioClock;
use powertune_provider_sim::SimHandle;
use quota_support::{control, http, Rig, HEAD};
use serde_json::json;
use std::sync::Arc;

async fn sim(ttft: &str) -> SimHandle {
    quota_support::sim(&format!(
        "[defaults]\nttft = \"{ttft}\"\nitl = \"0ms..1ms\"\noutput_tokens = 3\n"
    ))
    .await
}

async fn rig(slow: &SimHandle, fast: &SimHandle, routing: &str) -> Rig {
    let toml = format!(
        r#"{HEAD}[[providers]]
name = "one"
kind = "openai"
base_url = "{}/v1"
[[providers]]
name = "two"
kind = "openai"
base_url = "{}/v1"
[models.fast]
targets = ["one:m", "two:m"]
{routing}
[routes]
latency = ["fast"]
"#,
        slow.url(),
        fast.url()
    );
    quota_support::rig(&toml, Arc::new(TokioClock), &|_| None).await
}

/// `n` calls (by the alias, or by the route class); the provider of each answer.
async fn calls(r: &Rig, model: &str, n: usize) -> Vec<String> {
    let c = http();
    let mut out = Vec::new();
    for _ in 0..n {
        let resp = c
            .post(format!("{}/v1/chat/completions", r.url))
            .json(&json!({"model": model, "max_tokens": 3,
                "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let p = resp.headers()["x-powertune-provider"].to_str().unwrap();
        out.push(p.to_string());
    }
    out
}

fn count(v: &[String], p: &str) -> usize {
    v.iter().filter(|x| *x == p).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_move_to_the_faster_target_and_back_when_it_slows() {
    let (one, two) = (sim("80ms").await, sim("0ms..1ms").await);
    let r = rig(&one, &two, "routing = \"latency\"").await;
    // each target is measured once (unmeasured first, in configured order), then the
    // faster one takes the calls
    let got = calls(&r, "fast", 12).await;
    assert_eq!(&got[..2], ["one", "two"], "{got:?}");
    assert_eq!(count(&got[2..], "two"), 10, "{got:?}");

    // "two" slows down past "one": after a slow answer or two its P95 is the higher
    control(&two, json!({"ttft": "250ms"})).await;
    let got = calls(&r, "fast", 6).await;
    assert!(count(&got[..3], "two") <= 2, "{got:?}");
    assert_eq!(&got[3..], ["one", "one", "one"], "{got:?}");
    // the route class made of that alias routes the same way
    assert_eq!(calls(&r, "latency", 2).await, ["one", "one"]);

    // the runbook's provider P95 check still reads these providers
    let st = r.gw.status();
    assert_eq!(st.providers.len(), 2, "{:?}", st.providers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_latency_routing_the_configured_order_holds() {
    let (one, two) = (sim("30ms").await, sim("0ms..1ms").await);
    let r = rig(&one, &two, "").await;
    assert_eq!(count(&calls(&r, "fast", 5).await, "one"), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_breaker_on_the_fastest_target_is_still_honoured() {
    let (one, two) = (sim("40ms").await, sim("0ms..1ms").await);
    let r = rig(&one, &two, "routing = \"latency\"").await;
    calls(&r, "fast", 4).await;
    // the fast one fails from now on: its breaker opens, calls go to the slow one
    control(&two, json!({"faults": {"error_rate": 1.0}})).await;
    let c = http();
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let resp = c
            .post(format!("{}/v1/chat/completions", r.url))
            .json(&json!({"model": "fast", "max_tokens": 3,
                "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
    }
    // five failures open "two"'s breaker; after that "one" answers every call
    assert_eq!(&statuses[..5], [502; 5], "{statuses:?}");
    assert_eq!(&statuses[5..], [200; 3], "{statuses:?}");
    let st = r.gw.status();
    let two_state = st
        .credentials
        .iter()
        .find(|c| c.provider == "two")
        .map(|c| c.state.clone());
    assert_eq!(two_state.as_deref(), Some("open"));
}
