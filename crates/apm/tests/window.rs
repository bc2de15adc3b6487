//! The engine's window: bounds on open traces and spans, rolling buckets, and
//! traces that wait for late spans before they are analysed.
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
use powertune_apm::snapshot::DetectionKind;
use powertune_apm::Engine;

#[test]
fn window_bounds_hold_and_buckets_roll() {
    let cfg = config(|c| {
        c.max_open_traces = 10;
        c.max_spans = 50;
    });
    let mut e = Engine::new(cfg.clone());
    // 100 traces without roots: never more than 10 open.
    for k in 0..100u128 {
        let mut t = TraceBuilder::new(5000 + k, Gen::New);
        t.span(
            77,
            3,
            "SELECT",
            0,
            1,
            vec![s("db.system.name", "postgresql")],
        );
        let (spans, _) = to_spans(&t.request_proto());
        e.ingest(spans, 0);
        let st = e.summary(0, None).ingest;
        assert!(st.open_traces <= 10 && st.open_spans <= 50, "{st:?}");
    }
    // Requests in minute 0 leave a 1-minute window by minute 2, stay in a 15-minute one.
    let mut e = Engine::new(cfg);
    let (spans, _) = to_spans(&n_plus_one_trace(9, Gen::New, 1, false).request_proto());
    e.ingest(spans, 0);
    e.tick(5_000_000_000);
    let now = 120_000_000_000;
    assert_eq!(e.summary(now, Some(900_000_000_000)).routes.len(), 1);
    assert!(e.summary(now, Some(60_000_000_000)).routes.is_empty());
}

#[test]
fn traces_wait_for_late_spans_then_get_analysed() {
    let mut e = Engine::new(config(|c| {
        c.linger_ns = 2_000_000_000;
        c.max_trace_age_ns = 30_000_000_000;
    }));
    let t = n_plus_one_trace(401, Gen::New, 6, false);
    let (mut spans, _) = to_spans(&t.request_proto());
    // Children first, root later (exporters send spans as they end).
    let root = spans.remove(0);
    e.ingest(spans, 0);
    e.tick(10_000_000_000);
    assert_eq!(
        e.summary(10_000_000_000, None).ingest.open_traces,
        1,
        "no root yet: still open"
    );
    e.ingest(vec![root], 10_000_000_000);
    e.tick(11_000_000_000);
    assert_eq!(
        e.summary(11_000_000_000, None).ingest.open_traces,
        1,
        "lingering for late spans"
    );
    e.tick(12_000_000_000);
    let s = e.summary(12_000_000_000, None);
    assert_eq!((s.ingest.open_traces, s.ingest.traces_analyzed), (0, 1));
    assert_eq!(detections(&s, DetectionKind::NPlusOne).len(), 1);
    // A trace whose root never comes is analysed after max_trace_age.
    let (mut spans, _) = to_spans(&n_plus_one_trace(402, Gen::New, 6, false).request_proto());
    spans.remove(0);
    e.ingest(spans, 20_000_000_000);
    e.tick(49_000_000_000);
    assert_eq!(e.summary(49_000_000_000, None).ingest.open_traces, 1);
    e.tick(50_000_000_000);
    let s = e.summary(50_000_000_000, None);
    assert_eq!((s.ingest.open_traces, s.ingest.traces_without_root), (0, 1));
}
