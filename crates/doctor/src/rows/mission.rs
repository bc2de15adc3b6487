//! Row 6: "Mission completion rate dropped" ↔ "AI provider quota / circuit breaker".
//!
//! A mission completes when its LLM calls complete, so doctor measures mission
//! completion where every LLM call passes: the gateway. The completion rate is the
//! share of calls that ended `ok` among every upstream call of every provider (all
//! outcomes except `client_closed`, which the caller ended) plus the calls refused
//! because every breaker was open (`rejected_all_open`). It dropped when it is below
//! 100% − `worker.failed_rate_pct` (the runbook's "failed job rate < 1%"). Cause:
//! breakers open, half-open or rate limited, credentials disabled, calls refused with
//! all breakers open, or `rate_limited` / `auth_failed` outcomes.

use super::pct;
use crate::collect::Collected;
use crate::model::{Check, Row, Status};
use powertune_core::Targets;
use powertune_gateway::StatusSnapshot;

const SYMPTOM: &str = "Mission completion rate dropped";
const CAUSE: &str = "AI provider quota / circuit breaker";
const ACTION: &str = "Check provider quota + open breakers";
const SRC: &str = "gateway status (outcomes, rejected_all_open)";

/// (completed, attempted) calls at the gateway.
pub fn completion(s: &StatusSnapshot) -> (u64, u64) {
    let mut ok = 0;
    let mut all = s.rejected_all_open;
    for x in &s.series {
        for (outcome, n) in &x.requests {
            if outcome == "client_closed" {
                continue;
            }
            all += n;
            if outcome == "ok" {
                ok += n;
            }
        }
    }
    (ok, all)
}

pub fn row(c: &Collected, t: &Targets) -> Row {
    let mut row = Row {
        id: "mission_completion".into(),
        symptom: Check::not_measured(SYMPTOM, ""),
        causes: Vec::new(),
        first_action: ACTION.into(),
        signals: Vec::new(),
    };
    let Some(s) = c.gateway.metrics() else {
        let why = c.gateway.missing("gateway").unwrap_or_default();
        row.symptom = Check::not_measured(SYMPTOM, why.clone());
        row.causes.push(Check::not_measured(CAUSE, why));
        return row;
    };
    let (ok, all) = completion(s);
    let min = 100.0 - t.worker.failed_rate_pct;
    row.symptom = if all == 0 {
        Check::not_measured(SYMPTOM, "gateway: no LLM calls since it started")
    } else {
        let rate = 100.0 * ok as f64 / all as f64;
        Check::new(
            SYMPTOM,
            if rate < min {
                Status::Confirmed
            } else {
                Status::RuledOut
            },
            format!(
                "{} of LLM calls completed ({ok} of {all}; dropped below {})",
                pct(rate),
                pct(min)
            ),
            SRC,
        )
    };
    let cause = quota_or_breakers(s);
    row.signals = cause.1;
    row.causes.push(cause.0);
    row
}

/// Whether quota or breakers are in the way, and the figures.
pub fn quota_or_breakers(s: &StatusSnapshot) -> (Check, Vec<String>) {
    let mut found: Vec<String> = s
        .credentials
        .iter()
        .filter(|c| {
            matches!(
                c.state.as_str(),
                "open" | "half_open" | "rate_limited" | "disabled"
            )
        })
        .map(|c| format!("{}/{} {}", c.provider, c.credential, c.state))
        .collect();
    found.extend(refusals(s));
    for x in &s.series {
        for o in ["rate_limited", "auth_failed"] {
            if let Some(n) = x.requests.get(o).filter(|n| **n > 0) {
                found.push(format!("{}/{} {o} ×{n}", x.provider, x.credential));
            }
        }
    }
    let check = if found.is_empty() {
        Check::new(
            CAUSE,
            Status::RuledOut,
            format!(
                "{} breakers closed, no 429/401 outcomes: look in the app (mission job errors, the retry set)",
                s.credentials.len()
            ),
            SRC,
        )
    } else {
        Check::new(CAUSE, Status::Confirmed, found.join("; "), SRC)
    };
    (check, found)
}

/// Calls the gateway refused without sending them upstream, and credentials whose
/// provider said (in its rate-limit headers) that nothing is left until the reset:
/// the quota seen before any 429.
pub fn refusals(s: &StatusSnapshot) -> Vec<String> {
    let mut out = Vec::new();
    if s.rejected_all_open > 0 {
        out.push(format!(
            "{} calls refused at once (every credential open, rate limited, out of provider quota or disabled)",
            s.rejected_all_open
        ));
    }
    for c in &s.credentials {
        for (left, what) in [
            (c.provider_remaining_requests, "requests"),
            (c.provider_remaining_tokens, "tokens"),
        ] {
            if left == Some(0) {
                out.push(format!(
                    "{}/{}: the provider's headers say 0 {what} left until the reset",
                    c.provider, c.credential
                ));
            }
        }
    }
    out
}
