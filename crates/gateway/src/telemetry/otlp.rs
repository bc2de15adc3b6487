//! A batch of finished spans as an OTLP `ExportTraceServiceRequest` (protobuf),
//! written straight from the calls' records ([`super::record`]) with prost's
//! wire-format functions.
//!
//! Why not `opentelemetry-otlp`'s conversion: it needs the SDK's `SpanData` (an
//! attribute vector per span, built on the request thread) and first builds the
//! whole request as owned `opentelemetry-proto` structs (a `String` per attribute
//! key and string value, a `Vec` per id), encodes them, then frees them all
//! (docs/performance.md). Here nothing is allocated per span or attribute. The
//! bytes decode to the same message: `tests` compares them with
//! `opentelemetry-proto`'s own conversion of the same spans as `SpanData`.
//!
//! Field numbers are those of `opentelemetry/proto/{collector/trace,trace,common,
//! resource}/v1/*.proto`. As prost does, scalar fields at their default value are
//! left out, and a oneof value or a present sub-message is always written.

use super::record::{CallRecord, Val};
use opentelemetry::trace::{SpanId, SpanKind};
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};
use std::time::{SystemTime, UNIX_EPOCH};

/// The instrumentation scope of every span.
pub(super) const SCOPE: &str = "powertune-gateway";

/// Writes export requests for one resource, a span at a time.
#[derive(Debug)]
pub(super) struct Encoder {
    /// The `Resource` message's body (its attributes).
    resource: Vec<u8>,
    /// One span's body.
    span: Vec<u8>,
    /// The `spans` fields of the request being written.
    spans: Vec<u8>,
    count: usize,
}

/// A buffer larger than this after a request is given back.
const KEEP: usize = 8 << 20;

impl Encoder {
    /// An encoder for the resource `service.name = service_name`.
    pub(super) fn new(service_name: &str) -> Encoder {
        let mut resource = Vec::new();
        put_kv(&mut resource, 1, "service.name", Val::Str(service_name));
        Encoder {
            resource,
            span: Vec::new(),
            spans: Vec::new(),
            count: 0,
        }
    }

    /// Spans added since the last request.
    pub(super) fn len(&self) -> usize {
        self.count
    }

    /// Adds span `i` of `r` to the request being written.
    pub(super) fn add(&mut self, r: &CallRecord, i: usize) {
        self.span.clear();
        put_span(&mut self.span, r, i);
        put_len(&mut self.spans, 2, self.span.len());
        self.spans.extend_from_slice(&self.span);
        self.count += 1;
    }

    /// The request for the spans added (one `ResourceSpans`, with one `ScopeSpans`
    /// when there are any), and a fresh start.
    pub(super) fn request(&mut self) -> Vec<u8> {
        // InstrumentationScope: name = 1; ScopeSpans: scope = 1, spans = 2
        let scope_len = str_len(1, SCOPE.as_bytes());
        let ss_len = len_delim(1, scope_len) + self.spans.len();
        // ResourceSpans: resource = 1, scope_spans = 2
        let mut rs_len = len_delim(1, self.resource.len());
        if self.count > 0 {
            rs_len += len_delim(2, ss_len);
        }
        let mut req = Vec::with_capacity(len_delim(1, rs_len));
        put_len(&mut req, 1, rs_len);
        put_len(&mut req, 1, self.resource.len());
        req.extend_from_slice(&self.resource);
        if self.count > 0 {
            put_len(&mut req, 2, ss_len);
            put_len(&mut req, 1, scope_len);
            put_str(&mut req, 1, SCOPE.as_bytes());
            req.extend_from_slice(&self.spans);
        }
        debug_assert_eq!(req.len(), len_delim(1, rs_len));
        self.spans.clear();
        self.count = 0;
        for b in [&mut self.spans, &mut self.span] {
            if b.capacity() > KEEP {
                *b = Vec::new();
            }
        }
        req
    }
}

