//! What a recorded call hands the export thread when it ends: one record with its
//! attempts, in typed fields and one text buffer. No attribute list is built on the
//! request thread; the export thread writes the spans from the record ([`super::otlp`]),
//! walking each span's attributes in [`CallRecord::attributes`].

use crate::metrics::Outcome;
use opentelemetry::trace::{SpanId, SpanKind, TraceFlags, TraceId};
use powertune_dialect::Usage;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// A piece of a record's [`Texts`].
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Txt {
    at: usize,
    len: usize,
}

/// A call's strings, one after the other in one buffer (one allocation per call).
#[derive(Debug, Default)]
pub(super) struct Texts(String);

impl Texts {
    pub(super) fn with_capacity(n: usize) -> Texts {
        Texts(String::with_capacity(n))
    }

    pub(super) fn add(&mut self, s: &str) -> Txt {
        let at = self.0.len();
        self.0.push_str(s);
        Txt { at, len: s.len() }
    }

    pub(super) fn get(&self, t: Txt) -> &str {
        self.0.get(t.at..t.at + t.len).unwrap_or_default()
    }
}

/// One upstream attempt, as it ended.
#[derive(Debug)]
pub(super) struct AttemptRecord {
    pub(super) span_id: SpanId,
    pub(super) start: SystemTime,
    pub(super) end: SystemTime,
    /// `gen_ai.provider.name`.
    pub(super) system: &'static str,
    pub(super) provider: Txt,
    pub(super) model: Txt,
    pub(super) credential: Txt,
    /// 1, 2, … in the order the call's attempts started.
    pub(super) number: u32,
    pub(super) breaker: &'static str,
    pub(super) retry_reason: Option<Outcome>,
    /// `server.address` and `server.port`.
    pub(super) server: Option<(Arc<str>, i64)>,
    /// `None`: it ended without an outcome (dropped unfinished).
    pub(super) outcome: Option<Outcome>,
    pub(super) usage: Usage,
    pub(super) ttft: Option<Duration>,
    pub(super) response_model: Option<Txt>,
    pub(super) finish: Option<Txt>,
    pub(super) retry_after: Option<Duration>,
}

/// A client call and its attempts: `attempts.len() + 1` spans.
#[derive(Debug)]
pub(super) struct CallRecord {
    pub(super) trace_id: TraceId,
    pub(super) span_id: SpanId,
    pub(super) flags: TraceFlags,
    /// The W3C `tracestate` the call continues ("" for none).
    pub(super) trace_state: String,
    /// The client's span, when it sent a valid `traceparent`.
    pub(super) parent: Option<SpanId>,
    /// `chat` or `embeddings`.
    pub(super) op: &'static str,
    pub(super) start: SystemTime,
    pub(super) end: SystemTime,
    pub(super) alias: Txt,
    pub(super) class: Option<Txt>,
    /// Attempts started (each holds the call until it ends, so all are in
    /// `attempts` when the call's record is sent).
    pub(super) started: u32,
    /// The last finished attempt's outcome.
    pub(super) last: Option<Outcome>,
    pub(super) cost_usd: Option<f64>,
    pub(super) attempts: Vec<AttemptRecord>,
    pub(super) text: Texts,
}

/// An attribute's value, borrowed from its record.
#[derive(Clone, Copy, Debug)]
pub(super) enum Val<'a> {
    Str(&'a str),
    Int(i64),
    F64(f64),
    /// A one-element string array.
    List(&'a str),
}

/// One span of a record, but its attributes.
#[derive(Debug)]
pub(super) struct SpanView<'a> {
    pub(super) trace_id: TraceId,
    pub(super) span_id: SpanId,
    pub(super) parent: Option<SpanId>,
    pub(super) parent_remote: bool,
    pub(super) flags: TraceFlags,
    pub(super) trace_state: &'a str,
    pub(super) kind: SpanKind,
    /// `{op} {model}`, in two pieces.
    pub(super) name: (&'static str, &'a str),
    pub(super) start: SystemTime,
    pub(super) end: SystemTime,
    /// The error status's description (`None`: status unset).
    pub(super) error: Option<&'static str>,
}

fn tokens(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl AttemptRecord {
    /// Its `error.type` and error status: the outcome, unless it answered or ended
    /// without one.
    fn error(&self) -> Option<&'static str> {
        self.outcome
            .filter(|o| *o != Outcome::Ok)
            .map(Outcome::as_str)
    }
}

impl CallRecord {
    /// How many spans the record holds: its attempts', then the call's own.
    pub(super) fn spans(&self) -> usize {
        self.attempts.len() + 1
    }

    /// The attempt whose answer the call returned.
    fn answered(&self) -> Option<&AttemptRecord> {
        self.attempts
            .iter()
            .rev()
            .find(|a| a.outcome == Some(Outcome::Ok))
    }

