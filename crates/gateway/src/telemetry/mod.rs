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
//! (a bad key, a bad body, an unknown model). Export: [`export`].

mod export;

use crate::config::{Provider, TelemetryConfig};
use crate::metrics::Outcome;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{FutureExt as _, SpanKind, Status, TraceContextExt as _, Tracer as _};
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
        let alias = crate::metrics::label(model).into_owned();
        let mut attrs = vec![
            KeyValue::new("gen_ai.operation.name", op),
            KeyValue::new("powertune.gateway.model_alias", alias.clone()),
        ];
        if let Some(c) = class {
            attrs.push(KeyValue::new(
                "powertune.gateway.route_class",
                c.to_string(),
            ));
        }
        let start = SystemTime::now()
            .checked_sub(arrived.elapsed())
            .unwrap_or_else(SystemTime::now);
        let span = tracer
            .span_builder(format!("{op} {alias}"))
            .with_kind(SpanKind::Server)
            .with_start_time(start)
            .with_attributes(attrs)
            .start_with_context(tracer, &parent);
        let cx = parent.with_span(span);
        let recording = cx.span().is_recording();
        CallSpan {
            inner: Some(Arc::new(CallInner {
                cx: cx.clone(),
                tracer: tracer.clone(),
                servers: self.servers.clone(),
                op,
                class: class.map(str::to_string),
                alias,
                recording,
                facts: Mutex::new(Facts::default()),
            })),
            cx,
        }
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

/// What the call span reports when it ends: the last attempt's.
#[derive(Default)]
struct Facts {
    provider: Option<(String, &'static str)>,
    model: Option<String>,
    credential: Option<String>,
    server: Server,
    attempts: u32,
    last: Option<Outcome>,
    ok: bool,
    usage: Option<Usage>,
    ttft: Option<Duration>,
    response_model: Option<String>,
    finish: Option<String>,
    /// The call's cost so far (`[pricing]`), in USD.
    cost_usd: Option<f64>,
}

struct CallInner {
    cx: Context,
    tracer: SdkTracer,
    servers: Arc<Servers>,
    op: &'static str,
    class: Option<String>,
    alias: String,
    recording: bool,
    facts: Mutex<Facts>,
}

impl Drop for CallInner {
    fn drop(&mut self) {
        let span = self.cx.span();
        if !self.recording {
            span.end();
            return;
        }
        let f = self.facts.get_mut();
        let mut a = Vec::with_capacity(16);
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
        if let Some((host, port)) = f.server.take() {
            a.push(KeyValue::new("server.address", host));
            a.push(KeyValue::new("server.port", port));
        }
        a.push(KeyValue::new(
            "powertune.gateway.attempts",
            i64::from(f.attempts),
        ));
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
    response_model: Option<String>,
    finish: Option<String>,
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
            Value::Array(vec![StringValue::from(r)].into()),
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
        self.inner.as_ref().is_some_and(|i| i.recording)
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
        if !inner.recording {
            // sampled out: a span only for its context, passed upstream
            let span = tracer
                .span_builder(inner.op)
                .with_kind(SpanKind::Client)
                .start_with_context(tracer, &inner.cx);
            return AttemptSpan {
                cx: inner.cx.with_span(span),
                ..AttemptSpan::default()
            };
        }
        let p = to.provider;
        let system = system_of(p);
        let server = inner.servers.of(&p.base_url);
        let (number, retry_reason) = {
            let mut f = inner.facts.lock();
            f.attempts += 1;
            f.provider = Some((p.name.clone(), system));
            f.model = Some(to.model.to_string());
            f.credential = Some(to.credential.to_string());
            f.server = server.clone();
            (f.attempts, f.last)
        };
        let mut a = Vec::with_capacity(14);
        {
            a.push(KeyValue::new("gen_ai.operation.name", inner.op));
            a.push(KeyValue::new("gen_ai.provider.name", system));
            a.push(KeyValue::new("gen_ai.request.model", to.model.to_string()));
            a.push(KeyValue::new("powertune.gateway.provider", p.name.clone()));
            a.push(KeyValue::new(
                "powertune.gateway.credential",
                to.credential.to_string(),
            ));
            a.push(KeyValue::new(
                "powertune.gateway.attempt",
                i64::from(number),
            ));
            a.push(KeyValue::new("powertune.gateway.breaker", to.breaker));
            a.push(KeyValue::new(
                "powertune.gateway.model_alias",
                inner.alias.clone(),
            ));
            if let Some(c) = &inner.class {
                a.push(KeyValue::new("powertune.gateway.route_class", c.clone()));
            }
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
            recording: true,
            response_model: None,
            finish: None,
        }
    }
}

/// One upstream attempt's span; [`AttemptSpan::finish`] ends it.
#[derive(Default)]
pub(crate) struct AttemptSpan {
    cx: Context,
    call: Option<Arc<CallInner>>,
    recording: bool,
    response_model: Option<String>,
    finish: Option<String>,
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
        if self.recording {
            self.response_model = Some(model.to_string());
            self.finish = Some(finish.to_string());
        }
    }

