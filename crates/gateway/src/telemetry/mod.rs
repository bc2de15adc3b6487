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
    SpanContext, SpanId, SpanKind, Status, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Context, KeyValue, StringValue, Value};
use opentelemetry_http::HeaderExtractor;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    IdGenerator as _, RandomIdGenerator, SamplingDecision, ShouldSample as _, SpanData, SpanEvents,
    SpanLinks, SpanProcessor as _,
};
use parking_lot::Mutex;
use powertune_dialect::{ProviderKind, Usage};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The gateway's tracer: exporting when `[telemetry]` is set, otherwise only
/// passing a client's trace context on.
///
/// Spans are written as the SDK's `SpanData` when they end and handed to its batch
/// processor; no SDK `Span` (with its lock, context and per-attribute calls) lives
/// through the call, so a call's spans cost its request thread one sampling
/// decision, two ids and two finished records (docs/performance.md).
pub struct Telemetry {
    export: Option<Arc<export::Export>>,
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
            .field("exporting", &self.export.is_some())
            .finish()
    }
}

impl Telemetry {
    /// Builds the exporter for `cfg` (none: record nothing). No connection opens
    /// until the first batch.
    pub fn new(cfg: Option<&TelemetryConfig>) -> Result<Telemetry, String> {
        let Some(cfg) = cfg else {
            return Ok(Telemetry {
                export: None,
                gate: Arc::default(),
                stop_wait: Duration::ZERO,
                servers: Arc::default(),
            });
        };
        let (export, gate) = export::build(cfg)?;
        Ok(Telemetry {
            export: Some(Arc::new(export)),
            gate,
            stop_wait: cfg.export_timeout + Duration::from_secs(1),
            servers: Arc::default(),
        })
    }

    /// Spans are being exported.
    pub fn exporting(&self) -> bool {
        self.export.is_some()
    }

    /// Spans dropped because the export queue was full.
    pub fn dropped(&self) -> u64 {
        self.gate.dropped()
    }

    /// Sends what is queued and stops the export thread, waiting at most the export
    /// timeout and a second. Blocking: call it off the async runtime's workers.
    pub fn shutdown(&self) {
        if let Some(e) = &self.export {
            let _ = e.processor.shutdown_with_timeout(self.stop_wait);
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
        let parent = headers.contains_key("traceparent").then(|| {
            TraceContextPropagator::new()
                .extract_with_context(&Context::new(), &HeaderExtractor(headers))
        });
        let psc = parent
            .as_ref()
            .map(|cx| cx.span().span_context().clone())
            .filter(SpanContext::is_valid);
        let Some(export) = &self.export else {
            // the client's own context goes upstream as it came
            return CallSpan {
                upstream: psc.as_ref().map(|p| Ids::of(p).traceparent()),
                inner: None,
            };
        };
        let ids = RandomIdGenerator::default();
        let span_id = ids.new_span_id();
        let trace_id = psc
            .as_ref()
            .map_or_else(|| ids.new_trace_id(), SpanContext::trace_id);
        // the sampler reads neither the name nor attributes: a call sampled out
        // costs no name, attributes or attempt records
        let sampled = export.sampler.should_sample(
            parent.as_ref(),
            trace_id,
            op,
            &SpanKind::Server,
            &[],
            &[],
        );
        let flags = psc
            .as_ref()
            .map_or(TraceFlags::default(), |p| p.trace_flags());
        let me = Ids {
            trace_id,
            span_id,
            flags: flags.with_sampled(sampled.decision == SamplingDecision::RecordAndSample),
        };
        if sampled.decision != SamplingDecision::RecordAndSample {
            // its context alone goes upstream: the call's span id, not sampled
            return CallSpan {
                upstream: Some(me.traceparent()),
                inner: None,
            };
        }
        let start = SystemTime::now()
            .checked_sub(arrived.elapsed())
            .unwrap_or_else(SystemTime::now);
        let text = |s: &str| StringValue::from(Arc::<str>::from(s));
        CallSpan {
            upstream: None,
            inner: Some(Arc::new(CallInner {
                export: export.clone(),
                servers: self.servers.clone(),
                op,
                me,
                trace_state: sampled.trace_state,
                parent: psc.map(|p| p.span_id()),
                start,
                alias: text(&crate::metrics::label(model)),
                class: class.map(text),
                facts: Mutex::new(Facts::default()),
            })),
        }
    }
}

/// A span's ids and W3C trace flags.
#[derive(Clone, Copy)]
struct Ids {
    trace_id: TraceId,
    span_id: SpanId,
    flags: TraceFlags,
}

impl Ids {
    fn of(sc: &SpanContext) -> Ids {
        Ids {
            trace_id: sc.trace_id(),
            span_id: sc.span_id(),
            flags: sc.trace_flags(),
        }
    }

