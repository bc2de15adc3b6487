//! What the gateway's integration tests share: a gateway on loopback port 0 with a
//! manual breaker clock, a config builder, request bodies and response decoders in
//! each front's shape, and a loopback provider that streams tool calls.
#![allow(dead_code, unused_imports)]

pub mod config;
pub mod scripted;
pub mod tool_streamer;

pub use config::{three_kinds, ConfigBuilder};
pub use scripted::ScriptedProvider;
pub use tool_streamer::{read_tool_stream, tool_streamer, ToolStreamer};

pub use powertune_provider_sim::{Script, SimHandle, ToolCallScript};

use powertune_gateway::breaker::ManualClock;
use powertune_gateway::metrics::StatusSnapshot;
use powertune_gateway::{Config, Gateway};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

pub struct Rig {
    pub url: String,
    pub clock: Arc<ManualClock>,
    pub gw: Arc<Gateway>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn env(k: &str) -> Option<String> {
    match k {
        "FAKE_KEY_1" => Some("sk-one".into()),
        "FAKE_KEY_2" => Some("sk-two".into()),
        _ => None,
    }
}

/// A gateway for `toml` (keys from [`env`]) on loopback port 0.
pub async fn rig(toml: &str) -> Rig {
    serve(
        Config::from_toml(toml, "test.toml", &env).unwrap().config,
        None,
    )
    .await
}

/// A gateway started from a config file (so it can reload), keys from [`env`].
pub async fn rig_file(path: &std::path::Path) -> Rig {
    serve(Config::load_with(path, &env).unwrap().config, Some(path)).await
}

async fn serve(cfg: Config, source: Option<&std::path::Path>) -> Rig {
    let clock = Arc::new(ManualClock::new());
    let gw = Gateway::new(cfg, clock.clone()).unwrap();
    if let Some(path) = source {
        gw.set_config_source(path.to_path_buf(), Arc::new(env));
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let g = gw.clone();
    let task = tokio::spawn(async move {
        let _ = g.serve(listener, Default::default()).await;
    });
    Rig {
        url,
        clock,
        gw,
        task,
    }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// A chat request body in the shape of `front`.
pub fn body(front: &str, model: &str, stream: bool) -> Value {
    let msgs = json!([{"role": "user", "content": "say hello please"}]);
    match front {
        "openai" => {
            json!({"model": model, "stream": stream, "stream_options": {"include_usage": true},
            "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "say hello please"}]})
        }
        "anthropic" => {
            json!({"model": model, "stream": stream, "max_tokens": 64, "system": "be brief", "messages": msgs})
        }
        _ => json!({"model": model, "stream": stream,
            "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "say hello please"}]}),
    }
}

pub fn path(front: &str) -> &'static str {
    match front {
        "openai" => "/v1/chat/completions",
        "anthropic" => "/v1/messages",
        _ => "/api/chat",
    }
}

/// (text, output tokens, last piece) decoded from a response in `front`'s format.
pub fn decode(front: &str, stream: bool, raw: &str) -> (String, u64, String) {
    if !stream {
        let v: Value = serde_json::from_str(raw).unwrap();
        return match front {
            "openai" => (
                v["choices"][0]["message"]["content"]
                    .as_str()
                    .unwrap()
                    .into(),
                v["usage"]["completion_tokens"].as_u64().unwrap(),
                v["choices"][0]["finish_reason"].as_str().unwrap().into(),
            ),
            "anthropic" => (
                v["content"][0]["text"].as_str().unwrap().into(),
                v["usage"]["output_tokens"].as_u64().unwrap(),
                v["stop_reason"].as_str().unwrap().into(),
            ),
            _ => (
                v["message"]["content"].as_str().unwrap().into(),
                v["eval_count"].as_u64().unwrap(),
                v["done_reason"].as_str().unwrap().into(),
            ),
        };
    }
    let mut text = String::new();
    let mut tokens = 0;
    let mut last = String::new();
    match front {
        "openai" => {
            for l in raw.lines().filter_map(|l| l.strip_prefix("data: ")) {
                last = l.to_string();
                if l == "[DONE]" {
                    continue;
                }
                let v: Value = serde_json::from_str(l).unwrap();
                if let Some(t) = v["choices"][0]["delta"]["content"].as_str() {
                    text.push_str(t);
                }
                if let Some(n) = v["usage"]["completion_tokens"].as_u64() {
                    tokens = n;
                }
            }
        }
        "anthropic" => {
            for l in raw.lines().filter_map(|l| l.strip_prefix("data: ")) {
                let v: Value = serde_json::from_str(l).unwrap();
                last = v["type"].as_str().unwrap().to_string();
                if let Some(t) = v["delta"]["text"].as_str() {
                    text.push_str(t);
                }
                if let Some(n) = v["usage"]["output_tokens"].as_u64() {
                    tokens = n;
                }
            }
        }
        _ => {
            for l in raw.lines().filter(|l| !l.is_empty()) {
                let v: Value = serde_json::from_str(l).unwrap();
                text.push_str(v["message"]["content"].as_str().unwrap_or(""));
                if v["done"] == true {
                    tokens = v["eval_count"].as_u64().unwrap();
                    last = "done".into();
                }
            }
        }
    }
    (text, tokens, last)
}

/// POSTs [`body`]`(front, model, stream)` to `front`'s chat path on the gateway at `url`.
pub async fn chat(
    c: &reqwest::Client,
    url: &str,
    front: &str,
    model: &str,
    stream: bool,
) -> reqwest::Response {
    c.post(format!("{url}{}", path(front)))
        .json(&body(front, model, stream))
        .send()
        .await
        .unwrap()
}

/// `GET {url}/status`.
pub async fn status_of(c: &reqwest::Client, url: &str) -> StatusSnapshot {
    c.get(format!("{url}/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// What the test provider answers unless a script says otherwise (five words).
pub const HELLO: &str = "Hello from the fake provider";

/// A script answering [`HELLO`]; tests set the other fields with `..hello()`.
pub fn hello() -> Script {
    Script::text(HELLO)
}

/// The provider simulator on loopback port 0, answering [`HELLO`] at once.
pub async fn provider() -> SimHandle {
    powertune_provider_sim::ProviderSim::instant(hello())
        .await
        .unwrap()
}

/// Waits (at most `within`) until `p` has seen `n` streams closed by their client.
pub async fn wait_closed(p: &SimHandle, n: u64, within: Duration) -> bool {
    let end = tokio::time::Instant::now() + within;
    loop {
        let seen = p.stats().totals.closed_by_client;
        if seen >= n || tokio::time::Instant::now() >= end {
            return seen >= n;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
