//! The plan end to end on a stated load: its findings, its text and its JSON against
//! `docs/schema/queues-plan.v1.json`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use powertune_core::targets::WorkerTargets;
use powertune_core::{Inspection, Verdict};
use powertune_queues_plan::estimate::{Load, QueueLoad};
use powertune_queues_plan::plan::{self, DbLimit, PlanMetrics, PlanOptions, WebTier};
use powertune_queues_plan::render::render;
use powertune_queues_plan::sim::{SimOptions, SimProcess};
use std::collections::BTreeMap;

fn queue(name: &str, rate: f64, s: f64) -> QueueLoad {
    QueueLoad {
        name: name.into(),
        arrival_per_s: rate,
        served_per_s: rate,
        service_s: Some(s),
        busy: rate * s,
        depth_change_per_s: 0.0,
        depth_last: 0,
        latency_last_s: 0.0,
        service_from: "shared".into(),
    }
}

fn strict(threads: u32, qs: &[&str]) -> SimProcess {
    SimProcess {
        threads,
        queues: qs.iter().map(|q| (q.to_string(), 0)).collect(),
        strict: true,
    }
}

#[test]
fn a_starved_queue_a_heavy_queue_and_an_exhausted_budget_are_found() {
    // critical: 9 erlangs of 0.5 s jobs; low: 0.5 erlang; ai: 4 erlangs of 20 s jobs.
    let load = Load {
        source: "live window".into(),
        window_s: 600.0,
        samples: 61,
        processed_per_s: 18.6,
        failed_per_s: 0.0,
        busy: 10.0,
        concurrency: 10.0,
        queues: vec![
            queue("ai", 0.2, 20.0),
            queue("critical", 18.0, 0.5),
            queue("low", 0.4, 1.25),
        ],
    };
    let t = WorkerTargets::default();
    let o = PlanOptions {
        utilisation: 0.75,
        tail: 0.01,
        service_scv: 1.0,
        sim: SimOptions {
            horizon_s: 20_000.0,
            warmup_s: 2_000.0,
            max_arrivals: 300_000,
            ..SimOptions::default()
        },
        db: Some(DbLimit {
            max_connections: 40,
            reserved: 3,
        }),
        web: WebTier {
            threads: 5,
            workers: 4,
            instances: 1,
        },
    };
    let running = vec![strict(10, &["critical", "low", "ai"])];
    let proposed = vec![SimProcess {
        threads: 25,
        queues: vec![("critical".into(), 3), ("low".into(), 1), ("ai".into(), 1)],
        strict: false,
    }];
    let weights: BTreeMap<String, u32> = BTreeMap::new();
    let m: PlanMetrics = plan::plan(load, running, Some(proposed), &weights, &t, &o);
    // ai (20 s jobs) gets its own instance; the shared pool keeps critical and low.
    assert_eq!(m.recommended.len(), 2, "{:#?}", m.recommended);
    assert!(m.recommended[1].role == "dedicated: ai");
    let f = plan::judge(&m, &t);
    let get = |check: &str, subject: &str| {
        f.iter()
            .find(|x| x.check == check && x.subject == subject)
            .unwrap_or_else(|| panic!("no {check} {subject}: {f:#?}"))
    };
    let low = get("plan_running_latency", "low");
    assert_eq!(low.verdict, Verdict::Fail);
    assert!(
        low.evidence
            .contains("because `critical` alone keeps all 10 threads busy"),
        "{}",
        low.evidence
    );
    assert_eq!(
        get("plan_running_threads", "all queues").verdict,
        Verdict::Fail
    );
    assert_eq!(get("plan_dedicated_instance", "ai").verdict, Verdict::Warn);
    // 25 proposed threads + 20 web threads > 37 usable connections.
    let budget = get("plan_proposed_connections", "PostgreSQL connections");
    assert_eq!(budget.verdict, Verdict::Fail);
    assert!(budget.action.contains("PgBouncer"));
    assert_eq!(
        get("plan_running_connections", "PostgreSQL connections").verdict,
        Verdict::Pass
    );
    let text = render(&m, "--running");
    assert!(
        text.contains("STARVING") && text.contains("dedicated: ai"),
        "{text}"
    );
    let report = Inspection::new("queues plan", f, m, text).report().unwrap();
    powertune_test_support::schema::check::<PlanMetrics>("queues-plan.v1", &report.metrics);
}
