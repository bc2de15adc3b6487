//! Provider calls made through powertune's gateway, recognised by the gateway's span
//! attributes (`gen_ai.*`, `powertune.gateway.*`) rather than by provider host names:
//! per provider and model P95, time to first chunk, tokens and retries. Sent over
//! OTLP/HTTP protobuf to a real receiver (the in-place reader) and analysed offline
//! (the full decode): both give the same summary.
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
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use powertune_core::{Targets, Verdict};
use prost::Message;

fn f(k: &str, v: f64) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::DoubleValue(v)),
        }),
        ..Default::default()
    }
}

/// One agent run: the application's request, its own HTTP client span to the
/// gateway (no provider attributes: the application does not know the provider), the
/// gateway's call span and one attempt span per try.
fn agent_run(id: u128, attempts: &[(&str, u64)], ttft_s: Option<f64>) -> TraceBuilder {
    let mut t = TraceBuilder::new(id, Gen::New);
    let root = t.request(
        "POST",
        "/api/v1/ai/agents/:id/execute",
        "/api/v1/ai/agents/7/execute",
        200,
        0,
        2_000,
    );
    let app_call = t.span(
        root,
        3,
        "chat gpt-4o-mini",
        5,
        1_990,
        vec![
            s("http.request.method", "POST"),
            s("server.address", "gateway.internal:4000"),
            s("gen_ai.operation.name", "chat"),
            s("gen_ai.request.model", "gpt-4o-mini"),
        ],
    );
    let (last_provider, _) = attempts.last().copied().unwrap();
    let mut call_attrs = vec![
        s("gen_ai.operation.name", "chat"),
        s("gen_ai.provider.name", last_provider),
        s("gen_ai.request.model", "gpt-4o-mini"),
        s("gen_ai.response.model", "gpt-4o-mini-2024-07-18"),
        i("gen_ai.usage.input_tokens", 120),
        i("gen_ai.usage.output_tokens", 40),
        s("powertune.gateway.route_class", "agents"),
        s("powertune.gateway.credential", "primary"),
    ];
    if let Some(x) = ttft_s {
        call_attrs.push(f("gen_ai.response.time_to_first_chunk", x));
    }
    let call = t.span(app_call, 2, "chat gpt-4o-mini", 10, 1_980, call_attrs);
    let mut at = 12;
    for (n, (provider, ms)) in attempts.iter().enumerate() {
        t.span(
            call,
            3,
            "chat gpt-4o-mini",
            at,
            at + ms,
            vec![
                s("gen_ai.operation.name", "chat"),
                s("gen_ai.provider.name", provider),
                s("gen_ai.request.model", "gpt-4o-mini"),
                i("powertune.gateway.attempt", n as i64 + 1),
            ],
        );
        at += ms + 1;
    }
    t
}

fn traces() -> opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
    let mut v = Vec::new();
    for k in 0..10u128 {
        // Every fourth call retried once, on the other provider.
        let attempts: &[(&str, u64)] = if k % 4 == 0 {
            &[("openai", 300), ("azure.ai.openai", 900)]
        } else {
            &[("openai", 800 + k as u64 * 10)]
        };
        v.push(agent_run(100 + k, attempts, Some(0.25 + k as f64 * 0.01)));
    }
    request_of(v)
}

fn check(s: &powertune_apm::Summary) {
    let keys: Vec<_> = s.providers.iter().map(|p| p.key.as_str()).collect();
    // The call is keyed by its own provider and model; attempts are not calls; the
    // application's client span to the gateway is outgoing HTTP, not a provider.
    assert_eq!(
        keys,
        vec![
            "azure.ai.openai/gpt-4o-mini-2024-07-18",
            "openai/gpt-4o-mini-2024-07-18"
        ],
        "{:?}",
        s.providers
    );
    let azure = &s.providers[0];
    let openai = &s.providers[1];
    assert_eq!(
        (azure.latency.count, azure.retries, azure.via_gateway),
        (3, 3, 3)
    );
    assert_eq!(
        (openai.latency.count, openai.retries, openai.via_gateway),
        (7, 0, 7)
    );
    assert_eq!(
        (openai.input_tokens, openai.output_tokens),
        (7 * 120, 7 * 40)
    );
    let t = openai.ttft.as_ref().expect("time to first chunk");
    assert_eq!(t.count, 7);
    assert!((330.0..=345.0).contains(&t.p95_ms), "{t:?}");
    assert!(
        (1_900.0..=1_990.0).contains(&openai.latency.p95_ms),
        "{:?}",
        openai.latency
    );
}

