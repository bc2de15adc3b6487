//! The judge: a pure function from a [`Summary`] (and optionally a baseline run) to
//! the runbook's findings. [`findings`] lists every check; each check is one small
//! function below it.

use crate::snapshot::{
    EndpointSummary, LlmSummary, ScenarioSummary, Summary, ThresholdResult, TrendSummary,
};
use powertune_core::finding::Value;
use powertune_core::{units, EndpointType, Finding, Quantity, Targets, Verdict};

const AREA: &str = "load";
const SLOW_ENDPOINT: &str = "Identify the endpoint in APM and inspect its trace breakdown: DB-bound → EXPLAIN ANALYZE the query; Ruby-bound → profile for N+1 queries; external call → check the circuit breaker and provider quota";
const P95_ACTION: &str = "Investigate slow query / serializer";
const P99_ACTION: &str = "Investigate provider timeout or queue contention";
const ERR_ACTION: &str = "Investigate failing endpoints";
const THROUGHPUT_ACTION: &str = "Investigate regression vs. last run";
const STREAM_ACTION: &str = "Check the provider's status and the gateway's circuit breakers; a stall or drop mid-stream points at the provider or a proxy's idle timeout, a malformed chunk at the provider's API version";
const DROPPED_ACTION: &str =
    "Raise max_vus (or max_backlog) so the scenario's arrival rate is really offered, then re-run";

/// The runbook's verdicts on a run, in this order: an aborted run; API latency per
/// endpoint type; the "Thresholds" table (p95, p99, error rate); throughput against
/// the baseline; per scenario, dropped iterations and WebSocket errors; the plan's
/// own thresholds.
pub fn findings(s: &Summary, targets: &Targets, baseline: Option<&Summary>) -> Vec<Finding> {
    let mut out = Vec::new();
    out.extend(run_aborted(s));
    out.extend(nothing_completed(s));
    for e in &s.endpoint_types {
        out.extend(api_latency_p95(e, targets, s.llm.as_ref()));
    }
    out.extend(load_p95(s, targets));
    out.extend(load_p99(s, targets));
    out.extend(load_error_rate(s, targets));
    out.extend(llm_stream_errors(s, targets));
    if let Some(b) = baseline {
        out.push(throughput_vs_baseline(s, b, targets));
    }
    for sc in &s.scenarios {
        out.extend(scenario_completed_nothing(sc));
        out.extend(dropped_iterations(sc));
        out.extend(ws_session_errors(sc));
    }
    out.extend(s.thresholds.iter().map(threshold));
    out
}

/// Pass below `target`, Fail from it on (the "Thresholds" table has no Warn band).
fn below(observed: f64, target: f64) -> Verdict {
    if observed < target {
        Verdict::Pass
    } else {
        Verdict::Fail
    }
}

/// The action, for a verdict other than Pass.
fn unless_pass(v: Verdict, action: &str) -> &str {
    if v == Verdict::Pass {
        ""
    } else {
        action
    }
}

/// A run stopped by an `abort_on_fail` threshold fails.
fn run_aborted(s: &Summary) -> Option<Finding> {
    let reason = s.aborted.as_ref()?;
    Some(
        Finding::new(AREA, "run_aborted", "run", Verdict::Fail)
            .observed("aborted")
            .target("runs to the end")
            .evidence(reason.clone())
            .action(ERR_ACTION),
    )
}

/// Requests that got a response, and WebSocket sessions that connected.
fn completed(s: &Summary) -> u64 {
    let answered: u64 = s.http.status.values().sum();
    let sessions: u64 = s
        .scenarios
        .iter()
        .filter_map(|sc| sc.ws.as_ref())
        .map(|w| w.sessions.saturating_sub(w.errors))
        .sum();
    answered + sessions
}

/// A run that measured nothing never passes: no request got a response and no
/// WebSocket session completed.
fn nothing_completed(s: &Summary) -> Option<Finding> {
    if completed(s) > 0 {
        return None;
    }
    let e = &s.http.errors;
    Some(
        Finding::new(AREA, "nothing_completed", "run", Verdict::Fail)
            .observed(Quantity::count(0.0))
            .target("at least one response")
            .evidence(format!(
                "{} requests sent, none answered (interrupted {}, timeout {}, connect {}, tls {}, protocol {}, invalid {}); nothing was measured",
                s.http.reqs, e.interrupted, e.timeout, e.connect, e.tls, e.protocol, e.invalid
            ))
            .action(ERR_ACTION),
    )
}

