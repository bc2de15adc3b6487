//! ramping-arrival-rate: the arrival rate follows the stages (linear between targets).

use super::arrival::{arrival, RatePlan, VuPool};
use crate::collect::state::Shared;
use crate::plan::Stage;
use std::sync::Arc;
use std::time::Duration;

/// `start_rate` then each stage's target, per `time_unit`.
pub(super) struct Rates<'a> {
    pub start_rate: f64,
    pub time_unit: Duration,
    pub stages: &'a [Stage],
}

pub(super) async fn run(
    shared: &Arc<Shared>,
    idx: usize,
    r: Rates<'_>,
    pool: VuPool,
    grace: Duration,
) {
    let unit = r.time_unit.as_secs_f64();
    let plan = RatePlan {
        start: r.start_rate / unit,
        stages: r
            .stages
            .iter()
            .map(|s| Stage {
                duration: s.duration,
                target: s.target / unit,
            })
            .collect(),
    };
    arrival(shared, idx, plan, pool, grace).await
}
