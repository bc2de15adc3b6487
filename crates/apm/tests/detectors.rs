//! The detectors over hand-built traces in both semantic-convention generations:
//! N+1, slow and consecutive queries, slow requests, the time breakdown, jobs,
//! missions, agents and providers.
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
use powertune_apm::snapshot::{Baseline, DetectionKind};
use powertune_core::{EndpointType, Targets, Verdict};

#[test]
fn n_plus_one_fires_in_both_generations_and_stays_quiet_without_it() {
    for gen in [Gen::Old, Gen::New] {
        let s = analyse(&n_plus_one_trace(11, gen, 6, false).request_proto());
        let hits = detections(&s, DetectionKind::NPlusOne);
        assert_eq!(hits.len(), 1, "{gen:?}: {:?}", s.detections);
        assert_eq!(hits[0].route, "GET /api/v1/posts");
        assert_eq!(hits[0].subject, "SELECT * FROM users WHERE id = ?");
        assert_eq!(hits[0].spans, 6);
        assert_eq!(hits[0].example_trace, format!("{:032x}", 11));
        let f = judge::judge(&s, &Targets::default(), None);
        assert!(f
            .iter()
            .any(|x| x.check == "n_plus_one" && x.verdict == Verdict::Fail));
        // Four repeats: below the count threshold.
        let s = analyse(&n_plus_one_trace(12, gen, 4, false).request_proto());
        assert!(
            detections(&s, DetectionKind::NPlusOne).is_empty(),
            "{gen:?}"
        );
        // Query-cache hits are not queries.
        let s = analyse(&n_plus_one_trace(13, gen, 8, true).request_proto());
        assert!(
            detections(&s, DetectionKind::NPlusOne).is_empty(),
            "{gen:?}"
        );
    }
    // Repeats adding up to less than the time threshold (5 × 2 ms) stay quiet.
    let mut t = TraceBuilder::new(14, Gen::New);
    let root = t.request("GET", "/x", "/x", 200, 0, 50);
    for k in 0..5 {
        t.sql(root, "SELECT 1 FROM t WHERE id = 1", 1 + k * 3, 3 + k * 3);
    }
    assert!(detections(&analyse(&t.request_proto()), DetectionKind::NPlusOne).is_empty());
}

#[test]
fn slow_queries_slow_requests_and_consecutive_queries() {
    for gen in [Gen::Old, Gen::New] {
        let mut t = TraceBuilder::new(21, gen);
        let root = t.request(
            "GET",
            "/api/v1/reports/:id",
            "/api/v1/reports/77",
            200,
            0,
            1500,
        );
        t.sql(
            root,
            "SELECT * FROM events WHERE account_id = 5 ORDER BY created_at",
            10,
            160,
        );
        t.sql(root, "SELECT count(*) FROM events WHERE x = 'a'", 200, 900);
        t.sql(root, "SELECT * FROM small WHERE id = 1", 950, 960);
        let s = analyse(&t.request_proto());
        let slow = detections(&s, DetectionKind::SlowQuery);
        assert_eq!(slow.len(), 2, "{gen:?} {slow:?}");
        assert!(
            slow.iter().all(|d| d.route == "GET /api/v1/reports/:id"),
            "{gen:?}: ids collapsed"
        );
        let f = judge::judge(&s, &Targets::default(), None);
        let verdicts: Vec<Verdict> = f
            .iter()
            .filter(|x| x.check == "slow_query")
            .map(|x| x.verdict)
            .collect();
        assert!(
            verdicts.contains(&Verdict::Warn) && verdicts.contains(&Verdict::Fail),
            "{verdicts:?}"
        );
        assert_eq!(detections(&s, DetectionKind::SlowRequest).len(), 1);
        assert_eq!(s.routes[0].endpoint_type, EndpointType::Analytics);
    }
    // Quiet: fast queries, fast request.
    let mut t = TraceBuilder::new(22, Gen::New);
    let root = t.request("GET", "/api/v1/users/:id", "/api/v1/users/1", 200, 0, 80);
    t.sql(root, "SELECT * FROM users WHERE id = 1", 1, 30);
    let s = analyse(&t.request_proto());
    assert!(s.detections.is_empty(), "{:?}", s.detections);

    // Three sequential SELECTs, the later two independent (no WHERE): could run together.
    let mut t = TraceBuilder::new(23, Gen::New);
    let root = t.request(
        "GET",
        "/api/v1/ai/monitoring/dashboard",
        "/api/v1/ai/monitoring/dashboard",
        200,
        0,
        400,
    );
    t.sql(root, "SELECT * FROM accounts WHERE id = 1", 0, 60);
    t.sql(root, "SELECT count(*) FROM missions", 60, 180);
    t.sql(root, "SELECT count(*) FROM agents", 180, 300);
    let s = analyse(&t.request_proto());
    let c = detections(&s, DetectionKind::ConsecutiveQueries);
    assert_eq!(c.len(), 1, "{:?}", s.detections);
    // 300 ms in a row; the two independent ones could overlap the first: 300 - 120.
    assert!((c[0].saved_ms - 180.0).abs() < 1.0, "{}", c[0].saved_ms);
    // The same queries already running in parallel: quiet.
    let mut t = TraceBuilder::new(24, Gen::New);
    let root = t.request(
        "GET",
        "/api/v1/ai/monitoring/dashboard",
        "/api/v1/ai/monitoring/dashboard",
        200,
        0,
        200,
    );
    t.sql(root, "SELECT * FROM accounts WHERE id = 1", 0, 60);
    t.sql(root, "SELECT count(*) FROM missions", 60, 180);
    t.sql(root, "SELECT count(*) FROM agents", 61, 181);
    assert!(detections(
        &analyse(&t.request_proto()),
        DetectionKind::ConsecutiveQueries
    )
    .is_empty());
}

