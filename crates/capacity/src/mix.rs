//! The plan's scenarios as an open-model mix: each scenario keeps its share of the
//! arrivals, and a step at rate R runs every scenario as constant-arrival-rate at
//! R × its share.

use crate::error::CapacityError;
use powertune_load::plan::{Executor, Plan, Step};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Most VUs one scenario may hold in a step.
pub const MAX_VUS: u32 = 5_000;
/// Most VUs one scenario starts with (more are started as arrivals need them).
pub const MAX_PREALLOCATED_VUS: u32 = 500;
/// Seconds of latency a step's VUs can absorb before arrivals are dropped: a
/// scenario at r/s may hold r × this many VUs.
pub const VU_SECONDS: f64 = 4.0;

/// One scenario's place in the mix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Share {
    pub scenario: String,
    pub endpoint_type: String,
    /// Fraction of the arrivals (the shares add up to 1).
    pub share: f64,
    /// HTTP requests one iteration sends (setup excluded).
    pub requests_per_iteration: u32,
    /// What the share was taken from.
    pub weight_from: String,
}

/// The scenarios kept for the steps, their shares, and those left out.
#[derive(Debug, Clone)]
pub struct Mix {
    plan: Plan,
    pub shares: Vec<Share>,
    /// Scenarios left out, with the reason.
    pub left_out: Vec<(String, String)>,
}

impl Mix {
    /// Builds the mix from a validated plan. A scenario's weight is its peak arrival
    /// rate per second (arrival-rate executors) or its VU count (VU executors, as if
    /// each VU started one iteration a second). Think times are dropped: the arrival
    /// rate sets the pace. Scenarios with WebSocket or cable steps are left out (a
    /// held connection has no arrival rate).
    pub fn new(plan: Plan) -> Result<Mix, CapacityError> {
        let mut kept = Vec::new();
        let mut weights = Vec::new();
        let mut left_out = Vec::new();
        for mut sc in plan.scenarios.clone() {
            if sc.has_cable() {
                left_out.push((
                    sc.name.clone(),
                    "WebSocket/cable steps hold a connection and have no arrival rate".into(),
                ));
                continue;
            }
            sc.steps.retain(|s| !matches!(s, Step::Think(_)));
            let requests = sc
                .steps
                .iter()
                .filter(|s| matches!(s, Step::Http(_)))
                .count() as u32;
            if requests == 0 {
                left_out.push((sc.name.clone(), "no HTTP step to send".into()));
                continue;
            }
            let (w, from) = weight(&sc.executor);
            weights.push((w, from, requests));
            kept.push(sc);
        }
        let total: f64 = weights.iter().map(|w| w.0).sum();
        if kept.is_empty() || total <= 0.0 {
            return Err(CapacityError::Plan(format!(
                "{}: no scenario with HTTP steps to step the load with{}",
                plan.source,
                if left_out.is_empty() {
                    String::new()
                } else {
                    format!(
                        " ({})",
                        left_out
                            .iter()
                            .map(|(n, w)| format!("{n}: {w}"))
                            .collect::<Vec<_>>()
                            .join("; ")
                    )
                }
            )));
        }
        let shares = kept
            .iter()
            .zip(&weights)
            .map(|(sc, (w, from, reqs))| Share {
                scenario: sc.name.clone(),
                endpoint_type: sc.endpoint_type.title().to_string(),
                share: w / total,
                requests_per_iteration: *reqs,
                weight_from: from.clone(),
            })
            .collect();
        let mut plan = plan;
        plan.scenarios = kept;
        Ok(Mix {
            plan,
            shares,
            left_out,
        })
    }

    /// Where the plan came from.
    pub fn source(&self) -> &str {
        &self.plan.source
    }

    /// HTTP requests per arrival, averaged over the mix.
    pub fn requests_per_arrival(&self) -> f64 {
        self.shares
            .iter()
            .map(|s| s.share * s.requests_per_iteration as f64)
            .sum()
    }

