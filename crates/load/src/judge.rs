//! The judge: a pure function from a [`Summary`] (and optionally a baseline run) to
//! the runbook's findings, and the run-to-run comparison.

use crate::summary::Summary;
use powertune_core::report::{table, Style};
use powertune_core::{Finding, Report, Targets, Verdict};
use serde::{Deserialize, Serialize};

const AREA: &str = "load";
const SLOW_ENDPOINT: &str = "Identify the endpoint in APM and inspect its trace breakdown: DB-bound → EXPLAIN ANALYZE the query; Ruby-bound → profile for N+1 queries; external call → check the circuit breaker and provider quota";
const P95_ACTION: &str = "Investigate slow query / serializer";
const P99_ACTION: &str = "Investigate provider timeout or queue contention";
const ERR_ACTION: &str = "Investigate failing endpoints";
const THROUGHPUT_ACTION: &str = "Investigate regression vs. last run";

fn ms(v: f64) -> String {
    format!("{v:.1}ms")
}

/// The runbook's verdicts on a run.
pub fn findings(s: &Summary, targets: &Targets, baseline: Option<&Summary>) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(reason) = &s.aborted {
        out.push(
            Finding::new(AREA, "run_aborted", "run", Verdict::Fail)
                .observed("aborted")
                .target("runs to the end")
                .evidence(reason.clone())
                .action(ERR_ACTION),
        );
    }
    // API latency (P95) per endpoint type: PASS below target, WARN up to the maximum.
    for e in &s.endpoint_types {
        // No response at all: there is no latency to judge (the error rate fails).
        if e.http.duration.stats.count == 0 {
            continue;
        }
        let band = targets.api.band(e.endpoint_type);
        let p95 = e.http.duration.stats.p95;
        let v = Verdict::lower_is_better(p95, band.target_ms, Some(band.max_ms));
        let mut f = Finding::new(AREA, "api_latency_p95", e.title.clone(), v)
            .observed(ms(p95))
            .target(format!("< {}", ms(band.target_ms)))
            .limit(ms(band.max_ms))
            .evidence(format!(
                "{} requests in {}; raw (send→response) p95 {}",
                e.http.reqs,
                e.scenarios.join(", "),
                ms(e.http.duration_raw.stats.p95)
            ));
        if v != Verdict::Pass {
            f = f.action(SLOW_ENDPOINT);
        }
        out.push(f);
    }
    // The "Thresholds" table.
    let answered = s.http.duration.stats.count > 0;
    if s.http.reqs > 0 {
        let lt = |observed: f64, target: f64| {
            if observed < target {
                Verdict::Pass
            } else {
                Verdict::Fail
            }
        };
        if answered {
            let p95 = s.http.duration.stats.p95;
            let v = lt(p95, targets.load.p95_ms);
            out.push(
                Finding::new(AREA, "load_p95", "all requests", v)
                    .observed(ms(p95))
                    .target(format!("< {}", ms(targets.load.p95_ms)))
                    .evidence(format!("{} requests", s.http.reqs))
                    .action(if v == Verdict::Pass { "" } else { P95_ACTION }),
            );
            let p99 = s.http.duration.stats.p99;
            let v = lt(p99, targets.load.p99_ms);
            out.push(
                Finding::new(AREA, "load_p99", "all requests", v)
                    .observed(ms(p99))
                    .target(format!("< {}", ms(targets.load.p99_ms)))
                    .action(if v == Verdict::Pass { "" } else { P99_ACTION }),
            );
        }
        let pct = s.http.failed_rate() * 100.0;
        let v = lt(pct, targets.load.error_rate_pct);
        let e = &s.http.errors;
        out.push(
            Finding::new(AREA, "load_error_rate", "all requests", v)
                .observed(format!("{pct:.2}%"))
                .target(format!("< {}%", targets.load.error_rate_pct))
                .evidence(format!(
                    "{} of {} failed (connect {}, tls {}, timeout {}, status ≥400 {}, protocol {})",
                    s.http.failed, s.http.reqs, e.connect, e.tls, e.timeout, e.status, e.protocol
                ))
                .action(if v == Verdict::Pass { "" } else { ERR_ACTION }),
        );
    }
    if let Some(b) = baseline {
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
        out.push(
            Finding::new(AREA, "throughput_vs_baseline", "all requests", v)
                .observed(format!("{:.1} req/s ({:.2}× baseline)", s.http.rate, ratio))
                .target(format!(
                    "≥ baseline × {} ({:.1} req/s)",
                    targets.load.throughput_ratio_min,
                    b.http.rate * targets.load.throughput_ratio_min
                ))
                .evidence(format!("baseline {} at {}", b.source, b.started_at))
                .action(if v == Verdict::Pass {
                    ""
                } else {
                    THROUGHPUT_ACTION
                }),
        );
    }
    for sc in &s.scenarios {
        if sc.dropped_iterations > 0 {
            out.push(
                Finding::new(AREA, "dropped_iterations", sc.name.clone(), Verdict::Warn)
                    .observed(sc.dropped_iterations.to_string())
                    .target("0")
                    .evidence(format!(
                        "every VU was busy (up to {}) and the backlog was full",
                        sc.vus_max
                    ))
                    .action("Raise max_vus (or max_backlog) so the scenario's arrival rate is really offered, then re-run"),
            );
        }
        if let Some(w) = &sc.ws {
            if w.errors > 0 {
                out.push(
                    Finding::new(AREA, "ws_session_errors", sc.name.clone(), Verdict::Fail)
                        .observed(format!("{} of {} sessions", w.errors, w.sessions))
                        .target("0")
                        .action(ERR_ACTION),
                );
            }
        }
    }
    for t in &s.thresholds {
        let v = if t.ok { Verdict::Pass } else { Verdict::Fail };
        out.push(
            Finding::new(AREA, "threshold", format!("{}: {}", t.metric, t.expr), v)
                .observed(t.observed.map_or("n/a".into(), |o| format!("{o:.3}")))
                .target(t.expr.clone()),
        );
    }
    out
}

