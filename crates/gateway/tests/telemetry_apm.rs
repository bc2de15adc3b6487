//! `[telemetry]` into a real in-process `powertune apm serve`: the gateway's spans
//! become apm's provider table (per provider and model: P95, tokens, retries, time
//! to first chunk, calls through the gateway), and a call made with the caller's
//! `traceparent` shows up inside the caller's request trace.
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
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use powertune_apm::collect::receiver as apm_client;
use powertune_apm::server::{self as apm_server, ServeConfig};
use powertune_apm::{Engine, EngineConfig};
use powertune_core::Targets;
use prost::Message;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const CLIENT_TRACE: &str = "5bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "10f067aa0ba902b7";
const ROUTE: &str = "/api/v1/ai/agents/:id/execute";

fn kv(k: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn unix_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// The caller's own request span (what a Rails app would export), parent of the
/// gateway call made with its `traceparent`.
fn caller_request(start: SystemTime, end: SystemTime) -> Vec<u8> {
    let span = Span {
        trace_id: hex::decode(CLIENT_TRACE).unwrap(),
        span_id: hex::decode(CLIENT_SPAN).unwrap(),
        name: format!("POST {ROUTE}"),
        kind: 2,
        start_time_unix_nano: unix_ns(start),
        end_time_unix_nano: unix_ns(end),
        attributes: vec![
            kv(
                "http.request.method",
                any_value::Value::StringValue("POST".into()),
            ),
            kv("http.route", any_value::Value::StringValue(ROUTE.into())),
            kv("http.response.status_code", any_value::Value::IntValue(200)),
        ],
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![span],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apm_reports_the_gateway_calls_per_provider_and_model() {
    let apm = apm_server::start(
        ServeConfig::new("127.0.0.1:0".parse().unwrap()),
        Engine::new(EngineConfig::defaults(&Targets::default())),
    )
    .await
    .unwrap();
    let sim = provider().await;
    let toml = format!(
        r#"
[retry]
max_retries = 2
base = "1ms"
max = "5ms"
[telemetry]
otlp_endpoint = "http://{}"
service_name = "gateway-under-test"
[[providers]]
name = "primary"
kind = "openai"
base_url = "{}/v1"
  [[providers.credentials]]
  name = "main"
  api_key_env = "FAKE_KEY_1"
[models.fast]
targets = ["primary:gpt-4o-mini"]
"#,
        apm.http_addr,
        sim.url()
    );
    let gw = rig(&toml).await;
    let c = http();
    for _ in 0..10 {
        assert_eq!(
            chat(&c, &gw.url, "openai", "fast", false).await.status(),
            200
        );
    }
    // a stream (time to first chunk) and a call retried once after a 500
    let r = chat(&c, &gw.url, "openai", "fast", true).await;
    assert_eq!(r.status(), 200);
    let _ = r.text().await.unwrap();
    sim.push(Script {
        status: Some(500),
        ..hello()
    })
    .unwrap();
    assert_eq!(
        chat(&c, &gw.url, "openai", "fast", false).await.status(),
        200
    );
    // a call inside the caller's request trace
    let started = SystemTime::now();
    let r = c
        .post(format!("{}/v1/chat/completions", gw.url))
        .header("traceparent", format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"))
        .json(&body("openai", "fast", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let ended = SystemTime::now() + Duration::from_millis(1);

    // every span exported before apm is asked (a query analyses the traces it has)
    let g = gw.gw.clone();
    tokio::task::spawn_blocking(move || g.shutdown_telemetry())
        .await
        .unwrap();
    let r = c
        .post(format!("http://{}/v1/traces", apm.http_addr))
        .header("content-type", "application/x-protobuf")
        .body(caller_request(started - Duration::from_millis(1), ended))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let base = apm_client::base_url(&format!("http://{}", apm.http_addr)).unwrap();
    let s = apm_client::fetch_summary(&base, None).await.unwrap();
    assert_eq!(s.providers.len(), 1, "{:?}", s.providers);
    let p = &s.providers[0];
    assert_eq!(p.key, "openai/gpt-4o-mini");
    assert_eq!(p.latency.count, 13, "{p:?}");
    assert_eq!(p.latency.errors, 0);
    assert_eq!(p.via_gateway, 13);
    assert_eq!(p.retries, 1);
    assert_eq!(p.output_tokens, 13 * 5);
    assert!(p.input_tokens >= 13, "{p:?}");
    assert!(
        p.latency.p95_ms > 0.0 && p.latency.p95_ms < 5_000.0,
        "{p:?}"
    );
    let ttft = p.ttft.as_ref().expect("the stream's time to first chunk");
    assert_eq!(ttft.count, 1);

    // the call made with the caller's traceparent is inside the caller's request
    let d = apm_client::fetch_endpoint(&base, &format!("POST {ROUTE}"), None)
        .await
        .unwrap();
    assert_eq!(d.route.latency.count, 1);
    let ex = &d.slowest[0];
    assert_eq!(ex.trace_id, CLIENT_TRACE);
    let call = ex
        .spans
        .iter()
        .find(|n| n.category == "provider" && n.parent_id == CLIENT_SPAN)
        .unwrap_or_else(|| panic!("{:#?}", ex.spans));
    assert_eq!(call.name, "chat fast");
    assert!(
        ex.spans
            .iter()
            .any(|n| n.category == "provider" && n.parent_id == call.span_id),
        "the attempt under the call: {:#?}",
        ex.spans
    );
    apm.stop();
}
