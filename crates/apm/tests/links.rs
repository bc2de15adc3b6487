//! Span links: jobs tied to the request that enqueued them, bounded.
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
use opentelemetry_proto::tonic::trace::v1::Status;
use powertune_apm::decode::to_spans;
use powertune_apm::judge;
use powertune_apm::Engine;
use powertune_core::Targets;

/// A request that enqueues a Sidekiq job (a PRODUCER span); returns the builder and
/// the enqueue span's id.
fn enqueuing_request(id: u128) -> (TraceBuilder, u64) {
    let mut t = TraceBuilder::new(id, Gen::New);
    let root = t.request(
        "POST",
        "/api/v1/ai/missions",
        "/api/v1/ai/missions",
        201,
        0,
        40,
    );
    t.sql(root, "INSERT INTO missions (name) VALUES ('x')", 2, 8);
    let p = t.span(
        root,
        4,
        "default publish",
        10,
        12,
        vec![
            s("messaging.system", "sidekiq"),
            s("messaging.sidekiq.job_class", "Ai::MissionJob"),
        ],
    );
    (t, p)
}

/// The job's own trace: a root CONSUMER span linked to (`trace`, `span`).
fn linked_job(id: u128, trace: u128, span: u64, failed: bool) -> TraceBuilder {
    let mut t = TraceBuilder::new(id, Gen::New);
    let j = t.span(
        0,
        5,
        "default process",
        1000,
        7000,
        vec![
            s("messaging.system", "sidekiq"),
            s("messaging.sidekiq.job_class", "Ai::MissionJob"),
            s("messaging.destination.name", "default"),
        ],
    );
    t.sql(j, "SELECT * FROM missions WHERE id = 1", 1001, 1020);
    let js = &mut t.spans[0];
    js.links = vec![opentelemetry_proto::tonic::trace::v1::span::Link {
        trace_id: trace.to_be_bytes().to_vec(),
        span_id: span.to_be_bytes().to_vec(),
        ..Default::default()
    }];
    if failed {
        js.status = Some(Status {
            code: 2,
            message: "Timeout".into(),
        });
    }
    t
}

#[test]
fn span_links_tie_jobs_to_the_enqueuing_request() {
    let route = "POST /api/v1/ai/missions";
    let (req, producer) = enqueuing_request(900);
    // Jobs first in the batch: the linked request is analysed before them all the same.
    let traces = vec![
        linked_job(901, 900, producer, true),
        // A link to the request's server span (not an enqueue span): tied by its trace.
        linked_job(902, 900, 1, false),
        // A link to a trace never seen: not tied.
        linked_job(903, 77_777, 5, false),
        req,
    ];
    let req = request_of(traces);
    assert!(to_spans(&req).1.is_empty());
    let mut e = engine();
    feed(&mut e, &req);
    let s = e.summary(0, None);
    assert_eq!(s.ingest.jobs_linked, 2, "{:?}", s.ingest);
    assert_eq!(s.linked_jobs.len(), 1, "{:?}", s.linked_jobs);
    let l = &s.linked_jobs[0];
    assert_eq!(
        (l.route.as_str(), l.class.as_str()),
        (route, "Ai::MissionJob")
    );
    assert_eq!((l.latency.count, l.latency.errors), (2, 1));
    assert_eq!(s.jobs[0].latency.count, 3, "all three jobs counted as jobs");
    // The job findings name the enqueuing route.
    let f = judge::judge(&s, &Targets::default(), None);
    let jf = f.iter().find(|x| x.check == "job_failure_rate").unwrap();
    assert!(
        jf.evidence
            .contains(&format!("enqueued by {route} (2 jobs, 1 failed")),
        "{}",
        jf.evidence
    );
    // `apm endpoint`: the linked job traces under the request's example trace.
    let d = e.endpoint(route, 0, None).unwrap();
    assert_eq!(d.linked_jobs.len(), 1);
    let ex = &d.slowest[0];
    assert_eq!(ex.trace_id, format!("{:032x}", 900));
    assert_eq!(ex.linked.len(), 2, "{:?}", ex.linked);
    let under_producer = ex
        .linked
        .iter()
        .find(|x| x.trace_id == format!("{:032x}", 901))
        .unwrap();
    assert_eq!(under_producer.from_span_id, format!("{producer:016x}"));
    assert!(under_producer.error);
    assert_eq!(under_producer.spans.len(), 2);
    assert_eq!(under_producer.spans[0].category, "job");
    let text = powertune_apm::render::endpoint(&d);
    assert!(
        text.contains(&format!("↳ linked job trace {:032x}", 901)),
        "{text}"
    );
    assert!(text.contains("jobs enqueued by this route"), "{text}");

    // Bounded: at most 3 linked traces per example; the link index forgets the
    // oldest requests beyond max_open_traces entries.
    let mut e = Engine::new(config(|c| c.max_open_traces = 4));
    let (req, producer) = enqueuing_request(910);
    feed(&mut e, &req.request_proto());
    for k in 0..5u128 {
        feed(
            &mut e,
            &linked_job(920 + k, 910, producer, false).request_proto(),
        );
    }
    let d = e.endpoint(route, 0, None).unwrap();
    assert_eq!(d.slowest[0].linked.len(), 3);
    assert_eq!(d.linked_jobs[0].latency.count, 5);
    for k in 0..4u128 {
        feed(&mut e, &enqueuing_request(930 + k).0.request_proto());
    }
    feed(
        &mut e,
        &linked_job(940, 910, producer, false).request_proto(),
    );
    let s = e.summary(0, None);
    assert_eq!(
        s.ingest.jobs_linked, 5,
        "the forgotten request is not found"
    );
}
