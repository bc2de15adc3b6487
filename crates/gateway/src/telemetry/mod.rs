//! `[telemetry]`: OTLP spans for every client call and each of its upstream
//! attempts, with OpenTelemetry's GenAI semantic conventions (the attributes
//! `powertune apm` reads for its provider table) and the gateway's own
//! `powertune.gateway.*` attributes.
//!
//! - The **call span** (kind SERVER, `chat {model}` / `embeddings {model}`) covers
//!   the client's call from its arrival until the answer (a stream: its end). It
//!   continues the client's W3C `traceparent` and carries the final attempt's
//!   provider, model, tokens and finish reason, and `powertune.gateway.retries`.
//! - One **attempt span** (kind CLIENT) per upstream try, child of the call span;
//!   its context goes upstream in `traceparent`.
//!
//! Without `[telemetry]` nothing is recorded, but a client's `traceparent` still goes
//! upstream as it came. Spans are never recorded for calls refused before routing
//! (a bad key, a bad body, an unknown model). Export: [`export`], encoded by
//! [`otlp`].

mod export;
mod otlp;

use crate::config::{Provider, TelemetryConfig};
use crate::metrics::Outcome;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{
    FutureExt as _, Span as _, SpanKind, Status, TraceContextExt as _, Tracer as _,
};
use opentelemetry::{Context, KeyValue, StringValue, Value};
use opentelemetry_http::HeaderExtractor;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use parking_lot::Mutex;
use powertune_dialect::{ProviderKind, Usage};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The gateway's tracer: exporting when `[telemetry]` is set, otherwise only
/// passing a client's trace context on.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    tracer: Option<SdkTracer>,
    gate: Arc<export::Gate>,
    /// How long [`Telemetry::shutdown`] waits for the last export.
    stop_wait: Duration,
    servers: Arc<Servers>,
}

/// `server.address` and `server.port` per provider base URL, parsed once (a
/// reload's new URLs are added; the map is emptied past [`Servers::MAX`]).
#[derive(Default)]
struct Servers(Mutex<HashMap<String, Server>>);

/// A provider's host and port, when its URL names them.
type Server = Option<(Arc<str>, i64)>;

impl Servers {
    const MAX: usize = 256;

    fn of(&self, base_url: &str) -> Server {
        let mut m = self.0.lock();
        if let Some(s) = m.get(base_url) {
            return s.clone();
        }
        let server = url::Url::parse(base_url).ok().and_then(|u| {
            let port = i64::from(u.port_or_known_default()?);
            Some((Arc::from(u.host_str()?), port))
        });
        if m.len() >= Self::MAX {
            m.clear();
        }
        m.insert(base_url.to_string(), server.clone());
        server
    }
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("exporting", &self.tracer.is_some())
            .finish()
    }
}

impl Telemetry {
    /// Builds the exporter for `cfg` (none: record nothing). No connection opens
    /// until the first batch.
    pub fn new(cfg: Option<&TelemetryConfig>) -> Result<Telemetry, String> {
        let Some(cfg) = cfg else {
            return Ok(Telemetry {
                provider: None,
                tracer: None,
                gate: Arc::default(),
                stop_wait: Duration::ZERO,
                servers: Arc::default(),
            });
        };
        let (provider, tracer, gate) = export::build(cfg)?;
        Ok(Telemetry {
            provider: Some(provider),
            tracer: Some(tracer),
            gate,
            stop_wait: cfg.export_timeout + Duration::from_secs(1),
            servers: Arc::default(),
        })
    }

    /// Spans are being exported.
    pub fn exporting(&self) -> bool {
        self.tracer.is_some()
    }

    /// Spans dropped because the export queue was full.
    pub fn dropped(&self) -> u64 {
        self.gate.dropped()
    }

    /// Sends what is queued and stops the export thread, waiting at most the export
    /// timeout and a second. Blocking: call it off the async runtime's workers.
    pub fn shutdown(&self) {
        if let Some(p) = &self.provider {
            let _ = p.shutdown_with_timeout(self.stop_wait);
        }
    }

