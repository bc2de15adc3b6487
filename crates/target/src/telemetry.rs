//! `[telemetry]`: the target's own traces. Each request continues an incoming W3C
//! `traceparent` (or starts a trace) and, when `otlp_endpoint` is set, its spans go
//! over OTLP/HTTP (protobuf) to that endpoint: the HTTP server span (route template,
//! status), the database pool wait and query as DB spans, a Redis cache read as a
//! cache span (`cache_read.active_support` with `key` and `hit`, as Rails'
//! ActiveSupport notifications reach OpenTelemetry), and the LLM call as a CLIENT
//! span whose context goes on to the gateway in `traceparent`.
//!
//! Spans are batched by the SDK's batch processor on its own thread: at most
//! `max_queue` spans wait; past that they are dropped (never waited for), so a slow or
//! dead collector never slows a request. Each export gives up after `export_timeout`.

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{
    FutureExt as _, Span as _, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider,
};
use powertune_core::config_file::Source;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::time::{Duration, SystemTime};

/// `[telemetry]` in the target's config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// OTLP/HTTP receiver (`http://127.0.0.1:4318`; `/v1/traces` is appended unless
    /// the path already ends with it). Unset: no spans are exported.
    pub otlp_endpoint: Option<String>,
    /// The `service.name` resource attribute.
    pub service_name: String,
    /// Spans waiting for export, at most; more are dropped.
    pub max_queue: usize,
    /// Longest one export may take.
    #[serde(with = "powertune_core::duration::serde_human")]
    pub export_timeout: Duration,
    /// How often a partial batch is sent.
    #[serde(with = "powertune_core::duration::serde_human")]
    pub flush_interval: Duration,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            otlp_endpoint: None,
            service_name: "powertune-target".into(),
            max_queue: 2048,
            export_timeout: Duration::from_secs(5),
            flush_interval: Duration::from_millis(500),
        }
    }
}

impl TelemetryConfig {
    /// Checks the values at their keys in `src`.
    pub(crate) fn validate(&self, src: &Source) -> Result<(), crate::TargetError> {
        let bad = |key: &str, why: String| Err(crate::TargetError::Config(src.error(key, why)));
        if let Some(u) = &self.otlp_endpoint {
            if !crate::llm::url_ok(u) {
                return bad(
                    "telemetry.otlp_endpoint",
                    format!(
                        "{:?} is not an http(s) URL without credentials, e.g. \"http://127.0.0.1:4318\"",
                        powertune_core::redact::text(u)
                    ),
                );
            }
        }
        if self.service_name.trim().is_empty() || self.service_name.len() > 200 {
            return bad(
                "telemetry.service_name",
                "must be 1 to 200 characters, e.g. \"powernode-api\"".into(),
            );
        }
        if !(1..=1_000_000).contains(&self.max_queue) {
            return bad(
                "telemetry.max_queue",
                "must be 1 to 1000000, e.g. 2048".into(),
            );
        }
        for (key, d) in [
            ("telemetry.export_timeout", self.export_timeout),
            ("telemetry.flush_interval", self.flush_interval),
        ] {
            if d.is_zero() || d > Duration::from_secs(600) {
                return bad(key, "must be above 0 and at most 10m, e.g. \"5s\"".into());
            }
        }
        Ok(())
    }

    /// The URL spans are posted to.
    pub fn traces_url(&self) -> Option<String> {
        self.otlp_endpoint.as_ref().map(|u| {
            let u = u.trim_end_matches('/');
            if u.ends_with("/v1/traces") {
                u.to_string()
            } else {
                format!("{u}/v1/traces")
            }
        })
    }
}

/// The target's tracer: exporting when configured, otherwise a no-op that still
/// continues incoming trace contexts (so the LLM call passes them on).
pub(crate) struct Telemetry {
    provider: Option<SdkTracerProvider>,
    tracer: Option<SdkTracer>,
    propagator: TraceContextPropagator,
}

