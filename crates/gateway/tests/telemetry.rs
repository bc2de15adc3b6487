//! `[telemetry]`: the spans the gateway exports over OTLP/HTTP, read by a loopback
//! collector that decodes them: one SERVER call span per client call with one
//! CLIENT span per attempt, the GenAI and `powertune.gateway.*` attributes, a
//! client's `traceparent` continued and the attempt's sent upstream; a dead or
//! closed collector never slows or fails a call, and a full queue drops and counts.
// Test code: helpers outside #[test] functions may unwrap, panic and print.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Av;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A loopback OTLP/HTTP collector keeping every span it receives.
struct Collector {
    url: String,
    spans: Arc<Mutex<Vec<Span>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Collector {
    async fn start() -> Collector {
        let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
        let keep = spans.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: axum::body::Bytes| {
                let keep = keep.clone();
                async move {
                    let req = ExportTraceServiceRequest::decode(body).unwrap();
                    let mut k = keep.lock().unwrap();
                    for rs in req.resource_spans {
                        for ss in rs.scope_spans {
                            k.extend(ss.spans);
                        }
                    }
                    "{}"
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        Collector { url, spans, task }
    }

    /// Waits (at most 10 s) for `n` spans.
    async fn wait_for(&self, n: usize) -> Vec<Span> {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.spans.lock().unwrap().clone();
            if s.len() >= n || Instant::now() > end {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn attr<'a>(s: &'a Span, key: &str) -> Option<&'a Av> {
    s.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn text<'a>(s: &'a Span, key: &str) -> &'a str {
    match attr(s, key) {
        Some(Av::StringValue(v)) => v,
        other => panic!("{key}: {other:?} on {}", s.name),
    }
}

fn int(s: &Span, key: &str) -> i64 {
    match attr(s, key) {
        Some(Av::IntValue(v)) => *v,
        other => panic!("{key}: {other:?} on {}", s.name),
    }
}

const SERVER: i32 = 2;
const CLIENT: i32 = 3;

fn config(provider_url: &str, collector: &str, extra: &str) -> String {
    format!(
        r#"
[retry]
max_retries = 2
base = "1ms"
max = "5ms"
[telemetry]
otlp_endpoint = "{collector}"
flush_interval = "20ms"
{extra}
[[providers]]
name = "primary"
kind = "openai"
base_url = "{provider_url}/v1"
  [[providers.credentials]]
  name = "main"
  api_key_env = "FAKE_KEY_1"
[models.fast]
targets = ["primary:gpt-4o-mini"]
[routes]
agents = ["fast"]
"#
    )
}

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// A non-streaming OpenAI call of `fast` made inside the client's trace
/// ([`CLIENT_TRACE`], [`CLIENT_SPAN`]), with `route` as the route class if given.
async fn traced_chat(url: &str, route: Option<&str>) -> reqwest::Response {
    let mut r = http()
        .post(format!("{url}/v1/chat/completions"))
        .header("traceparent", format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"));
    if let Some(c) = route {
        r = r.header("x-powertune-route", c);
    }
    r.json(&body("openai", "fast", false)).send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_call_is_one_server_span_with_an_attempt_span_per_try() {
    let sim = provider().await;
    let col = Collector::start().await;
    let gw = rig(&config(&sim.url(), &col.url, "")).await;
    // the first try answers 500, the retry succeeds
    sim.push(Script {
        status: Some(500),
        ..hello()
    })
    .unwrap();
    let r = traced_chat(&gw.url, Some("agents")).await;
    assert_eq!(r.status(), 200);
    let spans = col.wait_for(3).await;
    assert_eq!(spans.len(), 3, "{spans:#?}");
    let call = spans.iter().find(|s| s.kind == SERVER).unwrap();
    let mut attempts: Vec<&Span> = spans.iter().filter(|s| s.kind == CLIENT).collect();
    attempts.sort_by_key(|s| int(s, "powertune.gateway.attempt"));
    assert_eq!(attempts.len(), 2);

    // the call continues the client's trace, under the client's span
    assert_eq!(hex::encode(&call.trace_id), CLIENT_TRACE);
    assert_eq!(hex::encode(&call.parent_span_id), CLIENT_SPAN);
    assert_eq!(call.name, "chat fast");
    assert_eq!(text(call, "gen_ai.operation.name"), "chat");
    assert_eq!(text(call, "gen_ai.provider.name"), "openai");
    // the deprecated name is not sent beside the current one
    assert!(call.attributes.iter().all(|kv| kv.key != "gen_ai.system"));
    assert_eq!(text(call, "gen_ai.request.model"), "gpt-4o-mini");
    assert_eq!(text(call, "gen_ai.response.model"), "gpt-4o-mini");
    assert_eq!(text(call, "powertune.gateway.provider"), "primary");
    assert_eq!(text(call, "powertune.gateway.credential"), "main");
    assert_eq!(text(call, "powertune.gateway.route_class"), "agents");
    assert_eq!(text(call, "powertune.gateway.model_alias"), "fast");
    assert_eq!(int(call, "powertune.gateway.retries"), 1);
    // the provider's address is the attempts' (a server span's would be its own)
    assert!(attr(call, "server.address").is_none());
    assert!(int(call, "gen_ai.usage.input_tokens") > 0);
    assert_eq!(int(call, "gen_ai.usage.output_tokens"), 5);
    match attr(call, "gen_ai.response.finish_reasons") {
        Some(Av::ArrayValue(a)) => {
            assert_eq!(a.values[0].value, Some(Av::StringValue("stop".into())))
        }
        other => panic!("finish reasons: {other:?}"),
    }
    assert!(attr(call, "error.type").is_none());
    // no key anywhere
    let all = format!("{spans:?}");
    assert!(!all.contains("sk-one"));

    for (n, a) in attempts.iter().enumerate() {
        assert_eq!(a.trace_id, call.trace_id);
        assert_eq!(a.parent_span_id, call.span_id);
        assert_eq!(a.name, "chat gpt-4o-mini");
        assert_eq!(int(a, "powertune.gateway.attempt"), n as i64 + 1);
        assert_eq!(text(a, "gen_ai.provider.name"), "openai");
        assert_eq!(text(a, "powertune.gateway.credential"), "main");
        assert_eq!(text(a, "powertune.gateway.breaker"), "closed");
        assert_eq!(text(a, "server.address"), "127.0.0.1");
        // the alias and route class are the call span's only
        assert!(attr(a, "powertune.gateway.model_alias").is_none());
        assert!(a.start_time_unix_nano >= call.start_time_unix_nano);
        assert!(a.end_time_unix_nano <= call.end_time_unix_nano);
    }
    assert_eq!(text(attempts[0], "error.type"), "server_error");
    assert!(attr(attempts[0], "powertune.gateway.retry_reason").is_none());
    assert_eq!(
        text(attempts[1], "powertune.gateway.retry_reason"),
        "server_error"
    );
    assert!(attr(attempts[1], "error.type").is_none());
    assert_eq!(int(attempts[1], "gen_ai.usage.output_tokens"), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_reports_its_time_to_first_chunk_and_a_failed_call_its_error() {
    let sim = provider().await;
    let col = Collector::start().await;
    let gw = rig(&config(&sim.url(), &col.url, "")).await;
    let r = chat(&http(), &gw.url, "anthropic", "fast", true).await;
    assert_eq!(r.status(), 200);
    let _ = r.text().await.unwrap();
    let spans = col.wait_for(2).await;
    let call = spans.iter().find(|s| s.kind == SERVER).unwrap();
    assert!(call.trace_id.len() == 16 && call.parent_span_id.is_empty());
    match attr(call, "gen_ai.response.time_to_first_chunk") {
        Some(Av::DoubleValue(s)) => assert!(*s > 0.0 && *s < 5.0, "{s}"),
        other => panic!("ttft: {other:?}"),
    }
    assert_eq!(int(call, "gen_ai.usage.output_tokens"), 5);
    assert_eq!(int(call, "powertune.gateway.retries"), 0);

    // every try fails: the call span carries the error
    for _ in 0..3 {
        sim.push(Script {
            status: Some(503),
            ..hello()
        })
        .unwrap();
    }
    let r = chat(&http(), &gw.url, "openai", "fast", false).await;
    assert_eq!(r.status(), 502);
    let spans = col.wait_for(2 + 4).await;
    let failed = spans
        .iter()
        .filter(|s| s.kind == SERVER)
        .find(|s| attr(s, "error.type").is_some())
        .unwrap();
    assert_eq!(text(failed, "error.type"), "server_error");
    assert_eq!(int(failed, "powertune.gateway.retries"), 2);
    assert_eq!(
        failed.status.as_ref().map(|s| s.code),
        Some(2),
        "status error"
    );
}

/// An OpenAI-compatible upstream that answers at once and keeps each request's
/// `traceparent`.
async fn header_keeping_upstream() -> (String, Arc<Mutex<Vec<Option<String>>>>) {
    let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let keep = seen.clone();
    let app = axum::Router::new().fallback(move |h: axum::http::HeaderMap| {
        let keep = keep.clone();
        async move {
            let tp = h
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            keep.lock().unwrap().push(tp);
            axum::Json(json!({
                "id": "chatcmpl-1", "object": "chat.completion", "created": 0,
                "model": "gpt-4o-mini",
                "choices": [{"index": 0, "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "hi"}}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1}
            }))
        }
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_request_carries_the_attempt_span_as_traceparent() {
    let (up, seen) = header_keeping_upstream().await;
    let col = Collector::start().await;
    let gw = rig(&config(&up, &col.url, "")).await;
    let client_tp = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let r = traced_chat(&gw.url, None).await;
    assert_eq!(r.status(), 200);
    let spans = col.wait_for(2).await;
    let attempt = spans.iter().find(|s| s.kind == CLIENT).unwrap();
    let sent = seen.lock().unwrap()[0].clone().unwrap();
    assert_eq!(
        sent,
        format!("00-{CLIENT_TRACE}-{}-01", hex::encode(&attempt.span_id))
    );
    // without [telemetry] the client's context goes upstream as it came
    let (up2, seen2) = header_keeping_upstream().await;
    let toml = config(&up2, "http://127.0.0.1:9", "").replace(
        "[telemetry]\notlp_endpoint = \"http://127.0.0.1:9\"\nflush_interval = \"20ms\"\n",
        "",
    );
    assert!(!toml.contains("[telemetry]"));
    let plain = rig(&toml).await;
    let r = traced_chat(&plain.url, None).await;
    assert_eq!(r.status(), 200);
    let r = chat(&http(), &plain.url, "openai", "fast", false).await;
    assert_eq!(r.status(), 200);
    assert_eq!(*seen2.lock().unwrap(), vec![Some(client_tp.clone()), None]);
}

/// Accepts connections and never answers.
async fn black_hole() -> (String, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            if held.len() < 64 {
                held.push(s);
            }
        }
    });
    (url, task)
}

fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or_else(|| panic!("no {name} sample in\n{metrics}"))
}

fn dropped(metrics: &str) -> f64 {
    sample(metrics, "powertune_gateway_spans_dropped_total")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_or_closed_collector_never_slows_or_fails_calls() {
    let sim = provider().await;
    let (hole, task) = black_hole().await;
    // a port nothing listens on
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    for collector in [hole.as_str(), closed.as_str()] {
        let gw = rig(&config(
            &sim.url(),
            collector,
            "max_queue = 8\nexport_timeout = \"3s\"",
        ))
        .await;
        let c = http();
        let t0 = Instant::now();
        let mut slowest = Duration::ZERO;
        for _ in 0..100 {
            let s = Instant::now();
            let r = chat(&c, &gw.url, "openai", "fast", false).await;
            assert_eq!(r.status(), 200);
            slowest = slowest.max(s.elapsed());
        }
        // generous: a call waiting on the collector would take export_timeout (3 s)
        assert!(slowest < Duration::from_secs(1), "{collector}: {slowest:?}");
        assert!(t0.elapsed() < Duration::from_secs(10));
        let m = c
            .get(format!("{}/metrics", gw.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if collector == hole {
            // 200 spans, at most 8 waiting and one batch of 8 stuck in export
            assert!(dropped(&m) >= 150.0, "{}", dropped(&m));
        } else {
            assert!(dropped(&m) < 200.0);
            // the refused exports' spans are counted as lost, never silently gone
            let t0 = Instant::now();
            let mut lost = 0.0;
            while lost == 0.0 && t0.elapsed() < Duration::from_secs(10) {
                let m = c.get(format!("{}/metrics", gw.url)).send().await.unwrap();
                lost = sample(
                    &m.text().await.unwrap(),
                    "powertune_gateway_spans_export_failed_total",
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(lost > 0.0 && lost + dropped(&m) <= 200.0, "{lost}");
        }
        // stopping the export waits at most export_timeout
        let g = gw.gw.clone();
        let s = Instant::now();
        tokio::task::spawn_blocking(move || g.shutdown_telemetry())
            .await
            .unwrap();
        assert!(s.elapsed() < Duration::from_secs(10));
    }
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_telemetry_there_is_no_dropped_sample_and_reload_keeps_it() {
    let sim = provider().await;
    let toml = config(&sim.url(), "http://127.0.0.1:9", "");
    let plain = toml.replace(
        "[telemetry]\notlp_endpoint = \"http://127.0.0.1:9\"\nflush_interval = \"20ms\"\n",
        "",
    );
    let gw = rig(&plain).await;
    let m = http()
        .get(format!("{}/metrics", gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("# TYPE powertune_gateway_spans_dropped_total counter"));
    assert!(!m
        .lines()
        .any(|l| l.starts_with("powertune_gateway_spans_dropped_total")));
    assert!(m.contains("# TYPE powertune_gateway_spans_export_failed_total counter"));
    assert!(!m
        .lines()
        .any(|l| l.starts_with("powertune_gateway_spans_export_failed_total")));

    // a reload with a changed [telemetry] keeps the one in force and says so
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, &plain).unwrap();
    let gw = rig_file(&path).await;
    std::fs::write(&path, &toml).unwrap();
    let s = gw.gw.reload_from_source().unwrap();
    assert!(s.reloaded);
    assert!(
        s.warnings
            .iter()
            .any(|w| w.contains("[telemetry] changed; it takes effect at the next restart")),
        "{:?}",
        s.warnings
    );
    assert!(gw.gw.config().telemetry.is_none());
}