    /// The span of a client call that arrived at `arrived` (`op`: `chat` or
    /// `embeddings`; `model`: what the client asked for; `class`: its route class).
    pub(crate) fn call(
        &self,
        headers: &axum::http::HeaderMap,
        arrived: std::time::Instant,
        op: &'static str,
        model: &str,
        class: Option<&str>,
    ) -> CallSpan {
        let parent = if headers.contains_key("traceparent") {
            TraceContextPropagator::new()
                .extract_with_context(&Context::new(), &HeaderExtractor(headers))
        } else {
            Context::new()
        };
        let Some(tracer) = &self.tracer else {
            return CallSpan {
                cx: parent,
                inner: None,
            };
        };
        let start = SystemTime::now()
            .checked_sub(arrived.elapsed())
            .unwrap_or_else(SystemTime::now);
        // the sampler decides first (it reads neither the name nor attributes), so
        // a call sampled out costs no name, attributes or attempt spans; room is
        // made for all the call's attributes, so the SDK's vector never grows
        let mut span = tracer
            .span_builder(op)
            .with_kind(SpanKind::Server)
            .with_start_time(start)
            .with_attributes(Vec::with_capacity(CALL_ATTRIBUTES))
            .start_with_context(tracer, &parent);
        if !span.is_recording() {
            // its context alone goes upstream: the call's span id, not sampled
            return CallSpan {
                cx: parent.with_span(span),
                inner: None,
            };
        }
        let alias = crate::metrics::label(model).into_owned();
        span.update_name(format!("{op} {alias}"));
        span.set_attribute(KeyValue::new("gen_ai.operation.name", op));
        span.set_attribute(KeyValue::new("powertune.gateway.model_alias", alias));
        if let Some(c) = class {
            span.set_attribute(KeyValue::new(
                "powertune.gateway.route_class",
                c.to_string(),
            ));
        }
        let cx = parent.with_span(span);
        CallSpan {
            inner: Some(Arc::new(CallInner {
                cx: cx.clone(),
                tracer: tracer.clone(),
                servers: self.servers.clone(),
                op,
                facts: Mutex::new(Facts::default()),
            })),
            cx,
        }
    }
}

/// The most attributes a call span carries (3 at its start, 12 at its end).
const CALL_ATTRIBUTES: usize = 15;
/// The most an attempt span carries (10 at its start, 5 at its end).
const ATTEMPT_ATTRIBUTES: usize = 15;

/// The semantic conventions' `gen_ai.provider.name` of a provider.
fn system_of(p: &Provider) -> &'static str {
    if p.azure_api_version.is_some() {
        return "azure.ai.openai";
    }
    match p.kind {
        ProviderKind::OpenAi => "openai",
        ProviderKind::Anthropic => "anthropic",
        ProviderKind::Ollama => "ollama",
    }
}

