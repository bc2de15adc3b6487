//! ramping-vus: the number of VUs follows the stages (linear between targets); VUs
//! above the target are told to stop after their current iteration.

use super::closed::{closed_vu, Budget};
use crate::collect::state::{stopped, wind_down, Shared};
use crate::plan::Stage;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// The value of a piecewise-linear stage plan at `t`.
pub(super) fn stage_value(start: f64, stages: &[Stage], t: Duration) -> f64 {
    let mut from = start;
    let mut at = Duration::ZERO;
    for s in stages {
        if t < at.saturating_add(s.duration) {
            let frac = (t - at).as_secs_f64() / s.duration.as_secs_f64().max(1e-9);
            return from + (s.target - from) * frac;
        }
        at = at.saturating_add(s.duration);
        from = s.target;
    }
    from
}

pub(super) async fn run(
    shared: &Arc<Shared>,
    idx: usize,
    start_vus: u32,
    stages: &[Stage],
    grace: Duration,
) {
    let total = stages
        .iter()
        .fold(Duration::ZERO, |a, s| a.saturating_add(s.duration));
    let t0 = Instant::now();
    let mut set = JoinSet::new();
    let mut active: Vec<watch::Sender<bool>> = Vec::new();
    let mut next_id = 0u64;
    let mut abort = shared.stop_signal();
    loop {
        let el = t0.elapsed();
        if el >= total || *abort.borrow() {
            break;
        }
        // A segment runs its part of the whole run's target (the parts add up).
        let whole = stage_value(start_vus as f64, stages, el).round().max(0.0) as u64;
        let target = shared.plan.segment.scale(whole) as usize;
        while active.len() < target {
            let (tx, rx) = watch::channel(false);
            set.spawn(closed_vu(
                shared.clone(),
                idx,
                shared.plan.segment.nth(next_id),
                rx,
                Budget::Unlimited,
            ));
            next_id += 1;
            active.push(tx);
        }
        while active.len() > target {
            if let Some(tx) = active.pop() {
                let _ = tx.send(true);
            }
        }
        while set.try_join_next().is_some() {}
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            _ = stopped(&mut abort) => break,
        }
    }
    for tx in &active {
        let _ = tx.send(true);
    }
    wind_down(shared, &mut set, grace).await;
    drop(active);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_interpolate_like_k6() {
        let st = [
            Stage {
                duration: Duration::from_secs(60),
                target: 50.0,
            },
            Stage {
                duration: Duration::from_secs(300),
                target: 50.0,
            },
            Stage {
                duration: Duration::from_secs(60),
                target: 0.0,
            },
        ];
        assert_eq!(stage_value(0.0, &st, Duration::ZERO), 0.0);
        assert_eq!(stage_value(0.0, &st, Duration::from_secs(30)), 25.0);
        assert_eq!(stage_value(0.0, &st, Duration::from_secs(200)), 50.0);
        assert_eq!(stage_value(0.0, &st, Duration::from_secs(390)), 25.0);
        assert_eq!(stage_value(0.0, &st, Duration::from_secs(999)), 0.0);
    }
}
