//! `/v1/embeddings` to OpenAI-compatible and Ollama providers, and the `azure`
//! provider kind (deployment URL, `api-version`, `api-key`), against a loopback
//! provider that records what it was sent (the provider simulator has no
//! embeddings or Azure paths).
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

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use common::*;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

/// What the recorder saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    query: Option<String>,
    api_key: Option<String>,
    authorization: Option<String>,
    body: Value,
}

#[derive(Clone, Default)]
struct Recorder {
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Answer this status (with an OpenAI error body) to the next request.
    fail_next: Arc<Mutex<Option<u16>>>,
}

async fn answer(State(r): State<Recorder>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let (api_key, authorization) = {
        let header = |n: &str| {
            req.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        (header("api-key"), header("authorization"))
    };
    let bytes = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    r.seen.lock().unwrap().push(Seen {
        path: path.clone(),
        query,
        api_key,
        authorization,
        body: body.clone(),
    });
    if let Some(status) = r.fail_next.lock().unwrap().take() {
        return (
            StatusCode::from_u16(status).unwrap(),
            axum::Json(json!({"error": {"message": "scripted", "type": "server_error"}})),
        )
            .into_response();
    }
    let n = match &body["input"] {
        Value::Array(a) => a.len(),
        _ => 1,
    };
    if path == "/api/embed" {
        let v: Vec<Vec<f32>> = (0..n).map(|i| vec![i as f32, 0.5]).collect();
        return axum::Json(
            json!({"model": body["model"], "embeddings": v, "prompt_eval_count": 7}),
        )
        .into_response();
    }
    if path.ends_with("/embeddings") {
        let data: Vec<Value> = (0..n)
            .map(|i| json!({"object": "embedding", "index": i, "embedding": [0.25, i as f32]}))
            .collect();
        return axum::Json(
            json!({"object": "list", "data": data, "model": body["model"],
            "usage": {"prompt_tokens": 5, "total_tokens": 5}}),
        )
        .into_response();
    }
    axum::Json(json!({
        "id": "chatcmpl-az", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello from azure"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}
    }))
    .into_response()
}

async fn recorder() -> (String, Recorder, tokio::task::JoinHandle<()>) {
    let r = Recorder::default();
    let app = axum::Router::new().fallback(answer).with_state(r.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    (url, r, task)
}

fn config(url: &str) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
[retry]
base = "1ms"
max = "5ms"
[[providers]]
name = "oai"
kind = "openai"
base_url = "{url}/v1"
  [[providers.credentials]]
  name = "main"
  api_key_env = "FAKE_KEY_1"
[[providers]]
name = "az"
kind = "azure"
base_url = "{url}"
api_version = "2024-10-21"
  [[providers.credentials]]
  name = "east"
  api_key_env = "FAKE_KEY_2"
[[providers]]
name = "ant"
kind = "anthropic"
base_url = "{url}"
[[providers]]
name = "oll"
kind = "ollama"
base_url = "{url}"
[models.embed]
targets = ["oai:text-embedding-3-small"]
[models.local-embed]
targets = ["ant:none", "oll:nomic-embed-text"]
[models.az-embed]
targets = ["az:emb-deploy"]
[models.az-chat]
targets = ["az:chat-deploy"]
[models.chat-only]
targets = ["ant:claude"]
"#
    )
}