    /// The plan of one step: every scenario at `rate` × its share, starting at once,
    /// for `length`; in-flight iterations get `graceful` to finish.
    pub fn plan_at(&self, rate: f64, length: Duration, graceful: Duration) -> Plan {
        let mut plan = self.plan.clone();
        for (sc, share) in plan.scenarios.iter_mut().zip(&self.shares) {
            let r = (rate * share.share).max(1e-3);
            let max_vus = ((r * VU_SECONDS).ceil() as u32)
                .saturating_add(10)
                .min(MAX_VUS);
            sc.start_time = Duration::ZERO;
            sc.graceful_stop = graceful;
            sc.executor = Executor::ConstantArrivalRate {
                rate: r,
                time_unit: Duration::from_secs(1),
                duration: length,
                pre_allocated_vus: ((r * 0.25).ceil() as u32)
                    .saturating_add(2)
                    .min(max_vus)
                    .min(MAX_PREALLOCATED_VUS),
                max_vus,
                max_backlog: (r.ceil() as u64).clamp(1, 100_000),
            };
        }
        plan
    }
}

/// A scenario's weight in the mix and what it was taken from.
fn weight(e: &Executor) -> (f64, String) {
    let per_s = |rate: f64, unit: Duration| rate / unit.as_secs_f64().max(1e-9);
    match e {
        Executor::ConstantArrivalRate {
            rate, time_unit, ..
        } => (per_s(*rate, *time_unit), "its arrival rate".into()),
        Executor::RampingArrivalRate {
            start_rate,
            time_unit,
            stages,
            ..
        } => {
            let peak = stages.iter().map(|s| s.target).fold(*start_rate, f64::max);
            (per_s(peak, *time_unit), "its peak arrival rate".into())
        }
        other => (
            other.max_vus().max(1) as f64,
            "its VUs (one iteration per VU per second)".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAN: &str = r#"
[scenarios.a]
endpoint_type = "Authentication"
users = 30
duration = "1m"
[[scenarios.a.steps]]
name = "login"
method = "POST"
url = "/login"
[[scenarios.a.steps]]
sleep = "1s"

[scenarios.b]
endpoint_type = "Read-heavy CRUD"
users = 10
duration = "1m"
[[scenarios.b.steps]]
name = "read"
url = "/read"

[scenarios.c]
endpoint_type = "Read-heavy CRUD"
users = 10
duration = "1m"
[[scenarios.c.steps]]
cable = { url = "/cable", channel = "MonitoringChannel", hold = "stage" }
"#;

    #[test]
    fn shares_follow_the_vus_and_cable_scenarios_are_left_out() {
        let plan = Plan::from_toml_str(PLAN, "t.toml").unwrap();
        let mix = Mix::new(plan).unwrap();
        assert_eq!(mix.shares.len(), 2);
        assert!((mix.shares[0].share - 0.75).abs() < 1e-9);
        assert_eq!(mix.left_out.len(), 1);
        let p = mix.plan_at(100.0, Duration::from_secs(5), Duration::from_secs(2));
        match &p.scenarios[0].executor {
            Executor::ConstantArrivalRate { rate, duration, .. } => {
                assert!((rate - 75.0).abs() < 1e-9);
                assert_eq!(*duration, Duration::from_secs(5));
            }
            other => panic!("{other:?}"),
        }
        assert!(p.scenarios[0]
            .steps
            .iter()
            .all(|s| !matches!(s, Step::Think(_))));
        assert!((mix.requests_per_arrival() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn a_plan_of_only_cable_scenarios_is_refused() {
        let only = PLAN.split("[scenarios.c]").nth(1).unwrap();
        let text = format!("[scenarios.c]{only}");
        let plan = Plan::from_toml_str(&text, "t.toml").unwrap();
        let e = Mix::new(plan).unwrap_err().to_string();
        assert!(e.contains("no scenario with HTTP steps"), "{e}");
    }
}