#[test]
fn offline_analysis_reads_the_gateway_attributes() {
    let s = analyse(&traces());
    check(&s);
    let f = powertune_apm::judge::judge(&s, &Targets::default(), None);
    let p = f
        .iter()
        .find(|f| f.check == "provider_p95" && f.subject.starts_with("azure"))
        .unwrap();
    assert_eq!(p.verdict, Verdict::Pass);
    assert!(
        p.evidence.starts_with("3 calls, 0 errors, 3 through the gateway, 3 retries, tokens 360 in / 120 out, time to first chunk p50"),
        "{}",
        p.evidence
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receiver_reads_the_gateway_attributes() {
    let run = start(local()).await;
    let r = post(
        run.http_addr,
        "application/x-protobuf",
        false,
        traces().encode_to_vec(),
    )
    .await;
    assert_eq!(r.status(), 200);
    check(&summary_of(run.http_addr).await);
    run.stop();
}

/// An application whose own LLM span carries provider attributes (the OpenAI API it
/// speaks to the gateway, and the gateway's model alias), over the gateway's call span
/// that retried once: one call, keyed by the application's span, through the gateway,
/// with the gateway's retries, tokens and time to first chunk.
#[test]
fn an_application_span_over_the_gateway_takes_the_gateways_figures() {
    let mut t = TraceBuilder::new(900, Gen::New);
    let root = t.request(
        "POST",
        "/api/v1/ai/agents/:id/execute",
        "/api/v1/ai/agents/7/execute",
        200,
        0,
        2_000,
    );
    let app_call = t.span(
        root,
        3,
        "chat agent",
        5,
        1_990,
        vec![
            s("gen_ai.operation.name", "chat"),
            s("gen_ai.provider.name", "openai"),
            s("gen_ai.request.model", "agent"),
        ],
    );
    let call = t.span(
        app_call,
        2,
        "chat agent",
        10,
        1_980,
        vec![
            s("gen_ai.operation.name", "chat"),
            s("gen_ai.provider.name", "openai"),
            s("gen_ai.request.model", "gpt-4o-mini"),
            i("gen_ai.usage.input_tokens", 120),
            i("gen_ai.usage.output_tokens", 40),
            f("gen_ai.response.time_to_first_chunk", 0.5),
            i("powertune.gateway.retries", 1),
            s("powertune.gateway.model_alias", "agent"),
        ],
    );
    for (n, (from, to)) in [(12, 400), (401, 1_970)].into_iter().enumerate() {
        t.span(
            call,
            3,
            "chat gpt-4o-mini",
            from,
            to,
            vec![
                s("gen_ai.provider.name", "openai"),
                i("powertune.gateway.attempt", n as i64 + 1),
            ],
        );
    }
    let s = analyse(&request_of(vec![t]));
    assert_eq!(s.providers.len(), 1, "{:?}", s.providers);
    let p = &s.providers[0];
    assert_eq!(p.key, "openai/agent");
    assert_eq!(
        (p.latency.count, p.via_gateway, p.retries),
        (1, 1, 1),
        "{p:?}"
    );
    assert_eq!((p.input_tokens, p.output_tokens), (120, 40));
    let ttft = p.ttft.as_ref().expect("time to first chunk");
    assert!((495.0..=505.0).contains(&ttft.p95_ms), "{ttft:?}");
}
