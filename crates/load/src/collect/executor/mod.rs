//! The six executors, one file each, as k6 has them. The closed ones share
//! [`closed`], the open ones [`arrival`]; [`run_scenario`] picks one per scenario.

mod arrival;
mod closed;
mod constant_arrival_rate;
mod constant_vus;
mod per_vu_iterations;
mod ramping_arrival_rate;
mod ramping_vus;
mod shared_iterations;

use super::state::{stopped, Shared};
use crate::plan::Executor;
#[cfg(test)]
use arrival::Arrivals;
use arrival::VuPool;
use std::sync::Arc;

/// Runs scenario `idx` of the plan: waits for its start time, then its executor.
pub(crate) async fn run_scenario(shared: Arc<Shared>, idx: usize, t0: tokio::time::Instant) {
    run_executor(&shared, idx, t0).await;
    shared.scenario_span(idx, t0.elapsed().as_secs_f64(), true);
}

async fn run_executor(shared: &Arc<Shared>, idx: usize, t0: tokio::time::Instant) {
    let shared = shared.clone();
    let Some(sc) = shared.plan.scenarios.get(idx).cloned() else {
        return;
    };
    let mut abort = shared.stop_signal();
    if !sc.start_time.is_zero() {
        tokio::select! {
            _ = tokio::time::sleep(sc.start_time) => {}
            _ = stopped(&mut abort) => return,
        }
    }
    shared.scenario_span(idx, t0.elapsed().as_secs_f64(), false);
    let grace = sc.graceful_stop;
    match &sc.executor {
        Executor::ConstantVus { vus, duration } => {
            constant_vus::run(&shared, idx, *vus, *duration, grace).await
        }
        Executor::PerVuIterations {
            vus,
            iterations,
            max_duration,
        } => per_vu_iterations::run(&shared, idx, *vus, *iterations, *max_duration, grace).await,
        Executor::SharedIterations {
            vus,
            iterations,
            max_duration,
        } => shared_iterations::run(&shared, idx, *vus, *iterations, *max_duration, grace).await,
        Executor::RampingVus { start_vus, stages } => {
            ramping_vus::run(&shared, idx, *start_vus, stages, grace).await
        }
        Executor::ConstantArrivalRate {
            rate,
            time_unit,
            duration,
            pre_allocated_vus,
            max_vus,
            max_backlog,
        } => {
            let rate = constant_arrival_rate::Rate {
                rate: *rate,
                time_unit: *time_unit,
                duration: *duration,
            };
            let pool = VuPool::new(*pre_allocated_vus, *max_vus, *max_backlog);
            constant_arrival_rate::run(&shared, idx, rate, pool, grace).await
        }
        Executor::RampingArrivalRate {
            start_rate,
            time_unit,
            stages,
            pre_allocated_vus,
            max_vus,
            max_backlog,
        } => {
            let rates = ramping_arrival_rate::Rates {
                start_rate: *start_rate,
                time_unit: *time_unit,
                stages,
            };
            let pool = VuPool::new(*pre_allocated_vus, *max_vus, *max_backlog);
            ramping_arrival_rate::run(&shared, idx, rates, pool, grace).await
        }
    }
}

/// The whole run's arrival schedule of an open executor (offsets from its start, the
/// k-th item being global arrival k); `None` for closed executors.
#[cfg(test)]
pub(crate) fn schedule(e: &Executor) -> Option<Arrivals> {
    match e {
        Executor::ConstantArrivalRate {
            rate,
            time_unit,
            duration,
            ..
        } => Some(Arrivals::new(
            constant_arrival_rate::Rate {
                rate: *rate,
                time_unit: *time_unit,
                duration: *duration,
            }
            .rate_plan(),
        )),
        Executor::RampingArrivalRate {
            start_rate,
            time_unit,
            stages,
            ..
        } => Some(Arrivals::new(
            ramping_arrival_rate::Rates {
                start_rate: *start_rate,
                time_unit: *time_unit,
                stages,
            }
            .rate_plan(),
        )),
        _ => None,
    }
}
