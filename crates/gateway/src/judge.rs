//! Judges a `/status` snapshot against the runbook's "AI Provider Calls" targets.
//! Pure functions over [`StatusSnapshot`] and an optional saved [`Baseline`]; observed
//! figures, targets and limits are typed values (counts, ratios, milliseconds), which
//! only renderers turn into text.

pub use crate::baseline::{Baseline, BaselineEntry};
use crate::snapshot::StatusSnapshot;
use powertune_core::targets::AiTargets;
use powertune_core::units::{self, Quantity};
use powertune_core::{Finding, Value, Verdict};

const AREA: &str = "gateway";

/// Every check of `powertune gateway status`, in report order.
pub fn judge(s: &StatusSnapshot, baseline: Option<&Baseline>, t: &AiTargets) -> Vec<Finding> {
    let mut out = vec![breakers_open(s, t)];
    out.extend(disabled_credentials(s));
    out.extend(provider_p95(s, baseline, t));
    out.push(retry_depth(s, t));
    out
}

/// "Circuit breaker open events < 3 active": 0 open passes, 1..limit-1 warns, ≥ limit fails.
pub fn breakers_open(s: &StatusSnapshot, t: &AiTargets) -> Finding {
    let open: Vec<String> = s
        .credentials
        .iter()
        .filter(|c| matches!(c.state.as_str(), "open" | "rate_limited" | "half_open"))
        .map(|c| {
            let until = c
                .open_for_s
                .map(|x| format!(", {} to probe", units::seconds(x.round())))
                .unwrap_or_default();
            format!("{}/{} {}{until}", c.provider, c.credential, c.state)
        })
        .collect();
    let n = open.len() as u32;
    let verdict = if n == 0 {
        Verdict::Pass
    } else if n < t.breakers_open_max {
        Verdict::Warn
    } else {
        Verdict::Fail
    };
    let mut f = Finding::new(AREA, "breakers_open", "all providers", verdict)
        .observed(Value::of(Quantity::count(f64::from(n))).note("open"))
        .target(Value::lt(Quantity::count(f64::from(t.breakers_open_max))).note("active"));
    if !open.is_empty() {
        f = f
            .evidence(open.join("; "))
            .action("Check provider quota and status pages for the open providers; lower the call rate via worker concurrency");
    } else {
        f = f.evidence(format!("{} credentials closed", s.credentials.len()));
    }
    f
}

/// Credentials disabled by 401/403 (out until the config is reloaded).
pub fn disabled_credentials(s: &StatusSnapshot) -> Option<Finding> {
    let d: Vec<String> = s
        .credentials
        .iter()
        .filter(|c| c.state == "disabled")
        .map(|c| format!("{}/{}", c.provider, c.credential))
        .collect();
    (!d.is_empty()).then(|| {
        Finding::new(AREA, "credentials_disabled", d.join(", "), Verdict::Warn)
            .observed(Value::of(Quantity::count(d.len() as f64)).note("disabled"))
            .target(Value::of(Quantity::count(0.0)).note("provider answered 401/403"))
            .evidence("the provider refused the key; the credential is out until the config is reloaded or the gateway restarts with a fixed key")
            .action("Check the provider key and quota, fix the environment variable, reload the gateway (SIGHUP)")
    })
}