async fn embed(c: &reqwest::Client, url: &str, body: Value) -> reqwest::Response {
    c.post(format!("{url}/v1/embeddings"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn embeddings_go_to_openai_and_ollama_providers_in_openais_shape() {
    let (url, rec, _task) = recorder().await;
    let r = rig(&config(&url)).await;
    let c = http();

    // OpenAI-compatible: the body as sent with the provider's model; the answer as it came
    let resp = embed(
        &c,
        &r.url,
        json!({"model": "embed", "input": ["a", "b"], "user": "u7"}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-powertune-provider"], "oai");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["data"][1]["embedding"], json!([0.25, 1.0]));
    assert_eq!(v["usage"]["prompt_tokens"], 5);
    let seen = rec.seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(seen.path, "/v1/embeddings");
    assert_eq!(seen.body["model"], "text-embedding-3-small");
    assert_eq!(seen.body["user"], "u7");
    assert_eq!(seen.authorization.as_deref(), Some("Bearer sk-one"));

    // Ollama (the Anthropic target has no embeddings and is skipped): rendered as
    // OpenAI's list, in floats and in base64 (what the OpenAI SDKs ask for)
    let resp = embed(
        &c,
        &r.url,
        json!({"model": "local-embed", "input": ["a", "b", "c"]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "local-embed");
    assert_eq!(v["data"].as_array().unwrap().len(), 3);
    assert_eq!(
        v["data"][2],
        json!({"object": "embedding", "index": 2, "embedding": [2.0, 0.5]})
    );
    assert_eq!(v["usage"]["prompt_tokens"], 7);
    let seen = rec.seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(seen.path, "/api/embed");
    assert_eq!(
        seen.body,
        json!({"model": "nomic-embed-text", "input": ["a", "b", "c"]})
    );
    let resp = embed(
        &c,
        &r.url,
        json!({"model": "local-embed", "input": "a", "encoding_format": "base64"}),
    )
    .await;
    let v: Value = resp.json().await.unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        bytes,
        [0.0f32, 0.5]
            .iter()
            .flat_map(|f| f.to_le_bytes())
            .collect::<Vec<u8>>()
    );

    // a model with no embeddings target, and a bad body: 400 in OpenAI's shape
    let before = rec.seen.lock().unwrap().len();
    for body in [
        json!({"model": "chat-only", "input": "a"}),
        json!({"model": "embed"}),
        json!({"model": "local-embed", "input": [[1, 2, 3]]}),
    ] {
        let resp = embed(&c, &r.url, body.clone()).await;
        assert_eq!(resp.status(), 400, "{body}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    }
    assert_eq!(
        rec.seen.lock().unwrap().len(),
        before,
        "nothing went upstream"
    );

    // the breaker and retries apply: a 500 is retried and counted
    *rec.fail_next.lock().unwrap() = Some(500);
    let resp = embed(&c, &r.url, json!({"model": "embed", "input": "x"})).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-powertune-retries"], "1");
    let s = status_of(&c, &r.url).await;
    let series = s
        .series
        .iter()
        .find(|x| x.provider == "oai" && x.model == "text-embedding-3-small")
        .unwrap();
    assert_eq!(series.requests["ok"], 2);
    assert_eq!(series.requests["server_error"], 1);
    assert_eq!(series.tokens_in, 10);
}

#[tokio::test]
async fn an_azure_provider_calls_its_deployment_with_the_api_version_and_an_api_key() {
    let (url, rec, _task) = recorder().await;
    let r = rig(&config(&url)).await;
    let c = http();
    for front in ["openai", "anthropic", "ollama"] {
        let resp = chat(&c, &r.url, front, "az-chat", false).await;
        assert_eq!(resp.status(), 200, "{front}");
        let (text, _, _) = decode(front, false, &resp.text().await.unwrap());
        assert_eq!(text, "hello from azure");
        let seen = rec.seen.lock().unwrap().last().cloned().unwrap();
        assert_eq!(
            seen.path,
            "/openai/deployments/chat-deploy/chat/completions"
        );
        assert_eq!(seen.query.as_deref(), Some("api-version=2024-10-21"));
        assert_eq!(seen.api_key.as_deref(), Some("sk-two"));
        assert_eq!(
            seen.authorization, None,
            "Azure takes the key as api-key only"
        );
    }
    let resp = embed(&c, &r.url, json!({"model": "az-embed", "input": "x"})).await;
    assert_eq!(resp.status(), 200);
    let seen = rec.seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(seen.path, "/openai/deployments/emb-deploy/embeddings");
    assert_eq!(seen.query.as_deref(), Some("api-version=2024-10-21"));
    // a deployment no alias names, as "provider:deployment"
    let resp = chat(&c, &r.url, "openai", "az:other-deploy", false).await;
    assert_eq!(resp.status(), 200);
    let seen = rec.seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        seen.path,
        "/openai/deployments/other-deploy/chat/completions"
    );
}

#[test]
fn an_azure_provider_needs_its_api_version_and_only_azure_takes_one() {
    let text = config("http://127.0.0.1:9").replace("api_version = \"2024-10-21\"\n", "");
    let e = powertune_gateway::Config::from_toml(&text, "g.toml", &env)
        .unwrap_err()
        .to_string();
    assert!(e.contains("providers[1].api_version"), "{e}");
    let text = config("http://127.0.0.1:9").replace(
        "kind = \"openai\"\n",
        "kind = \"openai\"\napi_version = \"1\"\n",
    );
    let e = powertune_gateway::Config::from_toml(&text, "g.toml", &env)
        .unwrap_err()
        .to_string();
    assert!(e.contains("providers[0].api_version"), "{e}");
}
