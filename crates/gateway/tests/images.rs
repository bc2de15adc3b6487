//! Images carried to each provider kind, and refused where a provider cannot take them.
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
use serde_json::{json, Value};

#[tokio::test]
async fn images_reach_each_provider_kind_in_its_own_shape() {
    const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg==";
    let fake = provider().await;
    let r = rig(&three_kinds(&fake.url()).toml()).await;
    let c = http();
    let send = |front: &'static str, b: Value| {
        let c = c.clone();
        let url = format!("{}{}", r.url, path(front));
        async move {
            let resp = c.post(url).json(&b).send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.text().await.unwrap())
        }
    };
    let openai_img = |model: &str| {
        json!({"model": model, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG}")}}]}]})
    };
    // OpenAI client → Anthropic provider: a base64 image block
    let (st, out) = send("openai", openai_img("ant:claude-x")).await;
    assert_eq!(st, 200, "{out}");
    let (p, sent) = fake.last_request().unwrap();
    assert_eq!(p, "/v1/messages");
    assert_eq!(
        sent["messages"][0]["content"],
        json!([{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
            {"type": "text", "text": "what is this?"}])
    );
    // OpenAI client → Ollama provider: `images`
    let (st, _) = send("openai", openai_img("oll:llava")).await;
    assert_eq!(st, 200);
    let (p, sent) = fake.last_request().unwrap();
    assert_eq!(p, "/api/chat");
    assert_eq!(
        sent["messages"][0],
        json!({"role": "user", "content": "what is this?", "images": [PNG]})
    );
    // OpenAI client → OpenAI provider: passed through as written
    let (st, _) = send("openai", openai_img("oai:gpt-x")).await;
    assert_eq!(st, 200);
    let (_, sent) = fake.last_request().unwrap();
    assert_eq!(sent["messages"], openai_img("x")["messages"]);
    // Ollama client → OpenAI provider: a data URL with the sniffed media type
    let (st, _) = send(
        "ollama",
        json!({"model": "oai:gpt-x", "stream": false,
            "messages": [{"role": "user", "content": "and this?", "images": [PNG]}]}),
    )
    .await;
    assert_eq!(st, 200);
    let (_, sent) = fake.last_request().unwrap();
    assert_eq!(
        sent["messages"][0]["content"][1],
        json!({"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG}")}})
    );
    // Anthropic client with an image URL → OpenAI provider: an image_url part, streamed
    let (st, out) = send(
        "anthropic",
        json!({"model": "oai:gpt-x", "max_tokens": 32, "stream": true, "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
            {"type": "text", "text": "cat?"}]}]}),
    )
    .await;
    assert_eq!(st, 200);
    assert!(out.contains("message_stop"), "{out}");
    let (_, sent) = fake.last_request().unwrap();
    assert_eq!(
        sent["messages"][0]["content"],
        json!([{"type": "text", "text": "cat?"},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}])
    );
    // a malformed image is the client's 400 in its own shape, before anything is sent
    let before = fake.calls();
    let (st, out) = send(
        "anthropic",
        json!({"model": "oai:gpt-x", "max_tokens": 32, "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "file", "file_id": "f1"}}]}]}),
    )
    .await;
    assert_eq!(st, 400, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("messages[0].content[0].source.type"),
        "{out}"
    );
    assert_eq!(fake.calls(), before);
}

#[tokio::test]
async fn an_image_url_skips_ollama_targets_and_is_a_400_when_none_is_left() {
    let fake = provider().await;
    let cfg = three_kinds(&fake.url())
        .model("vision", &["oll:llava", "oai:gpt-4o"])
        .model("local", &["oll:llava"]);
    let r = rig(&cfg.toml()).await;
    let c = http();
    let ask = |model: &str| {
        json!({"model": model, "max_tokens": 32, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "cat?"},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}]}]})
    };
    // Ollama takes base64 only: the fallback target that can carry the URL serves it
    let resp = c
        .post(format!("{}/v1/messages", r.url))
        .json(&ask("vision"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (p, sent) = fake.last_request().unwrap();
    assert_eq!(p, "/v1/chat/completions");
    assert_eq!(
        sent["messages"][0]["content"][1]["image_url"]["url"],
        "https://example.com/cat.png"
    );
    // no target can carry it: the client's 400 in its own shape, nothing sent upstream
    let before = fake.calls();
    let resp = c
        .post(format!("{}/v1/messages", r.url))
        .json(&ask("local"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "error");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("messages[0]") && msg.contains("ollama"),
        "{msg}"
    );
    assert_eq!(fake.calls(), before);
}