/// A scenario that finished no iteration measured nothing of its own.
fn scenario_completed_nothing(sc: &ScenarioSummary) -> Option<Finding> {
    if sc.iterations > 0 {
        return None;
    }
    Some(
        Finding::new(AREA, "scenario_completed_nothing", sc.name.clone(), Verdict::Fail)
            .observed(Quantity::count(0.0))
            .target("at least one iteration")
            .evidence(format!(
                "no iteration of {} finished ({} requests, {} interrupted when its time and graceful stop ran out)",
                sc.name, sc.http.reqs, sc.http.errors.interrupted
            ))
            .action(ERR_ACTION),
    )
}

/// API latency (P95) of one endpoint type: Pass below its target, Warn up to its
/// maximum. No response at all leaves no latency to judge (the error rate fails).
/// The LLM-call row is the end-to-end duration of the LLM steps (their request ends
/// with the answer's last byte); its evidence adds TTFT and tokens/s.
fn api_latency_p95(
    e: &EndpointSummary,
    targets: &Targets,
    llm: Option<&LlmSummary>,
) -> Option<Finding> {
    if e.http.duration.stats.count == 0 {
        return None;
    }
    let band = targets.api.band(e.endpoint_type);
    let p95 = e.http.duration.stats.p95;
    let v = Verdict::lower_is_better(p95, band.target_ms, Some(band.max_ms));
    let mut f = Finding::new(AREA, "api_latency_p95", e.title.clone(), v)
        .observed(Quantity::ms(p95))
        .target(Value::lt(Quantity::ms(band.target_ms)))
        .limit(Quantity::ms(band.max_ms))
        .evidence(format!(
            "{} requests in {}; raw (send→response) p95 {}",
            e.http.reqs,
            e.scenarios.join(", "),
            units::ms(e.http.duration_raw.stats.p95)
        ));
    if let (EndpointType::AiLlm, Some(l)) = (e.endpoint_type, llm) {
        let before = std::mem::take(&mut f.evidence);
        f = f.evidence(format!(
            "{before}; LLM answers {} ({} streamed): TTFT p50 {} p95 {}, tokens/s p50 {}, {} output tokens {}",
            l.responses,
            l.streamed,
            units::ms(l.ttft.stats.med),
            units::ms(l.ttft.stats.p95),
            units::trim(l.tokens_per_s.stats.med, 1),
            l.output_tokens,
            l.token_source()
        ));
    }
    if v != Verdict::Pass {
        f = f.action(SLOW_ENDPOINT);
    }
    Some(f)
}

/// Streamed LLM answers that broke after their 2xx status, below the "Thresholds"
/// table's error rate.
fn llm_stream_errors(s: &Summary, targets: &Targets) -> Option<Finding> {
    let l = s.llm.as_ref().filter(|l| l.streamed > 0)?;
    let e = &l.stream_errors;
    let pct = e.total() as f64 * 100.0 / l.streamed as f64;
    let v = below(pct, targets.load.error_rate_pct);
    Some(
        Finding::new(AREA, "llm_stream_errors", "streamed LLM answers", v)
            .observed(Quantity::percent(pct))
            .target(Value::lt(Quantity::percent(targets.load.error_rate_pct)))
            .evidence(format!(
                "{} of {} streams broke after a 2xx status (provider error {}, malformed chunk {}, stall {}, dropped {})",
                e.total(),
                l.streamed,
                e.provider,
                e.malformed,
                e.stall,
                e.dropped
            ))
            .action(unless_pass(v, STREAM_ACTION)),
    )
}

