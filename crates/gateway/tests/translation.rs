//! Every front API through every provider kind, JSON and streaming.
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

#[tokio::test]
async fn every_front_api_through_every_provider_json_and_stream() {
    let fake = provider().await;
    // the models are configured targets (of aliases), so each is its own series
    let cfg = three_kinds(&fake.url())
        .model("z-oai", &["oai:m-oai"])
        .model("z-ant", &["ant:m-ant"])
        .model("z-oll", &["oll:m-oll"]);
    let r = rig(&cfg.toml()).await;
    let c = http();
    for front in ["openai", "anthropic", "ollama"] {
        for (provider, upstream_path) in [
            ("oai", "/v1/chat/completions"),
            ("ant", "/v1/messages"),
            ("oll", "/api/chat"),
        ] {
            for stream in [false, true] {
                let what = format!("{front} front → {provider} provider, stream={stream}");
                let resp = chat(
                    &c,
                    &r.url,
                    front,
                    &format!("{provider}:m-{provider}"),
                    stream,
                )
                .await;
                assert_eq!(resp.status(), 200, "{what}");
                assert!(
                    resp.headers().contains_key("x-powertune-overhead-ms"),
                    "{what}"
                );
                let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
                let raw = resp.text().await.unwrap();
                let (text, tokens, last) = decode(front, stream, &raw);
                assert_eq!(text, "Hello from the fake provider", "{what}: {raw}");
                assert_eq!(tokens, 5, "{what}: {raw}");
                if stream {
                    let want_ct = if front == "ollama" {
                        "application/x-ndjson"
                    } else {
                        "text/event-stream"
                    };
                    assert_eq!(ct, want_ct, "{what}");
                    let want_last = match front {
                        "openai" => "[DONE]",
                        "anthropic" => "message_stop",
                        _ => "done",
                    };
                    assert_eq!(last, want_last, "{what}: {raw}");
                } else {
                    let want = match front {
                        "openai" => "stop",
                        "anthropic" => "end_turn",
                        _ => "stop",
                    };
                    assert_eq!(last, want, "{what}");
                }
                // the provider got its own wire format, system prompt in its place
                let (p, sent) = fake.last_request().unwrap();
                assert_eq!(p, upstream_path, "{what}");
                assert_eq!(sent["model"], format!("m-{provider}"), "{what}");
                if provider == "ant" {
                    assert_eq!(sent["system"], "be brief", "{what}: {sent}");
                    assert_eq!(sent["messages"].as_array().unwrap().len(), 1, "{what}");
                } else {
                    assert_eq!(sent["messages"][0]["role"], "system", "{what}: {sent}");
                }
            }
        }
    }
    // 18 calls; keys went to their providers only (OpenAI bearer, Anthropic x-api-key)
    assert_eq!(fake.calls(), 18);
    assert_eq!(fake.calls_with_key("sk-one"), 6);
    assert_eq!(fake.calls_with_key("sk-two"), 6);
    assert_eq!(fake.stats().totals.streams_finished, 9);
    // /status agrees with the provider's count
    let s = status_of(&c, &r.url).await;
    let ok: u64 = s
        .series
        .iter()
        .map(|x| x.requests.get("ok").copied().unwrap_or(0))
        .sum();
    assert_eq!(ok, 18);
    assert_eq!(s.calls, 18);
    let resp = c.get(format!("{}/metrics", r.url)).send().await.unwrap();
    assert_eq!(
        resp.headers()["content-type"],
        powertune_core::prometheus::CONTENT_TYPE
    );
    let metrics = resp.text().await.unwrap();
    let sample = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {metrics}"))
    };
    // the server's count equals the client's
    assert_eq!(
        sample("powertune_gateway_requests_total{provider=\"ant\",credential=\"main\",model=\"m-ant\",outcome=\"ok\"}"),
        6.0
    );
    assert_eq!(sample("powertune_gateway_calls_total"), 18.0);
    assert_eq!(
        sample("powertune_gateway_latency_seconds_count{provider=\"ant\",credential=\"main\",model=\"m-ant\"}"),
        6.0
    );
    assert_eq!(sample("powertune_gateway_overhead_seconds_count"), 18.0);
    assert!(!metrics.contains("sk-one") && !metrics.contains("sk-two"));
    let models: Value = c
        .get(format!("{}/v1/models", r.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"][0]["id"], "fast");
}