/// One line of a run-to-run comparison.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Delta {
    pub metric: String,
    pub baseline: f64,
    pub current: f64,
    /// (current − baseline) / baseline × 100; `None` when the baseline is 0.
    pub change_pct: Option<f64>,
    /// Whether a rise is good (throughput) or bad (latency, errors).
    pub higher_is_better: bool,
}

/// Each headline metric of `current` against `baseline`.
pub fn compare(baseline: &Summary, current: &Summary) -> Vec<Delta> {
    let mut out = Vec::new();
    let mut push = |metric: String, b: f64, c: f64, hib: bool| {
        out.push(Delta {
            metric,
            baseline: b,
            current: c,
            change_pct: (b != 0.0).then(|| (c - b) / b * 100.0),
            higher_is_better: hib,
        })
    };
    let (b, c) = (&baseline.http, &current.http);
    push("http_reqs rate (req/s)".into(), b.rate, c.rate, true);
    push(
        "http_req_duration med (ms)".into(),
        b.duration.stats.med,
        c.duration.stats.med,
        false,
    );
    push(
        "http_req_duration p95 (ms)".into(),
        b.duration.stats.p95,
        c.duration.stats.p95,
        false,
    );
    push(
        "http_req_duration p99 (ms)".into(),
        b.duration.stats.p99,
        c.duration.stats.p99,
        false,
    );
    push(
        "http_req_failed (%)".into(),
        b.failed_rate() * 100.0,
        c.failed_rate() * 100.0,
        false,
    );
    push(
        "iterations rate (/s)".into(),
        baseline.iterations as f64 / baseline.duration_s.max(1e-9),
        current.iterations as f64 / current.duration_s.max(1e-9),
        true,
    );
    for e in &current.endpoint_types {
        if let Some(be) = baseline
            .endpoint_types
            .iter()
            .find(|x| x.endpoint_type == e.endpoint_type)
        {
            push(
                format!("{} p95 (ms)", e.title),
                be.http.duration.stats.p95,
                e.http.duration.stats.p95,
                false,
            );
        }
    }
    for s in &current.scenarios {
        if let Some(bs) = baseline.scenarios.iter().find(|x| x.name == s.name) {
            if s.http.reqs > 0 {
                push(
                    format!("{} p95 (ms)", s.name),
                    bs.http.duration.stats.p95,
                    s.http.duration.stats.p95,
                    false,
                );
            }
            push(
                format!("{} iterations", s.name),
                bs.iterations as f64,
                s.iterations as f64,
                true,
            );
        }
    }
    out
}

/// The comparison as a table.
pub fn render_compare(deltas: &[Delta], style: Style) -> String {
    let mut rows = vec![vec![
        "metric".to_string(),
        "baseline".to_string(),
        "current".to_string(),
        "change".to_string(),
    ]];
    for d in deltas {
        let change = match d.change_pct {
            None => "n/a".to_string(),
            Some(p) => {
                let text = format!("{p:+.1}%");
                let worse = if d.higher_is_better {
                    p < -5.0
                } else {
                    p > 5.0
                };
                if worse {
                    style.bold(&text)
                } else {
                    text
                }
            }
        };
        rows.push(vec![
            d.metric.clone(),
            format!("{:.2}", d.baseline),
            format!("{:.2}", d.current),
            change,
        ]);
    }
    table(&rows)
}

impl Summary {
    /// The run as a powertune report: the findings above, and this summary (plus the
    /// comparison when a baseline is given) in `metrics`.
    pub fn to_report(&self, targets: &Targets, baseline: Option<&Summary>) -> Report {
        let mut metrics = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        if let (Some(b), serde_json::Value::Object(m)) = (baseline, &mut metrics) {
            let deltas = compare(b, self);
            m.insert(
                "baseline_comparison".into(),
                serde_json::to_value(deltas).unwrap_or(serde_json::Value::Null),
            );
        }
        Report::new("load", findings(self, targets, baseline), metrics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Shard;
    use crate::plan::Plan;
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
        Summary::build(
            &plan,
            &shard,
            Duration::from_secs(secs),
            &chrono::Utc::now(),
            "http://x/",
            2,
            &[1, 1],
            None,
        )
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
        assert_eq!(verdict(&f, "api_latency_p95", "Read-heavy"), Verdict::Fail);
        // 2 of 200 failed = 1% — not below 1%.
        let e = f.iter().find(|x| x.check == "load_error_rate").unwrap();
        assert_eq!(e.verdict, Verdict::Fail);
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
        let d = compare(&base, &slow);
        assert_eq!(d[0].change_pct, Some(-50.0));
        assert!(render_compare(&d, Style::plain()).contains("-50.0%"));
    }
}