/// The latency of every request except LLM calls (judged on their own row, in
/// seconds): the "Thresholds" table's P95/P99 are about the API.
fn api_duration(s: &Summary) -> (u64, TrendSummary) {
    if !s
        .endpoint_types
        .iter()
        .any(|e| e.endpoint_type == EndpointType::AiLlm)
    {
        return (s.http.reqs, s.http.duration.clone());
    }
    let mut h = powertune_core::LatencyHistogram::new();
    let mut n = 0;
    for e in s
        .endpoint_types
        .iter()
        .filter(|e| e.endpoint_type != EndpointType::AiLlm)
    {
        n += e.http.reqs;
        let _ = h.merge(&e.http.duration.histogram);
    }
    (n, TrendSummary::from_hist(h))
}

/// Whether any request got a response whose latency can be judged.
fn answered(s: &Summary) -> bool {
    s.http.reqs > 0 && s.http.duration.stats.count > 0
}

/// The subject of the P95/P99 findings.
fn api_subject(s: &Summary) -> &'static str {
    if s.llm.is_some() {
        "all requests but LLM calls"
    } else {
        "all requests"
    }
}

/// p95 of every request (LLM calls aside) below the "Thresholds" table's limit.
fn load_p95(s: &Summary, targets: &Targets) -> Option<Finding> {
    let (n, d) = api_duration(s);
    if !answered(s) || d.stats.count == 0 {
        return None;
    }
    let p95 = d.stats.p95;
    let v = below(p95, targets.load.p95_ms);
    Some(
        Finding::new(AREA, "load_p95", api_subject(s), v)
            .observed(Quantity::ms(p95))
            .target(Value::lt(Quantity::ms(targets.load.p95_ms)))
            .evidence(format!("{n} requests"))
            .action(unless_pass(v, P95_ACTION)),
    )
}

/// p99 of every request (LLM calls aside) below the "Thresholds" table's limit.
fn load_p99(s: &Summary, targets: &Targets) -> Option<Finding> {
    let (_, d) = api_duration(s);
    if !answered(s) || d.stats.count == 0 {
        return None;
    }
    let p99 = d.stats.p99;
    let v = below(p99, targets.load.p99_ms);
    Some(
        Finding::new(AREA, "load_p99", api_subject(s), v)
            .observed(Quantity::ms(p99))
            .target(Value::lt(Quantity::ms(targets.load.p99_ms)))
            .action(unless_pass(v, P99_ACTION)),
    )
}

/// The share of failed requests below the "Thresholds" table's limit.
fn load_error_rate(s: &Summary, targets: &Targets) -> Option<Finding> {
    if s.http.reqs == 0 {
        return None;
    }
    let pct = s.http.failed_rate() * 100.0;
    let v = below(pct, targets.load.error_rate_pct);
    let e = &s.http.errors;
    Some(
        Finding::new(AREA, "load_error_rate", "all requests", v)
            .observed(Quantity::percent(pct))
            .target(Value::lt(Quantity::percent(targets.load.error_rate_pct)))
            .evidence(format!(
                "{} of {} failed (connect {}, tls {}, timeout {}, status ≥400 {}, protocol {}, interrupted {}, invalid {})",
                s.http.failed,
                s.http.reqs,
                e.connect,
                e.tls,
                e.timeout,
                e.status,
                e.protocol,
                e.interrupted,
                e.invalid
            ))
            .action(unless_pass(v, ERR_ACTION)),
    )
}

/// Throughput at least the baseline's × the runbook's ratio (a baseline without
/// throughput passes).
fn throughput_vs_baseline(s: &Summary, b: &Summary, targets: &Targets) -> Finding {
    let ratio = if b.http.rate > 0.0 {
        s.http.rate / b.http.rate
    } else {
        1.0
    };
    let v = if ratio >= targets.load.throughput_ratio_min {
        Verdict::Pass
    } else {
        Verdict::Fail
    };
    Finding::new(AREA, "throughput_vs_baseline", "all requests", v)
        .observed(Quantity::ratio(ratio))
        .target(
            Value::ge(Quantity::ratio(targets.load.throughput_ratio_min)).note("of the baseline"),
        )
        .evidence(format!(
            "{} now, {} in the baseline ({} at {}); at least {} needed",
            units::rate(s.http.rate),
            units::rate(b.http.rate),
            b.source,
            b.started_at,
            units::rate(b.http.rate * targets.load.throughput_ratio_min)
        ))
        .action(unless_pass(v, THROUGHPUT_ACTION))
}

