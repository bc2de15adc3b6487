//! OTLP/protobuf `ExportTraceServiceRequest` bodies as the receiver reads them: the
//! zero-copy wire reader of `POST /v1/traces` (`powertune_apm::wire::read_request`)
//! and the full prost decode of the gRPC service and `apm analyze`
//! (`decode_protobuf` + `to_spans`).

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};
use powertune_apm::decode::{decode_json, decode_protobuf, to_spans};
use powertune_apm::wire::read_request;
use proptest::prelude::*;
use prost::Message;

const TARGET: &str = "otlp_protobuf";

/// Field keys and varints that matter to the wire format.
static TOKENS: &[&[u8]] = &[
    b"\x0a",                                         // field 1, length-delimited
    b"\x12",                                         // field 2, length-delimited
    b"\x0a\xff\xff\xff\xff\x0f",                     // a 4 GiB claimed length
    b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\x7f",     // a 2^63 claimed length
    b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", // an 11-byte varint
    b"\x0b",                                         // start group (deprecated)
    b"\x0c",                                         // end group
    b"\x0f",                                         // wire type 7
    b"\x39\x00\x00\x00\x00\x00\x00\x00\x00",         // fixed64 start time
    b"\x41\xff\xff\xff\xff\xff\xff\xff\xff",         // fixed64 end time, u64::MAX
    b"\x2a\x00",                                     // empty name
    b"\x2a\x02\xc3\x28",                             // invalid UTF-8 name
    b"\x0a\x10",                                     // a 16-byte trace id follows
    b"\x12\x08",                                     // an 8-byte span id follows
];

/// Reads `input` both ways; neither panics, the wire reader keeps nothing on an
/// error, and a body holds no more spans than it has bytes for.
pub fn check(input: &[u8]) {
    let (mut ok, mut bad) = (Vec::new(), Vec::new());
    let wire = read_request(input, &mut ok, &mut bad);
    match &wire {
        Ok(()) => assert!(
            ok.len() + bad.len() <= input.len() / 2,
            "{} spans from {} bytes",
            ok.len() + bad.len(),
            input.len()
        ),
        Err(e) => {
            assert!(ok.is_empty() && bad.is_empty(), "spans kept after {e}");
            assert!(!e.to_string().is_empty());
        }
    }
    if let Ok(req) = decode_protobuf(input) {
        let (full_ok, full_bad) = to_spans(&req);
        // Both accept the body: they find the same spans. (Only the count: the wire
        // reader skips fields it does not read, and a singular field sent twice is
        // merged by prost but read once by the wire reader.)
        if wire.is_ok() {
            assert_eq!(ok.len() + bad.len(), full_ok.len() + full_bad.len());
        }
        // What the forwarder sends on is readable again.
        let again = req.encode_to_vec();
        let (mut ok2, mut bad2) = (Vec::new(), Vec::new());
        read_request(&again, &mut ok2, &mut bad2).unwrap();
        assert_eq!(ok2.len() + bad2.len(), full_ok.len() + full_bad.len());
    }
}

#[test]
fn corpus_replays_cleanly() {
    super::replay(TARGET, 5, check);
}

#[test]
fn json_corpus_encoded_as_protobuf_replays_cleanly() {
    // Every accepted OTLP/JSON seed, as the protobuf body an SDK would send.
    let mut n = 0;
    for seed in super::seeds("otlp_json") {
        if let Ok(req) = decode_json(&seed) {
            let body = req.encode_to_vec();
            check(&body);
            let (mut ok, mut bad) = (Vec::new(), Vec::new());
            read_request(&body, &mut ok, &mut bad).unwrap();
            assert_eq!((ok, bad), to_spans(&req));
            n += 1;
        }
    }
    assert!(n >= 3, "only {n} OTLP/JSON seeds decode");
}

/// A claimed length far past the body is refused without allocating for it.
#[test]
fn claimed_lengths_past_the_body_are_refused() {
    for body in [
        &b"\x0a\xff\xff\xff\xff\x0f"[..],
        b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\x7f\x00",
        b"\x0a\x05\x12\x7f\x12",
        b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
    ] {
        let (mut ok, mut bad) = (Vec::new(), Vec::new());
        assert!(read_request(body, &mut ok, &mut bad).is_err(), "{body:?}");
        assert!(decode_protobuf(body).is_err(), "{body:?}");
        assert!(ok.capacity() < 1024);
    }
}

