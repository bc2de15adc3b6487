//! The judge: pure functions from the snapshot ([`Summary`], or one route's
//! [`EndpointDetail`]) and the targets (and an optional provider baseline) to
//! findings. [`judge`] and [`judge_endpoint`] list every check; each check is one
//! small function below them. Observed figures, targets and limits are typed
//! [`Value`]s; only renderers write them out (through [`powertune_core::units`]).

use crate::snapshot::{
    Baseline, Detection, DetectionKind, EndpointDetail, JobSummary, Latency, ProviderSummary,
    RouteSummary, Summary, TypeSummary,
};
use powertune_core::units::{self, Quantity};
use powertune_core::{Finding, Targets, Value, Verdict};

mod cache;
pub use cache::{cache_hit_rates, not_judged};

const AREA: &str = "apm";

/// Every check of `apm report` / `apm analyze`, over the whole window.
pub fn judge(s: &Summary, t: &Targets, baseline: Option<&Baseline>) -> Vec<Finding> {
    let mut f = Vec::new();
    f.extend(s.types.iter().map(|ty| type_latency(ty, t)));
    f.extend(s.types.iter().filter_map(|ty| type_error_rate(ty, t)));
    for r in &s.routes {
        f.push(route_latency(r, t));
        f.extend(route_error_rate(r, t));
    }
    for j in &s.jobs {
        let by = enqueued_by(s, &j.class);
        f.push(job_avg_time(j, t, &by));
        f.push(job_failure_rate(j, t, &by));
    }
    f.extend(s.providers.iter().map(|p| provider_p95(p, t, baseline)));
    f.extend(s.detections.iter().map(|d| detection(d, t)));
    f.extend(no_n_plus_one(&s.detections, !s.routes.is_empty(), t));
    f.extend(cache_hit_rates(&s.cache, t));
    f
}

/// Every check of `apm endpoint`: the route's own checks and its detections.
pub fn judge_endpoint(d: &EndpointDetail, t: &Targets) -> Vec<Finding> {
    let mut f = vec![route_latency(&d.route, t)];
    f.extend(route_error_rate(&d.route, t));
    f.extend(d.detections.iter().map(|x| detection(x, t)));
    f.extend(no_n_plus_one(&d.detections, true, t));
    f
}

/// P95 per endpoint type against the runbook's API band for that type.
pub fn type_latency(ty: &TypeSummary, t: &Targets) -> Finding {
    let band = t.api.band(ty.endpoint_type);
    let l = &ty.latency;
    Finding::new(AREA, "api_latency_p95", ty.endpoint_type.title(), Verdict::lower_is_better(l.p95_ms, band.target_ms, Some(band.max_ms)))
        .observed(Value::of(Quantity::ms(l.p95_ms)))
        .target(Value::lt(Quantity::ms(band.target_ms)))
        .limit(Value::of(Quantity::ms(band.max_ms)))
        .evidence(format!("{} requests, {} errors ({}), p50 {}, p99 {}, max {}", l.count, l.errors, units::percent(l.error_rate_pct()), units::ms(l.p50_ms), units::ms(l.p99_ms), units::ms(l.max_ms)))
        .action("Find the slowest routes of this type (powertune apm endpoint \"ROUTE\") and inspect their trace breakdown: DB, application code or downstream HTTP")
}

/// Error rate per endpoint type (the runbook's threshold: error rate < 1%); none
/// for a type without requests.
pub fn type_error_rate(ty: &TypeSummary, t: &Targets) -> Option<Finding> {
    (ty.latency.count > 0).then(|| {
        error_rate(
            "api_error_rate",
            ty.endpoint_type.title(),
            &ty.latency,
            t,
            "Investigate the failing endpoints: find the routes of this type with errors (route_error_rate) and open an example trace",
        )
    })
}