/// An open-model scenario that dropped iterations did not offer its rate.
fn dropped_iterations(sc: &ScenarioSummary) -> Option<Finding> {
    if sc.dropped_iterations == 0 {
        return None;
    }
    Some(
        Finding::new(AREA, "dropped_iterations", sc.name.clone(), Verdict::Warn)
            .observed(Quantity::count(sc.dropped_iterations as f64))
            .target(Quantity::count(0.0))
            .evidence(format!(
                "every VU was busy (up to {}) and the backlog was full",
                sc.vus_max
            ))
            .action(DROPPED_ACTION),
    )
}

/// Any WebSocket session that failed.
fn ws_session_errors(sc: &ScenarioSummary) -> Option<Finding> {
    let w = sc.ws.as_ref().filter(|w| w.errors > 0)?;
    Some(
        Finding::new(AREA, "ws_session_errors", sc.name.clone(), Verdict::Fail)
            .observed(Quantity::count(w.errors as f64))
            .target(Quantity::count(0.0))
            .evidence(format!("{} of {} sessions failed", w.errors, w.sessions))
            .action(ERR_ACTION),
    )
}

/// One of the plan's thresholds, as evaluated.
fn threshold(t: &ThresholdResult) -> Finding {
    let v = if t.ok { Verdict::Pass } else { Verdict::Fail };
    Finding::new(AREA, "threshold", format!("{}: {}", t.metric, t.expr), v)
        .observed(t.observed_value())
        .target(t.target_value())
}

