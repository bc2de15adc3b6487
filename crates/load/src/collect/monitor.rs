//! The live monitor: once a second it samples the `vus` gauge, evaluates the
//! `abort_on_fail` thresholds over the merged shards (aborting the run when one fails)
//! and, when the caller asked for it, hands the live figures to its progress callback.
//! It shows nothing itself.

use super::state::Shared;
use crate::options::{Progress, ProgressFn};
use crate::snapshot::Summary;
use crate::thresholds::evaluate;
use powertune_core::LatencyHistogram;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

pub(crate) async fn monitor(
    shared: Arc<Shared>,
    progress: Option<ProgressFn>,
    mut done: watch::Receiver<bool>,
    t0: Instant,
) {
    let total = shared.plan.total_duration();
    let aborting = shared.plan.thresholds.iter().any(|t| t.abort_on_fail);
    let mut last_reqs = 0u64;
    let mut last_t = t0;
    // Ticks on whole seconds since the start (no drift from the work done at each),
    // so the timeline's points cover one second each.
    let mut every = tokio::time::interval_at(t0 + Duration::from_secs(1), Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            r = done.wait_for(|v| *v) => { let _ = r.map(|_| ()); break; }
        }
        shared
            .vus_series
            .lock()
            .sample(shared.vus.load(Ordering::Relaxed));
        drain(&shared, t0, false);
        if !(progress.is_some() || aborting) {
            continue;
        }
        let snap = shared.reg.snapshot();
        let now = Instant::now();
        if aborting {
            check_aborts(&shared, &snap, now - t0);
        }
        let Some(report) = &progress else {
            continue;
        };
        let mut h = LatencyHistogram::new();
        let mut reqs = 0;
        let mut errors = 0;
        for s in &snap.series {
            reqs += s.reqs;
            errors += s.failed;
            if let Some(x) = s.duration.count().gt(&0).then(|| s.duration.histogram()) {
                let _ = h.merge(&x);
            }
        }
        let dt = (now - last_t).as_secs_f64().max(1e-3);
        report(&Progress {
            elapsed: now - t0,
            total,
            vus: shared.vus.load(Ordering::Relaxed),
            reqs,
            rps: (reqs - last_reqs.min(reqs)) as f64 / dt,
            p95_ms: h.percentile_ms(95.0),
            errors,
        });
        last_reqs = reqs;
        last_t = now;
    }
    drain(&shared, t0, true);
}

/// Adds one interval to the run's timeline (`last`: the run has ended, every request
/// is recorded, the pending point is closed).
fn drain(shared: &Shared, t0: Instant, last: bool) {
    let tick = shared.reg.drain_interval();
    let vus = shared.vus.load(Ordering::Relaxed);
    let scen = shared.scenario_vus();
    let now = t0.elapsed().as_secs_f64();
    shared.timeline.lock().record(&tick, vus, &scen, now, last);
}

/// Aborts the run when an `abort_on_fail` threshold past its delay fails.
fn check_aborts(shared: &Shared, snap: &crate::metrics::Shard, elapsed: Duration) {
    let s = Summary::live(&shared.plan, snap, elapsed);
    for (t, r) in shared
        .plan
        .thresholds
        .iter()
        .zip(evaluate(&s, &shared.plan.thresholds))
    {
        let due = t.delay_abort_eval.is_none_or(|d| elapsed >= d);
        if t.abort_on_fail && due && !r.ok {
            shared.abort(format!(
                "threshold {}: {} failed (observed {}) with abort_on_fail",
                r.metric,
                r.expr,
                r.observed_value()
            ));
        }
    }
}
