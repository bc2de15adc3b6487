//! Each API's answers, whole and streamed, as their clients read them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::{json, Value};

const CFG: &str = "[defaults]\nttft = \"1ms\"\nitl = \"0ms\"\noutput_tokens = 7\n";

fn words(t: &str) -> usize {
    t.split_whitespace().count()
}

#[tokio::test]
async fn openai_json_and_sse_with_and_without_usage() {
    let s = sim(CFG).await;
    let c = client();
    let r = post(
        &c,
        &s.url(),
        "/v1/chat/completions",
        "k",
        &chat("gpt-x", false),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.raw);
    let v: Value = serde_json::from_str(&r.raw).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "gpt-x");
    assert_eq!(v["usage"]["completion_tokens"], 7);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        words(v["choices"][0]["message"]["content"].as_str().unwrap()),
        7
    );

    let r = post(
        &c,
        &s.url(),
        "/v1/chat/completions",
        "k",
        &chat("gpt-x", true),
    )
    .await;
    assert_eq!(r.headers["content-type"], "text/event-stream");
    assert_eq!(r.content_times().len(), 7);
    assert_eq!(words(&r.text()), 7);
    let n = r.events.len();
    assert_eq!(r.events[n - 1].data, "[DONE]");
    let usage = r.events[n - 2].json().unwrap();
    assert_eq!(usage["usage"]["completion_tokens"], 7);
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(
        r.events[n - 3].json().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );

    let mut body = chat("gpt-x", true);
    body["stream_options"] = Value::Null;
    let r = post(&c, &s.url(), "/v1/chat/completions", "k", &body).await;
    assert!(!r.raw.contains("\"usage\""), "{}", r.raw);
    assert!(r.raw.ends_with("data: [DONE]\n\n"));
}

#[tokio::test]
async fn anthropic_json_and_its_event_sequence() {
    let s = sim(CFG).await;
    let c = client();
    let h = [("x-api-key", "k"), ("anthropic-version", "2023-06-01")];
    let r = post_with(&c, &s.url(), "/v1/messages", &h, &chat("claude-x", false)).await;
    let v: Value = serde_json::from_str(&r.raw).unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["usage"]["output_tokens"], 7);
    assert_eq!(words(v["content"][0]["text"].as_str().unwrap()), 7);

    let r = post_with(&c, &s.url(), "/v1/messages", &h, &chat("claude-x", true)).await;
    let names: Vec<&str> = r.events.iter().map(|e| e.name.as_str()).collect();
    let mut want = vec!["message_start", "content_block_start", "ping"];
    want.extend(["content_block_delta"; 7]);
    want.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(names, want);
    assert_eq!(
        r.events[0].json().unwrap()["message"]["usage"]["input_tokens"],
        4
    );
    assert_eq!(r.events[11].json().unwrap()["usage"]["output_tokens"], 7);
    assert_eq!(words(&r.text()), 7);
}

#[tokio::test]
async fn ollama_json_and_ndjson() {
    let s = sim(CFG).await;
    let c = client();
    let r = post(&c, &s.url(), "/api/chat", "", &chat("llama-x", false)).await;
    let v: Value = serde_json::from_str(&r.raw).unwrap();
    assert_eq!(v["done"], true);
    assert_eq!(v["eval_count"], 7);
    let r = post(&c, &s.url(), "/api/chat", "", &chat("llama-x", true)).await;
    assert_eq!(r.headers["content-type"], "application/x-ndjson");
    assert_eq!(r.content_times().len(), 7);
    let last = r.events.last().unwrap().json().unwrap();
    assert_eq!(
        (last["done"].clone(), last["eval_count"].clone()),
        (json!(true), json!(7))
    );
    assert_eq!(last["done_reason"], "stop");
}

#[tokio::test]
async fn max_tokens_cuts_the_answer_with_finish_length() {
    let s = sim(CFG).await;
    let mut body = chat("m", true);
    body["max_tokens"] = json!(3);
    let r = post(&client(), &s.url(), "/v1/chat/completions", "k", &body).await;
    assert_eq!(r.content_times().len(), 3);
    assert!(r.raw.contains("\"finish_reason\":\"length\""));
}

#[tokio::test]
async fn model_lists_in_each_shape_and_errors_in_each_shape() {
    let s = sim("[models.a]\n[models.b]\n").await;
    let c = client();
    let o: Value = c
        .get(format!("{}/v1/models", s.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(o["object"], "list");
    assert_eq!(o["data"][1]["id"], "b");
    let a: Value = c
        .get(format!("{}/v1/models", s.url()))
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(a["data"][0]["type"], "model");
    let t: Value = c
        .get(format!("{}/api/tags", s.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(t["models"][0]["name"], "a");
    // a request the API refuses, in its own error shape
    let r = post_with(
        &c,
        &s.url(),
        "/v1/messages",
        &[],
        &json!({"model": "a", "messages": "no"}),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        serde_json::from_str::<Value>(&r.raw).unwrap()["type"],
        "error"
    );
    let r = c.get(format!("{}/nope", s.url())).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(s.stats().totals.bad_requests, 1);
}

#[tokio::test]
async fn the_same_seed_answers_the_same_requests_alike() {
    let cfg = |seed: u64| {
        format!(
            "seed = {seed}\n[defaults]\nttft = \"1ms\"\nitl = \"0ms\"\noutput_tokens = \"5..50\"\n"
        )
    };
    let run = |seed| async move {
        let s = sim(&cfg(seed)).await;
        let c = client();
        let mut texts = Vec::new();
        for stream in [false, true, true, false] {
            let r = post(
                &c,
                &s.url(),
                "/v1/chat/completions",
                "k",
                &chat("m", stream),
            )
            .await;
            texts.push(if stream {
                r.text()
            } else {
                serde_json::from_str::<Value>(&r.raw).unwrap()["choices"][0]["message"]["content"]
                    .as_str()
                    .unwrap()
                    .to_string()
            });
        }
        texts
    };
    let a = run(3).await;
    assert_eq!(a, run(3).await);
    assert_ne!(a, run(4).await);
    // answers differ from one request to the next
    assert_ne!(a[0], a[3]);
}
