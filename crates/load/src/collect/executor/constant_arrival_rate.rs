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

pub(super) async fn run(shared: &Arc<Shared>, idx: usize, r: Rate, pool: VuPool, grace: Duration) {
    let per_sec = r.rate / r.time_unit.as_secs_f64();
    let plan = RatePlan {
        start: per_sec,
        stages: vec![Stage {
            duration: r.duration,
            target: per_sec,
        }],
    };
    arrival(shared, idx, plan, pool, grace).await
}