/// The runbook's "investigate regression vs. last run" for latency: WARN when a
/// group's latency is significantly slower than the baseline's beyond the noise
/// margin, PASS otherwise (faster, or no significant change).
pub fn latency_change(c: &crate::compare::LatencyChange) -> Finding {
    let v = if c.verdict == "slower" {
        Verdict::Warn
    } else {
        Verdict::Pass
    };
    Finding::new(AREA, "latency_vs_baseline", &c.group, v)
        .observed(Value::from(c.words.as_str()))
        .target(Value::from(
            "no significant slowdown (Mann–Whitney U, p < 0.01, p95 change beyond 5% and the run-to-run spread)",
        ))
        .evidence(format!(
            "p95 {} → {} (95% interval of the change {} to {}); median change {} ({} to {}); {} vs {} requests over {} vs {} run(s)",
            units::ms(c.p95_baseline_ms),
            units::ms(c.p95_current_ms),
            units::ms(c.p95_low_ms),
            units::ms(c.p95_high_ms),
            units::ms(c.median_delta_ms),
            units::ms(c.median_low_ms),
            units::ms(c.median_high_ms),
            c.baseline_requests,
            c.current_requests,
            c.baseline_runs,
            c.current_runs
        ))
        .action(unless_pass(
            v,
            "Investigate the regression against the last run: compare the endpoint types' P95 in both reports, then profile the slower one (runbook: Performance Investigation)",
        ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::compare;
    use crate::metrics::Shard;
    use crate::plan::Plan;
    use crate::render::render_compare;
    use crate::snapshot::{Collected, WsSummary};
    use crate::thresholds::evaluate;
    use powertune_core::Unit;
    use std::time::Duration;

    const PLAN: &str = r#"
[thresholds]
http_req_duration = "p(95)<300"
[scenarios.login]
endpoint_type = "authentication"
users = 1
duration = "1s"
[[scenarios.login.steps]]
url = "/login"
[scenarios.read]
endpoint_type = "read_crud"
users = 1
duration = "1s"
[[scenarios.read.steps]]
url = "/items"
"#;

    /// A hand-built snapshot: login answers in `auth_ms`, reads in `read_ms`,
    /// `failed` of the 100 reads failed.
    fn summary(auth_ms: u64, read_ms: u64, failed: u64, secs: u64) -> Summary {
        let plan = Plan::from_toml_str(PLAN, "p.toml").unwrap();
        let mut shard = Shard::new(plan.n_series, 2, plan.n_checks);
        for (series, ms) in [(0, auth_ms), (1, read_ms)] {
            let m = &mut shard.series[series];
            for _ in 0..100 {
                m.reqs += 1;
                m.duration.record(Duration::from_millis(ms));
                m.raw.record(Duration::from_millis(ms));
            }
        }
        shard.series[1].failed = failed;
        shard.series[1].errors.status = failed;
        let mut s = Summary::build(Collected {
            plan: &plan,
            shard: &shard,
            elapsed: Duration::from_secs(secs),
            started_at: chrono::Utc::now(),
            base_url: "http://x/",
            vus_max: 2,
            scenario_vus_max: &[1, 1],
            vus: None,
            aborted: None,
        });
        s.thresholds = evaluate(&s, &plan.thresholds);
        s
    }

    fn verdict(f: &[Finding], check: &str, subject: &str) -> Verdict {
        f.iter()
            .find(|x| x.check == check && x.subject.starts_with(subject))
            .map(|x| x.verdict)
            .unwrap_or_else(|| panic!("no {check} {subject} in {f:?}"))
    }

    #[test]
    fn endpoint_bands_and_thresholds_follow_the_runbook() {
        let t = Targets::default();
        // Authentication < 100 ms target, 200 ms max; Read-heavy CRUD < 150, 300.
        let f = findings(&summary(50, 100, 0, 10), &t, None);
        assert_eq!(
            verdict(&f, "api_latency_p95", "Authentication"),
            Verdict::Pass
        );
        assert_eq!(verdict(&f, "api_latency_p95", "Read-heavy"), Verdict::Pass);
        assert_eq!(verdict(&f, "load_error_rate", "all"), Verdict::Pass);
        let f = findings(&summary(150, 400, 2, 10), &t, None);
        let auth = f.iter().find(|x| x.subject == "Authentication").unwrap();
        assert_eq!(auth.verdict, Verdict::Warn);
        assert!(auth.action.contains("trace breakdown"));
        let p95 = auth.observed.quantity().unwrap();
        assert_eq!(p95.unit, Unit::Ms);
        assert!((p95.value - 150.0).abs() < 1.0, "{p95:?}");
        assert_eq!(auth.target, Value::lt(Quantity::ms(100.0)));
        assert_eq!(auth.limit, Some(Value::of(Quantity::ms(200.0))));
        assert_eq!(verdict(&f, "api_latency_p95", "Read-heavy"), Verdict::Fail);
        // 2 of 200 failed = 1% — not below 1%.
        let e = f.iter().find(|x| x.check == "load_error_rate").unwrap();
        assert_eq!(e.verdict, Verdict::Fail);
        assert_eq!(e.observed, Value::of(Quantity::percent(1.0)));
        assert_eq!(e.target, Value::lt(Quantity::percent(1.0)));
        assert_eq!(e.action, "Investigate failing endpoints");
        assert_eq!(verdict(&f, "threshold", "http_req_duration"), Verdict::Fail);
        assert_eq!(verdict(&f, "load_p95", "all"), Verdict::Pass);
    }

    #[test]
    fn throughput_is_judged_against_the_baseline() {
        let t = Targets::default();
        let base = summary(50, 50, 0, 10); // 20 req/s
        let same = summary(50, 50, 0, 12); // 16.7 req/s = 0.83×
        let slow = summary(50, 50, 0, 20); // 10 req/s = 0.5×
        let f = findings(&same, &t, Some(&base));
        assert_eq!(verdict(&f, "throughput_vs_baseline", "all"), Verdict::Pass);
        let f = findings(&slow, &t, Some(&base));
        let tp = f
            .iter()
            .find(|x| x.check == "throughput_vs_baseline")
            .unwrap();
        assert_eq!(tp.verdict, Verdict::Fail);
        assert_eq!(tp.action, "Investigate regression vs. last run");
        assert_eq!(tp.observed, Value::of(Quantity::ratio(0.5)));
        assert_eq!(tp.target.quantity(), Some(Quantity::ratio(0.8)));
        assert!(
            tp.evidence
                .starts_with("10.0/s now, 20.0/s in the baseline"),
            "{}",
            tp.evidence
        );
        let d = compare(&base, &slow);
        assert_eq!(d[0].change_pct, Some(-50.0));
        assert!(render_compare(&d).contains("-50%"));
    }

    #[test]
    fn an_aborted_run_fails_with_its_reason() {
        let mut s = summary(50, 50, 0, 10);
        assert!(run_aborted(&s).is_none());
        s.aborted = Some("threshold http_req_failed: rate<0.01 failed".into());
        let f = run_aborted(&s).unwrap();
        assert_eq!(f.verdict, Verdict::Fail);
        assert!(f.evidence.contains("http_req_failed"));
        assert_eq!(
            findings(&s, &Targets::default(), None)[0].check,
            "run_aborted"
        );
    }

    #[test]
    fn no_answer_leaves_latency_unjudged_but_fails_the_error_rate() {
        let t = Targets::default();
        let mut s = summary(50, 50, 0, 10);
        for e in &mut s.endpoint_types {
            e.http.duration.stats.count = 0;
        }
        s.http.duration.stats.count = 0;
        s.http.failed = s.http.reqs;
        let f = findings(&s, &t, None);
        assert!(!f.iter().any(|x| x.check == "api_latency_p95"));
        assert!(load_p95(&s, &t).is_none() && load_p99(&s, &t).is_none());
        assert_eq!(verdict(&f, "load_error_rate", "all"), Verdict::Fail);
        s.http.reqs = 0;
        assert!(load_error_rate(&s, &t).is_none());
    }

    #[test]
    fn p95_and_p99_fail_at_their_limits() {
        let t = Targets::default();
        let s = summary(50, 50, 0, 10);
        assert_eq!(load_p95(&s, &t).unwrap().action, "");
        let slow = summary(2500, 2500, 0, 10);
        let p95 = load_p95(&slow, &t).unwrap();
        assert_eq!(p95.verdict, Verdict::Fail);
        assert_eq!(p95.action, P95_ACTION);
        assert_eq!(p95.target, Value::lt(Quantity::ms(t.load.p95_ms)));
        assert_eq!(p95.observed.quantity().map(|q| q.unit), Some(Unit::Ms));
        assert_eq!(load_p99(&slow, &t).unwrap().verdict, Verdict::Pass);
        let slower = summary(6000, 6000, 0, 10);
        assert_eq!(load_p99(&slower, &t).unwrap().action, P99_ACTION);
    }

    #[test]
    fn dropped_iterations_warn_and_ws_errors_fail() {
        let mut s = summary(50, 50, 0, 10);
        let sc = &mut s.scenarios[0];
        assert!(dropped_iterations(sc).is_none() && ws_session_errors(sc).is_none());
        sc.dropped_iterations = 7;
        let f = dropped_iterations(sc).unwrap();
        assert_eq!(f.verdict, Verdict::Warn);
        assert_eq!(f.observed, Value::of(Quantity::count(7.0)));
        assert_eq!(f.target, Value::of(Quantity::count(0.0)));
        sc.ws = Some(WsSummary {
            sessions: 4,
            errors: 1,
            msgs_received: 0,
            msgs_sent: 0,
            broadcasts: 0,
            connecting: Default::default(),
            subscribe_duration: Default::default(),
            session_duration: Default::default(),
        });
        let f = ws_session_errors(sc).unwrap();
        assert_eq!(f.verdict, Verdict::Fail);
        assert_eq!(f.observed, Value::of(Quantity::count(1.0)));
        assert_eq!(f.evidence, "1 of 4 sessions failed");
    }

    #[test]
    fn each_threshold_is_a_finding() {
        let s = summary(50, 400, 0, 10);
        let f = threshold(&s.thresholds[0]);
        assert_eq!(f.subject, "http_req_duration: p(95)<300");
        assert_eq!(f.verdict, Verdict::Fail);
        assert_eq!(f.target, Value::lt(Quantity::ms(300.0)).note("p(95)<300"));
        let observed = f.observed.quantity().unwrap();
        assert_eq!(observed.unit, Unit::Ms);
        assert!(observed.value > 300.0, "{observed:?}");
        let ok = summary(50, 50, 0, 10);
        assert_eq!(threshold(&ok.thresholds[0]).verdict, Verdict::Pass);
    }
}