/// What the call span reports when it ends: the last attempt's.
#[derive(Default)]
struct Facts {
    provider: Option<(StringValue, &'static str)>,
    model: Option<StringValue>,
    credential: Option<StringValue>,
    attempts: u32,
    last: Option<Outcome>,
    ok: bool,
    usage: Option<Usage>,
    ttft: Option<Duration>,
    response_model: Option<StringValue>,
    finish: Option<StringValue>,
    /// The call's cost so far (`[pricing]`), in USD.
    cost_usd: Option<f64>,
}

struct CallInner {
    cx: Context,
    tracer: SdkTracer,
    servers: Arc<Servers>,
    op: &'static str,
    facts: Mutex<Facts>,
}

impl Drop for CallInner {
    fn drop(&mut self) {
        let span = self.cx.span();
        let f = self.facts.get_mut();
        let mut a = Vec::with_capacity(CALL_ATTRIBUTES - 3);
        if let Some((name, system)) = &f.provider {
            a.push(KeyValue::new("gen_ai.provider.name", *system));
            a.push(KeyValue::new("powertune.gateway.provider", name.clone()));
        }
        if let Some(m) = f.model.take() {
            a.push(KeyValue::new("gen_ai.request.model", m));
        }
        if let Some(c) = f.credential.take() {
            a.push(KeyValue::new("powertune.gateway.credential", c));
        }
        a.push(KeyValue::new(
            "powertune.gateway.retries",
            i64::from(f.attempts.saturating_sub(1)),
        ));
        answer_attrs(
            &mut a,
            f.usage,
            f.ttft,
            f.response_model.take(),
            f.finish.take(),
        );
        if let Some(usd) = f.cost_usd {
            a.push(KeyValue::new("powertune.gateway.cost_usd", usd));
        }
        if !f.ok {
            let why = f.last.map_or("no_credential", Outcome::as_str);
            a.push(KeyValue::new("error.type", why));
            span.set_status(Status::error(why));
        }
        span.set_attributes(a);
        span.end();
    }
}

/// The attributes of a finished answer.
fn answer_attrs(
    a: &mut Vec<KeyValue>,
    usage: Option<Usage>,
    ttft: Option<Duration>,
    response_model: Option<StringValue>,
    finish: Option<StringValue>,
) {
    if let Some(u) = usage {
        a.push(KeyValue::new(
            "gen_ai.usage.input_tokens",
            i64::try_from(u.input).unwrap_or(i64::MAX),
        ));
        a.push(KeyValue::new(
            "gen_ai.usage.output_tokens",
            i64::try_from(u.output).unwrap_or(i64::MAX),
        ));
    }
    if let Some(t) = ttft {
        a.push(KeyValue::new(
            "gen_ai.response.time_to_first_chunk",
            t.as_secs_f64(),
        ));
    }
    if let Some(m) = response_model {
        a.push(KeyValue::new("gen_ai.response.model", m));
    }
    if let Some(r) = finish {
        a.push(KeyValue::new(
            "gen_ai.response.finish_reasons",
            Value::Array(vec![r].into()),
        ));
    }
}

/// One client call's span (or, without export, the client's trace context).
pub(crate) struct CallSpan {
    cx: Context,
    inner: Option<Arc<CallInner>>,
}

impl Default for CallSpan {
    fn default() -> Self {
        CallSpan {
            cx: Context::new(),
            inner: None,
        }
    }
}

/// Who an attempt goes to.
pub(crate) struct AttemptTarget<'a> {
    pub(crate) provider: &'a Provider,
    pub(crate) credential: &'a str,
    pub(crate) model: &'a str,
    /// The credential's breaker state as the attempt was admitted (`closed`,
    /// `half_open` for a probe).
    pub(crate) breaker: &'static str,
}

impl CallSpan {
    /// The call's span is exported (not sampled out, `[telemetry]` set).
    pub(crate) fn recording(&self) -> bool {
        self.inner.is_some()
    }

    /// Starts the span of the call's next attempt, to `to`.
    pub(crate) fn attempt(&self, to: AttemptTarget<'_>) -> AttemptSpan {
        let Some(inner) = &self.inner else {
            return AttemptSpan {
                cx: self.cx.clone(),
                ..AttemptSpan::default()
            };
        };
        let tracer = &inner.tracer;
        let p = to.provider;
        let system = system_of(p);
        let server = inner.servers.of(&p.base_url);
        // each allocated once, shared by the attempt's span and the call's
        let text = |s: &str| StringValue::from(Arc::<str>::from(s));
        let (provider, model, credential) = (text(&p.name), text(to.model), text(to.credential));
        let (number, retry_reason) = {
            let mut f = inner.facts.lock();
            f.attempts += 1;
            f.provider = Some((provider.clone(), system));
            f.model = Some(model.clone());
            f.credential = Some(credential.clone());
            (f.attempts, f.last)
        };
        let mut a = Vec::with_capacity(ATTEMPT_ATTRIBUTES);
        {
            a.push(KeyValue::new("gen_ai.operation.name", inner.op));
            a.push(KeyValue::new("gen_ai.provider.name", system));
            a.push(KeyValue::new("gen_ai.request.model", model));
            a.push(KeyValue::new("powertune.gateway.provider", provider));
            a.push(KeyValue::new("powertune.gateway.credential", credential));
            a.push(KeyValue::new(
                "powertune.gateway.attempt",
                i64::from(number),
            ));
            a.push(KeyValue::new("powertune.gateway.breaker", to.breaker));
            if let Some(r) = retry_reason {
                a.push(KeyValue::new("powertune.gateway.retry_reason", r.as_str()));
            }
            if let Some((host, port)) = server {
                a.push(KeyValue::new("server.address", host));
                a.push(KeyValue::new("server.port", port));
            }
        }
        let span = tracer
            .span_builder(format!("{} {}", inner.op, to.model))
            .with_kind(SpanKind::Client)
            .with_attributes(a)
            .start_with_context(tracer, &inner.cx);
        AttemptSpan {
            cx: inner.cx.with_span(span),
            call: Some(inner.clone()),
            response_model: None,
            finish: None,
        }
    }
}

