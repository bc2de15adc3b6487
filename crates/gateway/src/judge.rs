//! Judges a `/status` snapshot against the runbook's "AI Provider Calls" targets.
//! Pure functions over [`StatusSnapshot`] and an optional saved [`Baseline`].

pub use crate::baseline::{Baseline, BaselineEntry};
use crate::snapshot::StatusSnapshot;
use powertune_core::targets::AiTargets;
use powertune_core::{Finding, Verdict};

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
                .map(|x| format!(", {x:.0}s to probe"))
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
        .observed(format!("{n} open"))
        .target(format!("< {} active", t.breakers_open_max));
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
            .observed(format!("{} disabled", d.len()))
            .target("0 (provider answered 401/403)")
            .evidence("the provider refused the key; the credential is out until the gateway restarts with a fixed key")
            .action("Check the provider key and quota, fix the environment variable, restart the gateway")
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
        let target = format!("< {}× baseline", t.provider_p95_ratio_max);
        let base = baseline.and_then(|b| b.providers.get(&p.provider));
        let f = match base {
            Some(b) if b.p95_ms > 0.0 => {
                let ratio = p.latency_ms.p95 / b.p95_ms;
                let v = Verdict::lower_is_better(ratio, t.provider_p95_ratio_max, None);
                let mut f = Finding::new(AREA, "provider_p95_vs_baseline", &p.provider, v)
                    .observed(format!("{ratio:.2}× ({:.1}ms)", p.latency_ms.p95))
                    .target(target)
                    .evidence(format!(
                        "P95 {:.1}ms over {} calls; baseline {:.1}ms over {} calls",
                        p.latency_ms.p95, p.latency_ms.count, b.p95_ms, b.count
                    ));
                if v != Verdict::Pass {
                    f = f.action("Check the provider's status page; lower the call rate via worker concurrency");
                }
                f
            }
            _ => Finding::new(AREA, "provider_p95_vs_baseline", &p.provider, Verdict::Warn)
                .observed(format!("{:.1}ms (no baseline)", p.latency_ms.p95))
                .target(target)
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
    let limit = t.retry_depth_max as f64;
    let v = Verdict::lower_is_better(max as f64, limit, Some(limit - 1.0));
    let share = if calls > 0 {
        100.0 * retried as f64 / calls as f64
    } else {
        0.0
    };
    let mut f = Finding::new(AREA, "retry_depth", "all calls", v)
        .observed(format!("max {max}"))
        .target(format!("< {} per call", t.retry_depth_max))
        .evidence(format!(
            "{retried} of {calls} calls retried ({share:.1}%); by depth {:?}",
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
            consecutive_failures: 0,
            trips: 0,
            transitions: 0,
            weight: 1,
            rpm: None,
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
        }
    }

    #[test]
    fn three_open_breakers_fail_two_warn_none_pass() {
        let t = AiTargets::default();
        assert_eq!(
            breakers_open(&snap(&["closed", "closed"], 1.0), &t).verdict,
            Verdict::Pass
        );
        assert_eq!(
            breakers_open(&snap(&["open", "rate_limited", "closed"], 1.0), &t).verdict,
            Verdict::Warn
        );
        let f = breakers_open(&snap(&["open", "open", "half_open"], 1.0), &t);
        assert_eq!(f.verdict, Verdict::Fail);
        assert!(f.action.contains("quota"));
    }

    #[test]
    fn p95_over_twice_baseline_fails() {
        let t = AiTargets::default();
        let base = Baseline::from_snapshot(&snap(&[], 100.0));
        assert_eq!(
            provider_p95(&snap(&[], 150.0), Some(&base), &t)[0].verdict,
            Verdict::Pass
        );
        assert_eq!(
            provider_p95(&snap(&[], 200.0), Some(&base), &t)[0].verdict,
            Verdict::Warn
        );
        let f = &provider_p95(&snap(&[], 250.0), Some(&base), &t)[0];
        assert_eq!(f.verdict, Verdict::Fail);
        assert!(f.observed.text().starts_with("2.50×"), "{}", f.observed);
        assert!(f.action.contains("status page"));
        assert_eq!(
            provider_p95(&snap(&[], 250.0), None, &t)[0].verdict,
            Verdict::Warn
        );
    }

    #[test]
    fn retry_depth_within_target() {
        let t = AiTargets::default();
        let f = retry_depth(&snap(&[], 1.0), &t);
        assert_eq!(f.verdict, Verdict::Pass);
        assert_eq!(f.observed, "max 1");
        let mut s = snap(&[], 1.0);
        s.retries_by_depth = vec![0, 0, 0, 4];
        assert_eq!(retry_depth(&s, &t).verdict, Verdict::Fail);
    }

    #[test]
    fn disabled_credentials_warn() {
        assert!(disabled_credentials(&snap(&["closed"], 1.0)).is_none());
        assert_eq!(
            disabled_credentials(&snap(&["disabled"], 1.0))
                .unwrap()
                .verdict,
            Verdict::Warn
        );
    }
}
