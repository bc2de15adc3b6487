//! `powertune investigate endpoint "GET /api/v1/..."`: the runbook's "Procedure —
//! investigate a slow endpoint".
//!
//! 1. the route's P95 against its endpoint class (`apm endpoint`);
//! 2. its trace breakdown: database, outgoing HTTP (LLM calls among them),
//!    application code;
//! 3. DB-bound: the route's statements from its DB spans, EXPLAIN of the heaviest on
//!    `[systems] db` (`db explain`: ANALYZE in a rolled-back transaction when a span
//!    carried the statement with its values, else the generic plan) and its red flags;
//! 4. Ruby-bound: N+1 queries found in the traces, time in application code;
//! 5. external call-bound: breakers and provider quota (`gateway status`);
//! 6. the fix candidates in the runbook's words, from what the steps found.

use super::explain::{explain_wanted, run_explain, skipped_db, Wanted};
use super::model::{EndpointMetrics, ExplainRun, RouteLatency, RouteStatement, Shares, Step};
use super::{findings, render, InvestigateError};
use crate::collect::{inspect_gateway, run, Outcome};
use crate::model::Status;
use powertune_apm::collect::receiver::{self, ClientError};
use powertune_apm::inspect::{ApmError, EndpointOptions as ApmEndpoint};
use powertune_apm::snapshot::{DetectionKind, EndpointDetail};
use powertune_core::targets::Systems;
use powertune_core::{units, Inspection, Targets, Verdict};
use powertune_gateway::StatusMetrics;
use std::collections::BTreeMap;
use std::time::Duration;

/// Statements listed for the route, at most.
pub const TOP_STATEMENTS: usize = 5;
/// A layer holding at least this share (percent) of the route's time is looked at
/// even when another layer holds more.
pub const LAYER_SHARE_PCT: f64 = 30.0;

/// What `investigate endpoint` is asked.
#[derive(Debug, Clone)]
pub struct EndpointOptions {
    pub systems: Systems,
    /// `METHOD /template`, as the APM names the route.
    pub route: String,
    /// The APM history read.
    pub apm_window: Duration,
    /// The bound on the whole run: a system still being read then is not measured.
    pub timeout: Duration,
    /// The EXPLAIN's `statement_timeout`.
    pub explain_timeout: Duration,
}

impl EndpointOptions {
    /// Defaults: 15 min of APM history, 60 s bound, 10 s EXPLAIN timeout.
    pub fn new(systems: Systems, route: &str) -> EndpointOptions {
        EndpointOptions {
            systems,
            route: route.trim().to_string(),
            apm_window: Duration::from_secs(15 * 60),
            timeout: Duration::from_secs(60),
            explain_timeout: Duration::from_secs(10),
        }
    }

    /// Checks the route and the bounds. No I/O.
    pub fn validate(&self) -> Result<(), String> {
        let ok = self.route.split_once(' ').is_some_and(|(m, p)| {
            !m.is_empty() && m.chars().all(|c| c.is_ascii_uppercase()) && p.starts_with('/')
        });
        if !ok {
            return Err(format!(
                "route `{}` is not `METHOD /path` as the APM names it (e.g. \"GET /api/v1/users/:id\")",
                self.route
            ));
        }
        let f = powertune_core::duration::format;
        super::check_timeout(self.timeout)?;
        if self.explain_timeout.is_zero()
            || self.explain_timeout > powertune_db::explain::MAX_TIMEOUT
        {
            return Err(format!(
                "--explain-timeout {} must be above 0 and at most 1h (e.g. --explain-timeout 10s)",
                f(self.explain_timeout)
            ));
        }
        if self.apm_window.is_zero() {
            return Err("--apm-window must be above 0 (e.g. --apm-window 15m)".into());
        }
        Ok(())
    }
}