/// "Provider P95 round-trip < 2 × baseline", per provider.
pub fn provider_p95(
    s: &StatusSnapshot,
    baseline: Option<&Baseline>,
    t: &AiTargets,
) -> Vec<Finding> {
    let mut out = Vec::new();
    for p in &s.providers {
        if p.latency_ms.count == 0 {
            continue;
        }
        let p95 = p.latency_ms.p95;
        let base = baseline.and_then(|b| b.providers.get(&p.provider));
        let f = match base {
            Some(b) if b.p95_ms > 0.0 => {
                let ratio = p95 / b.p95_ms;
                let v = Verdict::lower_is_better(ratio, t.provider_p95_ratio_max, None);
                let mut f = Finding::new(AREA, "provider_p95_vs_baseline", &p.provider, v)
                    .observed(
                        Value::of(Quantity::ratio(ratio)).note(format!("p95 {}", units::ms(p95))),
                    )
                    .target(
                        Value::lt(Quantity::ratio(t.provider_p95_ratio_max))
                            .note(format!("baseline p95 {}", units::ms(b.p95_ms))),
                    )
                    .evidence(format!(
                        "P95 {} over {} calls; baseline {} over {} calls",
                        units::ms(p95),
                        p.latency_ms.count,
                        units::ms(b.p95_ms),
                        b.count
                    ));
                if v != Verdict::Pass {
                    f = f.action("Check the provider's status page; lower the call rate via worker concurrency");
                }
                f
            }
            _ => Finding::new(AREA, "provider_p95_vs_baseline", &p.provider, Verdict::Warn)
                .observed(Value::of(Quantity::ms(p95)).note("no baseline"))
                .target(Value::lt(Quantity::ratio(t.provider_p95_ratio_max)).note("baseline"))
                .evidence(format!("P95 over {} calls; no saved baseline for this provider", p.latency_ms.count))
                .action("Save a baseline in a healthy period: powertune gateway status --save-baseline FILE"),
        };
        out.push(f);
    }
    out
}

