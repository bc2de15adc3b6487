//! The judge: a pure function from a [`Summary`] (and an optional provider baseline)
//! to findings against the runbook's targets.

use crate::summary::{Baseline, Detection, DetectionKind, Latency, Summary};
use powertune_core::{Finding, Targets, Verdict};

const AREA: &str = "apm";

fn ms(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.1}s", v / 1000.0)
    } else if v >= 100.0 {
        format!("{v:.0}ms")
    } else {
        format!("{v:.1}ms")
    }
}

fn evidence_of(d: &Detection) -> String {
    format!(
        "{} occurrence(s), {} span(s), max {}, total {}; route {}; example trace {}",
        d.occurrences,
        d.spans,
        ms(d.max_ms),
        ms(d.total_ms),
        d.route,
        d.example_trace
    )
}

fn examples(l: &Latency) -> String {
    if l.error_traces.is_empty() {
        String::new()
    } else {
        format!("; example failing traces {}", l.error_traces.join(", "))
    }
}

/// Errors (status ≥ 500 or span status ERROR) over requests, against the runbook's
/// "Error rate < 1%" (`load.error_rate_pct`).
fn error_rate(check: &str, subject: &str, l: &Latency, t: &Targets, action: &str) -> Finding {
    let rate = l.error_rate_pct();
    Finding::new(
        AREA,
        check,
        subject,
        Verdict::lower_is_better(rate, t.load.error_rate_pct, None),
    )
    .observed(format!("{rate:.2}%"))
    .target(format!("< {}%", t.load.error_rate_pct))
    .evidence(format!(
        "{} of {} requests failed (status ≥ 500 or span status ERROR){}",
        l.errors,
        l.count,
        examples(l)
    ))
    .action(action)
}

/// "; enqueued by ROUTE (n jobs, e failed), …": the routes whose requests enqueued
/// this job class (span links), most jobs first, at most 3.
fn enqueued_by(s: &Summary, class: &str) -> String {
    let mut v: Vec<_> = s.linked_jobs.iter().filter(|l| l.class == class).collect();
    if v.is_empty() {
        return String::new();
    }
    v.sort_by_key(|l| std::cmp::Reverse(l.latency.count));
    let list: Vec<String> = v
        .iter()
        .take(3)
        .map(|l| {
            format!(
                "{} ({} jobs, {} failed, avg {})",
                l.route,
                l.latency.count,
                l.latency.errors,
                ms(l.latency.avg_ms)
            )
        })
        .collect();
    format!("; enqueued by {}", list.join(", "))
}

