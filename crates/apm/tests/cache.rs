//! Cache hit rates per cache type: cache spans exported by the real OpenTelemetry
//! SDK (Rails' ActiveSupport notifications as OpenTelemetry's subscriber writes them,
//! and Sentry's `cache.get`) with planted hit/miss ratios per type; the findings fire
//! exactly where planted.
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
use powertune_core::{Targets, Verdict};
use std::time::Duration;

/// How lookups of one type are written.
#[derive(Clone, Copy)]
enum Style {
    /// `cache_read.active_support` with `key` and `hit`.
    Rails,
    /// The subscriber's other name, `active_support cache_read`.
    RailsReversed,
    /// Sentry's `cache.get` (`sentry.op`), `cache.key` as a list, `cache.hit`.
    Sentry,
}

/// (key prefix, lookups, hits, style)
type Plant = (&'static str, u64, u64, Style);

fn export_cache_spans(endpoint: &str, plants: &[Plant]) {
    use opentelemetry::trace::{Span as _, SpanKind, TraceContextExt, Tracer, TracerProvider as _};
    use opentelemetry::{Array, KeyValue as Kv, StringValue, Value};
    use opentelemetry_otlp::{Protocol, WithExportConfig};
    use std::time::SystemTime;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint)
        .with_protocol(Protocol::HttpBinary)
        .with_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .build();
    let tracer = provider.tracer("powertune-cache-test");
    let t0 = SystemTime::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    for (prefix, lookups, hits, style) in plants {
        for n in 0..*lookups {
            let root = tracer
                .span_builder("GET /api/v1/profile")
                .with_kind(SpanKind::Server)
                .with_start_time(at(0))
                .with_attributes(vec![
                    Kv::new("http.request.method", "GET"),
                    Kv::new("http.route", "/api/v1/profile"),
                    Kv::new("http.response.status_code", 200),
                ])
                .start(&tracer);
            let cx = opentelemetry::Context::new().with_span(root);
            let key = format!("powernode:{prefix}:{n}");
            let hit = n < *hits;
            let (name, attrs) = match style {
                Style::Rails | Style::RailsReversed => (
                    if matches!(style, Style::Rails) {
                        "cache_read.active_support"
                    } else {
                        "active_support cache_read"
                    },
                    vec![
                        Kv::new("key", key.clone()),
                        Kv::new("store", "ActiveSupport::Cache::RedisCacheStore"),
                        Kv::new("hit", hit),
                        Kv::new("super_operation", "fetch"),
                    ],
                ),
                Style::Sentry => (
                    "ActiveSupport::Cache::RedisCacheStore",
                    vec![
                        Kv::new("sentry.op", "cache.get"),
                        Kv::new(
                            "cache.key",
                            Value::Array(Array::String(vec![StringValue::from(key.clone())])),
                        ),
                        Kv::new("cache.hit", hit),
                    ],
                ),
            };
            let mut c = tracer
                .span_builder(name)
                .with_kind(SpanKind::Internal)
                .with_start_time(at(1))
                .with_attributes(attrs)
                .start_with_context(&tracer, &cx);
            c.end_with_timestamp(at(2));
            if !hit {
                // What a fetch does after a miss: neither is a lookup (Sentry's
                // `cache.put` carries `cache.hit = false`).
                let mut w = tracer
                    .span_builder("cache_write.active_support")
                    .with_start_time(at(3))
                    .with_attributes(vec![Kv::new("key", key.clone())])
                    .start_with_context(&tracer, &cx);
                w.end_with_timestamp(at(4));
                let mut p = tracer
                    .span_builder("ActiveSupport::Cache::RedisCacheStore")
                    .with_start_time(at(3))
                    .with_attributes(vec![
                        Kv::new("sentry.op", "cache.put"),
                        Kv::new("cache.key", key.clone()),
                        Kv::new("cache.hit", false),
                    ])
                    .start_with_context(&tracer, &cx);
                p.end_with_timestamp(at(4));
            }
            cx.span().end_with_timestamp(at(10));
        }
    }
    provider.force_flush().unwrap();
    provider.shutdown().unwrap();
}

