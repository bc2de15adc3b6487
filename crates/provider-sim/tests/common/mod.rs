//! Helpers of the simulator's integration tests: a simulator from TOML text, and a
//! plain streaming client that stamps each event with its arrival time.
#![allow(dead_code)]

use powertune_provider_sim::{ProviderSim, SimConfig, SimHandle};
use serde_json::Value;
use std::time::{Duration, Instant};

pub async fn sim(toml: &str) -> SimHandle {
    let cfg = SimConfig::from_toml("test.toml", toml).unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    ProviderSim::start(cfg, l).await.unwrap()
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// One event of a stream: when it arrived (since the request was sent), its SSE
/// event name (empty for NDJSON and OpenAI) and its data.
#[derive(Debug, Clone)]
pub struct Event {
    pub at: Duration,
    pub name: String,
    pub data: String,
}

impl Event {
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.data).ok()
    }

    /// Text this event carries (any dialect), if it is a content event.
    pub fn content(&self) -> Option<String> {
        let v = self.json()?;
        let t = v["choices"][0]["delta"]["content"]
            .as_str()
            .or(v["delta"]["text"].as_str())
            .or(if v["done"] == false {
                v["message"]["content"].as_str()
            } else {
                None
            })?;
        (!t.is_empty()).then(|| t.to_string())
    }
}

#[derive(Debug)]
pub struct Streamed {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub events: Vec<Event>,
    /// The body ended in an error (connection closed mid-stream, timeout).
    pub error: Option<String>,
    pub raw: String,
}

impl Streamed {
    pub fn text(&self) -> String {
        self.events.iter().filter_map(Event::content).collect()
    }
    /// Arrival times of the content events.
    pub fn content_times(&self) -> Vec<Duration> {
        self.events
            .iter()
            .filter(|e| e.content().is_some())
            .map(|e| e.at)
            .collect()
    }
}

/// Posts `body` to `path` and reads the answer event by event.
pub async fn post(c: &reqwest::Client, url: &str, path: &str, key: &str, body: &Value) -> Streamed {
    post_with(
        c,
        url,
        path,
        &[("authorization", &format!("Bearer {key}"))],
        body,
    )
    .await
}

pub async fn post_with(
    c: &reqwest::Client,
    url: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> Streamed {
    use futures_util::StreamExt;
    let mut rb = c.post(format!("{url}{path}")).json(body);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let t0 = Instant::now();
    let resp = rb.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let ndjson = path == "/api/chat";
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    let mut raw = String::new();
    let mut events = Vec::new();
    let mut error = None;
    while let Some(piece) = body.next().await {
        let piece = match piece {
            Ok(p) => p,
            Err(e) => {
                error = Some(format!("{e:?}"));
                break;
            }
        };
        let at = t0.elapsed();
        let s = String::from_utf8_lossy(&piece);
        raw.push_str(&s);
        buf.push_str(&s);
        let sep = if ndjson { "\n" } else { "\n\n" };
        while let Some(i) = buf.find(sep) {
            let block: String = buf.drain(..i + sep.len()).collect();
            let mut name = String::new();
            let mut data = String::new();
            if ndjson {
                data = block.trim().to_string();
            } else {
                for line in block.lines() {
                    if let Some(n) = line.strip_prefix("event: ") {
                        name = n.to_string();
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data.push_str(d);
                    }
                }
            }
            events.push(Event { at, name, data });
        }
    }
    if !buf.trim().is_empty() {
        events.push(Event {
            at: t0.elapsed(),
            name: String::new(),
            data: buf.trim().to_string(),
        });
    }
    Streamed {
        status,
        headers,
        events,
        error,
        raw,
    }
}

pub fn chat(model: &str, stream: bool) -> Value {
    serde_json::json!({
        "model": model, "stream": stream, "max_tokens": 1000,
        "stream_options": if stream { serde_json::json!({"include_usage": true}) } else { Value::Null },
        "messages": [{"role": "user", "content": "say something"}],
    })
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
