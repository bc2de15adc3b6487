//! What the gateway's `/status` says about the providers: breakers that are not
//! closed, quota answers (429 `rate_limited`), provider faults and slow first tokens.
//! Shared by the endpoint's "external call-bound" step and the queue's "external
//! provider stalling" step.

use crate::rows::provider::PROVIDER_ERRORS;
use powertune_core::units;
use powertune_gateway::StatusSnapshot;

/// The gateway's reading, in words.
pub struct ProviderState {
    /// Breakers not closed (`oai/a open`), calls refused at once, credentials out of
    /// provider quota, quota answers, provider faults: each a reason the provider path is the cause.
    pub problems: Vec<String>,
    /// Figures shown either way (per-model TTFT P95 and outcomes).
    pub details: Vec<String>,
}

pub fn read(s: &StatusSnapshot) -> ProviderState {
    let mut problems: Vec<String> = s
        .credentials
        .iter()
        .filter(|c| c.state != "closed")
        .map(|c| {
            let wait = c
                .open_for_s
                .or(c.retry_after_s)
                .map(|w| format!(" for {}", units::seconds(w)))
                .unwrap_or_default();
            format!("breaker {}/{} {}{wait}", c.provider, c.credential, c.state)
        })
        .collect();
    problems.extend(crate::rows::mission::refusals(s));
    let mut details = Vec::new();
    for x in &s.series {
        let n = |k: &str| x.requests.get(k).copied().unwrap_or(0);
        let all: u64 = x.requests.values().sum();
        let quota = n("rate_limited");
        if quota > 0 {
            problems.push(format!(
                "quota: {quota} of {all} calls to {}/{} answered 429 (rate limited)",
                x.provider, x.credential
            ));
        }
        let faults: u64 = PROVIDER_ERRORS.iter().map(|k| n(k)).sum();
        if faults > 0 {
            problems.push(format!(
                "{faults} of {all} calls to {}/{} failed (server errors, timeouts, broken streams)",
                x.provider, x.credential
            ));
        }
        if all > 0 {
            details.push(format!(
                "{}/{}/{}: {all} calls, P95 {}, TTFT P95 {}",
                x.provider,
                x.credential,
                x.model,
                units::ms(x.latency_ms.p95),
                units::ms(x.ttft_ms.p95)
            ));
        }
    }
    if s.credentials.is_empty() {
        details.push("no provider credentials configured".into());
    } else if problems.is_empty() {
        details.push(format!("{} breakers closed", s.credentials.len()));
    }
    ProviderState { problems, details }
}
