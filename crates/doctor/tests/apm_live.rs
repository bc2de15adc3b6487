//! Row 1 of the Troubleshooting table ("P95 latency creeping up" ↔ "Cache hit rate
//! degraded") through the APM path: a live `apm serve` in-process receives Rails
//! requests and their ActiveSupport cache reads over OTLP/HTTP, and doctor reads it as
//! it reads any receiver. Planted (slow requests, cache reads that miss) → symptom and
//! cause confirmed from the APM's figures; clean (fast requests, reads that hit) →
//! both ruled out.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod apm_live_common;
mod common;

use apm_live_common::{LiveApm, Request};
use powertune_doctor::Status;

const ROUTE: &str = "GET /api/v1/users/:id";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p95_creeping_up_confirmed_by_the_apm_cache_hit_rate() {
    // planted: read requests past the read_crud band (300 ms), 1 cache read in 10 hits
    let mut apm = LiveApm::start().await;
    for (n, hit) in [(36, false), (4, true)] {
        let r = Request {
            route: ROUTE,
            duration_ms: 900,
            status: 200,
            cache_hit: Some(hit),
        };
        apm.send(n, r).await;
    }
    let i = common::doctor(&[("apm", &apm.url)]).await;
    let row = i.metrics.rows.iter().find(|r| r.id == "p95_cache").unwrap();
    assert_eq!(row.symptom.status, Status::Confirmed, "{row:#?}");
    assert!(row.symptom.figure.contains("P95"), "{}", row.symptom.figure);
    let cause = &row.causes[0];
    assert_eq!(cause.status, Status::Confirmed, "{row:#?}");
    assert_eq!(
        cause.source, "apm report cache_hit_rate, cache_type_hit_rate",
        "{cause:?}"
    );
    // 4 hits of 40 lookups: 10%, under the 70% overall alert
    assert!(cause.figure.contains("overall 10"), "{}", cause.figure);
    apm.stop();

    // clean: fast requests whose cache reads hit
    let mut apm = LiveApm::start().await;
    for (n, hit) in [(38, true), (2, false)] {
        let r = Request {
            route: ROUTE,
            duration_ms: 20,
            status: 200,
            cache_hit: Some(hit),
        };
        apm.send(n, r).await;
    }
    let i = common::doctor(&[("apm", &apm.url)]).await;
    let row = i.metrics.rows.iter().find(|r| r.id == "p95_cache").unwrap();
    assert_eq!(row.symptom.status, Status::RuledOut, "{row:#?}");
    let cause = &row.causes[0];
    assert_eq!(cause.status, Status::RuledOut, "{row:#?}");
    assert!(
        cause.figure.contains("cache hit rates within target"),
        "{}",
        cause.figure
    );
    assert!(cause.source.starts_with("apm report"), "{cause:?}");
    apm.stop();
}