/// The OTLP span flags: the W3C trace flags, with "whether the parent is remote is
/// known" (0x100) and "it is" (0x200).
fn flags(trace_flags: u8, parent_remote: bool) -> u32 {
    u32::from(trace_flags) | 0x100 | if parent_remote { 0x200 } else { 0 }
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn kind(k: &SpanKind) -> u64 {
    match k {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

/// `Span`'s body for span `i` of `r`.
fn put_span(buf: &mut Vec<u8>, r: &CallRecord, i: usize) {
    let v = r.span(i);
    put_bytes(buf, 1, &v.trace_id.to_bytes());
    put_bytes(buf, 2, &v.span_id.to_bytes());
    put_str(buf, 3, v.trace_state.as_bytes());
    if let Some(p) = v.parent.filter(|p| *p != SpanId::INVALID) {
        put_bytes(buf, 4, &p.to_bytes());
    }
    let (op, model) = v.name;
    put_len(buf, 5, op.len() + 1 + model.len());
    buf.extend_from_slice(op.as_bytes());
    buf.push(b' ');
    buf.extend_from_slice(model.as_bytes());
    put_uint(buf, 6, kind(&v.kind));
    put_fixed64(buf, 7, nanos(v.start));
    put_fixed64(buf, 8, nanos(v.end));
    r.attributes(i, &mut |k, val| put_kv(buf, 9, k, val));
    // Status: message = 2, code = 3 (unset 0, error 2)
    let (message, code) = v.error.map_or(("", 0), |d| (d, 2));
    put_len(buf, 15, str_len(2, message.as_bytes()) + uint_len(3, code));
    put_str(buf, 2, message.as_bytes());
    put_uint(buf, 3, code);
    put_fixed32(buf, 16, flags(v.flags.to_u8(), v.parent_remote));
}

/// `AnyValue`'s body: string = 1, int = 3, double = 4, array = 5 (an
/// `ArrayValue`, values = 1).
fn any_len(v: Val<'_>) -> usize {
    match v {
        Val::Str(s) => len_delim(1, s.len()),
        // int64 is written as the 64-bit two's complement varint
        Val::Int(i) => key_len(3) + encoded_len_varint(i as u64),
        Val::F64(_) => key_len(4) + 8,
        Val::List(s) => len_delim(5, len_delim(1, len_delim(1, s.len()))),
    }
}

fn put_any(buf: &mut Vec<u8>, v: Val<'_>) {
    match v {
        Val::Str(s) => {
            put_len(buf, 1, s.len());
            buf.extend_from_slice(s.as_bytes());
        }
        Val::Int(i) => {
            encode_key(3, WireType::Varint, buf);
            encode_varint(i as u64, buf);
        }
        Val::F64(d) => {
            encode_key(4, WireType::SixtyFourBit, buf);
            buf.extend_from_slice(&d.to_bits().to_le_bytes());
        }
        Val::List(s) => {
            put_len(buf, 5, len_delim(1, len_delim(1, s.len())));
            put_len(buf, 1, len_delim(1, s.len()));
            put_len(buf, 1, s.len());
            buf.extend_from_slice(s.as_bytes());
        }
    }
}

/// A `KeyValue` (key = 1, value = 2, always present) as field `tag`.
fn put_kv(buf: &mut Vec<u8>, tag: u32, key: &str, v: Val<'_>) {
    let any = any_len(v);
    put_len(buf, tag, str_len(1, key.as_bytes()) + len_delim(2, any));
    put_str(buf, 1, key.as_bytes());
    put_len(buf, 2, any);
    put_any(buf, v);
}

/// A length-delimited field of `len` bytes, whole.
fn len_delim(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

/// The key and length of a length-delimited field; its `len` bytes follow.
fn put_len(buf: &mut Vec<u8>, tag: u32, len: usize) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
}

fn str_len(tag: u32, s: &[u8]) -> usize {
    if s.is_empty() {
        0
    } else {
        len_delim(tag, s.len())
    }
}

/// A string or bytes field (left out when empty).
fn put_str(buf: &mut Vec<u8>, tag: u32, s: &[u8]) {
    if !s.is_empty() {
        put_len(buf, tag, s.len());
        buf.extend_from_slice(s);
    }
}

fn put_bytes(buf: &mut Vec<u8>, tag: u32, b: &[u8]) {
    put_str(buf, tag, b);
}

fn uint_len(tag: u32, v: u64) -> usize {
    if v == 0 {
        0
    } else {
        key_len(tag) + encoded_len_varint(v)
    }
}

fn put_uint(buf: &mut Vec<u8>, tag: u32, v: u64) {
    if v != 0 {
        encode_key(tag, WireType::Varint, buf);
        encode_varint(v, buf);
    }
}

fn put_fixed64(buf: &mut Vec<u8>, tag: u32, v: u64) {
    if v != 0 {
        encode_key(tag, WireType::SixtyFourBit, buf);
        buf.extend_from_slice(&v.to_le_bytes());
    }
}

fn put_fixed32(buf: &mut Vec<u8>, tag: u32, v: u32) {
    if v != 0 {
        encode_key(tag, WireType::ThirtyTwoBit, buf);
        buf.extend_from_slice(&v.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::super::record::{AttemptRecord, Texts};
    use super::*;
    use crate::metrics::Outcome;
    use opentelemetry::trace::{SpanContext, Status, TraceFlags, TraceId};
    use opentelemetry::{InstrumentationScope, KeyValue, StringValue, Value};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
    use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
    use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
    use opentelemetry_sdk::Resource;
    use powertune_dialect::Usage;
    use proptest::prelude::*;
    use prost::Message as _;
    use std::sync::Arc;
    use std::time::Duration;

    /// Span `i` of `r` as the SDK's finished span, attribute for attribute.
    fn span_data(r: &CallRecord, i: usize) -> SpanData {
        let v = r.span(i);
        let mut attributes = Vec::new();
        r.attributes(i, &mut |k, val| {
            let value = match val {
                Val::Str(s) => Value::from(s.to_string()),
                Val::Int(n) => Value::I64(n),
                Val::F64(d) => Value::F64(d),
                Val::List(s) => Value::Array(vec![StringValue::from(s.to_string())].into()),
            };
            attributes.push(KeyValue::new(k, value));
        });
        SpanData {
            span_context: SpanContext::new(
                v.trace_id,
                v.span_id,
                v.flags,
                false,
                v.trace_state.parse().unwrap_or_default(),
            ),
            parent_span_id: v.parent.unwrap_or(SpanId::INVALID),
            parent_span_is_remote: v.parent_remote,
            span_kind: v.kind,
            name: format!("{} {}", v.name.0, v.name.1).into(),
            start_time: v.start,
            end_time: v.end,
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: v.error.map_or(Status::Unset, Status::error),
            instrumentation_scope: InstrumentationScope::builder(SCOPE).build(),
        }
    }

    /// What `opentelemetry-proto`'s own conversion makes of `records`' spans.
    fn theirs(records: &[CallRecord], service: &str) -> ExportTraceServiceRequest {
        let resource = Resource::builder_empty()
            .with_attribute(KeyValue::new("service.name", service.to_string()))
            .build();
        let spans = records
            .iter()
            .flat_map(|r| (0..r.spans()).map(|i| span_data(r, i)))
            .collect();
        ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(
                spans,
                &ResourceAttributesWithSchema::from(&resource),
            ),
        }
    }

    fn ours(e: &mut Encoder, records: &[CallRecord]) -> ExportTraceServiceRequest {
        for r in records {
            for i in 0..r.spans() {
                e.add(r, i);
            }
        }
        assert_eq!(
            e.len(),
            records.iter().map(CallRecord::spans).sum::<usize>()
        );
        let req = ExportTraceServiceRequest::decode(&e.request()[..]).expect("our bytes decode");
        assert_eq!(e.len(), 0);
        req
    }

    fn at(ns: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(ns)
    }

    #[test]
    fn a_gateway_batch_decodes_to_the_libraries_own_conversion() {
        // a retried call that came with the client's context, one refused before
        // any attempt, and one whose attempt ended without an outcome
        let mut r = CallRecord::sample("fast");
        r.parent = Some(SpanId::from(0x1122_3344_5566_7788));
        r.trace_state = "vendor=a,other=b".into();
        r.class = Some(r.text.add("interactive"));
        let failed = r.attempt(Some(Outcome::ServerError));
        failed.retry_after = Some(Duration::from_millis(1500));
        failed.server = Some((Arc::from("127.0.0.1"), 443));
        let (model, finish) = (r.text.add("gpt-4o-mini-2024-07-18"), r.text.add("stop"));
        let ok = r.attempt(Some(Outcome::Ok));
        ok.retry_reason = Some(Outcome::ServerError);
        ok.breaker = "half_open";
        ok.usage = Usage {
            input: 12,
            output: u64::MAX,
        };
        ok.ttft = Some(Duration::from_micros(20_500));
        ok.response_model = Some(model);
        ok.finish = Some(finish);
        r.cost_usd = Some(0.000_123);
        let mut refused = CallRecord::sample("");
        refused.flags = TraceFlags::default();
        let mut unfinished = CallRecord::sample("slow");
        unfinished.attempt(None);
        let batch = [r, refused, unfinished];
        let mut e = Encoder::new("powertune-gateway");
        assert_eq!(ours(&mut e, &batch), theirs(&batch, "powertune-gateway"));
    }

    #[test]
    fn spans_of_every_length_size_decode_alike() {
        // spans whose length takes one byte, two and three (20 kB), twice over the
        // buffers kept from one request to the next
        let batch: Vec<CallRecord> = [0, 300, 20_000]
            .into_iter()
            .map(|n| CallRecord::sample(&"x".repeat(n)))
            .collect();
        let mut e = Encoder::new("");
        for _ in 0..2 {
            assert_eq!(ours(&mut e, &batch), theirs(&batch, ""));
        }
    }

    #[test]
    fn an_empty_batch_is_one_resource_with_no_scopes() {
        let mut e = Encoder::new("gw");
        assert_eq!(ours(&mut e, &[]), theirs(&[], "gw"));
    }

    fn outcome() -> impl Strategy<Value = Option<Outcome>> {
        proptest::option::of(proptest::sample::select(Outcome::ALL.to_vec()))
    }

    /// An attempt's fields, its texts owned.
    type AttemptSpec = (
        Vec<String>,
        (u32, Option<Outcome>, Option<Outcome>),
        Option<(String, i64)>,
        (u64, u64),
        (Option<u64>, Option<u64>, bool),
        (u32, u32),
    );

    fn any_attempt() -> impl Strategy<Value = AttemptSpec> {
        (
            proptest::collection::vec(".{0,24}", 5),
            (1_u32..6, outcome(), outcome()),
            proptest::option::of(("[a-z0-9.:]{0,20}", any::<i64>())),
            (any::<u64>(), any::<u64>()),
            (
                proptest::option::of(0_u64..10_000_000_000),
                proptest::option::of(0_u64..100_000_000_000),
                any::<bool>(),
            ),
            (any::<u32>(), any::<u32>()),
        )
    }

    fn build_attempt(t: &mut Texts, a: AttemptSpec) -> AttemptRecord {
        let (names, (number, outcome, reason), server, usage, (ttft, after, answered), times) = a;
        AttemptRecord {
            span_id: SpanId::from(u64::from(number) << 32 | u64::from(times.0)),
            start: at(u64::from(times.0)),
            end: at(u64::from(times.0) + u64::from(times.1)),
            system: "anthropic",
            provider: t.add(&names[0]),
            model: t.add(&names[1]),
            credential: t.add(&names[2]),
            number,
            breaker: "closed",
            retry_reason: reason,
            server: server.map(|(h, p)| (Arc::from(h), p)),
            outcome,
            usage: Usage {
                input: usage.0,
                output: usage.1,
            },
            ttft: ttft.map(Duration::from_nanos),
            response_model: answered.then(|| t.add(&names[3])),
            finish: answered.then(|| t.add(&names[4])),
            retry_after: after.map(Duration::from_nanos),
        }
    }

    fn any_call() -> impl Strategy<Value = CallRecord> {
        (
            proptest::collection::vec(any_attempt(), 0..4),
            (".{0,40}", proptest::option::of(".{0,16}")),
            (
                any::<u128>(),
                any::<u64>(),
                proptest::option::of(any::<u64>()),
            ),
            (
                any::<bool>(),
                outcome(),
                proptest::option::of(-1e6_f64..1e6),
            ),
            "([a-z]{1,8}=[a-z0-9]{1,8})?",
        )
            .prop_map(
                |(
                    attempts,
                    (alias, class),
                    (trace, span, parent),
                    (sampled, last, cost),
                    state,
                )| {
                    let mut t = Texts::default();
                    let attempts: Vec<AttemptRecord> = attempts
                        .into_iter()
                        .map(|a| build_attempt(&mut t, a))
                        .collect();
                    CallRecord {
                        trace_id: TraceId::from(trace),
                        span_id: SpanId::from(span),
                        flags: TraceFlags::default().with_sampled(sampled),
                        trace_state: state,
                        parent: parent.map(SpanId::from),
                        op: "embeddings",
                        start: at(1),
                        end: at(2),
                        alias: t.add(&alias),
                        class: class.map(|c| t.add(&c)),
                        started: u32::try_from(attempts.len()).unwrap_or(0),
                        last,
                        cost_usd: cost,
                        attempts,
                        text: t,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn any_calls_decode_to_the_libraries_own_conversion(
            calls in proptest::collection::vec(any_call(), 0..4),
            service in ".{0,16}",
        ) {
            let mut e = Encoder::new(&service);
            prop_assert_eq!(ours(&mut e, &calls), theirs(&calls, &service));
        }
    }
}