/// P95 of one route against its type's band; the action follows the layer where
/// the route spends most of its time.
pub fn route_latency(r: &RouteSummary, t: &Targets) -> Finding {
    let band = t.api.band(r.endpoint_type);
    let l = &r.latency;
    let v = Verdict::lower_is_better(l.p95_ms, band.target_ms, Some(band.max_ms));
    let (db, http, app) = r.breakdown.shares();
    let slow = r
        .slowest
        .first()
        .map(|x| {
            format!(
                "; slowest trace {} ({})",
                x.trace_id,
                units::ms(x.duration_ms)
            )
        })
        .unwrap_or_default();
    let action = match r.breakdown.dominant() {
        "database" => "DB-bound: run EXPLAIN ANALYZE on the offending query; look for seq scans, large sorts or missing indexes",
        "application code" => "Ruby-bound: profile the controller with rack-mini-profiler; check for N+1 queries (bullet)",
        _ => "External call-bound: check circuit breaker state and provider quota",
    };
    Finding::new(AREA, "route_latency_p95", &r.route, v)
        .observed(Value::of(Quantity::ms(l.p95_ms)))
        .target(Value::lt(Quantity::ms(band.target_ms)))
        .limit(Value::of(Quantity::ms(band.max_ms)))
        .evidence(format!(
            "{}; {} requests; time in DB {}, outgoing HTTP {}, app {}{slow}",
            r.endpoint_type.title(),
            l.count,
            share(db),
            share(http),
            share(app),
        ))
        .action(action)
}

/// Error rate of one route; none for a route without errors.
pub fn route_error_rate(r: &RouteSummary, t: &Targets) -> Option<Finding> {
    (r.latency.errors > 0).then(|| {
        error_rate(
            "route_error_rate",
            &r.route,
            &r.latency,
            t,
            "Investigate the failing endpoint: open an example trace and read its error status and exception",
        )
    })
}

/// A job class's average time against the runbook's worker target; `by` names the
/// routes that enqueued it.
pub fn job_avg_time(j: &JobSummary, t: &Targets, by: &str) -> Finding {
    let l = &j.latency;
    let avg_s = l.avg_ms / 1000.0;
    Finding::new(AREA, "job_avg_time", &j.class, Verdict::lower_is_better(avg_s, t.worker.job_avg_s, None))
        .observed(Value::of(Quantity::seconds(avg_s)).note("average"))
        .target(Value::lt(Quantity::seconds(t.worker.job_avg_s)))
        .evidence(format!(
            "{} jobs, p95 {}, max {}, {} slower than {}{}",
            l.count,
            units::ms(l.p95_ms),
            units::ms(l.max_ms),
            j.slow,
            units::ms(t.apm.job_slow_ms),
            j.example_trace.as_ref().map(|x| format!("; slowest trace {x}")).unwrap_or_default()
        ) + by)
        .action("Slow job: profile the job; bring the long path under a circuit breaker or split it into smaller jobs")
}

/// A job class's failure rate against the runbook's failed-job target.
pub fn job_failure_rate(j: &JobSummary, t: &Targets, by: &str) -> Finding {
    let l = &j.latency;
    let rate = l.error_rate_pct();
    Finding::new(
        AREA,
        "job_failure_rate",
        &j.class,
        Verdict::lower_is_better(rate, t.worker.failed_rate_pct, None),
    )
    .observed(Value::of(Quantity::percent(rate)))
    .target(Value::lt(Quantity::percent(t.worker.failed_rate_pct)))
    .evidence(format!(
        "{} of {} jobs failed{}{by}",
        l.errors,
        l.count,
        examples(l)
    ))
    .action("Inspect Sidekiq::RetrySet; investigate the top retried job class")
}

/// A provider's P95 against its saved baseline, as a ratio to it; a pass that says
/// so without one.
pub fn provider_p95(p: &ProviderSummary, t: &Targets, baseline: Option<&Baseline>) -> Finding {
    let l = &p.latency;
    match baseline.and_then(|b| b.providers.get(&p.key)) {
        Some(&base) if base > 0.0 => {
            let ratio = l.p95_ms / base;
            Finding::new(
                AREA,
                "provider_p95",
                &p.key,
                Verdict::lower_is_better(ratio, t.ai.provider_p95_ratio_max, None),
            )
            .observed(
                Value::of(Quantity::ratio(ratio)).note(format!("p95 {}", units::ms(l.p95_ms))),
            )
            .target(
                Value::lt(Quantity::ratio(t.ai.provider_p95_ratio_max))
                    .note(format!("baseline p95 {}", units::ms(base))),
            )
            .evidence(provider_evidence(p))
            .action("Check the provider's status page; lower the call rate via worker concurrency")
        }
        _ => Finding::new(AREA, "provider_p95", &p.key, Verdict::Pass)
            .observed(Value::of(Quantity::ms(l.p95_ms)).note("p95"))
            .target("no baseline saved (use --save-baseline)")
            .evidence(provider_evidence(p)),
    }
}

