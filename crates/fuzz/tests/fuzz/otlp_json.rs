//! OTLP/JSON bodies (`POST /v1/traces` with `application/json`) and files (`apm
//! analyze`: one request, or one request per line, read as a stream by
//! `collect::file::analyze_reader` into the analysis engine).

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use powertune_apm::collect::file::analyze_reader;
use powertune_apm::decode::{decode_json, for_each_json_request, to_spans};
use powertune_apm::wire::read_request;
use powertune_apm::{Engine, EngineConfig};
use powertune_core::Targets;
use proptest::prelude::*;
use prost::Message;

const TARGET: &str = "otlp_json";

static TOKENS: &[&[u8]] = &[
    b"\"resourceSpans\":[",
    b"\"scopeSpans\":[",
    b"\"spans\":[",
    b"{\"traceId\":\"5b8efff798038103d269b633813fc60c\",\"spanId\":\"eee19b7ec3c1b174\"}",
    b"\"traceId\":\"\"",
    b"\"spanId\":\"zz\"",
    b"\"startTimeUnixNano\":\"18446744073709551615\"",
    b"\"endTimeUnixNano\":-1",
    b"\"intValue\":\"99999999999999999999\"",
    b"\"doubleValue\":\"NaN\"",
    b"\"kvlistValue\":{\"values\":[",
    b"\"arrayValue\":{\"values\":[",
    b"\"bytesValue\":\"!!\"",
    b"\"kind\":2147483648",
    b"\"status\":{\"code\":-1}",
];

/// Decodes `input` as a body and as a file; a decoded request re-encoded as
/// protobuf (what the forwarder sends) reads back through the wire reader.
pub fn check(input: &[u8]) {
    if let Ok(req) = decode_json(input) {
        let (ok, bad) = to_spans(&req);
        let body = req.encode_to_vec();
        let (mut ok2, mut bad2) = (Vec::new(), Vec::new());
        read_request(&body, &mut ok2, &mut bad2).unwrap();
        assert_eq!((ok, bad), (ok2, bad2));
    }
    let text = super::text(input);
    let mut requests = 0;
    let r = for_each_json_request(&text, "fuzz.json", |req| {
        let _ = to_spans(&req);
        requests += 1;
    });
    if let Ok(n) = r {
        assert_eq!(n, requests);
        assert!(n <= text.lines().count().max(1));
    }
    let mut engine = Engine::new(EngineConfig::defaults(&Targets::default()));
    if let Err(e) = analyze_reader(input, "fuzz.json", &mut engine) {
        assert!(e.to_string().contains("fuzz.json"), "{e}");
    }
}

#[test]
fn corpus_replays_cleanly() {
    super::replay(TARGET, 5, check);
}

static KEYS: &[&str] = &[
    "resourceSpans",
    "scopeSpans",
    "spans",
    "resource",
    "attributes",
    "key",
    "value",
    "stringValue",
    "intValue",
    "doubleValue",
    "boolValue",
    "arrayValue",
    "kvlistValue",
    "values",
    "traceId",
    "spanId",
    "parentSpanId",
    "name",
    "kind",
    "startTimeUnixNano",
    "endTimeUnixNano",
    "status",
    "code",
    "links",
    "events",
];

static STRINGS: &[&str] = &[
    "5b8efff798038103d269b633813fc60c",
    "eee19b7ec3c1b174",
    "1700000000000000000",
    "18446744073709551616",
    "-1",
    "GET /api/v1/users/:id",
    "",
];

proptest! {
    #![proptest_config(powertune_fuzz::config(6000))]

    #[test]
    fn mutated_corpus_never_panics(input in powertune_fuzz::mutated(super::seeds(TARGET), TOKENS)) {
        check(&input);
    }

    /// JSON shaped like OTLP with any values in any place.
    #[test]
    fn generated_json_never_panics(v in powertune_fuzz::json_value(KEYS, STRINGS, 8)) {
        let wrapped = serde_json::json!({"resourceSpans": [{"scopeSpans": [{"spans": [v.clone()]}]}]});
        check(&serde_json::to_vec(&wrapped).unwrap());
        check(&serde_json::to_vec(&v).unwrap());
    }
}

/// serde_json reads floats with its default best-effort precision (its
/// `float_roundtrip` feature is off): a double may come back one ULP off, e.g.
/// `2.062370387642511e-152` as `2.0623703876425107e-152` (found by the long run).
/// Doubles are replaced by what JSON gives back, so the rest is compared exactly.
fn settle_doubles(req: &mut ExportTraceServiceRequest) {
    fn value(v: &mut AnyValue) {
        match &mut v.value {
            Some(any_value::Value::DoubleValue(d)) => {
                *d = serde_json::from_str(&serde_json::to_string(d).unwrap()).unwrap_or(*d);
            }
            Some(any_value::Value::ArrayValue(a)) => a.values.iter_mut().for_each(value),
            Some(any_value::Value::KvlistValue(l)) => attrs(&mut l.values),
            _ => {}
        }
    }
    fn attrs(kv: &mut [KeyValue]) {
        kv.iter_mut()
            .filter_map(|k| k.value.as_mut())
            .for_each(value);
    }
    for rs in &mut req.resource_spans {
        if let Some(r) = &mut rs.resource {
            attrs(&mut r.attributes);
        }
        for s in rs.scope_spans.iter_mut().flat_map(|ss| &mut ss.spans) {
            attrs(&mut s.attributes);
            s.links.iter_mut().for_each(|l| attrs(&mut l.attributes));
            s.events.iter_mut().for_each(|e| attrs(&mut e.attributes));
        }
    }
}

proptest! {
    #![proptest_config(powertune_fuzz::config(800))]

    /// A request an exporter writes as OTLP/JSON reads back to the same spans.
    #[test]
    fn generated_requests_round_trip(mut req in super::otlp_protobuf::request()) {
        settle_doubles(&mut req);
        let json = serde_json::to_vec(&req).unwrap();
        let back = decode_json(&json);
        prop_assert!(back.is_ok(), "{:?}\n{}", back.err(), String::from_utf8_lossy(&json));
        let back = back.unwrap();
        prop_assert_eq!(to_spans(&back), to_spans(&req));
        check(&json);
    }
}
