//! Hostile providers and clients: a provider that echoes the key back, long
//! `Retry-After`s, a client naming thousands of made-up models.
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

use axum::body::Body;
use axum::http::{HeaderMap, Response, StatusCode};
use common::*;
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A loopback provider that answers every call with `status` and an error body (in
/// the API's own shape, by path) repeating the key it was sent, the whole
/// `Authorization` header and a few more key-like strings; the key is echoed in its
/// response headers too. `status` 200 answers an OpenAI stream whose second event is
/// an error carrying the key.
struct EchoProvider {
    url: String,
    status: Arc<Mutex<u16>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for EchoProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn echo_provider() -> EchoProvider {
    let status = Arc::new(Mutex::new(400u16));
    let st = status.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri, headers: HeaderMap| {
        let status = *st.lock().unwrap();
        async move {
            let get = |n: &str| {
                headers
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string()
            };
            let (auth, xkey) = (get("authorization"), get("x-api-key"));
            let key = if xkey.is_empty() {
                auth.trim_start_matches("Bearer ").to_string()
            } else {
                xkey.clone()
            };
            let text = format!(
                "Incorrect API key provided: {key}. You sent Authorization: {auth} x-api-key: {xkey}; \
                 other keys on file: sk-proj-abcdefghij0123456789 and sk-ant-api03-ZZZZZZZZZZ; \
                 bearer token Bearer abcdefgh.ijklmnop"
            );
            if status == 200 {
                let chunk = json!({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
                    "choices": [{"index": 0, "delta": {"role": "assistant", "content": "hi"}, "finish_reason": null}]});
                let err = json!({"error": {"message": text, "type": "server_error"}});
                return Response::builder()
                    .header("content-type", "text/event-stream")
                    .header("x-echo-authorization", auth)
                    .body(Body::from(format!("data: {chunk}\n\ndata: {err}\n\n")))
                    .unwrap();
            }
            let body = match uri.path() {
                "/v1/messages" => json!({"type": "error", "error": {"type": "authentication_error", "message": text}}),
                "/api/chat" => json!({"error": text}),
                _ => json!({"error": {"message": text, "type": "invalid_request_error", "code": "invalid_api_key"}}),
            };
            Response::builder()
                .status(StatusCode::from_u16(status).unwrap())
                .header("content-type", "application/json")
                .header("x-echo-authorization", auth)
                .header("x-echo-key", key)
                .body(Body::from(body.to_string()))
                .unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    EchoProvider { url, status, task }
}

/// Asserts no credential-looking text is in `resp`'s headers or body; returns the body.
async fn no_secrets_in(resp: reqwest::Response, what: &str) -> String {
    let mut all = String::new();
    for (k, v) in resp.headers() {
        all.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("")));
    }
    let body = resp.text().await.unwrap();
    all.push_str(&body);
    for secret in [
        "sk-one",
        "sk-two",
        "sk-proj-abcdefghij0123456789",
        "sk-ant-api03-ZZZZZZZZZZ",
        "abcdefgh.ijklmnop",
    ] {
        assert!(!all.contains(secret), "{what}: {secret} leaked in\n{all}");
    }
    body
}

#[tokio::test]
async fn provider_error_text_reaches_the_client_without_any_credential() {
    let up = echo_provider().await;
    // oai (openai, key sk-one), ant (anthropic, key sk-two), oll (ollama, no key)
    let cfg = three_kinds(&up.url)
        .retries(0)
        .model("viaant", &["ant:claude"])
        .model("viaoll", &["oll:llama"]);
    let r = rig(&cfg.toml()).await;
    let c = http();
    for (status, front, model) in [
        (400, "openai", "fast"),
        (401, "openai", "viaant"),
        (500, "anthropic", "viaant"),
        (403, "anthropic", "fast"),
        (422, "ollama", "viaant"),
        (429, "ollama", "fast"),
    ] {
        *up.status.lock().unwrap() = status;
        // a fresh gateway each round, so a disabled or rate-limited credential from
        // the round before does not hide this one
        let r2 = rig(&cfg.toml()).await;
        let resp = chat(&c, &r2.url, front, model, false).await;
        let code = resp.status().as_u16();
        let body = no_secrets_in(resp, &format!("{status} to {front} via {model}")).await;
        assert!(code >= 400, "{code} {body}");
        // the message itself still reaches the client, masked
        assert!(
            body.contains("Incorrect API key provided: ***")
                || body.contains("Incorrect API key provided: sk-***"),
            "{status} {front}: {body}"
        );
        assert!(body.contains("Bearer ***"), "{status} {front}: {body}");
    }
    // a stream broken by a provider error that carries the key
    *up.status.lock().unwrap() = 200;
    let resp = chat(&c, &r.url, "openai", "fast", true).await;
    assert_eq!(resp.status(), 200);
    let body = no_secrets_in(resp, "mid-stream error").await;
    assert!(body.contains("Incorrect API key provided"), "{body}");
    // and nothing in /status or /metrics either
    let s = c.get(format!("{}/status", r.url)).send().await.unwrap();
    no_secrets_in(s, "/status").await;
    let m = c.get(format!("{}/metrics", r.url)).send().await.unwrap();
    no_secrets_in(m, "/metrics").await;
}

/// An HTTP-date `secs` seconds from now.
fn http_date_in(secs: u64) -> String {
    httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(secs))
}

#[tokio::test]
async fn long_retry_after_takes_the_credential_out_capped_and_shown_in_status() {
    let up = ScriptedProvider::start().await;
    let cfg = three_kinds(&up.url)
        .retries(0)
        .raw("[breaker]\nretry_after_max = \"1h\"\n");
    let c = http();

    // Retry-After as an HTTP-date two hours ahead: out for the 1 h maximum, capped
    let r = rig(&cfg.toml()).await;
    up.push(429, &[("retry-after", &http_date_in(7200))]);
    let resp = chat(&c, &r.url, "openai", "fast", false).await;
    assert_eq!(resp.status(), 429);
    let ra: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((3590..=3600).contains(&ra), "{ra}");
    let s = status_of(&c, &r.url).await;
    let oai = s.credentials.iter().find(|x| x.provider == "oai").unwrap();
    assert_eq!(oai.state, "rate_limited");
    assert_eq!(oai.retry_after_capped, Some(true));
    let asked = oai.retry_after_s.unwrap();
    assert!((7190.0..=7200.0).contains(&asked), "{asked}");
    let open_for = oai.open_for_s.unwrap();
    assert!((3590.0..=3600.0).contains(&open_for), "{open_for}");
    let until = oai.open_until.as_deref().unwrap();
    let until = humantime::parse_rfc3339(until).unwrap();
    let ahead = until
        .duration_since(std::time::SystemTime::now())
        .unwrap()
        .as_secs();
    assert!((3580..=3601).contains(&ahead), "{ahead}");
    // the 429 was a call sent upstream: not an all-open rejection
    assert_eq!(s.rejected_all_open, 0);
    // the next call is refused at once, nothing sent: that one is
    let resp = chat(&c, &r.url, "openai", "fast", false).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(up.arrivals().len(), 1);
    let s = status_of(&c, &r.url).await;
    assert_eq!(s.rejected_all_open, 1);
    // still out after 59 minutes, usable after the hour (not the two hours asked)
    r.clock.advance(Duration::from_secs(59 * 60));
    assert_eq!(
        chat(&c, &r.url, "openai", "fast", false).await.status(),
        503
    );
    r.clock.advance(Duration::from_secs(61));
    assert_eq!(
        chat(&c, &r.url, "openai", "fast", false).await.status(),
        200
    );
    assert_eq!(up.arrivals().len(), 2);

    // Retry-After in seconds longer than a day: read (not dropped for the 5 s
    // default), capped at the maximum
    let r = rig(&cfg.toml()).await;
    up.push(429, &[("retry-after", "172800")]);
    assert_eq!(
        chat(&c, &r.url, "openai", "fast", false).await.status(),
        429
    );
    let s = status_of(&c, &r.url).await;
    let oai = s.credentials.iter().find(|x| x.provider == "oai").unwrap();
    assert_eq!(oai.retry_after_s, Some(172_800.0));
    assert_eq!(oai.retry_after_capped, Some(true));
    r.clock.advance(Duration::from_secs(60));
    assert_eq!(
        chat(&c, &r.url, "openai", "fast", false).await.status(),
        503
    );

    // 20 minutes, under the maximum: honoured whole, not capped
    let r = rig(&cfg.toml()).await;
    up.push(429, &[("retry-after", "1200")]);
    assert_eq!(
        chat(&c, &r.url, "openai", "fast", false).await.status(),
        429
    );
    let s = status_of(&c, &r.url).await;
    let oai = s.credentials.iter().find(|x| x.provider == "oai").unwrap();
    assert_eq!(oai.retry_after_capped, Some(false));
    let open_for = oai.open_for_s.unwrap();
    assert!((1190.0..=1200.0).contains(&open_for), "{open_for}");
    r.clock.advance(Duration::from_secs(1199));
    assert_eq!(
        chat(&c, &r.url, "openai", "fast", false).await.status(),
        503
    );
    r.clock.advance(Duration::from_secs(2));
    assert_eq!(
        chat(&c, &r.url, "openai", "fast", false).await.status(),
        200
    );
}

#[tokio::test]
async fn made_up_model_names_count_under_one_unknown_series() {
    let fake = provider().await;
    let r = rig(&three_kinds(&fake.url()).retries(0).toml()).await;
    let c = http();
    // a configured alias: its own series
    assert_eq!(
        chat(&c, &r.url, "openai", "fast", false).await.status(),
        200
    );
    // 1,500 made-up "provider:model" names (beyond the old 1,000-series fold)
    let long = "x".repeat(5000);
    for i in 0..1500 {
        let model = format!("oai:made-up-{i}-{:016x}", rand_u64(i));
        assert_eq!(
            chat(&c, &r.url, "openai", &model, false).await.status(),
            200
        );
    }
    assert_eq!(
        chat(&c, &r.url, "openai", &format!("oai:{long}"), false)
            .await
            .status(),
        200
    );
    // the configured alias's own model named literally is still its own series
    assert_eq!(
        chat(&c, &r.url, "openai", "oai:gpt-fast", false)
            .await
            .status(),
        200
    );
    let s = status_of(&c, &r.url).await;
    let models: Vec<(&str, u64)> = s
        .series
        .iter()
        .map(|x| (x.model.as_str(), x.requests["ok"]))
        .collect();
    assert_eq!(models, [("gpt-fast", 2), ("unknown", 1501)], "{models:?}");
    let m = c
        .get(format!("{}/metrics", r.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!m.contains("made-up"), "client model names in /metrics");
    assert!(m.len() < 64 << 10, "/metrics is {} bytes", m.len());
    let longest = m
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::len)
        .max()
        .unwrap();
    assert!(longest < 600, "a /metrics line of {longest} bytes");
}

#[test]
fn label_values_are_cut_to_the_documented_length() {
    use powertune_gateway::metrics::{label, MAX_LABEL_CHARS};
    assert_eq!(label("gpt-4o"), "gpt-4o");
    let exact = "é".repeat(MAX_LABEL_CHARS);
    assert_eq!(label(&exact), exact.as_str());
    let cut = label(&"é".repeat(MAX_LABEL_CHARS + 1)).into_owned();
    assert_eq!(cut.chars().count(), MAX_LABEL_CHARS);
    assert!(cut.ends_with('…'));
}

fn rand_u64(i: u64) -> u64 {
    // a cheap deterministic scramble: distinct names without a dependency
    i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03
}

#[tokio::test]
async fn the_routers_own_413_404_and_405_come_in_the_clients_shape() {
    let fake = provider().await;
    let r = rig(&three_kinds(&fake.url())
        .raw("[server]\nmax_body_bytes = 4096\n")
        .toml())
    .await;
    let c = http();
    let big = "x".repeat(8192);
    for (path, front) in [
        ("/v1/chat/completions", "openai"),
        ("/v1/messages", "anthropic"),
        ("/api/chat", "ollama"),
    ] {
        // 413: a body over [server] max_body_bytes, nothing sent upstream
        let mut b = body(front, "fast", false);
        b["messages"][0]["content"] = json!(big);
        let resp = c
            .post(format!("{}{path}", r.url))
            .json(&b)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 413, "{path}");
        let v: serde_json::Value = resp.json().await.unwrap();
        let msg = match front {
            "openai" => {
                assert_eq!(v["error"]["code"], "request_too_large");
                v["error"]["message"].as_str().unwrap().to_string()
            }
            "anthropic" => {
                assert_eq!(v["type"], "error");
                assert_eq!(v["error"]["type"], "request_too_large");
                v["error"]["message"].as_str().unwrap().to_string()
            }
            _ => v["error"].as_str().unwrap().to_string(),
        };
        assert!(msg.contains("4096 bytes"), "{msg}");
        // 405: GET on a POST endpoint, with Allow
        let resp = c.get(format!("{}{path}", r.url)).send().await.unwrap();
        assert_eq!(resp.status(), 405, "{path}");
        assert_eq!(resp.headers()["allow"], "POST");
        let v: serde_json::Value = resp.json().await.unwrap();
        match front {
            "openai" => assert_eq!(v["error"]["code"], "method_not_allowed"),
            "anthropic" => assert_eq!(v["error"]["type"], "invalid_request_error"),
            _ => assert!(v["error"].as_str().unwrap().contains("use POST"), "{v}"),
        }
    }
    assert_eq!(fake.calls(), 0);
    // 404: an unknown path, in the shape of the API the path belongs to
    for (path, check) in [
        ("/v1/completions", "openai"),
        ("/v1/messages/batches", "anthropic"),
        ("/api/generate", "ollama"),
    ] {
        let resp = c.post(format!("{}{path}", r.url)).send().await.unwrap();
        assert_eq!(resp.status(), 404, "{path}");
        let v: serde_json::Value = resp.json().await.unwrap();
        match check {
            "openai" => assert_eq!(v["error"]["code"], "unknown_url", "{v}"),
            "anthropic" => assert_eq!(v["error"]["type"], "not_found_error", "{v}"),
            _ => assert!(
                v["error"]
                    .as_str()
                    .unwrap()
                    .contains("no endpoint POST /api/generate"),
                "{v}"
            ),
        }
    }
    // an unknown model of 3,000 characters: a 404 that does not repeat it whole
    let resp = chat(&c, &r.url, "openai", &"m".repeat(3000), false).await;
    assert_eq!(resp.status(), 404);
    let text = resp.text().await.unwrap();
    assert!(
        text.len() < 1000 && text.contains("is not configured"),
        "{text}"
    );
    // a body under the limit still goes through
    assert_eq!(
        chat(&c, &r.url, "openai", "fast", false).await.status(),
        200
    );
}