/// "N calls, E errors" and what the GenAI attributes tell: calls through the
/// gateway, retries, tokens, time to first chunk.
fn provider_evidence(p: &ProviderSummary) -> String {
    let l = &p.latency;
    let mut e = format!("{} calls, {} errors", l.count, l.errors);
    if p.via_gateway > 0 {
        e.push_str(&format!(", {} through the gateway", p.via_gateway));
    }
    if p.retries > 0 {
        e.push_str(&format!(", {} retries", p.retries));
    }
    if p.input_tokens + p.output_tokens > 0 {
        e.push_str(&format!(
            ", tokens {} in / {} out",
            p.input_tokens, p.output_tokens
        ));
    }
    if let Some(t) = &p.ttft {
        e.push_str(&format!(
            ", time to first chunk p50 {} p95 {} ({} streamed)",
            units::ms(t.p50_ms),
            units::ms(t.p95_ms),
            t.count
        ));
    }
    e
}

/// One detector's hits, judged by kind.
pub fn detection(d: &Detection, t: &Targets) -> Finding {
    match d.kind {
        DetectionKind::NPlusOne => n_plus_one(d, t),
        DetectionKind::SlowQuery => slow_query(d, t),
        DetectionKind::SlowRequest => slow_request(d, t),
        DetectionKind::ConsecutiveQueries => consecutive_queries(d),
        DetectionKind::SlowJob => slow_job(d, t),
        DetectionKind::SlowMission => slow_mission(d, t),
        DetectionKind::SlowAgent => slow_agent(d, t),
    }
}

fn subject_of(d: &Detection) -> String {
    format!("{} — {}", d.route, d.subject)
}

/// The runbook's "N+1 queries: 0" as a bound on the count of patterns.
fn n_plus_one_target(t: &Targets) -> Value {
    Value::le(Quantity::count(f64::from(t.database.n_plus_one_max))).note("N+1 patterns")
}

/// Repeated identical queries under one parent: always a failure.
pub fn n_plus_one(d: &Detection, t: &Targets) -> Finding {
    let per_request = d.spans / d.occurrences.max(1);
    Finding::new(AREA, "n_plus_one", subject_of(d), Verdict::Fail)
        .observed(
            Value::of(Quantity::count(per_request as f64))
                .note("repeated queries in one request, max"),
        )
        .target(n_plus_one_target(t))
        .evidence(evidence_of(d))
        .action("Load the association with .includes() instead of one query per record")
}

/// A pass line when no N+1 pattern was seen and there were requests to look at.
pub fn no_n_plus_one(detections: &[Detection], any_routes: bool, t: &Targets) -> Option<Finding> {
    let none = !detections.iter().any(|d| d.kind == DetectionKind::NPlusOne);
    (none && any_routes).then(|| {
        Finding::new(AREA, "n_plus_one", "all routes", Verdict::Pass)
            .observed(Value::of(Quantity::count(0.0)).note("patterns"))
            .target(n_plus_one_target(t))
    })
}

/// A query slower than the runbook's query target (WARN) or its slow mark (FAIL).
pub fn slow_query(d: &Detection, t: &Targets) -> Finding {
    let v = Verdict::lower_is_better(
        d.max_ms,
        t.database.max_query_ms,
        Some(t.database.slow_query_ms),
    );
    Finding::new(AREA, "slow_query", subject_of(d), v)
        .observed(slowest_of(d))
        .target(Value::lt(Quantity::ms(t.database.max_query_ms)))
        .limit(Value::of(Quantity::ms(t.database.slow_query_ms)))
        .evidence(evidence_of(d))
        .action(
            "Run EXPLAIN ANALYZE on the query; look for seq scans, large sorts or missing indexes",
        )
}

/// Requests slower than the slow-request mark.
pub fn slow_request(d: &Detection, t: &Targets) -> Finding {
    Finding::new(AREA, "slow_request", &d.route, Verdict::Warn)
        .observed(slowest_of(d))
        .target(Value::lt(Quantity::ms(t.apm.slow_request_ms)))
        .evidence(evidence_of(d))
        .action("Inspect the trace breakdown of the slowest trace: DB, application code or downstream HTTP")
}