#[test]
fn breakdown_adds_up_to_the_trace_duration() {
    for gen in [Gen::Old, Gen::New] {
        let mut t = TraceBuilder::new(31, gen);
        let root = t.request(
            "POST",
            "/api/v1/ai/agents/:id/execute",
            "/api/v1/ai/agents/9/execute",
            200,
            0,
            1000,
        );
        let inner = t.span(root, 1, "Ai::AgentRunner#call", 50, 950, vec![]);
        t.sql(inner, "SELECT * FROM agents WHERE id = 9", 60, 160); // db 100
        t.http_call(inner, "api.openai.com", 200, 800); // provider 600
        t.http_call(inner, "vault.internal", 700, 850); // overlaps: 50 more http
        t.sql(inner, "UPDATE agents SET x = 1 WHERE id = 9", 780, 820); // db inside http: db wins (40)
        let s = analyse(&t.request_proto());
        let r = &s.routes[0];
        assert_eq!(r.route, "POST /api/v1/ai/agents/:id/execute");
        assert_eq!(r.endpoint_type, EndpointType::AiLlm);
        let bd = r.breakdown;
        assert!((bd.total_ms() - 1000.0).abs() < 1e-6, "{bd:?}");
        assert!((bd.db_ms - 140.0).abs() < 1e-6, "{bd:?}");
        assert!((bd.http_ms - 610.0).abs() < 1e-6, "{bd:?}");
        assert!((bd.app_ms - 250.0).abs() < 1e-6, "{bd:?}");
        assert_eq!(s.providers.len(), 1, "{:?}", s.providers);
        assert_eq!(s.providers[0].key, "openai/(unknown)");
        // A 1 s LLM-call route is no "slow request" (its type allows 30 s).
        assert!(detections(&s, DetectionKind::SlowRequest).is_empty());
    }
}

#[test]
fn jobs_missions_agents_and_providers() {
    let mut traces = Vec::new();
    // 100 jobs: 6 s each, 2 failing, one of 70 s.
    for k in 0..100u128 {
        let mut t = TraceBuilder::new(1000 + k, Gen::New);
        let dur = if k == 0 { 70_000 } else { 6_000 };
        let id = t.span(
            0,
            5,
            "default process",
            0,
            dur,
            vec![
                s("messaging.system", "sidekiq"),
                s("messaging.sidekiq.job_class", "Ai::MissionJob"),
                s("messaging.destination", "default"),
            ],
        );
        if k < 2 {
            t.spans.last_mut().unwrap().status = Some(Status {
                code: 2,
                message: "boom".into(),
            });
        }
        if k == 0 {
            let m = t.span(id, 1, "ai.mission.execute", 10, 65_000, vec![]);
            t.span(m, 1, "ai.agent.execution", 20, 35_020, vec![]);
            t.span(
                m,
                3,
                "chat gpt-4o",
                100,
                3_100,
                vec![
                    s("gen_ai.provider.name", "openai"),
                    s("gen_ai.request.model", "gpt-4o"),
                ],
            );
        }
        traces.push(t);
    }
    // A fast mission and agent: quiet.
    let mut t = TraceBuilder::new(2000, Gen::Old);
    let m = t.span(0, 1, "ai.mission.execute", 0, 5_000, vec![]);
    t.span(m, 1, "ai.agent.execution", 0, 4_000, vec![]);
    t.span(
        m,
        3,
        "chat gpt-4o",
        0,
        1_000,
        vec![
            s("gen_ai.system", "openai"),
            s("gen_ai.request.model", "gpt-4o"),
        ],
    );
    traces.push(t);
    let s = analyse(&request_of(traces));
    assert_eq!(s.jobs.len(), 1);
    let j = &s.jobs[0];
    assert_eq!(
        (j.class.as_str(), j.latency.count, j.latency.errors, j.slow),
        ("Ai::MissionJob", 100, 2, 1)
    );
    assert_eq!(detections(&s, DetectionKind::SlowMission).len(), 1);
    assert_eq!(detections(&s, DetectionKind::SlowAgent).len(), 1);
    assert_eq!(
        detections(&s, DetectionKind::SlowMission)[0].route,
        "job Ai::MissionJob"
    );
    let f = judge::judge(&s, &Targets::default(), None);
    let get = |c: &str| f.iter().find(|x| x.check == c).unwrap().verdict;
    assert_eq!(get("job_avg_time"), Verdict::Fail);
    assert_eq!(get("job_failure_rate"), Verdict::Fail);
    assert_eq!(get("slow_job"), Verdict::Warn);
    // Provider against a saved baseline: P95 3 s vs 1 s baseline → FAIL; vs 2 s → PASS.
    assert_eq!(s.providers[0].key, "openai/gpt-4o");
    let base = |ms: f64| Baseline {
        providers: [("openai/gpt-4o".to_string(), ms)].into(),
    };
    let f = judge::judge(&s, &Targets::default(), Some(&base(1000.0)));
    assert_eq!(
        f.iter()
            .find(|x| x.check == "provider_p95")
            .unwrap()
            .verdict,
        Verdict::Fail
    );
    let f = judge::judge(&s, &Targets::default(), Some(&base(2000.0)));
    assert_eq!(
        f.iter()
            .find(|x| x.check == "provider_p95")
            .unwrap()
            .verdict,
        Verdict::Pass
    );
}