/// What the APM gave for the route.
#[derive(Debug, Clone)]
pub(super) struct RouteData {
    pub(super) detail: EndpointDetail,
    /// apm endpoint's `route_latency_p95` verdict.
    p95_verdict: Verdict,
}

/// `powertune investigate endpoint`.
pub async fn investigate_endpoint(
    o: &EndpointOptions,
    t: &Targets,
) -> Result<Inspection<EndpointMetrics>, InvestigateError> {
    o.validate().map_err(InvestigateError::Input)?;
    let s = &o.systems;
    let deadline = tokio::time::Instant::now() + o.timeout;
    let bound = |name: &'static str| (name, deadline, o.timeout, s);
    let (apm, gateway) = tokio::join!(
        run(bound("apm"), s.get("apm"), |url| fetch_route(
            url,
            &o.route,
            o.apm_window,
            t
        )),
        run(bound("gateway"), s.get("gateway"), |url| inspect_gateway(
            url, None, t
        )),
    );
    let ((apm_status, apm), (gw_status, gateway)) = (apm, gateway);
    let data = apm.metrics();
    let statements = data.map(|d| statements(&d.detail)).unwrap_or_default();
    let shares = data.map(|d| shares(&d.detail));
    let wanted = explain_wanted(data, shares.as_ref(), &statements);
    let (db_status, explained) = match (&wanted, s.get("db")) {
        (Some(stmt), Some(_)) => {
            let stmt = stmt.clone();
            run(bound("db"), s.get("db"), |url| {
                run_explain(url, stmt, o.explain_timeout, t)
            })
            .await
        }
        (_, configured) => (
            skipped_db(configured.map(|v| s.redact(v)), data.is_some()),
            Outcome::NotConfigured,
        ),
    };
    let latency = data.map(|d| latency(&d.detail, t));
    let mut steps = vec![
        step_p95(&apm, latency.as_ref(), o),
        step_breakdown(&apm, shares.as_ref(), o),
    ];
    let explain = explained.metrics().cloned();
    steps.push(step_db(
        data,
        shares.as_ref(),
        &statements,
        &wanted,
        &explained,
        s.is_configured("db"),
    ));
    steps.push(step_ruby(data, shares.as_ref()));
    steps.push(step_external(&gateway, shares.as_ref()));
    let candidates = candidates(&steps, explain.as_ref(), shares.as_ref());
    steps.push(step_fix(&candidates, &steps));
    let systems = vec![apm_status, db_status, gw_status];
    let metrics = EndpointMetrics {
        route: o.route.clone(),
        apm_window_s: o.apm_window.as_secs_f64(),
        systems: systems.clone(),
        latency,
        breakdown: shares,
        statements,
        explain,
        candidates,
        steps,
    };
    let found = findings(&metrics.steps, &systems);
    let text = render::endpoint(&metrics);
    Ok(Inspection::new(
        "investigate endpoint",
        found,
        metrics,
        text,
    ))
}