    /// Notes the model and finish reason of a provider's answer passed through as
    /// it came (read from its JSON only when the span is recorded).
    pub(crate) fn note_body(&mut self, body: &[u8]) {
        if !self.recording {
            return;
        }
        #[derive(serde::Deserialize)]
        struct Choice {
            finish_reason: Option<String>,
        }
        #[derive(serde::Deserialize)]
        struct Peek {
            model: Option<String>,
            #[serde(default)]
            choices: Vec<Choice>,
            stop_reason: Option<String>,
            done_reason: Option<String>,
        }
        if let Ok(p) = serde_json::from_slice::<Peek>(body) {
            self.response_model = p.model;
            self.finish = p
                .choices
                .into_iter()
                .find_map(|c| c.finish_reason)
                .or(p.stop_reason)
                .or(p.done_reason);
        }
    }

    /// Notes the call's cost so far (`[pricing]`), reported on the call's span.
    pub(crate) fn note_cost(&self, usd: Option<f64>) {
        if let (Some(call), true) = (&self.call, self.recording) {
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
        if self.recording {
            let mut a = Vec::with_capacity(8);
            a.push(KeyValue::new("powertune.gateway.outcome", outcome.as_str()));
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
        }
        span.end();
    }
}

/// The W3C `traceparent` of the trace context in force (an attempt's, inside
/// [`AttemptSpan::scope`]); `None` outside any trace.
pub(crate) fn traceparent() -> Option<String> {
    let cx = Context::current();
    let span = cx.span();
    let sc = span.span_context();
    if !sc.is_valid() {
        return None;
    }
    Some(format!(
        "00-{}-{}-{:02x}",
        sc.trace_id(),
        sc.span_id(),
        sc.trace_flags().to_u8()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn without_export_the_client_context_goes_upstream_as_it_came() {
        let t = Telemetry::new(None).unwrap();
        let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut h = axum::http::HeaderMap::new();
        h.insert("traceparent", incoming.parse().unwrap());
        let call = t.call(&h, std::time::Instant::now(), "chat", "fast", None);
        let p = Provider {
            name: "openai".into(),
            kind: ProviderKind::OpenAi,
            base_url: "http://127.0.0.1:9/v1".into(),
            azure_api_version: None,
            credentials: Vec::new(),
        };
        let at = call.attempt(AttemptTarget {
            provider: &p,
            credential: "a",
            model: "m",
            breaker: "closed",
        });
        let tp = at.scope(async { traceparent() }).await;
        assert_eq!(tp.as_deref(), Some(incoming));
        // no client context: nothing is sent
        let call = t.call(
            &axum::http::HeaderMap::new(),
            std::time::Instant::now(),
            "chat",
            "fast",
            None,
        );
        let at = call.attempt(AttemptTarget {
            provider: &p,
            credential: "a",
            model: "m",
            breaker: "closed",
        });
        assert_eq!(at.scope(async { traceparent() }).await, None);
    }
}
