//! The closed model shared by constant-vus, per-vu-iterations, shared-iterations and
//! ramping-vus: each VU runs its iterations back to back until told to stop or its
//! iteration budget is spent.

use crate::collect::state::{stopped, wind_down, Shared};
use crate::collect::vu::Vu;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How many iterations VUs may run.
#[derive(Clone)]
pub(super) enum Budget {
    Unlimited,
    /// This many per VU.
    PerVu(u64),
    /// This many across all VUs (the counter is shared).
    Shared(Arc<AtomicU64>, u64),
}

/// Runs `vus` VUs until they spend `budget`, `limit` passes or the run is aborted,
/// then gives them `grace` to finish their iteration. In a segmented run a VU's id
/// is its index across the whole run (unique over every segment).
pub(super) async fn closed(
    shared: &Arc<Shared>,
    idx: usize,
    vus: u32,
    budget: Budget,
    limit: Option<Duration>,
    grace: Duration,
) {
    let (tx, rx) = watch::channel(false);
    let mut set = JoinSet::new();
    for id in 0..vus {
        set.spawn(closed_vu(
            shared.clone(),
            idx,
            shared.plan.segment.nth(u64::from(id)),
            rx.clone(),
            budget.clone(),
        ));
    }
    let mut abort = shared.stop_signal();
    {
        let all = async { while set.join_next().await.is_some() {} };
        let limit = limit.unwrap_or(Duration::from_secs(365 * 24 * 3600));
        tokio::select! {
            _ = all => {}
            _ = tokio::time::sleep(limit) => {}
            _ = stopped(&mut abort) => {}
        }
    }
    let _ = tx.send(true);
    wind_down(shared, &mut set, grace).await;
}

pub(super) async fn closed_vu(
    shared: Arc<Shared>,
    idx: usize,
    id: u64,
    stop: watch::Receiver<bool>,
    budget: Budget,
) {
    shared.vu_started(idx);
    let mut vu = Vu::new(shared.clone(), idx, id);
    vu.run_setup(&stop).await;
    let mut done = 0u64;
    loop {
        if *stop.borrow() {
            break;
        }
        match &budget {
            Budget::Unlimited => {}
            Budget::PerVu(n) => {
                if done >= *n {
                    break;
                }
            }
            Budget::Shared(c, n) => {
                if c.fetch_add(1, Ordering::Relaxed) >= *n {
                    break;
                }
            }
        }
        vu.iteration(Duration::ZERO, &stop).await;
        done += 1;
        // Yield now and then so a VU whose requests all fail fast cannot starve the
        // runtime.
        if done % 64 == 0 {
            tokio::task::yield_now().await;
        }
    }
    vu.client.close();
    shared.vu_stopped(idx);
}