/// Independent queries run one after another that could run together.
pub fn consecutive_queries(d: &Detection) -> Finding {
    let n = d.occurrences.max(1);
    Finding::new(AREA, "consecutive_queries", subject_of(d), Verdict::Warn)
        .observed(
            Value::of(Quantity::ms(d.saved_ms / n as f64))
                .note(format!("could be saved, {} queries in a row", d.spans / n)),
        )
        .target("independent queries run together")
        .evidence(evidence_of(d))
        .action(
            "Run the independent queries in parallel (load_async) or combine them into one query",
        )
}

/// Jobs slower than the slow-job mark.
pub fn slow_job(d: &Detection, t: &Targets) -> Finding {
    Finding::new(AREA, "slow_job", &d.subject, Verdict::Warn)
        .observed(slowest_of(d))
        .target(Value::lt(Quantity::ms(t.apm.job_slow_ms)))
        .evidence(evidence_of(d))
        .action("Profile the job; bring the long path under a circuit breaker or split it into smaller jobs")
}

/// Mission spans slower than the mission mark.
pub fn slow_mission(d: &Detection, t: &Targets) -> Finding {
    Finding::new(AREA, "slow_mission", subject_of(d), Verdict::Warn)
        .observed(slowest_of(d))
        .target(Value::lt(Quantity::ms(t.apm.mission_slow_ms)))
        .evidence(evidence_of(d))
        .action(
            "Check provider quota and open circuit breakers; inspect the mission's slowest trace",
        )
}

/// Agent execution spans slower than the agent mark.
pub fn slow_agent(d: &Detection, t: &Targets) -> Finding {
    Finding::new(AREA, "slow_agent_execution", subject_of(d), Verdict::Warn)
        .observed(slowest_of(d))
        .target(Value::lt(Quantity::ms(t.apm.agent_slow_ms)))
        .evidence(evidence_of(d))
        .action("Check the provider's circuit breaker state and quota; route latency-sensitive flows to a faster model")
}

/// The slowest occurrence of a detection, noting how many there were:
/// `1.2s (max of 4)`.
fn slowest_of(d: &Detection) -> Value {
    Value::of(Quantity::ms(d.max_ms)).note(format!("max of {}", d.occurrences))
}

/// A share of time, to the whole percent: `70%`.
fn share(pct: f64) -> String {
    units::percent(pct.round())
}

