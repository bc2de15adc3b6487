//! Tool calls translated between the formats, whole and inside streams, and tool choice.
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
async fn tool_calls_translate_between_openai_anthropic_and_ollama() {
    let fake = provider().await;
    let r = rig(&three_kinds(&fake.url()).toml()).await;
    let c = http();
    let weather = || Script {
        tool_call: Some(ToolCallScript {
            name: "get_weather".into(),
            arguments: json!({"city": "Oslo"}),
        }),
        ..Default::default()
    };
    let schema = json!({"type": "object", "properties": {"city": {"type": "string"}}});

    // OpenAI client → Anthropic provider: tools, an earlier call and its result
    fake.push(weather()).unwrap();
    let v: Value = c
        .post(format!("{}/v1/chat/completions", r.url))
        .json(&json!({"model": "ant:claude-x", "messages": [
            {"role": "user", "content": "weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "12C"},
            {"role": "user", "content": "and Oslo?"}],
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather now", "parameters": schema}}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (p, sent) = fake.last_request().unwrap();
    assert_eq!(p, "/v1/messages");
    assert_eq!(sent["tools"][0]["name"], "get_weather");
    assert_eq!(sent["tools"][0]["input_schema"], schema);
    assert_eq!(sent["tools"][0]["description"], "Weather now");
    let m = &sent["messages"];
    assert_eq!(
        m[1]["content"][0],
        json!({"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}}),
        "{sent}"
    );
    assert_eq!(
        m[2],
        json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "12C"}]}),
        "{sent}"
    );
    assert_eq!(m[3]["content"], "and Oslo?");
    let msg = &v["choices"][0]["message"];
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls", "{v}");
    assert!(msg["content"].is_null(), "{v}");
    // the simulator numbers its answers: this is its first (sequence 0)
    assert_eq!(msg["tool_calls"][0]["id"], "toolu_sim0x0");
    assert_eq!(msg["tool_calls"][0]["function"]["name"], "get_weather");
    let args: Value = serde_json::from_str(
        msg["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(args, json!({"city": "Oslo"}));

    // Anthropic client → OpenAI provider
    fake.push(weather()).unwrap();
    let v: Value = c
        .post(format!("{}/v1/messages", r.url))
        .json(&json!({"model": "oai:gpt-x", "max_tokens": 100, "messages": [
            {"role": "user", "content": "weather in Paris?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "12C"}]}],
            "tools": [{"name": "get_weather", "input_schema": schema}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (p, sent) = fake.last_request().unwrap();
    assert_eq!(p, "/v1/chat/completions");
    assert_eq!(sent["tools"][0]["type"], "function");
    assert_eq!(sent["tools"][0]["function"]["parameters"], schema);
    let m = &sent["messages"];
    assert_eq!(m[1]["tool_calls"][0]["id"], "toolu_1", "{sent}");
    let args: Value = serde_json::from_str(
        m[1]["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(args, json!({"city": "Paris"}));
    assert_eq!(
        m[2],
        json!({"role": "tool", "content": "12C", "tool_call_id": "toolu_1"}),
        "{sent}"
    );
    assert_eq!(v["stop_reason"], "tool_use", "{v}");
    assert_eq!(
        v["content"],
        json!([{"type": "tool_use", "id": "call_sim0x1", "name": "get_weather", "input": {"city": "Oslo"}}])
    );

    // Ollama client → Anthropic provider
    fake.push(weather()).unwrap();
    let v: Value = c
        .post(format!("{}/api/chat", r.url))
        .json(&json!({"model": "ant:claude-x", "stream": false,
            "messages": [{"role": "user", "content": "weather in Oslo?"}],
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": schema}}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (_, sent) = fake.last_request().unwrap();
    assert_eq!(sent["tools"][0]["input_schema"], schema);
    assert_eq!(
        v["message"]["tool_calls"],
        json!([{"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]),
        "{v}"
    );
}

#[tokio::test]
async fn tool_calls_inside_streams_reach_every_client_in_its_own_shape() {
    let up = tool_streamer().await;
    let cfg = three_kinds(&up.url).toml();
    let r = rig(&cfg).await;
    let c = http();
    let schema = json!({"type": "object", "properties": {"city": {"type": "string"}}});
    for front in ["openai", "anthropic", "ollama"] {
        for (provider, upstream_path, want_id) in [
            ("oai", "/v1/chat/completions", "call_up"),
            ("ant", "/v1/messages", "toolu_up"),
            ("oll", "/api/chat", "call_"),
        ] {
            let mut b = body(front, &format!("{provider}:m1"), true);
            b["tools"] = match front {
                "anthropic" => json!([{"name": "get_weather", "input_schema": schema}]),
                _ => {
                    json!([{"type": "function", "function": {"name": "get_weather", "parameters": schema}}])
                }
            };
            let resp = c
                .post(format!("{}{}", r.url, path(front)))
                .json(&b)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "{front} → {provider}");
            let raw = resp.text().await.unwrap();
            let (text, calls, finish) = read_tool_stream(front, &raw);
            let what = format!("{front} → {provider}:\n{raw}");
            assert_eq!(text, "Checking.", "{what}");
            assert_eq!(calls.len(), 1, "{what}");
            assert_eq!(calls[0].1, "get_weather", "{what}");
            assert_eq!(calls[0].2, json!({"city": "Oslo"}), "{what}");
            if front != "ollama" {
                assert!(calls[0].0.starts_with(want_id), "{what}");
            }
            let want_finish = match front {
                "openai" => "tool_calls",
                "anthropic" => "tool_use",
                _ => "stop",
            };
            assert_eq!(finish, want_finish, "{what}");
            // the tools went upstream in the provider's own shape
            let (p, sent) = up.last.lock().unwrap().clone().unwrap();
            assert_eq!(p, upstream_path);
            let schema_at = if provider == "ant" {
                &sent["tools"][0]["input_schema"]
            } else {
                &sent["tools"][0]["function"]["parameters"]
            };
            assert_eq!(schema_at, &schema, "{what}\n{sent}");
        }
    }
}

#[tokio::test]
async fn a_forced_tool_call_skips_ollama_targets_and_tool_choice_is_translated() {
    let fake = provider().await;
    let cfg = three_kinds(&fake.url())
        .model("tools", &["oll:llama3.1", "ant:claude-x"])
        .model("local", &["oll:llama3.1"]);
    let r = rig(&cfg.toml()).await;
    let c = http();
    let ask = |model: &str, choice: Value| {
        json!({"model": model, "tool_choice": choice, "parallel_tool_calls": false,
            "messages": [{"role": "user", "content": "weather in Oslo?"}],
            "tools": [{"type": "function", "function": {"name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]})
    };
    let post = |b: Value| {
        c.post(format!("{}/v1/chat/completions", r.url))
            .json(&b)
            .send()
    };
    // Ollama cannot be made to call a tool: the Anthropic fallback serves it
    let resp = post(ask("tools", json!("required"))).await.unwrap();
    assert_eq!(resp.status(), 200);
    let (p, sent) = fake.last_request().unwrap();
    assert_eq!(p, "/v1/messages");
    assert_eq!(
        sent["tool_choice"],
        json!({"type": "any", "disable_parallel_tool_use": true})
    );
    // only Ollama left: the client's 400, nothing sent
    let before = fake.calls();
    let resp = post(ask(
        "local",
        json!({"type": "function", "function": {"name": "get_weather"}}),
    ))
    .await
    .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("tool_choice \"get_weather\"") && msg.contains("ollama"),
        "{msg}"
    );
    assert_eq!(fake.calls(), before);
    // "none" reaches Ollama as no tools at all
    let resp = post(ask("local", json!("none"))).await.unwrap();
    assert_eq!(resp.status(), 200);
    let (p, sent) = fake.last_request().unwrap();
    assert_eq!(p, "/api/chat");
    assert!(sent.get("tools").is_none(), "{sent}");
}