impl Telemetry {
    /// Builds the exporter (no connection is made until the first batch).
    pub(crate) fn new(cfg: &TelemetryConfig) -> Result<Telemetry, crate::TargetError> {
        let propagator = TraceContextPropagator::new();
        let Some(url) = cfg.traces_url() else {
            return Ok(Telemetry {
                provider: None,
                tracer: None,
                propagator,
            });
        };
        use opentelemetry_otlp::{Protocol, WithExportConfig};
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(url)
            .with_protocol(Protocol::HttpBinary)
            .with_timeout(cfg.export_timeout)
            .build()
            .map_err(|e| {
                crate::TargetError::Telemetry(powertune_core::redact::text(&e.to_string()))
            })?;
        let batch = BatchConfigBuilder::default()
            .with_max_queue_size(cfg.max_queue)
            .with_max_export_batch_size(cfg.max_queue.min(512))
            .with_scheduled_delay(cfg.flush_interval)
            .build();
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(batch)
            .build();
        let resource = opentelemetry_sdk::Resource::builder_empty()
            .with_attribute(KeyValue::new("service.name", cfg.service_name.clone()))
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("powertune-target");
        Ok(Telemetry {
            provider: Some(provider),
            tracer: Some(tracer),
            propagator,
        })
    }

    /// Sends what is queued and stops the export thread (blocking: call it off the
    /// async runtime's workers).
    pub(crate) fn shutdown(&self) {
        if let Some(p) = &self.provider {
            let _ = p.force_flush();
            let _ = p.shutdown();
        }
    }

    /// The context of an incoming request: its `traceparent`, if any.
    pub(crate) fn extract(&self, headers: &axum::http::HeaderMap) -> Context {
        self.propagator
            .extract_with_context(&Context::new(), &HeaderExtractor(headers))
    }

    /// Runs `fut` (the request's handling) under a SERVER span named `METHOD route`,
    /// child of `parent`; the span ends with the status `fut` answers.
    pub(crate) async fn server<F>(
        &self,
        parent: Context,
        method: &str,
        route: &str,
        path: &str,
        fut: F,
    ) -> axum::response::Response
    where
        F: Future<Output = axum::response::Response>,
    {
        let Some(tracer) = &self.tracer else {
            return fut.with_context(parent).await;
        };
        let span = tracer
            .span_builder(format!("{method} {route}"))
            .with_kind(SpanKind::Server)
            .with_attributes(vec![
                KeyValue::new("http.request.method", method.to_string()),
                KeyValue::new("http.route", route.to_string()),
                KeyValue::new("url.path", path.to_string()),
            ])
            .start_with_context(tracer, &parent);
        let cx = parent.with_span(span);
        let resp = fut.with_context(cx.clone()).await;
        let span = cx.span();
        let status = resp.status().as_u16();
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
        if status >= 500 {
            span.set_status(Status::error(format!("HTTP {status}")));
        }
        span.end();
        resp
    }

    /// A finished child span of the current request, from `start` to now.
    pub(crate) fn child(
        &self,
        name: &str,
        kind: SpanKind,
        start: SystemTime,
        attrs: Vec<KeyValue>,
    ) {
        let Some(tracer) = &self.tracer else {
            return;
        };
        let cx = Context::current();
        if !cx.has_active_span() {
            return;
        }
        let mut span = tracer
            .span_builder(name.to_string())
            .with_kind(kind)
            .with_start_time(start)
            .with_attributes(attrs)
            .start_with_context(tracer, &cx);
        span.end();
    }

    /// Starts a CLIENT span for an outgoing call under the current request and
    /// writes its `traceparent` into `headers`; without export, the incoming context
    /// is passed on as it came. The span ends when the [`ClientSpan`] is dropped.
    pub(crate) fn client(
        &self,
        name: &str,
        attrs: Vec<KeyValue>,
        headers: &mut axum::http::HeaderMap,
    ) -> ClientSpan {
        let cur = Context::current();
        let cx = match &self.tracer {
            Some(tracer) if cur.has_active_span() => {
                let span = tracer
                    .span_builder(name.to_string())
                    .with_kind(SpanKind::Client)
                    .with_attributes(attrs)
                    .start_with_context(tracer, &cur);
                Some(cur.with_span(span))
            }
            _ => None,
        };
        self.propagator
            .inject_context(cx.as_ref().unwrap_or(&cur), &mut HeaderInjector(headers));
        ClientSpan { cx, status: None }
    }
}

/// An outgoing call's span (nothing when not exporting); it ends when dropped,
/// so a streamed answer's span covers the whole stream.
pub(crate) struct ClientSpan {
    cx: Option<Context>,
    status: Option<u16>,
}

impl ClientSpan {
    /// Notes the call's answer status (an error status at ≥ 500; none noted: the
    /// call got no answer).
    pub(crate) fn answered(&mut self, status: u16) {
        self.status = Some(status);
    }
}

