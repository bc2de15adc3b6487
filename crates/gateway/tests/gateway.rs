//! The gateway against real fake providers (HTTP servers on loopback port 0) with real
//! HTTP clients (reqwest, async-openai).

use futures_util::StreamExt;
use powertune_gateway::breaker::ManualClock;
use powertune_gateway::metrics::StatusSnapshot;
use powertune_gateway::{Config, Gateway};
use powertune_test_support::providers::{Behavior, FakeProvider};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

struct Rig {
    url: String,
    clock: Arc<ManualClock>,
    _gw: Arc<Gateway>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn env(k: &str) -> Option<String> {
    match k {
        "FAKE_KEY_1" => Some("sk-one".into()),
        "FAKE_KEY_2" => Some("sk-two".into()),
        _ => None,
    }
}

async fn rig(toml: &str) -> Rig {
    let cfg = Config::from_toml(toml, "test.toml", &env).unwrap();
    let clock = Arc::new(ManualClock::new());
    let gw = Gateway::new(cfg, clock.clone()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let g = gw.clone();
    let task = tokio::spawn(async move {
        let _ = g.serve(listener, std::future::pending()).await;
    });
    Rig {
        url,
        clock,
        _gw: gw,
        task,
    }
}

/// Three providers (one of each kind) on the same fake server.
fn three_kinds(fake: &FakeProvider, extra: &str) -> String {
    format!(
        r#"
[timeouts]
connect_s = 2
first_token_s = 5
idle_s = 5
request_s = 20
[retry]
base_ms = 1
max_ms = 50
{extra}
[[providers]]
name = "oai"
kind = "openai"
base_url = "{u}/v1"
  [[providers.credentials]]
  name = "main"
  api_key_env = "FAKE_KEY_1"
[[providers]]
name = "ant"
kind = "anthropic"
base_url = "{u}"
  [[providers.credentials]]
  name = "main"
  api_key_env = "FAKE_KEY_2"
[[providers]]
name = "oll"
kind = "ollama"
base_url = "{u}"
[models.fast]
targets = ["oai:gpt-fast"]
"#,
        u = fake.url
    )
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// A chat request body in the shape of `front`.
fn body(front: &str, model: &str, stream: bool) -> Value {
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

fn path(front: &str) -> &'static str {
    match front {
        "openai" => "/v1/chat/completions",
        "anthropic" => "/v1/messages",
        _ => "/api/chat",
    }
}

/// (text, output tokens, last piece) decoded from a response in `front`'s format.
fn decode(front: &str, stream: bool, raw: &str) -> (String, u64, String) {
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

#[tokio::test]
async fn every_front_api_through_every_provider_json_and_stream() {
    let fake = FakeProvider::start().await;
    let r = rig(&three_kinds(&fake, "")).await;
    let c = http();
    for front in ["openai", "anthropic", "ollama"] {
        for (provider, upstream_path) in [
            ("oai", "/v1/chat/completions"),
            ("ant", "/v1/messages"),
            ("oll", "/api/chat"),
        ] {
            for stream in [false, true] {
                let what = format!("{front} front → {provider} provider, stream={stream}");
                let resp = c
                    .post(format!("{}{}", r.url, path(front)))
                    .json(&body(front, &format!("{provider}:m-{provider}"), stream))
                    .send()
                    .await
                    .unwrap();
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
    assert_eq!(fake.requests(), 18);
    assert_eq!(fake.requests_with_key("sk-one"), 6);
    assert_eq!(fake.requests_with_key("sk-two"), 6);
    assert_eq!(fake.completed_streams(), 9);
    // /status agrees with the provider's count
    let s: StatusSnapshot = c
        .get(format!("{}/status", r.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ok: u64 = s
        .series
        .iter()
        .map(|x| x.requests.get("ok").copied().unwrap_or(0))
        .sum();
    assert_eq!(ok, 18);
    assert_eq!(s.calls, 18);
    let metrics = c
        .get(format!("{}/metrics", r.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("powertune_gateway_requests_total{provider=\"ant\",credential=\"main\",model=\"m-ant\",outcome=\"ok\"} 6"), "{metrics}");
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

#[tokio::test]
async fn breaker_opens_after_exactly_five_failures_half_opens_after_recovery_and_closes() {
    let fake = FakeProvider::start().await;
    fake.set(Behavior::status(500));
    let r = rig(&three_kinds(&fake, "max_retries = 0")).await;
    let c = http();
    for i in 0..5 {
        let resp = c
            .post(format!("{}/v1/chat/completions", r.url))
            .json(&body("openai", "fast", false))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 502, "call {i}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["type"], "server_error");
    }
    assert_eq!(fake.requests(), 5);
    // the 6th is answered fast by the gateway: 503 + Retry-After = the recovery time
    let started = std::time::Instant::now();
    let resp = c
        .post(format!("{}/v1/chat/completions", r.url))
        .json(&body("openai", "fast", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let ra: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((119..=120).contains(&ra), "{ra}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(fake.requests(), 5, "an open breaker sends nothing upstream");
    // the Anthropic front gets the same in its own shape
    let resp = c
        .post(format!("{}/v1/messages", r.url))
        .json(&body("anthropic", "fast", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "overloaded_error");
    let s: StatusSnapshot = c
        .get(format!("{}/status", r.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let oai = s.credentials.iter().find(|x| x.provider == "oai").unwrap();
    assert_eq!((oai.state.as_str(), oai.trips), ("open", 1));

    // after the recovery time: half-open, one probe; it succeeds and closes the breaker
    r.clock.advance(Duration::from_secs(119));
    let resp = c
        .post(format!("{}/v1/chat/completions", r.url))
        .json(&body("openai", "fast", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503, "still open at 119 s");
    r.clock.advance(Duration::from_secs(1));
    fake.set(Behavior::default());
    let resp = c
        .post(format!("{}/v1/chat/completions", r.url))
        .json(&body("openai", "fast", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(fake.requests(), 6);
    let s: StatusSnapshot = c
        .get(format!("{}/status", r.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let oai = s.credentials.iter().find(|x| x.provider == "oai").unwrap();
    assert_eq!(oai.state, "closed");
    assert_eq!(oai.transitions, 3);
    assert!(s.rejected_all_open >= 3);
}

#[tokio::test]
async fn rate_limit_429_honours_retry_after_then_succeeds() {
    let fake = FakeProvider::start().await;
    fake.push(Behavior {
        status: 429,
        retry_after: Some("1".into()),
        ..Default::default()
    });
    let r = rig(&three_kinds(&fake, "").replace("max_ms = 50", "max_ms = 3000")).await;
    let c = http();
    let started = std::time::Instant::now();
    let resp = c
        .post(format!("{}/v1/chat/completions", r.url))
        .json(&body("openai", "fast", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-powertune-retries"], "1");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "waited out Retry-After: {:?}",
        started.elapsed()
    );
    assert_eq!(fake.requests(), 2);
    let s: StatusSnapshot = c
        .get(format!("{}/status", r.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let oai = s.credentials.iter().find(|x| x.provider == "oai").unwrap();
    assert_eq!(oai.trips, 0, "429 is not a failure");
    assert_eq!(s.retries_by_depth, vec![0, 1, 0]);

    // a long Retry-After is not waited out: the client gets 429 and the Retry-After
    fake.push(Behavior {
        status: 429,
        retry_after: Some("30".into()),
        ..Default::default()
    });
    let resp = c
        .post(format!("{}/v1/chat/completions", r.url))
        .json(&body("openai", "fast", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let ra: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((29..=30).contains(&ra), "{ra}");
    assert_eq!(fake.requests(), 3);
}

#[tokio::test]
async fn retries_stop_at_two_and_move_to_the_next_target() {
    let bad = FakeProvider::start().await;
    bad.set(Behavior::status(503));
    let good = FakeProvider::start().await;
    let toml = format!(
        r#"
[retry]
base_ms = 1
max_ms = 20
[[providers]]
name = "bad"
kind = "openai"
base_url = "{}/v1"
[[providers]]
name = "good"
kind = "anthropic"
base_url = "{}"
[models.fast]
targets = ["bad:m1"]
[models.cheap]
targets = ["bad:m2", "good:m3"]
[routes]
latency = ["fast"]
batch = ["cheap"]
[[rules]]
model_prefix = "report-"
route = "batch"
"#,
        bad.url, good.url
    );
    let r = rig(&toml).await;
    let c = http();
    // one target only: 1 try + 2 retries, then the error
    let resp = c
        .post(format!("{}/v1/chat/completions", r.url))
        .json(&body("openai", "fast", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(bad.requests(), 3);
    // header route class batch: bad fails once, the retry falls back to good
    let resp = c
        .post(format!("{}/v1/chat/completions", r.url))
        .header("x-powertune-route", "batch")
        .json(&body("openai", "whatever", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-powertune-provider"], "good");
    assert_eq!(resp.headers()["x-powertune-retries"], "1");
    assert_eq!(bad.requests(), 4);
    // a route rule (model prefix) picks the batch class too
    let resp = c
        .post(format!("{}/v1/chat/completions", r.url))
        .json(&body("openai", "report-weekly", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // unknown model and unknown route class: the client's own 4xx, nothing sent
    let before = bad.requests() + good.requests();
    let resp = c
        .post(format!("{}/v1/chat/completions", r.url))
        .json(&body("openai", "nope", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let resp = c
        .post(format!("{}/v1/chat/completions", r.url))
        .header("x-powertune-route", "slow")
        .json(&body("openai", "fast", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = c
        .post(format!("{}/v1/chat/completions", r.url))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(bad.requests() + good.requests(), before);
}

#[tokio::test]
async fn client_errors_do_not_count_and_auth_failures_disable_the_credential() {
    let fake = FakeProvider::start().await;
    let toml = format!(
        r#"
[retry]
base_ms = 1
max_ms = 20
[[providers]]
name = "oai"
kind = "openai"
base_url = "{}/v1"
  [[providers.credentials]]
  name = "one"
  api_key_env = "FAKE_KEY_1"
  [[providers.credentials]]
  name = "two"
  api_key_env = "FAKE_KEY_2"
"#,
        fake.url
    );
    let r = rig(&toml).await;
    let c = http();
    // 6 provider 400s: the client's fault, passed through, never retried, breaker stays closed
    for _ in 0..6 {
        fake.push(Behavior::status(400));
        let resp = c
            .post(format!("{}/v1/chat/completions", r.url))
            .json(&body("openai", "oai:m", false))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);
    }
    assert_eq!(fake.requests(), 6);
    // a 401 disables that credential; the retry moves to the other one
    fake.push(Behavior::status(401));
    let resp = c
        .post(format!("{}/v1/chat/completions", r.url))
        .json(&body("openai", "oai:m", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let s: StatusSnapshot = c
        .get(format!("{}/status", r.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let states: Vec<&str> = s.credentials.iter().map(|x| x.state.as_str()).collect();
    assert!(
        states.contains(&"disabled") && states.contains(&"closed"),
        "{states:?}"
    );
    assert!(s.credentials.iter().all(|x| x.trips == 0));
    // from now on only the healthy key is used
    let (k1, k2) = (
        fake.requests_with_key("sk-one"),
        fake.requests_with_key("sk-two"),
    );
    for _ in 0..4 {
        let resp = c
            .post(format!("{}/v1/chat/completions", r.url))
            .json(&body("openai", "oai:m", false))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let moved = (
        fake.requests_with_key("sk-one") - k1,
        fake.requests_with_key("sk-two") - k2,
    );
    assert!(moved == (4, 0) || moved == (0, 4), "{moved:?}");
}

#[tokio::test]
async fn weights_three_to_one_split_traffic_and_rpm_limits_skip_a_key() {
    let fake = FakeProvider::start().await;
    let toml = format!(
        r#"
[[providers]]
name = "oai"
kind = "openai"
base_url = "{u}/v1"
  [[providers.credentials]]
  name = "one"
  api_key_env = "FAKE_KEY_1"
  weight = 3
  [[providers.credentials]]
  name = "two"
  api_key_env = "FAKE_KEY_2"
  weight = 1
[[providers]]
name = "limited"
kind = "openai"
base_url = "{u}/v1"
  [[providers.credentials]]
  name = "one"
  api_key_env = "FAKE_KEY_1"
  weight = 100
  rpm = 1
  [[providers.credentials]]
  name = "two"
  api_key_env = "FAKE_KEY_2"
  weight = 1
"#,
        u = fake.url
    );
    let r = rig(&toml).await;
    let c = http();
    for _ in 0..80 {
        let resp = c
            .post(format!("{}/v1/chat/completions", r.url))
            .json(&body("openai", "oai:m", false))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let (a, b) = (
        fake.requests_with_key("sk-one"),
        fake.requests_with_key("sk-two"),
    );
    assert_eq!(a + b, 80);
    assert!((54..=66).contains(&a), "3:1 split of 80 gave {a}:{b}");
    // rpm = 1 on the heavy key: one call uses it, the rest go to the other key
    for _ in 0..4 {
        let resp = c
            .post(format!("{}/v1/chat/completions", r.url))
            .json(&body("openai", "limited:m", false))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(fake.requests_with_key("sk-one") - a, 1);
    assert_eq!(fake.requests_with_key("sk-two") - b, 3);
}

#[tokio::test]
async fn stalled_stream_hits_the_idle_timeout_and_frees_the_upstream() {
    let fake = FakeProvider::start().await;
    fake.set(Behavior {
        stall_after: Some(2),
        ..Default::default()
    });
    let cfg = three_kinds(&fake, "").replace("idle_s = 5", "idle_s = 0.3");
    let r = rig(&cfg).await;
    let c = http();
    let resp = c
        .post(format!("{}/v1/chat/completions", r.url))
        .json(&body("openai", "fast", true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let raw = tokio::time::timeout(Duration::from_secs(10), resp.text())
        .await
        .unwrap()
        .unwrap();
    assert!(raw.contains("\"content\":\"Hello \""), "{raw}");
    let last = raw
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .next_back()
        .unwrap();
    let v: Value = serde_json::from_str(last).unwrap();
    assert_eq!(v["error"]["type"], "timeout_error", "{raw}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("idle"),
        "{raw}"
    );
    assert!(!raw.contains("[DONE]"));
    assert!(
        fake.wait_closed_mid_stream(1, Duration::from_secs(5)).await,
        "the gateway let go of the stalled upstream"
    );
    let s: StatusSnapshot = c
        .get(format!("{}/status", r.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ser = s.series.iter().find(|x| x.provider == "oai").unwrap();
    assert_eq!(ser.requests.get("timeout"), Some(&1));
    assert_eq!(
        s.credentials
            .iter()
            .find(|x| x.provider == "oai")
            .unwrap()
            .consecutive_failures,
        1
    );
}

#[tokio::test]
async fn time_to_first_token_timeout_is_retried() {
    let fake = FakeProvider::start().await;
    fake.push(Behavior {
        stall_after: Some(0),
        ..Default::default()
    });
    let cfg = three_kinds(&fake, "").replace("first_token_s = 5", "first_token_s = 0.3");
    let r = rig(&cfg).await;
    let resp = http()
        .post(format!("{}/v1/chat/completions", r.url))
        .json(&body("openai", "fast", true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-powertune-retries"], "1");
    let (text, _, last) = decode("openai", true, &resp.text().await.unwrap());
    assert_eq!(
        (text.as_str(), last.as_str()),
        ("Hello from the fake provider", "[DONE]")
    );
    assert_eq!(fake.requests(), 2);
}

#[tokio::test]
async fn mid_stream_provider_errors_reach_the_client_in_its_own_shape() {
    let fake = FakeProvider::start().await;
    fake.set(Behavior {
        error_after: Some(2),
        ..Default::default()
    });
    let r = rig(&three_kinds(&fake, "")).await;
    let c = http();
    // Anthropic provider overloaded mid-stream → OpenAI client sees an SSE error object
    let raw = c
        .post(format!("{}/v1/chat/completions", r.url))
        .json(&body("openai", "ant:m", true))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(raw.contains("\"content\":\"from \""), "{raw}");
    assert!(
        raw.contains("\"error\"") && raw.contains("Overloaded"),
        "{raw}"
    );
    // OpenAI provider error mid-stream → Anthropic client sees `event: error`
    let raw = c
        .post(format!("{}/v1/messages", r.url))
        .json(&body("anthropic", "oai:m", true))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        raw.contains("event: error\ndata: {\"error\":{\"message\""),
        "{raw}"
    );
    assert!(!raw.contains("message_stop"));
    // → Ollama client sees an {"error": ...} line
    let raw = c
        .post(format!("{}/api/chat", r.url))
        .json(&body("ollama", "oll:m", true))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let last: Value = serde_json::from_str(raw.lines().last().unwrap()).unwrap();
    assert!(
        last["error"].as_str().unwrap().contains("mid-stream"),
        "{raw}"
    );
    // never retried once bytes reached the client; each counts as a breaker failure
    assert_eq!(fake.requests(), 3);
    let s: StatusSnapshot = c
        .get(format!("{}/status", r.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        s.credentials.iter().all(|x| x.consecutive_failures == 1),
        "{:?}",
        s.credentials
    );
}

#[tokio::test]
async fn client_disconnect_mid_stream_frees_the_upstream_request() {
    let fake = FakeProvider::start().await;
    fake.set(Behavior {
        stall_after: Some(2),
        ..Default::default()
    });
    let r = rig(&three_kinds(&fake, "")).await;
    let c = http();
    let resp = c
        .post(format!("{}/v1/chat/completions", r.url))
        .json(&body("openai", "fast", true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut s = resp.bytes_stream();
    let first = tokio::time::timeout(Duration::from_secs(5), s.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(!first.is_empty());
    drop(s); // the client hangs up
    assert!(
        fake.wait_closed_mid_stream(1, Duration::from_secs(5)).await,
        "the fake provider saw its connection close"
    );
    // the hang-up is not a provider failure
    let end = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let st: StatusSnapshot = c
            .get(format!("{}/status", r.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let ser = st.series.iter().find(|x| x.provider == "oai");
        if let Some(n) = ser.and_then(|x| x.requests.get("client_closed")) {
            assert_eq!(*n, 1);
            let cred = st.credentials.iter().find(|x| x.provider == "oai").unwrap();
            assert_eq!(
                (cred.state.as_str(), cred.consecutive_failures),
                ("closed", 0)
            );
            break;
        }
        assert!(
            std::time::Instant::now() < end,
            "client_closed never recorded: {st:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn async_openai_client_talks_to_the_gateway() {
    use async_openai::config::OpenAIConfig;
    use async_openai::types::chat::{
        ChatCompletionRequestUserMessageArgs, CreateChatCompletionRequestArgs,
    };
    let fake = FakeProvider::start().await;
    let r = rig(&three_kinds(&fake, "")).await;
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
    assert_eq!(fake.requests_with_key("not-a-real-key"), 0);
    assert_eq!(fake.requests_with_key("sk-one"), 2);
}

#[tokio::test]
async fn status_collector_and_judge_over_a_live_gateway() {
    let fake = FakeProvider::start().await;
    let r = rig(&three_kinds(&fake, "max_retries = 0")).await;
    let c = http();
    for _ in 0..3 {
        let resp = c
            .post(format!("{}/v1/chat/completions", r.url))
            .json(&body("openai", "fast", false))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let s = powertune_gateway::collect::collect_status(&r.url)
        .await
        .unwrap();
    let base = powertune_gateway::judge::Baseline::from_snapshot(&s);
    assert_eq!(base.providers["oai"].count, 3);
    let t = powertune_core::targets::AiTargets::default();
    let findings = powertune_gateway::judge::judge(&s, Some(&base), &t);
    let checks: Vec<&str> = findings.iter().map(|f| f.check.as_str()).collect();
    assert_eq!(
        checks,
        ["breakers_open", "provider_p95_vs_baseline", "retry_depth"]
    );
    assert!(
        findings
            .iter()
            .all(|f| f.verdict == powertune_core::Verdict::Pass),
        "{findings:?}"
    );
    // unreachable and not-a-gateway are clear errors
    let e = powertune_gateway::collect::collect_status("http://127.0.0.1:1")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot reach"), "{e}");
    let e = powertune_gateway::collect::collect_status(&format!("{}/v1", fake.url))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("404"), "{e}");
}

/// A gateway started from a config file (so it can reload), keys from [`env`].
async fn rig_file(path: &std::path::Path) -> Rig {
    let cfg = Config::load_with(path, &env).unwrap();
    let clock = Arc::new(ManualClock::new());
    let gw = Gateway::new(cfg, clock.clone()).unwrap();
    gw.set_config_source(path.to_path_buf(), Arc::new(env));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let g = gw.clone();
    let task = tokio::spawn(async move {
        let _ = g.serve(listener, std::future::pending()).await;
    });
    Rig {
        url,
        clock,
        _gw: gw,
        task,
    }
}

fn reload_config(u: &str, change_key: &str, extra: &str) -> String {
    format!(
        r#"
[retry]
base_ms = 1
max_ms = 20
{extra}
[[providers]]
name = "oai"
kind = "openai"
base_url = "{u}/v1"
  [[providers.credentials]]
  name = "one"
  api_key_env = "FAKE_KEY_1"
  [[providers.credentials]]
  name = "two"
  api_key_env = "FAKE_KEY_2"
[[providers]]
name = "keep"
kind = "openai"
base_url = "{u}/v1"
  [[providers.credentials]]
  name = "main"
  api_key_env = "FAKE_KEY_1"
[[providers]]
name = "change"
kind = "openai"
base_url = "{u}/v1"
  [[providers.credentials]]
  name = "main"
  api_key_env = "{change_key}"
"#
    )
}

async fn state_of(c: &reqwest::Client, url: &str) -> (u64, Vec<String>) {
    let s: StatusSnapshot = c
        .get(format!("{url}/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (
        s.config_generation,
        s.credentials
            .iter()
            .map(|c| format!("{}/{}={}", c.provider, c.credential, c.state))
            .collect(),
    )
}

async fn chat_status(c: &reqwest::Client, url: &str, model: &str) -> u16 {
    c.post(format!("{url}/v1/chat/completions"))
        .json(&body("openai", model, false))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn config_reload_reenables_keeps_unchanged_breakers_and_refuses_bad_files() {
    let fake = FakeProvider::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.toml");
    std::fs::write(&file, reload_config(&fake.url, "FAKE_KEY_1", "")).unwrap();
    let r = rig_file(&file).await;
    let c = http();

    // a 401 disables oai/one (the retry succeeds on oai/two)
    fake.push(Behavior::status(401));
    assert_eq!(chat_status(&c, &r.url, "oai:m").await, 200);
    // five 500s open keep/main and change/main (3 attempts, then 2 more and the breaker is open)
    for model in ["keep:m", "change:m"] {
        for _ in 0..5 {
            fake.push(Behavior::status(500));
        }
        assert_eq!(chat_status(&c, &r.url, model).await, 502);
        assert_eq!(chat_status(&c, &r.url, model).await, 502);
        assert_eq!(chat_status(&c, &r.url, model).await, 503, "{model} is open");
    }
    let before = fake.requests();
    assert_eq!(before, 12);
    let (generation, states) = state_of(&c, &r.url).await;
    assert_eq!(generation, 1);
    assert_eq!(
        states,
        [
            "oai/one=disabled",
            "oai/two=closed",
            "keep/main=open",
            "change/main=open"
        ]
    );

    // a bad file is refused with its key named; the old config keeps serving
    std::fs::write(
        &file,
        reload_config(&fake.url, "FAKE_KEY_1", "[breaker]\nfailure_treshold = 3\n"),
    )
    .unwrap();
    let resp = c
        .post(format!("{}/admin/reload", r.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["reloaded"], false);
    let err = v["error"].as_str().unwrap();
    assert!(
        err.contains("failure_treshold") && err.contains("gateway.toml"),
        "{err}"
    );
    assert!(!err.contains('\n'), "one line: {err}");
    let (generation, states) = state_of(&c, &r.url).await;
    assert_eq!(generation, 1);
    assert_eq!(states[0], "oai/one=disabled");
    assert_eq!(chat_status(&c, &r.url, "oai:m").await, 200);

    // a good file: change/main's key changed (starts closed), the rest kept, oai/one re-enabled
    std::fs::write(&file, reload_config(&fake.url, "FAKE_KEY_2", "")).unwrap();
    let resp = c
        .post(format!("{}/admin/reload", r.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v,
        json!({"reloaded": true, "generation": 2, "kept": 3, "fresh": 1, "reenabled": 1, "removed": 0})
    );
    let (generation, states) = state_of(&c, &r.url).await;
    assert_eq!(generation, 2);
    assert_eq!(
        states,
        [
            "oai/one=closed",
            "oai/two=closed",
            "keep/main=open",
            "change/main=closed"
        ]
    );
    // the kept breaker still refuses without calling upstream; the changed one serves
    let n = fake.requests();
    assert_eq!(chat_status(&c, &r.url, "keep:m").await, 503);
    assert_eq!(fake.requests(), n);
    assert_eq!(chat_status(&c, &r.url, "change:m").await, 200);
    assert!(fake.requests_with_key("sk-two") > 0);
    // both oai credentials serve again
    let k1 = fake.requests_with_key("sk-one");
    for _ in 0..4 {
        assert_eq!(chat_status(&c, &r.url, "oai:m").await, 200);
    }
    assert!(fake.requests_with_key("sk-one") - k1 >= 2);
    // the kept breaker's recovery time was not reset by the reload
    r.clock.advance(Duration::from_secs(121));
    assert_eq!(chat_status(&c, &r.url, "keep:m").await, 200);
}

/// The official Python SDKs (anthropic, ollama, openai from PyPI; scripts/test.sh
/// installs them) against the gateway: each SDK's own call, JSON and streaming, once
/// to a provider of its own format (pass-through) and once to each other kind
/// (translated).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_anthropic_ollama_and_openai_sdks_talk_to_the_gateway() {
    let fake = FakeProvider::start().await;
    let r = rig(&three_kinds(&fake, "")).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/clients.py");
    let url = r.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        let mut child = std::process::Command::new("python3")
            .arg(script)
            .arg(&url)
            .args(["ant:claude-x", "oai:gpt-x", "oll:llama-x", "--"])
            .args(["oll:llama-x", "ant:claude-x", "oai:gpt-x", "--"])
            .args(["oai:gpt-x", "ant:claude-x"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs (scripts/test.sh installs anthropic, ollama and openai)");
        // bounded: the SDKs have 20 s timeouts; give up on the child after 90 s
        let end = std::time::Instant::now() + Duration::from_secs(90);
        while child.try_wait().unwrap().is_none() && std::time::Instant::now() < end {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "SDK script failed (pip install anthropic ollama openai):\n{stdout}\n{stderr}"
    );
    let calls: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
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
    assert_eq!(fake.requests(), 16);
}

#[tokio::test]
async fn tool_calls_translate_between_openai_anthropic_and_ollama() {
    let fake = FakeProvider::start().await;
    let r = rig(&three_kinds(&fake, "")).await;
    let c = http();
    let weather = || Behavior {
        tool_call: Some(("get_weather".into(), json!({"city": "Oslo"}))),
        ..Default::default()
    };
    let schema = json!({"type": "object", "properties": {"city": {"type": "string"}}});

    // OpenAI client → Anthropic provider: tools, an earlier call and its result
    fake.push(weather());
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
    assert_eq!(msg["tool_calls"][0]["id"], "toolu_fake_1");
    assert_eq!(msg["tool_calls"][0]["function"]["name"], "get_weather");
    let args: Value = serde_json::from_str(
        msg["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(args, json!({"city": "Oslo"}));

    // Anthropic client → OpenAI provider
    fake.push(weather());
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
        json!([{"type": "tool_use", "id": "call_fake_1", "name": "get_weather", "input": {"city": "Oslo"}}])
    );

    // Ollama client → Anthropic provider
    fake.push(weather());
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

// ------------------------------------------------ tool calls in streams, images

/// A loopback provider (a real axum server on port 0) that streams one canned answer
/// in each API's own format: the text "Checking." and a call of get_weather
/// {"city":"Oslo"} (arguments in fragments where the API streams them; Ollama sends
/// the call whole). The shared fake streams text only. Keeps the last request.
struct ToolStreamer {
    url: String,
    last: Arc<std::sync::Mutex<Option<(String, Value)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ToolStreamer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn tool_stream_pieces(path: &str) -> (&'static str, Vec<String>) {
    let sse = |v: Value| format!("event: {}\ndata: {v}\n\n", v["type"].as_str().unwrap());
    match path {
        "/v1/chat/completions" => {
            let chunk = |delta: Value, finish: Value| {
                format!(
                    "data: {}\n\n",
                    json!({"id": "chatcmpl-t", "object": "chat.completion.chunk", "created": 0, "model": "m",
                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
                )
            };
            let n = Value::Null;
            (
                "text/event-stream",
                vec![
                    chunk(
                        json!({"role": "assistant", "content": "Checking."}),
                        n.clone(),
                    ),
                    chunk(
                        json!({"tool_calls": [{"index": 0, "id": "call_up", "type": "function",
                        "function": {"name": "get_weather", "arguments": ""}}]}),
                        n.clone(),
                    ),
                    chunk(
                        json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\""}}]}),
                        n.clone(),
                    ),
                    chunk(
                        json!({"tool_calls": [{"index": 0, "function": {"arguments": ": \"Oslo\"}"}}]}),
                        n,
                    ),
                    chunk(json!({}), json!("tool_calls")),
                    format!(
                        "data: {}\n\ndata: [DONE]\n\n",
                        json!({"id": "chatcmpl-t", "choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 6}})
                    ),
                ],
            )
        }
        "/v1/messages" => (
            "text/event-stream",
            vec![
                sse(
                    json!({"type": "message_start", "message": {"id": "msg_t", "type": "message", "role": "assistant",
                    "model": "m", "content": [], "usage": {"input_tokens": 4, "output_tokens": 1}}}),
                ),
                sse(
                    json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                ),
                sse(json!({"type": "ping"})),
                sse(
                    json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Checking."}}),
                ),
                sse(json!({"type": "content_block_stop", "index": 0})),
                sse(
                    json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use",
                    "id": "toolu_up", "name": "get_weather", "input": {}}}),
                ),
                sse(
                    json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"city\""}}),
                ),
                sse(
                    json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ": \"Oslo\"}"}}),
                ),
                sse(json!({"type": "content_block_stop", "index": 1})),
                sse(
                    json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 6}}),
                ),
                sse(json!({"type": "message_stop"})),
            ],
        ),
        _ => (
            "application/x-ndjson",
            vec![
                format!(
                    "{}\n",
                    json!({"model": "m", "created_at": "2026-01-01T00:00:00Z", "message": {"role": "assistant", "content": "Checking."}, "done": false})
                ),
                format!(
                    "{}\n",
                    json!({"model": "m", "created_at": "2026-01-01T00:00:00Z", "message": {"role": "assistant", "content": "",
                    "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]}, "done": false})
                ),
                format!(
                    "{}\n",
                    json!({"model": "m", "created_at": "2026-01-01T00:00:00Z", "message": {"role": "assistant", "content": ""},
                    "done": true, "done_reason": "stop", "prompt_eval_count": 4, "eval_count": 6})
                ),
            ],
        ),
    }
}

/// [`three_kinds`] with every provider at `url` (no shared fake).
async fn three_kinds_at(url: &str) -> String {
    let fake = FakeProvider::start().await;
    three_kinds(&fake, "").replace(&fake.url, url)
}

async fn tool_streamer() -> ToolStreamer {
    use axum::http::{header, Uri};
    let last: Arc<std::sync::Mutex<Option<(String, Value)>>> = Arc::default();
    let l = last.clone();
    let app = axum::Router::new().fallback(move |uri: Uri, body: axum::body::Bytes| {
        let l = l.clone();
        async move {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            *l.lock().unwrap() = Some((uri.path().to_string(), v));
            let (ct, pieces) = tool_stream_pieces(uri.path());
            // one body frame per piece, so the gateway decodes across reads
            let frames = futures_util::stream::iter(
                pieces
                    .into_iter()
                    .map(|p| Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(p))),
            );
            (
                [(header::CONTENT_TYPE, ct)],
                axum::body::Body::from_stream(frames),
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    ToolStreamer { url, last, task }
}

/// (text, tool calls as (id, name, arguments object), finish reason) a client of
/// `front` reads from a stream.
fn read_tool_stream(front: &str, raw: &str) -> (String, Vec<(String, String, Value)>, String) {
    let mut text = String::new();
    let mut calls: Vec<(String, String, String)> = Vec::new();
    let mut finish = String::new();
    for l in raw.lines().filter(|l| !l.is_empty()) {
        let data = match front {
            "ollama" => l,
            _ => match l.strip_prefix("data: ") {
                Some(d) => d,
                None => continue,
            },
        };
        if data == "[DONE]" {
            continue;
        }
        let v: Value = serde_json::from_str(data).unwrap();
        match front {
            "openai" => {
                let d = &v["choices"][0]["delta"];
                text.push_str(d["content"].as_str().unwrap_or(""));
                for tc in d["tool_calls"].as_array().into_iter().flatten() {
                    let i = tc["index"].as_u64().unwrap() as usize;
                    if let Some(id) = tc["id"].as_str() {
                        assert_eq!(i, calls.len(), "{raw}");
                        calls.push((
                            id.into(),
                            tc["function"]["name"].as_str().unwrap().into(),
                            String::new(),
                        ));
                    }
                    calls[i]
                        .2
                        .push_str(tc["function"]["arguments"].as_str().unwrap_or(""));
                }
                if let Some(f) = v["choices"][0]["finish_reason"].as_str() {
                    finish = f.into();
                }
            }
            "anthropic" => match v["type"].as_str().unwrap() {
                "content_block_start" if v["content_block"]["type"] == "tool_use" => {
                    let cb = &v["content_block"];
                    calls.push((
                        cb["id"].as_str().unwrap().into(),
                        cb["name"].as_str().unwrap().into(),
                        String::new(),
                    ));
                }
                "content_block_delta" => {
                    text.push_str(v["delta"]["text"].as_str().unwrap_or(""));
                    if let Some(p) = v["delta"]["partial_json"].as_str() {
                        calls.last_mut().unwrap().2.push_str(p);
                    }
                }
                "message_delta" => finish = v["delta"]["stop_reason"].as_str().unwrap().into(),
                _ => {}
            },
            _ => {
                text.push_str(v["message"]["content"].as_str().unwrap_or(""));
                for tc in v["message"]["tool_calls"].as_array().into_iter().flatten() {
                    calls.push((
                        String::new(),
                        tc["function"]["name"].as_str().unwrap().into(),
                        tc["function"]["arguments"].to_string(),
                    ));
                }
                if v["done"] == true {
                    finish = v["done_reason"].as_str().unwrap().into();
                }
            }
        }
    }
    let calls = calls
        .into_iter()
        .map(|(id, n, a)| (id, n, serde_json::from_str(&a).unwrap()))
        .collect();
    (text, calls, finish)
}

#[tokio::test]
async fn tool_calls_inside_streams_reach_every_client_in_its_own_shape() {
    let up = tool_streamer().await;
    let cfg = three_kinds_at(&up.url).await;
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
async fn async_openai_streams_a_tool_call_from_an_anthropic_provider() {
    use async_openai::config::OpenAIConfig;
    use async_openai::types::chat::CreateChatCompletionRequest;
    let up = tool_streamer().await;
    let cfg = three_kinds_at(&up.url).await;
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

#[tokio::test]
async fn images_reach_each_provider_kind_in_its_own_shape() {
    const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg==";
    let fake = FakeProvider::start().await;
    let r = rig(&three_kinds(&fake, "")).await;
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
    let before = fake.requests();
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
    assert_eq!(fake.requests(), before);
}

#[tokio::test]
async fn an_image_url_skips_ollama_targets_and_is_a_400_when_none_is_left() {
    let fake = FakeProvider::start().await;
    let extra = r#"
[models.vision]
targets = ["oll:llava", "oai:gpt-4o"]
[models.local]
targets = ["oll:llava"]
"#;
    let r = rig(&three_kinds(&fake, extra)).await;
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
    let before = fake.requests();
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
    assert_eq!(fake.requests(), before);
}

#[tokio::test]
async fn a_forced_tool_call_skips_ollama_targets_and_tool_choice_is_translated() {
    let fake = FakeProvider::start().await;
    let extra = r#"
[models.tools]
targets = ["oll:llama3.1", "ant:claude-x"]
[models.local]
targets = ["oll:llama3.1"]
"#;
    let r = rig(&three_kinds(&fake, extra)).await;
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
    let before = fake.requests();
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
    assert_eq!(fake.requests(), before);
    // "none" reaches Ollama as no tools at all
    let resp = post(ask("local", json!("none"))).await.unwrap();
    assert_eq!(resp.status(), 200);
    let (p, sent) = fake.last_request().unwrap();
    assert_eq!(p, "/api/chat");
    assert!(sent.get("tools").is_none(), "{sent}");
}
