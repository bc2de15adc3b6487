//! Error rates per route and per endpoint type, with example failing traces.
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
use powertune_apm::judge;

use powertune_core::{Targets, Verdict};

/// 100 login requests, `failing` of them answering 500 (or with span status ERROR
/// when `status_error`), the rest 200 or 404 (a client error is no server error).
fn logins(gen: Gen, first: u128, failing: u128, status_error: bool) -> Vec<TraceBuilder> {
    (0..100u128)
        .map(|k| {
            let mut t = TraceBuilder::new(first + k, gen);
            let code = if k < failing && !status_error {
                500
            } else if k % 10 == 9 {
                404
            } else {
                200
            };
            t.request(
                "POST",
                "/api/v1/auth/login",
                "/api/v1/auth/login",
                code,
                0,
                20,
            );
            if k < failing && status_error {
                t.spans[0].status = Some(Status {
                    code: 2,
                    message: "PG::ConnectionBad".into(),
                });
            }
            t
        })
        .collect()
}

#[test]
fn error_rate_per_route_and_endpoint_type_fires_with_example_traces_and_stays_quiet() {
    let t = Targets::default();
    for gen in [Gen::Old, Gen::New] {
        for status_error in [false, true] {
            // 3% failing: FAIL for the route and for Authentication, naming failing traces.
            let s = analyse(&request_of(logins(gen, 7000, 3, status_error)));
            let r = &s.routes[0];
            assert_eq!((r.latency.count, r.latency.errors), (100, 3), "{gen:?}");
            let failing: Vec<String> = (7000..7003u128).map(|k| format!("{k:032x}")).collect();
            assert_eq!(r.latency.error_traces.len(), 3);
            assert!(r.latency.error_traces.iter().all(|x| failing.contains(x)));
            let f = judge::judge(&s, &t, None);
            for (check, subject) in [
                ("route_error_rate", "POST /api/v1/auth/login"),
                ("api_error_rate", "Authentication"),
            ] {
                let x = f
                    .iter()
                    .find(|x| x.check == check)
                    .unwrap_or_else(|| panic!("{check} missing: {f:?}"));
                assert_eq!(x.verdict, Verdict::Fail, "{check} {gen:?}");
                assert_eq!(x.subject, subject);
                assert_eq!(x.observed, "3.00%");
                assert!(x.evidence.contains("3 of 100"), "{}", x.evidence);
                assert!(x.evidence.contains(&failing[2]), "{}", x.evidence);
            }
            let mut e = engine();
            feed(&mut e, &request_of(logins(gen, 7000, 3, status_error)));
            let text = powertune_apm::render::endpoint(
                &e.endpoint("POST /api/v1/auth/login", 0, None).unwrap(),
            );
            let line = text
                .lines()
                .find(|l| l.starts_with("failing traces (latest): "))
                .unwrap_or_else(|| panic!("{text}"));
            assert!(failing.iter().all(|f| line.contains(f.as_str())), "{line}");
        }
        // No server errors (10 answers are 404): the type passes, no route finding.
        let s = analyse(&request_of(logins(gen, 8000, 0, false)));
        assert_eq!(s.routes[0].latency.errors, 0);
        let f = judge::judge(&s, &t, None);
        assert!(!f.iter().any(|x| x.check == "route_error_rate"), "{f:?}");
        let x = f.iter().find(|x| x.check == "api_error_rate").unwrap();
        assert_eq!(
            (x.verdict, x.observed.text().as_str()),
            (Verdict::Pass, "0.00%")
        );
    }
    // Below the threshold (1 failing of 200): the route's finding passes.
    let mut traces = logins(Gen::New, 9000, 1, false);
    traces.extend(logins(Gen::Old, 9100, 0, false));
    let s = analyse(&request_of(traces));
    let f = judge::judge(&s, &t, None);
    for check in ["route_error_rate", "api_error_rate"] {
        let x = f.iter().find(|x| x.check == check).unwrap();
        assert_eq!(
            (x.verdict, x.observed.text().as_str()),
            (Verdict::Pass, "0.50%")
        );
    }
}
