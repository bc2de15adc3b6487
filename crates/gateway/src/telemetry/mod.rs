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
//! (a bad key, a bad body, an unknown model). A finished call is a [`record`],
//! queued and posted by [`export`], written as protobuf by [`otlp`].

mod export;
mod otlp;
mod record;

use crate::config::{Provider, TelemetryConfig};
use crate::metrics::Outcome;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use opentelemetry::Context;
use opentelemetry_http::HeaderExtractor;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    IdGenerator as _, RandomIdGenerator, SamplingDecision, ShouldSample as _,
};
use parking_lot::Mutex;
use powertune_dialect::{ProviderKind, Usage};
use record::{AttemptRecord, CallRecord, Texts};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The gateway's tracer: exporting when `[telemetry]` is set, otherwise only
/// passing a client's trace context on.
///
/// A recorded call keeps its ids (from the SDK's random id generator), its start
/// time and what its attempts report in one record ([`record`]), handed to the
/// export thread when the call ends; the spans are written there. So a call's
/// spans cost its request thread one sampling decision, a few ids and clock reads,
/// and two allocations (docs/performance.md).
pub struct Telemetry {
    export: Option<Arc<export::Export>>,
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
                stop_wait: Duration::ZERO,
                servers: Arc::default(),
            });
        };
        Ok(Telemetry {
            export: Some(Arc::new(export::build(cfg)?)),
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
        self.export.as_ref().map_or(0, |e| e.dropped())
    }

    /// Spans lost because their export request failed (refused, an error answer,
    /// no answer within `export_timeout`).
    pub fn export_failed(&self) -> u64 {
        self.export.as_ref().map_or(0, |e| e.failed())
    }

    /// Sets (once) whom to tell when exports start failing (`true`, with why) and
    /// when they work again; called on the export thread.
    pub(crate) fn set_listener(&self, l: export::Listener) {
        if let Some(e) = &self.export {
            e.set_listener(l);
        }
    }

    /// Sends what is queued and stops the export thread, waiting at most the export
    /// timeout and a second. Blocking: call it off the async runtime's workers.
    pub fn shutdown(&self) {
        if let Some(e) = &self.export {
            e.shutdown(self.stop_wait);
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
        // costs no record
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
        let mut text = Texts::with_capacity(TEXT_CAPACITY);
        let alias = text.add(&crate::metrics::label(model));
        let class = class.map(|c| text.add(c));
        let trace_state = if sampled.trace_state == TraceState::NONE {
            String::new()
        } else {
            sampled.trace_state.header()
        };
        CallSpan {
            upstream: None,
            inner: Some(Arc::new(CallInner {
                export: export.clone(),
                servers: self.servers.clone(),
                record: Mutex::new(Some(CallRecord {
                    trace_id,
                    span_id,
                    flags: me.flags,
                    trace_state,
                    parent: psc.map(|p| p.span_id()),
                    op,
                    start,
                    end: start,
                    alias,
                    class,
                    started: 0,
                    last: None,
                    cost_usd: None,
                    attempts: Vec::new(),
                    text,
                })),
            })),
        }
    }
}

/// Room for a call's strings (alias, route class, an attempt's provider, model,
/// credential, answer model and finish reason) before its buffer grows.
const TEXT_CAPACITY: usize = 160;

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

/// A recorded call: its record goes to the export thread when the last reference
/// (the call's state, or an attempt still running) goes.
struct CallInner {
    export: Arc<export::Export>,
    servers: Arc<Servers>,
    /// `None` only once sent.
    record: Mutex<Option<CallRecord>>,
}

impl CallInner {
    fn with<R>(&self, f: impl FnOnce(&mut CallRecord) -> R) -> Option<R> {
        self.record.lock().as_mut().map(f)
    }

    /// Adds a finished (or abandoned) attempt.
    fn end_attempt(&self, mut o: AttemptRecord) {
        o.end = SystemTime::now();
        self.with(|r| {
            if let Some(outcome) = o.outcome {
                r.last = Some(outcome);
            }
            r.attempts.push(o);
        });
    }
}

impl Drop for CallInner {
    fn drop(&mut self) {
        if let Some(mut r) = self.record.get_mut().take() {
            r.end = SystemTime::now();
            self.export.send(r);
        }
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
        let not_recorded = || AttemptSpan {
            upstream: self.upstream,
            call: None,
            open: None,
        };
        let Some(inner) = &self.inner else {
            return not_recorded();
        };
        let p = to.provider;
        let span_id = RandomIdGenerator::default().new_span_id();
        let Some((ids, number, retry_reason, provider, model, credential)) = inner.with(|r| {
            r.started += 1;
            let ids = Ids {
                trace_id: r.trace_id,
                span_id,
                flags: r.flags,
            };
            let t = &mut r.text;
            let names = (t.add(&p.name), t.add(to.model), t.add(to.credential));
            (ids, r.started, r.last, names.0, names.1, names.2)
        }) else {
            return not_recorded();
        };
        let start = SystemTime::now();
        AttemptSpan {
            upstream: Some(ids.traceparent()),
            call: Some(inner.clone()),
            open: Some(AttemptRecord {
                span_id,
                start,
                end: start,
                system: system_of(p),
                provider,
                model,
                credential,
                number,
                breaker: to.breaker,
                retry_reason,
                server: inner.servers.of(&p.base_url),
                outcome: None,
                usage: Usage::default(),
                ttft: None,
                response_model: None,
                finish: None,
                retry_after: None,
            }),
        }
    }
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
    open: Option<AttemptRecord>,
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

    /// Notes the model and finish reason of the answer.
    fn note(&mut self, model: Option<&str>, finish: Option<&str>) {
        if let (Some(call), Some(o)) = (&self.call, &mut self.open) {
            call.with(|r| {
                o.response_model = model.map(|m| r.text.add(m));
                o.finish = finish.map(|f| r.text.add(f));
            });
        }
    }

    /// Notes the model and finish reason of a whole answer decoded by the gateway.
    pub(crate) fn note_answer(&mut self, model: &str, finish: &str) {
        self.note(Some(model), Some(finish));
    }

    /// Notes the model and finish reason of a provider's answer passed through as
    /// it came (read with its usage, [`powertune_dialect::peek_provider_response`]).
    pub(crate) fn note_peeked(&mut self, model: Option<String>, finish: Option<String>) {
        self.note(model.as_deref(), finish.as_deref());
    }

    /// Notes the call's cost so far (`[pricing]`), reported on the call's span.
    pub(crate) fn note_cost(&self, usd: Option<f64>) {
        if let Some(call) = &self.call {
            call.with(|r| r.cost_usd = usd);
        }
    }

    /// Ends the attempt with `outcome` (idempotent) and hands what it learnt to the
    /// call's record.
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
        o.outcome = Some(outcome);
        o.usage = usage;
        o.ttft = ttft;
        o.retry_after = retry_after;
        call.end_attempt(o);
    }
}

impl Drop for AttemptSpan {
    fn drop(&mut self) {
        if let (Some(call), Some(o)) = (self.call.take(), self.open.take()) {
            call.end_attempt(o);
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
