//! Row 5: "Provider P95 doubled" ↔ "Provider-side incident".
//!
//! Symptom: `gateway status`'s `provider_p95_vs_baseline` at or past
//! `ai.provider_p95_ratio_max` (2×) for a provider, against `gateway_baseline`. Cause:
//! the slowdown is the provider's, not one credential's: every credential of that
//! provider with calls is past the ratio, or the provider answered with server errors,
//! timeouts or broken streams. Only one credential slow points at its own rate
//! limiting instead.

use crate::collect::Collected;
use crate::model::{Check, Row, Status};
use powertune_core::units::{self, Unit};
use powertune_core::Targets;
use powertune_gateway::StatusSnapshot;

const SYMPTOM: &str = "Provider P95 doubled";
const CAUSE: &str = "Provider-side incident";
const ACTION: &str = "Check provider status page; lower call rate via worker concurrency";
const SRC: &str = "gateway status provider_p95_vs_baseline";
/// Outcomes that are the provider's fault.
pub const PROVIDER_ERRORS: [&str; 4] = ["server_error", "timeout", "connect_error", "stream_error"];

pub fn row(c: &Collected, t: &Targets) -> Row {
    let mut row = Row {
        id: "provider_p95".into(),
        symptom: Check::not_measured(SYMPTOM, ""),
        causes: Vec::new(),
        first_action: ACTION.into(),
        signals: Vec::new(),
    };
    let Some(snap) = c.gateway.metrics() else {
        let why = c.gateway.missing("gateway").unwrap_or_default();
        row.symptom = Check::not_measured(SYMPTOM, why.clone());
        row.causes.push(Check::not_measured(CAUSE, why));
        return row;
    };
    row.signals = signals(snap);
    let ratio_max = t.ai.provider_p95_ratio_max;
    // (provider, ratio, p95 now) for each provider judged against a baseline.
    let judged: Vec<(String, f64, f64)> = c
        .gateway
        .findings()
        .iter()
        .filter(|f| f.check == "provider_p95_vs_baseline")
        .filter_map(|f| {
            let q = f.observed.quantity()?;
            let p95 = snap
                .providers
                .iter()
                .find(|p| p.provider == f.subject)?
                .latency_ms
                .p95;
            (q.unit == Unit::Ratio).then(|| (f.subject.clone(), q.value, p95))
        })
        .collect();
    if judged.is_empty() {
        let why = if !c.gateway_baseline {
            "no gateway_baseline configured: a doubling cannot be told".to_string()
        } else if snap.providers.iter().all(|p| p.latency_ms.count == 0) {
            "gateway: no successful provider calls yet".to_string()
        } else {
            "gateway_baseline holds none of the providers called".to_string()
        };
        row.symptom = Check::not_measured(SYMPTOM, why.clone());
        row.causes.push(Check::not_measured(CAUSE, why));
        return row;
    }
    let doubled: Vec<&(String, f64, f64)> =
        judged.iter().filter(|(_, r, _)| *r >= ratio_max).collect();
    let describe = |(p, r, p95): &(String, f64, f64)| {
        format!(
            "{p} P95 {} = {} baseline",
            units::ms(*p95),
            units::ratio(*r)
        )
    };
    if doubled.is_empty() {
        row.symptom = Check::new(
            SYMPTOM,
            Status::RuledOut,
            format!(
                "{} (below {})",
                judged.iter().map(describe).collect::<Vec<_>>().join(", "),
                units::ratio(ratio_max)
            ),
            SRC,
        );
        row.causes.push(Check::new(
            CAUSE,
            Status::RuledOut,
            "provider P95 within its baseline band",
            SRC,
        ));
        return row;
    }
    row.symptom = Check::new(
        SYMPTOM,
        Status::Confirmed,
        doubled
            .iter()
            .map(|d| describe(d))
            .collect::<Vec<_>>()
            .join(", "),
        SRC,
    );
    for (provider, ratio, p95) in doubled {
        let baseline = if *ratio > 0.0 { p95 / ratio } else { 0.0 };
        row.causes
            .push(incident(snap, provider, baseline, ratio_max));
    }
    row
}

/// Whether `provider` as a whole is slow or failing.
pub fn incident(s: &StatusSnapshot, provider: &str, baseline_p95: f64, ratio_max: f64) -> Check {
    const SRC: &str = "gateway status series (per credential p95, outcomes)";
    let series: Vec<_> = s
        .series
        .iter()
        .filter(|x| x.provider == provider && x.latency_ms.count > 0)
        .collect();
    let errors: u64 = s
        .series
        .iter()
        .filter(|x| x.provider == provider)
        .flat_map(|x| PROVIDER_ERRORS.iter().filter_map(|o| x.requests.get(*o)))
        .sum();
    let slow: Vec<String> = series
        .iter()
        .filter(|x| baseline_p95 > 0.0 && x.latency_ms.p95 >= ratio_max * baseline_p95)
        .map(|x| {
            format!(
                "{}/{} P95 {}",
                x.credential,
                x.model,
                units::ms(x.latency_ms.p95)
            )
        })
        .collect();
    let mut creds: Vec<&str> = series.iter().map(|x| x.credential.as_str()).collect();
    creds.dedup();
    let slow_creds: std::collections::BTreeSet<&str> = series
        .iter()
        .filter(|x| baseline_p95 > 0.0 && x.latency_ms.p95 >= ratio_max * baseline_p95)
        .map(|x| x.credential.as_str())
        .collect();
    let all_slow = !series.is_empty() && slow_creds.len() == creds.len();
    let name = format!("{CAUSE} ({provider})");
    if all_slow || errors > 0 {
        Check::new(
            &name,
            Status::Confirmed,
            format!(
                "{} of {} credentials slow ({}); {errors} server errors, timeouts or broken streams",
                slow_creds.len(),
                creds.len(),
                slow.join(", ")
            ),
            SRC,
        )
    } else {
        Check::new(
            &name,
            Status::RuledOut,
            format!(
                "only {} of {} credentials slow ({}): that credential's rate limiting, not the provider",
                slow_creds.len(),
                creds.len(),
                slow.join(", ")
            ),
            SRC,
        )
    }
}

fn signals(s: &StatusSnapshot) -> Vec<String> {
    let mut out: Vec<String> = s
        .credentials
        .iter()
        .filter(|c| c.state != "closed")
        .map(|c| format!("breaker {}/{} {}", c.provider, c.credential, c.state))
        .collect();
    for x in &s.series {
        if x.ttft_ms.count > 0 {
            out.push(format!(
                "{}/{}/{} TTFT P95 {}, {} tokens out",
                x.provider,
                x.credential,
                x.model,
                units::ms(x.ttft_ms.p95),
                x.tokens_out
            ));
        }
    }
    out
}