/// One upstream attempt's span; [`AttemptSpan::finish`] ends it.
#[derive(Default)]
pub(crate) struct AttemptSpan {
    cx: Context,
    /// The call's span, while this attempt is recorded and not yet finished.
    call: Option<Arc<CallInner>>,
    response_model: Option<StringValue>,
    finish: Option<StringValue>,
}

impl AttemptSpan {
    /// Runs `fut` (the upstream request) in this attempt's trace context, so
    /// [`traceparent`] names the attempt.
    pub(crate) fn scope<F: std::future::Future>(
        &self,
        fut: F,
    ) -> opentelemetry::context::WithContext<F> {
        fut.with_context(self.cx.clone())
    }

    /// Notes the model and finish reason of a whole answer decoded by the gateway.
    pub(crate) fn note_answer(&mut self, model: &str, finish: &str) {
        if self.call.is_some() {
            self.response_model = Some(StringValue::from(Arc::<str>::from(model)));
            self.finish = Some(StringValue::from(Arc::<str>::from(finish)));
        }
    }

    /// Notes the model and finish reason of a provider's answer passed through as
    /// it came (read with its usage, [`powertune_dialect::peek_provider_response`]).
    pub(crate) fn note_peeked(&mut self, model: Option<String>, finish: Option<String>) {
        if self.call.is_some() {
            self.response_model = model.map(|m| StringValue::from(Arc::<str>::from(m)));
            self.finish = finish.map(|r| StringValue::from(Arc::<str>::from(r)));
        }
    }

    /// Notes the call's cost so far (`[pricing]`), reported on the call's span.
    pub(crate) fn note_cost(&self, usd: Option<f64>) {
        if let Some(call) = &self.call {
            call.facts.lock().cost_usd = usd;
        }
    }

    /// Ends the attempt with `outcome` (idempotent) and hands what it learnt to the
    /// call's span.
    pub(crate) fn finish(
        &mut self,
        outcome: Outcome,
        usage: Usage,
        ttft: Option<Duration>,
        retry_after: Option<Duration>,
    ) {
        let Some(call) = self.call.take() else {
            return;
        };
        let ok = outcome == Outcome::Ok;
        {
            let mut f = call.facts.lock();
            f.last = Some(outcome);
            if ok {
                f.ok = true;
                f.usage = Some(usage);
                f.ttft = ttft;
                f.response_model = self.response_model.clone();
                f.finish = self.finish.clone();
            }
        }
        let span = self.cx.span();
        let mut a = Vec::with_capacity(ATTEMPT_ATTRIBUTES - 10);
        if ok {
            answer_attrs(
                &mut a,
                Some(usage),
                ttft,
                self.response_model.take(),
                self.finish.take(),
            );
        } else {
            a.push(KeyValue::new("error.type", outcome.as_str()));
            span.set_status(Status::error(outcome.as_str()));
        }
        if let Some(r) = retry_after {
            a.push(KeyValue::new(
                "powertune.gateway.retry_after",
                r.as_secs_f64(),
            ));
        }
        span.set_attributes(a);
        span.end();
    }
}