async fn fetch_route(
    url: &str,
    route: &str,
    window: Duration,
    t: &Targets,
) -> Result<Outcome<RouteData>, String> {
    let url = receiver::base_url(url).map_err(|e| e.to_string())?;
    let o = ApmEndpoint {
        url: url.clone(),
        route: route.to_string(),
        window,
    };
    match powertune_apm::inspect::endpoint(&o, t).await {
        Ok(i) => {
            let p95_verdict = i
                .findings
                .iter()
                .find(|f| f.check == "route_latency_p95")
                .map_or(Verdict::Pass, |f| f.verdict);
            Ok(Outcome::Measured {
                findings: i.findings,
                metrics: RouteData {
                    detail: i.metrics,
                    p95_verdict,
                },
            })
        }
        Err(ApmError::Receiver(ClientError::Query { status: 404, .. })) => {
            let known = receiver::fetch_summary(&url, Some(window))
                .await
                .map(|s| {
                    s.routes
                        .iter()
                        .take(5)
                        .map(|r| r.route.clone())
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            let known = if known.is_empty() {
                "no routes at all".to_string()
            } else {
                format!("routes there: {known}")
            };
            Ok(Outcome::NotMeasured(format!(
                "no traces for `{route}` in the APM's last {} ({known})",
                powertune_core::duration::format(window)
            )))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// The route's DB statements from its example traces, heaviest first; the N+1 and
/// slow-query detections of the route add theirs.
fn statements(d: &EndpointDetail) -> Vec<RouteStatement> {
    let mut by: BTreeMap<String, RouteStatement> = BTreeMap::new();
    for ex in &d.slowest {
        for sp in ex.spans.iter().filter(|sp| sp.category == "db") {
            let Some(stmt) = db_statement(&sp.detail) else {
                continue;
            };
            let e = by.entry(stmt.to_string()).or_insert(RouteStatement {
                statement: stmt.to_string(),
                calls: 0,
                total_ms: 0.0,
                max_ms: 0.0,
                captured: false,
            });
            e.calls += 1;
            e.total_ms += sp.duration_ms;
            e.max_ms = e.max_ms.max(sp.duration_ms);
            e.captured |= sp.sql_sample.is_some();
        }
    }
    for x in &d.detections {
        if matches!(x.kind, DetectionKind::NPlusOne | DetectionKind::SlowQuery) {
            let e = by.entry(x.subject.clone()).or_insert(RouteStatement {
                statement: x.subject.clone(),
                calls: 0,
                total_ms: 0.0,
                max_ms: 0.0,
                captured: false,
            });
            if e.calls == 0 {
                e.calls = x.spans.max(x.occurrences);
                e.total_ms = x.total_ms;
                e.max_ms = x.max_ms;
            }
        }
    }
    let mut v: Vec<RouteStatement> = by.into_values().collect();
    v.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms));
    v.truncate(TOP_STATEMENTS);
    v
}

/// The statement of a DB span's detail (`postgresql SELECT ...`); None for cached
/// reads and non-SQL operations.
pub(super) fn db_statement(detail: &str) -> Option<&str> {
    let (_system, rest) = detail.split_once(' ')?;
    if rest.starts_with("(cached)") {
        return None;
    }
    let kw = rest.split_whitespace().next()?.to_ascii_uppercase();
    [
        "SELECT", "WITH", "INSERT", "UPDATE", "DELETE", "VALUES", "TABLE",
    ]
    .contains(&kw.as_str())
    .then_some(rest)
}

fn shares(d: &EndpointDetail) -> Shares {
    let (db, http, app) = d.route.breakdown.shares();
    let (mut llm, mut total) = (0.0, 0.0);
    for ex in &d.slowest {
        total += ex.duration_ms;
        llm += ex
            .spans
            .iter()
            .filter(|sp| sp.category == "provider")
            .map(|sp| sp.duration_ms)
            .sum::<f64>();
    }
    Shares {
        db_pct: db,
        http_pct: http,
        app_pct: app,
        llm_pct: (total > 0.0).then(|| (100.0 * llm / total).min(100.0)),
        dominant: d.route.breakdown.dominant().to_string(),
    }
}

fn latency(d: &EndpointDetail, t: &Targets) -> RouteLatency {
    let band = t.api.band(d.route.endpoint_type);
    RouteLatency {
        endpoint_type: d.route.endpoint_type.title().to_string(),
        requests: d.route.latency.count,
        p95_ms: d.route.latency.p95_ms,
        target_ms: band.target_ms,
        max_ms: band.max_ms,
    }
}

pub(super) fn db_bound(sh: &Shares) -> bool {
    sh.dominant == "database" || sh.db_pct >= LAYER_SHARE_PCT
}

fn missing<M>(o: &Outcome<M>, key: &str) -> String {
    o.missing(key).unwrap_or_default()
}

fn step_p95(apm: &Outcome<RouteData>, l: Option<&RouteLatency>, o: &EndpointOptions) -> Step {
    let step = Step::new(
        1,
        "p95",
        "Confirm sustained P95 latency above target for the endpoint class",
    )
    .source(format!(
        "apm endpoint over {}",
        powertune_core::duration::format(o.apm_window)
    ));
    let (Some(d), Some(l)) = (apm.metrics(), l) else {
        return step.not_measured(missing(apm, "apm"));
    };
    let figure = format!(
        "P95 {} over {} requests; {} target < {}, maximum {}",
        units::ms(l.p95_ms),
        l.requests,
        l.endpoint_type,
        units::ms(l.target_ms),
        units::ms(l.max_ms)
    );
    let mut s = match d.p95_verdict {
        Verdict::Pass => step.ruled_out(format!("within target: {figure}")),
        v => {
            let mut s = step.confirmed(
                format!("above target: {figure}"),
                "Inspect the trace breakdown: DB, application code or downstream HTTP",
            );
            s.verdict = v;
            s
        }
    };
    if let Some(x) = d.detail.slowest.first() {
        s.details.push(format!(
            "slowest trace {} ({})",
            x.trace_id,
            units::ms(x.duration_ms)
        ));
    }
    s
}

fn step_breakdown(apm: &Outcome<RouteData>, sh: Option<&Shares>, o: &EndpointOptions) -> Step {
    let step = Step::new(
        2,
        "breakdown",
        "Inspect the trace breakdown: DB, Ruby code or downstream HTTP",
    )
    .source(format!(
        "apm endpoint over {}",
        powertune_core::duration::format(o.apm_window)
    ));
    let Some(sh) = sh else {
        return step.not_measured(missing(apm, "apm"));
    };
    let llm = sh
        .llm_pct
        .map(|p| format!(" (LLM calls {} of the slowest traces)", units::percent(p)))
        .unwrap_or_default();
    let mut s = step.ruled_out(format!(
        "time in {}: database {}, downstream HTTP {}{llm}, application code {}",
        sh.dominant,
        units::percent(sh.db_pct),
        units::percent(sh.http_pct),
        units::percent(sh.app_pct)
    ));
    s.status = Status::Confirmed;
    s
}

fn step_db(
    data: Option<&RouteData>,
    sh: Option<&Shares>,
    stmts: &[RouteStatement],
    wanted: &Option<Wanted>,
    explained: &Outcome<ExplainRun>,
    db_configured: bool,
) -> Step {
    let step = Step::new(
        3,
        "db_bound",
        "DB-bound: EXPLAIN ANALYZE the offending query; look for seq scans, large sorts, missing indexes",
    )
    .source("apm endpoint DB spans; db explain on [systems] db");
    let (Some(_), Some(sh)) = (data, sh) else {
        return step.not_measured("no traces for the route");
    };
    let mut details: Vec<String> = stmts
        .iter()
        .map(|x| {
            format!(
                "{} × {} (total {}, max {})",
                x.calls,
                x.statement,
                units::ms(x.total_ms),
                units::ms(x.max_ms)
            )
        })
        .collect();
    let Some(w) = wanted else {
        return step
            .ruled_out(format!(
                "not DB-bound: {} of the time in the database{}",
                units::percent(sh.db_pct),
                if stmts.is_empty() {
                    ", no SQL spans"
                } else {
                    ""
                }
            ))
            .details(details);
    };
    let Some(e) = explained.metrics() else {
        let why = if db_configured {
            missing(explained, "db")
        } else {
            "db: not configured — the plan cannot be read".to_string()
        };
        return step
            .not_measured(format!(
                "{}; heaviest statement `{}`: {why}",
                w.why, w.statement
            ))
            .details(details);
    };
    details.push(format!(
        "EXPLAIN{}: {}",
        if e.analyze { " ANALYZE" } else { "" },
        e.note
    ));
    if let Some(ms) = e.execution_ms {
        details.push(format!("execution {}", units::ms(ms)));
    }
    details.extend(
        e.flags
            .iter()
            .map(|f| format!("{}: {} — {}", f.check, f.path, f.message)),
    );
    if e.flags.is_empty() {
        return step
            .ruled_out(format!(
                "`{}`: no red flag in its plan (no seq scan past the hot-table size, no large sort, no spill)",
                e.statement
            ))
            .details(details);
    }
    let names: Vec<&str> = e.flags.iter().map(|f| flag_words(&f.check)).collect();
    let action = e
        .flags
        .first()
        .map(|f| f.action.clone())
        .unwrap_or_default();
    step.confirmed(format!("`{}`: {}", e.statement, names.join(", ")), action)
        .details(details)
}

/// A plan check in words.
fn flag_words(check: &str) -> &str {
    match check {
        "seq_scan_filter" => "Seq Scan whose filter removes most rows (missing index)",
        "sort_without_limit" => "large sort without LIMIT",
        "disk_sort" => "sort spilled to disk",
        "nested_loop_loops" => "nested loop with many inner loops",
        "large_in_list" => "large IN list",
        "misestimate" => "row estimate far off",
        "hash_batches" => "hash spilled into batches",
        other => other,
    }
}

fn step_ruby(data: Option<&RouteData>, sh: Option<&Shares>) -> Step {
    let step = Step::new(
        4,
        "ruby_bound",
        "Ruby-bound: check for N+1 queries; profile the controller",
    )
    .source("apm endpoint detectors (N+1) and breakdown");
    let (Some(d), Some(sh)) = (data, sh) else {
        return step.not_measured("no traces for the route");
    };
    let n1: Vec<String> = d
        .detail
        .detections
        .iter()
        .filter(|x| x.kind == DetectionKind::NPlusOne)
        .map(|x| {
            format!(
                "N+1: `{}` repeated {} times in {} requests (up to {} per request), e.g. trace {}",
                x.subject,
                x.spans,
                x.occurrences,
                units::ms(x.max_ms),
                x.example_trace
            )
        })
        .collect();
    if !n1.is_empty() {
        return step
            .confirmed(
                format!("{} N+1 pattern(s) in the traces", n1.len()),
                "Eager-load the association with .includes() (bullet would flag it)",
            )
            .details(n1);
    }
    if sh.dominant == "application code" {
        return step.confirmed(
            format!(
                "{} of the time in application code, no N+1 query",
                units::percent(sh.app_pct)
            ),
            "Profile the controller with rack-mini-profiler locally (stackprof); consider caching the result",
        );
    }
    step.ruled_out(format!(
        "no N+1 query; application code {} of the time",
        units::percent(sh.app_pct)
    ))
}

fn step_external(gateway: &Outcome<StatusMetrics>, sh: Option<&Shares>) -> Step {
    let step = Step::new(
        5,
        "external_bound",
        "External call-bound: check circuit breaker state and provider quota",
    )
    .source("apm breakdown; gateway status");
    let external =
        sh.map(|s| s.dominant == "outgoing HTTP / provider calls" || s.http_pct >= LAYER_SHARE_PCT);
    let share = sh
        .map(|s| format!("downstream HTTP {} of the time", units::percent(s.http_pct)))
        .unwrap_or_default();
    match (gateway.metrics(), external) {
        (Some(g), ext) => {
            let state = super::gateway::read(g);
            if !state.problems.is_empty() {
                let found = format!(
                    "{}{}",
                    state.problems.join("; "),
                    if share.is_empty() {
                        String::new()
                    } else {
                        format!(" ({share})")
                    }
                );
                return step
                    .confirmed(found, "Check the provider's status page and quota; fail fast through the breaker, lower the call rate (worker concurrency)")
                    .details(state.details);
            }
            let mut s = step.ruled_out(format!(
                "breakers closed, no quota answers{}",
                if share.is_empty() {
                    String::new()
                } else {
                    format!("; {share}")
                }
            ));
            if ext == Some(true) {
                s = s.confirmed(
                    format!("{share}, with the gateway's breakers closed and no quota answers: the downstream calls themselves are slow"),
                    "Provider-side change: a faster model or provider, streaming, caching the answers; fail fast through the breaker",
                );
            }
            s.details(state.details)
        }
        (None, Some(false)) => step.ruled_out(format!(
            "not external call-bound: {share} ({})",
            missing(gateway, "gateway")
        )),
        (None, _) => step.not_measured(missing(gateway, "gateway")),
    }
}

/// The runbook's fixes (index, `.includes()`, caching, provider-side change), chosen
/// by what the steps found.
fn candidates(steps: &[Step], e: Option<&ExplainRun>, sh: Option<&Shares>) -> Vec<String> {
    let found = |id: &str| {
        steps
            .iter()
            .any(|s| s.id == id && s.status == Status::Confirmed)
    };
    let mut out = Vec::new();
    if found("db_bound") {
        if let Some(e) = e {
            for f in &e.flags {
                let fix = if f.check == "seq_scan_filter" {
                    format!("index: {}", f.action)
                } else {
                    f.action.clone()
                };
                if !out.contains(&fix) {
                    out.push(fix);
                }
            }
        }
    }
    if found("ruby_bound") {
        let n1 = steps
            .iter()
            .find(|s| s.id == "ruby_bound")
            .is_some_and(|s| s.found.contains("N+1"));
        out.push(if n1 {
            ".includes(): eager-load the association the N+1 query loads one row at a time".to_string()
        } else {
            "caching: cache the expensive part of the response (Rails.cache.fetch), after profiling it".to_string()
        });
    }
    if found("external_bound") {
        out.push("provider-side change: check the provider's status and quota, fail fast through the breaker, cache answers where they repeat".to_string());
    }
    if out.is_empty() && found("p95") {
        let layer = sh.map_or("the slowest layer", |s| s.dominant.as_str());
        out.push(format!(
            "caching: no single cause found; cache what {layer} computes per request"
        ));
    }
    out
}

fn step_fix(candidates: &[String], steps: &[Step]) -> Step {
    let step = Step::new(
        6,
        "fix",
        "Apply the fix (index, .includes(), caching, provider-side change) and confirm the breakdown improves",
    );
    if steps.iter().all(|s| s.status == Status::NotMeasured) {
        return step.not_measured("no step measured anything");
    }
    let mut s = if candidates.is_empty() {
        step.ruled_out("nothing to fix: no cause found")
    } else {
        let mut s = step.ruled_out(candidates.join("; "));
        s.status = Status::Confirmed;
        s
    };
    s.details = vec!["then run this investigation again: the breakdown and P95 should improve within one peak window".into()];
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_and_routes_are_checked() {
        assert_eq!(db_statement("postgresql SELECT 1"), Some("SELECT 1"));
        assert_eq!(db_statement("postgresql (cached) SELECT 1"), None);
        assert_eq!(db_statement("redis GET"), None);
        let o = |r: &str| EndpointOptions::new(Systems::default(), r).validate();
        assert!(o("GET /api/v1/users/:id").is_ok());
        assert!(o("/api/v1/users").unwrap_err().contains("METHOD /path"));
        assert!(o("get /x").is_err());
    }

    #[test]
    fn a_run_that_measured_nothing_fails() {
        let steps = vec![Step::new(1, "p95", "x").not_measured("apm: not configured")];
        let f = findings(&steps, &[]);
        assert_eq!(f.last().map(|f| f.verdict), Some(Verdict::Fail));
        let steps = vec![Step::new(1, "p95", "x").ruled_out("fine")];
        assert!(findings(&steps, &[])
            .iter()
            .all(|f| f.verdict == Verdict::Pass));
    }
}