#[test]
fn server_limits_are_read_from_the_config_and_checked() {
    let base = three_kinds("http://127.0.0.1:9").toml();
    let cfg = |extra: &str| {
        powertune_gateway::Config::from_toml(&format!("{extra}{base}"), "g.toml", &env)
            .map(|l| l.config.server)
    };
    let d = cfg("").unwrap();
    assert_eq!(d.limits, powertune_gateway::server::Limits::default());
    assert_eq!(d.max_body_bytes, 16 << 20);
    let s = cfg("[server]\nmax_connections = 200\nheader_read_timeout = \"3s\"\nmax_header_bytes = 16384\nmax_headers = 50\nmax_body_bytes = 65536\ndrain_timeout = \"5s\"\n").unwrap();
    assert_eq!(s.limits.max_connections, 200);
    assert_eq!(s.limits.header_read_timeout, Duration::from_secs(3));
    assert_eq!(s.limits.max_header_bytes, 16384);
    assert_eq!(s.limits.max_headers, 50);
    assert_eq!(s.limits.drain_timeout, Duration::from_secs(5));
    assert_eq!(s.max_body_bytes, 65536);
    for (extra, want) in [
        (
            "[server]\nmax_connections = 0\n",
            "g.toml:2:1: server.max_connections: must be between 1 and",
        ),
        (
            "[server]\nheader_read_timeout = 10\n",
            "g.toml:2:1: server.header_read_timeout: 10 has no unit",
        ),
        (
            "[server]\ndrain_timeout = \"2h\"\n",
            "g.toml:2:1: server.drain_timeout: must be at most 1h",
        ),
        (
            "[server]\nmax_header_bytes = 100\n",
            "g.toml:2:1: server.max_header_bytes: must be between 8KiB and 1MiB",
        ),
        (
            "[server]\nmax_body_bytes = 10\n",
            "g.toml:2:1: server.max_body_bytes: must be between 1024",
        ),
        (
            "[server]\nmax_conections = 10\n",
            "g.toml:2:1: server.max_conections: unknown field",
        ),
    ] {
        let e = cfg(extra).unwrap_err().to_string();
        assert!(e.starts_with(want), "{extra}: {e}");
    }
}