/// The W3C `traceparent` of the trace context in force (an attempt's, inside
/// [`AttemptSpan::scope`]); `None` outside any trace.
pub(crate) fn traceparent() -> Option<Traceparent> {
    let cx = Context::current();
    let span = cx.span();
    let sc = span.span_context();
    if !sc.is_valid() {
        return None;
    }
    // version 00, 32 + 16 hex digits of ids, 2 of flags: 55 bytes, no allocation
    let mut b = *b"00-00000000000000000000000000000000-0000000000000000-00";
    let hex = |src: &[u8], dst: &mut [u8]| hex::encode_to_slice(src, dst).is_ok();
    let ok = hex(&sc.trace_id().to_bytes(), &mut b[3..35])
        && hex(&sc.span_id().to_bytes(), &mut b[36..52])
        && hex(&[sc.trace_flags().to_u8()], &mut b[53..55]);
    ok.then_some(Traceparent(b))
}

/// A `traceparent` header value (ASCII hex digits and dashes).
pub(crate) struct Traceparent([u8; 55]);

impl Traceparent {
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> Provider {
        Provider {
            name: "openai".into(),
            kind: ProviderKind::OpenAi,
            base_url: "http://127.0.0.1:9/v1".into(),
            azure_api_version: None,
            credentials: Vec::new(),
        }
    }

    fn target(p: &Provider) -> AttemptTarget<'_> {
        AttemptTarget {
            provider: p,
            credential: "a",
            model: "m",
            breaker: "closed",
        }
    }

    #[tokio::test]
    async fn a_call_sampled_out_sends_its_own_unsampled_context_upstream() {
        let cfg = TelemetryConfig {
            traces_url: "http://127.0.0.1:9/v1/traces".into(),
            headers: Vec::new(),
            service_name: "gw".into(),
            sample_ratio: 0.0,
            max_queue: 16,
            max_batch: 16,
            flush_interval: Duration::from_secs(1),
            export_timeout: Duration::from_secs(1),
        };
        let t = Telemetry::new(Some(&cfg)).unwrap();
        let p = provider();
        let none = axum::http::HeaderMap::new();
        let call = t.call(&none, std::time::Instant::now(), "chat", "fast", None);
        assert!(!call.recording());
        let tp = call
            .attempt(target(&p))
            .scope(async { traceparent() })
            .await;
        let tp = tp.expect("a context goes upstream").as_str().to_string();
        let parts: Vec<&str> = tp.split('-').collect();
        assert_eq!(parts.len(), 4, "{tp}");
        assert_eq!((parts[0], parts[3]), ("00", "00"), "{tp}");
        assert!(
            parts[1] != "0".repeat(32) && parts[2] != "0".repeat(16),
            "{tp}"
        );
        // a client's unsampled context is continued, still unsampled
        let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        let mut h = axum::http::HeaderMap::new();
        h.insert("traceparent", incoming.parse().unwrap());
        let call = t.call(&h, std::time::Instant::now(), "chat", "fast", None);
        assert!(!call.recording());
        let tp = call
            .attempt(target(&p))
            .scope(async { traceparent() })
            .await
            .unwrap();
        assert!(tp
            .as_str()
            .starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(!tp.as_str().contains("00f067aa0ba902b7") && tp.as_str().ends_with("-00"));
        tokio::task::spawn_blocking(move || t.shutdown())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn without_export_the_client_context_goes_upstream_as_it_came() {
        let t = Telemetry::new(None).unwrap();
        let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut h = axum::http::HeaderMap::new();
        h.insert("traceparent", incoming.parse().unwrap());
        let call = t.call(&h, std::time::Instant::now(), "chat", "fast", None);
        let p = provider();
        let at = call.attempt(target(&p));
        let tp = at.scope(async { traceparent() }).await;
        assert_eq!(tp.as_ref().map(Traceparent::as_str), Some(incoming));
        // no client context: nothing is sent
        let call = t.call(
            &axum::http::HeaderMap::new(),
            std::time::Instant::now(),
            "chat",
            "fast",
            None,
        );
        let at = call.attempt(target(&p));
        assert!(at.scope(async { traceparent() }).await.is_none());
    }
}
