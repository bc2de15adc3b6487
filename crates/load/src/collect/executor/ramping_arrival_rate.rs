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

impl Rates<'_> {
    /// Arrivals per second over time.
    pub(super) fn rate_plan(&self) -> RatePlan {
        let unit = self.time_unit.as_secs_f64();
        RatePlan {
            start: self.start_rate / unit,
            stages: self
                .stages
                .iter()
                .map(|s| Stage {
                    duration: s.duration,
                    target: s.target / unit,
                })
                .collect(),
        }
    }
}

pub(super) async fn run(
    shared: &Arc<Shared>,
    idx: usize,
    r: Rates<'_>,
    pool: VuPool,
    grace: Duration,
) {
    arrival(shared, idx, r.rate_plan(), pool, grace).await
}
