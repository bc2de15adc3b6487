//! Spans exported by the real OpenTelemetry SDK reach the receiver.
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
use powertune_apm::snapshot::DetectionKind;
use powertune_core::EndpointType;
use std::time::Duration;

/// Spans from the real OpenTelemetry SDK (opentelemetry-otlp's HTTP exporter,
/// protobuf and JSON, gzip) exported to the receiver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opentelemetry_sdk_exporter_reaches_the_receiver() {
    let run = start(local()).await;
    let endpoint = format!("http://{}/v1/traces", run.http_addr);
    tokio::task::spawn_blocking(move || {
        std::thread::spawn(move || export_with_sdk(&endpoint))
            .join()
            .unwrap();
    })
    .await
    .unwrap();
    let s = summary_of(run.http_addr).await;
    let r = s
        .routes
        .iter()
        .find(|r| r.route == "GET /api/v1/ai/monitoring/dashboard")
        .expect("route from the SDK");
    assert_eq!(r.latency.count, 3, "{:?}", s.routes);
    assert_eq!(r.endpoint_type, EndpointType::Analytics);
    let np = detections(&s, DetectionKind::NPlusOne);
    assert_eq!(np.len(), 1, "{:?}", s.detections);
    assert_eq!(np[0].occurrences, 3);
    assert_eq!(np[0].subject, "SELECT * FROM agents WHERE id = ?");
    // The SDK's span links tie each job to the request that enqueued it.
    assert_eq!(s.ingest.jobs_linked, 3, "{:?}", s.ingest);
    assert_eq!(s.linked_jobs.len(), 1, "{:?}", s.linked_jobs);
    assert_eq!(
        (
            s.linked_jobs[0].route.as_str(),
            s.linked_jobs[0].class.as_str(),
            s.linked_jobs[0].latency.count
        ),
        (
            "GET /api/v1/ai/monitoring/dashboard",
            "DashboardRefreshJob",
            3
        )
    );
    let total = r.breakdown.total_ms();
    assert!(
        total > 0.0 && (r.breakdown.db_ms - 3.0 * 6.0 * 10.0).abs() < 0.01,
        "{:?}",
        r.breakdown
    );
    run.stop();
}

fn export_with_sdk(endpoint: &str) {
    use opentelemetry::trace::{Span as _, SpanKind, TraceContextExt, Tracer, TracerProvider as _};
    use opentelemetry::KeyValue as Kv;
    use opentelemetry_otlp::{Compression, Protocol, WithExportConfig, WithHttpConfig};
    use std::time::SystemTime;
    for (protocol, gz) in [
        (Protocol::HttpBinary, false),
        (Protocol::HttpJson, false),
        (Protocol::HttpBinary, true),
    ] {
        let mut b = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(endpoint)
            .with_protocol(protocol)
            .with_timeout(Duration::from_secs(10));
        if gz {
            b = b.with_compression(Compression::Gzip);
        }
        let exporter = b.build().unwrap();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_simple_exporter(exporter)
            .build();
        let tracer = provider.tracer("powertune-test");
        let t0 = SystemTime::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut root = tracer
            .span_builder("GET /api/v1/ai/monitoring/dashboard")
            .with_kind(SpanKind::Server)
            .with_start_time(at(0))
            .with_attributes(vec![
                Kv::new("http.request.method", "GET"),
                Kv::new("http.route", "/api/v1/ai/monitoring/dashboard"),
                Kv::new("http.response.status_code", 200),
            ])
            .start(&tracer);
        root.set_attribute(Kv::new("url.path", "/api/v1/ai/monitoring/dashboard"));
        let cx = opentelemetry::Context::new().with_span(root);
        for k in 0..6u64 {
            let mut q = tracer
                .span_builder("SELECT agents")
                .with_kind(SpanKind::Client)
                .with_start_time(at(10 + k * 12))
                .with_attributes(vec![
                    Kv::new("db.system.name", "postgresql"),
                    Kv::new(
                        "db.query.text",
                        format!("SELECT * FROM agents WHERE id = {k}"),
                    ),
                ])
                .start_with_context(&tracer, &cx);
            q.end_with_timestamp(at(20 + k * 12));
        }
        cx.span().end_with_timestamp(at(200));
        // The job the request enqueued: its own trace, linked to the request's span
        // (ruby-contrib Sidekiq's default propagation).
        let link = opentelemetry::trace::Link::with_context(cx.span().span_context().clone());
        let mut job = tracer
            .span_builder("default process")
            .with_kind(SpanKind::Consumer)
            .with_start_time(at(300))
            .with_links(vec![link])
            .with_attributes(vec![
                Kv::new("messaging.system", "sidekiq"),
                Kv::new("messaging.sidekiq.job_class", "DashboardRefreshJob"),
            ])
            .start_with_context(&tracer, &opentelemetry::Context::new());
        job.end_with_timestamp(at(900));
        provider.force_flush().unwrap();
        provider.shutdown().unwrap();
    }
}
