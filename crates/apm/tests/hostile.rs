//! Hostile input against the engine: memory is bounded by configuration, never by
//! what a client sends. Long strings are clipped, distinct keys fold into
//! `(other)`, and the span limit never evicts a trace's root.
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
use powertune_apm::decode::to_spans;
use powertune_apm::engine::OTHER;
use powertune_apm::model::{SpanClass, MAX_NAME_LEN, MAX_ROUTE_LEN, MAX_VALUE_LEN};
use powertune_apm::normalize::MAX_STATEMENT_LEN;
use powertune_apm::Engine;

const MIB: usize = 1 << 20;

/// A trace of `children` SELECT spans under a root that is sent last.
fn root_last(id: u128, children: u64) -> Vec<powertune_apm::model::SpanRec> {
    let mut t = TraceBuilder::new(id, Gen::New);
    let root = t.request("GET", "/api/v1/big", "/api/v1/big", 200, 0, 5000);
    for k in 0..children {
        t.sql(root, "SELECT * FROM t WHERE id = 1", k % 4000, k % 4000 + 1);
    }
    let (mut spans, bad) = to_spans(&t.request_proto());
    assert!(bad.is_empty());
    let r = spans.remove(0);
    spans.push(r);
    spans
}

#[test]
fn the_span_limit_never_evicts_a_root_that_arrives_last() {
    let mut e = Engine::new(config(|c| c.max_spans_per_trace = 100));
    let spans = root_last(0xb16, 1000);
    // In batches, as an exporter sends them.
    for chunk in spans.chunks(64) {
        e.ingest(chunk.to_vec(), 0);
        assert!(e.summary(0, None).ingest.open_spans <= 100);
    }
    e.flush_rooted(0);
    let s = e.summary(0, None);
    let route = s.routes.iter().find(|r| r.route == "GET /api/v1/big");
    assert_eq!(route.map(|r| r.latency.count), Some(1), "{:?}", s.routes);
    assert_eq!(s.ingest.traces_without_root, 0);
    assert_eq!(s.ingest.traces_analyzed, 1);
    // 1000 children + 1 root into 100 places: 901 dropped (one child gave its place).
    assert_eq!(s.ingest.spans_dropped, 901);
    // A second root of the same trace does not displace anything more.
    let mut e = Engine::new(config(|c| c.max_spans_per_trace = 10));
    let mut spans = root_last(0xb17, 20);
    let mut second = spans.last().unwrap().clone();
    second.span_id = 999;
    spans.push(second);
    e.ingest(spans, 0);
    e.flush_all(0);
    let s = e.summary(0, None);
    assert_eq!(s.ingest.spans_dropped, 12);
    assert_eq!(s.routes.len(), 1);
}

#[test]
fn strings_are_clipped_to_their_documented_lengths() {
    let huge = "x".repeat(MIB);
    let huge_path = format!("/{}", "a".repeat(MIB));
    let mut t = TraceBuilder::new(0xc11, Gen::New);
    let root = t.span(
        0,
        2,
        &huge,
        0,
        10,
        vec![
            s("http.request.method", "GET"),
            s("http.route", &huge_path),
            s("user.blob", &huge),
        ],
    );
    t.span(
        root,
        3,
        &huge,
        1,
        2,
        vec![
            s("db.system.name", &huge),
            s("db.query.text", &format!("SELECT {huge} FROM t")),
        ],
    );
    t.span(
        root,
        3,
        "GET",
        2,
        3,
        vec![
            s("http.request.method", "GET"),
            s("url.full", &format!("https://{huge}/x")),
        ],
    );
    t.span(
        0,
        5,
        "job",
        0,
        1,
        vec![
            s("messaging.system", "sidekiq"),
            s("messaging.sidekiq.job_class", &huge),
            s("messaging.destination.name", &huge),
        ],
    );
    // Non-ASCII at the cut: the result stays valid UTF-8 and within the limit.
    t.span(0, 1, &"é".repeat(MIB / 2), 0, 1, vec![]);
    let (spans, bad) = to_spans(&t.request_proto());
    assert!(bad.is_empty());
    assert_eq!(spans.len(), 5);
    for sp in &spans {
        assert!(sp.name.len() <= MAX_NAME_LEN, "{}", sp.name.len());
        match &sp.class {
            SpanClass::Server { route, .. } => {
                assert!(route.len() <= MAX_ROUTE_LEN, "{}", route.len());
                assert!(route.starts_with("GET /aaa") && route.ends_with('…'));
            }
            SpanClass::Db {
                system, statement, ..
            } => {
                assert!(system.len() <= MAX_VALUE_LEN);
                assert!(statement.len() <= MAX_STATEMENT_LEN + 4);
            }
            SpanClass::Http { host, .. } => assert!(host.len() <= MAX_VALUE_LEN),
            SpanClass::Job { class, queue } => {
                assert!(class.len() <= MAX_VALUE_LEN && queue.len() <= MAX_VALUE_LEN)
            }
            SpanClass::Other => assert!(sp.name.ends_with('…')),
            c => panic!("unexpected class {c:?}"),
        }
    }
    // The same clipping on the protobuf fast path.
    let mut t = TraceBuilder::new(0xc12, Gen::New);
    t.span(0, 2, &huge, 0, 10, vec![s("http.route", &huge_path)]);
    let body = prost::Message::encode_to_vec(&t.request_proto());
    let (mut ok, mut bad) = (Vec::new(), Vec::new());
    powertune_apm::wire::read_request(&body, &mut ok, &mut bad).unwrap();
    assert_eq!(ok.len(), 1);
    assert!(ok[0].name.len() <= MAX_NAME_LEN);
    let SpanClass::Server { route, .. } = &ok[0].class else {
        panic!("{:?}", ok[0].class)
    };
    assert!(route.len() <= MAX_ROUTE_LEN);
}

#[test]
fn distinct_routes_and_statements_fold_into_other_and_are_counted() {
    let mut e = Engine::new(config(|c| c.max_keys = 50));
    for k in 0..5_000u128 {
        let mut t = TraceBuilder::new(0x10_0000 + k, Gen::New);
        let route = format!("/r/x{k}y");
        let root = t.request("GET", &route, &route, 200, 0, 2000);
        // A distinct slow statement per trace: a detection key each.
        t.sql(root, &format!("SELECT * FROM t{k} WHERE a = 1"), 1, 400);
        let (spans, _) = to_spans(&t.request_proto());
        e.ingest(spans, 0);
    }
    e.flush_all(0);
    let s = e.summary(0, None);
    assert!(s.routes.len() <= 51, "{}", s.routes.len());
    let other = s.routes.iter().find(|r| r.route == OTHER).unwrap();
    assert_eq!(other.latency.count, 5_000 - 50);
    let total: u64 = s.routes.iter().map(|r| r.latency.count).sum();
    assert_eq!(total, 5_000, "nothing lost: every request is counted");
    // Detections: at most 4 × max_keys per bucket.
    assert!(s.detections.len() <= 200, "{}", s.detections.len());
    assert!(s.ingest.keys_overflowed >= 5_000 - 50, "{:?}", s.ingest);
    // The terminal report says what was folded.
    let text = powertune_apm::render::routes_table(&s, 10);
    assert!(
        text.contains("folded into (other) (window.max_keys)"),
        "{text}"
    );
}