    /// The call's `error.type` and error status when no attempt answered: the last
    /// attempt's outcome, or `no_credential` when none was made.
    fn error(&self) -> Option<&'static str> {
        match self.answered() {
            Some(_) => None,
            None => Some(self.last.map_or("no_credential", Outcome::as_str)),
        }
    }

    /// The attempt started last (the call reports its provider and credential).
    fn latest(&self) -> Option<&AttemptRecord> {
        self.attempts.iter().max_by_key(|a| a.number)
    }

    /// Span `i` (`0..spans()`): an attempt's, the last one the call's.
    pub(super) fn span(&self, i: usize) -> SpanView<'_> {
        let common = |span_id, parent, parent_remote, kind, name, start, end, error| SpanView {
            trace_id: self.trace_id,
            span_id,
            parent,
            parent_remote,
            flags: self.flags,
            trace_state: &self.trace_state,
            kind,
            name,
            start,
            end,
            error,
        };
        match self.attempts.get(i) {
            Some(a) => common(
                a.span_id,
                Some(self.span_id),
                false,
                SpanKind::Client,
                (self.op, self.text.get(a.model)),
                a.start,
                a.end,
                a.error(),
            ),
            None => common(
                self.span_id,
                self.parent,
                self.parent.is_some(),
                SpanKind::Server,
                (self.op, self.text.get(self.alias)),
                self.start,
                self.end,
                self.error(),
            ),
        }
    }

    /// Calls `f` with each attribute of span `i`, in order.
    pub(super) fn attributes(&self, i: usize, f: &mut impl FnMut(&'static str, Val<'_>)) {
        let t = |x: Txt| Val::Str(self.text.get(x));
        f("gen_ai.operation.name", Val::Str(self.op));
        let Some(a) = self.attempts.get(i) else {
            f("powertune.gateway.model_alias", t(self.alias));
            if let Some(c) = self.class {
                f("powertune.gateway.route_class", t(c));
            }
            if let Some(a) = self.latest() {
                f("gen_ai.provider.name", Val::Str(a.system));
                f("powertune.gateway.provider", t(a.provider));
                f("gen_ai.request.model", t(a.model));
                f("powertune.gateway.credential", t(a.credential));
            }
            f(
                "powertune.gateway.retries",
                Val::Int(i64::from(self.started.saturating_sub(1))),
            );
            if let Some(a) = self.answered() {
                self.answer(a, f);
            }
            if let Some(usd) = self.cost_usd {
                f("powertune.gateway.cost_usd", Val::F64(usd));
            }
            if let Some(why) = self.error() {
                f("error.type", Val::Str(why));
            }
            return;
        };
        f("gen_ai.provider.name", Val::Str(a.system));
        f("gen_ai.request.model", t(a.model));
        f("powertune.gateway.provider", t(a.provider));
        f("powertune.gateway.credential", t(a.credential));
        f("powertune.gateway.attempt", Val::Int(i64::from(a.number)));
        f("powertune.gateway.breaker", Val::Str(a.breaker));
        if let Some(r) = a.retry_reason {
            f("powertune.gateway.retry_reason", Val::Str(r.as_str()));
        }
        if let Some((host, port)) = &a.server {
            f("server.address", Val::Str(host));
            f("server.port", Val::Int(*port));
        }
        if a.outcome == Some(Outcome::Ok) {
            self.answer(a, f);
        }
        if let Some(why) = a.error() {
            f("error.type", Val::Str(why));
        }
        if let Some(r) = a.retry_after {
            f("powertune.gateway.retry_after", Val::F64(r.as_secs_f64()));
        }
    }

    /// The attributes of an answer.
    fn answer(&self, a: &AttemptRecord, f: &mut impl FnMut(&'static str, Val<'_>)) {
        f("gen_ai.usage.input_tokens", Val::Int(tokens(a.usage.input)));
        f(
            "gen_ai.usage.output_tokens",
            Val::Int(tokens(a.usage.output)),
        );
        if let Some(t) = a.ttft {
            f(
                "gen_ai.response.time_to_first_chunk",
                Val::F64(t.as_secs_f64()),
            );
        }
        if let Some(m) = a.response_model {
            f("gen_ai.response.model", Val::Str(self.text.get(m)));
        }
        if let Some(r) = a.finish {
            f(
                "gen_ai.response.finish_reasons",
                Val::List(self.text.get(r)),
            );
        }
    }
}

#[cfg(test)]
impl CallRecord {
    /// A sampled `chat` call for `alias` at a fixed time, with no attempt.
    pub(super) fn sample(alias: &str) -> CallRecord {
        let at = |ns| std::time::UNIX_EPOCH + Duration::from_nanos(ns);
        let mut text = Texts::default();
        CallRecord {
            trace_id: TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736_u128),
            span_id: SpanId::from(0x00f0_67aa_0ba9_02b7_u64),
            flags: TraceFlags::SAMPLED,
            trace_state: String::new(),
            parent: None,
            op: "chat",
            start: at(1_764_979_200_123_456_789),
            end: at(1_764_979_200_125_456_789),
            alias: text.add(alias),
            class: None,
            started: 0,
            last: None,
            cost_usd: None,
            attempts: Vec::new(),
            text,
        }
    }

    /// Adds the call's next attempt, to `openai` `gpt-4o-mini` with credential
    /// `primary`, ended with `outcome`.
    pub(super) fn attempt(&mut self, outcome: Option<Outcome>) -> &mut AttemptRecord {
        self.started += 1;
        if outcome.is_some() {
            self.last = outcome;
        }
        let start = self.start + Duration::from_micros(100);
        let a = AttemptRecord {
            span_id: SpanId::from(0x1000 + u64::from(self.started)),
            start,
            end: start + Duration::from_millis(1),
            system: "openai",
            provider: self.text.add("openai"),
            model: self.text.add("gpt-4o-mini"),
            credential: self.text.add("primary"),
            number: self.started,
            breaker: "closed",
            retry_reason: None,
            server: None,
            outcome,
            usage: Usage::default(),
            ttft: None,
            response_model: None,
            finish: None,
            retry_after: None,
        };
        self.attempts.push(a);
        let last = self.attempts.len() - 1;
        &mut self.attempts[last]
    }
}