/// Findings for everything in the summary.
pub fn judge(s: &Summary, t: &Targets, baseline: Option<&Baseline>) -> Vec<Finding> {
    let mut f = Vec::new();
    // API latency per endpoint type, then per route.
    for ty in &s.types {
        let band = t.api.band(ty.endpoint_type);
        let l = &ty.latency;
        f.push(
            Finding::new(AREA, "api_latency_p95", ty.endpoint_type.title(), Verdict::lower_is_better(l.p95_ms, band.target_ms, Some(band.max_ms)))
                .observed(ms(l.p95_ms))
                .target(format!("< {}", ms(band.target_ms)))
                .limit(ms(band.max_ms))
                .evidence(format!("{} requests, {} errors ({:.2}%), p50 {}, p99 {}, max {}", l.count, l.errors, l.error_rate_pct(), ms(l.p50_ms), ms(l.p99_ms), ms(l.max_ms)))
                .action("Find the slowest routes of this type (powertune apm endpoint \"ROUTE\") and inspect their trace breakdown: DB, application code or downstream HTTP"),
        );
    }
    // Error rate per endpoint type (the runbook's threshold: error rate < 1%).
    for ty in &s.types {
        if ty.latency.count > 0 {
            f.push(error_rate(
                "api_error_rate",
                ty.endpoint_type.title(),
                &ty.latency,
                t,
                "Investigate the failing endpoints: find the routes of this type with errors (route_error_rate) and open an example trace",
            ));
        }
    }
    for r in &s.routes {
        let band = t.api.band(r.endpoint_type);
        let l = &r.latency;
        let v = Verdict::lower_is_better(l.p95_ms, band.target_ms, Some(band.max_ms));
        let (db, http, app) = r.breakdown.shares();
        let slow = r
            .slowest
            .first()
            .map(|x| format!("; slowest trace {} ({})", x.trace_id, ms(x.duration_ms)))
            .unwrap_or_default();
        let action = match r.breakdown.dominant() {
            "database" => "DB-bound: run EXPLAIN ANALYZE on the offending query; look for seq scans, large sorts or missing indexes",
            "application code" => "Ruby-bound: profile the controller with rack-mini-profiler; check for N+1 queries (bullet)",
            _ => "External call-bound: check circuit breaker state and provider quota",
        };
        f.push(
            Finding::new(AREA, "route_latency_p95", &r.route, v)
                .observed(ms(l.p95_ms))
                .target(format!("< {}", ms(band.target_ms)))
                .limit(ms(band.max_ms))
                .evidence(format!(
                    "{}; {} requests; time in DB {db:.0}%, outgoing HTTP {http:.0}%, app {app:.0}%{slow}",
                    r.endpoint_type.title(),
                    l.count
                ))
                .action(action),
        );
        if l.errors > 0 {
            f.push(error_rate(
                "route_error_rate",
                &r.route,
                l,
                t,
                "Investigate the failing endpoint: open an example trace and read its error status and exception",
            ));
        }
    }
    // Jobs.
    for j in &s.jobs {
        let l = &j.latency;
        let by = enqueued_by(s, &j.class);
        let avg_s = l.avg_ms / 1000.0;
        f.push(
            Finding::new(AREA, "job_avg_time", &j.class, Verdict::lower_is_better(avg_s, t.worker.job_avg_s, None))
                .observed(format!("{avg_s:.2}s"))
                .target(format!("< {}s", t.worker.job_avg_s))
                .evidence(format!(
                    "{} jobs, p95 {}, max {}, {} slower than {}s{}",
                    l.count,
                    ms(l.p95_ms),
                    ms(l.max_ms),
                    j.slow,
                    t.apm.job_slow_ms / 1000.0,
                    j.example_trace.as_ref().map(|x| format!("; slowest trace {x}")).unwrap_or_default()
                ) + &by)
                .action("Slow job: profile the job; bring the long path under a circuit breaker or split it into smaller jobs"),
        );
        let rate = l.error_rate_pct();
        f.push(
            Finding::new(
                AREA,
                "job_failure_rate",
                &j.class,
                Verdict::lower_is_better(rate, t.worker.failed_rate_pct, None),
            )
            .observed(format!("{rate:.2}%"))
            .target(format!("< {}%", t.worker.failed_rate_pct))
            .evidence(format!(
                "{} of {} jobs failed{}{by}",
                l.errors,
                l.count,
                examples(l)
            ))
            .action("Inspect Sidekiq::RetrySet; investigate the top retried job class"),
        );
    }
    // Providers against the baseline.
    for p in &s.providers {
        let l = &p.latency;
        match baseline.and_then(|b| b.providers.get(&p.key)) {
            Some(&base) if base > 0.0 => {
                let ratio = l.p95_ms / base;
                f.push(
                    Finding::new(AREA, "provider_p95", &p.key, Verdict::lower_is_better(ratio, t.ai.provider_p95_ratio_max, None))
                        .observed(format!("{} ({ratio:.2}× baseline)", ms(l.p95_ms)))
                        .target(format!("< {}× baseline {}", t.ai.provider_p95_ratio_max, ms(base)))
                        .evidence(format!("{} calls, {} errors", l.count, l.errors))
                        .action("Check the provider's status page; lower the call rate via worker concurrency"),
                );
            }
            _ => f.push(
                Finding::new(AREA, "provider_p95", &p.key, Verdict::Pass)
                    .observed(ms(l.p95_ms))
                    .target("no baseline saved (use --save-baseline)")
                    .evidence(format!("{} calls, {} errors", l.count, l.errors)),
            ),
        }
    }
    // Detectors.
    let mut n_plus_one = 0u64;
    for d in &s.detections {
        let ev = evidence_of(d);
        let subject = format!("{} — {}", d.route, d.subject);
        let finding = match d.kind {
            DetectionKind::NPlusOne => {
                n_plus_one += 1;
                Finding::new(AREA, "n_plus_one", subject, Verdict::Fail)
                    .observed(format!("{} repeated queries in one request (max)", d.spans / d.occurrences.max(1)))
                    .target(format!("N+1 queries: {}", t.database.n_plus_one_max))
                    .evidence(ev)
                    .action("Load the association with .includes() instead of one query per record")
            }
            DetectionKind::SlowQuery => {
                let v = Verdict::lower_is_better(d.max_ms, t.database.max_query_ms, Some(t.database.slow_query_ms));
                Finding::new(AREA, "slow_query", subject, v)
                    .observed(format!("max {} ({}×)", ms(d.max_ms), d.occurrences))
                    .target(format!("< {}", ms(t.database.max_query_ms)))
                    .limit(ms(t.database.slow_query_ms))
                    .evidence(ev)
                    .action("Run EXPLAIN ANALYZE on the query; look for seq scans, large sorts or missing indexes")
            }
            DetectionKind::SlowRequest => Finding::new(AREA, "slow_request", &d.route, Verdict::Warn)
                .observed(format!("{}× over {}, max {}", d.occurrences, ms(t.apm.slow_request_ms), ms(d.max_ms)))
                .target(format!("< {}", ms(t.apm.slow_request_ms)))
                .evidence(ev)
                .action("Inspect the trace breakdown of the slowest trace: DB, application code or downstream HTTP"),
            DetectionKind::ConsecutiveQueries => Finding::new(AREA, "consecutive_queries", subject, Verdict::Warn)
                .observed(format!("{} could be saved ({} queries in a row)", ms(d.saved_ms / d.occurrences.max(1) as f64), d.spans / d.occurrences.max(1)))
                .target("independent queries run together")
                .evidence(ev)
                .action("Run the independent queries in parallel (load_async) or combine them into one query"),
            DetectionKind::SlowJob => Finding::new(AREA, "slow_job", &d.subject, Verdict::Warn)
                .observed(format!("{}× over {}, max {}", d.occurrences, ms(t.apm.job_slow_ms), ms(d.max_ms)))
                .target(format!("< {}", ms(t.apm.job_slow_ms)))
                .evidence(ev)
                .action("Profile the job; bring the long path under a circuit breaker or split it into smaller jobs"),
            DetectionKind::SlowMission => Finding::new(AREA, "slow_mission", subject, Verdict::Warn)
                .observed(format!("{}× over {}, max {}", d.occurrences, ms(t.apm.mission_slow_ms), ms(d.max_ms)))
                .target(format!("< {}", ms(t.apm.mission_slow_ms)))
                .evidence(ev)
                .action("Check provider quota and open circuit breakers; inspect the mission's slowest trace"),
            DetectionKind::SlowAgent => Finding::new(AREA, "slow_agent_execution", subject, Verdict::Warn)
                .observed(format!("{}× over {}, max {}", d.occurrences, ms(t.apm.agent_slow_ms), ms(d.max_ms)))
                .target(format!("< {}", ms(t.apm.agent_slow_ms)))
                .evidence(ev)
                .action("Check the provider's circuit breaker state and quota; route latency-sensitive flows to a faster model"),
        };
        f.push(finding);
    }
    if n_plus_one == 0 && !s.routes.is_empty() {
        f.push(
            Finding::new(AREA, "n_plus_one", "all routes", Verdict::Pass)
                .observed("0 patterns")
                .target(format!("N+1 queries: {}", t.database.n_plus_one_max)),
        );
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::*;
    use powertune_core::EndpointType;

    fn lat(count: u64, errors: u64, p95: f64, avg: f64) -> Latency {
        Latency {
            count,
            errors,
            p50_ms: p95 / 2.0,
            p95_ms: p95,
            p99_ms: p95,
            max_ms: p95,
            avg_ms: avg,
            error_traces: if errors > 0 {
                vec!["ab".into()]
            } else {
                vec![]
            },
        }
    }

    fn summary() -> Summary {
        Summary {
            schema: SUMMARY_SCHEMA.into(),
            window_s: None,
            ingest: IngestStats::default(),
            types: vec![TypeSummary {
                endpoint_type: EndpointType::Authentication,
                latency: lat(10, 0, 150.0, 80.0),
            }],
            routes: vec![RouteSummary {
                route: "POST /api/v1/auth/login".into(),
                endpoint_type: EndpointType::Authentication,
                latency: lat(10, 1, 250.0, 80.0),
                breakdown: Breakdown {
                    db_ms: 70.0,
                    http_ms: 10.0,
                    app_ms: 20.0,
                },
                slowest: vec![],
            }],
            jobs: vec![JobSummary {
                class: "SyncJob".into(),
                latency: lat(200, 1, 1000.0, 6000.0),
                slow: 0,
                example_trace: None,
            }],
            providers: vec![ProviderSummary {
                key: "openai/gpt-4o".into(),
                latency: lat(5, 0, 3000.0, 1000.0),
            }],
            linked_jobs: vec![LinkedJobs {
                route: "POST /api/v1/auth/login".into(),
                class: "SyncJob".into(),
                latency: lat(150, 1, 1000.0, 6000.0),
            }],
            detections: vec![Detection {
                kind: DetectionKind::SlowQuery,
                route: "POST /api/v1/auth/login".into(),
                subject: "SELECT ?".into(),
                occurrences: 2,
                spans: 2,
                max_ms: 250.0,
                total_ms: 400.0,
                saved_ms: 0.0,
                example_trace: "ab".into(),
            }],
        }
    }

    fn find<'a>(f: &'a [Finding], check: &str) -> &'a Finding {
        f.iter().find(|x| x.check == check).unwrap()
    }

    #[test]
    fn verdicts_follow_the_targets() {
        let t = Targets::default();
        let base = Baseline {
            providers: [("openai/gpt-4o".to_string(), 1000.0)].into(),
        };
        let f = judge(&summary(), &t, Some(&base));
        assert_eq!(find(&f, "api_latency_p95").verdict, Verdict::Warn);
        let r = find(&f, "route_latency_p95");
        assert_eq!(r.verdict, Verdict::Fail);
        assert!(
            r.action.contains("EXPLAIN"),
            "DB-dominated route points at the DB"
        );
        let e = find(&f, "route_error_rate");
        assert_eq!(e.verdict, Verdict::Fail);
        assert!(
            e.evidence.contains("1 of 10") && e.evidence.contains("ab"),
            "{}",
            e.evidence
        );
        // The type has no errors: its error rate passes.
        assert_eq!(find(&f, "api_error_rate").verdict, Verdict::Pass);
        let j = find(&f, "job_avg_time");
        assert_eq!(j.verdict, Verdict::Fail);
        assert!(
            j.evidence
                .contains("enqueued by POST /api/v1/auth/login (150 jobs, 1 failed"),
            "{}",
            j.evidence
        );
        assert_eq!(find(&f, "job_failure_rate").verdict, Verdict::Pass);
        assert_eq!(find(&f, "provider_p95").verdict, Verdict::Fail);
        assert_eq!(find(&f, "slow_query").verdict, Verdict::Warn);
        assert_eq!(find(&f, "n_plus_one").verdict, Verdict::Pass);
        let f = judge(&summary(), &t, None);
        assert_eq!(find(&f, "provider_p95").verdict, Verdict::Pass);
    }
}