fn evidence_of(d: &Detection) -> String {
    format!(
        "{} occurrence(s), {} span(s), max {}, total {}; route {}; example trace {}",
        d.occurrences,
        d.spans,
        units::ms(d.max_ms),
        units::ms(d.total_ms),
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
    .observed(Value::of(Quantity::percent(rate)))
    .target(Value::lt(Quantity::percent(t.load.error_rate_pct)))
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
                units::ms(l.latency.avg_ms)
            )
        })
        .collect();
    format!("; enqueued by {}", list.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::*;
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
                via_gateway: 0,
                input_tokens: 0,
                output_tokens: 0,
                retries: 0,
                ttft: None,
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
            cache: CacheSummary::default(),
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
        let ty = find(&f, "api_latency_p95");
        assert_eq!(ty.verdict, Verdict::Warn);
        let band = t.api.band(EndpointType::Authentication);
        assert_eq!(ty.observed, Value::of(Quantity::ms(150.0)));
        assert_eq!(ty.target, Value::lt(Quantity::ms(band.target_ms)));
        assert_eq!(ty.limit, Some(Value::of(Quantity::ms(band.max_ms))));
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
        assert_eq!(
            j.observed,
            Value::of(Quantity::seconds(6.0)).note("average")
        );
        assert_eq!(j.target, Value::lt(Quantity::seconds(t.worker.job_avg_s)));
        assert!(
            j.evidence
                .contains("enqueued by POST /api/v1/auth/login (150 jobs, 1 failed"),
            "{}",
            j.evidence
        );
        let jf = find(&f, "job_failure_rate");
        assert_eq!(jf.verdict, Verdict::Pass);
        assert_eq!(jf.observed, Value::of(Quantity::percent(0.5)));
        assert_eq!(
            jf.target,
            Value::lt(Quantity::percent(t.worker.failed_rate_pct))
        );
        let p = find(&f, "provider_p95");
        assert_eq!(p.verdict, Verdict::Fail);
        assert_eq!(p.observed, Value::of(Quantity::ratio(3.0)).note("p95 3s"));
        assert_eq!(
            p.target,
            Value::lt(Quantity::ratio(t.ai.provider_p95_ratio_max)).note("baseline p95 1s")
        );
        let q = find(&f, "slow_query");
        assert_eq!(q.verdict, Verdict::Warn);
        assert_eq!(q.observed, Value::of(Quantity::ms(250.0)).note("max of 2"));
        assert_eq!(q.observed.text(), "250ms (max of 2)");
        assert_eq!(q.target, Value::lt(Quantity::ms(t.database.max_query_ms)));
        assert_eq!(
            q.limit,
            Some(Value::of(Quantity::ms(t.database.slow_query_ms)))
        );
        let n = find(&f, "n_plus_one");
        assert_eq!(n.verdict, Verdict::Pass);
        assert_eq!(n.observed.quantity(), Some(Quantity::count(0.0)));
        assert_eq!(
            n.target,
            Value::le(Quantity::count(0.0)).note("N+1 patterns")
        );
        let f = judge(&summary(), &t, None);
        assert_eq!(find(&f, "provider_p95").verdict, Verdict::Pass);
    }

    fn detection_of(kind: DetectionKind, max_ms: f64) -> Detection {
        Detection {
            kind,
            route: "GET /x".into(),
            subject: "SELECT ?".into(),
            occurrences: 2,
            spans: 12,
            max_ms,
            total_ms: 2.0 * max_ms,
            saved_ms: 300.0,
            example_trace: "ab".into(),
        }
    }

    fn route(p95: f64, errors: u64, bd: (f64, f64, f64)) -> RouteSummary {
        RouteSummary {
            route: "GET /x".into(),
            endpoint_type: EndpointType::ReadCrud,
            latency: lat(10, errors, p95, p95),
            breakdown: Breakdown {
                db_ms: bd.0,
                http_ms: bd.1,
                app_ms: bd.2,
            },
            slowest: vec![TraceRef {
                trace_id: "cd".into(),
                duration_ms: p95,
            }],
        }
    }

    #[test]
    fn type_latency_follows_the_band_of_its_type() {
        let t = Targets::default();
        let band = t.api.band(EndpointType::ReadCrud);
        let ty = |p95| TypeSummary {
            endpoint_type: EndpointType::ReadCrud,
            latency: lat(10, 0, p95, p95),
        };
        assert_eq!(
            type_latency(&ty(band.target_ms / 2.0), &t).verdict,
            Verdict::Pass
        );
        assert_eq!(
            type_latency(&ty(band.max_ms * 2.0), &t).verdict,
            Verdict::Fail
        );
        let f = type_latency(&ty(band.max_ms * 2.0), &t);
        assert_eq!(f.subject, EndpointType::ReadCrud.title());
        assert!(
            f.evidence.starts_with("10 requests, 0 errors"),
            "{}",
            f.evidence
        );
    }

    #[test]
    fn type_error_rate_needs_requests() {
        let t = Targets::default();
        let mut ty = TypeSummary {
            endpoint_type: EndpointType::ReadCrud,
            latency: lat(0, 0, 0.0, 0.0),
        };
        assert!(type_error_rate(&ty, &t).is_none());
        ty.latency = lat(100, 5, 10.0, 10.0);
        let f = type_error_rate(&ty, &t).unwrap();
        assert_eq!(
            (f.verdict, &f.observed),
            (Verdict::Fail, &Value::of(Quantity::percent(5.0)))
        );
        assert_eq!(f.observed.text(), "5%");
        assert_eq!(
            f.target,
            Value::lt(Quantity::percent(t.load.error_rate_pct))
        );
        assert!(
            f.evidence.contains("example failing traces ab"),
            "{}",
            f.evidence
        );
    }

    #[test]
    fn route_latency_points_at_the_dominant_layer() {
        let t = Targets::default();
        let f = route_latency(&route(10.0, 0, (70.0, 10.0, 20.0)), &t);
        assert_eq!(f.verdict, Verdict::Pass);
        assert_eq!(f.observed.quantity(), Some(Quantity::ms(10.0)));
        assert!(
            f.evidence
                .contains("time in DB 70%, outgoing HTTP 10%, app 20%"),
            "{}",
            f.evidence
        );
        assert!(f.action.starts_with("DB-bound"), "{}", f.action);
        assert!(f.evidence.contains("slowest trace cd"), "{}", f.evidence);
        let f = route_latency(&route(10.0, 0, (10.0, 10.0, 80.0)), &t);
        assert!(f.action.starts_with("Ruby-bound"), "{}", f.action);
        let f = route_latency(&route(10.0, 0, (10.0, 80.0, 10.0)), &t);
        assert!(f.action.starts_with("External call-bound"), "{}", f.action);
    }

    #[test]
    fn route_error_rate_only_for_routes_with_errors() {
        let t = Targets::default();
        assert!(route_error_rate(&route(10.0, 0, (1.0, 1.0, 1.0)), &t).is_none());
        let f = route_error_rate(&route(10.0, 1, (1.0, 1.0, 1.0)), &t).unwrap();
        assert_eq!(
            (f.check.as_str(), f.verdict),
            ("route_error_rate", Verdict::Fail)
        );
    }

    #[test]
    fn job_checks_carry_the_enqueuing_routes() {
        let t = Targets::default();
        let j = JobSummary {
            class: "SyncJob".into(),
            latency: lat(100, 0, 100.0, 100.0),
            slow: 0,
            example_trace: Some("ef".into()),
        };
        let f = job_avg_time(&j, &t, "; enqueued by R");
        assert_eq!(f.verdict, Verdict::Pass);
        assert!(
            f.evidence.ends_with("; slowest trace ef; enqueued by R"),
            "{}",
            f.evidence
        );
        let f = job_failure_rate(&j, &t, "; enqueued by R");
        assert_eq!(f.verdict, Verdict::Pass);
        assert_eq!(f.evidence, "0 of 100 jobs failed; enqueued by R");
    }

    #[test]
    fn enqueued_by_lists_the_busiest_routes_first() {
        let mut s = summary();
        assert_eq!(enqueued_by(&s, "OtherJob"), "");
        s.linked_jobs.push(LinkedJobs {
            route: "POST /b".into(),
            class: "SyncJob".into(),
            latency: lat(900, 0, 10.0, 10.0),
        });
        let by = enqueued_by(&s, "SyncJob");
        assert!(by.starts_with("; enqueued by POST /b (900 jobs"), "{by}");
    }

    #[test]
    fn provider_p95_against_a_baseline_or_without_one() {
        let t = Targets::default();
        let p = ProviderSummary {
            key: "openai/gpt-4o".into(),
            latency: lat(5, 0, 1000.0, 800.0),
            via_gateway: 0,
            input_tokens: 0,
            output_tokens: 0,
            retries: 0,
            ttft: None,
        };
        let base = |ms: f64| Baseline {
            providers: [("openai/gpt-4o".to_string(), ms)].into(),
        };
        assert_eq!(
            provider_p95(&p, &t, Some(&base(900.0))).verdict,
            Verdict::Pass
        );
        assert_eq!(
            provider_p95(&p, &t, Some(&base(100.0))).verdict,
            Verdict::Fail
        );
        let f = provider_p95(&p, &t, Some(&base(800.0)));
        assert_eq!(f.observed.quantity(), Some(Quantity::ratio(1.25)));
        assert_eq!(f.observed.text(), "1.25× (p95 1s)");
        assert_eq!(f.target.text(), "< 2.00× (baseline p95 800ms)");
        for b in [None, Some(base(0.0))] {
            let f = provider_p95(&p, &t, b.as_ref());
            assert_eq!(f.verdict, Verdict::Pass);
            assert_eq!(f.observed, Value::of(Quantity::ms(1000.0)).note("p95"));
            assert_eq!(f.target, "no baseline saved (use --save-baseline)");
        }
    }

    #[test]
    fn each_detection_kind_has_its_check_and_verdict() {
        let t = Targets::default();
        let cases = [
            (DetectionKind::NPlusOne, "n_plus_one", Verdict::Fail),
            (DetectionKind::SlowRequest, "slow_request", Verdict::Warn),
            (
                DetectionKind::ConsecutiveQueries,
                "consecutive_queries",
                Verdict::Warn,
            ),
            (DetectionKind::SlowJob, "slow_job", Verdict::Warn),
            (DetectionKind::SlowMission, "slow_mission", Verdict::Warn),
            (
                DetectionKind::SlowAgent,
                "slow_agent_execution",
                Verdict::Warn,
            ),
        ];
        for (kind, check, verdict) in cases {
            let f = detection(&detection_of(kind, 150.0), &t);
            assert_eq!((f.check.as_str(), f.verdict), (check, verdict), "{kind:?}");
            assert!(f.evidence.contains("example trace ab"), "{}", f.evidence);
        }
        let f = n_plus_one(&detection_of(DetectionKind::NPlusOne, 10.0), &t);
        assert_eq!(
            f.observed,
            Value::of(Quantity::count(6.0)).note("repeated queries in one request, max")
        );
        assert_eq!(
            f.target,
            Value::le(Quantity::count(0.0)).note("N+1 patterns")
        );
        assert_eq!(f.subject, "GET /x — SELECT ?");
        let f = consecutive_queries(&detection_of(DetectionKind::ConsecutiveQueries, 10.0));
        assert_eq!(
            f.observed,
            Value::of(Quantity::ms(150.0)).note("could be saved, 6 queries in a row")
        );
        assert_eq!(
            f.observed.text(),
            "150ms (could be saved, 6 queries in a row)"
        );
        assert_eq!(f.target, "independent queries run together");
        // The slow-span detectors: the slowest occurrence against the kind's mark.
        let marks = [
            (DetectionKind::SlowRequest, t.apm.slow_request_ms),
            (DetectionKind::SlowJob, t.apm.job_slow_ms),
            (DetectionKind::SlowMission, t.apm.mission_slow_ms),
            (DetectionKind::SlowAgent, t.apm.agent_slow_ms),
        ];
        for (kind, mark) in marks {
            let f = detection(&detection_of(kind, 1200.0), &t);
            assert_eq!(
                f.observed,
                Value::of(Quantity::ms(1200.0)).note("max of 2"),
                "{kind:?}"
            );
            assert_eq!(f.observed.text(), "1.2s (max of 2)");
            assert_eq!(f.target, Value::lt(Quantity::ms(mark)), "{kind:?}");
        }
        assert_eq!(
            slow_job(&detection_of(DetectionKind::SlowJob, 1.0), &t).subject,
            "SELECT ?"
        );
        assert_eq!(
            slow_request(&detection_of(DetectionKind::SlowRequest, 1.0), &t).subject,
            "GET /x"
        );
    }

    #[test]
    fn slow_query_warns_then_fails() {
        let t = Targets::default();
        let d = |ms| detection_of(DetectionKind::SlowQuery, ms);
        let between = (t.database.max_query_ms + t.database.slow_query_ms) / 2.0;
        assert_eq!(slow_query(&d(between), &t).verdict, Verdict::Warn);
        assert_eq!(
            slow_query(&d(t.database.slow_query_ms * 2.0), &t).verdict,
            Verdict::Fail
        );
    }

    #[test]
    fn no_n_plus_one_passes_only_with_routes_and_no_pattern() {
        let t = Targets::default();
        assert!(no_n_plus_one(&[], true, &t).is_some());
        assert!(no_n_plus_one(&[], false, &t).is_none());
        let d = [detection_of(DetectionKind::NPlusOne, 1.0)];
        assert!(no_n_plus_one(&d, true, &t).is_none());
        let d = [detection_of(DetectionKind::SlowQuery, 1.0)];
        assert_eq!(no_n_plus_one(&d, true, &t).unwrap().verdict, Verdict::Pass);
    }

    #[test]
    fn the_endpoint_judge_is_the_summary_judge_of_that_route_alone() {
        let t = Targets::default();
        for detections in [
            vec![],
            vec![
                detection_of(DetectionKind::NPlusOne, 20.0),
                detection_of(DetectionKind::SlowQuery, 300.0),
            ],
        ] {
            let d = EndpointDetail {
                route: route(900.0, 3, (1.0, 2.0, 3.0)),
                detections,
                linked_jobs: vec![],
                slowest: vec![],
            };
            let alone = Summary {
                schema: SUMMARY_SCHEMA.to_string(),
                window_s: None,
                ingest: Default::default(),
                types: vec![],
                routes: vec![d.route.clone()],
                jobs: vec![],
                providers: vec![],
                detections: d.detections.clone(),
                linked_jobs: d.linked_jobs.clone(),
                cache: Default::default(),
            };
            assert_eq!(judge_endpoint(&d, &t), judge(&alone, &t, None));
        }
    }
}
