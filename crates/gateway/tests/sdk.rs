//! Real client libraries against the gateway: async-openai and the official Python SDKs.
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
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test]
async fn async_openai_client_talks_to_the_gateway() {
    use async_openai::config::OpenAIConfig;
    use async_openai::types::chat::{
        ChatCompletionRequestUserMessageArgs, CreateChatCompletionRequestArgs,
    };
    let fake = provider().await;
    let r = rig(&three_kinds(&fake.url()).toml()).await;
    let client = async_openai::Client::with_config(
        OpenAIConfig::new()
            .with_api_base(format!("{}/v1", r.url))
            .with_api_key("not-a-real-key"),
    );
    for model in ["fast", "ant:claude-x", "oll:llama3"] {
        let req = CreateChatCompletionRequestArgs::default()
            .model(model)
            .messages([ChatCompletionRequestUserMessageArgs::default()
                .content("say hello")
                .build()
                .unwrap()
                .into()])
            .build()
            .unwrap();
        let resp = client.chat().create(req.clone()).await.unwrap();
        assert_eq!(
            resp.choices[0].message.content.as_deref(),
            Some("Hello from the fake provider"),
            "{model}"
        );
        assert_eq!(resp.usage.unwrap().completion_tokens, 5);
        let mut stream = client.chat().create_stream(req).await.unwrap();
        let mut text = String::new();
        let mut n = 0;
        while let Some(chunk) = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .unwrap()
        {
            let chunk = chunk.unwrap();
            n += 1;
            assert!(n < 100);
            if let Some(c) = chunk.choices.first().and_then(|c| c.delta.content.clone()) {
                text.push_str(&c);
            }
        }
        assert_eq!(text, "Hello from the fake provider", "{model}");
    }
    // the client's dummy key never went upstream; configured keys did
    assert_eq!(fake.calls_with_key("not-a-real-key"), 0);
    assert_eq!(fake.calls_with_key("sk-one"), 2);
}

/// The official Python SDKs (anthropic, ollama, openai from PyPI; scripts/test.sh
/// installs them) against the gateway: each SDK's own call, JSON and streaming, once
/// to a provider of its own format (pass-through) and once to each other kind
/// (translated).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_anthropic_ollama_and_openai_sdks_talk_to_the_gateway() {
    let fake = provider().await;
    let r = rig(&three_kinds(&fake.url()).toml()).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/clients.py");
    let url = r.url.clone();
    let args = [
        url.as_str(),
        "ant:claude-x",
        "oai:gpt-x",
        "oll:llama-x",
        "--",
        "oll:llama-x",
        "ant:claude-x",
        "oai:gpt-x",
        "--",
        "oai:gpt-x",
        "ant:claude-x",
    ];
    let calls: Vec<Value> = powertune_test_support::python::json_lines(
        script,
        args.iter().map(|a| a.to_string()).collect(),
    )
    .await;
    let stdout = format!("{calls:?}");
    assert_eq!(calls.len(), 16, "{stdout}");
    for sdk in ["anthropic", "ollama", "openai"] {
        for stream in [false, true] {
            assert!(
                calls
                    .iter()
                    .any(|c| c["sdk"] == sdk && c["stream"] == stream),
                "{sdk} stream={stream}: {stdout}"
            );
        }
    }
    assert!(calls
        .iter()
        .all(|c| c["text"] == "Hello from the fake provider" && c["output_tokens"] == 5));
    // every call reached the fake once, in the provider's own wire format
    assert_eq!(fake.calls(), 16);
}

#[tokio::test]
async fn async_openai_streams_a_tool_call_from_an_anthropic_provider() {
    use async_openai::config::OpenAIConfig;
    use async_openai::types::chat::CreateChatCompletionRequest;
    let up = tool_streamer().await;
    let cfg = three_kinds(&up.url).toml();
    let r = rig(&cfg).await;
    let client = async_openai::Client::with_config(
        OpenAIConfig::new()
            .with_api_base(format!("{}/v1", r.url))
            .with_api_key("not-a-real-key"),
    );
    let req: CreateChatCompletionRequest = serde_json::from_value(json!({
        "model": "ant:claude-x", "stream": true,
        "messages": [{"role": "user", "content": "weather in Oslo?"}],
        "tools": [{"type": "function", "function": {"name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]}))
    .unwrap();
    let mut stream = client.chat().create_stream(req).await.unwrap();
    let (mut id, mut name, mut args, mut text) =
        (String::new(), String::new(), String::new(), String::new());
    let mut finish = None;
    let mut n = 0;
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .unwrap()
    {
        let chunk = chunk.unwrap();
        n += 1;
        assert!(n < 100);
        let Some(ch) = chunk.choices.first() else {
            continue;
        };
        text.push_str(ch.delta.content.as_deref().unwrap_or(""));
        for tc in ch.delta.tool_calls.iter().flatten() {
            assert_eq!(tc.index, 0);
            if let Some(i) = &tc.id {
                id = i.clone();
            }
            if let Some(f) = &tc.function {
                name.push_str(f.name.as_deref().unwrap_or(""));
                args.push_str(f.arguments.as_deref().unwrap_or(""));
            }
        }
        if let Some(f) = &ch.finish_reason {
            finish = Some(serde_json::to_value(f).unwrap());
        }
    }
    assert_eq!(text, "Checking.");
    assert_eq!((id.as_str(), name.as_str()), ("toolu_up", "get_weather"));
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"city": "Oslo"})
    );
    assert_eq!(finish, Some(json!("tool_calls")));
}