impl Drop for ClientSpan {
    fn drop(&mut self) {
        let Some(cx) = self.cx.take() else {
            return;
        };
        let span = cx.span();
        match self.status {
            Some(s) => {
                span.set_attribute(KeyValue::new("http.response.status_code", i64::from(s)));
                if s >= 500 {
                    span.set_status(Status::error(format!("HTTP {s}")));
                }
            }
            None => span.set_status(Status::error("no answer")),
        }
        span.end();
    }
}

/// The normalised statement (and span name) of a route's simulated database work,
/// as ActiveRecord would send it.
pub(crate) fn statement_of(route: crate::Route) -> (&'static str, &'static str) {
    use crate::Route::*;
    match route {
        Login => (
            "SELECT users",
            "SELECT \"users\".* FROM \"users\" WHERE \"users\".\"email\" = $1 LIMIT $2",
        ),
        Execute => (
            "SELECT ai_agents",
            "SELECT \"ai_agents\".* FROM \"ai_agents\" WHERE \"ai_agents\".\"id\" = $1 LIMIT $2",
        ),
        Missions => (
            "INSERT ai_missions",
            "INSERT INTO \"ai_missions\" (\"name\", \"objective\", \"agent_id\", \"status\", \"created_at\") VALUES ($1, $2, $3, $4, $5) RETURNING \"id\"",
        ),
        Dashboard => (
            "SELECT ai_missions",
            "SELECT COUNT(*) FROM \"ai_missions\" WHERE \"ai_missions\".\"status\" = $1",
        ),
        _ => ("SELECT", "SELECT 1"),
    }
}

/// The attributes of a DB span on PostgreSQL.
pub(crate) fn db_attrs(statement: &'static str, operation: &'static str) -> Vec<KeyValue> {
    vec![
        KeyValue::new("db.system", "postgresql"),
        KeyValue::new("db.system.name", "postgresql"),
        KeyValue::new("db.operation.name", operation),
        KeyValue::new("db.statement", statement),
        KeyValue::new("db.query.text", statement),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outgoing_call_carries_the_request_trace() {
        let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut h = axum::http::HeaderMap::new();
        h.insert("traceparent", incoming.parse().unwrap());
        // Not exporting: the incoming context goes on as it came.
        let off = Telemetry::new(&TelemetryConfig::default()).unwrap();
        let _g = off.extract(&h).attach();
        let mut out = axum::http::HeaderMap::new();
        drop(off.client("chat m", vec![], &mut out));
        assert_eq!(out["traceparent"], incoming);
        drop(_g);
        // Exporting: the call is a new span of the same trace.
        let cfg = TelemetryConfig {
            otlp_endpoint: Some("http://127.0.0.1:9".into()),
            ..Default::default()
        };
        let on = Telemetry::new(&cfg).unwrap();
        let _g = on.extract(&h).attach();
        let mut out = axum::http::HeaderMap::new();
        let span = on.client("chat m", vec![], &mut out);
        let tp = out["traceparent"].to_str().unwrap().to_string();
        assert!(
            tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{tp}"
        );
        assert!(!tp.contains("00f067aa0ba902b7"), "{tp}");
        assert!(tp.ends_with("-01"), "{tp}");
        drop(span);
        drop(_g);
    }

    #[test]
    fn endpoints_and_limits_are_checked() {
        let src = Source::new("t.toml", "");
        let mut c = TelemetryConfig::default();
        assert!(c.validate(&src).is_ok());
        assert_eq!(c.traces_url(), None);
        c.otlp_endpoint = Some("http://127.0.0.1:4318".into());
        assert_eq!(
            c.traces_url().as_deref(),
            Some("http://127.0.0.1:4318/v1/traces")
        );
        c.otlp_endpoint = Some("http://127.0.0.1:4318/v1/traces/".into());
        assert_eq!(
            c.traces_url().as_deref(),
            Some("http://127.0.0.1:4318/v1/traces")
        );
        c.otlp_endpoint = Some("http://u:secret@h:4318".into());
        let e = c.validate(&src).unwrap_err().to_string();
        assert!(
            e.contains("telemetry.otlp_endpoint") && !e.contains("secret"),
            "{e}"
        );
        let c = TelemetryConfig {
            max_queue: 0,
            ..Default::default()
        };
        assert!(c
            .validate(&src)
            .unwrap_err()
            .to_string()
            .contains("telemetry.max_queue"));
    }
}