/// "Retry depth < 3 per call": the deepest retry count seen.
pub fn retry_depth(s: &StatusSnapshot, t: &AiTargets) -> Finding {
    let max = s
        .retries_by_depth
        .iter()
        .enumerate()
        .rev()
        .find(|(_, n)| **n > 0)
        .map(|(i, _)| i)
        .unwrap_or(0);
    let calls: u64 = s.retries_by_depth.iter().sum();
    let retried: u64 = s.retries_by_depth.iter().skip(1).sum();
    // "< 3": reaching the target is already past it (no maximum-acceptable band)
    let limit = f64::from(t.retry_depth_max);
    let v = Verdict::lower_is_better(max as f64, limit, Some(limit - 1.0));
    let share = if calls > 0 {
        100.0 * retried as f64 / calls as f64
    } else {
        0.0
    };
    let mut f = Finding::new(AREA, "retry_depth", "all calls", v)
        .observed(Value::of(Quantity::count(max as f64)).note("max"))
        .target(Value::lt(Quantity::count(limit)).note("per call"))
        .evidence(format!(
            "{retried} of {calls} calls retried ({}); by depth {:?}",
            units::percent(share),
            s.retries_by_depth
        ));
    if v != Verdict::Pass {
        f = f.action(
            "Check provider quota and open breakers; lower the call rate via worker concurrency",
        );
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{CredentialStatus, Percentiles, ProviderLatency};
    use powertune_core::LatencyHistogram;

    fn cred(name: &str, state: &str) -> CredentialStatus {
        CredentialStatus {
            provider: "openai".into(),
            credential: name.into(),
            state: state.into(),
            open_for_s: None,
            open_until: None,
            retry_after_s: None,
            retry_after_capped: None,
            consecutive_failures: 0,
            trips: 0,
            transitions: 0,
            weight: 1,
            rpm: None,
            ..Default::default()
        }
    }

    fn snap(states: &[&str], p95: f64) -> StatusSnapshot {
        StatusSnapshot {
            version: 1,
            uptime_s: 1.0,
            config_generation: 1,
            calls: 10,
            retries_by_depth: vec![8, 2, 0],
            rejected_all_open: 0,
            overhead_ms: Percentiles::default(),
            credentials: states
                .iter()
                .enumerate()
                .map(|(i, s)| cred(&format!("k{i}"), s))
                .collect(),
            providers: vec![ProviderLatency {
                provider: "openai".into(),
                latency_ms: Percentiles {
                    count: 10,
                    p50: p95 / 2.0,
                    p95,
                    p99: p95,
                },
                histogram: LatencyHistogram::new(),
            }],
            series: vec![],
            shared: None,
            cost: None,
        }
    }

    #[test]
    fn three_open_breakers_fail_two_warn_none_pass() {
        let t = AiTargets::default();
        let f = breakers_open(&snap(&["closed", "closed"], 1.0), &t);
        assert_eq!(f.verdict, Verdict::Pass);
        assert_eq!(f.observed, Value::of(Quantity::count(0.0)).note("open"));
        assert_eq!(f.target, Value::lt(Quantity::count(3.0)).note("active"));
        assert_eq!(
            breakers_open(&snap(&["open", "rate_limited", "closed"], 1.0), &t).verdict,
            Verdict::Warn
        );
        let mut s = snap(&["open", "open", "half_open"], 1.0);
        s.credentials[0].open_for_s = Some(118.4);
        let f = breakers_open(&s, &t);
        assert_eq!(f.verdict, Verdict::Fail);
        assert_eq!(f.observed.quantity(), Some(Quantity::count(3.0)));
        assert!(f.action.contains("quota"));
        assert!(
            f.evidence.starts_with("openai/k0 open, 1m58s to probe; "),
            "{}",
            f.evidence
        );
    }

    #[test]
    fn p95_over_twice_baseline_fails() {
        let t = AiTargets::default();
        let base = Baseline::from_snapshot(&snap(&[], 100.0));
        let f = &provider_p95(&snap(&[], 150.0), Some(&base), &t)[0];
        assert_eq!(f.verdict, Verdict::Pass);
        assert_eq!(
            f.observed,
            Value::of(Quantity::ratio(1.5)).note("p95 150ms")
        );
        assert_eq!(
            f.target,
            Value::lt(Quantity::ratio(2.0)).note("baseline p95 100ms")
        );
        assert_eq!(
            provider_p95(&snap(&[], 200.0), Some(&base), &t)[0].verdict,
            Verdict::Warn
        );
        let f = &provider_p95(&snap(&[], 250.0), Some(&base), &t)[0];
        assert_eq!(f.verdict, Verdict::Fail);
        assert_eq!(f.observed.quantity(), Some(Quantity::ratio(2.5)));
        assert!(f.action.contains("status page"));
        assert_eq!(
            f.evidence,
            "P95 250ms over 10 calls; baseline 100ms over 10 calls"
        );
        let f = &provider_p95(&snap(&[], 250.0), None, &t)[0];
        assert_eq!(f.verdict, Verdict::Warn);
        assert_eq!(
            f.observed,
            Value::of(Quantity::ms(250.0)).note("no baseline")
        );
        assert_eq!(f.observed.text(), "250ms (no baseline)");
    }

    #[test]
    fn retry_depth_within_target() {
        let t = AiTargets::default();
        let f = retry_depth(&snap(&[], 1.0), &t);
        assert_eq!(f.verdict, Verdict::Pass);
        assert_eq!(f.observed, Value::of(Quantity::count(1.0)).note("max"));
        assert_eq!(f.target, Value::lt(Quantity::count(3.0)).note("per call"));
        assert_eq!(
            f.evidence,
            "2 of 10 calls retried (20%); by depth [8, 2, 0]"
        );
        let mut s = snap(&[], 1.0);
        s.retries_by_depth = vec![0, 0, 0, 4];
        let f = retry_depth(&s, &t);
        assert_eq!(f.verdict, Verdict::Fail);
        assert_eq!(f.observed.quantity(), Some(Quantity::count(3.0)));
    }

    #[test]
    fn disabled_credentials_warn() {
        assert!(disabled_credentials(&snap(&["closed"], 1.0)).is_none());
        let f = disabled_credentials(&snap(&["disabled", "closed", "disabled"], 1.0)).unwrap();
        assert_eq!(f.verdict, Verdict::Warn);
        assert_eq!(f.subject, "openai/k0, openai/k2");
        assert_eq!(f.observed.quantity(), Some(Quantity::count(2.0)));
        assert_eq!(f.target.quantity(), Some(Quantity::count(0.0)));
    }
}
