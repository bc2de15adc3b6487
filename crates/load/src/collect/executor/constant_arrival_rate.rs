//! constant-arrival-rate: iterations start at a fixed rate for a duration, however
//! slowly the server answers.

use super::arrival::{arrival, RatePlan, VuPool};
use crate::collect::state::Shared;
use crate::plan::Stage;
use std::sync::Arc;
use std::time::Duration;

/// `rate` iterations per `time_unit`.
pub(super) struct Rate {
    pub rate: f64,
    pub time_unit: Duration,
    pub duration: Duration,
}

impl Rate {
    /// Arrivals per second over time.
    pub(super) fn rate_plan(&self) -> RatePlan {
        let per_sec = self.rate / self.time_unit.as_secs_f64();
        RatePlan {
            start: per_sec,
            stages: vec![Stage {
                duration: self.duration,
                target: per_sec,
            }],
        }
    }
}

pub(super) async fn run(shared: &Arc<Shared>, idx: usize, r: Rate, pool: VuPool, grace: Duration) {
    arrival(shared, idx, r.rate_plan(), pool, grace).await
}