fn any_value(depth: u32) -> impl Strategy<Value = AnyValue> {
    let leaf = prop_oneof![
        ".{0,16}".prop_map(any_value::Value::StringValue),
        any::<bool>().prop_map(any_value::Value::BoolValue),
        any::<i64>().prop_map(any_value::Value::IntValue),
        prop_oneof![any::<f64>(), Just(0.0), Just(-0.0), Just(f64::MAX)]
            .prop_map(any_value::Value::DoubleValue),
        proptest::collection::vec(any::<u8>(), 0..8).prop_map(any_value::Value::BytesValue),
    ]
    .prop_map(|v| AnyValue { value: Some(v) });
    leaf.prop_recursive(depth, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(|values| AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue { values }))
            }),
            proptest::collection::vec((key(), inner), 0..4).prop_map(|kv| AnyValue {
                value: Some(any_value::Value::KvlistValue(KeyValueList {
                    values: kv
                        .into_iter()
                        .map(|(key, value)| KeyValue {
                            key,
                            value: Some(value),
                            ..Default::default()
                        })
                        .collect()
                }))
            }),
            Just(AnyValue { value: None }),
        ]
    })
}

/// Attribute keys the analysis reads, and others.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(
            &[
                "http.route",
                "http.request.method",
                "http.method",
                "http.response.status_code",
                "http.status_code",
                "url.path",
                "db.system",
                "db.system.name",
                "db.query.text",
                "db.statement",
                "messaging.system",
                "code.function",
                "gen_ai.system",
                "gen_ai.usage.input_tokens",
                "service.name",
                "",
            ][..]
        )
        .prop_map(str::to_string),
        ".{0,12}",
    ]
}

fn attrs() -> impl Strategy<Value = Vec<KeyValue>> {
    proptest::collection::vec((key(), any_value(2)), 0..6).prop_map(|kv| {
        kv.into_iter()
            .map(|(key, value)| KeyValue {
                key,
                value: Some(value),
                ..Default::default()
            })
            .collect()
    })
}

fn id(len: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => proptest::collection::vec(any::<u8>(), len),
        1 => Just(vec![0; len]),
        1 => proptest::collection::vec(any::<u8>(), 0..24),
    ]
}

fn time() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => 1_700_000_000_000_000_000u64..1_700_000_100_000_000_000,
        1 => any::<u64>(),
        1 => Just(0u64),
        1 => Just(u64::MAX),
    ]
}

fn span() -> impl Strategy<Value = Span> {
    (
        (id(16), id(8), prop_oneof![Just(Vec::new()), id(8)]),
        ".{0,24}",
        -1i32..7,
        (time(), time()),
        attrs(),
        proptest::option::of((-1i32..4, ".{0,8}")),
        proptest::collection::vec((id(16), id(8), attrs()), 0..3),
        proptest::collection::vec((time(), ".{0,8}", attrs()), 0..3),
    )
        .prop_map(
            |(
                (trace_id, span_id, parent_span_id),
                name,
                kind,
                (start, end),
                attributes,
                status,
                links,
                events,
            )| Span {
                trace_id,
                span_id,
                parent_span_id,
                name,
                kind,
                start_time_unix_nano: start,
                end_time_unix_nano: end,
                attributes,
                status: status.map(|(code, message)| Status { code, message }),
                links: links
                    .into_iter()
                    .map(|(trace_id, span_id, attributes)| span::Link {
                        trace_id,
                        span_id,
                        attributes,
                        ..Default::default()
                    })
                    .collect(),
                events: events
                    .into_iter()
                    .map(|(time_unix_nano, name, attributes)| span::Event {
                        time_unix_nano,
                        name,
                        attributes,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            },
        )
}

/// Requests as an SDK could build them, valid protobuf by construction.
pub fn request() -> impl Strategy<Value = ExportTraceServiceRequest> {
    proptest::collection::vec(
        (
            attrs(),
            proptest::collection::vec((".{0,8}", proptest::collection::vec(span(), 0..4)), 0..3),
        ),
        0..3,
    )
    .prop_map(|rs| ExportTraceServiceRequest {
        resource_spans: rs
            .into_iter()
            .map(|(attributes, scopes)| ResourceSpans {
                resource: Some(Resource {
                    attributes,
                    ..Default::default()
                }),
                scope_spans: scopes
                    .into_iter()
                    .map(|(name, spans)| ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name,
                            ..Default::default()
                        }),
                        spans,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
            .collect(),
    })
}

proptest! {
    #![proptest_config(powertune_fuzz::config(1500))]

    #[test]
    fn mutated_corpus_never_panics(input in powertune_fuzz::mutated(super::seeds(TARGET), TOKENS)) {
        check(&input);
    }

    /// A well-formed request reads the same through the wire reader as through the
    /// full decode, span for span.
    #[test]
    fn generated_requests_read_the_same_both_ways(req in request()) {
        let body = req.encode_to_vec();
        let (mut ok, mut bad) = (Vec::new(), Vec::new());
        read_request(&body, &mut ok, &mut bad).unwrap();
        let n: usize = req.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum();
        prop_assert_eq!(ok.len() + bad.len(), n);
        prop_assert_eq!((ok, bad), to_spans(&req));
        check(&body);
    }
}