async fn run_plants(plants: &'static [Plant]) -> powertune_apm::Summary {
    let run = start(local()).await;
    let endpoint = format!("http://{}/v1/traces", run.http_addr);
    tokio::task::spawn_blocking(move || {
        std::thread::spawn(move || export_cache_spans(&endpoint, plants))
            .join()
            .unwrap();
    })
    .await
    .unwrap();
    let s = summary_of(run.http_addr).await;
    run.stop();
    s
}

fn cache_verdicts(s: &powertune_apm::Summary) -> Vec<(String, String, Verdict)> {
    let mut v: Vec<_> = powertune_apm::judge::judge(s, &Targets::default(), None)
        .into_iter()
        .filter(|f| f.check.starts_with("cache_"))
        .map(|f| (f.check, f.subject, f.verdict))
        .collect();
    v.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    v
}

fn row(check: &str, subject: &str, v: Verdict) -> (String, String, Verdict) {
    (check.to_string(), subject.to_string(), v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_hit_rates_fire_where_planted() {
    static PLANTS: [Plant; 5] = [
        ("user_profile", 40, 36, Style::Rails),       // 90%: passes
        ("ai_pricing", 40, 12, Style::RailsReversed), // 30% < 50%: fails
        ("account_settings", 30, 24, Style::Sentry),  // 80%: passes
        ("views", 20, 4, Style::Rails),               // default, 20%: fails
        ("analytics_dashboard", 5, 0, Style::Sentry), // too few: not judged
    ];
    let s = run_plants(&PLANTS).await;
    let c = &s.cache;
    assert_eq!((c.hits, c.lookups, c.min_lookups), (76, 135, 20), "{c:#?}");
    let got: Vec<_> = c
        .types
        .iter()
        .map(|t| (t.cache_type.as_str(), t.hits, t.lookups))
        .collect();
    assert_eq!(
        got,
        vec![
            ("account_settings", 24, 30),
            ("ai_pricing", 12, 40),
            ("analytics_dashboard", 0, 5),
            ("default", 4, 20),
            ("user_profile", 36, 40),
        ]
    );
    assert_eq!(
        cache_verdicts(&s),
        vec![
            row("cache_hit_rate", "overall", Verdict::Fail),
            row("cache_type_hit_rate", "account_settings", Verdict::Pass),
            row("cache_type_hit_rate", "ai_pricing", Verdict::Fail),
            row("cache_type_hit_rate", "default", Verdict::Fail),
            row("cache_type_hit_rate", "user_profile", Verdict::Pass),
        ]
    );
    let f = powertune_apm::judge::judge(&s, &Targets::default(), None);
    let ai = f
        .iter()
        .find(|f| f.subject == "ai_pricing")
        .expect("ai_pricing finding");
    assert!(
        ai.evidence.starts_with("12/40 hits/lookups"),
        "{}",
        ai.evidence
    );
    assert_eq!(ai.area, "apm");
    let text = powertune_apm::render::routes_table(&s, 10);
    assert!(
        text.contains("not judged (fewer than 20 lookups, cache.min_lookups): analytics_dashboard (5 lookups)"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_caches_pass() {
    static PLANTS: [Plant; 2] = [
        ("user_profile", 30, 27, Style::Rails),
        ("ai_pricing", 30, 24, Style::Sentry),
    ];
    let s = run_plants(&PLANTS).await;
    assert_eq!((s.cache.hits, s.cache.lookups), (51, 60));
    assert_eq!(
        cache_verdicts(&s),
        vec![
            row("cache_hit_rate", "overall", Verdict::Pass),
            row("cache_type_hit_rate", "ai_pricing", Verdict::Pass),
            row("cache_type_hit_rate", "user_profile", Verdict::Pass),
        ]
    );
}
