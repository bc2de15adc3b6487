//! What the cost and budget tests share: a gateway with an in-memory access log in
//! front of the provider simulator, its config (a priced OpenAI-format target, an
//! unpriced Ollama one, two route classes, one client key), and readers for
//! `/metrics`.
#![allow(dead_code)]

use powertune_gateway::config::key_hash;
use powertune_gateway::{Config, EventLog, Gateway, TokioClock};
use powertune_provider_sim::{ProviderSim, Script, SimHandle};
use serde_json::{json, Value};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const WEB_KEY: &str = "pt-web-5c1e0b7d2a9f4e83";

/// gpt-4o-mini's price in pico-dollars per token: $0.15 and $0.60 per million.
pub const IN_PICO: u64 = 150_000;
pub const OUT_PICO: u64 = 600_000;

/// The simulator, answering five words at once.
pub async fn sim() -> SimHandle {
    ProviderSim::instant(Script::text("Hello from the fake provider"))
        .await
        .unwrap()
}

/// `oai` (OpenAI format, `gpt-4o-mini` priced unless `pricing` says otherwise) and
/// `oll` (Ollama, `llama3` unpriced) at `url`; aliases `fast` → oai, `cheap` → oll;
/// route classes `latency` = [fast], `batch` = [fast], `bulk` = [cheap]; client
/// `web`. `pricing` and `extra` are appended (e.g. `[budgets]`, `[shared]`).
pub fn config(url: &str, pricing: &str, extra: &str) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
[timeouts]
connect = "2s"
first_token = "5s"
idle = "5s"
request = "20s"
[retry]
max_retries = 0
base = "1ms"
max = "5ms"
[[providers]]
name = "oai"
kind = "openai"
base_url = "{url}/v1"
  [[providers.credentials]]
  name = "main"
[[providers]]
name = "oll"
kind = "ollama"
base_url = "{url}"
[models.fast]
targets = ["oai:gpt-4o-mini"]
[models.cheap]
targets = ["oll:llama3"]
[routes]
latency = ["fast"]
batch = ["fast"]
bulk = ["cheap"]
[[clients]]
name = "web"
key_sha256 = "{web}"
{pricing}
{extra}"#,
        web = hex::encode(key_hash(WEB_KEY)),
    )
}

pub const PRICING: &str =
    "[pricing]\n\"oai:gpt-4o-mini\" = { input_per_mtok = 0.15, output_per_mtok = 0.60 }\n";

/// An in-memory access log the test reads back.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub struct Served {
    pub url: String,
    pub gw: Arc<Gateway>,
    pub log: Captured,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Served {
    /// The access log's call lines so far.
    pub fn calls(&self) -> Vec<Value> {
        assert!(self.gw.flush_event_log(Duration::from_secs(5)));
        let text = String::from_utf8(self.log.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|v| v["event"] == "call")
            .collect()
    }
}

/// A gateway for `cfg` on loopback port 0 with a captured access log.
pub async fn serve_config(cfg: Config) -> Served {
    let gw = Gateway::new(cfg, Arc::new(TokioClock)).unwrap();
    let log = Captured::default();
    gw.set_event_log(EventLog::new(Box::new(log.clone()), 1024).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let g = gw.clone();
    let task = tokio::spawn(async move {
        let _ = g.serve(listener, Default::default()).await;
    });
    Served { url, gw, log, task }
}

pub async fn serve(toml: &str) -> Served {
    serve_config(
        Config::from_toml(toml, "test.toml", &|_| None)
            .unwrap()
            .config,
    )
    .await
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// A chat body in `front`'s shape: system "be brief", user "say hello please".
pub fn body(front: &str, model: &str, stream: bool) -> Value {
    let msgs = json!([{"role": "system", "content": "be brief"}, {"role": "user", "content": "say hello please"}]);
    match front {
        "openai" => {
            json!({"model": model, "stream": stream, "stream_options": {"include_usage": true}, "messages": msgs})
        }
        "anthropic" => {
            json!({"model": model, "stream": stream, "max_tokens": 64, "system": "be brief",
            "messages": [{"role": "user", "content": "say hello please"}]})
        }
        _ => json!({"model": model, "stream": stream, "messages": msgs}),
    }
}

pub fn path(front: &str) -> &'static str {
    match front {
        "openai" => "/v1/chat/completions",
        "anthropic" => "/v1/messages",
        _ => "/api/chat",
    }
}

/// One chat call as client `web` (its key as each API's client sends it).
pub async fn call(
    c: &reqwest::Client,
    url: &str,
    front: &str,
    model: &str,
    stream: bool,
) -> reqwest::Response {
    let req = c
        .post(format!("{url}{}", path(front)))
        .json(&body(front, model, stream));
    let req = match front {
        "anthropic" => req.header("x-api-key", WEB_KEY),
        _ => req.bearer_auth(WEB_KEY),
    };
    req.send().await.unwrap()
}

/// The call's status, its body read to the end (a stream too).
pub async fn status_and_body(r: reqwest::Response) -> (u16, String) {
    let s = r.status().as_u16();
    (s, r.text().await.unwrap())
}

/// `/metrics` parsed by a Prometheus text parser.
pub async fn scrape(c: &reqwest::Client, url: &str) -> prometheus_parse::Scrape {
    let text = c
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
}

pub fn value(v: &prometheus_parse::Value) -> f64 {
    match v {
        prometheus_parse::Value::Counter(x)
        | prometheus_parse::Value::Gauge(x)
        | prometheus_parse::Value::Untyped(x) => *x,
        other => panic!("not a number: {other:?}"),
    }
}

/// The exact cost in nano-dollars of `tokens_in`/`tokens_out` at gpt-4o-mini's price.
pub fn mini_nano(tokens_in: u64, tokens_out: u64) -> u64 {
    (tokens_in * IN_PICO + tokens_out * OUT_PICO + 500) / 1000
}