    /// Version 00, 32 + 16 hex digits of ids, 2 of flags: 55 bytes, no allocation.
    fn traceparent(&self) -> Traceparent {
        let mut b = *b"00-00000000000000000000000000000000-0000000000000000-00";
        let hex = |src: &[u8], dst: &mut [u8]| {
            // the lengths are exact: encoding cannot fail
            let _ = hex::encode_to_slice(src, dst);
        };
        hex(&self.trace_id.to_bytes(), &mut b[3..35]);
        hex(&self.span_id.to_bytes(), &mut b[36..52]);
        hex(&[self.flags.to_u8()], &mut b[53..55]);
        Traceparent(b)
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

/// A recorded call: its span is written and queued when the last reference (the
/// call's state, or an attempt still running) goes.
struct CallInner {
    export: Arc<export::Export>,
    servers: Arc<Servers>,
    op: &'static str,
    me: Ids,
    trace_state: TraceState,
    /// The client's span, when it sent a valid `traceparent`.
    parent: Option<SpanId>,
    start: SystemTime,
    alias: StringValue,
    class: Option<StringValue>,
    facts: Mutex<Facts>,
}

impl CallInner {
    /// A finished span of this call's trace: the call's own (SERVER, child of the
    /// client's span when it sent one) or an attempt's (CLIENT, child of the call's).
    fn span(
        &self,
        span_id: SpanId,
        kind: SpanKind,
        name: String,
        start: SystemTime,
        attributes: Vec<KeyValue>,
        status: Status,
    ) -> SpanData {
        let (parent, remote) = match kind {
            SpanKind::Server => (self.parent, self.parent.is_some()),
            _ => (Some(self.me.span_id), false),
        };
        SpanData {
            span_context: SpanContext::new(
                self.me.trace_id,
                span_id,
                self.me.flags,
                false,
                self.trace_state.clone(),
            ),
            parent_span_id: parent.unwrap_or(SpanId::INVALID),
            parent_span_is_remote: remote,
            span_kind: kind,
            name: Cow::Owned(name),
            start_time: start,
            end_time: SystemTime::now(),
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status,
            instrumentation_scope: self.export.scope.clone(),
        }
    }

    /// Queues a finished attempt's span.
    fn end_attempt(&self, o: Open, status: Status) {
        let name = format!("{} {}", self.op, o.model.as_str());
        let span = self.span(
            o.span_id,
            SpanKind::Client,
            name,
            o.start,
            o.attributes,
            status,
        );
        self.export.processor.on_end(span);
    }
}

impl Drop for CallInner {
    fn drop(&mut self) {
        let f = self.facts.get_mut();
        let mut a = Vec::with_capacity(CALL_ATTRIBUTES);
        a.push(KeyValue::new("gen_ai.operation.name", self.op));
        a.push(KeyValue::new(
            "powertune.gateway.model_alias",
            self.alias.clone(),
        ));
        if let Some(c) = self.class.take() {
            a.push(KeyValue::new("powertune.gateway.route_class", c));
        }
        if let Some((name, system)) = f.provider.take() {
            a.push(KeyValue::new("gen_ai.provider.name", system));
            a.push(KeyValue::new("powertune.gateway.provider", name));
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
        let status = if f.ok {
            Status::Unset
        } else {
            let why = f.last.map_or("no_credential", Outcome::as_str);
            a.push(KeyValue::new("error.type", why));
            Status::error(why)
        };
        let name = format!("{} {}", self.op, self.alias.as_str());
        let span = self.span(
            self.me.span_id,
            SpanKind::Server,
            name,
            self.start,
            a,
            status,
        );
        self.export.processor.on_end(span);
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
#[derive(Default)]
pub(crate) struct CallSpan {
    /// What goes upstream when the call is not recorded: the client's context
    /// (without export) or the call's own unsampled one.
    upstream: Option<Traceparent>,
    inner: Option<Arc<CallInner>>,
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
                upstream: self.upstream,
                call: None,
                open: None,
            };
        };
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
        a.push(KeyValue::new("gen_ai.operation.name", inner.op));
        a.push(KeyValue::new("gen_ai.provider.name", system));
        a.push(KeyValue::new("gen_ai.request.model", model.clone()));
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
        let span_id = RandomIdGenerator::default().new_span_id();
        AttemptSpan {
            upstream: Some(
                Ids {
                    span_id,
                    ..inner.me
                }
                .traceparent(),
            ),
            call: Some(inner.clone()),
            open: Some(Open {
                span_id,
                start: SystemTime::now(),
                model,
                attributes: a,
                response_model: None,
                finish: None,
            }),
        }
    }
}

/// What an attempt being recorded has learnt so far.
struct Open {
    span_id: SpanId,
    start: SystemTime,
    model: StringValue,
    attributes: Vec<KeyValue>,
    response_model: Option<StringValue>,
    finish: Option<StringValue>,
}

/// One upstream attempt's span; [`AttemptSpan::finish`] ends it (dropped
/// unfinished, it ends with no outcome).
#[derive(Default)]
pub(crate) struct AttemptSpan {
    /// The `traceparent` sent upstream: this attempt's, or (not recorded) the
    /// call's.
    upstream: Option<Traceparent>,
    /// The call's span, while this attempt is recorded and not yet finished.
    call: Option<Arc<CallInner>>,
    open: Option<Open>,
}

tokio::task_local! {
    /// The `traceparent` of the attempt being sent ([`AttemptSpan::scope`]).
    static UPSTREAM: Option<Traceparent>;
}

impl AttemptSpan {
    /// Runs `fut` (the upstream request) with this attempt's trace context, so
    /// [`traceparent`] names the attempt.
    pub(crate) fn scope<F: std::future::Future>(
        &self,
        fut: F,
    ) -> tokio::task::futures::TaskLocalFuture<Option<Traceparent>, F> {
        UPSTREAM.scope(self.upstream, fut)
    }

    /// Notes the model and finish reason of a whole answer decoded by the gateway.
    pub(crate) fn note_answer(&mut self, model: &str, finish: &str) {
        if let Some(o) = &mut self.open {
            o.response_model = Some(StringValue::from(Arc::<str>::from(model)));
            o.finish = Some(StringValue::from(Arc::<str>::from(finish)));
        }
    }

    /// Notes the model and finish reason of a provider's answer passed through as
    /// it came (read with its usage, [`powertune_dialect::peek_provider_response`]).
    pub(crate) fn note_peeked(&mut self, model: Option<String>, finish: Option<String>) {
        if let Some(o) = &mut self.open {
            o.response_model = model.map(|m| StringValue::from(Arc::<str>::from(m)));
            o.finish = finish.map(|r| StringValue::from(Arc::<str>::from(r)));
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
        let (Some(call), Some(mut o)) = (self.call.take(), self.open.take()) else {
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
                f.response_model = o.response_model.clone();
                f.finish = o.finish.clone();
            }
        }
        let a = &mut o.attributes;
        let status = if ok {
            answer_attrs(
                a,
                Some(usage),
                ttft,
                o.response_model.take(),
                o.finish.take(),
            );
            Status::Unset
        } else {
            a.push(KeyValue::new("error.type", outcome.as_str()));
            Status::error(outcome.as_str())
        };
        if let Some(r) = retry_after {
            a.push(KeyValue::new(
                "powertune.gateway.retry_after",
                r.as_secs_f64(),
            ));
        }
        call.end_attempt(o, status);
    }
}

impl Drop for AttemptSpan {
    fn drop(&mut self) {
        if let (Some(call), Some(o)) = (self.call.take(), self.open.take()) {
            call.end_attempt(o, Status::Unset);
        }
    }
}

/// The W3C `traceparent` of the attempt being sent (inside [`AttemptSpan::scope`]);
/// `None` outside any trace.
pub(crate) fn traceparent() -> Option<Traceparent> {
    UPSTREAM.try_with(|t| *t).ok().flatten()
}

/// A `traceparent` header value (ASCII hex digits and dashes).
#[derive(Clone, Copy)]
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
